//! `--metrics HOST:PORT`: Prometheus text on `/metrics`, `/healthz` (alive) and `/readyz`
//! (serving) over plain HTTP/1.1 on hyper.
//!
//! Metrics come from the `metrics` facade, which exorun-bind records into (calls served and
//! made, by export, interface, function and outcome; their durations; calls in flight), rendered
//! by `metrics-exporter-prometheus` on each scrape. Why that exporter and not
//! `prometheus-client`: the call sites stay on the facade, which costs nothing until a recorder is
//! installed, so a library user who wants no metrics pays nothing. Each scrape also reads the
//! runtime's instances (replicas, restarts, calls and bytes waiting) into gauges.
//!
//! Label values a remote caller controls are bounded: a call counted by name reached an export
//! and function that exist; anything else is counted only by its outcome
//! (`exorun_calls_refused_total`).
//!
//! It runs on exorun-http's bounded server (`exorun_http::Listen`), as HTTP serving does:
//! `CONNECTIONS_MAX` connections at once and `CONNECTIONS_PER_SOURCE_MAX` from one source (one
//! more is closed at once), a request head of at most `HEAD_BYTES_MAX` read within
//! `HEAD_TIMEOUT`, one request a connection, each connection over within `CONNECTION_TIMEOUT`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use exorun_core::runtime::Runtime;
use exorun_core::supervision::Replicas;
use http_body_util::Full;
use hyper::Request;
use hyper::Response;
use hyper::StatusCode;
use metrics_exporter_prometheus::PrometheusHandle;

/// The buckets of every duration histogram, in seconds: 50 µs to 10 s.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.01, 0.05, 0.25, 1.0, 5.0, 10.0,
];

/// Connections served at once.
pub const CONNECTIONS_MAX: usize = 64;
/// Connections one source (an IPv4 address or an IPv6 /64) may hold at once.
pub const CONNECTIONS_PER_SOURCE_MAX: usize = 16;
/// Largest request head.
pub const HEAD_BYTES_MAX: usize = 16 * 1024;
/// How long a request head may take to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last, its answer written included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The bounds of the endpoint's listener.
const BOUNDS: exorun_http::Bounds = exorun_http::Bounds {
    connections_max: CONNECTIONS_MAX,
    connections_per_source_max: CONNECTIONS_PER_SOURCE_MAX,
    head_bytes_max: HEAD_BYTES_MAX,
    head_timeout: HEAD_TIMEOUT,
    // One request a connection: an idle kept-alive connection would hold a place in
    // `CONNECTIONS_MAX` for as long as its client liked.
    keep_alive: false,
    // A client that never reads its answer lets go of its place in time.
    write_timeout: CONNECTION_TIMEOUT,
    connection_timeout: Some(CONNECTION_TIMEOUT),
    drain_timeout: Duration::ZERO,
};

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address does not parse as `HOST:PORT`.
    #[error("--metrics {address}: not HOST:PORT ({message})")]
    Address {
        /// What was given.
        address: String,
        /// Why not.
        message: String,
    },
    /// The socket could not be bound.
    #[error("--metrics {address}: {message}")]
    Bind {
        /// What was given.
        address: String,
        /// Why not.
        message: String,
    },
    /// A recorder was installed already.
    #[error("metrics: {0}")]
    Recorder(String),
}

/// The metrics endpoint's state: what it renders and whether the runtime serves yet.
#[derive(Debug)]
pub struct Endpoint {
    handle: PrometheusHandle,
    runtime: std::sync::OnceLock<Arc<Runtime>>,
    budget: std::sync::OnceLock<exorun_transport::budget::Budget>,
    ready: AtomicBool,
    /// Whether the runtime is stopping (`/readyz` says so).
    stopping: AtomicBool,
}

