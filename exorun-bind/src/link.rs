//! The three kinds of link, each defining an import's functions in a `Linker`. The builder
//! checks every contract with the ledger first; these functions only define, so nothing is
//! checked twice on the way.
//!
//! - System: the `SystemComponent` installs its host functions (it stages each new instance's
//!   context through the builder's `Spec::configure`).
//! - Local: each function becomes a host function that calls the target instance's export
//!   (resolved once, here) through its `InstanceHandle` with the caller's `Val`s as they are (no
//!   serialization), so the target's serialization, limits, trap handling and re-entrancy
//!   detection all apply.
//! - Local by name: the same, but the target is looked up by its registered name at each call,
//!   so links can form cycles and follow a replaced instance. No instance under the name (or one
//!   running another app) raises `Unresolved`, which a serving runtime reports as what it is.
//! - Remote: see `remote` (each call's values written straight into a call frame, the reply's
//!   results decoded against the import's own types; `remote::call` is that one way of calling
//!   another runtime with component values, for anyone).
//!
//! A function whose types carry resource handles swaps them on the way (see `standins`): the
//! importer's stand-ins become the owner's handles (or ids, remotely), the call runs on the
//! replica (or connection) its handles live in, and the handles it returns become new
//! stand-ins. A function without handles is forwarded as it is.
//!
//! A failed call traps the calling guest; the error it raised reaches the embedder as
//! `instance::Error` (a local target's error as `Callee`, naming the instance that failed, so a
//! caller tells "my callee trapped" from "I trapped"; anything else as
//! `instance::Error::Raised`). A link defined after another for the same interface replaces its
//! functions (the builder links systems first, so a local or remote link can take over part of
//! what a system such as WASI installs).

use std::sync::Arc;

use exorun_core::app::AppId;
use exorun_core::context::ExorunCtx;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::ledger::Interface;
use exorun_core::ledger::Ledger;
use exorun_core::ledger::Signature;
use exorun_core::runtime::Runtime;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use exorun_transport::client::Channel;
use wasmtime::component::Linker;

mod forward;
mod local;
pub mod remote;
pub mod standins;

use self::forward::Forward;
use self::local::LocalFunction;
use self::local::NamedFunction;
use self::standins::Carry;
pub(crate) use self::standins::Kinds;

/// Why a link could not be defined (after the builder's checks passed).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// wasmtime refused a definition. The builder's linker allows shadowing, so through it this
    /// reports a wasmtime refusal nothing here expects (`forward`'s unit test produces one).
    #[error("cannot define {interface}#{function}: {message}")]
    Define {
        /// The interface, fully qualified (e.g. `exorun:test/math`).
        interface: String,
        /// The function, by its name within the interface.
        function: String,
        /// What happened, in words.
        message: String,
    },
    /// A local target does not export a function the import needs.
    #[error("local target: {0}")]
    Target(instance::Error),
    /// A system component failed to install or configure.
    #[error(transparent)]
    System(#[from] system::Error),
}

/// What a named link raises when it finds nothing to call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    /// No instance is registered under the name.
    #[error("no instance named `{name}` is running")]
    Missing {
        /// The name concerned.
        name: String,
    },
    /// The instance under the name runs another app than the link was checked against.
    #[error("the instance named `{name}` runs another app than the link expects")]
    OtherApp {
        /// The name concerned.
        name: String,
    },
}

/// Installs `system`'s host functions into `linker` (each new context is configured by the
/// builder's `Spec::configure`).
pub(crate) fn link_system(
    linker: &mut Linker<ExorunCtx>,
    system: &dyn SystemComponent,
) -> Result<(), Error> {
    system.install(linker)?;
    Ok(())
}

/// What every link of one importer shares: its ledger, and the dynamic types its linker gives
/// the resources of its linked imports (see `standins`).
pub(crate) struct Importer {
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) kinds: Arc<Kinds>,
}

impl Importer {
    /// Defines the resources `import` declares, each a stand-in type.
    fn define_resources(
        &self,
        linker: &mut Linker<ExorunCtx>,
        import: &Interface,
    ) -> Result<(), Error> {
        let kinds = self.kinds.declared_by(&import.name);
        forward::define_resources(linker, &import.name, kinds).map_err(define_error)
    }

    fn carry(&self, signature: &Signature) -> Option<Arc<Carry>> {
        Carry::of(signature, &self.ledger, &self.kinds)
    }
}

/// Links `import` to the same interface exported by `target`, a running instance here.
pub(crate) fn link_local(
    linker: &mut Linker<ExorunCtx>,
    importer: &Importer,
    import: &Interface,
    target: &InstanceHandle,
) -> Result<(), Error> {
    importer.define_resources(linker, import)?;
    let mut forwards: Vec<(&str, Arc<dyn Forward>)> = Vec::new();
    for (function, signature) in &import.functions {
        let export = target
            .export(&import.name, function)
            .map_err(Error::Target)?;
        let target = target.clone();
        let carry = importer.carry(signature);
        forwards.push((
            function,
            Arc::new(LocalFunction::new(target, export, carry)),
        ));
    }
    forward::define(linker, &import.name, forwards).map_err(define_error)
}

/// Links `import` to the instance registered as `name` in `runtime`, running `app`, looked up
/// at each call.
pub(crate) fn link_named(
    linker: &mut Linker<ExorunCtx>,
    importer: &Importer,
    import: &Interface,
    runtime: &Arc<Runtime>,
    app: AppId,
    name: &str,
) -> Result<(), Error> {
    importer.define_resources(linker, import)?;
    let forwards = import.functions.iter().map(|(function, signature)| {
        let named: Arc<dyn Forward> = Arc::new(NamedFunction {
            runtime: Arc::clone(runtime),
            app,
            name: name.to_owned(),
            interface: import.name.clone(),
            function: function.clone(),
            carry: importer.carry(signature),
        });
        (function.as_str(), named)
    });
    forward::define(linker, &import.name, forwards).map_err(define_error)
}

/// Links `import` to the instance named `target` on the runtime at the other end of
/// `channel`.
pub(crate) fn link_remote(
    linker: &mut Linker<ExorunCtx>,
    importer: &Importer,
    import: &Interface,
    channel: &Arc<dyn Channel>,
    target: &str,
) -> Result<(), Error> {
    importer.define_resources(linker, import)?;
    let forwards = import.functions.iter().map(|(function, signature)| {
        let remote: Arc<dyn Forward> = Arc::new(remote::Linked::new(
            channel,
            target,
            &import.name,
            function,
            signature,
            importer.carry(signature),
        ));
        (function.as_str(), remote)
    });
    forward::define(linker, &import.name, forwards).map_err(define_error)
}

fn define_error(error: forward::Error) -> Error {
    let forward::Error {
        interface,
        function,
        message,
    } = error;
    Error::Define {
        interface,
        function,
        message,
    }
}
