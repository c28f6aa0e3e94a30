//! The runtime registry: apps (`app::App`: compiled components, their ledgers and their
//! exports resolved once) and instances, each under a typed id from one atomic counter, in `DashMap`s (no global
//! lock). Instances may have a unique human name so remote callers can
//! address them. Unknown ids are `NotFound`; bytes that are not a valid component are
//! `InvalidComponent`, never a panic.
//!
//! Pre-instantiation: `prepare` resolves an app's imports against a linker once (wasmtime's
//! `InstancePre`: type checks and import lookups done); `instantiate_prepared` then only builds
//! a store and runs the component's start code, so restarting a failed instance or running many
//! copies of one composition skips the linking work. The `Prepared` value is the cache: it is
//! tied to one linker, whose host functions may capture specific local or remote targets, so
//! the registry cannot share one per app.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use wasmtime::component::Component;
use wasmtime::component::InstancePre;
use wasmtime::component::Linker;

use crate::app::App;
use crate::app::AppId;
use crate::context::ContextBuilder;
use crate::context::ExorunCtx;
use crate::engine;
use crate::instance;
use crate::instance::InstanceHandle;
use crate::instance::InstanceId;
use crate::limits;
use crate::supervision::Spec;

/// Largest component file read by default: 256 MiB is many times any real component (the test
/// apps are 17-60 KB; big ones are a few MiB) and bounds what a wrong path can make us hold.
pub const COMPONENT_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// What the registry can refuse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine could not be created.
    #[error("engine: {0}")]
    Engine(#[from] engine::Error),
    /// The bytes are not a valid component.
    #[error("app `{app}` is not a valid component: {message}")]
    InvalidComponent {
        /// The app, by its registered name.
        app: String,
        /// What happened, in words.
        message: String,
    },
    /// The path is not a regular file (a directory, a device such as `/dev/zero`, a FIFO).
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The file's path.
        path: String,
    },
    /// The component file is larger than the limit.
    #[error("{path} is {file_bytes} bytes, over the limit of {max}")]
    TooLarge {
        /// The file's path.
        path: String,
        /// Its size (or what was read before the limit), in bytes.
        file_bytes: u64,
        /// The limit, in bytes.
        max: u64,
    },
    /// The component file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file's path.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// No app or instance has that id or name.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// Another instance already has that name.
    #[error("an instance named `{name}` already exists")]
    NameTaken {
        /// The name concerned.
        name: String,
    },
    /// An app that a running instance still runs.
    #[error("the app is in use by instance {instance}")]
    InUse {
        /// The instance, by its id.
        instance: String,
    },
    /// Instantiation failed (a missing import, a trap in a start function, a limit).
    #[error("cannot instantiate `{app}`: {source}")]
    Instantiate {
        /// The app, by its registered name.
        app: String,

        /// The underlying error.
        source: instance::Error,
    },
}

/// An app with its imports resolved against one linker, ready to instantiate many times.
#[derive(Clone)]
pub struct Prepared {
    app: App,
    pre: InstancePre<ExorunCtx>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The app this was prepared from.
    pub fn app(&self) -> &App {
        &self.app
    }
}

/// One exorun runtime: an engine and everything registered on it.
pub struct Runtime {
    id: u64,
    engine: wasmtime::Engine,
    next_id: AtomicU64,
    apps: DashMap<AppId, App>,
    instances: DashMap<InstanceId, InstanceHandle>,
    names: DashMap<String, InstanceId>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("id", &self.id)
            .field("apps", &self.apps.len())
            .field("instances", &self.instances.len())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A new runtime with its own engine.
    pub fn new() -> Result<Arc<Self>, Error> {
        Ok(Arc::new(Self {
            id: runtime_id(),
            engine: engine::new()?,
            next_id: AtomicU64::new(1),
            apps: DashMap::new(),
            instances: DashMap::new(),
            names: DashMap::new(),
        }))
    }

    /// This runtime's id: distinct from every other runtime's in this process, and random
    /// across processes, so call chains that cross runtimes name each instance.
    pub fn id(&self) -> u64 {
        self.id
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
        let id = AppId(self.next());
        self.apps.insert(id, App::new(id, name, component));
        Ok(id)
    }

