//! `exorun serve`: checking where to listen, binding, joining a lattice, serving until a
//! signal, and the drain after it. (Part of the binary, not of the `exorun_cli` library.)

use std::path::Path;
use std::sync::Arc;

use exorun_transport::address::Address;
use exorun_transport::dispatch;
use exorun_transport::identity::NodeKey;
use exorun_transport::nats;
use exorun_transport::net;
use exorun_transport::server;
use exorun_transport::server::Server;

use exorun_host::manifest;

use crate::EXIT_FORCED;
use crate::Failed;
use crate::http_command::HttpArgs;

/// Where `serve` listens, whether plaintext may leave loopback, and the lattice it joins.
pub(crate) struct Listening<'a> {
    pub(crate) addresses: &'a [String],
    pub(crate) insecure: bool,
    pub(crate) nats: Option<nats::Settings>,
    pub(crate) lattice: String,
    pub(crate) http: &'a HttpArgs,
}

impl Listening<'_> {
    /// Parses every address and refuses what would be unsafe or could not work: plaintext
    /// TCP off loopback without `--insecure`, a secure listener without a node key, a
    /// plaintext listener for exports restricted by keys. All problems at once.
    fn check(
        &self,
        path: &Path,
        key: Option<&Arc<NodeKey>>,
        restricted: &[String],
    ) -> Result<Vec<Address>, Failed> {
        let mut problems = Vec::new();
        let mut addresses = Vec::new();
        for text in self.addresses {
            match self.check_one(text, path, key, restricted) {
                Ok(address) => addresses.push(address),
                Err(found) => problems.extend(found),
            }
        }
        if self.nats.is_some() {
            let shown = path.display();
            problems.extend(restricted.iter().map(|name| {
                format!(
                    "{shown}: instances.{name}.export: an allow list or a guard needs secure \
                     listeners (tls://, quic://); NATS carries no caller key (restrict who may \
                     publish to the export's subject with NATS permissions instead)"
                )
            }));
        }
        if !problems.is_empty() {
            return Err(Failed(problems));
        }
        Ok(addresses)
    }

    /// One `--listen` address, or its problems.
    fn check_one(
        &self,
        text: &str,
        path: &Path,
        key: Option<&Arc<NodeKey>>,
        restricted: &[String],
    ) -> Result<Address, Vec<String>> {
        // Whatever was given is shown without credentials, as every address is.
        let text = &exorun_transport::address::redacted(text);
        let address =
            Address::parse(text).map_err(|error| vec![format!("--listen {text}: {error}")])?;
        let mut problems = Vec::new();
        if let Address::Tcp(host_port) = &address
            && !self.insecure
            && !is_loopback(host_port)
        {
            problems.push(format!(
                "--listen {text}: plaintext tcp:// off loopback lets anyone on the network \
                 call and read every call; use tls:// or quic:// with --key, or pass --insecure"
            ));
        }
        let secure = manifest::is_secure(&address);
        if secure && key.is_none() {
            problems.push(format!(
                "--listen {text}: a secure listener needs this runtime's node key: --key \
                 PATH, or `key = PATH` in the manifest"
            ));
        }
        if !secure {
            let problem = manifest::Problem::AllowOnPlaintext {
                listener: text.to_owned(),
            };
            let shown = path.display();
            let restricted = restricted.iter();
            problems.extend(
                restricted.map(|name| format!("{shown}: instances.{name}.export: {problem}")),
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(address)
    }
}

/// Binds every listener (secure ones presenting `key`) and announces each.
async fn bind_all(
    addresses: &[Address],
    key: Option<&Arc<NodeKey>>,
) -> Result<Vec<net::Listener>, Failed> {
    let mut listeners = Vec::new();
    for address in addresses {
        let listener = match key {
            Some(key) => net::Listener::bind_secure(address, key).await?,
            None => net::Listener::bind(address).await?,
        };
        println!("exorun: listening on {}", listener.local_address()?);
        listeners.push(listener);
    }
    Ok(listeners)
}

/// A second signal does not wait for anything: it exits at once.
async fn exit_on_second(mut signals: Signals) {
    signals.next().await;
    // Not `eprintln!`: a closed stderr must not stop the exit with a panic.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        b"exorun: second signal: exiting now\n",
    );
    std::process::exit(EXIT_FORCED);
}

/// Connects to the lattice's NATS system and subscribes every export (announced once NATS
/// has the subscriptions).
async fn join_lattice(
    settings: &nats::Settings,
    lattice: &str,
    names: &[String],
) -> Result<nats::Subscribed, Failed> {
    let subscribed = nats::join(settings, lattice, names).await?;
    let hosts: Vec<String> = settings.urls.iter().map(|url| nats::shown(url)).collect();
    println!(
        "exorun: listening on lattice `{lattice}` at {}",
        hosts.join(", ")
    );
    Ok(subscribed)
}

