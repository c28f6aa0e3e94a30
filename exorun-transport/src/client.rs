//! The correlating neorpc client: one per connection, shared by every caller of that peer.
//!
//! A caller hands over a whole `frame::OutboundCall` (arguments already written into it); the
//! client stamps it with the next sequence number, registers a pending entry and gives the
//! frame's buffer to the transport without copying it. Calls go onto the connection in seq
//! order (stamping and queueing happen under one lock), so a server's `GoAway { last_seq }`
//! divides them exactly. A pump task decodes each frame once: a reply is routed by its seq to
//! its caller (a reply for an unknown or finished seq is counted and dropped; one that does not
//! decode but names its seq fails that call at once); a `GoAway` stops new calls here and hands
//! every call the server did not read back to its caller as `Unread` (with its frame, to send
//! elsewhere); a `Ping` is answered.
//!
//! With a heartbeat interval, a connection that has received nothing for an interval sends a
//! `Ping`; one that has received nothing for `HEARTBEAT_MISSES` intervals is declared dead, its
//! calls failing with `Unresponsive` (a peer gone without closing, which TCP would notice only
//! after minutes). A call ends in exactly one way: its reply, its timeout (the entry is removed,
//! a late reply is dropped), the peer closing or falling silent (every pending call fails at
//! once, later calls fail immediately), a go-away before it was read (`Unread`), or the caller
//! dropping its future (a guard removes the entry). Calls in flight are bounded; when full a
//! caller waits or gets `Error::Overloaded`, as configured.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use neorpc::failure::Failure;
use neorpc::frame;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::transport;
use crate::transport::BoxFuture;
use crate::transport::Transport;

/// Default time a call may take, reply included: long enough for real work on a remote
/// instance, short enough that a lost peer is noticed.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Default bound on calls in flight per connection (and so on the pending map's size).
pub const CALLS_IN_FLIGHT_MAX: usize = 1024;
/// Intervals without a frame received after which a heartbeating connection is declared dead:
/// three leaves room for one lost or late pong and a busy peer.
pub const HEARTBEAT_MISSES: u32 = 3;

/// What a caller does when the connection is at its in-flight limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for a slot (the wait counts against the call's timeout).
    Wait,
    /// Fail at once with `Error::Overloaded`.
    Fail,
}

/// A client's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Time a call may take unless the call overrides it.
    pub timeout: Duration,
    /// Most calls in flight on this connection.
    pub calls_in_flight_max: usize,
    /// What happens to a call beyond `calls_in_flight_max`.
    pub when_full: WhenFull,
    /// How often a quiet connection pings its peer (`None`: never; it then notices a vanished
    /// peer only by its calls timing out).
    pub heartbeat: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timeout: TIMEOUT_DEFAULT,
            calls_in_flight_max: CALLS_IN_FLIGHT_MAX,
            when_full: WhenFull::Wait,
            heartbeat: None,
        }
    }
}

/// Why a call did not produce results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The remote side answered with a failure reason.
    #[error("remote failure: {0}")]
    Remote(Failure),
    /// No reply within the call's time limit.
    #[error("no reply within {timeout_ms} ms")]
    Timeout {
        /// The time limit, in milliseconds.
        timeout_ms: u64,
    },
    /// The connection closed before the reply arrived, or was already closed.
    #[error("the peer closed the connection")]
    PeerClosed,
    /// The peer sent nothing for this long despite pings: declared dead.
    #[error("the peer sent nothing for {silent_ms} ms despite heartbeats")]
    Unresponsive {
        /// How long it was silent, in milliseconds.
        silent_ms: u64,
    },
    /// The call did not run: the server went away before reading it (a go-away), or the
    /// connection had ended before it was sent. Here is its frame, to send on another
    /// connection.
    #[error("the connection ended before the server read the call")]
    Unread(Bytes),
    /// The connection is at its in-flight limit and the client is configured to fail.
    #[error("{calls_in_flight_max} calls already in flight")]
    Overloaded {
        /// The limit.
        calls_in_flight_max: usize,
    },
    /// The reply frame could not be decoded.
    #[error("reply frame: {0}")]
    Frame(neorpc::frame::Error),
    /// The transport failed while sending (or, for a peer, connecting).
    #[error("transport: {0}")]
    Transport(transport::Error),
}

