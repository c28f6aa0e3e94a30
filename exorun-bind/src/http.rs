//! Serving `wasi:http/incoming-handler` instances over HTTP/1.1 (plaintext or TLS), on hyper
//! and wasmtime-wasi-http, routed by path prefix.
//!
//! Each request is matched to the route with the longest prefix that covers its path (a
//! prefix covers `/api` and `/api/...`, never `/apiary`; `/` covers everything). It takes a
//! replica of the route's instance (or a fresh instance in `per-call` mode) within the
//! instance's own limits, its `incoming-request` and `response-outparam` are made in that
//! replica's store, and `handle` runs there with the instance's fuel. Its other imports are
//! linked as any instance's are, so a handler here may compute its pages with instances on
//! other runtimes.
//!
//! **Answers the runtime gives itself:** no route 404; no request slot, or the instance's
//! waiting calls full, 503; a handler that trapped, ran out of fuel or memory, or returned
//! without answering, 500 (and the replica is restarted by supervision). Each carries a short
//! text saying which.
//!
//! **Bounds (`Config`):** connections over all, and per source (an IPv4 address, or an IPv6
//! /64; one more is closed at once); a request head's size and the time it may take to arrive
//! (also the keep-alive idle time); a request body's size and the time it may take; requests
//! being handled at once; how long a handler may run; how long answer bytes may wait for a
//! client that takes none. A TLS handshake must finish within the head deadline. On stop, no
//! connection is accepted, open ones finish the request they are in and close, within the
//! drain time.
//!
//! **Whose fault.** Each request runs as a call of its source's party (a hash of the source),
//! so a client whose requests fail a replica is the one held back by its restart back-off, not
//! every client of the route. A request without a `Host` header is answered 400 before it
//! reaches an instance.
//!
//! **A cut answer looks cut.** An answer's body ends cleanly only when its handler returned;
//! one whose handler trapped or was cut at the deadline after it began to answer ends with an
//! error, so hyper closes the connection without the body's last chunk and the client sees an
//! incomplete answer, never a short one that looks whole.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use exorun_core::app::Export;
use exorun_core::instance::InstanceHandle;
use exorun_core::principal;
use exorun_core::trace;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

mod config;
mod request;
mod stall;

pub use config::Config;
use config::party;
use config::source;

/// The interface a routed instance must export (any 0.2 version).
pub const HANDLER: &str = "wasi:http/incoming-handler@0.2";

/// The most routes one server has.
pub const ROUTES_MAX: usize = 64;

/// Why HTTP cannot be served as asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A routed instance does not export `wasi:http/incoming-handler`.
    #[error("`{instance}` does not export wasi:http/incoming-handler#handle")]
    NoHandler {
        /// The instance, by name.
        instance: String,
    },
    /// A route's prefix does not start with `/`, or is routed twice.
    #[error("route `{prefix}`: a prefix starts with `/` and is routed once")]
    Prefix {
        /// The prefix.
        prefix: String,
    },
    /// More than [`ROUTES_MAX`] routes.
    #[error("at most {ROUTES_MAX} routes")]
    TooManyRoutes,
    /// The certificate or key cannot be used.
    #[error("TLS: {message}")]
    Tls {
        /// What is wrong, with the file.
        message: String,
    },
    /// A bound of `Config` that cannot be used (zero, or past what it can count).
    #[error("HTTP bound `{bound}`: {message}")]
    Config {
        /// The bound, by its field's name.
        bound: &'static str,
        /// Why not.
        message: String,
    },
}

/// One route: a path prefix and the instance that answers it.
struct Route {
    prefix: String,
    name: String,
    handle: InstanceHandle,
    export: Export,
    /// `exorun_http_requests_total` of this route by status class, made once.
    requests: [metrics::Counter; 5],
}

/// Path prefixes and their instances.
#[derive(Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// Routes `prefix` to `handle` (named `name` in answers and logs). A prefix is kept without
    /// its trailing `/`, so `/api` and `/api/` are one prefix, routed once.
    pub fn add(&mut self, prefix: &str, name: &str, handle: InstanceHandle) -> Result<(), Error> {
        if self.routes.len() >= ROUTES_MAX {
            return Err(Error::TooManyRoutes);
        }
        let kept = prefix.trim_end_matches('/');
        let routed = self.routes.iter().any(|route| route.prefix == kept);
        if !prefix.starts_with('/') || routed {
            return Err(Error::Prefix {
                prefix: prefix.to_owned(),
            });
        }
        let no_handler = || Error::NoHandler {
            instance: name.to_owned(),
        };
        let exports = &handle.ledger().exports;
        let interface = exports
            .keys()
            .find(|interface| interface.starts_with(HANDLER));
        let interface = interface.ok_or_else(no_handler)?.clone();
        let export = handle
            .export(&interface, "handle")
            .map_err(|_| no_handler())?;
        let requests = request::STATUS_CLASSES.map(|class| {
            let labels = [("route", name.to_owned()), ("status", class.to_owned())];
            metrics::counter!("exorun_http_requests_total", &labels)
        });
        self.routes.push(Route {
            prefix: kept.to_owned(),
            name: name.to_owned(),
            handle,
            export,
            requests,
        });
        // Longest prefix first: the first that covers a path is its route.
        self.routes
            .sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        Ok(())
    }

    /// The route whose prefix covers `path` (the longest: they are kept longest first).
    fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|route| covers(&route.prefix, path))
    }

    /// Whether nothing is routed.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Whether a route's `prefix` (its trailing `/` removed: `/` is the empty prefix) covers
