//! Running a bounded hyper server, the one way this crate (and the `exorun` command's metrics
//! endpoint) serves HTTP/1.1: a listener's connections admitted within a cap over all and a cap
//! per source (an IPv4 address or an IPv6 /64; one more is closed at once), each with its
//! request head bounded in size and time (also the keep-alive idle time), answer bytes that
//! wait too long for a client that takes none cut (`stall`), an optional bound on a whole
//! connection's life, TLS when given (its handshake within the head deadline), and, once the
//! stop signal comes, no new connection and a bounded drain of the open ones, after which those
//! still open are aborted. What a request means is the [`Answer`]'s.
//!
//! **Under pressure**, a new connection that finds every place taken sheds the connection idle
//! the longest (no request in progress: kept alive between requests, or opened and sending
//! no head) and takes its place, waiting at most `SHED_WAIT` for it to go, as production
//! proxies do: a crowd of idle or slowloris connections, from any number of hosts, cannot keep
//! a client with a request to make out. A connection with a request in progress is bounded by
//! the request's own deadlines instead.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;

use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::idle;
use crate::stall;

/// The pause after an accept that failed (out of descriptors, a connection reset before it
/// was taken): a pause, not a spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
/// How long a new connection waits for the idle one it shed to let go of its place: a shed
/// connection's task ends at its next turn, well within this even on a loaded machine.
pub const SHED_WAIT: Duration = Duration::from_secs(1);

/// What one listener holds its clients to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Connections open at once; one more is closed at once.
    pub connections_max: usize,
    /// Connections one source may hold at once; one more is closed at once.
    pub connections_per_source_max: usize,
    /// The largest request head (request line and headers), in bytes.
    pub head_bytes_max: usize,
    /// How long a request head (and a TLS handshake) may take to arrive; also how long a
    /// kept-alive connection may stay idle.
    pub head_timeout: Duration,
    /// Whether a connection may carry more than one request.
    pub keep_alive: bool,
    /// How long answer bytes may wait for a client that takes none of them.
    pub write_timeout: Duration,
    /// How long one connection may last at most, its answers written included (`None`: as
    /// long as its requests keep it busy).
    pub connection_timeout: Option<Duration>,
    /// How long open connections may finish their requests after the stop.
    pub drain_timeout: Duration,
}

/// Who a request came from, as its connection knows it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// What its connection is counted by: an IPv4 address, or an IPv6 address's /64.
    pub source: IpAddr,
    /// Whether its connection is TLS.
    pub secure: bool,
    /// Turns true once the server's `serve` is over: work a request started that is still
    /// running then is cut.
    pub closing: tokio::sync::watch::Receiver<bool>,
}

/// What answers a bounded server's requests.
pub trait Answer: Send + Sync + 'static {
    /// The answers' bodies.
    type Body: hyper::body::Body<
            Data = bytes::Bytes,
            Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        > + Send
        + Unpin
        + 'static;

    /// The answer to `request`, which came from `peer`.
    fn answer(
        self: &Arc<Self>,
        request: hyper::Request<Incoming>,
        peer: &Peer,
    ) -> impl Future<Output = hyper::Response<Self::Body>> + Send;
}