impl From<transport::Error> for Error {
    fn from(error: transport::Error) -> Self {
        match error {
            transport::Error::Closed => Error::PeerClosed,
            other @ (transport::Error::MessageTooLarge { .. }
            | transport::Error::Truncated { .. }
            | transport::Error::Io { .. }
            | transport::Error::BadAddress { .. }
            | transport::Error::NotBuilt { .. }
            | transport::Error::WrongKey { .. }
            | transport::Error::Handshake { .. }
            | transport::Error::Identity { .. }
            | transport::Error::FrameDeadline { .. }
            | transport::Error::Budget(_)) => Error::Transport(other),
        }
    }
}

/// Something calls go through: one connection's `Client`, or a `peer::Peer` that keeps one up.
pub trait Caller: Send + Sync {
    /// Sends `frame` and waits at most `timeout` for the reply's result slab.
    fn call_within(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Bytes, Error>>;

    /// The time limit calls get unless they set their own.
    fn timeout(&self) -> Duration;
}

/// A call waiting for its reply: where the reply goes, and the frame sent (kept so a call the
/// server did not read can be sent again elsewhere).
struct Waiting {
    reply: oneshot::Sender<Result<Bytes, Error>>,
    frame: Bytes,
}

struct Shared {
    transport: Arc<dyn Transport>,
    pending: DashMap<u64, Waiting>,
    /// Serializes stamping and queueing, so calls go out in seq order.
    order: tokio::sync::Mutex<u64>,
    closed: AtomicBool,
    /// A go-away came: no new call is sent here.
    draining: AtomicBool,
    slots: Arc<Semaphore>,
    unroutable_replies: AtomicU64,
    /// When a frame last arrived, in milliseconds since `born`.
    heard_ms: AtomicU64,
    born: Instant,
    config: Config,
}

/// A shared client for one connection. Cloning is not needed: wrap it in an `Arc`.
pub struct Client {
    shared: Arc<Shared>,
    pump: JoinHandle<()>,
    heartbeat: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("pending", &self.pending_len())
            .finish()
    }
}

/// A registered call; dropping it at any point (the caller's future was dropped, or the call
/// ended) removes its entry.
struct Pending {
    shared: Arc<Shared>,
    seq: u64,
    _slot: OwnedSemaphorePermit,
}

impl Client {
    /// Starts a client over `transport`, spawning its reply pump (and its heartbeat, if
    /// configured) on the current tokio runtime.
    pub fn new(transport: Arc<dyn Transport>, config: Config) -> Self {
        let shared = Arc::new(Shared {
            transport,
            pending: DashMap::new(),
            order: tokio::sync::Mutex::new(1),
            closed: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            slots: Arc::new(Semaphore::new(config.calls_in_flight_max)),
            unroutable_replies: AtomicU64::new(0),
            heard_ms: AtomicU64::new(0),
            born: Instant::now(),
            config,
        });
        let pump = tokio::spawn(pump(Arc::clone(&shared)));
        let heartbeat = config
            .heartbeat
            .map(|interval| tokio::spawn(heartbeat(Arc::clone(&shared), interval)));
        Self {
            shared,
            pump,
            heartbeat,
        }
    }

    /// Sends `frame` with the client's default time limit; returns the reply's result slab.
    pub async fn call(&self, frame: frame::OutboundCall) -> Result<Bytes, Error> {
        self.call_within(frame, self.shared.config.timeout).await
    }

