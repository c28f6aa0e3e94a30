//! The serving loop: reads call frames from a transport, decodes each once, hands it to a
//! `Dispatcher`, runs calls concurrently up to a bound, and writes each reply.
//!
//! Bad input never panics the loop: a frame of an unknown kind is logged and skipped (room for
//! later message kinds); any other malformed frame whose sequence number can still be read gets
//! a `ProtocolViolation` reply; a frame without a readable sequence number closes the
//! connection, since nothing can be answered. When the transport ends, calls already running
//! finish and their replies are attempted before the loop returns.
//!
//! A connection with no call in flight that stays silent for the idle timeout is closed
//! (`Error::Idle`); a frame that does not arrive whole within its deadline closes it too (the
//! transport's `FrameDeadline`).
//!
//! A `Ping` is answered with a `Pong` (and, like any frame, counts as traffic).
//!
//! `connection_until` also stops when its `stop` future completes (a graceful shutdown): it
//! sends a `GoAway` naming the last call it read, reads no further frames, lets the calls
//! already running finish and send their replies, then closes the transport. Calls the peer
//! sent after that one were not read; the go-away tells it so, and it sends them elsewhere.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use neorpc::failure::Failure;
use neorpc::frame;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::identity::PublicKey;
use crate::transport;
use crate::transport::BoxFuture;
use crate::transport::Transport;

/// Default bound on calls running at once per connection; past it the loop stops reading, so a
/// flooding peer is slowed by its own transport instead of growing our task set.
pub const CALLS_IN_FLIGHT_MAX: usize = 256;
/// How long a connection with no call in flight may stay silent by default before it is
/// closed: 10 minutes is generous to peers that hold a connection for occasional calls (and
/// heartbeats, far more frequent, keep healthy peers alive), while a crowd of silent
/// connections is eventually let go.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(600);

/// A serving loop's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Most calls running at once on the connection.
    pub calls_in_flight_max: usize,
    /// Longest silence of a connection with no call in flight (`None`: no bound).
    pub idle_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            calls_in_flight_max: CALLS_IN_FLIGHT_MAX,
            idle_timeout: Some(IDLE_TIMEOUT_DEFAULT),
        }
    }
}

/// What a started call ends with: its encoded reply frame, or the failure to reply with.
pub type Outcome = Result<Vec<u8>, Failure>;

/// Runs calls for the serving loop.
pub trait Dispatcher: Send + Sync {
    /// Starts `call`, decoded (once) from `frame`, for `caller`. Whatever the call needs after
    /// this returns it takes out now (the argument slab without copying, as
    /// `frame.slice_ref(call.args)`); the returned future runs the call and yields the whole
    /// reply frame (results written straight into it with `frame::ReplyWriter`) or the failure
    /// to answer with. A call still waiting to start when `caller.is_gone()` should not start.
    fn dispatch(
        &self,
        call: frame::Call<'_>,
        frame: &Bytes,
        caller: &Caller,
    ) -> BoxFuture<'static, Outcome>;
}

/// Who a call came from, as the serving loop knows it: the node key its connection
/// authenticated with (secure listeners only), and whether that connection is still there to
/// take the reply.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    key: Option<PublicKey>,
    gone: Arc<AtomicBool>,
}

impl Caller {
    /// A caller whose connection authenticated as `key` (`None`: a plaintext connection,
    /// an anonymous caller).
    pub fn new(key: Option<PublicKey>) -> Self {
        Self {
            key,
            gone: Arc::default(),
        }
    }

    /// The node key the caller's connection proved it holds; `None` for a plaintext one.
    pub fn key(&self) -> Option<&PublicKey> {
        self.key.as_ref()
    }

    /// Whether the connection the call came on has ended (its reply can no longer arrive).
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    fn leave(&self) {
        self.gone.store(true, Ordering::Release);
    }
}

/// Why the serving loop stopped early.
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
    /// Pings answered.
    pub pings: u64,
    /// The highest seq of a call read (what a go-away names).
    pub last_seq: u64,
}

/// Serves calls from `transport` until it closes; see the module doc for bad input.
pub async fn connection(
    transport: Arc<dyn Transport>,
    dispatcher: Arc<dyn Dispatcher>,
    config: Config,
) -> Result<Stats, Error> {
    let never = std::future::pending::<()>();
    connection_until(transport, dispatcher, config, never).await
}

/// `connection`, until `stop` completes too: then running calls finish and reply, and the
/// transport closes.
pub async fn connection_until(
    transport: Arc<dyn Transport>,
    dispatcher: Arc<dyn Dispatcher>,
    config: Config,
    stop: impl Future<Output = ()> + Send,
) -> Result<Stats, Error> {
    connection_from(transport, dispatcher, config, None, stop).await
}

