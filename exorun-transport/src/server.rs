//! Serving: listeners accept connections and serve each (`connection`; mini-redis's shape: a
//! listener, a handler per connection, one shutdown signal), lattices answer the calls NATS
//! routes here, and one stop ends both. What a call means is the `Dispatcher`'s business; how
//! bytes arrive is the transports'.
//!
//! Bounds, each documented at its constant: at most `connections_max` connections in all (kept
//! under the process's descriptor limit), split into an equal share per listener so a flood on
//! one (say, plaintext sockets that never send a byte) cannot lock out the others; at most
//! `connections_per_source_max` connections from one source address over all listeners (checked
//! at accept, before any handshake); each connection held to the frame deadline (its TLS or
//! QUIC handshake included), the first-call and idle timeouts, and a byte budget all
//! connections share. A connection past a bound is closed at once; refusals and failed accepts
//! are logged at most once a second. A stop stops accepting (lattices leave their queue
//! groups), lets calls in flight finish and reply for at most the drain timeout, and closes
//! every connection, cutting what is left.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::budget;
use crate::budget::Budget;
use crate::connection;
use crate::dispatch;
use crate::dispatch::Dispatcher;
#[cfg(feature = "nats")]
use crate::nats;
#[cfg(any(feature = "tcp", feature = "unix"))]
use crate::net;
use crate::stream;
use crate::transport;
use exorun_common::Throttle;

/// Most connections served at once by default (when the descriptor limit allows): thousands of
/// callers, well under the usual 65,536 descriptors, each connection holding at most its read
/// buffer and its calls' frames within the byte budget.
pub const CONNECTIONS_MAX_DEFAULT: usize = 4096;
/// Most connections one source address may hold by default (over all listeners): a runtime
/// keeps one connection per peer, so 64 leaves room for many runtimes behind one address while
/// a single host can take at most 1/64 of a lone listener's share.
pub const CONNECTIONS_PER_SOURCE_MAX_DEFAULT: usize = 64;
/// The share of the byte budget one source address may hold, as a fraction (1/8): a source
/// that stalls large frames on many connections holds at most an eighth of the budget, the
/// rest stays for everyone else. A share is never smaller than one largest frame, its read
/// buffer and its connection's transport buffers (or the largest frame could never arrive).
pub const SOURCE_SHARE_DIVISOR: u64 = 8;
/// Descriptors kept out of the connection cap for everything else a runtime opens (listeners,
/// component files, outgoing links, WASI preopens).
const DESCRIPTORS_RESERVED: u64 = 64;
/// How long a stopping server lets calls in flight finish by default, before it closes what is
/// left: 10 s covers real calls, and a peer that never reads its replies cannot hold a stop
/// for longer.
pub const DRAIN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Pause after a failed accept, so a shortage of file descriptors does not spin the loop.
#[cfg(any(feature = "tcp", feature = "unix"))]
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// What a server holds its peers to.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most connections served at once, over all listeners (each listener gets an equal
    /// share); kept under the process's descriptor limit less a reserve.
    pub connections_max: usize,
    /// Most connections one source address may hold, over all listeners.
    pub connections_per_source_max: usize,
    /// How every connection reads: largest frame, frame deadline, and the byte budget that all
    /// connections share (partly read frames and calls waiting to run).
    pub stream: stream::Config,
    /// Each connection's bounds: calls in flight, first-call and idle timeouts. A lattice
    /// runs at most `calls_in_flight_max` calls at once too.
    pub connection: connection::Config,
    /// How long a stop waits for calls in flight before it closes what is left.
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            connections_max: CONNECTIONS_MAX_DEFAULT,
            connections_per_source_max: CONNECTIONS_PER_SOURCE_MAX_DEFAULT,
            stream: stream::Config {
                message_bytes_max: transport::MESSAGE_BYTES_MAX,
                frame_deadline: Some(stream::FRAME_DEADLINE_DEFAULT),
                budget: Some(Budget::new(budget::BUDGET_BYTES_DEFAULT)),
            },
            connection: connection::Config::default(),
            drain_timeout: DRAIN_TIMEOUT_DEFAULT,
        }
    }
}

/// How a server's stop went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Connections still open when the drain timeout passed, closed with their calls.
    pub cut: usize,
    /// Lattices whose calls were still running when the drain timeout passed.
    pub lattices_cut: usize,
    /// Calls NATS delivered that no lattice loop saw (see `nats::Served::lost`).
    pub lost: u64,
}

