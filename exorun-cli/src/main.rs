//! `exorun`: run, serve and inspect WebAssembly component compositions described by a TOML
//! manifest (see `manifest.rs` for the format).
//!
//! Exit codes: 0 when everything asked for succeeded (for `serve`, a stop that let every call
//! in flight finish); 1 with a one-line cause per failure on stderr otherwise (a stop whose
//! drain timeout closed connections with calls in flight included); 2 for a command line clap
//! cannot parse; 130 when a second Ctrl-C or SIGTERM cut a stop short. Logs go to stderr through
//! `tracing`, filtered by `RUST_LOG` (default `warn`); at `debug`, one line per remote call.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap::Subcommand;
use exorun_core::ledger;
use exorun_core::runtime::Runtime;
use exorun_transport::address::Address;
use exorun_transport::budget;
use exorun_transport::identity::NodeKey;
use exorun_transport::nats;
use exorun_transport::server;

use exorun_cli::invoke;
use exorun_cli::invoke::Invocation;
use exorun_cli::otlp;
use exorun_host::compose;
use exorun_host::manage;
use exorun_host::manifest;

mod cap_command;
mod http_command;
mod manage_command;
mod serve_command;

use cap_command::CapCommand;
use cap_command::cap;
use manage_command::AtArgs;
use manage_command::ManageArgs;
use manage_command::deploy;
use manage_command::managed;
use manage_command::ps;
use manage_command::target;

use http_command::HttpArgs;
use serve_command::Listening;

