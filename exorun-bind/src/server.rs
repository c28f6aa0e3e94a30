//! Serving instances to remote callers.
//!
//! `Exports` is the neorpc dispatcher over one runtime: a call's `target` names an instance
//! that was explicitly exported (nothing else is reachable, registered or not) and its `method`
//! names `interface#function` (`#function` for a root export). Both are resolved as the call
//! arrives, from the one decode the serving loop made; the call's future keeps the argument
//! slab as a slice of the frame, decodes it against the export's own parameter types when it
//! runs, and writes the results straight into the reply frame. Each way a call can fail has its
//! exact reason: unknown instance or method, wrong argument count or type, trap, fuel, memory, a
//! rejection's code; a remote failure further down a chain (a relay's own remote import) passes
//! through unchanged, and a named link that finds no instance says so. A call runs inside the
//! call chain it carried, so a call back into an instance already on it (A -> B -> A across
//! runtimes) fails at once with `Reentrant` instead of waiting for its caller.
//!
//! `serve` accepts connections for an `Exports` until its `stop` future completes, then stops
//! accepting, lets every call in flight finish and reply, and closes.

use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashSet;
use exorun_core::chain;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::registry;
use exorun_core::registry::Export;
use exorun_core::registry::Runtime;
use exorun_transport::client;
use exorun_transport::net::Listener;
use exorun_transport::serve;
use exorun_transport::transport;
use exorun_transport::transport::BoxFuture;
use neorpc::codec;
use neorpc::failure::Failure;
use neorpc::frame;
use tokio::task::JoinSet;
use wasmtime::component::Val;

use crate::binder;
use crate::remote;

/// Pause after a failed accept, so a shortage of file descriptors does not spin the loop.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(10);

/// The instances of a runtime that remote callers may reach.
pub struct Exports {
    runtime: Arc<Runtime>,
    exported: DashSet<String>,
}

/// A call resolved to its instance and function, waiting to run.
struct Job {
    seq: frame::Seq,
    handle: InstanceHandle,
    export: Export,
    args: Bytes,
    chain: Vec<chain::Hop>,
    caller: serve::Caller,
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

    /// The exported names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.exported.iter().map(|name| name.clone()).collect();
        names.sort();
        names
    }

    /// Resolves a call's target and method, or says which one is unknown.
    fn resolve(
        &self,
        call: &frame::Call<'_>,
        frame: &Bytes,
        caller: &serve::Caller,
    ) -> Result<Job, Failure> {
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
        let export = handle.app().export(interface, function);
        let export = export.ok_or_else(method_not_found)?;
        Ok(Job {
            seq: call.seq,
            handle,
            export,
            args: frame.slice_ref(call.args),
            chain: remote::from_wire(&call.chain),
            caller: caller.clone(),
        })
    }
}

impl serve::Dispatcher for Exports {
    fn dispatch(
        &self,
        call: frame::Call<'_>,
        frame: &Bytes,
        caller: &serve::Caller,
    ) -> BoxFuture<'static, serve::Outcome> {
        match self.resolve(&call, frame, caller) {
            Ok(job) => Box::pin(job.run()),
            Err(failure) => Box::pin(std::future::ready(Err(failure))),
        }
    }
}

impl Job {
    /// Waits for an instance (its argument slab counted as waiting bytes), then, if the caller
    /// is still there, decodes the arguments, runs the call inside its chain and writes the
    /// reply frame.
    async fn run(mut self) -> serve::Outcome {
        let chain = std::mem::take(&mut self.chain);
        chain::within(chain, self.lease_and_call()).await
    }

    async fn lease_and_call(self) -> serve::Outcome {
        let weight = u64::try_from(self.args.len()).unwrap_or(u64::MAX);
        let lease = self.handle.lease(weight).await;
        let lease = lease.map_err(|error| self.failure(&error))?;
        if self.caller.is_gone() {
            return Err(Failure::Internal {
                message: "the caller went away before the call started".to_owned(),
            });
        }
        let signature = self.export.signature();
        let types = signature.params.iter().map(|(_, ty)| ty);
        let limits = codec::Limits::default();
        let params = codec::decode_args(&self.args, types, &limits).map_err(bad_arguments)?;
        drop(self.args);
        let mut results = vec![Val::Bool(false); signature.results.len()];
        let called = lease.call(&self.export, &params, &mut results).await;
        if let Err(error) = called {
            return Err(failure_of(&self.handle, &error));
        }
        let mut reply = frame::ReplyWriter::new(self.seq).map_err(internal)?;
        codec::encode_into(reply.results(), &results, &limits).map_err(|error| {
            Failure::Internal {
                message: format!("cannot encode the results: {error}"),
            }
        })?;
        reply.finish().map_err(internal)
    }