    /// Reads, compiles and registers a component file (a regular file of at most
    /// `COMPONENT_BYTES_MAX`; see `read_component`).
    pub fn add_app_file(&self, name: &str, path: &Path) -> Result<AppId, Error> {
        let bytes = read_component(path, COMPONENT_BYTES_MAX)?;
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

    /// Resolves `app`'s imports against `linker` once, for any number of instances.
    pub fn prepare(&self, app: AppId, linker: &Linker<ExorunCtx>) -> Result<Prepared, Error> {
        let app = self.app(app)?;
        let pre = linker
            .instantiate_pre(&app.component)
            .map_err(|error| Error::Instantiate {
                app: app.name.clone(),
                source: instance::classify(error),
            })?;
        Ok(Prepared { app, pre })
    }

    /// Starts a supervised instance of a prepared app as `spec` says: its replicas are made
    /// now (for per-call instances, one is made and dropped, so start code that fails is
    /// reported here), each with a context `spec.configure` stages; failed replicas are
    /// replaced as `spec.restart` says. Registered under `spec.name`, if given.
    pub async fn start(&self, prepared: &Prepared, spec: Spec) -> Result<InstanceHandle, Error> {
        let name = spec.name.clone();
        let engine = self.engine.clone();
        let pre = prepared.pre.clone();
        let make = |identity| InstanceHandle::start(identity, engine, pre, spec);
        self.register(prepared, name.as_deref(), make).await
    }

    /// Instantiates a prepared app once with the context `builder` stages and `limits`, and
    /// registers it (under `name`, if given). That context cannot be staged again, so the
    /// instance is never restarted: after a failed call it stays `Failed` (use `start` with a
    /// `Spec` for a supervised instance).
    pub async fn instantiate_prepared(
        &self,
        prepared: &Prepared,
        builder: ContextBuilder,
        limits: limits::Limits,
        name: Option<&str>,
    ) -> Result<InstanceHandle, Error> {
        let engine = self.engine.clone();
        let pre = prepared.pre.clone();
        let make = |identity| InstanceHandle::start_once(identity, engine, pre, builder, limits);
        self.register(prepared, name, make).await
    }

    /// Claims the name, makes the instance, and registers its handle (freeing the name if
    /// making failed).
    async fn register<F>(
        &self,
        prepared: &Prepared,
        name: Option<&str>,
        make: impl FnOnce(instance::Identity) -> F,
    ) -> Result<InstanceHandle, Error>
    where
        F: Future<Output = Result<InstanceHandle, instance::Error>>,
    {
        let id = InstanceId(self.next());
        if let Some(name) = name {
            self.claim_name(name, id)?;
        }
        let identity = instance::Identity {
            id,
            runtime: self.id,
            name: name.map(str::to_owned),
            app: prepared.app.clone(),
        };
        let handle = match make(identity).await {
            Ok(handle) => handle,
            Err(source) => {
                if let Some(name) = name {
                    self.names.remove(name);
                }
                let app = prepared.app.name.clone();
                return Err(Error::Instantiate { app, source });
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

    /// Every running instance, by id order.
    pub fn instances(&self) -> Vec<InstanceHandle> {
        let mut handles: Vec<InstanceHandle> = self
            .instances
            .iter()
            .map(|entry| entry.value().clone())
            .collect();
        handles.sort_by_key(InstanceHandle::id);
        handles
    }

    /// Every registered app, by id order.
    pub fn apps(&self) -> Vec<App> {
        let mut apps: Vec<App> = self
            .apps
            .iter()
            .map(|entry| entry.value().clone())
            .collect();
        apps.sort_by_key(|app| app.id);
        apps
    }

    /// Forgets an app no running instance uses (`InUse` names one that does).
    pub fn remove_app(&self, id: AppId) -> Result<(), Error> {
        let user = self
            .instances
            .iter()
            .find(|entry| entry.value().app().id == id);
        if let Some(user) = user {
            let instance = user.value().id().to_string();
            return Err(Error::InUse { instance });
        }
        self.apps
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| not_found(format!("app #{}", id.0)))
    }

    /// Numbers of registered apps and running instances.
    pub fn counts(&self) -> (usize, usize) {
        (self.apps.len(), self.instances.len())
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
}

/// Checks, without reading it, that `path` is a regular file of at most `bytes_max` bytes;
/// returns its size.
pub fn check_component_file(path: &Path, bytes_max: u64) -> Result<u64, Error> {
    let metadata = std::fs::metadata(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    if !metadata.is_file() {
        return Err(Error::NotAFile {
            path: path.display().to_string(),
        });
    }
    if metadata.len() > bytes_max {
        return Err(Error::TooLarge {
            path: path.display().to_string(),
            file_bytes: metadata.len(),
            max: bytes_max,
        });
    }
    Ok(metadata.len())
}

/// Reads a component file: only a regular file (a device or FIFO could feed or block us
/// forever), of at most `bytes_max` bytes, checked before reading and again while reading (the
/// file may grow in between).
pub fn read_component(path: &Path, bytes_max: u64) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let shown = || path.display().to_string();
    let read_error = |source: std::io::Error| Error::Read {
        path: shown(),
        source,
    };
    let file_bytes = check_component_file(path, bytes_max)?;
    let file = std::fs::File::open(path).map_err(read_error)?;
    // The same check on what was opened, in case the path changed in between.
    if !file.metadata().map_err(read_error)?.is_file() {
        return Err(Error::NotAFile { path: shown() });
    }
    let too_large = |file_bytes| Error::TooLarge {
        path: shown(),
        file_bytes,
        max: bytes_max,
    };
    let mut bytes = Vec::with_capacity(usize::try_from(file_bytes).unwrap_or(0));
    let limit = bytes_max.saturating_add(1);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > bytes_max {
        return Err(too_large(read));
    }
    Ok(bytes)
}

/// A fresh runtime id: a random per-process base plus a process-wide counter, so ids never repeat
/// within a process and almost surely differ across processes.
fn runtime_id() -> u64 {
    use std::hash::BuildHasher;
    use std::hash::Hasher;
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static CREATED: AtomicU64 = AtomicU64::new(0);
    let base = BASE.get_or_init(|| {
        // `RandomState` is keyed from the OS's randomness; the pid and time only add to it.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        hasher.write_u128(since_epoch.map_or(0, |elapsed| elapsed.as_nanos()));
        hasher.finish()
    });
    base.wrapping_add(CREATED.fetch_add(1, Ordering::Relaxed))
}

fn not_found(what: String) -> Error {
    Error::NotFound { what }
}
