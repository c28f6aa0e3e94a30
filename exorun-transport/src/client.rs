//! The correlating neorpc client: one per connection, shared by every caller of that peer.
//!
//! The connection's state (sequence numbers, calls in flight with their deadlines, heartbeats,
//! go-away, the in-flight bound) is a plain state machine, `session::Session`, with no I/O;
//! `Client` drives it over a `Transport` with one tokio task. A caller hands over a whole
//! `frame::OutboundCall` (arguments already written into it); the session stamps it with the
//! next sequence number and the caller hands its buffer to the transport without copying it.
//! Calls go onto the connection in seq order (stamping and queueing happen under one lock), so
//! a server's `GoAway { last_seq }` divides them exactly. The task reads each frame and gives
//! it to the session, which routes a reply by its seq to its caller (a reply for an unknown or
//! finished seq is counted and dropped; one that does not decode but names its seq fails that
//! call at once), stops new calls on a go-away and hands every call the server did not read
//! back to its caller as `Unread` (with its frame, to send elsewhere), and answers a ping.
//!
//! With a heartbeat interval, a connection that has received nothing for an interval sends a
//! `Ping`; one that has received nothing for `HEARTBEAT_MISSES` intervals is declared dead, its
//! calls failing with `Unresponsive` (a peer gone without closing, which TCP would notice only
//! after minutes). A call ends in exactly one way: its reply, its deadline (`Timeout`), the
//! peer closing or falling silent (every pending call fails at once, later calls fail
//! immediately), a go-away before it was read (`Unread`), or the caller dropping its future
//! (the session forgets it). Calls in flight are bounded; when full a caller waits or gets
//! `Error::Overloaded`, as configured.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;

use bytes::Bytes;
use neorpc::failure::Failure;
use neorpc::frame;
use tokio::sync::Notify;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::transport;
use crate::transport::Transport;
use exorun_common::BoxFuture;

mod session;

use self::session::Refused;
use self::session::Session;

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

/// A reply as the callee gave it: the call's result slab, or the failure it reported. A call
/// that got one returns it inside `Ok`; `Error` is for calls that got none (or none that
/// could be read).
pub type Reply = Result<Bytes, Failure>;

/// Why a call got no reply (or none that could be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
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
    /// A call or release for the resource handles of a connection (a session) that has ended:
    /// they ended with it, and the call was not sent.
    #[error("the connection that held these resource handles has ended")]
    SessionEnded,
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

/// Something calls go through to another runtime (gRPC would say a channel): one connection's
/// `Client`, a `peer::Peer` that keeps one up, or a NATS lattice.
///
/// Resource handles a runtime hands out belong to the connection (the **session**) that
/// carried the call: `call_session` says which session answered, and sends a call that names
/// handles only on theirs; `release` drops a handle on its session. A session that ended took
/// its handles with it (`Error::SessionEnded`).
pub trait Channel: Send + Sync {
    /// Sends `frame` and waits at most `timeout` for the reply.
    fn call_within(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, Error>>;

    /// The time limit calls get unless they set their own.
    fn timeout(&self) -> Duration;

    /// Whether calls through this channel can hold resource handles: it has sessions (a
    /// connection at a time, or a lattice runtime for a caller) that keep them apart. A
    /// channel that does not say so carries none.
    fn carries_handles(&self) -> bool {
        false
    }

    /// `call_within`, on session `on` only (when the call names its handles), telling which
    /// session answered. A channel with no sessions carries no handles: `on` set is
    /// `SessionEnded`, and the session it reports is 0. A lattice's sessions are the runtimes
    /// that answered.
    fn call_session(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
        on: Option<u64>,
    ) -> BoxFuture<'_, Result<(Reply, u64), Error>> {
        Box::pin(async move {
            if on.is_some() {
                return Err(Error::SessionEnded);
            }
            Ok((self.call_within(frame, timeout).await?, 0))
        })
    }