/// Listeners and lattices serving one dispatcher, until one stop.
pub struct Server {
    dispatcher: Arc<dyn Dispatcher>,
    config: Config,
    #[cfg(any(feature = "tcp", feature = "unix"))]
    listeners: Vec<net::Listener>,
    #[cfg(feature = "nats")]
    lattices: Vec<nats::Subscribed>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server of `dispatcher`'s calls, held to `config`; it serves nothing until given
    /// listeners or lattices.
    pub fn new(dispatcher: Arc<dyn Dispatcher>, config: Config) -> Self {
        Self {
            dispatcher,
            config,
            #[cfg(any(feature = "tcp", feature = "unix"))]
            listeners: Vec::new(),
            #[cfg(feature = "nats")]
            lattices: Vec::new(),
        }
    }

    /// Also accepts connections on `listener`.
    #[cfg(any(feature = "tcp", feature = "unix"))]
    #[must_use]
    pub fn listen(mut self, listener: net::Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Also answers the calls NATS routes to `subscribed`'s exports.
    #[cfg(feature = "nats")]
    #[must_use]
    pub fn lattice(mut self, subscribed: nats::Subscribed) -> Self {
        self.lattices.push(subscribed);
        self
    }

    /// Serves until `stop` completes; then stops accepting (lattices leave their queue groups),
    /// lets calls in flight finish and reply for at most the drain timeout, closes every
    /// connection (cutting what is left) and says how it went.
    pub async fn run(self, stop: impl Future<Output = ()> + Send) -> Stopped {
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let until = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };
        let drain_timeout = self.config.drain_timeout;
        #[cfg(any(feature = "tcp", feature = "unix"))]
        let (sockets, live) = {
            let cap = connection_cap(&self.config);
            let share = (cap / self.listeners.len().max(1)).max(1);
            let live = Arc::new(AtomicUsize::new(0));
            // One count per source across every listener: a source holds one budget share and
            // `connections_per_source_max` connections in all, however many listeners it uses.
            let sources = Arc::new(Sources::new(Arc::clone(&live), &self.config));
            let mut sockets = JoinSet::new();
            for listener in self.listeners {
                let accept = Accept {
                    listener,
                    dispatcher: Arc::clone(&self.dispatcher),
                    config: self.config.clone(),
                    share,
                    sources: Arc::clone(&sources),
                };
                sockets.spawn(accept.run(until()));
            }
            (sockets, live)
        };
        #[cfg(feature = "nats")]
        let lattices = {
            let mut lattices = JoinSet::new();
            let calls_in_flight_max = self.config.connection.calls_in_flight_max;
            for subscribed in self.lattices {
                let dispatcher = Arc::clone(&self.dispatcher);
                lattices.spawn(subscribed.serve(dispatcher, calls_in_flight_max, until()));
            }
            lattices
        };
        stop.await;
        let _ = stopping.send(true);
        let drain_by = tokio::time::Instant::now() + drain_timeout;
        let mut report = Stopped::default();
        #[cfg(any(feature = "tcp", feature = "unix"))]
        {
            report.cut = drain_sockets(sockets, &live, drain_by).await;
        }
        #[cfg(feature = "nats")]
        {
            let (lattices_cut, lost) = drain_lattices(lattices, drain_by).await;
            report.lattices_cut = lattices_cut;
            report.lost = lost;
        }
        if report.cut > 0 || report.lattices_cut > 0 {
            tracing::warn!(
                cut = report.cut,
                lattices_cut = report.lattices_cut,
                timeout_ms = exorun_common::millis(drain_timeout),
                "drain timeout: closed what was still running"
            );
        }
        report
    }
}

/// The connection cap `config` asks for, under the process's descriptor limit.
fn connection_cap(config: &Config) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let Some(limit) = limit else {
        return config.connections_max;
    };
    let usable = usize::try_from(limit.saturating_sub(DESCRIPTORS_RESERVED)).unwrap_or(usize::MAX);
    config.connections_max.min(usable.max(1))
}

/// Connections and budget shares per source address across a server's listeners (an entry
/// lives while its source holds a connection), and the connections open on every listener.
#[derive(Debug)]
struct Sources {
    held: Mutex<HashMap<IpAddr, Source>>,
    live: Arc<AtomicUsize>,
    /// The whole budget (`None`: no budget), and each source's share of it.
    budget: Option<Budget>,
    share_bytes: u64,
}

/// One source's connections and the share of the budget they hold together.
#[derive(Debug)]
struct Source {
    connections: usize,
    budget: Option<Budget>,
}

/// One open connection, counted against its source; uncounted when dropped.
struct Counted {
    sources: Arc<Sources>,
    source: Option<IpAddr>,
    /// What the connection charges: its source's share (a Unix socket, the whole budget).
    budget: Option<Budget>,
}

/// Why a connection was refused at once.
enum Refusal {
    /// Its source holds `connections_per_source_max` already.
    Connections,
    /// Its source's share of the budget cannot hold its transport's buffers now.
    Budget,
}

