//! Serving one connection: reads call frames from a transport, decodes each once, hands it to a
//! `dispatch::Dispatcher`, runs calls concurrently up to a bound, and writes each reply. It
//! knows nothing of what a call means (the dispatcher does) nor of sockets (the `server`
//! accepts them and serves each here).
//!
//! Bad input never panics the loop: a frame of an unknown kind is skipped (room for later
//! message kinds); any other malformed frame whose sequence number can still be read gets a
//! `ProtocolViolation` reply; a frame without a readable sequence number closes the
//! connection, since nothing can be answered. Frames a server has no use for (stray replies,
//! unknown kinds) are counted and logged at most once a second across the process, so a flood
//! of them cannot flood the log. When the transport ends, calls already running finish and
//! their replies are attempted before the loop returns.
//!
//! A connection with no call in flight that stays silent for the idle timeout is closed
//! (`Error::Idle`); one that has not made its first call within the first-call timeout is
//! closed too, however many pings it sends (`Error::NoCall`): a caller connects to call, so a
//! connection that does not costs its slot only briefly. A frame that does not arrive whole
//! within its deadline closes the connection (the transport's `FrameDeadline`).
//!
//! A `Ping` is answered with a `Pong` (and, like any frame, counts as traffic).
//!
//! A `Release` names a resource handle the caller holds on the connection; the dispatcher
//! drops it and the reply says so (as a call's would). When the connection ends, the
//! dispatcher is told (`Dispatcher::closed`), so it lets go of what the connection held.
//!
//! `serve_until` also stops when its `stop` future completes (a graceful shutdown): it sends a
//! `GoAway` naming the last call it read, reads no further frames, lets the calls already
//! running finish and send their replies, then closes the transport. Calls the peer sent after
//! that one were not read; the go-away tells it so, and it sends them elsewhere.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use neorpc::failure::Failure;
use neorpc::frame;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::dispatch::Dispatcher;
use crate::dispatch::Origin;
use crate::dispatch::Outcome;
use crate::transport;
use crate::transport::Transport;
use exorun_common::BoxFuture;
use exorun_common::Throttle;

/// Default bound on calls running at once per connection; past it the loop stops reading, so a
/// flooding peer is slowed by its own transport instead of growing our task set.
pub const CALLS_IN_FLIGHT_MAX: usize = 256;
/// How long a connection with no call in flight may stay silent by default before it is
/// closed: 10 minutes is generous to peers that hold a connection for occasional calls (and
/// heartbeats, far more frequent, keep healthy peers alive), while a crowd of silent
/// connections is eventually let go.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(600);
/// How long a new connection may go without making its first call by default: a peer
/// connects when a call needs it and sends that call at once, so 10 s covers a slow handshake
/// and a slow link while a socket opened only to hold a slot is let go sixty times sooner than
/// an idle caller.
pub const FIRST_CALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Stray frames (replies, unknown kinds) sent to servers, logged at most once a second.
static STRAY: Throttle = Throttle::new();

/// A connection's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Most calls running at once on the connection.
    pub calls_in_flight_max: usize,
    /// Longest silence of a connection with no call in flight (`None`: no bound).
    pub idle_timeout: Option<Duration>,
    /// Longest a connection may go before its first call, counted from its start (`None`: no
    /// bound beyond the idle timeout).
    pub first_call_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            calls_in_flight_max: CALLS_IN_FLIGHT_MAX,
            idle_timeout: Some(IDLE_TIMEOUT_DEFAULT),
            first_call_timeout: Some(FIRST_CALL_TIMEOUT_DEFAULT),
        }
    }
}

/// Why a connection stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A frame without a readable sequence number: the connection was closed.
    #[error("malformed frame without a sequence number: {0}")]
    Malformed(frame::Error),
    /// The transport failed while receiving (a frame past its deadline included).
    #[error("transport: {0}")]
    Transport(transport::Error),
    /// The connection had no call in flight and said nothing for the idle timeout.
    #[error("idle for {idle_ms} ms with no call in flight")]
    Idle {
        /// The idle timeout, in milliseconds.
        idle_ms: u64,
    },
    /// The connection made no call within the first-call timeout.
    #[error("no call within {timeout_ms} ms of connecting")]
    NoCall {
        /// The first-call timeout, in milliseconds.
        timeout_ms: u64,
    },
}

/// What serving one connection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls dispatched.
    pub calls: u64,
    /// Protocol-violation replies sent for malformed frames.
    pub violations: u64,
    /// Frames of unknown kinds (or stray replies) skipped.
    pub skipped: u64,
    /// Pings answered.
    pub pings: u64,
    /// The highest seq of a call read (what a go-away names).
    pub last_seq: u64,
}