    fn failure(&self, error: &instance::Error) -> Failure {
        failure_of(&self.handle, error)
    }
}

/// The failure reason for an error of a call on `handle`; the target itself re-entered is
/// named as the caller addressed it.
fn failure_of(handle: &InstanceHandle, error: &instance::Error) -> Failure {
    let itself =
        matches!(error, instance::Error::Reentrant { instance } if *instance == handle.id());
    if let (true, Some(name)) = (itself, handle.name()) {
        let instance = name.to_owned();
        return Failure::Reentrant { instance };
    }
    failure(error)
}

/// A reply frame that could not be finished: over the frame limit (named with its size and
/// the limit), or refused by the encoder.
fn internal(error: frame::Error) -> Failure {
    if let frame::Error::FrameTooLarge { frame_bytes, max } = error {
        return Failure::ReplyTooLarge {
            reply_bytes: frame_bytes,
            max,
        };
    }
    Failure::Internal {
        message: format!("cannot build the reply: {error}"),
    }
}

fn bad_arguments(error: codec::Error) -> Failure {
    if let codec::Error::CountMismatch { expected, found } = error {
        return Failure::BadArgumentCount {
            expected: u32::try_from(expected).unwrap_or(u32::MAX),
            found: u32::try_from(found).unwrap_or(u32::MAX),
        };
    }
    if let codec::Error::Argument { index, source } = &error {
        return Failure::BadArgumentType {
            index: *index,
            message: source.to_string(),
        };
    }
    Failure::ProtocolViolation {
        message: format!("the argument slab is malformed: {error}"),
    }
}

/// The failure reason a remote caller sees for an instance error. A remote failure that a
/// linked import raised is passed on as it came (the same value, not re-classified).
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
        instance::Error::Busy { .. }
        | instance::Error::TooManyWaiting { .. }
        | instance::Error::TooManyBytesWaiting { .. } => Failure::Overloaded,
        // During a back-off the caller gets the failure that caused it.
        instance::Error::BackingOff { cause, .. } => failure(cause),
        instance::Error::Reentrant { instance } => Failure::Reentrant {
            instance: instance.to_string(),
        },
        instance::Error::OutOfFuel => Failure::OutOfFuel,
        instance::Error::OutOfMemory { .. } => Failure::OutOfMemory,
        instance::Error::Rejected(rejection) => Failure::DomainSpecific {
            code: rejection.code,
            message: rejection.message.clone(),
        },
        instance::Error::Raised(raised) => raised_failure(raised),
        instance::Error::Failed { .. }
        | instance::Error::Interrupted
        | instance::Error::Trapped { .. }
        | instance::Error::Host { .. } => Failure::AppTrapped {
            message: error.to_string(),
        },
    }
}

/// What a host function raised, as a remote caller sees it: a remote failure as it came, a link
/// that could not reach its provider as an internal failure, a missing named instance as
/// not found, anything else as a trap (the guest was unwound by it).
fn raised_failure(raised: &instance::Raised) -> Failure {
    let message = || raised.to_string();
    if let Some(client_error) = remote::client_error(raised) {
        return match client_error {
            client::Error::Remote(failure) => failure.clone(),
            client::Error::Timeout { .. }
            | client::Error::PeerClosed
            | client::Error::Overloaded { .. }
            | client::Error::Frame(_)
            | client::Error::Transport(_) => Failure::Internal { message: message() },
        };
    }
    if raised.downcast_ref::<remote::Error>().is_some() {
        return Failure::Internal { message: message() };
    }
    match raised.downcast_ref::<binder::Unresolved>() {
        Some(binder::Unresolved::Missing { name }) => Failure::InstanceNotFound {
            instance: name.clone(),
        },
        Some(binder::Unresolved::OtherApp { .. }) => Failure::Internal { message: message() },
        None => Failure::AppTrapped { message: message() },
    }
}

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
        let dispatcher: Arc<dyn serve::Dispatcher> = exports.clone();
        connections.spawn(async move {
            let until = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let served =
                serve::connection_until(connection, dispatcher, serve::CALLS_IN_FLIGHT_MAX, until)
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
