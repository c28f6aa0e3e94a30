//! The composition manifest: TOML read into typed, validated settings.
//!
//! ```toml
//! key = "node.key"                          # this runtime's node key (`exorun keygen`), for
//!                                           # tls:// and quic://; `--key PATH` overrides
//! [apps]                                    # name -> component path (relative to this file)
//! consumer = "../fixtures/math-consumer.wasm"
//!
//! [peers]                                   # name -> address; `--peer NAME=ADDRESS` overrides
//! provider = "tcp://127.0.0.1:47411"         # or a table:
//! backup = { addresses = ["tcp://a:1", "unix:///b"], timeout_ms = 5000, heartbeat_ms = 10000,
//!            backoff_max_ms = 5000, when_down = "fail" }   # or "wait"; heartbeat_ms = 0: none
//! secure = { address = "tls://10.0.0.7:47411", key = "ed25519:<64 hex digits>" }  # pinned
//!                                           # (+ capability = "FILE": presented by its links)
//! cluster = { addresses = ["nats://10.0.0.9:4222"], lattice = "prod", nkey = "user.nk",
//!             tls = false, ca = "nats-ca.pem" }   # exports by name anywhere in a lattice
//!
//! [stores]                                  # kv stores that outlive the process (others: memory)
//! notes = { path = "data/notes.redb" }      # a redb file (relative to this file)
//! shared = { nats = "cluster", bucket = "shared" }   # a JetStream bucket, through a nats://
//!                                           # peer (its credentials, TLS) or an address
//!
//! [instances.calc]
//! app = "consumer"
//! export = false                            # reachable by remote callers? or who may call:
//!                                           # { allow = ["ed25519:…"] } or, per interface,
//!                                           # { allow = { "ed25519:…" = ["exorun:test/math"] } }
//!                                           # or { guard = "auth" }: an instance here that
//!                                           # exports exorun:auth/guard decides each call
//! config = { roots = "ed25519:…" }          # what it reads through wasi:config/store
//! limits = { fuel_per_call = 2000000000, memory_mib = 64, lock_wait_ms = 30000,
//!            calls_waiting_max = 1024, bytes_waiting_mib = 64 }
//! replicas = 1                              # N instances behind the name, or "per-call"
//! restart = "always"                        # or "never": a failed instance stays failed
//! wasi = { env = { KEY = "value" }, args = ["a"], stdio = "inherit", preopen = [
//!     { host = "data", guest = "/data", writable = false } ] }
//!
//! [instances.calc.links]                    # one entry per import
//! "exorun:test/math" = { remote = "provider", target = "math" }  # a peer name or an address
//!                                           # (+ capability = "math.cap": presented by calls)
//! "exorun:host/logging" = { system = "logging" }
//! "exorun:host/caller" = { system = "caller" }   # who called, what a guard granted
//! "exorun:host/kv" = { system = "kv", store = "shared" }         # stores are shared by name
//! "exorun:test/other" = { local = "relay" }                      # another instance here
//! "wasi:*" = { system = "wasi" }            # every WASI import not linked otherwise
//! "wasi:keyvalue/store@0.2.0-draft" = { system = "keyvalue", store = "notes" }
//!                                           # (also its atomics and batch, on the same store)
//! "wasi:http/outgoing-handler@0.2.12" = { system = "http", allow = ["127.0.0.1:*"] }
//!                                           # outgoing HTTP to these hosts only (none if absent)
//!                                           # (wasi:config/store too, from `config`)
//! ```
//!
//! Every mistake is reported with the manifest's path and the offending key, all at once, and
//! before anything is compiled, instantiated or connected.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;

use exorun_bind::serve::Allow;
use exorun_core::limits::Limits;
use exorun_core::supervision::Replicas;
use exorun_core::supervision::Restart;
use exorun_transport::identity::PublicKey;
use serde::Deserialize;

/// The key that links every WASI import not linked by its own key.
pub(crate) const WASI_WILDCARD: &str = "wasi:*";

mod links;
mod peers;
mod problem;
mod settings;

pub use peers::LATTICE_DEFAULT;
pub use peers::Nats;
pub use peers::Peer;
pub use peers::is_secure;
pub use problem::Error;
pub use problem::Problem;

use links::check_link;
use peers::RawPeer;
use peers::check_peer;
pub use settings::REPLICAS_MAX;
use settings::check_limits;
use settings::check_replicas;
use settings::check_restart;
use settings::check_wasi;
use settings::limits;

