//! A checked manifest's providers and instances, before and while they run.
//!
//! Order: compile every app, turn every link into a `Linkable`, and ask each instance's builder
//! for its problems; if there are any, report them all (with the manifest's path and each key)
//! and stop. Only then instantiate, in manifest order. Local links name their target instance
//! and resolve it at call time, so instances may link to each other in any order. Remote links
//! go through one `peer::Peer` per manifest peer, which connects on the first call (nothing
//! touches the network before a guest calls out), reconnects and fails over; kv stores with the
//! same name are one store.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use exorun_bind::builder;
use exorun_bind::builder::InstanceBuilder;
use exorun_bind::builder::Linkable;
use exorun_bind::serve;
use exorun_bind::serve::Exports;
use exorun_bind::serve::guard;
use exorun_core::app::AppId;
use exorun_core::instance::InstanceHandle;
use exorun_core::ledger;
use exorun_core::runtime;
use exorun_core::runtime::Runtime;
use exorun_core::supervision::Replicas;
use exorun_core::system::SystemComponent;
use exorun_systems::caller::Caller;
use exorun_systems::config::Config;
use exorun_systems::keyvalue::KeyValue;
use exorun_systems::kv;
use exorun_systems::logging::Logging;
use exorun_systems::wasi::Access;
use exorun_systems::wasi::Wasi;
use exorun_transport::client::Channel;
use exorun_transport::client::Presenting;
use exorun_transport::identity::NodeKey;
use exorun_transport::nats;
use exorun_transport::nats::Lattice;
use exorun_transport::net;
use exorun_transport::peer::Peer;
use exorun_transport::tls::Secure;
use exorun_transport::transport;

use crate::capability;
use crate::manifest;
use crate::manifest::Link;
use crate::manifest::Manifest;
use crate::manifest::Problem;

mod composer;
mod lattices;

pub(crate) use composer::Composer;
use lattices::lattice_settings;
pub use lattices::nats_settings;

