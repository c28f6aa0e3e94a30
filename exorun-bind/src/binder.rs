//! The three kinds of link, each defining an import's functions in a `Linker`.
//!
//! - System: the `SystemComponent` installs its host functions and stages its context.
//! - Local: each function becomes a host function that calls the target instance's export
//!   through its `InstanceHandle` with the caller's `Val`s as they are (no serialization), so the
//!   target's serialization, limits, trap handling and re-entrancy detection all apply. Exports
//!   are resolved once, at link time.
//! - Local by name: the same, but the target is looked up by its registered name at each call,
//!   so links can form cycles and follow a restarted instance.
//! - Remote: each function becomes a host function that encodes the arguments once, straight
//!   into a call frame, sends it through the shared client, and decodes the reply against the
//!   import's result types. A failure traps the calling guest with `instance::Error::Remote`,
//!   which keeps the reason (for `DomainSpecific`, its code and message). Each call carries
//!   the caller's call chain, so the callee's runtime can refuse a re-entrant call.
//!
//! Every link is checked against the importing app's ledger first; no interface is special,
//! `wasi:*` included. A link defined after another for the same interface replaces its
//! functions (the builder links systems first, so a local or remote link can take over part of
//! what a system such as WASI installs).

use std::sync::Arc;

use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::ledger;
use exorun_core::ledger::Interface;
use exorun_core::ledger::Ledger;
use exorun_core::registry;
use exorun_core::registry::AppId;
use exorun_core::registry::Runtime;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use exorun_transport::client::Client;
use exorun_transport::transport::BoxFuture;
use neorpc::codec;
use wasmtime::component::Func;
use wasmtime::component::Linker;
use wasmtime::component::Type;
use wasmtime::component::Val;

/// Why a link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The importing app does not import the interface.
    #[error("the app does not import {interface}")]
    NotImported { interface: String },
    /// The provider does not satisfy the import; every problem is listed.
    #[error("{interface}: {}", list(problems))]
    Contract {
        interface: String,
        problems: Vec<ledger::Error>,
    },
    /// A local target's export could not be resolved (removed, failed, busy).
    #[error("local target: {0}")]
    Target(instance::Error),
    /// wasmtime refused a definition.
    #[error("cannot define {interface}#{function}: {message}")]
    Define {
        interface: String,
        function: String,
        message: String,
    },
    /// The app a named link expects is not registered.
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// A system component failed to install or configure.
    #[error(transparent)]
    System(#[from] system::Error),
}

fn list(problems: &[ledger::Error]) -> String {
    let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

/// Installs `system` into `linker` and stages its context in `context`.
pub fn link_system(
    linker: &mut Linker<ExorunCtx>,
    context: &mut ContextBuilder,
    system: &dyn SystemComponent,
) -> Result<(), Error> {
    system.install(linker)?;
    system.configure(context)?;
    Ok(())
}

/// Links the import `interface` of the app described by `ledger` to the same interface exported
/// by `target`, a running instance of this runtime.
pub async fn link_local_interface(
    linker: &mut Linker<ExorunCtx>,
    ledger: &Ledger,
    interface: &str,
    target: &InstanceHandle,
) -> Result<(), Error> {
    let import = imported(ledger, interface)?;
    let provided = target.ledger().exports.get(interface);
    contract(import, provided, ledger::Link::Local)?;
    let mut forwards: Vec<(&str, Arc<dyn Forward>)> = Vec::new();
    for function in import.functions.keys() {
        let func = target
            .func(interface, function)
            .await
            .map_err(Error::Target)?;
        let target = target.clone();
        forwards.push((function, Arc::new(LocalFunction { target, func })));
    }
    define(linker, interface, forwards)
}

/// Where a linked function's calls go: the one thing that differs between local, named and
/// remote links.
trait Forward: Send + Sync + 'static {
    /// Makes one call with the caller's arguments, filling its result slots.
    fn forward<'a>(
        &'a self,
        params: &'a [Val],
        results: &'a mut [Val],
    ) -> BoxFuture<'a, Result<(), instance::Error>>;
}

/// Defines each function of `interface` as a host function that forwards its calls; an error
/// traps the calling guest and keeps its `instance::Error` for the embedder.
fn define<'f>(
    linker: &mut Linker<ExorunCtx>,
    interface: &str,
    forwards: impl IntoIterator<Item = (&'f str, Arc<dyn Forward>)>,
) -> Result<(), Error> {
    let mut scope = linker
        .instance(interface)
        .map_err(|error| define_error(interface, "", &error))?;
    for (function, forward) in forwards {
        let defined = scope.func_new_async(function, move |_store, _ty, params, results| {
            let forward = Arc::clone(&forward);
            Box::new(async move {
                let called = forward.forward(params, results).await;
                called.map_err(wasmtime::Error::new)
            })
        });
        defined.map_err(|error| define_error(interface, function, &error))?;
    }
    Ok(())
}

/// One function linked to a local instance, its export resolved at link time.
struct LocalFunction {
    target: InstanceHandle,
    func: Func,
}

impl Forward for LocalFunction {
    fn forward<'a>(
        &'a self,
        params: &'a [Val],
        results: &'a mut [Val],
    ) -> BoxFuture<'a, Result<(), instance::Error>> {
        Box::pin(self.target.call_func(&self.func, params, results))
    }
}