/// A parsed manifest and the problems found in it so far (a composition is built only when
/// none are left, after compiling and linking add theirs, so all are reported at once).
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where it was read from.
    pub path: PathBuf,
    /// This runtime's node key file (resolved against the manifest's directory), if named.
    pub key: Option<PathBuf>,
    /// Keys whose values are wrong, with what is wrong.
    pub problems: Vec<(String, Problem)>,
    /// The peers remote links reach, by name (or by the address a link gave inline).
    pub peers: BTreeMap<String, Peer>,
    /// App names and component paths, resolved against the manifest's directory.
    pub apps: BTreeMap<String, PathBuf>,
    /// Instances by name.
    pub instances: BTreeMap<String, Instance>,
    /// The kv stores named under `[stores]`, by name.
    pub stores: BTreeMap<String, Store>,
    /// `[http] routes`: path prefixes and the instances that answer them (`exorun serve
    /// --http`).
    pub http_routes: BTreeMap<String, String>,
}

/// One instance of an app.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The app it runs.
    pub app: String,
    /// Whether remote callers may reach it (`None`: no), and which ones.
    pub export: Option<Allow>,
    /// The instance of this manifest that decides each call to its export, if any.
    pub guard: Option<String>,
    /// What it reads through `wasi:config/store`.
    pub config: BTreeMap<String, String>,
    /// The privileged systems it may link (`meta`).
    pub trusted: Vec<String>,
    /// Its limits.
    pub limits: Limits,
    /// How many instances serve it.
    pub replicas: Replicas,
    /// What happens to an instance whose call failed.
    pub restart: Restart,
    /// WASI settings, used when it links a WASI interface to the `wasi` system.
    pub wasi: Wasi,
    /// How each import is linked, by interface (or `wasi:*`).
    pub links: BTreeMap<String, Link>,
    /// Whether `[http] routes` names it: its `wasi:http` and `wasi:io` imports are then linked
    /// to the HTTP system without a line of their own.
    pub routed: bool,
}

/// WASI settings of one instance.
#[derive(Debug, Clone, Default)]
pub struct Wasi {
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Command-line arguments.
    pub args: Vec<String>,
    /// Host directories shown to the guest: host path (resolved), guest path, writable.
    pub preopens: Vec<(PathBuf, String, bool)>,
    /// Whether the guest's stdout/stderr reach the host's.
    pub inherit_stdio: bool,
}

/// What provides one import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// The WASI system.
    Wasi,
    /// The logging system.
    Logging,
    /// The config system (`wasi:config/store`), with the instance's `config`.
    Config,
    /// The caller system (`exorun:host/caller`).
    Caller,
    /// The privileged meta system (`exorun:host/meta`), for trusted instances only.
    Meta,
    /// The HTTP system (`wasi:http`), sending outgoing requests only to `allow`.
    Http {
        /// Allowed destinations: `HOST`, `HOST:PORT` or `HOST:*`.
        allow: Vec<String>,
    },
    /// The kv system over the store of this name.
    Kv {
        /// The store's name (stores with one name are one store).
        store: String,
    },
    /// The `wasi:keyvalue` system over the store of this name.
    KeyValue {
        /// The store's name (shared with `kv` links to the same name).
        store: String,
    },
    /// Another instance of this composition, by name (looked up at each call).
    Named {
        /// The instance, by its manifest name.
        instance: String,
    },
    /// An instance on another runtime.
    Remote {
        /// The peer, by its key in `Manifest::peers` (a name, or the address a link gave).
        peer: String,
        /// The instance's name on the peer.
        target: String,
        /// The capability file its calls present (the link's, else the peer's), if any.
        capability: Option<PathBuf>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    key: Option<PathBuf>,
    #[serde(default)]
    apps: BTreeMap<String, PathBuf>,
    #[serde(default)]
    peers: BTreeMap<String, RawPeer>,
    #[serde(default)]
    instances: BTreeMap<String, RawInstance>,
    #[serde(default)]
    stores: BTreeMap<String, RawStore>,
    #[serde(default)]
    http: RawHttp,
}

/// `[http] routes = { "/api" = "api" }`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    routes: BTreeMap<String, String>,
}

/// The most `[http] routes` a manifest has.
pub const HTTP_ROUTES_MAX: usize = 64;

/// `{ path = "…" }` or `{ nats = "…", bucket = "…" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<PathBuf>,
    nats: Option<String>,
    bucket: Option<String>,
}