    /// Drops the resource handle `handle` of session `session`, which `target` handed out;
    /// nothing to do (`Ok(Ok(()))`) if that session ended, since its handles ended with it.
    /// The owner may answer with a failure (`ResourceGone`, say).
    fn release<'a>(
        &'a self,
        handle: u64,
        session: u64,
        target: &'a str,
    ) -> BoxFuture<'a, Result<Result<(), Failure>, Error>> {
        let _ = (handle, session, target);
        Box::pin(std::future::ready(Ok(Ok(()))))
    }

    /// The capability calls through this channel present (neorpc's optional call-frame entry,
    /// which a guarded export's guard reads); none unless the channel is `Presenting`.
    fn capability(&self) -> Option<&Bytes> {
        None
    }
}

/// A channel whose calls present a capability: another channel (shared, so several links can
/// present different capabilities over one connection) and the capability's bytes.
pub struct Presenting {
    channel: Arc<dyn Channel>,
    capability: Bytes,
}

impl std::fmt::Debug for Presenting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presenting")
            .field("capability_bytes", &self.capability.len())
            .finish_non_exhaustive()
    }
}

impl Presenting {
    /// Calls through `channel` that present `capability` (at most
    /// `frame::CAPABILITY_BYTES_MAX` bytes, or each call fails to build its frame).
    pub fn new(channel: Arc<dyn Channel>, capability: Bytes) -> Self {
        Self {
            channel,
            capability,
        }
    }
}

impl Channel for Presenting {
    fn call_within(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, Error>> {
        self.channel.call_within(frame, timeout)
    }

    fn timeout(&self) -> Duration {
        self.channel.timeout()
    }

    fn carries_handles(&self) -> bool {
        self.channel.carries_handles()
    }

    fn call_session(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
        on: Option<u64>,
    ) -> BoxFuture<'_, Result<(Reply, u64), Error>> {
        self.channel.call_session(frame, timeout, on)
    }

    fn release<'a>(
        &'a self,
        handle: u64,
        session: u64,
        target: &'a str,
    ) -> BoxFuture<'a, Result<Result<(), Failure>, Error>> {
        self.channel.release(handle, session, target)
    }

    fn capability(&self) -> Option<&Bytes> {
        Some(&self.capability)
    }
}

/// Where a finished call's outcome goes.
type Waiter = oneshot::Sender<Result<Reply, Error>>;

struct Shared {
    transport: Arc<dyn Transport>,
    session: Mutex<Session<Waiter>>,
    /// Held from stamping a call to handing it to the transport, so calls go out in seq order.
    sending: tokio::sync::Mutex<()>,
    /// Wakes the task when a new call needs its timer earlier.
    rearm: Notify,
    /// Wakes callers waiting for room when calls end.
    room: Notify,
    config: Config,
}

impl Shared {
    fn session(&self) -> std::sync::MutexGuard<'_, Session<Waiter>> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands every ended call its outcome, and sends the control frames the session queued.
    async fn deliver(&self) {
        let (events, transmits, close) = {
            let mut session = self.session();
            let events: Vec<_> = std::iter::from_fn(|| session.poll_event()).collect();
            let transmits: Vec<Bytes> = std::iter::from_fn(|| session.poll_transmit()).collect();
            (events, transmits, session.take_close_transport())
        };
        if !events.is_empty() {
            self.room.notify_waiters();
        }
        for (waiter, outcome) in events {
            let _ = waiter.send(outcome);
        }
        for transmit in transmits {
            // A control frame that cannot be sent means the connection is going: the reader
            // notices that on its own.
            let _ = self.transport.send(transmit).await;
        }
        if close {
            self.transport.close().await;
        }
    }

    /// Fails every call with `error` and refuses later ones.
    fn close_all(&self, error: &Error) {
        let events: Vec<_> = {
            let mut session = self.session();
            session.close(error);
            std::iter::from_fn(|| session.poll_event()).collect()
        };
        self.room.notify_waiters();
        for (waiter, outcome) in events {
            let _ = waiter.send(outcome);
        }
    }
}

/// A shared client for one connection. Cloning is not needed: wrap it in an `Arc`.
pub struct Client {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    /// This connection's session: distinct from every other client's in the process.
    session: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("pending", &self.pending_len())
            .finish()
    }
}

