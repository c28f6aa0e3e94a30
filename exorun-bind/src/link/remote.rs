//! Remote links: an import answered by an instance on another runtime, over neorpc.
//!
//! [`Function`] is the one way a call is made to another runtime with component values: its
//! arguments are written once, straight into a call frame (`frame::CallWriter` and
//! `codec::encode_into`) with the current call's chain converted to the wire's hops, the
//! channel's capability and the trace context of the call's own span; the frame goes through
//! the shared `client::Channel` (one connection's `Client`, a `peer::Peer` that reconnects and
//! fails over, or a NATS lattice), and the reply's result slab is decoded into the caller's
//! result slots against the result types it was made with. Remote links make their calls so,
//! and so may anyone (the `exorun` command's management calls do).
//!
//! A call ends in one [`Error`] when it does not end in results: the callee's own failure
//! (`Failed`, the wire's `Failure` itself), no reply (`Channel`, a timeout or a closed
//! connection), or values the wire cannot carry either way. A link raises it with the target
//! and method as context: so a remote trap reaches the calling embedder through exorun's types
//! only (inside `instance::Error::Raised`), a serving runtime that runs this guest passes a
//! callee's failure on to its own caller unchanged, and an embedder reads it with
//! [`failure_of`] and [`client_error`] (or `instance::Raised::downcast_ref::<Error>`). Each
//! linked function's calls are observed (counted, timed, logged, traced) by one wrapper.

use std::sync::Arc;

use exorun_common::BoxFuture;
use exorun_core::call;
use exorun_core::context::ExorunCtx;
use exorun_core::instance;
use exorun_core::ledger::Signature;
use exorun_core::trace;
use exorun_transport::client;
use exorun_transport::client::Channel;
use neorpc::codec;
use neorpc::failure::Failure;
use neorpc::frame;
use wasmtime::StoreContextMut;
use wasmtime::component::Type;
use wasmtime::component::Val;

use super::forward::Forward;
use super::standins;
use super::standins::Carry;
use super::standins::Pin;
use super::standins::Pinned;
use crate::observe;
use crate::observe::Observer;
use crate::wire;

/// Why a remote call gave no results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The callee answered with a failure (it trapped, the method does not exist, ...).
    #[error(transparent)]
    Failed(Failure),
    /// No reply came, or none that could be read (a timeout, a closed connection, an
    /// overloaded client).
    #[error(transparent)]
    Channel(client::Error),
    /// The arguments could not be encoded (a value the wire cannot carry, or past a limit).
    #[error("cannot encode the arguments: {0}")]
    Arguments(codec::Error),
    /// The call frame could not be built (too large, or a call chain too long).
    #[error("cannot build the call frame: {0}")]
    Frame(frame::Error),
    /// The reply's results do not decode against the result types.
    #[error("the reply's results do not match the import: {0}")]
    Results(codec::Error),
}

/// A function of an instance on another runtime: where its calls go and how their results
/// decode.
pub struct Function {
    channel: Arc<dyn Channel>,
    target: String,
    method: String,
    results: Vec<Type>,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("target", &self.target)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Function {
    /// `interface#function` of the instance `target` behind `channel`, whose results decode
    /// against `results` (the import's own result types, or the callee component's).
    pub fn new(
        channel: Arc<dyn Channel>,
        target: &str,
        interface: &str,
        function: &str,
        results: Vec<Type>,
    ) -> Self {
        Self {
            channel,
            target: target.to_owned(),
            method: format!("{interface}#{function}"),
            results,
        }
    }

    /// Calls it with `params`, filling `results` (as many slots as result types), within the
    /// channel's time limit; the call is a child span of the current call's (or a new trace's
    /// root).
    pub async fn call(&self, params: &[Val], results: &mut [Val]) -> Result<(), Error> {
        self.call_as(&wire::made_span(), params, results).await
    }

    /// One call as `span`: encode, send, wait, decode.
    async fn call_as(
        &self,
        span: &trace::Span,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<(), Error> {
        let limits = codec::Limits::default();
        let frame = self.frame(params, &limits, span)?;
        let called = self
            .channel
            .call_within(frame, self.channel.timeout())
            .await;
        let slab = called.map_err(Error::Channel)?.map_err(Error::Failed)?;
        let decoded = codec::decode_into(&slab, &self.results, results, &limits);
        decoded.map_err(Error::Results)
    }

    /// The call frame: arguments, the call chain, the capability the channel presents, and the
    /// trace context naming `span` (this call's own span) as the callee's parent.
    fn frame(
        &self,
        params: &[Val],
        limits: &codec::Limits,
        span: &trace::Span,
    ) -> Result<frame::OutboundCall, Error> {
        let mut writer =
            frame::CallWriter::new(&self.target, &self.method).map_err(Error::Frame)?;
        codec::encode_into(writer.args(), params, limits).map_err(Error::Arguments)?;
        let chain = wire::to_wire(&call::chain());
        let capability = self.channel.capability().map(|bytes| &bytes[..]);
        let trace = wire::trace_context(span);
        writer
            .finish_traced(&chain, capability, Some(&trace))
            .map_err(Error::Frame)
    }

    /// The error a failed call raises: the error itself, with where the call went as context.
    fn raise<E>(&self, error: E) -> wasmtime::Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let (target, method) = (&self.target, &self.method);
        wasmtime::Error::new(error).context(format!("remote call {method} on `{target}`"))
    }
}

/// One remotely linked function: its calls, the handles they carry, and their observer.
pub(crate) struct Linked {
    function: Function,
    carry: Option<Arc<Carry>>,
    /// Made with the link (an embedder installs its metrics recorder before it links).
    observer: Observer,
}

impl Linked {
    pub(crate) fn new(
        channel: &Arc<dyn Channel>,
        target: &str,
        interface: &str,
        function: &str,
        signature: &Signature,
        carry: Option<Arc<Carry>>,
    ) -> Self {
        let function = Function::new(
            Arc::clone(channel),
            target,
            interface,
            function,
            signature.results.clone(),
        );
        let observer = Observer::made(target, &function.method);
        Self {
            function,
            carry,
            observer,
        }
    }