/// Where a named kv store keeps its entries (a store not under `[stores]` is in memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// A redb file (resolved against the manifest's directory).
    Durable {
        /// The file.
        path: PathBuf,
    },
    /// A JetStream bucket, reached through a NATS peer.
    JetStream {
        /// The peer, by its key in `Manifest::peers`.
        peer: String,
        /// The bucket's name.
        bucket: String,
    },
}

/// The apps and instances a manifest's instance may name (a manifest's own, or a running
/// runtime's for an instance started through meta).
#[derive(Debug)]
pub struct Known {
    /// App names.
    pub apps: std::collections::BTreeSet<String>,
    /// Instance names.
    pub instances: std::collections::BTreeSet<String>,
    /// Of those, the ones started through meta (the only ones a deployed instance may link to
    /// locally).
    pub deployed: std::collections::BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    app: String,
    #[serde(default)]
    trusted: Vec<String>,
    #[serde(default)]
    export: RawExport,
    #[serde(default)]
    limits: RawLimits,
    replicas: Option<RawReplicas>,
    restart: Option<String>,
    #[serde(default)]
    wasi: RawWasi,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    links: BTreeMap<String, RawLink>,
}

/// `export = true | false` or `export = { allow = ..., guard = "..." }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawExport {
    Flag(bool),
    Table(RawExportTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExportTable {
    allow: Option<RawAllow>,
    guard: Option<String>,
}

impl Default for RawExport {
    fn default() -> Self {
        RawExport::Flag(false)
    }
}

/// `allow = ["ed25519:…", …]` (every interface) or `allow = { "ed25519:…" = [interfaces] }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawAllow {
    Keys(Vec<String>),
    PerKey(BTreeMap<String, Vec<String>>),
}

