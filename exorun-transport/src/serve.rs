//! The serving loop: reads call frames from a transport, hands each to a `Dispatcher`, runs
//! calls concurrently up to a bound, and writes each reply with its call's sequence number.
//!
//! Bad input never panics the loop: a frame of an unknown kind is logged and skipped (room for
//! later message kinds); any other malformed frame whose sequence number can still be read gets
//! a `ProtocolViolation` reply; a frame without a readable sequence number closes the
//! connection, since nothing can be answered. When the transport ends, calls already running
//! finish and their replies are attempted before the loop returns.
//!
//! `run_until` also stops when its `stop` future completes (a graceful shutdown): it reads no
//! further frames, lets the calls already running finish and send their replies, then closes
//! the transport. A frame half-read at that moment was never a call in flight and gets no reply.

use std::sync::Arc;

use bytes::Bytes;
use neorpc::error::Failure;
use neorpc::frame;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::transport;
use crate::transport::BoxFuture;
use crate::transport::Transport;

/// Default bound on calls running at once per connection; past it the loop stops reading, so a
/// flooding peer is slowed by its own transport instead of growing our task set.
pub const CALLS_IN_FLIGHT_MAX: usize = 256;

/// Runs calls for the serving loop.
pub trait Dispatcher: Send + Sync {
    /// Runs `call.method` on `call.target` with its encoded argument slab (and the chain of
    /// calls it is nested in); returns the result slab or why the call failed.
    fn dispatch<'a>(&'a self, call: &'a frame::Call<'a>)
    -> BoxFuture<'a, Result<Vec<u8>, Failure>>;
}

/// Why the serving loop stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A frame without a readable sequence number: the connection was closed.
    #[error("malformed frame without a sequence number: {0}")]
    Malformed(neorpc::error::Error),
    /// The transport failed while receiving.
    #[error("transport: {0}")]
    Transport(transport::Error),
}

/// What one connection's loop did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls dispatched.
    pub calls: u64,
    /// Protocol-violation replies sent for malformed frames.
    pub violations: u64,
    /// Frames of unknown kinds (or stray replies) skipped.
    pub skipped: u64,
}

/// Serves calls from `transport` until it closes; see the module doc for bad input.
pub async fn serve(
    transport: Arc<dyn Transport>,
    dispatcher: Arc<dyn Dispatcher>,
    calls_in_flight_max: usize,
) -> Result<Stats, Error> {
    let never = std::future::pending::<()>();
    run_until(transport, dispatcher, calls_in_flight_max, never).await
}

/// `serve`, until `stop` completes too: then running calls finish and reply, and the transport
/// closes.
pub async fn run_until(
    transport: Arc<dyn Transport>,
    dispatcher: Arc<dyn Dispatcher>,
    calls_in_flight_max: usize,
    stop: impl Future<Output = ()> + Send,
) -> Result<Stats, Error> {
    let slots = Arc::new(Semaphore::new(calls_in_flight_max));
    let mut running = JoinSet::new();
    let mut stats = Stats::default();
    let mut stop = std::pin::pin!(stop);
    let mut stopped = false;
    let ended = loop {
        let received = tokio::select! {
            biased;
            () = &mut stop => {
                stopped = true;
                break Ok(());
            }
            received = transport.recv() => received,
        };
        let message = match received {
            Ok(Some(message)) => message,
            Ok(None) => break Ok(()),
            Err(error) => break Err(Error::Transport(error)),
        };
        while running.try_join_next().is_some() {}
        let handled = handle(
            &transport,
            &dispatcher,
            &slots,
            &mut running,
            &mut stats,
            message,
        )
        .await;
        if let Err(error) = handled {
            transport.close().await;
            break Err(error);
        }
    };
    while running.join_next().await.is_some() {}
    if stopped {
        transport.close().await;
    }
    ended.map(|()| stats)
}

/// Classifies one incoming frame and starts, answers or skips it.
async fn handle(
    transport: &Arc<dyn Transport>,
    dispatcher: &Arc<dyn Dispatcher>,
    slots: &Arc<Semaphore>,
    running: &mut JoinSet<()>,
    stats: &mut Stats,
    message: Bytes,
) -> Result<(), Error> {
    match frame::decode(&message) {
        Ok(frame::Message::Call(call)) => {
            let (seq, target, method) = (call.seq.0, call.target, call.method);
            tracing::debug!(seq, target, method, "call received");
        }
        Ok(frame::Message::Reply(reply)) => {
            stats.skipped += 1;
            tracing::warn!(seq = reply.seq.0, "skipped a reply sent to a server");
            return Ok(());
        }
        Err(neorpc::error::Error::UnknownKind { kind }) => {
            stats.skipped += 1;
            tracing::info!(kind, "skipped a frame of an unknown kind");
            return Ok(());
        }
        Err(error) => {
            let seq = frame::decode_seq(&message).map_err(|_| Error::Malformed(error.clone()))?;
            stats.violations += 1;
            let failure = Failure::ProtocolViolation {
                message: error.to_string(),
            };
            send_reply(
                transport.as_ref(),
                frame::ReplyEncoder::fail(seq.0, &failure),
            )
            .await;
            return Ok(());
        }
    }
    stats.calls += 1;
    let slot = Arc::clone(slots)
        .acquire_owned()
        .await
        .map_err(|_| Error::Transport(transport::Error::Closed))?;
    let transport = Arc::clone(transport);
    let dispatcher = Arc::clone(dispatcher);
    running.spawn(async move {
        run_call(transport.as_ref(), dispatcher.as_ref(), &message).await;
        drop(slot);
    });
    Ok(())
}

async fn run_call(transport: &dyn Transport, dispatcher: &dyn Dispatcher, message: &[u8]) {
    let Ok(frame::Message::Call(call)) = frame::decode(message) else {
        return;
    };
    let started = std::time::Instant::now();
    let outcome = dispatcher.dispatch(&call).await;
    let duration_us = started.elapsed().as_micros();
    let (seq, target, method) = (call.seq.0, call.target, call.method);
    let ok = outcome.is_ok();
    tracing::debug!(seq, target, method, duration_us, ok, "call served");
    let reply = match &outcome {
        Ok(results) => frame::ReplyEncoder::ok(call.seq.0, results),
        Err(failure) => frame::ReplyEncoder::fail(call.seq.0, failure),
    };
    send_reply(transport, reply).await;
}

async fn send_reply(transport: &dyn Transport, reply: frame::ReplyEncoder<'_>) {
    let bytes = match reply.encode() {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "could not encode a reply");
            return;
        }
    };
    if let Err(error) = transport.send(&bytes).await {
        tracing::debug!(%error, "could not send a reply; the peer is gone");
    }
}
