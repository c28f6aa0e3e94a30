//! `Server`: routes and their handlers' instances behind a bounded listener (see the crate
//! doc).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use exorun_core::app::Export;
use exorun_core::call;
use exorun_core::instance::InstanceHandle;
use exorun_core::supervision::Replicas;
use exorun_core::trace;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::Error;
use crate::config::Config;
use crate::config::party;
use crate::held;
use crate::listen::Answer;
use crate::listen::Listen;
use crate::listen::Peer;
use crate::request;
use crate::share::Shares;

/// The interface a routed instance must export (any 0.2 version).
pub const HANDLER: &str = "wasi:http/incoming-handler@0.2";

/// The most routes one server has.
pub const ROUTES_MAX: usize = 64;

/// One route: a path prefix and the instance that answers it.
pub(crate) struct Route {
    prefix: String,
    pub(crate) name: String,
    pub(crate) handle: InstanceHandle,
    pub(crate) export: Export,
    /// Each source's share of the route's replicas (half of them, at least one).
    pub(crate) shares: Arc<Shares>,
    /// `exorun_http_requests_total` of this route by status class, made once.
    requests: [metrics::Counter; 5],
}

/// Path prefixes and their instances.
#[derive(Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes = self.routes.iter().map(|route| (&route.prefix, &route.name));
        f.debug_map().entries(routes).finish()
    }
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
        let replicas = match handle.replicas() {
            Replicas::Fixed(count) => count.get(),
            Replicas::PerCall { concurrency } => concurrency.get(),
        };
        self.routes.push(Route {
            prefix: kept.to_owned(),
            name: name.to_owned(),
            shares: Shares::new(replicas / 2),
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

/// An HTTP server over `routes`: a bounded listener ([`Listen`]) whose answers are the
/// routes' handlers'.
#[derive(Debug)]
pub struct Server {
    listen: Arc<Listen<Handlers>>,
}

/// What answers a server's requests: its routes, within its request bounds.
struct Handlers {
    routes: Routes,
    config: Config,
    requests: Arc<Semaphore>,
    /// Each source's share of the request slots.
    requests_by_source: Arc<Shares>,
    /// Bodies and answers held in memory.
    budget: held::Budget,
}

impl Server {
    /// A server of `routes` held to `config`, over TLS with `tls` when given.
    pub fn new(routes: Routes, config: Config, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        // `Config::check` refuses counts past a semaphore's; clamped so that a config not
        // checked cannot panic here.
        let requests = config.requests_max.min(Semaphore::MAX_PERMITS);
        let handlers = Handlers {
            routes,
            config,
            requests: Arc::new(Semaphore::new(requests)),
            requests_by_source: Shares::new(config.requests_per_source_max),
            budget: held::Budget::new(config.held_bytes_max),
        };
        let listen = Listen::new(Arc::new(handlers), config.bounds(), tls);
        Self {
            listen: Arc::new(listen),
        }
    }

    /// Serves connections from `listener` until `stop` completes, then lets open connections
    /// finish their requests within the drain time. One server may serve several listeners
    /// at once (its bounds hold over all of them).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: impl Future<Output = ()>) {
        Arc::clone(&self.listen).serve(listener, stop).await;
    }
}

impl Answer for Handlers {
    type Body = HyperOutgoingBody;

    /// The answer to one request, run as its source's party.
    async fn answer(
        self: &Arc<Self>,
        request: hyper::Request<Incoming>,
        peer: &Peer,
    ) -> hyper::Response<HyperOutgoingBody> {
        let scheme = match peer.secure {
            true => Scheme::Https,
            false => Scheme::Http,
        };
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
        let Some(turn) = self.requests_by_source.try_turn(peer.source) else {
            route.requests[request::status_class(503)].increment(1);
            return request::plain(
                503,
                "too many requests from this address at once\n".to_owned(),
            );
        };
        let Ok(slot) = Arc::clone(&self.requests).try_acquire_owned() else {
            route.requests[request::status_class(503)].increment(1);
            return request::plain(503, "too many requests at once\n".to_owned());
        };
        let span = request::traced(&request);
        let config = self.config;
        let request = request.map(move |body| request::bounded(body, &config));
        // The slot goes with the handler's task: held until `handle` returns, however late.
        let settings = request::Settings {
            scheme,
            source: peer.source,
            config,
            budget: self.budget.clone(),
            closed: peer.closing.clone(),
        };
        let started = std::time::Instant::now();
        let mut context = call::Context::from(None, party(peer.source));
        context.span = Some(span);
        let answered = context
            .scope(request::handle(route, request, settings, slot))
            .await;
        drop(turn);
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