/// Serves calls from `transport` until it closes; see the module doc for bad input.
pub async fn serve(
    transport: Arc<dyn Transport>,
    dispatcher: Arc<dyn Dispatcher>,
    config: Config,
) -> Result<Stats, Error> {
    let never = std::future::pending::<()>();
    serve_until(transport, dispatcher, config, Origin::new(None), never).await
}

/// `serve` for calls from `origin`, until `stop` completes too: then running calls finish and
/// reply, and the transport closes.
pub async fn serve_until(
    transport: Arc<dyn Transport>,
    dispatcher: Arc<dyn Dispatcher>,
    config: Config,
    origin: Origin,
    stop: impl Future<Output = ()> + Send,
) -> Result<Stats, Error> {
    let slots = Arc::new(Semaphore::new(config.calls_in_flight_max));
    let mut running = JoinSet::new();
    let mut stats = Stats::default();
    let mut stop = std::pin::pin!(stop);
    let mut stopped = false;
    let first_call_by = config
        .first_call_timeout
        .map(|timeout| (Instant::now() + timeout, timeout));
    let ended = loop {
        while running.try_join_next().is_some() {}
        let wait = silence_allowed(&config, &stats, running.is_empty(), first_call_by);
        let received = tokio::select! {
            biased;
            () = &mut stop => {
                stopped = true;
                go_away(transport.as_ref(), stats.last_seq).await;
                break Ok(());
            }
            // A call ending may leave none in flight: look again, so the idle clock starts.
            Some(_) = running.join_next(), if !running.is_empty() => continue,
            received = recv_until(transport.as_ref(), wait.as_ref().map(|(at, _)| *at)) => received,
        };
        let Some(received) = received else {
            transport.close().await;
            break Err(wait.map_or(Error::Idle { idle_ms: 0 }, |(_, error)| error));
        };
        let message = match received {
            Ok(Some(message)) => message,
            Ok(None) => break Ok(()),
            Err(error) => break Err(Error::Transport(error)),
        };
        let connection = Connection {
            transport: &transport,
            dispatcher: dispatcher.as_ref(),
            slots: &slots,
            origin: &origin,
        };
        let handled = connection.handle(&mut running, &mut stats, message).await;
        if let Err(error) = handled {
            transport.close().await;
            break Err(error);
        }
    };
    if !stopped {
        // The connection ended: calls still waiting to start will not.
        origin.leave();
    }
    while running.join_next().await.is_some() {}
    if stopped {
        // Drained once the replies have left: a peer that reads none of them keeps this
        // connection open until the server's drain deadline cuts it.
        transport.close().await;
        transport.flushed().await;
    }
    dispatcher.closed(&origin);
    ended.map(|()| stats)
}

/// How long the connection may stay silent now, and what ends it then: the first-call
/// deadline until it made a call, the idle timeout when no call is in flight, else nothing.
fn silence_allowed(
    config: &Config,
    stats: &Stats,
    quiet: bool,
    first_call_by: Option<(Instant, Duration)>,
) -> Option<(Instant, Error)> {
    let now = Instant::now();
    let first = first_call_by
        .filter(|_| stats.calls == 0)
        .map(|(at, timeout)| {
            let timeout_ms = exorun_common::millis(timeout);
            (at, Error::NoCall { timeout_ms })
        });
    let idle = config.idle_timeout.filter(|_| quiet).map(|idle| {
        let idle_ms = exorun_common::millis(idle);
        (now + idle, Error::Idle { idle_ms })
    });
    match (first, idle) {
        (Some(first), Some(idle)) if idle.0 < first.0 => Some(idle),
        (Some(first), _) => Some(first),
        (None, idle) => idle,
    }
}

/// Tells the peer that no call after `last_seq` will be read (so it sends them elsewhere).
async fn go_away(transport: &dyn Transport, last_seq: u64) {
    let Ok(notice) = frame::encode_go_away(frame::Seq(last_seq)) else {
        return;
    };
    if let Err(error) = transport.send(Bytes::from(notice)).await {
        tracing::debug!(%error, "could not send a go-away; the peer is gone");
    }
}

/// The next message, or `None` if `until` passes first (a transport's `recv` is cancel-safe,
/// so nothing is lost when it does).
async fn recv_until(
    transport: &dyn Transport,
    until: Option<Instant>,
) -> Option<Result<Option<Bytes>, transport::Error>> {
    let Some(until) = until else {
        return Some(transport.recv().await);
    };
    tokio::time::timeout_at(until, transport.recv()).await.ok()
}

