//! A peer: a name with an ordered list of addresses (failover) and one connection kept up to
//! it, reconnected as calls need it.
//!
//! Nothing is connected until a call needs it. A call takes the current connection, or makes
//! one: the addresses are tried in order, each within the connect timeout. When every address
//! fails, the peer backs off for a pause that doubles from `BACKOFF_INITIAL` up to
//! `backoff_max`, with ±20% jitter (so peers restarted together do not reconnect in step);
//! while it does, a call either fails at once with the last connect error (`WhenDown::Fail`) or
//! waits for the next attempt within its own time limit (`WhenDown::Wait`). When a connection
//! drops, every call in flight on it fails at once (`PeerClosed`, or `Unresponsive` when the
//! heartbeat declared the peer dead); the next call connects afresh. A server's `GoAway` makes
//! the connection take no new call: calls it did not read come back `Unread` and are sent
//! again on a fresh connection (the next address, if the first is down), so a rolling restart
//! loses no call and runs none twice. State changes are logged at info, with the peer's name.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;

use neorpc::failure::Failure;
use neorpc::frame;
use tokio::time::Instant;

use crate::address::Address;
use crate::client;
use crate::client::Client;
use crate::transport;
use crate::transport::Transport;
use exorun_common::BoxFuture;

/// First pause after every address failed; it doubles with each failed round.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Longest pause between connect rounds by default: a peer that comes back is found within
/// about five seconds, while one that stays down costs a connect attempt only that often.
pub const BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(5);
/// Longest one connect attempt may take by default: a blackholed address (no answer at all)
/// costs this, not the minutes a TCP handshake could wait.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// How often a quiet connection pings by default: a vanished peer is declared dead after three
/// silent intervals (30 s), long before TCP would notice.
pub const HEARTBEAT_DEFAULT: Duration = Duration::from_secs(10);

/// What a call does while the peer is backing off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenDown {
    /// Fail at once with the last connect error.
    Fail,
    /// Wait for the next connect attempt, within the call's own time limit.
    Wait,
}

/// A peer's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Each connection's client: call time limit, calls in flight, heartbeat.
    pub client: client::Config,
    /// Longest pause between connect rounds.
    pub backoff_max: Duration,
    /// Longest one connect attempt may take.
    pub connect_timeout: Duration,
    /// What a call does while the peer is backing off.
    pub when_down: WhenDown,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            client: client::Config {
                heartbeat: Some(HEARTBEAT_DEFAULT),
                ..client::Config::default()
            },
            backoff_max: BACKOFF_MAX_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            when_down: WhenDown::Fail,
        }
    }
}

/// Makes connections to addresses (sockets for `net::Sockets`; anything, in tests).
pub trait Connector: Send + Sync {
    /// A connection to `address`.
    fn connect<'a>(
        &'a self,
        address: &'a Address,
    ) -> BoxFuture<'a, Result<Arc<dyn Transport>, transport::Error>>;
}

/// Where a peer stands, as `Peer::state` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not connected, and no attempt failed since the last connection.
    Idle,
    /// Trying its addresses.
    Connecting,
    /// Connected to this address.
    Connected(Address),
    /// Every address failed; the next attempt is due at the end of the pause.
    BackingOff {
        /// The last connect error, in words.
        last_error: String,
    },
}

/// The connection and the back-off, behind the lock that makes connecting single-flight.
#[derive(Default)]
struct Link {
    client: Option<Arc<Client>>,
    /// Failed connect rounds in a row.
    round: u32,
    retry_at: Option<Instant>,
    last_error: Option<client::Error>,
}

/// What one look at the link found.
enum Step {
    /// A connection to call on.
    Ready(Arc<Client>),
    /// Backing off until then (the caller waits).
    RetryAt(Instant),
}

/// A named peer that keeps a connection up as its calls need one.
pub struct Peer {
    name: String,
    addresses: Vec<Address>,
    connector: Arc<dyn Connector>,
    config: Config,
    link: tokio::sync::Mutex<Link>,
    state: Mutex<State>,
    jitter: Mutex<u64>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.name)
            .field("addresses", &self.addresses)
            .field("state", &self.state())
            .finish()
    }
}

impl Peer {
    /// A peer called `name`, reached at `addresses` (tried in order; at least one), through
    /// `connector`. Nothing is connected yet.
    pub fn new(
        name: &str,
        addresses: Vec<Address>,
        connector: Arc<dyn Connector>,
        config: Config,
    ) -> Self {
        assert!(!addresses.is_empty(), "a peer needs at least one address");
        Self {
            name: name.to_owned(),
            addresses,
            connector,
            config,
            link: tokio::sync::Mutex::new(Link::default()),
            state: Mutex::new(State::Idle),
            jitter: Mutex::new(jitter_seed()),
        }
    }

