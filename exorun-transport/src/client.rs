//! The correlating neorpc client: one per connection, shared by every caller of that peer.
//!
//! A caller hands over a whole `frame::OutboundCall` (arguments already written into it); the
//! client stamps it with the next sequence number, registers a pending entry
//! (`DashMap<seq, oneshot>`) and gives the frame's buffer to the transport without copying it.
//! A pump task decodes each reply once, routes it by its sequence number to its caller, and
//! counts (and logs) replies for unknown or finished sequence numbers instead of delivering
//! them; a reply that does not decode but whose sequence number can be read fails that call at
//! once with the decoding error (rather than leaving it to its timeout). A call ends in exactly
//! one way: its reply, its timeout (the entry is removed, a late reply is dropped), the peer
//! closing (every pending call fails at once, later calls fail immediately), or the caller
//! dropping its future (a guard removes the entry). Calls in flight are bounded; when full a
//! caller waits or gets `Error::Overloaded`, as configured.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use dashmap::DashMap;
use neorpc::failure::Failure;
use neorpc::frame;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::transport;
use crate::transport::Transport;

/// Default time a call may take, reply included: long enough for real work on a remote
/// instance, short enough that a lost peer is noticed.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Default bound on calls in flight per connection (and so on the pending map's size).
pub const CALLS_IN_FLIGHT_MAX: usize = 1024;

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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timeout: TIMEOUT_DEFAULT,
            calls_in_flight_max: CALLS_IN_FLIGHT_MAX,
            when_full: WhenFull::Wait,
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
    /// The connection is at its in-flight limit and the client is configured to fail.
    #[error("{calls_in_flight_max} calls already in flight")]
    Overloaded {
        /// The limit.
        calls_in_flight_max: usize,
    },
    /// The reply frame could not be decoded.
    #[error("reply frame: {0}")]
    Frame(neorpc::frame::Error),
    /// The transport failed while sending.
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
            | transport::Error::FrameDeadline { .. }
            | transport::Error::Budget(_)) => Error::Transport(other),
        }
    }
}

type ReplySender = oneshot::Sender<Result<Bytes, Error>>;

struct Shared {
    transport: Arc<dyn Transport>,
    pending: DashMap<u64, ReplySender>,
    next_seq: AtomicU64,
    closed: AtomicBool,
    slots: Arc<Semaphore>,
    unroutable_replies: AtomicU64,
    config: Config,
}

/// A shared client for one connection. Cloning is not needed: wrap it in an `Arc`.
pub struct Client {
    shared: Arc<Shared>,
    pump: JoinHandle<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("pending", &self.pending_len())
            .finish()
    }
}

/// A registered call: its sequence number is allocated and its reply slot is waiting. Dropping
/// it at any point (the caller's future was dropped, or the call ended) removes its entry.
struct Pending {
    shared: Arc<Shared>,
    seq: u64,
    _slot: OwnedSemaphorePermit,
}

impl Client {
    /// Starts a client over `transport`, spawning its reply pump on the current tokio runtime.
    pub fn new(transport: Arc<dyn Transport>, config: Config) -> Self {
        let shared = Arc::new(Shared {
            transport,
            pending: DashMap::new(),
            next_seq: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            slots: Arc::new(Semaphore::new(config.calls_in_flight_max)),
            unroutable_replies: AtomicU64::new(0),
            config,
        });
        let pump = tokio::spawn(pump(Arc::clone(&shared)));
        Self { shared, pump }
    }

    /// Sends `frame` with the client's default time limit; returns the reply's result slab.
    pub async fn call(&self, frame: frame::OutboundCall) -> Result<Bytes, Error> {
        self.call_within(frame, self.shared.config.timeout).await
    }

    /// Sends `frame` (stamped here with the next sequence number) and waits at most `timeout`
    /// (a wait for an in-flight slot included) for the reply's result slab.
    pub async fn call_within(
        &self,
        mut frame: frame::OutboundCall,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        let started = Instant::now();
        let slot = self.acquire_slot(timeout).await?;
        let seq = self.shared.next_seq.fetch_add(1, Ordering::Relaxed);
        let (sender, reply) = oneshot::channel();
        self.shared.pending.insert(seq, sender);
        let pending = Pending {
            shared: Arc::clone(&self.shared),
            seq,
            _slot: slot,
        };
        // Checked after inserting: `close_all` sets the flag before draining, so an entry
        // inserted after the drain is seen here and fails instead of waiting forever.
        if self.is_closed() {
            return Err(Error::PeerClosed);
        }
        frame.set_seq(frame::Seq(seq));
        self.shared
            .transport
            .send(Bytes::from(frame.into_bytes()))
            .await?;
        let remaining = timeout.saturating_sub(started.elapsed());
        let outcome = match tokio::time::timeout(remaining, reply).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(Error::PeerClosed),
            Err(_) => Err(timeout_error(timeout)),
        };
        drop(pending);
        outcome
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

    /// Whether the connection is closed (every call now fails with `PeerClosed`).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Closes the connection and fails every pending call.
    pub async fn close(&self) {
        self.shared.transport.close().await;
        self.pump.abort();
        close_all(&self.shared);
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

impl Drop for Client {
    fn drop(&mut self) {
        self.pump.abort();
        close_all(&self.shared);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.shared.pending.remove(&self.seq);
    }
}

fn timeout_error(timeout: Duration) -> Error {
    Error::Timeout {
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    }
}

/// Reads replies until the transport ends, then fails whatever is still pending.
async fn pump(shared: Arc<Shared>) {
    loop {
        match shared.transport.recv().await {
            Ok(Some(message)) => route(&shared, &message),
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(%error, "client transport failed");
                break;
            }
        }
    }
    close_all(&shared);
}

/// Decodes one reply and delivers it to its caller, or counts it as unroutable.
fn route(shared: &Shared, message: &Bytes) {
    let (seq, outcome) = match frame::decode(message) {
        Ok(frame::Message::Reply(reply)) => {
            let outcome = match reply.outcome {
                Ok(results) => Ok(message.slice_ref(results)),
                Err(failure) => Err(Error::Remote(failure)),
            };
            (reply.seq.0, outcome)
        }
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
    let Some((_, sender)) = shared.pending.remove(&seq) else {
        shared.unroutable_replies.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(seq, "dropped a reply for an unknown or finished call");
        return;
    };
    let _ = sender.send(outcome);
}

/// Marks the client closed and fails every pending call with `PeerClosed`.
fn close_all(shared: &Shared) {
    shared.closed.store(true, Ordering::Release);
    shared.slots.close();
    let seqs: Vec<u64> = shared.pending.iter().map(|entry| *entry.key()).collect();
    for seq in seqs {
        let Some((_, sender)) = shared.pending.remove(&seq) else {
            continue;
        };
        let _ = sender.send(Err(Error::PeerClosed));
    }
}