/// What handling one frame needs from its connection.
struct Connection<'a> {
    transport: &'a Arc<dyn Transport>,
    dispatcher: &'a dyn Dispatcher,
    slots: &'a Arc<Semaphore>,
    origin: &'a Origin,
}

impl Connection<'_> {
    /// Decodes one incoming frame and starts, answers or skips it.
    async fn handle(
        &self,
        running: &mut JoinSet<()>,
        stats: &mut Stats,
        message: Bytes,
    ) -> Result<(), Error> {
        let call = match frame::decode(&message) {
            Ok(frame::Message::Call(call)) => call,
            Ok(frame::Message::Release { seq, handle }) => {
                stats.calls += 1;
                stats.last_seq = stats.last_seq.max(seq.0);
                let work = self.dispatcher.release(seq, handle, self.origin);
                self.start(running, seq, work).await?;
                return Ok(());
            }
            Ok(frame::Message::Ping(seq)) => {
                stats.pings += 1;
                if let Ok(pong) = frame::encode_pong(seq) {
                    let _ = self.transport.send(Bytes::from(pong)).await;
                }
                return Ok(());
            }
            Ok(
                frame::Message::Reply(_) | frame::Message::Pong(_) | frame::Message::GoAway { .. },
            ) => {
                stats.skipped += 1;
                STRAY.note(|skipped| {
                    tracing::warn!(skipped, "skipped a reply or notice sent to a server");
                });
                return Ok(());
            }
            Err(frame::Error::UnknownKind { kind }) => {
                stats.skipped += 1;
                STRAY.note(|skipped| {
                    tracing::info!(kind, skipped, "skipped a frame of an unknown kind");
                });
                return Ok(());
            }
            Err(error) => {
                let seq =
                    frame::decode_seq(&message).map_err(|_| Error::Malformed(error.clone()))?;
                stats.violations += 1;
                let failure = Failure::ProtocolViolation {
                    message: error.to_string(),
                };
                send_reply(self.transport.as_ref(), seq, Err(failure)).await;
                return Ok(());
            }
        };
        stats.calls += 1;
        stats.last_seq = stats.last_seq.max(call.seq.0);
        let (seq, target, method) = (call.seq, call.target, call.method);
        tracing::debug!(seq = seq.0, target, method, "call received");
        let work = self.dispatcher.dispatch(call, &message, self.origin);
        drop(message);
        self.start(running, seq, work).await
    }

    /// Runs `work` (within the bound on calls in flight) and sends its reply to `seq`.
    async fn start(
        &self,
        running: &mut JoinSet<()>,
        seq: frame::Seq,
        work: BoxFuture<'static, Outcome>,
    ) -> Result<(), Error> {
        let slot = Arc::clone(self.slots)
            .acquire_owned()
            .await
            .map_err(|_| Error::Transport(transport::Error::Closed))?;
        let started = std::time::Instant::now();
        let transport = Arc::clone(self.transport);
        running.spawn(async move {
            let outcome = work.await;
            let duration_us = started.elapsed().as_micros();
            let ok = outcome.is_ok();
            tracing::debug!(seq = seq.0, duration_us, ok, "call served");
            send_reply(transport.as_ref(), seq, outcome).await;
            drop(slot);
        });
        Ok(())
    }
}

/// Sends a finished call's reply frame, or encodes and sends its failure (see
/// `failure_reply`), so every call gets a reply.
async fn send_reply(transport: &dyn Transport, seq: frame::Seq, outcome: Outcome) {
    let bytes = match outcome {
        Ok(reply) => reply,
        Err(failure) => failure_reply(seq, &failure),
    };
    if let Err(error) = transport.send(Bytes::from(bytes)).await {
        tracing::debug!(%error, "could not send a reply; the peer is gone");
    }
}

/// The reply frame for a failure. A failure whose message is too long for a frame (the only
/// way encoding one can fail) is answered as an internal failure saying so, which always fits.
pub(crate) fn failure_reply(seq: frame::Seq, failure: &Failure) -> Vec<u8> {
    match frame::encode_reply(seq, Err(failure)) {
        Ok(reply) => reply,
        Err(error) => {
            tracing::warn!(%error, seq = seq.0, "a failure reply did not fit a frame");
            let fallback = Failure::Internal {
                message: format!("the failure could not be encoded: {error}"),
            };
            let encoded = frame::encode_reply(seq, Err(&fallback));
            encoded.expect("a short internal failure always fits a frame")
        }
    }
}