#[derive(Parser)]
#[command(
    name = "exorun",
    version,
    about = "Run WebAssembly component compositions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only make clap's derive harder to read"
)]
enum Command {
    /// Start a composition and call one export (default: each instance's
    /// `exorun:test/runnable#run`), printing results in WAVE text.
    Run {
        /// The composition's TOML manifest.
        manifest: PathBuf,
        /// The call to make, e.g. `calc.exorun:test/math#add(1, 2)`.
        #[arg(long)]
        invoke: Option<String>,
        /// Serves Prometheus metrics on `http://HOST:PORT/metrics` while it runs.
        #[arg(long)]
        metrics: Option<String>,
        #[command(flatten)]
        tracing: TraceArgs,
        /// Overrides a peer's address from the manifest: `NAME=ADDRESS`.
        #[arg(long = "peer", value_parser = parse_peer)]
        peers: Vec<(String, String)>,
        /// This runtime's node key file (overrides the manifest's `key`).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Host a composition and answer remote calls to its exported instances until Ctrl-C.
    Serve {
        /// The composition's TOML manifest (optional with `--manage`).
        #[arg(required_unless_present = "manage")]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        managing: ManageArgs,
        /// Serves Prometheus metrics on `http://HOST:PORT/metrics`, with `/healthz` and `/readyz`.
        #[arg(long)]
        metrics: Option<String>,
        #[command(flatten)]
        tracing: TraceArgs,
        /// Where to listen: `tls://HOST:PORT`, `quic://HOST:PORT`, `tcp://HOST:PORT` or
        /// `unix://PATH` (repeatable).
        #[arg(long, required_unless_present_any = ["nats", "http"])]
        listen: Vec<String>,
        #[command(flatten)]
        http: HttpArgs,
        #[command(flatten)]
        lattice: LatticeArgs,
        /// Overrides a peer's address from the manifest: `NAME=ADDRESS`.
        #[arg(long = "peer", value_parser = parse_peer)]
        peers: Vec<(String, String)>,
        /// This runtime's node key file (overrides the manifest's `key`).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Allows plaintext `tcp://` on an address that is not loopback.
        #[arg(long)]
        insecure: bool,
        #[command(flatten)]
        limits: ServeLimits,
    },
    /// Write a new node key (ed25519, mode 0600) and print its public key.
    Keygen {
        /// Where to write it (an existing file is left alone).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of a node key file.
    Key {
        /// The node key file.
        path: PathBuf,
    },
    /// Print a component's imports and exports: interfaces, functions and signatures.
    Inspect {
        /// The component file.
        component: PathBuf,
    },
    /// Publish a component on a running runtime and start it; prints its name and exports.
    Deploy {
        /// The component.
        component: PathBuf,
        #[command(flatten)]
        at: AtArgs,
        /// The instance's name.
        #[arg(long)]
        name: String,
        /// An import's link, as in a manifest: `IFACE={ system = "logging" }` (repeatable).
        #[arg(long = "link")]
        links: Vec<String>,
        /// Makes the instance reachable by remote callers.
        #[arg(long)]
        export: bool,
        /// How many replicas serve it.
        #[arg(long)]
        replicas: Option<u32>,
    },
    /// List what runs on a runtime: name, app, state, calls.
    Ps {
        #[command(flatten)]
        at: AtArgs,
    },
    /// Stop an instance deployed on a runtime.
    Stop {
        /// The instance.
        name: String,
        #[command(flatten)]
        at: AtArgs,
    },
    /// Issue, delegate, show and revoke capabilities.
    Cap {
        #[command(subcommand)]
        action: CapCommand,
    },
}

/// Serving exports in a NATS lattice.
/// Where the spans of calls are exported.
#[derive(clap::Args)]
struct TraceArgs {
    /// Sends the spans of calls made and served to an OpenTelemetry collector's OTLP/HTTP
    /// base URL (e.g. `http://127.0.0.1:4318`); without it, `OTEL_EXPORTER_OTLP_ENDPOINT` is
    /// read, and nothing is exported when neither is set.
    #[arg(long)]
    otlp: Option<String>,
    /// The share of new traces exported, from 0 to 1 (traces begun by a caller keep its
    /// decision).
    #[arg(long, default_value_t = 1.0)]
    otlp_sample: f64,
}

impl TraceArgs {
    /// Runs `work` with spans exported as asked (the exporter installed before `work` starts
    /// anything), then sends the spans still queued.
    async fn around(&self, work: impl Future<Output = Result<(), Failed>>) -> Result<(), Failed> {
        let exporting = otlp::start(&otlp::Settings {
            endpoint: self.otlp.clone(),
            sample: self.otlp_sample,
        })?;
        let outcome = work.await;
        if let Some(exporting) = exporting {
            exporting.flush().await;
        }
        outcome
    }
}

#[derive(clap::Args)]
struct LatticeArgs {
    /// A NATS server to serve the exports through, by name, in a lattice
    /// (`nats://HOST:PORT`; repeatable, tried in turn). Credentials never go here (other
    /// users can read the command line): `--nats-credentials` or the
    /// `EXORUN_NATS_CREDENTIALS` environment variable.
    #[arg(long)]
    nats: Vec<String>,
    /// A file (mode 0600) holding `user:password` or a token for the NATS server.
    #[arg(long, requires = "nats")]
    nats_credentials: Option<PathBuf>,
    /// The lattice's name.
    #[arg(long, default_value = manifest::LATTICE_DEFAULT, requires = "nats")]
    lattice: String,
    /// An nkey seed file (mode 0600) to authenticate to NATS.
    #[arg(long, requires = "nats")]
    nats_nkey: Option<PathBuf>,
    /// Require TLS to the NATS server.
    #[arg(long, requires = "nats")]
    nats_tls: bool,
    /// A root certificate (PEM) to trust for the NATS server's TLS.
    #[arg(long, requires = "nats")]
    nats_ca: Option<PathBuf>,
}

impl LatticeArgs {
    /// The lattice's NATS settings, if `--nats` was given.
    fn settings(&self) -> Result<Option<nats::Settings>, Failed> {
        if self.nats.is_empty() {
            return Ok(None);
        }
        let mut addresses = Vec::new();
        for url in &self.nats {
            refuse_credentials("--nats", url)?;
            let address = Address::parse(url)?;
            if !matches!(address, Address::Nats(_)) {
                return Err(Failed(vec![format!(
                    "--nats {address}: expected nats://HOST:PORT"
                )]));
            }
            addresses.push(address);
        }
        let lattice = manifest::Nats {
            lattice: self.lattice.clone(),
            nkey: self.nats_nkey.clone(),
            credentials: self.nats_credentials.clone(),
            require_tls: self.nats_tls,
            ca: self.nats_ca.clone(),
        };
        let mut problems = Vec::new();
        let settings = compose::nats_settings(&lattice, &addresses, &mut problems, "serve");
        let flag = |key: &str| match key.rsplit('.').next() {
            Some("credentials") => "--nats-credentials",
            Some("ca") => "--nats-ca",
            _ => "--nats-nkey",
        };
        let refused = problems
            .iter()
            .map(|(key, problem)| format!("{}: {problem}", flag(key)));
        let refused: Vec<String> = refused.collect();
        if !refused.is_empty() {
            return Err(Failed(refused));
        }
        Ok(settings)
    }
}

/// What `exorun serve` holds its peers to (README, "Limits and hostile inputs").
#[derive(clap::Args)]
struct ServeLimits {
    /// Most connections at once over all listeners, each listener getting an equal share
    /// (also kept under the descriptor limit); one more is closed.
    #[arg(long, default_value_t = server::CONNECTIONS_MAX_DEFAULT)]
    max_connections: usize,
    /// Most connections one source address may hold, over all listeners.
    #[arg(long, default_value_t = server::CONNECTIONS_PER_SOURCE_MAX_DEFAULT)]
    max_connections_per_source: usize,
    /// How long calls in flight may finish after Ctrl-C or SIGTERM (`500ms`, `10s`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// How long a frame may take to arrive once its first byte has.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    frame_deadline: Duration,
    /// How long a connection with no call in flight may stay silent.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// How long a new connection may go without making its first call (pings or not).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    first_call_timeout: Duration,
    /// Bytes all connections may hold together in partly read frames and calls waiting to
    /// run, in MiB.
    #[arg(long, default_value_t = 256)]
    budget_mib: u64,
}

impl ServeLimits {
    fn config(&self) -> server::Config {
        let mut config = server::Config {
            connections_max: self.max_connections,
            connections_per_source_max: self.max_connections_per_source,
            drain_timeout: self.drain_timeout,
            ..server::Config::default()
        };
        config.stream.frame_deadline = Some(self.frame_deadline);
        config.stream.budget = Some(budget::Budget::new(self.budget_mib.saturating_mul(1 << 20)));
        config.connection.idle_timeout = Some(self.idle_timeout);
        config.connection.first_call_timeout = Some(self.first_call_timeout);
        config
    }
}

/// `500ms`, `10s` or `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a number and a unit (ms, s, m), got `{text}`"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number.saturating_mul(60))),
        _ => Err(format!("expected a unit of ms, s or m, got `{text}`")),
    }
}