    /// Where it stands now.
    pub fn state(&self) -> State {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends `frame` with the default time limit.
    pub async fn call(&self, frame: frame::OutboundCall) -> Result<client::Reply, client::Error> {
        self.call_within(frame, self.config.client.timeout).await
    }

    /// Sends `frame` on the current connection (connecting first if there is none) and waits
    /// at most `timeout`, connecting included, for the reply.
    pub async fn call_within(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
    ) -> Result<client::Reply, client::Error> {
        let (reply, _) = self.call_answered(frame, timeout).await?;
        Ok(reply)
    }

    /// The current connection, if it is session `session` and still up.
    async fn current(&self, session: u64) -> Option<Arc<Client>> {
        let link = self.link.lock().await;
        let client = link.client.as_ref()?;
        let up = client.session() == session && !client.is_closed();
        up.then(|| Arc::clone(client))
    }

    /// `call_within`, telling the session that answered (the connection the call went on
    /// last: a call the server went away before reading is sent again on a fresh one).
    async fn call_answered(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
    ) -> Result<(client::Reply, u64), client::Error> {
        let deadline = Instant::now() + timeout;
        let mut frame = frame;
        loop {
            let client = self.connected(deadline, timeout).await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let called = client.call_within(frame, remaining).await;
            if let Err(client::Error::Timeout { .. }) = called {
                // The call's own limit, not what was left of it after connecting.
                return Err(timeout_error(timeout));
            }
            let Err(client::Error::Unread(sent)) = called else {
                return called.map(|reply| (reply, client.session()));
            };
            // The server went away before reading it: it did not run; send it elsewhere.
            frame = frame::OutboundCall::from_sent(&sent).map_err(client::Error::Frame)?;
        }
    }

    /// Closes the current connection, failing its calls; the next call connects again.
    pub async fn close(&self) {
        let mut link = self.link.lock().await;
        if let Some(client) = link.client.take() {
            client.close().await;
        }
        self.set_state(State::Idle);
    }

    /// The current connection, or a new one within `deadline`, as the back-off allows.
    async fn connected(
        &self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Arc<Client>, client::Error> {
        loop {
            let retry_at = match self.connect_or_pause(deadline, timeout).await? {
                Step::Ready(client) => return Ok(client),
                Step::RetryAt(retry_at) => retry_at,
            };
            // `WhenDown::Wait`: sleep out the pause, within the call's own limit.
            if retry_at >= deadline {
                tokio::time::sleep_until(deadline).await;
                return Err(timeout_error(timeout));
            }
            tokio::time::sleep_until(retry_at).await;
        }
    }

    /// One look at the link: the connection there, a new one, or the pause to wait out (an
    /// error at once under `WhenDown::Fail`).
    async fn connect_or_pause(
        &self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Step, client::Error> {
        let locked = tokio::time::timeout_at(deadline, self.link.lock()).await;
        let mut link = locked.map_err(|_| timeout_error(timeout))?;
        if let Some(client) = self.usable(&mut link) {
            return Ok(Step::Ready(client));
        }
        let now = Instant::now();
        let pausing = link.retry_at.filter(|retry_at| now < *retry_at);
        if let Some(retry_at) = pausing {
            let last_error = link.last_error.clone().unwrap_or(client::Error::PeerClosed);
            return self.during_pause(retry_at, last_error);
        }
        match self.connect_round(deadline).await {
            Ok(client) => {
                link.client = Some(Arc::clone(&client));
                link.round = 0;
                link.retry_at = None;
                Ok(Step::Ready(client))
            }
            Err(error) => {
                let retry_at = self.back_off(&mut link, &error);
                self.during_pause(retry_at, error)
            }
        }
    }

    /// What a call does while the peer backs off until `retry_at`.
    fn during_pause(
        &self,
        retry_at: Instant,
        last_error: client::Error,
    ) -> Result<Step, client::Error> {
        match self.config.when_down {
            WhenDown::Fail => Err(last_error),
            WhenDown::Wait => Ok(Step::RetryAt(retry_at)),
        }
    }

    /// The current connection if it can take a call; a closed or draining one is let go.
    fn usable(&self, link: &mut Link) -> Option<Arc<Client>> {
        let client = link.client.as_ref()?;
        if !client.is_closed() && !client.is_draining() {
            return Some(Arc::clone(client));
        }
        let why = if client.is_draining() {
            "the server goes away"
        } else {
            "the connection dropped"
        };
        tracing::info!(peer = self.name, why, "peer disconnected");
        link.client = None;
        self.set_state(State::Idle);
        None
    }

    /// Tries each address in order, each within the connect timeout (and the call's deadline).
    async fn connect_round(&self, deadline: Instant) -> Result<Arc<Client>, client::Error> {
        self.set_state(State::Connecting);
        let mut last_error = client::Error::PeerClosed;
        for address in &self.addresses {
            let attempt_deadline = deadline.min(Instant::now() + self.config.connect_timeout);
            let attempt = self.connector.connect(address);
            let connected = tokio::time::timeout_at(attempt_deadline, attempt).await;
            let error = match connected {
                Ok(Ok(transport)) => {
                    tracing::info!(peer = self.name, %address, "peer connected");
                    let peer = self.name.clone();
                    metrics::counter!("exorun_peer_connects_total", "peer" => peer).increment(1);
                    self.set_state(State::Connected(address.clone()));
                    return Ok(Arc::new(Client::new(transport, self.config.client)));
                }
                Ok(Err(error)) => client::Error::from(error),
                Err(_) => client::Error::Transport(transport::Error::Io {
                    kind: std::io::ErrorKind::TimedOut,
                    source: exorun_common::Cause::new(format!(
                        "connecting to {address} took too long"
                    )),
                }),
            };
            tracing::debug!(peer = self.name, %address, %error, "connect failed");
            last_error = error;
        }
        Err(last_error)
    }

    /// Every address failed: pause, doubling per failed round, with jitter; returns when the
    /// pause ends.
    fn back_off(&self, link: &mut Link, error: &client::Error) -> Instant {
        link.round = link.round.saturating_add(1);
        let doublings = link.round.saturating_sub(1).min(20);
        let base = BACKOFF_INITIAL.saturating_mul(1u32 << doublings);
        let pause = self.jittered(base.min(self.config.backoff_max));
        let retry_at = Instant::now() + pause;
        link.retry_at = Some(retry_at);
        link.last_error = Some(error.clone());
        let pause_ms = exorun_common::millis(pause);
        tracing::info!(peer = self.name, %error, pause_ms, "peer unreachable; backing off");
        self.set_state(State::BackingOff {
            last_error: error.to_string(),
        });
        retry_at
    }

    /// `pause` scaled by a factor from 0.8 to 1.2.
    fn jittered(&self, pause: Duration) -> Duration {
        let mut state = self.jitter.lock().unwrap_or_else(PoisonError::into_inner);
        // xorshift64: enough to spread peers apart, not a secret.
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let permille = 800 + u32::try_from(*state % 401).unwrap_or(0);
        pause.saturating_mul(permille) / 1000
    }

    fn set_state(&self, state: State) {
        let connected = matches!(state, State::Connected(_));
        let up = metrics::gauge!("exorun_peer_connected", "peer" => self.name.clone());
        up.set(if connected { 1.0 } else { 0.0 });
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }
}

impl client::Channel for Peer {
    fn carries_handles(&self) -> bool {
        true
    }

    fn call_within(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<client::Reply, client::Error>> {
        Box::pin(Peer::call_within(self, frame, timeout))
    }

    fn timeout(&self) -> Duration {
        self.config.client.timeout
    }

    fn call_session(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
        on: Option<u64>,
    ) -> BoxFuture<'_, Result<(client::Reply, u64), client::Error>> {
        Box::pin(async move {
            let Some(on) = on else {
                return self.call_answered(frame, timeout).await;
            };
            // Handles belong to one connection: that one, as it is, or none.
            let Some(client) = self.current(on).await else {
                return Err(client::Error::SessionEnded);
            };
            match client.call_within(frame, timeout).await {
                Err(client::Error::Unread(_)) => Err(client::Error::SessionEnded),
                called => Ok((called?, on)),
            }
        })
    }

    fn release<'a>(
        &'a self,
        handle: u64,
        session: u64,
        _target: &'a str,
    ) -> BoxFuture<'a, Result<Result<(), Failure>, client::Error>> {
        Box::pin(async move {
            let Some(client) = self.current(session).await else {
                return Ok(Ok(())); // that connection ended, and its handles with it
            };
            match client.release(handle).await {
                Err(client::Error::Unread(_) | client::Error::PeerClosed) => Ok(Ok(())),
                released => released,
            }
        })
    }
}

fn timeout_error(timeout: Duration) -> client::Error {
    client::Error::Timeout {
        timeout_ms: exorun_common::millis(timeout),
    }
}

/// A different seed for each peer of each process.
fn jitter_seed() -> u64 {
    use std::hash::BuildHasher;
    let seed = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    seed | 1
}