    /// Sends `frame` (stamped here with the next sequence number) and waits at most `timeout`
    /// (a wait for an in-flight slot included) for the reply's result slab.
    pub async fn call_within(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        let started = Instant::now();
        let slot = match self.acquire_slot(timeout).await {
            Ok(slot) => slot,
            // Never sent here: the server did not read it, and it may go elsewhere.
            Err(Error::PeerClosed) => return Err(Error::Unread(Bytes::from(frame.into_bytes()))),
            Err(error) => return Err(error),
        };
        let sent = self.send(frame, slot).await?;
        let (pending, reply) = sent;
        let remaining = timeout.saturating_sub(started.elapsed());
        let outcome = match tokio::time::timeout(remaining, reply).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(self.ended()),
            Err(_) => Err(timeout_error(timeout)),
        };
        drop(pending);
        outcome
    }

    /// Stamps `frame`, registers it and queues it, in seq order.
    async fn send(
        &self,
        mut frame: frame::OutboundCall,
        slot: OwnedSemaphorePermit,
    ) -> Result<(Pending, oneshot::Receiver<Result<Bytes, Error>>), Error> {
        let mut next_seq = self.shared.order.lock().await;
        if self.is_draining() {
            return Err(Error::Unread(Bytes::from(frame.into_bytes())));
        }
        let seq = *next_seq;
        *next_seq += 1;
        frame.set_seq(frame::Seq(seq));
        let bytes = Bytes::from(frame.into_bytes());
        let (reply, receiver) = oneshot::channel();
        let waiting = Waiting {
            reply,
            frame: bytes.clone(),
        };
        self.shared.pending.insert(seq, waiting);
        let pending = Pending {
            shared: Arc::clone(&self.shared),
            seq,
            _slot: slot,
        };
        // Checked after inserting: `close_all` sets the flag before draining, so an entry
        // inserted after the drain is seen here and fails instead of waiting forever. Either
        // way the frame was not sent: it comes back unread.
        if self.is_closed() {
            return Err(Error::Unread(bytes));
        }
        let queued = self.shared.transport.send(bytes.clone()).await;
        match queued {
            Ok(()) => {}
            Err(transport::Error::Closed) => return Err(Error::Unread(bytes)),
            Err(error) => return Err(error.into()),
        }
        drop(next_seq);
        Ok((pending, receiver))
    }

    /// The timeout calls get unless they set their own.
    pub fn timeout(&self) -> Duration {
        self.shared.config.timeout
    }

    /// Calls whose replies are still awaited.
    pub fn pending_len(&self) -> usize {
        self.shared.pending.len()
    }

    /// Replies that matched no pending call (unknown, timed out or malformed), dropped.
    pub fn unroutable_replies(&self) -> u64 {
        self.shared.unroutable_replies.load(Ordering::Relaxed)
    }

    /// Whether the connection is closed (every call now fails).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Whether the server said it goes away (no new call is sent here).
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// Closes the connection and fails every pending call.
    pub async fn close(&self) {
        self.shared.transport.close().await;
        self.pump.abort();
        close_all(&self.shared, &Error::PeerClosed);
    }

    /// How a call on a closed connection fails.
    fn ended(&self) -> Error {
        Error::PeerClosed
    }

    async fn acquire_slot(&self, timeout: Duration) -> Result<OwnedSemaphorePermit, Error> {
        if self.is_closed() {
            return Err(Error::PeerClosed);
        }
        let slots = Arc::clone(&self.shared.slots);
        if self.shared.config.when_full == WhenFull::Fail {
            let calls_in_flight_max = self.shared.config.calls_in_flight_max;
            return slots.try_acquire_owned().map_err(|_| Error::Overloaded {
                calls_in_flight_max,
            });
        }
        let acquired = tokio::time::timeout(timeout, slots.acquire_owned()).await;
        let Ok(permit) = acquired else {
            return Err(timeout_error(timeout));
        };
        permit.map_err(|_| Error::PeerClosed)
    }
}

impl Caller for Client {
    fn call_within(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Bytes, Error>> {
        Box::pin(Client::call_within(self, frame, timeout))
    }

    fn timeout(&self) -> Duration {
        self.shared.config.timeout
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.pump.abort();
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.abort();
        }
        close_all(&self.shared, &Error::PeerClosed);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.shared.pending.remove(&self.seq);
    }
}