impl Endpoint {
    /// Installs the Prometheus recorder, binds `address` and serves it; the bound address is
    /// printed as `exorun: metrics on http://ADDRESS`.
    pub async fn start(address: &str) -> Result<Arc<Self>, Error> {
        let parsed: SocketAddr =
            address
                .parse()
                .map_err(|error: std::net::AddrParseError| Error::Address {
                    address: address.to_owned(),
                    message: error.to_string(),
                })?;
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&DURATION_BUCKETS)
            .map_err(|error| Error::Recorder(error.to_string()))?
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder)
            .map_err(|error| Error::Recorder(error.to_string()))?;
        let listener = tokio::net::TcpListener::bind(parsed).await;
        let listener = listener.map_err(|error| Error::Bind {
            address: address.to_owned(),
            message: error.to_string(),
        })?;
        let bound = listener.local_addr().map_err(|error| Error::Bind {
            address: address.to_owned(),
            message: error.to_string(),
        })?;
        println!("exorun: metrics on http://{bound}");
        let endpoint = Arc::new(Self {
            handle,
            runtime: std::sync::OnceLock::new(),
            budget: std::sync::OnceLock::new(),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        });
        let listen = Arc::new(exorun_http::Listen::new(
            Arc::clone(&endpoint),
            BOUNDS,
            None,
        ));
        tokio::spawn(listen.serve(listener, std::future::pending()));
        Ok(endpoint)
    }

    /// The runtime whose instances each scrape reads.
    pub fn watch(&self, runtime: &Arc<Runtime>) {
        let _ = self.runtime.set(Arc::clone(runtime));
    }

    /// The server's byte budget, whose bytes in use each scrape reads.
    pub fn watch_budget(&self, budget: &exorun_transport::budget::Budget) {
        let _ = self.budget.set(budget.clone());
    }

    /// From now on `/readyz` answers 200: listeners bound, exports instantiated, lattices
    /// subscribed.
    pub fn ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// From now on `/readyz` answers 503 again: the runtime is stopping (a load balancer takes
    /// it out while it drains).
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
        self.ready.store(false, Ordering::Release);
    }

    /// The Prometheus text, with the instances' gauges read now.
    fn render(&self) -> String {
        if let Some(budget) = self.budget.get() {
            let bytes = |value: u64| f64::from(u32::try_from(value / 1024).unwrap_or(u32::MAX));
            metrics::gauge!("exorun_budget_kib_held").set(bytes(budget.held()));
            metrics::gauge!("exorun_budget_kib").set(bytes(budget.budget_bytes()));
        }
        let mut text = self.handle.render();
        if let Some(runtime) = self.runtime.get() {
            text.push_str(&instance_gauges(runtime));
        }
        text
    }

    fn answer(&self, request: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let text = |status: StatusCode, body: String| {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response
        };
        if request.method() != hyper::Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".to_owned());
        }
        match request.uri().path() {
            "/metrics" => {
                let mut scraped = text(StatusCode::OK, self.render());
                // Prometheus 3 refuses a scrape without its content type.
                let kind = "text/plain; version=0.0.4; charset=utf-8";
                let kind = hyper::header::HeaderValue::from_static(kind);
                scraped
                    .headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, kind);
                scraped
            }
            "/healthz" => text(StatusCode::OK, "alive\n".to_owned()),
            "/readyz" if self.ready.load(Ordering::Acquire) => {
                text(StatusCode::OK, "ready\n".to_owned())
            }
            "/readyz" if self.stopping.load(Ordering::Acquire) => {
                text(StatusCode::SERVICE_UNAVAILABLE, "stopping\n".to_owned())
            }
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_owned()),
            _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
        }
    }
}

/// The instances' gauges in Prometheus text, written at each scrape from the registry (so an
/// instance that is gone leaves no series behind): replicas, restarts (in all and by cause),
/// calls and bytes waiting.
fn instance_gauges(runtime: &Runtime) -> String {
    let mut series: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for handle in runtime.instances() {
        let Some(name) = handle.name() else {
            continue;
        };
        let label = format!("instance=\"{}\"", escaped(name));
        let replicas = match handle.replicas() {
            Replicas::Fixed(count) => count.get(),
            Replicas::PerCall { concurrency } => concurrency.get(),
        };
        let (waiting, bytes) = handle.waiting();
        let mut add = |metric: &'static str, labels: String, value: String| {
            series
                .entry(metric)
                .or_default()
                .push(format!("{metric}{{{labels}}} {value}"));
        };
        add(
            "exorun_instance_replicas",
            label.clone(),
            replicas.to_string(),
        );
        add(
            "exorun_instance_restarts",
            label.clone(),
            handle.restarts().to_string(),
        );
        for (cause, restarts) in handle.restarts_by_cause() {
            let labels = format!("{label},cause=\"{cause}\"");
            add(
                "exorun_instance_restarts_by_cause",
                labels,
                restarts.to_string(),
            );
        }
        add(
            "exorun_instance_calls_waiting",
            label.clone(),
            waiting.to_string(),
        );
        add("exorun_instance_bytes_waiting", label, bytes.to_string());
    }
    let mut text = String::new();
    for (metric, lines) in series {
        text.push_str(&format!("# TYPE {metric} gauge\n"));
        lines
            .iter()
            .for_each(|line| text.push_str(&format!("{line}\n")));
        text.push('\n');
    }
    text
}

/// A label value as Prometheus text writes it (`\`, `"` and line feeds escaped).
fn escaped(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl exorun_http::Answer for Endpoint {
    type Body = Full<Bytes>;

    async fn answer(
        self: &Arc<Self>,
        request: Request<hyper::body::Incoming>,
        _peer: &exorun_http::Peer,
    ) -> Response<Full<Bytes>> {
        Endpoint::answer(self, &request)
    }
}