/// A call in flight: dropping it before its outcome arrived (the caller's future was dropped)
/// makes the session forget the call.
struct InFlight<'a> {
    shared: &'a Shared,
    seq: frame::Seq,
    ended: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.shared.session().cancel(self.seq);
        self.shared.room.notify_waiters();
    }
}

impl Client {
    /// Starts a client over `transport`, spawning the task that reads its frames and keeps its
    /// timers on the current tokio runtime.
    pub fn new(transport: Arc<dyn Transport>, config: Config) -> Self {
        let now = Instant::now().into_std();
        let shared = Arc::new(Shared {
            transport,
            session: Mutex::new(Session::new(config, now)),
            sending: tokio::sync::Mutex::new(()),
            rearm: Notify::new(),
            room: Notify::new(),
            config,
        });
        let task = tokio::spawn(drive(Arc::clone(&shared)));
        static SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let session = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            shared,
            task,
            session,
        }
    }

    /// This connection's session (see `Channel`).
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Drops the resource handle `handle` this connection holds, waiting for the server to say
    /// it did (within the default time limit).
    pub async fn release(&self, handle: u64) -> Result<Result<(), Failure>, Error> {
        let frame = frame::encode_release(handle).map_err(Error::Frame)?;
        Ok(self.call(frame).await?.map(drop))
    }

    /// Sends `frame` with the client's default time limit; returns the reply.
    pub async fn call(&self, frame: frame::OutboundCall) -> Result<Reply, Error> {
        self.call_within(frame, self.shared.config.timeout).await
    }

    /// Sends `frame` (stamped here with the next sequence number) and waits at most `timeout`
    /// (a wait for an in-flight slot included) for the reply.
    pub async fn call_within(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        let deadline = Instant::now() + timeout;
        let mut frame = frame;
        loop {
            let room = self.shared.room.notified();
            let mut room = std::pin::pin!(room);
            room.as_mut().enable();
            frame = match self.start(frame, deadline, timeout).await {
                Ok(started) => return started.await,
                Err(Refused::Unread(bytes)) => return Err(Error::Unread(bytes)),
                Err(Refused::Full(frame)) => frame,
            };
            if self.shared.config.when_full == WhenFull::Fail {
                let calls_in_flight_max = self.shared.config.calls_in_flight_max;
                return Err(Error::Overloaded {
                    calls_in_flight_max,
                });
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(timeout_error(timeout));
            }
        }
    }

    /// Stamps and sends `frame`; the returned future waits for its outcome.
    async fn start(
        &self,
        frame: frame::OutboundCall,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<impl Future<Output = Result<Reply, Error>> + '_, Refused> {
        let shared = &*self.shared;
        let (waiter, outcome) = oneshot::channel();
        let sending = shared.sending.lock().await;
        let (seq, bytes, rearm) = {
            let mut session = shared.session();
            let (seq, bytes) = session.call(frame, waiter, deadline.into_std(), timeout)?;
            (seq, bytes, session.timer_moved())
        };
        if rearm {
            shared.rearm.notify_one();
        }
        let mut in_flight = InFlight {
            shared,
            seq,
            ended: false,
        };
        let sent = shared.transport.send(bytes).await;
        drop(sending);
        // Unless a go-away or the connection's end already ended the call (its outcome then
        // waits in `outcome`), a call the transport refused ends here: it never left.
        let unsent = match sent {
            Ok(()) => None,
            Err(error) => shared.session().unsent(seq).map(|bytes| (error, bytes)),
        };
        let Some((error, bytes)) = unsent else {
            return Ok(EitherOutcome::Waiting(in_flight, outcome).run());
        };
        in_flight.ended = true;
        shared.room.notify_waiters();
        if error == transport::Error::Closed {
            return Err(Refused::Unread(bytes));
        }
        Ok(EitherOutcome::Failed(Error::from(error)).run())
    }

    /// The timeout calls get unless they set their own.
    pub fn timeout(&self) -> Duration {
        self.shared.config.timeout
    }

    /// Calls whose replies are still awaited.
    pub fn pending_len(&self) -> usize {
        self.shared.session().pending_len()
    }

    /// Replies that matched no pending call (unknown, timed out or malformed), dropped.
    pub fn unroutable_replies(&self) -> u64 {
        self.shared.session().unroutable_replies()
    }

    /// Whether the connection is closed (every call now fails).
    pub fn is_closed(&self) -> bool {
        self.shared.session().is_closed()
    }

    /// Whether the server said it goes away (no new call is sent here).
    pub(crate) fn is_draining(&self) -> bool {
        self.shared.session().is_draining()
    }

    /// Closes the connection and fails every pending call.
    pub async fn close(&self) {
        self.shared.transport.close().await;
        self.task.abort();
        self.shared.close_all(&Error::PeerClosed);
    }
}