/// `replicas = N` or `replicas = "per-call"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawReplicas {
    Count(i64),
    Mode(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel_per_call: Option<u64>,
    memory_mib: Option<usize>,
    lock_wait_ms: Option<u64>,
    calls_waiting_max: Option<usize>,
    bytes_waiting_mib: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWasi {
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    preopen: Vec<RawPreopen>,
    stdio: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreopen {
    host: PathBuf,
    guest: String,
    #[serde(default)]
    writable: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    system: Option<String>,
    store: Option<String>,
    local: Option<String>,
    remote: Option<String>,
    target: Option<String>,
    capability: Option<PathBuf>,
    allow: Option<Vec<String>>,
}

/// Largest component file a manifest may name, as exorun-core reads by default.
pub const COMPONENT_BYTES_MAX: u64 = exorun_core::runtime::COMPONENT_BYTES_MAX;

/// Reads and checks the manifest at `path`; `peers` overrides peer addresses by name. A file
/// that cannot be read or parsed is an `Err`; every other problem is listed in
/// `Manifest::problems`, to be reported with those that compiling and linking find.
pub fn load(path: &Path, peers: &BTreeMap<String, String>) -> Result<Manifest, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(path, &text, peers)
}

/// Checks manifest `text` as if read from `path` (relative paths in it are resolved against
/// `path`'s directory; the app files are looked at, not read); see `load`.
pub fn parse(path: &Path, text: &str, peers: &BTreeMap<String, String>) -> Result<Manifest, Error> {
    let shown = path.display().to_string();
    let mut raw: RawManifest = toml::from_str(text).map_err(|error| Error::Syntax {
        path: shown.clone(),
        message: error.message().to_owned(),
    })?;
    for (name, address) in peers {
        let overridden = RawPeer::at(raw.peers.remove(name), address);
        raw.peers.insert(name.clone(), overridden);
    }
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let mut problems = Vec::new();
    let mut checked_peers = BTreeMap::new();
    for (name, peer) in std::mem::take(&mut raw.peers) {
        match check_peer(base, peer.settings()) {
            Ok(peer) => {
                checked_peers.insert(name, Some(peer));
            }
            Err(problem) => {
                problems.push((format!("peers.{name}"), problem));
                checked_peers.insert(name, None);
            }
        }
    }
    let stores = check_stores(base, &mut checked_peers, &raw.stores, &mut problems);
    let mut instances = BTreeMap::new();
    let known = Known {
        apps: raw.apps.keys().cloned().collect(),
        instances: raw.instances.keys().cloned().collect(),
        deployed: std::collections::BTreeSet::new(),
    };
    for (name, instance) in &raw.instances {
        let key = format!("instances.{name}");
        let unaddressable = |c: char| matches!(c, '.' | '#' | '(') || c.is_whitespace();
        if name.is_empty() || name.contains(unaddressable) {
            problems.push((key.clone(), Problem::BadInstanceName));
        }
        let checked = check_instance(
            &known,
            &mut checked_peers,
            base,
            &key,
            instance,
            &mut problems,
        );
        instances.insert(name.clone(), checked);
    }
    let apps = check_apps(base, &raw.apps, &mut problems);
    check_routes(&raw.http.routes, &mut instances, &mut problems);
    Ok(Manifest {
        http_routes: raw.http.routes,
        path: path.to_owned(),
        key: raw.key.as_ref().map(|key| base.join(key)),
        problems,
        peers: checked_peers
            .into_iter()
            .filter_map(|(name, peer)| Some((name, peer?)))
            .collect(),
        apps,
        instances,
        stores,
    })
}

/// The apps, their paths resolved against `base`; a file that is not there, or too large, is a
/// problem at `apps.NAME`.
fn check_apps(
    base: &Path,
    raw: &BTreeMap<String, PathBuf>,
    problems: &mut Vec<(String, Problem)>,
) -> BTreeMap<String, PathBuf> {
    let apps: BTreeMap<String, PathBuf> = raw
        .iter()
        .map(|(name, app)| (name.clone(), base.join(app)))
        .collect();
    for (name, app) in &apps {
        let checked = exorun_core::runtime::check_component_file(app, COMPONENT_BYTES_MAX);
        if let Err(error) = checked {
            let message = error.to_string();
            problems.push((format!("apps.{name}"), Problem::Component { message }));
        }
    }
    apps
}

/// Each route's prefix starts with `/` and names an instance of the manifest; at most
/// `HTTP_ROUTES_MAX` of them. (Whether the instance exports a handler is checked when its app
/// is loaded.)
fn check_routes(
    routes: &BTreeMap<String, String>,
    instances: &mut BTreeMap<String, Instance>,
    problems: &mut Vec<(String, Problem)>,
) {
    if routes.len() > HTTP_ROUTES_MAX {
        problems.push(("http.routes".to_owned(), Problem::TooManyRoutes));
    }
    for (prefix, name) in routes {
        let key = format!("http.routes.\"{prefix}\"");
        if !prefix.starts_with('/') {
            problems.push((key.clone(), Problem::RoutePrefix));
        }
        let Some(instance) = instances.get_mut(name) else {
            let instance = name.clone();
            problems.push((key, Problem::UnknownInstance { instance }));
            continue;
        };
        instance.routed = true;
    }
}

/// Checks the settings of one instance `name` given as the TOML of a manifest's instance table
/// (`exorun:host/meta`'s `start`), against the names a running runtime `known` has and the
/// peers of `manifest` (an address given inline becomes a peer, added to `peers`). Such an
/// instance can never be trusted with a privileged system.
pub fn parse_instance(
    manifest: &Manifest,
    peers: &mut BTreeMap<String, Peer>,
    known: &Known,
    name: &str,
    settings: &str,
) -> Result<Instance, Vec<(String, Problem)>> {
    let key = format!("instances.{name}");
    let syntax = |error: toml::de::Error| {
        let message = error.message().to_owned();
        vec![(key.clone(), Problem::Settings { message })]
    };
    let raw: RawInstance = toml::from_str(settings).map_err(syntax)?;
    let mut problems = Vec::new();
    let unaddressable = |c: char| matches!(c, '.' | '#' | '(') || c.is_whitespace();
    if name.is_empty() || name.contains(unaddressable) {
        problems.push((key.clone(), Problem::BadInstanceName));
    }
    if !raw.trusted.is_empty() {
        problems.push((format!("{key}.trusted"), Problem::Untrusted));
    }
    let base = manifest.path.parent().unwrap_or_else(|| Path::new("."));
    let mut checked: BTreeMap<String, Option<Peer>> = peers
        .iter()
        .map(|(name, peer)| (name.clone(), Some(peer.clone())))
        .collect();
    let mut instance = check_instance(known, &mut checked, base, &key, &raw, &mut problems);
    let declared = (known, &manifest.peers);
    confine(&key, &raw, &mut instance, declared, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    for (name, peer) in checked {
        if let Some(peer) = peer {
            peers.insert(name, peer);
        }
    }
    Ok(instance)
}

/// What a deployed instance may not do, because it would reach past what its deployer was
/// granted: host directories or the host's stdio, capability files on the host (or a peer's,
/// which is the operator's), local links to instances it was not deployed beside (a local
/// link passes no guard or allow list), and remote links to anything but a peer the operator
/// declared, by its name (an address of its own choosing would have the runtime dial any
/// socket it can reach, as a plaintext runtime's that its deployer has no grant to). Its kv
/// stores are its own: every store name it links is kept apart from the manifest's
/// (`deployed/NAME`).
fn confine(
    key: &str,
    raw: &RawInstance,
    instance: &mut Instance,
    (known, declared): (&Known, &BTreeMap<String, Peer>),
    problems: &mut Vec<(String, Problem)>,
) {
    let mut refuse = |at: String, what: String| problems.push((at, Problem::Deployed { what }));
    if !instance.wasi.preopens.is_empty() {
        refuse(
            format!("{key}.wasi"),
            "preopened host directories".to_owned(),
        );
    }
    if instance.wasi.inherit_stdio {
        refuse(
            format!("{key}.wasi"),
            "the host's stdout and stderr".to_owned(),
        );
    }
    for (interface, link) in &raw.links {
        if link.capability.is_some() {
            let at = format!("{key}.links.\"{interface}\"");
            refuse(at, "a capability file on the host".to_owned());
        }
    }
    for (interface, link) in &mut instance.links {
        match link {
            Link::Named { instance } if !known.deployed.contains(instance.as_str()) => {
                let at = format!("{key}.links.\"{interface}\"");
                let what = format!("a local link to `{instance}`, which was not deployed");
                refuse(at, what);
            }
            Link::Kv { store } | Link::KeyValue { store } => *store = format!("deployed/{store}"),
            Link::Remote { peer, .. } if !declared.contains_key(peer.as_str()) => {
                let at = format!("{key}.links.\"{interface}\"");
                let shown = exorun_transport::address::redacted(peer);
                let what = format!(
                    "a remote link to `{shown}`, which is not a peer the operator declared \
                     (a deployed instance names a declared peer, never an address)"
                );
                refuse(at, what);
            }
            Link::Remote { capability, .. } => *capability = None,
            Link::Http { allow } if !allow.is_empty() => {
                let at = format!("{key}.links.\"{interface}\"");
                refuse(at, "outgoing HTTP from the host".to_owned());
            }
            Link::Http { .. }
            | Link::Wasi
            | Link::Logging
            | Link::Config
            | Link::Caller
            | Link::Meta
            | Link::Named { .. } => {}
        }
    }
}

/// Every store under `[stores]`; a mistake is a problem at `stores.NAME`.
fn check_stores(
    base: &Path,
    peers: &mut BTreeMap<String, Option<Peer>>,
    raw: &BTreeMap<String, RawStore>,
    problems: &mut Vec<(String, Problem)>,
) -> BTreeMap<String, Store> {
    let mut stores = BTreeMap::new();
    for (name, store) in raw {
        match check_store(base, peers, name, store) {
            Ok(store) => {
                stores.insert(name.clone(), store);
            }
            Err(problem) => problems.push((format!("stores.{name}"), problem)),
        }
    }
    stores
}

/// A store's backend: a file, or a bucket through a NATS peer (by name, or an address given
/// inline, which becomes a peer with the defaults).
fn check_store(
    base: &Path,
    peers: &mut BTreeMap<String, Option<Peer>>,
    name: &str,
    store: &RawStore,
) -> Result<Store, Problem> {
    match (&store.path, &store.nats) {
        (Some(path), None) if store.bucket.is_none() => Ok(Store::Durable {
            path: base.join(path),
        }),
        (None, Some(nats)) => {
            let bucket = store.bucket.clone().unwrap_or_else(|| name.to_owned());
            let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if bucket.is_empty() || !bucket.chars().all(valid) {
                return Err(Problem::BadBucket { bucket });
            }
            if !peers.contains_key(nats) {
                let peer = check_peer(Path::new("."), RawPeer::at(None, nats).settings())?;
                peers.insert(nats.clone(), Some(peer));
            }
            let Some(Some(peer)) = peers.get(nats) else {
                let peer = nats.clone();
                return Err(Problem::BrokenPeer { peer });
            };
            if peer.nats.is_none() {
                let peer = nats.clone();
                return Err(Problem::NotNats { peer });
            }
            Ok(Store::JetStream {
                peer: nats.clone(),
                bucket,
            })
        }
        _ => Err(Problem::StoreKind),
    }
}

fn check_instance(
    raw: &Known,
    peers: &mut BTreeMap<String, Option<Peer>>,
    base: &Path,
    key: &str,
    instance: &RawInstance,
    problems: &mut Vec<(String, Problem)>,
) -> Instance {
    if !raw.apps.contains(&instance.app) {
        let app = instance.app.clone();
        problems.push((format!("{key}.app"), Problem::UnknownApp { app }));
    }
    let limits = limits(&instance.limits);
    let past = check_limits(&instance.limits).into_iter();
    problems.extend(past.map(|problem| (format!("{key}.limits"), problem)));
    let replicas = check_replicas(instance.replicas.as_ref()).unwrap_or_else(|problem| {
        problems.push((format!("{key}.replicas"), problem));
        Replicas::ONE
    });
    let restart = check_restart(instance.restart.as_deref()).unwrap_or_else(|problem| {
        problems.push((format!("{key}.restart"), problem));
        Restart::default()
    });
    let mut links = BTreeMap::new();
    for (interface, link) in &instance.links {
        let link_key = format!("{key}.links.\"{interface}\"");
        match check_link(raw, peers, base, link) {
            Ok(link) if interface == WASI_WILDCARD && link != Link::Wasi => {
                problems.push((link_key, Problem::WildcardNotWasi));
            }
            Ok(link) => {
                links.insert(interface.clone(), link);
            }
            Err(problem) => problems.push((link_key, problem)),
        }
    }
    let (export, guard) = check_export(&instance.export).unwrap_or_else(|problem| {
        problems.push((format!("{key}.export"), problem));
        (None, None)
    });
    if let Some(guard) = &guard
        && !raw.instances.contains(guard)
    {
        let instance = guard.clone();
        problems.push((
            format!("{key}.export"),
            Problem::UnknownInstance { instance },
        ));
    }
    let wasi = check_wasi(base, key, &instance.wasi, problems);
    let configured = !(wasi.env.is_empty() && wasi.args.is_empty() && wasi.preopens.is_empty())
        || instance.wasi.stdio.is_some();
    if configured && !links.values().any(|link| *link == Link::Wasi) {
        problems.push((format!("{key}.wasi"), Problem::UnusedWasi));
    }
    let config_linked = links
        .values()
        .any(|link| matches!(link, Link::Config | Link::Wasi));
    check_trusted(key, &instance.trusted, &links, problems);
    if !instance.config.is_empty() && !config_linked {
        problems.push((format!("{key}.config"), Problem::UnusedConfig));
    }
    Instance {
        app: instance.app.clone(),
        export,
        guard,
        config: instance.config.clone(),
        trusted: instance.trusted.clone(),
        limits,
        replicas,
        restart,
        wasi,
        links,
        routed: false,
    }
}

/// `trusted` names only privileged systems, and a privileged system is linked only by an
/// instance trusted with it.
fn check_trusted(
    key: &str,
    trusted: &[String],
    links: &BTreeMap<String, Link>,
    problems: &mut Vec<(String, Problem)>,
) {
    for system in trusted.iter().filter(|system| *system != "meta") {
        let system = system.clone();
        problems.push((format!("{key}.trusted"), Problem::UnknownSystem { system }));
    }
    let meta_linked = links.values().any(|link| *link == Link::Meta);
    if meta_linked && !trusted.iter().any(|system| system == "meta") {
        problems.push((format!("{key}.links"), Problem::Untrusted));
    }
}

/// Whether an instance is exported, to whom, and the instance that guards it.
fn check_export(raw: &RawExport) -> Result<(Option<Allow>, Option<String>), Problem> {
    let table = match raw {
        RawExport::Flag(exported) => return Ok((exported.then_some(Allow::Anyone), None)),
        RawExport::Table(table) => table,
    };
    let guard = table.guard.clone();
    let Some(allow) = &table.allow else {
        return match guard {
            Some(guard) => Ok((Some(Allow::Anyone), Some(guard))),
            None => Err(Problem::EmptyExport),
        };
    };
    let entries: Vec<(&String, Option<&Vec<String>>)> = match allow {
        RawAllow::Keys(keys) => keys.iter().map(|key| (key, None)).collect(),
        RawAllow::PerKey(keys) => keys
            .iter()
            .map(|(key, interfaces)| (key, Some(interfaces)))
            .collect(),
    };
    if entries.is_empty() {
        return Err(Problem::EmptyAllow);
    }
    let mut keys = BTreeMap::new();
    for (key, interfaces) in entries {
        let key = PublicKey::parse(key).map_err(Problem::Key)?;
        let interfaces = interfaces.map(|interfaces| interfaces.iter().cloned().collect());
        keys.insert(key, interfaces);
    }
    Ok((Some(Allow::Keys(keys)), guard))
}
