//! Remote links: an import answered by an instance on another runtime, over neorpc.
//!
//! Each call writes its arguments once, straight into a call frame (`frame::CallWriter` and
//! `codec::encode_into`), with the caller's call chain converted to the wire's hops, hands the
//! frame to the shared `client::Channel` (one connection's `Client`, a `peer::Peer` that
//! reconnects and fails over, or a NATS lattice), and decodes the reply's result slab into
//! wasmtime's result slots against the import's own types.
//!
//! A failure the callee reported is raised as the wire's `Failure` itself, and anything else
//! (a timeout, a closed connection) as the `client::Error`, each with the target and method as
//! context: so a remote trap reaches the calling embedder through two of exorun's types only
//! (`Failure`, inside `instance::Error::Raised`), a serving runtime that runs this guest passes
//! it on to its own caller unchanged (`exports::failure`), and an embedder reads it with
//! `failure_of` (or `instance::Raised::downcast_ref`). One debug line per call (target, method,
//! duration) goes to `exorun_bind::remote`.

use std::sync::Arc;

use exorun_core::chain;
use exorun_core::context::ExorunCtx;
use exorun_core::instance;
use exorun_core::ledger::Signature;
use exorun_core::trace;
use exorun_transport::client;
use exorun_transport::client::Channel;
use exorun_transport::transport::BoxFuture;
use neorpc::codec;
use neorpc::failure::Failure;
use neorpc::frame;
use wasmtime::StoreContextMut;
use wasmtime::component::Type;
use wasmtime::component::Val;

use crate::forward::Forward;
use crate::standins;
use crate::standins::Carry;
use crate::standins::Pin;
use crate::standins::Pinned;

/// Why a remote call could not be made or its reply not read (raised with `client::Error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The arguments could not be encoded (a value the wire cannot carry, or past a limit).
    #[error("cannot encode the arguments: {0}")]
    Arguments(codec::Error),
    /// The call frame could not be built (too large, or a call chain too long).
    #[error("cannot build the call frame: {0}")]
    Frame(frame::Error),
    /// The reply's results do not decode against the import's result types.
    #[error("the reply's results do not match the import: {0}")]
    Results(codec::Error),
}

/// The wire form of a call chain.
pub(crate) fn to_wire(chain: &[chain::Hop]) -> Vec<frame::Hop> {
    let hops = chain.iter().map(|hop| frame::Hop {
        runtime: hop.runtime,
        instance: hop.instance,
    });
    hops.collect()
}

/// A call chain received from the wire.
pub(crate) fn from_wire(chain: &[frame::Hop]) -> Vec<chain::Hop> {
    let hops = chain.iter().map(|hop| chain::Hop {
        runtime: hop.runtime,
        instance: hop.instance,
    });
    hops.collect()
}

/// One remotely linked function: where calls go and how results decode.
pub(crate) struct Function {
    channel: Arc<dyn Channel>,
    target: String,
    method: String,
    results: Vec<Type>,
    carry: Option<Arc<Carry>>,
    /// Calls that succeeded and durations, counted through handles made with the link (an
    /// embedder installs its metrics recorder before it links).
    ok: metrics::Counter,
    seconds: metrics::Histogram,
}