/// `connection_until` for a caller whose connection authenticated as `key`: every call it
/// makes reaches the dispatcher with that key (`Caller::key`).
pub async fn connection_from(
    transport: Arc<dyn Transport>,
    dispatcher: Arc<dyn Dispatcher>,
    config: Config,
    key: Option<PublicKey>,
    stop: impl Future<Output = ()> + Send,
) -> Result<Stats, Error> {
    let slots = Arc::new(Semaphore::new(config.calls_in_flight_max));
    let caller = Caller::new(key);
    let mut running = JoinSet::new();
    let mut stats = Stats::default();
    let mut stop = std::pin::pin!(stop);
    let mut stopped = false;
    let ended = loop {
        while running.try_join_next().is_some() {}
        let idle = config.idle_timeout.filter(|_| running.is_empty());
        let received = tokio::select! {
            biased;
            () = &mut stop => {
                stopped = true;
                go_away(transport.as_ref(), stats.last_seq).await;
                break Ok(());
            }
            // A call ending may leave none in flight: look again, so the idle clock starts.
            Some(_) = running.join_next(), if !running.is_empty() => continue,
            received = recv_within(transport.as_ref(), idle) => received,
        };
        let Some(received) = received else {
            let idle_ms = idle.map_or(0, |idle| {
                u64::try_from(idle.as_millis()).unwrap_or(u64::MAX)
            });
            transport.close().await;
            break Err(Error::Idle { idle_ms });
        };
        let message = match received {
            Ok(Some(message)) => message,
            Ok(None) => break Ok(()),
            Err(error) => break Err(Error::Transport(error)),
        };
        let loop_state = Loop {
            transport: &transport,
            dispatcher: dispatcher.as_ref(),
            slots: &slots,
            caller: &caller,
        };
        let handled = loop_state.handle(&mut running, &mut stats, message).await;
        if let Err(error) = handled {
            transport.close().await;
            break Err(error);
        }
    };
    if !stopped {
        // The connection ended: calls still waiting to start will not.
        caller.leave();
    }
    while running.join_next().await.is_some() {}
    if stopped {
        transport.close().await;
    }
    ended.map(|()| stats)
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

/// The next message, or `None` if `idle` passes first (a transport's `recv` is cancel-safe,
/// so nothing is lost when it does).
async fn recv_within(
    transport: &dyn Transport,
    idle: Option<Duration>,
) -> Option<Result<Option<Bytes>, transport::Error>> {
    let Some(idle) = idle else {
        return Some(transport.recv().await);
    };
    tokio::time::timeout(idle, transport.recv()).await.ok()
}

/// What handling one frame needs from its connection.
struct Loop<'a> {
    transport: &'a Arc<dyn Transport>,
    dispatcher: &'a dyn Dispatcher,
    slots: &'a Arc<Semaphore>,
    caller: &'a Caller,
}

impl Loop<'_> {
    /// Decodes one incoming frame and starts, answers or skips it.
    async fn handle(
        &self,
        running: &mut JoinSet<()>,
        stats: &mut Stats,
        message: Bytes,
    ) -> Result<(), Error> {
        let call = match frame::decode(&message) {
            Ok(frame::Message::Call(call)) => call,
            Ok(frame::Message::Ping(seq)) => {
                stats.pings += 1;
                if let Ok(pong) = frame::encode_pong(seq) {
                    let _ = self.transport.send(Bytes::from(pong)).await;
                }
                return Ok(());
            }
            Ok(frame::Message::Reply(reply)) => {
                stats.skipped += 1;
                tracing::warn!(seq = reply.seq.0, "skipped a reply sent to a server");
                return Ok(());
            }
            Ok(frame::Message::Pong(_) | frame::Message::GoAway { .. }) => {
                stats.skipped += 1;
                return Ok(());
            }
            Err(frame::Error::UnknownKind { kind }) => {
                stats.skipped += 1;
                tracing::info!(kind, "skipped a frame of an unknown kind");
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
        let slot = Arc::clone(self.slots)
            .acquire_owned()
            .await
            .map_err(|_| Error::Transport(transport::Error::Closed))?;
        let (seq, target, method) = (call.seq, call.target, call.method);
        tracing::debug!(seq = seq.0, target, method, "call received");
        let started = std::time::Instant::now();
        let work = self.dispatcher.dispatch(call, &message, self.caller);
        drop(message);
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

/// Sends a finished call's reply frame, or encodes and sends its failure; a failure that cannot
/// be encoded (a message past the frame limit) is answered as an internal failure that can, so
/// every call gets a reply.
async fn send_reply(transport: &dyn Transport, seq: frame::Seq, outcome: Outcome) {
    let bytes = match outcome {
        Ok(reply) => reply,
        Err(failure) => match frame::encode_reply(seq, Err(&failure)) {
            Ok(reply) => reply,
            Err(error) => {
                tracing::error!(%error, seq = seq.0, "could not encode a failure reply");
                let fallback = Failure::Internal {
                    message: format!("the failure could not be encoded: {error}"),
                };
                let Ok(reply) = frame::encode_reply(seq, Err(&fallback)) else {
                    return;
                };
                reply
            }
        },
    };
    if let Err(error) = transport.send(Bytes::from(bytes)).await {
        tracing::debug!(%error, "could not send a reply; the peer is gone");
    }
}