/// A bounded server of `A`'s answers.
pub struct Listen<A> {
    answer: Arc<A>,
    bounds: Bounds,
    connections: Arc<Semaphore>,
    sources: Mutex<HashMap<IpAddr, usize>>,
    /// The open connections, and which is idle the longest.
    open: idle::Registry,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl<A> std::fmt::Debug for Listen<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listen")
            .field("bounds", &self.bounds)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl<A: Answer> Listen<A> {
    /// A server of `answer`'s answers within `bounds`, over TLS with `tls` when given. Counts
    /// past a semaphore's maximum are clamped to it (`Config::check` refuses them first).
    pub fn new(answer: Arc<A>, bounds: Bounds, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let connections = bounds.connections_max.min(Semaphore::MAX_PERMITS);
        Self {
            answer,
            bounds,
            connections: Arc::new(Semaphore::new(connections)),
            sources: Mutex::new(HashMap::new()),
            open: idle::Registry::default(),
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
        }
    }

    /// Serves connections from `listener` until `stop` completes, then lets open connections
    /// finish their requests within the drain time and aborts those still open. One server may
    /// serve several listeners at once (its bounds hold over all of them).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: impl Future<Output = ()>) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut stop = std::pin::pin!(stop);
        let mut connections = tokio::task::JoinSet::new();
        let (closed, closing) = tokio::sync::watch::channel(false);
        loop {
            let accepted = tokio::select! {
                () = &mut stop => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, address)) = accepted else {
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            };
            let source = exorun_common::source(address.ip());
            let Some(admitted) = self.admit(source).await else {
                metrics::counter!("exorun_http_connections_refused_total").increment(1);
                continue;
            };
            let peer = Peer {
                source,
                secure: self.tls.is_some(),
                closing: closing.clone(),
            };
            let (id, tracked) = self.open.enter();
            let entered = Entered {
                listen: Arc::clone(&self),
                id,
            };
            let served = Arc::clone(&self).connection(
                stream,
                (peer, Arc::clone(&tracked)),
                graceful.watcher(),
            );
            let task = connections.spawn(async move {
                // Dropped with the task however it ends (shed connections are aborted).
                let _held = (admitted, entered);
                served.await;
            });
            tracked.spawned(task);
        }
        drop(listener);
        let drained = tokio::time::timeout(self.bounds.drain_timeout, graceful.shutdown());
        if drained.await.is_err() {
            tracing::warn!("HTTP connections still open after the drain time were closed");
        }
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        closed.send_replace(true);
    }

    /// A place for one more connection from `source`, or `None` when the source holds all it
    /// may, or the server does and has no idle connection to shed.
    async fn admit(self: &Arc<Self>, source: IpAddr) -> Option<Admitted<A>> {
        let permit = match Arc::clone(&self.connections).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if self.open.shed_one() => {
                metrics::counter!("exorun_http_connections_shed_total").increment(1);
                let freed = Arc::clone(&self.connections).acquire_owned();
                tokio::time::timeout(SHED_WAIT, freed).await.ok()?.ok()?
            }
            Err(_) => return None,
        };
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let count = sources.entry(source).or_insert(0);
        if *count >= self.bounds.connections_per_source_max {
            return None;
        }
        *count += 1;
        drop(sources);
        Some(Admitted {
            listen: Arc::clone(self),
            source,
            _permit: permit,
        })
    }

    /// Serves one connection (after its TLS handshake, when TLS is on), within its bounds.
    async fn connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: (Peer, Arc<idle::Tracked>),
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let stream = stall::Stall::new(stream, self.bounds.write_timeout);
        let served = async {
            let Some(tls) = &self.tls else {
                self.http1(stream, peer, watcher).await;
                return;
            };
            let handshake = tokio::time::timeout(self.bounds.head_timeout, tls.accept(stream));
            let Ok(Ok(secured)) = handshake.await else {
                return; // a failed or slow handshake closes the connection
            };
            self.http1(secured, peer, watcher).await;
        };
        let Some(lifetime) = self.bounds.connection_timeout else {
            served.await;
            return;
        };
        let _ = tokio::time::timeout(lifetime, served).await;
    }

    async fn http1<S>(
        &self,
        stream: S,
        (peer, tracked): (Peer, Arc<idle::Tracked>),
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let answer = Arc::clone(&self.answer);
        let service = hyper::service::service_fn(move |request| {
            let (answer, peer) = (Arc::clone(&answer), peer.clone());
            // Busy from its head until its answer is written: never shed meanwhile.
            let busy = tracked.begin();
            async move {
                let answered = answer.answer(request, &peer).await;
                let answered = answered.map(|body| idle::Answering::new(body, busy));
                Ok::<_, std::convert::Infallible>(answered)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.bounds.head_timeout)
            .keep_alive(self.bounds.keep_alive)
            .max_buf_size(self.bounds.head_bytes_max.max(8192));
        let io = hyper_util::rt::TokioIo::new(stream);
        let connection = builder.serve_connection(io, service);
        if let Err(error) = watcher.watch(connection).await {
            tracing::debug!(%error, "an HTTP connection ended");
        }
    }
}

/// A connection counted among the open ones, counted out when it ends.
struct Entered<A> {
    listen: Arc<Listen<A>>,
    id: u64,
}

impl<A> Drop for Entered<A> {
    fn drop(&mut self) {
        self.listen.open.leave(self.id);
    }
}

/// A connection admitted: its places in the server's and its source's counts.
struct Admitted<A> {
    listen: Arc<Listen<A>>,
    source: IpAddr,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl<A> Drop for Admitted<A> {
    fn drop(&mut self) {
        let sources = &self.listen.sources;
        let mut sources = sources.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(count) = sources.get_mut(&self.source) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            sources.remove(&self.source);
        }
    }
}