impl Function {
    pub(crate) fn new(
        channel: &Arc<dyn Channel>,
        target: &str,
        interface: &str,
        function: &str,
        signature: &Signature,
        carry: Option<Arc<Carry>>,
    ) -> Self {
        let method = format!("{interface}#{function}");
        let labels = [("target", target.to_owned()), ("method", method.clone())];
        let mut counted = labels.to_vec();
        counted.push(("outcome", "ok".to_owned()));
        Self {
            channel: Arc::clone(channel),
            target: target.to_owned(),
            method,
            results: signature.results.clone(),
            carry,
            ok: metrics::counter!("exorun_calls_made_total", &counted),
            seconds: metrics::histogram!("exorun_call_made_seconds", &labels),
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
        let mut params = params.to_vec();
        let callee = standins::Callee::Remote {
            channel: &self.channel,
            target: &self.target,
        };
        let pinned = standins::to_callee(
            &mut store,
            &mut params,
            &carry.params,
            &callee,
            &carry.ledger,
        )
        .await?;
        let on = match &pinned {
            Some(Pinned {
                pin: Pin::Session(session),
                ..
            }) => Some(*session),
            Some(pinned) => return Err(pinned.gone()),
            None => None,
        };
        let limits = codec::Limits::default().with_handles();
        let frame = self
            .frame(&params, &limits, span)
            .map_err(|error| self.raise(error))?;
        let timeout = self.channel.timeout();
        let called = self.channel.call_session(frame, timeout, on).await;
        let (slab, session) = match (called, &pinned) {
            (Ok(answered), _) => answered,
            (Err(client::Error::SessionEnded), Some(pinned)) => return Err(pinned.gone()),
            (Err(client::Error::Remote(failure)), _) => return Err(self.raise(failure)),
            (Err(error), _) => return Err(self.raise(error)),
        };
        let decoded = codec::decode_into(&slab, &self.results, results, &limits);
        decoded.map_err(|error| self.raise(Error::Results(error)))?;
        let owner = |value: &Val| {
            let Val::U64(id) = value else {
                return None;
            };
            Some(standins::Owner::Remote {
                channel: Arc::clone(&self.channel),
                target: self.target.clone(),
                session,
                id: *id,
            })
        };
        let (ledger, kinds) = (&carry.ledger, &carry.kinds);
        standins::from_callee(&mut store, results, &carry.results, ledger, kinds, &owner).await
    }

    /// One call: encode, send, wait, decode.
    async fn call(
        &self,
        span: &trace::Span,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let limits = codec::Limits::default();
        let frame = self
            .frame(params, &limits, span)
            .map_err(|error| self.raise(error))?;
        let called = self
            .channel
            .call_within(frame, self.channel.timeout())
            .await;
        let slab = match called {
            Ok(slab) => slab,
            Err(client::Error::Remote(failure)) => return Err(self.raise(failure)),
            Err(error) => return Err(self.raise(error)),
        };
        let decoded = codec::decode_into(&slab, &self.results, results, &limits);
        decoded.map_err(|error| self.raise(Error::Results(error)))
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
        let chain = to_wire(&chain::current());
        let capability = self.channel.capability().map(|bytes| &bytes[..]);
        let trace = frame::TraceContext {
            trace_id: span.trace_id,
            parent_id: span.span_id,
            flags: span.flags,
        };
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

impl Forward for Function {
    fn forward<'a>(
        &'a self,
        store: StoreContextMut<'a, ExorunCtx>,
        params: &'a [Val],
        results: &'a mut [Val],
    ) -> BoxFuture<'a, wasmtime::Result<()>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            // This call's span: a child of the caller's, or the root of a new trace.
            let span = match trace::current() {
                Some(current) => {
                    trace::Span::child_of(current.trace_id, current.span_id, current.flags)
                }
                None => trace::Span::root(),
            };
            let outcome = match &self.carry {
                Some(carry) => {
                    self.call_carrying((carry, &span), store, params, results)
                        .await
                }
                None => self.call(&span, params, results).await,
            };
            let (target, method) = (self.target.as_str(), self.method.as_str());
            let elapsed = started.elapsed();
            let duration_us = elapsed.as_micros();
            let ok = outcome.is_ok();
            tracing::debug!(
                target,
                method,
                duration_us,
                ok,
                trace_id = %span.trace_hex(),
                span_id = %span.span_hex(),
                parent_id = %span.parent_hex(),
                "remote call"
            );
            self.seconds.record(elapsed.as_secs_f64());
            if trace::exporting(&span) {
                trace::finish(&trace::Finished {
                    span,
                    kind: trace::Kind::Client,
                    name: "remote call",
                    started: std::time::SystemTime::now() - elapsed,
                    elapsed,
                    attributes: &[("exorun.target", target), ("exorun.method", method)],
                    outcome: outcome_of(&outcome),
                });
            }
            if outcome.is_ok() {
                self.ok.increment(1);
                return outcome;
            }
            let counted = [
                ("target", target.to_owned()),
                ("method", method.to_owned()),
                ("outcome", outcome_of(&outcome).to_owned()),
            ];
            metrics::counter!("exorun_calls_made_total", &counted).increment(1);
            outcome
        })
    }
}

/// How a remote call ended, as a bounded label: `ok`, the callee's failure reason, or why no
/// reply came.
fn outcome_of(outcome: &wasmtime::Result<()>) -> &'static str {
    let Err(error) = outcome else {
        return "ok";
    };
    if let Some(failure) = error.downcast_ref::<Failure>() {
        return failure.name();
    }
    let Some(client_error) = error.downcast_ref::<client::Error>() else {
        return "error";
    };
    match client_error {
        client::Error::Remote(failure) => failure.name(),
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
    raised.downcast_ref::<Failure>()
}

/// Why a remote link could not get a reply (a timeout, a closed connection, an overloaded
/// client), if it raised `raised` for that.
pub fn client_error(raised: &instance::Raised) -> Option<&client::Error> {
    raised.downcast_ref::<client::Error>()
}