fn parse_peer(text: &str) -> Result<(String, String), String> {
    let (name, address) = text.split_once('=').ok_or_else(|| {
        let shown = exorun_transport::address::redacted(text);
        format!("expected NAME=ADDRESS, got `{shown}`")
    })?;
    Ok((name.to_owned(), address.to_owned()))
}

/// An address given on the command line with credentials in it is refused, shown without
/// them: other users of the machine can read a process's command line.
fn refuse_credentials(flag: &str, address: &str) -> Result<(), Failed> {
    if !address.contains('@') {
        return Ok(());
    }
    let shown = exorun_transport::address::redacted(address);
    Err(Failed(vec![format!(
        "{flag} {shown}: credentials never go on the command line (other users can read it); \
         give them with --nats-credentials FILE or EXORUN_NATS_CREDENTIALS"
    )]))
}

/// The exit code of a stop forced by a second Ctrl-C or SIGTERM (128 + SIGINT's number, as
/// shells report an interrupted command).
const EXIT_FORCED: i32 = 130;

/// What is logged when `RUST_LOG` is not set: warnings, and restarts of failed instances.
const LOG_DEFAULT: &str = "warn,exorun_core::instance=info";

/// A failed command: one or more one-line causes.
struct Failed(Vec<String>);

impl<E: std::fmt::Display> From<E> for Failed {
    fn from(error: E) -> Self {
        Failed(error.to_string().lines().map(str::to_owned).collect())
    }
}