/// `path`: the path is the prefix, or lies below it.
fn covers(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Loads a TLS server identity: a PEM certificate chain and its PEM private key.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let tls = |message: String| Error::Tls { message };
    let chain: Result<Vec<_>, _> = match CertificateDer::pem_file_iter(cert) {
        Ok(certificates) => certificates.collect(),
        Err(error) => return Err(tls(format!("{}: {error}", cert.display()))),
    };
    let chain = chain.map_err(|error| tls(format!("{}: {error}", cert.display())))?;
    if chain.is_empty() {
        return Err(tls(format!("{}: no certificate", cert.display())));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| tls(format!("{}: {error}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| tls(error.to_string()))?;
    let mut config = builder
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|error| tls(format!("{} and {}: {error}", cert.display(), key.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An HTTP server over `routes`.
pub struct Server {
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// What every connection of a server shares.
struct Shared {
    routes: Routes,
    config: Config,
    connections: Arc<Semaphore>,
    sources: Mutex<HashMap<IpAddr, usize>>,
    requests: Arc<Semaphore>,
}

/// What a connection is served with: its drain watcher, its source's party, and the signal
/// that its `serve` is over (handler calls still running are then cut).
type Served = (
    hyper_util::server::graceful::Watcher,
    u64,
    tokio::sync::watch::Receiver<bool>,
);

impl Server {
    /// A server of `routes` held to `config`, over TLS with `tls` when given.
    pub fn new(routes: Routes, config: Config, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        // `Config::check` refuses these past a semaphore's count; clamped so that a config
        // not checked cannot panic here.
        let connections = config.connections_max.min(Semaphore::MAX_PERMITS);
        let requests = config.requests_max.min(Semaphore::MAX_PERMITS);
        let shared = Shared {
            routes,
            config,
            connections: Arc::new(Semaphore::new(connections)),
            sources: Mutex::new(HashMap::new()),
            requests: Arc::new(Semaphore::new(requests)),
        };
        Self {
            shared: Arc::new(shared),
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
        }
    }

    /// Serves connections from `listener` until `stop` completes, then lets open connections
    /// finish their requests within the drain time. One server may serve several listeners
    /// at once (its bounds hold over all of them).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: impl Future<Output = ()>) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut stop = std::pin::pin!(stop);
        // The connections' tasks: those still open after the drain are aborted with the set,
        // and their handler calls cut.
        let mut connections = tokio::task::JoinSet::new();
        let (closed, closing) = tokio::sync::watch::channel(false);
        loop {
            let accepted = tokio::select! {
                () = &mut stop => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, peer)) = accepted else {
                // Out of descriptors, or a connection reset before it was taken: pause a little
                // rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let source = source(peer.ip());
            let Some(admitted) = self.shared.admit(source) else {
                metrics::counter!("exorun_http_connections_refused_total").increment(1);
                continue;
            };
            let shared = Arc::clone(&self.shared);
            let tls = self.tls.clone();
            let watcher = graceful.watcher();
            let closing = closing.clone();
            connections.spawn(async move {
                shared
                    .connection(stream, tls, (watcher, party(source), closing))
                    .await;
                drop(admitted);
            });
        }
        drop(listener);
        let drained = tokio::time::timeout(self.shared.config.drain_timeout, graceful.shutdown());
        if drained.await.is_err() {
            tracing::warn!("HTTP connections still open after the drain time were closed");
        }
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        closed.send_replace(true);
    }
}

/// A connection admitted: its places in the server's and its source's counts.
struct Admitted {
    shared: Arc<Shared>,
    source: IpAddr,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut sources = self
            .shared
            .sources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(count) = sources.get_mut(&self.source) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            sources.remove(&self.source);
        }
    }
}

impl Shared {
    /// A place for one more connection from `source`, or `None` when the server or the source
    /// holds all it may.
    fn admit(self: &Arc<Self>, source: IpAddr) -> Option<Admitted> {
        let permit = Arc::clone(&self.connections).try_acquire_owned().ok()?;
        let mut sources = self
            .sources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = sources.entry(source).or_insert(0);
        if *count >= self.config.connections_per_source_max {
            return None;
        }
        *count += 1;
        drop(sources);
        Some(Admitted {
            shared: Arc::clone(self),
            source,
            _permit: permit,
        })
    }

    /// Serves one connection (after its TLS handshake, when TLS is on).
    async fn connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        tls: Option<tokio_rustls::TlsAcceptor>,
        served: Served,
    ) {
        let stream = stall::Stall::new(stream, self.config.write_timeout);
        let Some(tls) = tls else {
            self.http1(stream, Scheme::Http, served).await;
            return;
        };
        let handshake = tokio::time::timeout(self.config.head_timeout, tls.accept(stream));
        let Ok(Ok(secured)) = handshake.await else {
            return; // a failed or slow handshake closes the connection
        };
        self.http1(secured, Scheme::Https, served).await;
    }

    async fn http1<S>(
        self: &Arc<Self>,
        stream: S,
        scheme: Scheme,
        (watcher, party, closing): Served,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::clone(self);
        let service = hyper::service::service_fn(move |request| {
            let shared = Arc::clone(&shared);
            let scheme = scheme.clone();
            let closing = closing.clone();
            let answer = async move { shared.answer(request, scheme, closing).await };
            let answer = principal::within_party(None, party, answer);
            async move { Ok::<_, std::convert::Infallible>(answer.await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.config.head_timeout)
            .max_buf_size(self.config.head_bytes_max.max(8192));
        let io = hyper_util::rt::TokioIo::new(stream);
        let connection = builder.serve_connection(io, service);
        let _ended = watcher.watch(connection).await;
    }

    /// The answer to one request.
    async fn answer(
        self: &Arc<Self>,
        request: hyper::Request<Incoming>,
        scheme: Scheme,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> hyper::Response<HyperOutgoingBody> {
        let path = request.uri().path().to_owned();
        let Some(route) = self.routes.find(&path) else {
            return request::plain(404, format!("no route for {path}\n"));
        };
        let host = request.headers().get(hyper::header::HOST);
        let host = host.and_then(|host| host.to_str().ok());
        if request.uri().authority().is_none() && host.is_none() {
            route.requests[request::status_class(400)].increment(1);
            return request::plain(400, "a request names its host (a Host header)\n".to_owned());
        }
        let Ok(slot) = Arc::clone(&self.requests).try_acquire_owned() else {
            route.requests[request::status_class(503)].increment(1);
            return request::plain(503, "too many requests at once\n".to_owned());
        };
        let span = request::traced(&request);
        let config = self.config;
        let request = request.map(move |body| request::bounded(body, &config));
        // The slot goes with the handler's task: held until `handle` returns, however late.
        let settings = (scheme, config.request_timeout, closing);
        let started = std::time::Instant::now();
        let answered = trace::within(span, request::handle(route, request, settings, slot)).await;
        let class = request::status_class(answered.status().as_u16());
        route.requests[class].increment(1);
        if trace::exporting(&span) {
            request::finish_span(span, &route.name, answered.status(), started.elapsed());
        }
        answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Prefixes as `Routes::add` keeps them, longest first; the index of the one `find` picks.
    fn pick(prefixes: &[String], path: &str) -> Option<usize> {
        let mut kept: Vec<(usize, String)> = prefixes
            .iter()
            .map(|prefix| prefix.trim_end_matches('/').to_owned())
            .enumerate()
            .collect();
        kept.sort_by_key(|(_, prefix)| std::cmp::Reverse(prefix.len()));
        kept.iter()
            .find(|(_, prefix)| covers(prefix, path))
            .map(|(index, _)| *index)
    }

    proptest! {
        /// The route picked covers the path, segment by segment, and no longer prefix does; a
        /// path no prefix covers finds none; `/` covers everything.
        #[test]
        fn the_longest_covering_prefix_answers(
            prefixes in proptest::collection::vec("(/[ab]{1,2}){0,3}/?", 1..6),
            path in "(/[ab]{0,3}){1,4}",
        ) {
            let picked = pick(&prefixes, &path);
            let segments = |text: &str| -> Vec<String> {
                text.trim_end_matches('/').split('/').skip(1).map(str::to_owned).collect()
            };
            let covering = |prefix: &String| {
                let (prefix, path) = (segments(prefix), segments(&path));
                path.len() >= prefix.len() && path[..prefix.len()] == prefix[..]
                    || prefix.is_empty()
            };
            match picked {
                Some(index) => {
                    let chosen = &prefixes[index];
                    prop_assert!(covering(chosen), "{chosen} for {path}");
                    let chosen_length = chosen.trim_end_matches('/').len();
                    for other in &prefixes {
                        let longer = other.trim_end_matches('/').len() > chosen_length;
                        prop_assert!(!(longer && covering(other)), "{other} is longer for {path}");
                    }
                }
                None => prop_assert!(!prefixes.iter().any(covering), "{prefixes:?} {path}"),
            }
        }
    }

    #[test]
    fn a_prefix_covers_whole_segments_only() {
        assert!(covers("/api", "/api"));
        assert!(covers("/api", "/api/users"));
        assert!(!covers("/api", "/apiary"));
        assert!(covers("", "/anything"));
        assert!(!covers("/api", "/"));
    }
}
