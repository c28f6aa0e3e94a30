//! Serving instances to remote callers.
//!
//! `Exports` is the neorpc dispatcher over one runtime: a call's `target` names an instance
//! that was explicitly exported (nothing else is reachable, registered or not) and its `method`
//! names `interface#function` (`#function` for a root export). An export may name who may call
//! it (`Allow::Keys`: node keys, each to all or some interfaces); a caller not allowed, or an
//! anonymous one on a plaintext connection, is answered `PermissionDenied` before anything is
//! decoded. Both are resolved as the call arrives, from the one decode the serving loop made; the call's future keeps the argument
//! slab as a slice of the frame, decodes it against the export's own parameter types when it
//! runs, and writes the results straight into the reply frame. Each way a call can fail has its
//! exact reason: unknown instance or method, wrong argument count or type, trap, fuel, memory, a
//! rejection's code; a remote failure further down a chain (a relay's own remote import) passes
//! through unchanged, and a named link that finds no instance says so. A call runs inside the
//! call chain it carried, so a call back into an instance already on it (A -> B -> A across
//! runtimes) fails at once with `Reentrant` instead of waiting for its caller, and as its
//! caller's principal (`exorun_core::caller`: the node key its connection authenticated with),
//! so host functions on its path can see who calls.
//!
//! `serve` accepts connections for an `Exports` as its `Config` says, until its `stop` future
//! completes: at most `connections_max` connections (kept under the descriptor limit; one more
//! is closed at once, before any handshake, with a log line at most once a second), each held
//! to the frame deadline (its TLS or QUIC handshake included),
//! the idle timeout and a byte budget all connections share. Then it stops accepting, lets
//! calls in flight finish and reply for at most the drain timeout, and closes every connection.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use exorun_core::caller;
use exorun_core::chain;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::registry;
use exorun_core::registry::Export;
use exorun_core::registry::Runtime;
use exorun_transport::budget;
use exorun_transport::budget::Budget;
use exorun_transport::client;
use exorun_transport::identity::PublicKey;
use exorun_transport::net;
use exorun_transport::net::Listener;
use exorun_transport::serve;
use exorun_transport::stream;
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
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Who may call an export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Allow {
    /// Any caller that can connect, authenticated or not.
    #[default]
    Anyone,
    /// Only callers authenticated with one of these node keys, each to the interfaces listed
    /// (`None`: every interface).
    Keys(BTreeMap<PublicKey, Option<BTreeSet<String>>>),
}

impl Allow {
    /// Whether a caller authenticated as `key` (`None`: anonymous) may call `interface`.
    pub fn permits(&self, key: Option<&PublicKey>, interface: &str) -> bool {
        let Allow::Keys(keys) = self else {
            return true;
        };
        let Some(interfaces) = key.and_then(|key| keys.get(key)) else {
            return false;
        };
        interfaces
            .as_ref()
            .is_none_or(|interfaces| interfaces.contains(interface))
    }
}

/// The instances of a runtime that remote callers may reach, and who may reach each.
pub struct Exports {
    runtime: Arc<Runtime>,
    exported: DashMap<String, Allow>,
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
            exported: DashMap::new(),
        })
    }

    /// Makes the instance registered as `name` reachable by any remote caller.
    pub fn export(&self, name: &str) -> Result<(), registry::Error> {
        self.export_allowing(name, Allow::Anyone)
    }

    /// Makes the instance registered as `name` reachable by the callers `allow` names.
    pub fn export_allowing(&self, name: &str, allow: Allow) -> Result<(), registry::Error> {
        self.runtime.instance_named(name)?;
        self.exported.insert(name.to_owned(), allow);
        Ok(())
    }

    /// The exported names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .exported
            .iter()
            .map(|entry| entry.key().clone())
            .collect();
        names.sort();
        names
    }

    /// The exported names that only some keys may call (so they are reachable only over
    /// authenticated connections), sorted.
    pub fn restricted(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .exported
            .iter()
            .filter(|entry| matches!(entry.value(), Allow::Keys(_)))
            .map(|entry| entry.key().clone())
            .collect();
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
        let Some(allow) = self.exported.get(target).map(|entry| entry.value().clone()) else {
            return Err(instance_not_found());
        };
        let method_not_found = || Failure::MethodNotFound {
            method: method.to_owned(),
        };
        let (interface, function) = method.split_once('#').ok_or_else(method_not_found)?;
        if !allow.permits(caller.key(), interface) {
            return Err(Failure::PermissionDenied {
                instance: target.to_owned(),
                interface: interface.to_owned(),
            });
        }
        let handle = self
            .runtime
            .instance_named(target)
            .map_err(|_| instance_not_found())?;
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
        let principal = self.caller.key().map(ToString::to_string);
        caller::within(principal, chain::within(chain, self.lease_and_call())).await
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
            | client::Error::Unresponsive { .. }
            | client::Error::Unread(_)
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

/// Most connections served at once by default (when the descriptor limit allows): thousands of
/// callers, well under the usual 65,536 descriptors, each connection holding at most its read
/// buffer and its calls' frames within the byte budget.
pub const CONNECTIONS_MAX_DEFAULT: usize = 4096;
/// Descriptors kept out of the connection cap for everything else a runtime opens (listeners,
/// component files, outgoing links, WASI preopens).
const DESCRIPTORS_RESERVED: u64 = 64;
/// How long a stopping server lets calls in flight finish by default, before it closes what is
/// left: 10 s covers real calls, and a peer that never reads its replies cannot hold a stop
/// for longer.
pub const DRAIN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// At most one log line per this long for a repeated refusal or accept failure (with how many
/// were not logged), so a flood cannot flood the log.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// What a server holds its peers to.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most connections served at once; one more is accepted and closed at once. Kept under
    /// the process's descriptor limit less a reserve.
    pub connections_max: usize,
    /// How every connection reads: largest frame, frame deadline, and the byte budget that all
    /// connections share (partly read frames and calls waiting to run).
    pub stream: stream::Config,
    /// Each connection's serving loop: calls in flight and idle timeout.
    pub serve: serve::Config,
    /// How long a stop waits for calls in flight before it closes what is left.
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            connections_max: CONNECTIONS_MAX_DEFAULT,
            stream: stream::Config {
                message_bytes_max: transport::MESSAGE_BYTES_MAX,
                frame_deadline: Some(stream::FRAME_DEADLINE_DEFAULT),
                budget: Some(Budget::new(budget::BUDGET_BYTES_DEFAULT)),
            },
            serve: serve::Config::default(),
            drain_timeout: DRAIN_TIMEOUT_DEFAULT,
        }
    }
}