/// Whether an event may be logged at all: the NATS client's own lines below info are never
/// shown, whatever `RUST_LOG` asks, because at trace it writes its CONNECT line with the
/// password or token in it.
fn shown(metadata: &tracing::Metadata<'_>) -> bool {
    let from_nats_client = metadata.target().starts_with("async_nats");
    !from_nats_client || *metadata.level() <= tracing::Level::INFO
}

fn main() -> ExitCode {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Restarts of failed instances are worth seeing without asking: they are logged at info.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(LOG_DEFAULT));
    // The most verbose level the filter lets through, given to `shown` too: a filter with no
    // level of its own leaves the whole stack's level unknown, and then every debug line on the
    // call path (several a call) asks the subscriber whether it is wanted, each time.
    let most = filter
        .max_level_hint()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE);
    let shown = tracing_subscriber::filter::filter_fn(shown).with_max_level_hint(most);
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter)
        .with_filter(shown);
    tracing_subscriber::registry().with(logs).init();
    let cli = Cli::parse();
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(tokio) => tokio,
        Err(error) => {
            eprintln!("exorun: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Commands run on a worker thread, as every caller inside exorun does.
    let outcome = tokio.block_on(async { tokio::spawn(command(cli.command)).await });
    let failed = match outcome {
        Ok(Ok(())) => return ExitCode::SUCCESS,
        Ok(Err(Failed(lines))) => lines,
        Err(panicked) => vec![format!("internal error: {panicked}")],
    };
    for line in failed {
        eprintln!("exorun: {line}");
    }
    ExitCode::FAILURE
}

async fn command(command: Command) -> Result<(), Failed> {
    match command {
        Command::Run {
            manifest,
            invoke,
            metrics,
            tracing,
            peers,
            key,
        } => {
            let manifest = load(&manifest, peers, key)?;
            let ran = run(manifest, invoke.as_deref(), metrics.as_deref());
            tracing.around(ran).await
        }
        Command::Serve {
            manifest,
            managing,
            metrics,
            tracing,
            listen,
            http,
            lattice,
            peers,
            key,
            insecure,
            limits,
        } => {
            let manifest = match &managing.operator {
                Some(operator) => managed(manifest.as_deref(), operator, &managing, peers, key)?,
                None => load(manifest.as_deref().unwrap_or(Path::new("")), peers, key)?,
            };
            let listening = listening(&listen, insecure, lattice, &http)?;
            let observed = (managing.state.as_deref(), metrics.as_deref());
            let served = serve_command::serve(manifest, &listening, limits.config(), observed);
            tracing.around(served).await
        }
        Command::Deploy {
            component,
            at,
            name,
            links,
            export,
            replicas,
        } => deploy(&component, &at, &name, &links, export, replicas).await,
        Command::Ps { at } => ps(&at).await,
        Command::Stop { name, at } => {
            let components = manage::components(at.components.as_deref());
            target(&at, &components).stop(&name).await?;
            println!("stopped {name}");
            Ok(())
        }
        Command::Inspect { component } => inspect(&component),
        Command::Keygen { out } => {
            let key = NodeKey::generate()?;
            key.write_new(&out)?;
            println!("{}", key.public());
            Ok(())
        }
        Command::Key { path } => {
            println!("{}", NodeKey::read(&path)?.public());
            Ok(())
        }
        Command::Cap { action } => cap(action),
    }
}

/// Where `serve` listens, from its flags.
fn listening<'a>(
    addresses: &'a [String],
    insecure: bool,
    lattice: LatticeArgs,
    http: &'a HttpArgs,
) -> Result<Listening<'a>, Failed> {
    Ok(Listening {
        addresses,
        insecure,
        nats: lattice.settings()?,
        lattice: lattice.lattice,
        http,
    })
}