impl Sources {
    fn new(live: Arc<AtomicUsize>, config: &Config) -> Self {
        let budget = config.stream.budget.clone();
        let floor = config
            .stream
            .message_bytes_max
            .saturating_add(u64::try_from(stream::READ_BUFFER_BYTES).unwrap_or(u64::MAX))
            .saturating_add(net::CONNECTION_BUFFERS_BYTES_MAX);
        let share_bytes = budget.as_ref().map_or(0, |budget| {
            let whole = budget.budget_bytes();
            (whole / SOURCE_SHARE_DIVISOR).max(floor).min(whole)
        });
        Self {
            held: Mutex::default(),
            live,
            budget,
            share_bytes,
        }
    }

    /// Counts a connection from `source` (`None`: a Unix socket, counted only in all), or
    /// refuses it past `max` connections for its source.
    fn admit(self: &Arc<Self>, source: Option<IpAddr>, max: usize) -> Result<Counted, Refusal> {
        let budget = match source {
            Some(address) => self.count(address, max)?,
            None => self.budget.clone(),
        };
        self.live.fetch_add(1, Ordering::AcqRel);
        Ok(Counted {
            sources: Arc::clone(self),
            source,
            budget,
        })
    }

    /// One more connection from `address`: its source's share of the budget, or a refusal.
    fn count(&self, address: IpAddr, max: usize) -> Result<Option<Budget>, Refusal> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let source = held.entry(address).or_insert_with(|| Source {
            connections: 0,
            budget: self
                .budget
                .as_ref()
                .map(|budget| budget.share(self.share_bytes)),
        });
        if source.connections >= max {
            return Err(Refusal::Connections);
        }
        source.connections += 1;
        Ok(source.budget.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.sources.live.fetch_sub(1, Ordering::AcqRel);
        let Some(address) = self.source else {
            return;
        };
        let mut held = self
            .sources
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(source) = held.get_mut(&address) else {
            return;
        };
        source.connections = source.connections.saturating_sub(1);
        if source.connections == 0 {
            held.remove(&address);
        }
    }
}

/// One listener's accept loop and its connections.
#[cfg(any(feature = "tcp", feature = "unix"))]
struct Accept {
    listener: net::Listener,
    dispatcher: Arc<dyn Dispatcher>,
    config: Config,
    /// This listener's share of the connection cap.
    share: usize,
    /// Connections per source (and open in all) on every listener of the server.
    sources: Arc<Sources>,
}

/// What one listener's loop keeps while it accepts.
#[cfg(any(feature = "tcp", feature = "unix"))]
struct Accepting {
    refusals: Throttle,
    failures: Throttle,
    sources: Arc<Sources>,
    connections: JoinSet<()>,
    stopped: tokio::sync::watch::Receiver<bool>,
    /// The listener's address, for log lines.
    address: String,
}

#[cfg(any(feature = "tcp", feature = "unix"))]
impl Accepting {
    /// One connection's failure or a passing shortage (aborted handshakes, too many open
    /// files): log it (throttled), back off briefly and keep listening.
    async fn accept_failed(&self, error: &transport::Error) {
        let address = &self.address;
        self.failures.note(|skipped| {
            tracing::warn!(%error, skipped, address, "accept failed; still listening");
        });
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }
}