fn timeout_error(timeout: Duration) -> Error {
    Error::Timeout {
        timeout_ms: millis(timeout),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Reads frames until the transport ends, then fails whatever is still pending.
async fn pump(shared: Arc<Shared>) {
    loop {
        match shared.transport.recv().await {
            Ok(Some(message)) => {
                let heard = millis(shared.born.elapsed());
                shared.heard_ms.store(heard, Ordering::Release);
                route(&shared, &message).await;
            }
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(%error, "client transport failed");
                break;
            }
        }
    }
    close_all(&shared, &Error::PeerClosed);
}

/// Decodes one frame and acts on it: a reply to its caller, a go-away, a ping answered.
async fn route(shared: &Shared, message: &Bytes) {
    let (seq, outcome) = match frame::decode(message) {
        Ok(frame::Message::Reply(reply)) => {
            let outcome = match reply.outcome {
                Ok(results) => Ok(message.slice_ref(results)),
                Err(failure) => Err(Error::Remote(failure)),
            };
            (reply.seq.0, outcome)
        }
        Ok(frame::Message::GoAway { last_seq }) => return go_away(shared, last_seq).await,
        Ok(frame::Message::Ping(seq)) => return answer_ping(shared, seq).await,
        Ok(frame::Message::Pong(_)) => return,
        Ok(frame::Message::Call(call)) => {
            shared.unroutable_replies.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(seq = call.seq.0, "dropped a call sent to a client");
            return;
        }
        Err(error) => {
            // Only on this error path is the frame read a second time, for its seq alone.
            let Ok(seq) = frame::decode_seq(message) else {
                shared.unroutable_replies.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "dropped a reply without a readable sequence number");
                return;
            };
            (seq.0, Err(Error::Frame(error)))
        }
    };
    let Some((_, waiting)) = shared.pending.remove(&seq) else {
        shared.unroutable_replies.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(seq, "dropped a reply for an unknown or finished call");
        return;
    };
    let _ = waiting.reply.send(outcome);
}

/// The server reads nothing after `last_seq`: no new call goes out here, and each call above
/// it goes back to its caller, unread, with its frame. Under the lock that stamps and queues
/// calls, so each call is either queued before this and found here, or sees the draining flag.
async fn go_away(shared: &Shared, last_seq: frame::Seq) {
    let _order = shared.order.lock().await;
    shared.draining.store(true, Ordering::Release);
    let unread: Vec<u64> = shared
        .pending
        .iter()
        .map(|entry| *entry.key())
        .filter(|seq| *seq > last_seq.0)
        .collect();
    tracing::debug!(
        last_seq = last_seq.0,
        unread = unread.len(),
        "the server goes away"
    );
    for seq in unread {
        let Some((_, waiting)) = shared.pending.remove(&seq) else {
            continue;
        };
        let _ = waiting.reply.send(Err(Error::Unread(waiting.frame)));
    }
}

async fn answer_ping(shared: &Shared, seq: frame::Seq) {
    let Ok(pong) = frame::encode_pong(seq) else {
        return;
    };
    let _ = shared.transport.send(Bytes::from(pong)).await;
}

/// Pings a quiet connection every `interval`; declares it dead after `HEARTBEAT_MISSES`
/// intervals without a frame.
async fn heartbeat(shared: Arc<Shared>, interval: Duration) {
    let mut ping_seq = 0u64;
    loop {
        tokio::time::sleep(interval).await;
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        let now = millis(shared.born.elapsed());
        let silent_ms = now.saturating_sub(shared.heard_ms.load(Ordering::Acquire));
        let dead_after = millis(interval.saturating_mul(HEARTBEAT_MISSES));
        if silent_ms >= dead_after {
            tracing::info!(silent_ms, "declared the peer dead: no frame despite pings");
            close_all(&shared, &Error::Unresponsive { silent_ms });
            shared.transport.close().await;
            return;
        }
        if silent_ms < millis(interval) {
            continue;
        }
        ping_seq += 1;
        let Ok(ping) = frame::encode_ping(frame::Seq(ping_seq)) else {
            continue;
        };
        let _ = shared.transport.send(Bytes::from(ping)).await;
    }
}

/// Marks the client closed and fails every pending call with `error`.
fn close_all(shared: &Shared, error: &Error) {
    shared.closed.store(true, Ordering::Release);
    shared.slots.close();
    let seqs: Vec<u64> = shared.pending.iter().map(|entry| *entry.key()).collect();
    for seq in seqs {
        let Some((_, waiting)) = shared.pending.remove(&seq) else {
            continue;
        };
        let _ = waiting.reply.send(Err(error.clone()));
    }
}