/// Links the import `interface` to the instance registered as `name` in `runtime`, looked up
/// at each call, so links may form cycles (A -> B -> A is then reported as re-entrant) and a
/// restarted instance is picked up. The instance must run `app`: the contract is checked
/// against that app now, and each call checks the instance found runs it.
pub fn link_named_interface(
    linker: &mut Linker<ExorunCtx>,
    ledger: &Ledger,
    interface: &str,
    runtime: &Arc<Runtime>,
    app: AppId,
    name: &str,
) -> Result<(), Error> {
    let import = imported(ledger, interface)?;
    let provider = &runtime.app(app)?.ledger;
    contract(import, provider.exports.get(interface), ledger::Link::Local)?;
    let forwards = import.functions.keys().map(|function| {
        let named: Arc<dyn Forward> = Arc::new(NamedFunction {
            runtime: Arc::clone(runtime),
            provider: Arc::clone(provider),
            name: name.to_owned(),
            interface: interface.to_owned(),
            function: function.clone(),
        });
        (function.as_str(), named)
    });
    define(linker, interface, forwards)
}

/// One function linked to a local instance by name.
struct NamedFunction {
    runtime: Arc<Runtime>,
    provider: Arc<Ledger>,
    name: String,
    interface: String,
    function: String,
}

impl Forward for NamedFunction {
    fn forward<'a>(
        &'a self,
        params: &'a [Val],
        results: &'a mut [Val],
    ) -> BoxFuture<'a, Result<(), instance::Error>> {
        Box::pin(async move {
            let found = self.runtime.instance_named(&self.name);
            let target = found.map_err(|error| instance::Error::Host {
                message: format!("local link `{}`: {error}", self.name),
            })?;
            if !std::ptr::eq(target.ledger(), self.provider.as_ref()) {
                return Err(instance::Error::Host {
                    message: format!(
                        "local link `{}`: the instance now registered under that name runs another app",
                        self.name
                    ),
                });
            }
            target
                .call(&self.interface, &self.function, params, results)
                .await
        })
    }
}

/// One remotely linked function: where calls go and how results decode.
struct RemoteFunction {
    client: Arc<Client>,
    target: String,
    method: String,
    results: Vec<Type>,
}

impl Forward for RemoteFunction {
    fn forward<'a>(
        &'a self,
        params: &'a [Val],
        results: &'a mut [Val],
    ) -> BoxFuture<'a, Result<(), instance::Error>> {
        Box::pin(async move {
            let limits = codec::Limits::default();
            let write_args =
                |encoder: &mut neorpc::frame::Encoder| codec::encode_into(encoder, params, &limits);
            let timeout = self.client.timeout();
            let chain = instance::current_chain();
            let called = self
                .client
                .call_with(&self.target, &self.method, timeout, &chain, write_args)
                .await;
            let slab = called.map_err(|error| self.error(error))?;
            let decoded = codec::decode_into(&slab, &self.results, results, &limits);
            decoded.map_err(|error| self.error(error.into()))
        })
    }
}

impl RemoteFunction {
    fn error(&self, error: exorun_transport::client::Error) -> instance::Error {
        instance::Error::Remote {
            target: self.target.clone(),
            method: self.method.clone(),
            error,
        }
    }
}

/// Links the import `interface` of the app described by `ledger` to the instance named `target`
/// on the runtime at the other end of `client`. Method names on the wire are
/// `interface#function`. Nothing is sent until the guest calls.
pub fn link_remote_interface(
    linker: &mut Linker<ExorunCtx>,
    ledger: &Ledger,
    interface: &str,
    client: &Arc<Client>,
    target: &str,
) -> Result<(), Error> {
    let import = imported(ledger, interface)?;
    // The remote side's exports are not known here, so this checks what can cross the wire;
    // the server checks arguments against its real signature.
    refuse(&import.name, ledger::crossing(import, ledger::Link::Remote))?;
    let forwards = import.functions.iter().map(|(function, signature)| {
        let remote: Arc<dyn Forward> = Arc::new(RemoteFunction {
            client: Arc::clone(client),
            target: target.to_owned(),
            method: format!("{interface}#{function}"),
            results: signature.results.clone(),
        });
        (function.as_str(), remote)
    });
    define(linker, interface, forwards)
}

fn imported<'a>(ledger: &'a Ledger, interface: &str) -> Result<&'a Interface, Error> {
    ledger
        .imports
        .get(interface)
        .ok_or_else(|| Error::NotImported {
            interface: interface.to_owned(),
        })
}

fn contract(
    import: &Interface,
    provided: Option<&Interface>,
    link: ledger::Link,
) -> Result<(), Error> {
    refuse(&import.name, ledger::check(import, provided, link))
}

fn refuse(interface: &str, problems: Vec<ledger::Error>) -> Result<(), Error> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Contract {
        interface: interface.to_owned(),
        problems,
    })
}

fn define_error(interface: &str, function: &str, error: &wasmtime::Error) -> Error {
    Error::Define {
        interface: interface.to_owned(),
        function: function.to_owned(),
        message: format!("{error:#}"),
    }
}
