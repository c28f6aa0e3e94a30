//! `exorun serve --http`: serving the manifest's `[http] routes` over HTTP/1.1, plaintext or
//! TLS, beside (or without) the neorpc listeners. (Part of the binary.)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use exorun_host::Composition;
use exorun_host::manifest::Manifest;
use exorun_http as http;

use crate::Failed;
use crate::parse_duration;

/// Where and how `serve` answers HTTP (README, "Serving HTTP").
#[derive(clap::Args)]
pub(crate) struct HttpArgs {
    /// Serves the manifest's `[http] routes` on `HOST:PORT` (repeatable; plaintext off
    /// loopback needs `--insecure` or TLS).
    #[arg(long = "http")]
    pub(crate) http: Vec<String>,
    /// The TLS certificate chain (PEM) for `--http`; with `--http-tls-key`, HTTP is HTTPS.
    #[arg(long, requires = "http_tls_key")]
    http_tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM) for `--http`.
    #[arg(long, requires = "http_tls_cert")]
    http_tls_key: Option<PathBuf>,
    /// Most HTTP connections at once; one more is closed.
    #[arg(long, default_value_t = http::Config::default().connections_max)]
    http_max_connections: usize,
    /// Most HTTP connections one source address may hold; one more is closed.
    #[arg(long, default_value_t = http::Config::default().connections_per_source_max)]
    http_max_connections_per_source: usize,
    /// How long a request head (and a TLS handshake) may take; also the keep-alive idle time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    http_head_timeout: Duration,
    /// How long a request body may take to arrive.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    http_body_timeout: Duration,
    /// The largest request body, in KiB.
    #[arg(long, default_value_t = 16 * 1024)]
    http_body_max_kib: u64,
    /// How long a handler may run for one request, its answer's body included.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    http_request_timeout: Duration,
    /// Most requests handled at once; one more is answered 503.
    #[arg(long, default_value_t = http::Config::default().requests_max)]
    http_max_requests: usize,
    /// Most requests one source address may have handled at once; one more is answered 503.
    #[arg(long, default_value_t = http::Config::default().requests_per_source_max)]
    http_max_requests_per_source: usize,
    /// Request bodies and answers held in memory at once, over every request, in MiB.
    #[arg(long, default_value_t = http::Config::default().held_bytes_max / (1024 * 1024))]
    http_held_mib: u64,
    /// How long answer bytes may wait for a client that takes none; then the connection closes.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    http_write_timeout: Duration,
}

/// The flag that sets each bound of `http::Config`, for errors.
fn flag_of(bound: &str) -> &'static str {
    match bound {
        "connections_max" => "--http-max-connections",
        "connections_per_source_max" => "--http-max-connections-per-source",
        "requests_max" => "--http-max-requests",
        "requests_per_source_max" => "--http-max-requests-per-source",
        "head_timeout" => "--http-head-timeout",
        "body_timeout" => "--http-body-timeout",
        "request_timeout" => "--http-request-timeout",
        "write_timeout" => "--http-write-timeout",
        _ => "--http",
    }
}

/// HTTP being served: how to stop it.
pub(crate) struct Serving {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl HttpArgs {
    /// The addresses' and TLS files' problems, before anything starts: all at once.
    pub(crate) fn check(&self, manifest: &Manifest, insecure: bool) -> Result<(), Failed> {
        if self.http.is_empty() {
            return Ok(());
        }
        let shown = manifest.path.display();
        let mut problems = Vec::new();
        if manifest.http_routes.is_empty() {
            problems.push(format!("--http: {shown} has no [http] routes to serve"));
        }
        let tls = self.http_tls_cert.is_some();
        for text in &self.http {
            match text.parse::<SocketAddr>() {
                Ok(address) if !tls && !insecure && !address.ip().is_loopback() => {
                    problems.push(format!(
                        "--http {text}: plaintext HTTP off loopback lets anyone on the network \
                         read every request; give --http-tls-cert and --http-tls-key, or pass \
                         --insecure"
                    ))
                }
                Ok(_) => {}
                Err(error) => problems.push(format!("--http {text}: {error} (give IP:PORT)")),
            }
        }
        if let Err(http::Error::Config { bound, message }) = self.config(Duration::ZERO).check() {
            problems.push(format!("{}: {message}", flag_of(bound)));
        }
        if !problems.is_empty() {
            return Err(Failed(problems));
        }
        Ok(())
    }

    fn config(&self, drain_timeout: Duration) -> http::Config {
        http::Config {
            connections_max: self.http_max_connections,
            connections_per_source_max: self.http_max_connections_per_source,
            head_timeout: self.http_head_timeout,
            body_timeout: self.http_body_timeout,
            body_bytes_max: self.http_body_max_kib.saturating_mul(1024),
            requests_max: self.http_max_requests,
            requests_per_source_max: self.http_max_requests_per_source,
            held_bytes_max: self.http_held_mib.saturating_mul(1024 * 1024),
            request_timeout: self.http_request_timeout,
            write_timeout: self.http_write_timeout,
            drain_timeout,
            ..http::Config::default()
        }
    }

    /// Binds every `--http` address and serves the routes there, announcing each.
    pub(crate) async fn start(
        &self,
        composition: &Composition,
        manifest_routes: &std::collections::BTreeMap<String, String>,
        drain_timeout: Duration,
    ) -> Result<Option<Serving>, Failed> {
        if self.http.is_empty() {
            return Ok(None);
        }
        let mut routes = http::Routes::default();
        for (prefix, name) in manifest_routes {
            let Some(handle) = composition.instances.get(name) else {
                return Err(Failed(vec![format!("--http: no instance `{name}`")]));
            };
            routes.add(prefix, name, handle.clone())?;
        }
        let tls = match (&self.http_tls_cert, &self.http_tls_key) {
            (Some(cert), Some(key)) => Some(http::tls_config(cert, key)?),
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = Arc::new(http::Server::new(routes, self.config(drain_timeout), tls));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for text in &self.http {
            let listener = tokio::net::TcpListener::bind(text).await?;
            println!("exorun: http on {scheme}://{}", listener.local_addr()?);
            let mut stopped = stopped.clone();
            let stopping = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            tasks.push(tokio::spawn(Arc::clone(&server).serve(listener, stopping)));
        }
        Ok(Some(Serving { stop, tasks }))
    }
}

impl Serving {
    /// Stops accepting, and waits for open connections to finish within the drain time.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
