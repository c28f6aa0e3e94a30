//! Serving instances to remote callers.
//!
//! `Exports` is the neorpc dispatcher over one runtime: a call's `target` names an instance
//! that was explicitly exported (nothing else is reachable, registered or not) and its `method`
//! names `interface#function` (`#function` for a root export). Arguments decode against the
//! export's own parameter types; results encode into the reply. Each way a call can fail has
//! its exact reason: unknown instance or method, wrong argument count or type, trap, fuel,
//! memory, a domain code; a remote failure further down a chain passes through unchanged. A call
//! runs inside the call chain it carried, so a call back into an instance already on it (A ->
//! B -> A across runtimes) fails at once with `Reentrant` instead of waiting for its caller.
//!
//! `serve` accepts TCP or Unix connections for an `Exports` until its `stop` future completes,
//! then stops accepting, lets every call in flight finish and reply, and closes.

use std::sync::Arc;

use dashmap::DashSet;
use exorun_core::instance;
use exorun_core::registry;
use exorun_core::registry::Runtime;
use exorun_transport::client;
use exorun_transport::net::Listener;
use exorun_transport::serve as serve_loop;
use exorun_transport::transport;
use exorun_transport::transport::BoxFuture;
use neorpc::codec;
use neorpc::error::Failure;
use neorpc::frame;
use tokio::task::JoinSet;
use wasmtime::component::Val;

/// The instances of a runtime that remote callers may reach.
pub struct Exports {
    runtime: Arc<Runtime>,
    exported: DashSet<String>,
}

impl Exports {
    /// Exports nothing yet.
    pub fn new(runtime: Arc<Runtime>) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            exported: DashSet::new(),
        })
    }

    /// Makes the instance registered as `name` reachable by remote callers.
    pub fn export(&self, name: &str) -> Result<(), registry::Error> {
        self.runtime.instance_named(name)?;
        self.exported.insert(name.to_owned());
        Ok(())
    }

    /// Makes `name` unreachable again; calls in flight finish.
    pub fn unexport(&self, name: &str) {
        self.exported.remove(name);
    }

    /// The exported names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.exported.iter().map(|name| name.clone()).collect();
        names.sort();
        names
    }

    async fn run(&self, call: &frame::Call<'_>) -> Result<Vec<u8>, Failure> {
        let (target, method) = (call.target, call.method);
        let instance_not_found = || Failure::InstanceNotFound {
            instance: target.to_owned(),
        };
        if !self.exported.contains(target) {
            return Err(instance_not_found());
        }
        let handle = self
            .runtime
            .instance_named(target)
            .map_err(|_| instance_not_found())?;
        let method_not_found = || Failure::MethodNotFound {
            method: method.to_owned(),
        };
        let (interface, function) = method.split_once('#').ok_or_else(method_not_found)?;
        let signature = handle
            .ledger()
            .exports
            .get(interface)
            .and_then(|exported| exported.functions.get(function))
            .ok_or_else(method_not_found)?;
        let types = signature.params.iter().map(|(_, ty)| ty);
        let limits = codec::Limits::default();
        let params = codec::decode_args(call.args, types, &limits).map_err(bad_arguments)?;
        let mut results = vec![Val::Bool(false); signature.results.len()];
        let work = handle.call(interface, function, &params, &mut results);
        let called = instance::within_chain(call.chain.clone(), work).await;
        if let Err(error) = called {
            // The target itself re-entered: name it as the caller addressed it.
            if let instance::Error::Reentrant { instance } = &error
                && *instance == handle.id()
            {
                let instance = target.to_owned();
                return Err(Failure::Reentrant { instance });
            }
            return Err(failure(&error));
        }
        codec::encode(&results).map_err(|error| Failure::Internal {
            message: format!("cannot encode the results: {error}"),
        })
    }
}

impl serve_loop::Dispatcher for Exports {
    fn dispatch<'a>(
        &'a self,
        call: &'a frame::Call<'a>,
    ) -> BoxFuture<'a, Result<Vec<u8>, Failure>> {
        Box::pin(self.run(call))
    }
}

fn bad_arguments(error: neorpc::error::Error) -> Failure {
    if let neorpc::error::Error::CountMismatch { expected, found } = error {
        return Failure::BadArgumentCount {
            expected: u32::try_from(expected).unwrap_or(u32::MAX),
            found: u32::try_from(found).unwrap_or(u32::MAX),
        };
    }
    if let neorpc::error::Error::Argument { index, source } = &error {
        return Failure::BadArgumentType {
            index: *index,
            message: source.to_string(),
        };
    }
    Failure::ProtocolViolation {
        message: format!("the argument slab is malformed: {error}"),
    }
}

/// The failure reason a remote caller sees for an instance error.
pub fn failure(error: &instance::Error) -> Failure {
    match error {
        instance::Error::NotFound { instance } => Failure::InstanceNotFound {
            instance: instance.to_string(),
        },
        instance::Error::ExportNotFound {
            interface,
            function,
        } => Failure::MethodNotFound {
            method: format!("{interface}#{function}"),
        },
        instance::Error::Busy { .. } => Failure::Overloaded,
        instance::Error::Reentrant { instance } => Failure::Reentrant {
            instance: instance.to_string(),
        },
        instance::Error::OutOfFuel => Failure::OutOfFuel,
        instance::Error::OutOfMemory { .. } => Failure::OutOfMemory,
        instance::Error::Domain(domain) => Failure::DomainSpecific {
            code: domain.code,
            message: domain.message.clone(),
        },
        instance::Error::Remote {
            error: client::Error::Remote(failure),
            ..
        } => failure.clone(),
        instance::Error::Remote { .. } => Failure::Internal {
            message: error.to_string(),
        },
        instance::Error::Failed { .. }
        | instance::Error::Trapped { .. }
        | instance::Error::Host { .. } => Failure::AppTrapped {
            message: error.to_string(),
        },
    }
}

/// Pause after a failed accept, so a shortage of file descriptors does not spin the loop.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(10);

/// Accepts connections on `listener` and serves `exports` on each until `stop` completes; then
/// stops accepting, lets calls in flight finish and reply, closes every connection and returns.
pub async fn serve(
    exports: Arc<Exports>,
    listener: Listener,
    stop: impl Future<Output = ()> + Send,
) {
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let connection = tokio::select! {
            biased;
            () = &mut stop => break,
            connection = listener.accept(transport::MESSAGE_BYTES_MAX) => connection,
        };
        while connections.try_join_next().is_some() {}
        let connection = match connection {
            Ok(connection) => connection,
            Err(error) => {
                // Accept errors concern one connection or a passing shortage (aborted
                // handshakes, too many open files): back off briefly and keep listening.
                tracing::warn!(%error, "accept failed; still listening");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let mut stopped = stopped.clone();
        let dispatcher: Arc<dyn serve_loop::Dispatcher> = exports.clone();
        connections.spawn(async move {
            let until = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let served = serve_loop::run_until(
                connection,
                dispatcher,
                serve_loop::CALLS_IN_FLIGHT_MAX,
                until,
            )
            .await;
            if let Err(error) = served {
                tracing::info!(%error, "connection ended");
            }
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    while connections.join_next().await.is_some() {}
}