/// Whether `host_port`'s host is loopback (`localhost`, `127.0.0.0/8`, `::1`).
fn is_loopback(host_port: &str) -> bool {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(crate) async fn serve(
    manifest: manifest::Manifest,
    listening: &Listening<'_>,
    config: server::Config,
    (state, metrics): (Option<&Path>, Option<&str>),
) -> Result<(), Failed> {
    let drain = config.drain_timeout;
    let path = manifest.path.clone();
    listening.http.check(&manifest, listening.insecure)?;
    let routes = manifest.http_routes.clone();
    let endpoint = match metrics {
        Some(address) => Some(exorun_cli::prometheus::Endpoint::start(address).await?),
        None => None,
    };
    let composition = exorun_host::Composition::start(manifest).await?;
    if let Some(endpoint) = &endpoint {
        endpoint.watch(&composition.runtime);
        if let Some(budget) = &config.stream.budget {
            endpoint.watch_budget(budget);
        }
    }
    // What meta deployed before is running again before anything is announced.
    if let Some(state) = state {
        composition.manager.restore(state).await?;
    }
    let names = composition.exports.names();
    if names.is_empty() && listening.http.http.is_empty() {
        let path = path.display();
        return Err(Failed(vec![format!(
            "{path}: no instance has `export = true`; there is nothing to serve"
        )]));
    }
    let restricted = composition.exports.restricted();
    let addresses = listening.check(&path, composition.key.as_ref(), &restricted)?;
    let listeners = bind_all(&addresses, composition.key.as_ref()).await?;
    let subscribed = match &listening.nats {
        Some(settings) => Some(join_lattice(settings, &listening.lattice, &names).await?),
        None => None,
    };
    let http = listening.http.start(&composition, &routes, drain).await?;
    let dispatcher: Arc<dyn dispatch::Dispatcher> = composition.exports.clone();
    let (stopping, running) = run_server(Server::new(dispatcher, config), listeners, subscribed);
    // Registered before anything is announced, so no signal can come before its listener.
    let mut signals = Signals::new()?;
    // Ready before it says so: whoever reads the line may ask /readyz at once.
    if let Some(endpoint) = &endpoint {
        endpoint.ready();
    }
    let shown = if names.is_empty() {
        "http routes".to_owned()
    } else {
        names.join(", ")
    };
    println!("exorun: serving {shown}");
    tracing::info!(exported = ?names, "serving");
    signals.next().await;
    if let Some(endpoint) = &endpoint {
        endpoint.stopping();
    }
    eprintln!(
        "exorun: stopping: letting calls in flight finish (at most {} ms)",
        drain.as_millis()
    );
    let _ = stopping.send(());
    tokio::spawn(exit_on_second(signals));
    let http_stopped = async move {
        if let Some(http) = http {
            http.stop().await;
        }
    };
    let (stopped, ()) = tokio::join!(running, http_stopped);
    let stopped = stopped.map_err(|error| Failed(vec![format!("internal error: {error}")]))?;
    how_it_stopped(&stopped)
}

/// Runs the neorpc server on `listeners` (and the lattice) until the sender returned is used.
fn run_server(
    mut server: Server,
    listeners: Vec<net::Listener>,
    subscribed: Option<nats::Subscribed>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<server::Stopped>,
) {
    for listener in listeners {
        server = server.listen(listener);
    }
    if let Some(subscribed) = subscribed {
        server = server.lattice(subscribed);
    }
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (stopping, running)
}

/// What a stop left behind: nothing (ok), or the calls the drain timeout cut.
fn how_it_stopped(stopped: &server::Stopped) -> Result<(), Failed> {
    if stopped.lost > 0 {
        eprintln!(
            "exorun: NATS delivered {} calls this runtime never saw",
            stopped.lost
        );
    }
    if stopped.lattices_cut > 0 {
        return Err(Failed(vec![
            "drain timeout: calls received from the lattice were still running".to_owned(),
        ]));
    }
    if stopped.cut > 0 {
        return Err(Failed(vec![format!(
            "drain timeout: closed {} connections with calls still in flight",
            stopped.cut
        )]));
    }
    eprintln!("exorun: stopped");
    Ok(())
}

/// Ctrl-C (SIGINT) and SIGTERM, listened for from the moment this is made.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, Failed> {
        use tokio::signal::unix::SignalKind;
        Ok(Self {
            interrupt: tokio::signal::unix::signal(SignalKind::interrupt())?,
            terminate: tokio::signal::unix::signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next of either.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