#[cfg(any(feature = "tcp", feature = "unix"))]
impl Accept {
    /// Accepts until `stop`, then lets its connections finish (the caller bounds that).
    async fn run(self, stop: impl Future<Output = ()> + Send + 'static) {
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let address = self.listener.local_address().map(|at| at.to_string());
        let mut state = Accepting {
            refusals: Throttle::new(),
            failures: Throttle::new(),
            sources: Arc::clone(&self.sources),
            connections: JoinSet::new(),
            stopped,
            address: address.unwrap_or_else(|_| "a listener".to_owned()),
        };
        let mut stop = std::pin::pin!(stop);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut stop => break,
                accepted = self.listener.accept_socket() => accepted,
            };
            while state.connections.try_join_next().is_some() {}
            match accepted {
                Ok(socket) => self.admit(&mut state, socket),
                Err(error) => state.accept_failed(&error).await,
            }
        }
        drop(self.listener);
        let _ = stopping.send(true);
        while state.connections.join_next().await.is_some() {}
    }

    /// Serves `socket`, unless the listener is at its share or its source at its bound (then
    /// it is closed at once, before any handshake).
    fn admit(&self, state: &mut Accepting, socket: net::Accepted) {
        let address = &state.address;
        let transport = scheme(address);
        if state.connections.len() >= self.share {
            drop(socket);
            let reason = "listener_share";
            metrics::counter!("exorun_connections_refused_total", "transport" => transport, "reason" => reason)
                .increment(1);
            let share = self.share;
            state.refusals.note(|skipped| {
                let why = "refused a connection: listener at its share of the cap";
                tracing::warn!(share, skipped, address, "{why}");
            });
            return;
        }
        let max = self.config.connections_per_source_max;
        let admitted = state
            .sources
            .admit(socket.source().map(exorun_common::source), max);
        let buffers = admitted.and_then(|counted| {
            let bytes = socket.buffers_bytes();
            let charge = match &counted.budget {
                Some(budget) => Some(budget.try_charge(bytes).ok_or(Refusal::Budget)?),
                None => None,
            };
            Ok((counted, charge))
        });
        let (counted, buffers) = match buffers {
            Ok(admitted) => admitted,
            Err(refusal) => {
                drop(socket);
                let reason = match refusal {
                    Refusal::Connections => "source_connections",
                    Refusal::Budget => "source_budget",
                };
                metrics::counter!("exorun_connections_refused_total", "transport" => transport, "reason" => reason)
                    .increment(1);
                let why = match refusal {
                    Refusal::Connections => "refused a connection: its source holds too many",
                    Refusal::Budget => "refused a connection: its source's budget share is full",
                };
                state.refusals.note(|skipped| {
                    tracing::warn!(max, skipped, address, "{why}");
                });
                return;
            }
        };
        let mut stream = self.config.stream.clone();
        stream.budget.clone_from(&counted.budget);
        let connection = connection(
            socket,
            Arc::clone(&self.dispatcher),
            (stream, self.config.connection),
            state.stopped.clone(),
            (counted, buffers),
        );
        metrics::counter!("exorun_connections_total", "transport" => transport).increment(1);
        let open = metrics::gauge!("exorun_connections_open", "transport" => transport);
        open.increment(1.0);
        state.connections.spawn(async move {
            connection.await;
            open.decrement(1.0);
        });
    }
}

/// The transport of a listener's address (`tcp`, `tls`, `quic`, `unix`), as a bounded label.
#[cfg(any(feature = "tcp", feature = "unix"))]
fn scheme(address: &str) -> &'static str {
    let known = ["tcp", "tls", "quic", "unix"];
    let given = address.split("://").next().unwrap_or_default();
    known
        .into_iter()
        .find(|scheme| *scheme == given)
        .unwrap_or("other")
}

/// Opens one accepted connection (its handshake within the frame deadline) and serves it
/// until it ends or the server stops.
#[cfg(any(feature = "tcp", feature = "unix"))]
async fn connection(
    socket: net::Accepted,
    dispatcher: Arc<dyn Dispatcher>,
    (stream, config): (stream::Config, connection::Config),
    mut stopped: tokio::sync::watch::Receiver<bool>,
    // Its place among its source's connections, and the charge for its transport's buffers:
    // both held for as long as it lives.
    held: (Counted, Option<budget::Charge>),
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
    let mut origin = dispatch::Origin::new(opened.peer);
    if let Some(address) = held.0.source {
        origin = origin.from_address(address);
    }
    let served = connection::serve_until(transport, dispatcher, config, origin, until).await;
    drop(held);
    match served {
        Ok(_) => {}
        Err(
            error @ (connection::Error::Idle { .. }
            | connection::Error::NoCall { .. }
            | connection::Error::Transport(transport::Error::FrameDeadline { .. })),
        ) => {
            tracing::debug!(%error, "closed a connection");
        }
        Err(error) => tracing::info!(%error, "connection ended"),
    }
}

/// Waits until `drain_by` for the listeners' connections to finish their calls; then cuts the
/// rest. Returns how many connections were cut.
#[cfg(any(feature = "tcp", feature = "unix"))]
async fn drain_sockets(
    mut sockets: JoinSet<()>,
    live: &AtomicUsize,
    drain_by: tokio::time::Instant,
) -> usize {
    let finished = async { while sockets.join_next().await.is_some() {} };
    if tokio::time::timeout_at(drain_by, finished).await.is_ok() {
        return 0;
    }
    let cut = live.load(Ordering::Acquire);
    sockets.abort_all();
    while sockets.join_next().await.is_some() {}
    cut
}

/// Waits until `drain_by` for the lattices to answer what they received; returns how many did
/// not in time, and the calls NATS delivered that none saw.
#[cfg(feature = "nats")]
async fn drain_lattices(
    mut lattices: JoinSet<nats::Served>,
    drain_by: tokio::time::Instant,
) -> (usize, u64) {
    let mut lost = 0;
    loop {
        let joined = tokio::time::timeout_at(drain_by, lattices.join_next()).await;
        match joined {
            Ok(Some(Ok(served))) => {
                metrics::counter!("exorun_nats_calls_lost_total").increment(served.lost);
                lost += served.lost;
            }
            Ok(Some(Err(_))) => {}
            Ok(None) => return (0, lost),
            Err(_) => break,
        }
    }
    let cut = lattices.len();
    lattices.abort_all();
    (cut, lost)
}