/// Why a composition did not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest, or what it names, is wrong.
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
    /// The runtime could not be created.
    #[error("{0}")]
    Runtime(#[from] runtime::Error),
    /// An instance could not be exported (after every check passed).
    #[error("{0}")]
    Export(#[from] serve::Error),
    /// An instance failed while starting (after every check passed).
    #[error("{path}: instances.{instance}: {source}")]
    Instantiate {
        /// The manifest's path (or the file's, for `Read`).
        path: String,

        /// The instance, by its manifest name.
        instance: String,

        /// The underlying error.
        source: builder::Error,
    },
}

/// Shared providers: one logging system, one kv system per store name, one channel per peer
/// of the manifest (a `Peer`, one connection kept up with failover, or a NATS `Lattice`).
pub(crate) struct Providers {
    logging: Arc<dyn SystemComponent>,
    caller: Arc<dyn SystemComponent>,
    capabilities: BTreeMap<PathBuf, Bytes>,
    /// Stores by name: those under `[stores]`, opened, and in-memory ones made on first use.
    stores: BTreeMap<String, kv::Store>,
    /// The `exorun:host/kv` (`false`) and `wasi:keyvalue` (`true`) system of each store, one
    /// each (so an instance linking several interfaces to one installs it once).
    store_systems: BTreeMap<(String, bool), Arc<dyn SystemComponent>>,
    channels: BTreeMap<String, Arc<dyn Channel>>,
    key: Option<Arc<NodeKey>>,
    lattices: BTreeMap<String, nats::Settings>,
    peers: BTreeMap<String, manifest::Peer>,
    meta: Arc<dyn SystemComponent>,
}

/// The systems each instance has its own of, from its settings.
struct Own {
    wasi: Arc<dyn SystemComponent>,
    config: Arc<dyn SystemComponent>,
    http: Arc<dyn SystemComponent>,
}

impl Providers {
    fn linkable(
        &mut self,
        link: &Link,
        own: &Own,
        app_of: impl Fn(&str) -> Option<AppId>,
    ) -> Option<Linkable> {
        let linkable = match link {
            Link::Wasi => Linkable::System(Arc::clone(&own.wasi)),
            Link::Config => Linkable::System(Arc::clone(&own.config)),
            Link::Http { .. } => Linkable::System(Arc::clone(&own.http)),
            Link::Logging => Linkable::System(Arc::clone(&self.logging)),
            Link::Caller => Linkable::System(Arc::clone(&self.caller)),
            Link::Meta => Linkable::System(Arc::clone(&self.meta)),
            Link::Kv { store } => Linkable::System(self.store_system(store, false)),
            Link::KeyValue { store } => Linkable::System(self.store_system(store, true)),
            Link::Named { instance } => Linkable::Named {
                app: app_of(instance)?,
                name: instance.clone(),
            },
            Link::Remote {
                peer,
                target,
                capability,
            } => Linkable::Remote {
                channel: self.presenting(peer, capability.as_ref())?,
                target: target.clone(),
            },
        };
        Some(linkable)
    }

    /// The kv system (`keyvalue`: the `wasi:keyvalue` system) of the store named `name`.
    fn store_system(&mut self, name: &str, keyvalue: bool) -> Arc<dyn SystemComponent> {
        let store = self.stores.entry(name.to_owned()).or_default().clone();
        let key = (name.to_owned(), keyvalue);
        let system = self.store_systems.entry(key).or_insert_with(|| {
            if keyvalue {
                Arc::new(KeyValue::new(store))
            } else {
                Arc::new(kv::Kv::new(store))
            }
        });
        Arc::clone(system)
    }

    /// The peer's channel, presenting the capability in `file` (read already) if one is named.
    fn presenting(&mut self, peer: &str, file: Option<&PathBuf>) -> Option<Arc<dyn Channel>> {
        let channel = self.channel(peer)?;
        let Some(file) = file else {
            return Some(channel);
        };
        let capability = self.capabilities.get(file)?.clone();
        Some(Arc::new(Presenting::new(channel, capability)))
    }
}

impl Providers {
    /// The one channel to the peer named `name`, made on first use.
    fn channel(&mut self, name: &str) -> Option<Arc<dyn Channel>> {
        if let Some(channel) = self.channels.get(name) {
            return Some(Arc::clone(channel));
        }
        let spec = self.peers.get(name)?;
        let timeout = spec.config.client.timeout;
        let channel: Arc<dyn Channel> = match (&spec.nats, self.lattices.get(name)) {
            (Some(lattice), Some(settings)) => {
                Arc::new(Lattice::new(settings.clone(), &lattice.lattice, timeout))
            }
            (Some(_), None) => return None, // its nkey is already reported
            (None, _) => {
                let max = transport::MESSAGE_BYTES_MAX;
                let sockets = match (spec.pin, self.key.clone()) {
                    (Some(pin), Some(key)) => net::Sockets::secure(max, Secure { key, pin }),
                    _ => net::Sockets::new(max),
                };
                let addresses = spec.addresses.clone();
                Arc::new(Peer::new(name, addresses, Arc::new(sockets), spec.config))
            }
        };
        self.channels.insert(name.to_owned(), Arc::clone(&channel));
        Some(channel)
    }
}

/// Reads every capability file a remote link presents; one that cannot be read or is not a
/// capability is a problem at that link's key.
fn read_capabilities(
    manifest: &Manifest,
    problems: &mut Vec<(String, Problem)>,
) -> BTreeMap<PathBuf, Bytes> {
    let mut capabilities = BTreeMap::new();
    for (name, instance) in &manifest.instances {
        for (interface, link) in &instance.links {
            let Link::Remote {
                capability: Some(file),
                ..
            } = link
            else {
                continue;
            };
            if capabilities.contains_key(file) {
                continue;
            }
            match capability::load(file) {
                Ok(bytes) => {
                    capabilities.insert(file.clone(), bytes);
                }
                Err(error) => {
                    let key = format!("instances.{name}.links.\"{interface}\"");
                    let message = error.to_string();
                    problems.push((key, Problem::Capability { message }));
                }
            }
        }
    }
    capabilities
}

/// Each guard an instance names must run an app that exports the guard's check.
fn check_guards(
    runtime: &Runtime,
    manifest: &Manifest,
    app_of: impl Fn(&str) -> Option<AppId>,
    problems: &mut Vec<(String, Problem)>,
) {
    for (name, instance) in &manifest.instances {
        let Some(guard) = &instance.guard else {
            continue;
        };
        let Some(app) = app_of(guard).and_then(|app| runtime.app(app).ok()) else {
            continue; // an unknown guard or a broken app is already reported
        };
        if app.export(guard::INTERFACE, guard::FUNCTION).is_none() {
            let instance = guard.clone();
            problems.push((
                format!("instances.{name}.export"),
                Problem::NotAGuard { instance },
            ));
        }
    }
}

/// Every routed instance's app exports an HTTP handler.
fn check_handlers(
    runtime: &Runtime,
    manifest: &Manifest,
    app_of: impl Fn(&str) -> Option<AppId>,
    problems: &mut Vec<(String, Problem)>,
) {
    for (prefix, name) in &manifest.http_routes {
        let Some(app) = app_of(name).and_then(|app| runtime.app(app).ok()) else {
            continue; // an unknown instance or a broken app is already reported
        };
        let exports = app.ledger.exports.keys();
        let handles = exports
            .filter(|interface| interface.starts_with(exorun_http::HANDLER))
            .any(|interface| app.export(interface, "handle").is_some());
        if !handles {
            let instance = name.clone();
            let key = format!("http.routes.\"{prefix}\"");
            problems.push((key, Problem::NotAHandler { instance }));
        }
    }
}

fn wasi_system(settings: &manifest::Wasi) -> Wasi {
    let mut wasi = Wasi::new();
    for (key, value) in &settings.env {
        wasi = wasi.env(key, value);
    }
    for arg in &settings.args {
        wasi = wasi.arg(arg);
    }
    for (host, guest, writable) in &settings.preopens {
        let access = if *writable {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        wasi = wasi.preopen(host, guest, access);
    }
    if settings.inherit_stdio {
        wasi = wasi.inherit_stdio();
    }
    wasi
}

/// The manifest key a link problem of instance `name` belongs to.
fn problem_key(name: &str, problem: &builder::Problem) -> String {
    let interface = match problem {
        builder::Problem::Unlinked { .. } => return format!("instances.{name}.links"),
        builder::Problem::NotImported { interface }
        | builder::Problem::UnknownProvider { interface, .. }
        | builder::Problem::NotProvided { interface }
        | builder::Problem::ResourcesOverLattice { interface }
        | builder::Problem::ResourcesPerCall { interface }
        | builder::Problem::Contract(
            ledger::Error::InterfaceNotFound { interface }
            | ledger::Error::MethodNotFound { interface, .. }
            | ledger::Error::SignatureMismatch { interface, .. },
        ) => interface,
    };
    format!("instances.{name}.links.\"{interface}\"")
}

/// Checks everything the manifest names and makes its providers (`meta` is the
/// `exorun:host/meta` system an instance marked trusted links); every problem at once.
pub(crate) async fn check(
    manifest: Manifest,
    meta: Arc<dyn SystemComponent>,
) -> Result<Checked, Error> {
    let runtime = Runtime::new()?;
    let mut problems = manifest.problems.clone();
    let capabilities = read_capabilities(&manifest, &mut problems);
    // An instance with a problem of its own already is not linked too (that would only
    // report its broken links a second time).
    let troubled: Vec<String> = problems
        .iter()
        .filter_map(|(key, _)| key.strip_prefix("instances."))
        .map(str::to_owned)
        .collect();
    let key = node_key(&manifest, &mut problems);
    let lattices = lattice_settings(&manifest, &mut problems);
    let apps = compile_apps(&runtime, &manifest, &mut problems);
    let stores = open_stores(&manifest, &lattices, &mut problems).await;
    let app_of = |instance: &str| {
        let app = &manifest.instances.get(instance)?.app;
        apps.get(app).copied()
    };
    check_guards(&runtime, &manifest, app_of, &mut problems);
    check_handlers(&runtime, &manifest, app_of, &mut problems);
    let mut providers = Providers {
        logging: Arc::new(Logging::new()),
        caller: Arc::new(Caller),
        capabilities,
        stores,
        store_systems: BTreeMap::new(),
        channels: BTreeMap::new(),
        key: key.clone(),
        lattices,
        peers: manifest.peers.clone(),
        meta,
    };
    let shared = (&runtime, &manifest, troubled.as_slice());
    let builders = check_all(shared, &apps, &mut providers, app_of, &mut problems)?;
    if !problems.is_empty() {
        let path = manifest.path.display().to_string();
        return Err(manifest::Error::Invalid { path, problems }.into());
    }
    Ok(Checked {
        runtime,
        builders,
        key,
        composer: Composer {
            providers,
            apps,
            manifest,
        },
    })
}

/// A manifest whose every link held: its runtime, its apps compiled, its providers made.
pub(crate) struct Checked {
    pub(crate) runtime: Arc<Runtime>,
    builders: Vec<(String, builder::Checked)>,
    /// This runtime's node key, if the manifest named one.
    pub(crate) key: Option<Arc<NodeKey>>,
    /// What starts new instances later, with the same providers.
    pub(crate) composer: Composer,
}

impl Checked {
    /// Instantiates every checked instance, in manifest order, then exports those the manifest
    /// exports; each instance by its manifest name, and the exports.
    pub(crate) async fn start(
        &mut self,
    ) -> Result<(BTreeMap<String, InstanceHandle>, Arc<Exports>), Error> {
        let builders = std::mem::take(&mut self.builders);
        start_all(&self.runtime, &self.composer.manifest, builders).await
    }
}

/// Links every instance not already troubled and checks it; a link that does not hold is a
/// problem at its key.
fn check_all(
    (runtime, manifest, troubled): (&Arc<Runtime>, &Manifest, &[String]),
    apps: &BTreeMap<String, AppId>,
    providers: &mut Providers,
    app_of: impl Fn(&str) -> Option<AppId> + Copy,
    problems: &mut Vec<(String, Problem)>,
) -> Result<Vec<(String, builder::Checked)>, Error> {
    let mut builders = Vec::new();
    for (name, instance) in &manifest.instances {
        let Some(app) = apps.get(&instance.app) else {
            continue; // an unknown or broken app is already reported
        };
        let own_key = |key: &String| key == name || key.starts_with(&format!("{name}."));
        if troubled.iter().any(own_key) {
            continue;
        }
        if let Some(problem) = per_call_mistake(runtime, *app, name, manifest) {
            problems.push((format!("instances.{name}.replicas"), problem));
            continue;
        }
        let builder = InstanceBuilder::new(runtime, *app)
            .map_err(|source| instantiate_error(manifest, name, source))?;
        let builder = link_all(builder, name, instance, providers, app_of);
        let found = match builder.checked() {
            Ok(checked) => {
                builders.push((name.clone(), checked));
                continue;
            }
            Err(builder::Error::Refused { problems, .. }) => problems,
            Err(error) => return Err(instantiate_error(manifest, name, error)),
        };
        let keyed = found.into_iter().map(|problem| {
            let key = problem_key(name, &problem);
            (key, Problem::Link(problem))
        });
        problems.extend(keyed);
    }
    Ok(builders)
}

/// Instantiates every checked instance, in manifest order, then exports those the manifest
/// exports (a guard is running by then, wherever it comes in the order).
async fn start_all(
    runtime: &Arc<Runtime>,
    manifest: &Manifest,
    builders: Vec<(String, builder::Checked)>,
) -> Result<(BTreeMap<String, InstanceHandle>, Arc<Exports>), Error> {
    let exports = Exports::new(Arc::clone(runtime));
    let mut instances = BTreeMap::new();
    for (name, builder) in builders {
        let started = builder.instantiate().await;
        let handle = started.map_err(|source| instantiate_error(manifest, &name, source))?;
        instances.insert(name, handle);
    }
    for name in instances.keys() {
        let Some(instance) = manifest.instances.get(name) else {
            continue;
        };
        let Some(allow) = instance.export.clone() else {
            continue;
        };
        match &instance.guard {
            Some(guard) => exports.export_guarded(name, allow, guard)?,
            None => exports.export_allowing(name, allow)?,
        }
    }
    Ok((instances, exports))
}

/// An instance that runs per call while it hands out resources to someone (it is exported,
/// or another instance links to one of its interfaces that carry resources): a handle would
/// outlive the instance that made it.
fn per_call_mistake(
    runtime: &Runtime,
    app: AppId,
    name: &str,
    manifest: &Manifest,
) -> Option<Problem> {
    let instance = manifest.instances.get(name)?;
    if !matches!(instance.replicas, Replicas::PerCall { .. }) {
        return None;
    }
    let ledger = runtime.app(app).ok()?.ledger;
    let linked_here = |interface: &str| {
        manifest.instances.values().any(|other| {
            let link = other.links.get(interface);
            matches!(link, Some(Link::Named { instance }) if instance == name)
        })
    };
    let mut handing_out = ledger
        .exports
        .values()
        .filter(|interface| builder::carries_resources(interface));
    let reached =
        handing_out.find(|interface| instance.export.is_some() || linked_here(&interface.name))?;
    let interface = reached.name.clone();
    Some(Problem::Link(builder::Problem::ResourcesPerCall {
        interface,
    }))
}

/// Reads the node key the manifest (or `--key`) names; a secure peer without one, or a key
/// file that cannot be used, is a problem.
fn node_key(manifest: &Manifest, problems: &mut Vec<(String, Problem)>) -> Option<Arc<NodeKey>> {
    let Some(path) = &manifest.key else {
        for (name, peer) in &manifest.peers {
            if peer.pin.is_some() {
                problems.push((format!("peers.{name}"), Problem::NoNodeKey));
            }
        }
        return None;
    };
    match NodeKey::read(path) {
        Ok(key) => Some(Arc::new(key)),
        Err(error) => {
            problems.push(("key".to_owned(), Problem::Key(error)));
            None
        }
    }
}

/// Opens every store named under `[stores]`, each as the kv system serving it; one that cannot
/// be opened (a corrupt or locked file, a NATS system that does not answer) is a problem at its
/// key. Stores a link names but `[stores]` does not are made in memory as links ask.
async fn open_stores(
    manifest: &Manifest,
    lattices: &BTreeMap<String, nats::Settings>,
    problems: &mut Vec<(String, Problem)>,
) -> BTreeMap<String, kv::Store> {
    let mut stores = BTreeMap::new();
    for (name, store) in &manifest.stores {
        let opened = match store {
            manifest::Store::Durable { path } => kv::Store::open(path).await,
            manifest::Store::JetStream { peer, bucket } => {
                let Some(settings) = lattices.get(peer) else {
                    continue; // the peer's own problem is reported at its key
                };
                match nats::client(settings).await {
                    Ok(client) => kv::Store::jetstream(client, bucket).await,
                    Err(error) => Err(kv::Error::Open {
                        store: format!("JetStream bucket {bucket}"),
                        message: error.to_string(),
                    }),
                }
            }
        };
        match opened {
            Ok(store) => {
                stores.insert(name.clone(), store);
            }
            Err(error) => {
                let message = error.to_string();
                problems.push((format!("stores.{name}"), Problem::Store { message }));
            }
        }
    }
    stores
}

/// Compiles every app; a broken one is a problem at its key.
fn compile_apps(
    runtime: &Runtime,
    manifest: &Manifest,
    problems: &mut Vec<(String, Problem)>,
) -> BTreeMap<String, AppId> {
    let mut apps = BTreeMap::new();
    let reported: Vec<String> = problems.iter().map(|(key, _)| key.clone()).collect();
    for (name, path) in &manifest.apps {
        let key = format!("apps.{name}");
        if reported.contains(&key) {
            continue; // its file is already reported missing or unusable
        }
        match runtime.add_app_file(name, path) {
            Ok(id) => {
                apps.insert(name.clone(), id);
            }
            Err(error) => {
                let message = error.to_string();
                problems.push((key, Problem::Component { message }));
            }
        }
    }
    apps
}

/// Names the instance, sets its limits and links each import as the manifest says (`wasi:*`
/// last, so it fills only what is not linked otherwise).
fn link_all(
    mut builder: InstanceBuilder,
    name: &str,
    instance: &manifest::Instance,
    providers: &mut Providers,
    app_of: impl Fn(&str) -> Option<AppId> + Copy,
) -> InstanceBuilder {
    builder = builder
        .name(name)
        .limits(instance.limits)
        .replicas(instance.replicas)
        .restart(instance.restart);
    let own = Own {
        wasi: Arc::new(wasi_system(&instance.wasi)),
        config: Arc::new(Config::new(instance.config.clone())),
        http: Arc::new(http_system(instance)),
    };
    for (interface, link) in &instance.links {
        if interface == manifest::WASI_WILDCARD {
            continue;
        }
        let Some(linkable) = providers.linkable(link, &own, app_of) else {
            continue; // the target's app (or capability file) is already reported
        };
        builder = builder.link(interface, linkable);
    }
    // One `wasi:keyvalue` interface linked to a store links its siblings to the same store.
    for link in instance.links.values() {
        if let Link::KeyValue { store } = link {
            builder = builder.system(&providers.store_system(store, true));
        }
    }
    // A routed instance's `wasi:http` and `wasi:io` need no line of their own.
    if instance.routed {
        builder = builder.system(&own.http);
    }
    if instance.links.contains_key(manifest::WASI_WILDCARD) {
        builder = builder
            .system(&own.wasi)
            .system(&own.config)
            .system(&own.http)
            .system(&providers.store_system("default", true));
    }
    builder
}

/// The instance's HTTP system: outgoing requests allowed to what its `system = "http"` link
/// names (nothing when it has none).
fn http_system(instance: &manifest::Instance) -> exorun_systems::http::Http {
    let allow = instance.links.values().find_map(|link| {
        let Link::Http { allow } = link else {
            return None;
        };
        Some(allow.as_slice())
    });
    // Checked with the manifest: a list that does not parse never gets here.
    exorun_systems::http::Http::new(allow.unwrap_or_default()).unwrap_or_default()
}

fn instantiate_error(manifest: &Manifest, instance: &str, source: builder::Error) -> Error {
    Error::Instantiate {
        path: manifest.path.display().to_string(),
        instance: instance.to_owned(),
        source,
    }
}