/// How a server's stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Connections still open when the drain timeout passed, closed with their calls.
    pub cut: usize,
}

/// The connection cap `config` asks for, under the process's descriptor limit.
pub fn connection_cap(config: &Config) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let Some(limit) = limit else {
        return config.connections_max;
    };
    let usable = usize::try_from(limit.saturating_sub(DESCRIPTORS_RESERVED)).unwrap_or(usize::MAX);
    config.connections_max.min(usable.max(1))
}

/// Accepts connections on `listeners` and serves `exports` on each, as `config` says (the cap
/// and the budget count all of them together), until `stop` completes; then stops accepting,
/// lets calls in flight finish and reply for at most the drain timeout, closes every connection
/// (cutting what is left) and returns how it went.
pub async fn serve(
    exports: Arc<Exports>,
    listeners: Vec<Listener>,
    config: Config,
    stop: impl Future<Output = ()> + Send,
) -> Stopped {
    let cap = connection_cap(&config);
    let (sockets, mut accepted) = tokio::sync::mpsc::channel(listeners.len().max(1));
    let mut accepting = JoinSet::new();
    for listener in listeners {
        accepting.spawn(accept_into(listener, sockets.clone()));
    }
    drop(sockets);
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    let mut refusals = RateLimited::default();
    loop {
        let socket = tokio::select! {
            biased;
            () = &mut stop => break,
            socket = accepted.recv() => socket,
        };
        let Some(socket) = socket else {
            break; // every listener failed for good
        };
        while connections.try_join_next().is_some() {}
        if connections.len() >= cap {
            drop(socket);
            refusals.note(|skipped| {
                tracing::warn!(cap, skipped, "refused a connection: at the connection cap");
            });
            continue;
        }
        let dispatcher: Arc<dyn serve::Dispatcher> = exports.clone();
        connections.spawn(connection(
            socket,
            dispatcher,
            (config.stream.clone(), config.serve),
            stopped.clone(),
        ));
    }
    accepting.abort_all();
    while accepting.join_next().await.is_some() {}
    let _ = stopping.send(true);
    drain(connections, config.drain_timeout).await
}

/// Accepts on one listener and hands each socket to the serving loop, until it is dropped.
async fn accept_into(listener: Listener, sockets: tokio::sync::mpsc::Sender<net::Accepted>) {
    let mut failures = RateLimited::default();
    loop {
        let socket = match listener.accept_socket().await {
            Ok(socket) => socket,
            Err(error) => {
                // One connection's failure or a passing shortage (aborted handshakes, too many
                // open files): back off briefly and keep listening.
                failures.note(|skipped| {
                    tracing::warn!(%error, skipped, "accept failed; still listening");
                });
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if sockets.send(socket).await.is_err() {
            return;
        }
    }
}

/// Opens one accepted connection (its handshake within the frame deadline) and serves it
/// until it ends or the server stops.
async fn connection(
    socket: net::Accepted,
    dispatcher: Arc<dyn serve::Dispatcher>,
    (stream, config): (stream::Config, serve::Config),
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let opened = tokio::select! {
        opened = socket.open(stream) => opened,
        _ = stopped.wait_for(|stop| *stop) => return,
    };
    let opened = match opened {
        Ok(opened) => opened,
        Err(error) => {
            tracing::debug!(%error, "could not open an accepted connection");
            return;
        }
    };
    let until = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let transport: Arc<dyn transport::Transport> = opened.transport;
    let served = serve::connection_from(transport, dispatcher, config, opened.peer, until).await;
    match served {
        Ok(_) => {}
        Err(
            error @ (serve::Error::Idle { .. }
            | serve::Error::Transport(transport::Error::FrameDeadline { .. })),
        ) => {
            tracing::debug!(%error, "closed a connection");
        }
        Err(error) => tracing::info!(%error, "connection ended"),
    }
}

/// Waits for the connections to finish their calls, at most `timeout`; then cuts the rest.
async fn drain(mut connections: JoinSet<()>, timeout: Duration) -> Stopped {
    let finished = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(timeout, finished).await.is_ok() {
        return Stopped { cut: 0 };
    }
    let cut = connections.len();
    tracing::warn!(
        cut,
        timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        "drain timeout: closing the connections still open"
    );
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Stopped { cut }
}

/// Logs a repeated event at most once per `LOG_EVERY`, counting the ones not logged.
#[derive(Debug, Default)]
struct RateLimited {
    last: Option<tokio::time::Instant>,
    skipped: u64,
}

impl RateLimited {
    fn note(&mut self, log: impl FnOnce(u64)) {
        let now = tokio::time::Instant::now();
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= LOG_EVERY);
        if !due {
            self.skipped += 1;
            return;
        }
        log(self.skipped);
        self.last = Some(now);
        self.skipped = 0;
    }
}