/// A started call's outcome: waited for, or already known (the send failed).
enum EitherOutcome<'a> {
    Waiting(InFlight<'a>, oneshot::Receiver<Result<Reply, Error>>),
    Failed(Error),
}

impl EitherOutcome<'_> {
    async fn run(self) -> Result<Reply, Error> {
        match self {
            EitherOutcome::Waiting(mut in_flight, outcome) => {
                let outcome = outcome.await;
                in_flight.ended = true;
                // The session always reports an ended call; a dropped waiter means the client
                // itself is gone.
                outcome.unwrap_or(Err(Error::PeerClosed))
            }
            EitherOutcome::Failed(error) => Err(error),
        }
    }
}

impl Channel for Client {
    fn carries_handles(&self) -> bool {
        true
    }

    fn call_within(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, Error>> {
        Box::pin(Client::call_within(self, frame, timeout))
    }

    fn timeout(&self) -> Duration {
        self.shared.config.timeout
    }

    fn call_session(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
        on: Option<u64>,
    ) -> BoxFuture<'_, Result<(Reply, u64), Error>> {
        Box::pin(async move {
            if on.is_some_and(|on| on != self.session) {
                return Err(Error::SessionEnded);
            }
            match Client::call_within(self, frame, timeout).await {
                Ok(reply) => Ok((reply, self.session)),
                // A connection gone took the handles the call names with it.
                Err(Error::PeerClosed | Error::Unread(_)) if on.is_some() => {
                    Err(Error::SessionEnded)
                }
                Err(error) => Err(error),
            }
        })
    }

    fn release<'a>(
        &'a self,
        handle: u64,
        session: u64,
        _target: &'a str,
    ) -> BoxFuture<'a, Result<Result<(), Failure>, Error>> {
        Box::pin(async move {
            if session != self.session {
                return Ok(Ok(()));
            }
            Client::release(self, handle).await
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.close_all(&Error::PeerClosed);
    }
}

fn timeout_error(timeout: Duration) -> Error {
    Error::Timeout {
        timeout_ms: exorun_common::millis(timeout),
    }
}

/// The connection's task: reads frames into the session and ticks its timers until the
/// transport ends (or the peer is declared dead), then fails whatever is still pending.
async fn drive(shared: Arc<Shared>) {
    let sleep = tokio::time::sleep_until(Instant::now());
    let mut sleep = std::pin::pin!(sleep);
    let mut armed = None;
    loop {
        let next = shared.session().poll_timeout();
        if next != armed {
            armed = next;
            if let Some(at) = next {
                sleep.as_mut().reset(Instant::from_std(at));
            }
        }
        tokio::select! {
            received = shared.transport.recv() => match received {
                Ok(Some(message)) => {
                    let now = Instant::now().into_std();
                    shared.session().receive(&message, now);
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "client transport failed");
                    break;
                }
            },
            () = &mut sleep, if armed.is_some() => {
                armed = None;
                shared.session().tick(Instant::now().into_std());
            }
            () = shared.rearm.notified() => {}
        }
        shared.deliver().await;
        if shared.session().is_closed() {
            return;
        }
    }
    shared.close_all(&Error::PeerClosed);
}
