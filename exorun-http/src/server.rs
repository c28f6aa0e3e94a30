//! `Server`: routes and their handlers' instances behind a bounded listener (see the crate
//! doc).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use exorun_core::call;
use exorun_core::trace;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::Error;
use crate::body;
use crate::config::Config;
use crate::config::party;
use crate::held;
use crate::listen::Answer;
use crate::listen::Listen;
use crate::listen::Peer;
use crate::request;
use crate::routes;
use crate::routes::Routes;
use crate::share::Shares;

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
            route.requests[routes::status_class(400)].increment(1);
            return request::plain(400, "a request names its host (a Host header)\n".to_owned());
        }
        let Some(turn) = self.requests_by_source.try_turn(peer.source) else {
            route.requests[routes::status_class(503)].increment(1);
            return request::plain(
                503,
                "too many requests from this address at once\n".to_owned(),
            );
        };
        let Ok(slot) = Arc::clone(&self.requests).try_acquire_owned() else {
            route.requests[routes::status_class(503)].increment(1);
            return request::plain(503, "too many requests at once\n".to_owned());
        };
        let span = request::traced(&request);
        let config = self.config;
        let request = request.map(move |body| body::bounded(body, &config));
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
        let class = routes::status_class(answered.status().as_u16());
        route.requests[class].increment(1);
        if trace::exporting(&span) {
            request::finish_span(span, &route.name, answered.status(), started.elapsed());
        }
        answered
    }
}