    /// One call that carries handles: each stand-in given becomes its id on the session that
    /// made it (the call goes on that session only), and each id returned a new stand-in of the
    /// session that answered.
    async fn call_carrying(
        &self,
        (carry, span): (&Carry, &trace::Span),
        mut store: StoreContextMut<'_, ExorunCtx>,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let function = &self.function;
        let mut params = params.to_vec();
        let callee = standins::Callee::Remote {
            channel: &function.channel,
            target: &function.target,
        };
        let ledger = &carry.ledger;
        let pinned = standins::to_callee(&mut store, &mut params, &carry.params, &callee, ledger);
        let pinned = pinned.await?;
        let on = match &pinned {
            Some(Pinned {
                pin: Pin::Session(session),
                ..
            }) => Some(*session),
            Some(pinned) => return Err(pinned.gone()),
            None => None,
        };
        let limits = codec::Limits::default().with_handles();
        let frame = function
            .frame(&params, &limits, span)
            .map_err(|error| function.raise(error))?;
        let timeout = function.channel.timeout();
        let called = function.channel.call_session(frame, timeout, on).await;
        let (reply, session) = match (called, &pinned) {
            (Ok(answered), _) => answered,
            (Err(client::Error::SessionEnded), Some(pinned)) => return Err(pinned.gone()),
            (Err(error), _) => return Err(function.raise(Error::Channel(error))),
        };
        let slab = reply.map_err(|failure| function.raise(Error::Failed(failure)))?;
        let decoded = codec::decode_into(&slab, &function.results, results, &limits);
        decoded.map_err(|error| function.raise(Error::Results(error)))?;
        let owner = |value: &Val| {
            let Val::U64(id) = value else {
                return None;
            };
            Some(standins::Owner::Remote {
                channel: Arc::clone(&function.channel),
                target: function.target.clone(),
                session,
                id: *id,
            })
        };
        let (ledger, kinds) = (&carry.ledger, &carry.kinds);
        standins::from_callee(&mut store, results, &carry.results, ledger, kinds, &owner).await
    }
}

impl Forward for Linked {
    fn forward<'a>(
        &'a self,
        store: StoreContextMut<'a, ExorunCtx>,
        params: &'a [Val],
        results: &'a mut [Val],
    ) -> BoxFuture<'a, wasmtime::Result<()>> {
        Box::pin(async move {
            let span = wire::made_span();
            let call: BoxFuture<'_, wasmtime::Result<()>> = match &self.carry {
                Some(carry) => Box::pin(self.call_carrying((carry, &span), store, params, results)),
                None => Box::pin(async {
                    let called = self.function.call_as(&span, params, results).await;
                    called.map_err(|error| self.function.raise(error))
                }),
            };
            self.observer.observe(span, call).await
        })
    }
}

impl observe::Outcome for wasmtime::Result<()> {
    /// `ok`, the callee's failure reason, or why no reply came.
    fn outcome(&self) -> &'static str {
        let Err(error) = self else {
            return "ok";
        };
        match error.downcast_ref::<Error>() {
            Some(Error::Failed(failure)) => failure.name(),
            Some(Error::Channel(client_error)) => channel_outcome(client_error),
            Some(Error::Arguments(_) | Error::Frame(_) | Error::Results(_)) | None => "error",
        }
    }
}

fn channel_outcome(error: &client::Error) -> &'static str {
    match error {
        client::Error::Timeout { .. } => "timeout",
        client::Error::PeerClosed => "peer_closed",
        client::Error::Unresponsive { .. } => "unresponsive",
        client::Error::Overloaded { .. } => "client_overloaded",
        client::Error::SessionEnded => "session_ended",
        client::Error::Unread(_) | client::Error::Frame(_) => "bad_reply",
        client::Error::Transport(_) => "transport",
    }
}

/// The failure the remote callee reported, if a remote link raised `raised` for one.
pub fn failure_of(raised: &instance::Raised) -> Option<&Failure> {
    let Some(Error::Failed(failure)) = raised.downcast_ref::<Error>() else {
        return None;
    };
    Some(failure)
}

/// Why a remote link could not get a reply (a timeout, a closed connection, an overloaded
/// client), if it raised `raised` for that.
pub fn client_error(raised: &instance::Raised) -> Option<&client::Error> {
    let Some(Error::Channel(error)) = raised.downcast_ref::<Error>() else {
        return None;
    };
    Some(error)
}