/// Reads the manifest at `path`, with peer addresses and the node key overridden.
fn load(
    path: &Path,
    peers: Vec<(String, String)>,
    key: Option<PathBuf>,
) -> Result<manifest::Manifest, Failed> {
    for (_, address) in &peers {
        refuse_credentials("--peer", address)?;
    }
    let peers: BTreeMap<String, String> = peers.into_iter().collect();
    let mut manifest = manifest::load(path, &peers)?;
    if key.is_some() {
        manifest.key = key;
    }
    Ok(manifest)
}

async fn run(
    manifest: manifest::Manifest,
    invoke: Option<&str>,
    metrics: Option<&str>,
) -> Result<(), Failed> {
    let endpoint = match metrics {
        Some(address) => Some(exorun_cli::prometheus::Endpoint::start(address).await?),
        None => None,
    };
    let composition = exorun_host::Composition::start(manifest).await?;
    if let Some(endpoint) = &endpoint {
        endpoint.watch(&composition.runtime);
        endpoint.ready();
    }
    if let Some(text) = invoke {
        let invocation = Invocation::parse(text)?;
        let handle = composition
            .instances
            .get(&invocation.instance)
            .ok_or_else(|| invoke::Error::UnknownInstance {
                instance: invocation.instance.clone(),
            })?;
        println!("{}", invocation.call(handle).await?);
        return Ok(());
    }
    let mut failures = Vec::new();
    let mut ran = 0;
    for (name, handle) in &composition.instances {
        let runnable = handle.ledger().exports.get("exorun:test/runnable");
        if !runnable.is_some_and(|exported| exported.functions.contains_key("run")) {
            continue;
        }
        ran += 1;
        let invocation = Invocation {
            instance: name.clone(),
            interface: "exorun:test/runnable".to_owned(),
            function: "run".to_owned(),
            args: String::new(),
        };
        match invocation.call(handle).await {
            Ok(shown) => println!("{name}: {shown}"),
            Err(error) => failures.push(error.to_string()),
        }
    }
    if ran == 0 {
        failures.push("no instance exports exorun:test/runnable#run; use --invoke".to_owned());
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(Failed(failures))
}

fn inspect(path: &Path) -> Result<(), Failed> {
    let runtime = Runtime::new()?;
    let name = path.file_stem().map_or_else(
        || path.display().to_string(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    let app = runtime.app(runtime.add_app_file(&name, path)?)?;
    for (heading, interfaces) in [
        ("imports", &app.ledger.imports),
        ("exports", &app.ledger.exports),
    ] {
        println!("{heading}:");
        for (interface, contents) in interfaces {
            println!("  {interface}");
            print_interface(contents);
        }
    }
    Ok(())
}

/// An interface's functions, each resource's (constructor, methods, static functions) grouped
/// under it by their short names.
fn print_interface(interface: &ledger::Interface) {
    let of = |resource: &str, function: &str| -> Option<String> {
        let constructor = format!("[constructor]{resource}");
        if function == constructor {
            return Some("constructor".to_owned());
        }
        let kinds = ["[method]", "[static]"];
        let prefixed = kinds.iter().find_map(|kind| function.strip_prefix(kind))?;
        prefixed
            .strip_prefix(resource)?
            .strip_prefix('.')
            .map(str::to_owned)
    };
    let mut grouped = std::collections::BTreeSet::new();
    for resource in &interface.resources {
        println!("    resource {resource}");
        for (function, signature) in &interface.functions {
            let Some(short) = of(resource, function) else {
                continue;
            };
            grouped.insert(function.as_str());
            println!("      {short}: {}", signature.text);
        }
    }
    for (function, signature) in &interface.functions {
        if !grouped.contains(function.as_str()) {
            println!("    {function}: {}", signature.text);
        }
    }
}
