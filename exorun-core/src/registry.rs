//! The runtime registry: apps (compiled components and their ledgers), peers (shared clients
//! from exorun-transport) and instances, each under a typed id from one atomic counter, in
//! `DashMap`s (no global lock). Instances may have a unique human name so remote callers can
//! address them. Unknown ids are `NotFound`; bytes that are not a valid component are
//! `InvalidComponent`, never a panic.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use exorun_transport::client::Client;
use wasmtime::Store;
use wasmtime::component::Component;
use wasmtime::component::Linker;

use crate::context::ContextBuilder;
use crate::context::ExorunCtx;
use crate::engine;
use crate::instance;
use crate::instance::InstanceHandle;
use crate::instance::InstanceId;
use crate::ledger::Ledger;
use crate::limits;

/// The id of a registered app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(pub u64);

/// The id of a registered peer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// What the registry can refuse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine could not be created.
    #[error("engine: {0}")]
    Engine(#[from] engine::Error),
    /// The bytes are not a valid component.
    #[error("app `{app}` is not a valid component: {message}")]
    InvalidComponent { app: String, message: String },
    /// The component file could not be read.
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    /// No app, peer or instance has that id or name.
    #[error("{what} not found")]
    NotFound { what: String },
    /// Another instance already has that name.
    #[error("an instance named `{name}` already exists")]
    NameTaken { name: String },
    /// Instantiation failed (a missing import, a trap in a start function, a limit).
    #[error("cannot instantiate `{app}`: {source}")]
    Instantiate {
        app: String,
        source: instance::Error,
    },
}

/// A compiled component and what it imports and exports.
#[derive(Clone)]
pub struct App {
    /// Its id.
    pub id: AppId,
    /// The name it was registered under.
    pub name: String,
    /// The compiled component.
    pub component: Component,
    /// Its interfaces, functions and signatures.
    pub ledger: Arc<Ledger>,
}

/// One exorun runtime: an engine and everything registered on it.
pub struct Runtime {
    engine: wasmtime::Engine,
    next_id: AtomicU64,
    apps: DashMap<AppId, App>,
    peers: DashMap<PeerId, Arc<Client>>,
    instances: DashMap<InstanceId, InstanceHandle>,
    names: DashMap<String, InstanceId>,
}

impl Runtime {
    /// A new runtime with its own engine.
    pub fn new() -> Result<Arc<Self>, Error> {
        Ok(Arc::new(Self {
            engine: engine::new()?,
            next_id: AtomicU64::new(1),
            apps: DashMap::new(),
            peers: DashMap::new(),
            instances: DashMap::new(),
            names: DashMap::new(),
        }))
    }

    /// The runtime's engine.
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// Compiles and registers a component.
    pub fn add_app(&self, name: &str, bytes: &[u8]) -> Result<AppId, Error> {
        let component =
            Component::new(&self.engine, bytes).map_err(|error| Error::InvalidComponent {
                app: name.to_owned(),
                message: format!("{error:#}"),
            })?;
        let ledger = Arc::new(Ledger::of(&self.engine, &component));
        let id = AppId(self.next());
        self.apps.insert(
            id,
            App {
                id,
                name: name.to_owned(),
                component,
                ledger,
            },
        );
        Ok(id)
    }

    /// Reads, compiles and registers a component file.
    pub fn add_app_file(&self, name: &str, path: &Path) -> Result<AppId, Error> {
        let bytes = std::fs::read(path).map_err(|error| Error::Read {
            path: path.display().to_string(),
            message: error.to_string(),
        })?;
        self.add_app(name, &bytes)
    }

    /// A registered app.
    pub fn app(&self, id: AppId) -> Result<App, Error> {
        let app = self
            .apps
            .get(&id)
            .ok_or_else(|| not_found(format!("app #{}", id.0)))?;
        Ok(app.clone())
    }

    /// Registers a connection to a peer runtime.
    pub fn add_peer(&self, client: Arc<Client>) -> PeerId {
        let id = PeerId(self.next());
        self.peers.insert(id, client);
        id
    }

    /// A registered peer's client.
    pub fn peer(&self, id: PeerId) -> Result<Arc<Client>, Error> {
        let peer = self
            .peers
            .get(&id)
            .ok_or_else(|| not_found(format!("peer #{}", id.0)))?;
        Ok(Arc::clone(&peer))
    }

    /// Instantiates `app` with `linker`, a context staged by `builder` and `limits`, and
    /// registers the instance (under `name`, if given).
    pub async fn instantiate(
        &self,
        app: AppId,
        linker: &Linker<ExorunCtx>,
        builder: ContextBuilder,
        limits: limits::Limits,
        name: Option<&str>,
    ) -> Result<InstanceHandle, Error> {
        let app = self.app(app)?;
        let id = InstanceId(self.next());
        if let Some(name) = name {
            self.claim_name(name, id)?;
        }
        let instantiated = self.create(&app, linker, builder, limits, id, name).await;
        let handle = match instantiated {
            Ok(handle) => handle,
            Err(error) => {
                if let Some(name) = name {
                    self.names.remove(name);
                }
                return Err(error);
            }
        };
        self.instances.insert(id, handle.clone());
        Ok(handle)
    }

    /// A running instance.
    pub fn instance(&self, id: InstanceId) -> Result<InstanceHandle, Error> {
        let handle = self
            .instances
            .get(&id)
            .ok_or_else(|| not_found(id.to_string()))?;
        Ok(handle.clone())
    }

    /// A running instance by name.
    pub fn instance_named(&self, name: &str) -> Result<InstanceHandle, Error> {
        let id = *self
            .names
            .get(name)
            .ok_or_else(|| not_found(format!("instance `{name}`")))?;
        self.instance(id)
    }

    /// Removes and stops an instance: later calls fail `NotFound`; calls in flight finish.
    pub fn remove_instance(&self, id: InstanceId) -> Result<(), Error> {
        let (_, handle) = self
            .instances
            .remove(&id)
            .ok_or_else(|| not_found(id.to_string()))?;
        if let Some(name) = handle.name() {
            self.names.remove(name);
        }
        handle.remove();
        Ok(())
    }

    /// Numbers of registered apps, peers and instances.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.apps.len(), self.peers.len(), self.instances.len())
    }

    fn next(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn claim_name(&self, name: &str, id: InstanceId) -> Result<(), Error> {
        match self.names.entry(name.to_owned()) {
            Entry::Occupied(_) => Err(Error::NameTaken {
                name: name.to_owned(),
            }),
            Entry::Vacant(slot) => {
                slot.insert(id);
                Ok(())
            }
        }
    }

    async fn create(
        &self,
        app: &App,
        linker: &Linker<ExorunCtx>,
        builder: ContextBuilder,
        limits: limits::Limits,
        id: InstanceId,
        name: Option<&str>,
    ) -> Result<InstanceHandle, Error> {
        let failed = |error: wasmtime::Error| Error::Instantiate {
            app: app.name.clone(),
            source: instance::classify(&error),
        };
        let mut store = Store::new(&self.engine, builder.build(&limits));
        store.limiter(|ctx| ctx.limiter());
        store.set_fuel(limits.fuel_per_call).map_err(failed)?;
        store
            .fuel_async_yield_interval(Some(limits::FUEL_YIELD_INTERVAL))
            .map_err(failed)?;
        let instance = linker
            .instantiate_async(&mut store, &app.component)
            .await
            .map_err(failed)?;
        Ok(InstanceHandle::new(id, name, limits, store, instance))
    }
}

fn not_found(what: String) -> Error {
    Error::NotFound { what }
}
