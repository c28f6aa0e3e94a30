//! `exorun:host/meta`: the privileged system through which a running runtime is changed (apps
//! added and removed, instances started and stopped, what runs listed). It holds the mechanism
//! only: whoever is linked to it decides who may do what (the `meta` app, with `auth`). A
//! manifest links it only to an instance it marks `trusted = ["meta"]`; an instance started
//! through it can never be trusted, and it is never exported.
//!
//! - Apps: at most `APPS_MAX` added through it, each at most `COMPONENT_BYTES_MAX` bytes,
//!   compiled on the blocking pool (never on the async threads); a bad component is refused
//!   with the compiler's reason. Names are 1 to `NAME_BYTES_MAX` letters, digits, `-` and `_`
//!   (they name files in the state directory).
//! - Instances: started from a manifest's instance table, every link checked first and every
//!   problem reported at once; at most `STARTED_MAX` at a time; stopping one unexports it at
//!   once and lets calls in flight finish for at most `STOP_TIMEOUT`.
//! - State: with a state directory (`exorun serve --state DIR`), what was added and started is
//!   written there (each file written whole, synced and renamed into place) and started again
//!   when the runtime starts (`Manager::restore`). Without one it lives as long as the process.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::PoisonError;
use std::time::Duration;

use exorun_bind::serve::Exports;
use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::instance::InstanceHandle;
use exorun_core::runtime::Runtime;
use exorun_core::supervision::Replicas;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use wasmtime::component::ComponentType;
use wasmtime::component::Linker;
use wasmtime::component::Lower;

use exorun_core::runtime;

use crate::compose::Composer;

/// The interface this system provides.
pub const INTERFACE: &str = "exorun:host/meta";
/// Largest component added through meta (a deploy arrives in one call frame, 16 MiB at most).
pub const COMPONENT_BYTES_MAX: usize = 16 << 20;
/// Apps added through meta at once.
pub const APPS_MAX: usize = 256;
/// Instances started through meta at once.
pub const STARTED_MAX: usize = 256;
/// Longest app or instance name.
pub const NAME_BYTES_MAX: usize = 64;
/// How long a stopped instance's calls in flight may run on.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest instance settings file restored from a state directory (a manifest's instance
/// table: a few hundred bytes; 64 KiB leaves room for long configurations).
pub const SETTINGS_BYTES_MAX: u64 = 64 * 1024;

/// Why the manager refused a change, or could not keep or restore its state. A guest linked
/// to `exorun:host/meta` sees the same words as its function's `error`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name that is not 1 to `NAME_BYTES_MAX` letters, digits, `-` and `_`.
    #[error("`{name}` is not a name: 1 to {NAME_BYTES_MAX} letters, digits, `-` and `_`")]
    BadName {
        /// The name given.
        name: String,
    },
    /// A component larger than meta takes.
    #[error("a component of {component_bytes} bytes is over the {COMPONENT_BYTES_MAX} meta takes")]
    TooLarge {
        /// Its size, in bytes.
        component_bytes: usize,
    },
    /// An app of that name exists already.
    #[error("an app named `{name}` already exists")]
    AppExists {
        /// The name.
        name: String,
    },
    /// `APPS_MAX` apps were added already.
    #[error("meta holds {APPS_MAX} apps already")]
    TooManyApps,
    /// `STARTED_MAX` instances run already.
    #[error("meta runs {STARTED_MAX} instances already")]
    TooManyInstances,
    /// The compiler's task failed (it panicked, or the runtime is shutting down).
    #[error("the compiler failed: {0}")]
    Compiler(#[source] tokio::task::JoinError),
    /// The runtime refused: a bad component, an app in use, a name taken.
    #[error(transparent)]
    Runtime(#[from] runtime::Error),
    /// An instance's settings or links did not pass the checks: every problem, each as
    /// `instances.NAME.KEY: problem`.
    #[error("{}", problems.join("\n"))]
    Refused {
        /// The problems.
        problems: Vec<String>,
    },
    /// No instance of that name was started through meta.
    #[error("no instance `{name}` was started through meta")]
    NotStarted {
        /// The name.
        name: String,
    },
    /// No app of that name was added through meta (or none is registered).
    #[error("no app `{name}` was added through meta")]
    NotAdded {
        /// The name.
        name: String,
    },
    /// A change could not be kept in (or taken out of) the state directory.
    #[error("cannot keep {relative} in the state directory: {source}")]
    Keep {
        /// The file, within the state directory.
        relative: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory of the state directory could not be read or written.
    #[error("state directory {path}: {source}")]
    State {
        /// The file or directory.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Something saved could not be added or started again.
    #[error("state directory {path}: cannot restore `{name}`: {source}")]
    Restore {
        /// The directory.
        path: String,
        /// The app or instance.
        name: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
}

/// One instance, as `instances` lists it (`exorun:host/meta`'s `instance` record).
#[derive(ComponentType, Lower, Debug, Clone)]
#[component(record)]
pub struct Listed {
    name: String,
    app: String,
    exported: bool,
    replicas: u32,
    restarts: u64,
    state: String,
    calls: u64,
}

/// The meta system: the manager of its runtime, once the composition has started.
#[derive(Debug)]
pub struct Meta {
    manager: Arc<OnceLock<Arc<Manager>>>,
}

impl Meta {
    /// The system for the manager set in `manager` once it exists.
    pub fn new(manager: Arc<OnceLock<Arc<Manager>>>) -> Self {
        Self { manager }
    }
}

/// What a runtime is changed with: its registry, its exports, how it composes, what meta
/// started, and where that is kept.
pub struct Manager {
    runtime: Arc<Runtime>,
    exports: Arc<Exports>,
    composer: tokio::sync::Mutex<Composer>,
    added: Mutex<Vec<String>>,
    started: Mutex<BTreeMap<String, InstanceHandle>>,
    state: OnceLock<PathBuf>,
}

fn valid_name(name: &str) -> Result<(), Error> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || name.len() > NAME_BYTES_MAX || !name.chars().all(valid) {
        let name = name.to_owned();
        return Err(Error::BadName { name });
    }
    Ok(())
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("runtime", &self.runtime.id())
            .field("started", &self.started().len())
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// The manager of `runtime`, serving `exports`, composing with `composer`.
    pub(crate) fn new(
        runtime: &Arc<Runtime>,
        exports: &Arc<Exports>,
        composer: Composer,
    ) -> Arc<Self> {
        Arc::new(Self {
            runtime: Arc::clone(runtime),
            exports: Arc::clone(exports),
            composer: tokio::sync::Mutex::new(composer),
            added: Mutex::default(),
            started: Mutex::default(),
            state: OnceLock::new(),
        })
    }

    fn started(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, InstanceHandle>> {
        self.started.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn added(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.added.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The instance `name` that meta started, if it runs.
    pub fn instance(&self, name: &str) -> Option<InstanceHandle> {
        self.started().get(name).cloned()
    }

    /// The registered apps' names.
    pub async fn apps(&self) -> Vec<String> {
        self.composer.lock().await.apps().keys().cloned().collect()
    }

    /// The named instances that run, as meta lists them.
    pub async fn instances(&self) -> Vec<Listed> {
        let mut listed = Vec::new();
        let exported = self.exports.names();
        for handle in self.runtime.instances() {
            let Some(name) = handle.name().map(str::to_owned) else {
                continue;
            };
            let replicas = match handle.replicas() {
                Replicas::Fixed(count) => u32::try_from(count.get()).unwrap_or(u32::MAX),
                Replicas::PerCall { .. } => 0,
            };
            let state = match handle.failure().await {
                Some(failure) => format!("failed: {failure}"),
                None => "running".to_owned(),
            };
            listed.push(Listed {
                exported: exported.contains(&name),
                calls: self.exports.calls(&name),
                app: handle.app().name.clone(),
                restarts: handle.restarts(),
                replicas,
                state,
                name,
            });
        }
        listed
    }

    /// Compiles `component` (off the async threads) and registers it as app `name`.
    pub async fn add_app(&self, name: &str, component: Vec<u8>) -> Result<(), Error> {
        valid_name(name)?;
        if component.len() > COMPONENT_BYTES_MAX {
            let component_bytes = component.len();
            return Err(Error::TooLarge { component_bytes });
        }
        let mut composer = self.composer.lock().await;
        if composer.apps().contains_key(name) {
            let name = name.to_owned();
            return Err(Error::AppExists { name });
        }
        if self.added().len() >= APPS_MAX {
            return Err(Error::TooManyApps);
        }
        let (runtime, owned) = (Arc::clone(&self.runtime), name.to_owned());
        // The bytes go to the compiler and come back to be kept (no copy of up to 16 MiB).
        let compiled = tokio::task::spawn_blocking(move || {
            let app = runtime.add_app(&owned, &component);
            (app, component)
        })
        .await;
        let (compiled, component) = compiled.map_err(Error::Compiler)?;
        let app = compiled?;
        if let Err(error) = self.save(&format!("apps/{name}.wasm"), &component) {
            let _ = self.runtime.remove_app(app);
            return Err(error);
        }
        composer.add_app(name, app);
        self.added().push(name.to_owned());
        Ok(())
    }

    /// Starts instance `name` as `settings` says; its exported interfaces.
    pub async fn start(&self, name: &str, settings: &str) -> Result<Vec<String>, Error> {
        valid_name(name)?;
        // Checked under the lock every start takes, so two at once cannot both pass it.
        let mut composer = self.composer.lock().await;
        if self.started().len() >= STARTED_MAX {
            return Err(Error::TooManyInstances);
        }
        let deployed = self.started().keys().cloned().collect();
        let started = composer
            .start((&self.runtime, &self.exports), &deployed, name, settings)
            .await;
        let handle = started.map_err(|problems| Error::Refused { problems })?;
        if let Err(error) = self.save(&format!("instances/{name}.toml"), settings.as_bytes()) {
            self.exports.unexport(name);
            let _ = self.runtime.remove_instance(handle.id());
            return Err(error);
        }
        let exported = self.exports.names().contains(&name.to_owned());
        let interfaces = match exported {
            true => handle.ledger().exports.keys().cloned().collect(),
            false => Vec::new(),
        };
        self.started().insert(name.to_owned(), handle);
        drop(composer);
        Ok(interfaces)
    }

    /// Stops an instance meta started: unexported at once, its calls in flight let finish for
    /// at most `STOP_TIMEOUT`.
    pub async fn stop(&self, name: &str) -> Result<(), Error> {
        let Some(handle) = self.started().remove(name) else {
            let name = name.to_owned();
            return Err(Error::NotStarted { name });
        };
        self.exports.unexport(name);
        let _ = self.runtime.remove_instance(handle.id());
        if let Err(error) = self.forget(&format!("instances/{name}.toml")) {
            tracing::warn!(instance = name, %error, "stopped, but its state file remains");
        }
        if tokio::time::timeout(STOP_TIMEOUT, handle.retired())
            .await
            .is_err()
        {
            tracing::warn!(
                instance = name,
                "stopped, but its calls ran past the stop timeout"
            );
        }
        Ok(())
    }

    /// Forgets an app meta added, once no instance runs it.
    pub async fn remove_app(&self, name: &str) -> Result<(), Error> {
        let not_added = || Error::NotAdded {
            name: name.to_owned(),
        };
        if !self.added().iter().any(|added| added == name) {
            return Err(not_added());
        }
        let mut composer = self.composer.lock().await;
        let Some(&app) = composer.apps().get(name) else {
            return Err(not_added());
        };
        self.runtime.remove_app(app)?;
        composer.forget_app(name);
        self.added().retain(|added| added != name);
        self.forget(&format!("apps/{name}.wasm"))
    }

    /// Keeps what meta changes in `dir` from now on, after starting again what it holds.
    pub async fn restore(&self, dir: &Path) -> Result<(), Error> {
        for sub in ["apps", "instances"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|error| state_error(&path, error))?;
        }
        let apps = saved(&dir.join("apps"), "wasm").map_err(|e| state_error(dir, e))?;
        let instances = saved(&dir.join("instances"), "toml").map_err(|e| state_error(dir, e))?;
        for (name, path) in apps {
            // An app whose instance was never kept (a crash between the two) is dropped.
            if !instances.iter().any(|(instance, _)| *instance == name) {
                std::fs::remove_file(&path).map_err(|error| state_error(&path, error))?;
                continue;
            }
            // Checked as a component file is: a regular file of bounded size (a device such as
            // `/dev/zero` would never end, a FIFO would block the start for ever).
            let bytes = runtime::read_component(&path, component_bytes_max())
                .map_err(|error| restore_error(dir, &name, Error::Runtime(error)))?;
            self.add_app(&name, bytes)
                .await
                .map_err(|error| restore_error(dir, &name, error))?;
        }
        // In rounds: an instance may name another (a local link, a guard) that comes later in
        // name order; a round that starts nothing reports the first that could not start.
        let mut pending = instances;
        while !pending.is_empty() {
            let before = pending.len();
            let (waiting, failure) = self.restore_round(dir, pending).await?;
            if let Some(failure) = failure
                && waiting.len() == before
            {
                return Err(failure);
            }
            pending = waiting;
        }
        let _ = self.state.set(dir.to_owned());
        Ok(())
    }

    /// Starts each of `pending`; those that could not start yet, and the first one's reason.
    async fn restore_round(
        &self,
        dir: &Path,
        pending: Vec<(String, PathBuf)>,
    ) -> Result<(Vec<(String, PathBuf)>, Option<Error>), Error> {
        let mut waiting = Vec::new();
        let mut first_failure = None;
        for (name, path) in pending {
            let settings = read_settings(&path)
                .map_err(|error| restore_error(dir, &name, Error::Runtime(error)))?;
            let Err(error) = self.start(&name, &settings).await else {
                continue;
            };
            first_failure.get_or_insert_with(|| restore_error(dir, &name, error));
            waiting.push((name, path));
        }
        Ok((waiting, first_failure))
    }

    /// Writes `bytes` to `relative` in the state directory, whole or not at all.
    fn save(&self, relative: &str, bytes: &[u8]) -> Result<(), Error> {
        let Some(dir) = self.state.get() else {
            return Ok(());
        };
        write_whole(&dir.join(relative), bytes).map_err(|source| Error::Keep {
            relative: relative.to_owned(),
            source,
        })
    }

    fn forget(&self, relative: &str) -> Result<(), Error> {
        let Some(dir) = self.state.get() else {
            return Ok(());
        };
        let path = dir.join(relative);
        let removed = match std::fs::remove_file(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            removed => removed,
        };
        removed
            .and_then(|()| sync_parent(&path))
            .map_err(|source| Error::Keep {
                relative: relative.to_owned(),
                source,
            })
    }
}

fn state_error(path: &Path, source: std::io::Error) -> Error {
    Error::State {
        path: path.display().to_string(),
        source,
    }
}

fn restore_error(dir: &Path, name: &str, error: Error) -> Error {
    Error::Restore {
        path: dir.display().to_string(),
        name: name.to_owned(),
        source: Box::new(error),
    }
}

/// `COMPONENT_BYTES_MAX` as the runtime's file checks count.
fn component_bytes_max() -> u64 {
    u64::try_from(COMPONENT_BYTES_MAX).unwrap_or(u64::MAX)
}

/// An instance's saved settings: a regular file of at most `SETTINGS_BYTES_MAX` bytes, in
/// UTF-8 (checked before it is opened, as component files are).
fn read_settings(path: &Path) -> Result<String, runtime::Error> {
    let bytes = runtime::read_component(path, SETTINGS_BYTES_MAX)?;
    String::from_utf8(bytes).map_err(|error| runtime::Error::Read {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
    })
}

/// The files `NAME.EXTENSION` in `dir`, by name.
fn saved(dir: &Path, extension: &str) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|ext| ext.to_str()) != Some(extension) {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        if valid_name(name).is_ok() {
            found.push((name.to_owned(), path.clone()));
        }
    }
    found.sort();
    Ok(found)
}

/// Writes a temporary file beside `path`, syncs it, renames it over `path` and syncs the
/// directory: after a crash the file is the old one or the new one, never a part.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".partial");
    let temporary = PathBuf::from(temporary);
    // Never through a link: whatever is at the temporary path (a leftover, or a link planted
    // to make this write land elsewhere) is removed (unlinking removes a link, not its
    // target), and the file is made new (`O_CREAT | O_EXCL`, which follows no link): one
    // planted again in between fails the write rather than redirect it.
    match std::fs::remove_file(&temporary) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    std::fs::File::open(parent)?.sync_all()
}

impl SystemComponent for Meta {
    fn interfaces(&self) -> Vec<String> {
        vec![INTERFACE.to_owned()]
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        let define = |e: wasmtime::Error| system::define_error(INTERFACE, e);
        let mut instance = linker.instance(INTERFACE).map_err(define)?;
        let cell = Arc::clone(&self.manager);
        instance
            .func_wrap_async("apps", move |_, (): ()| {
                let cell = Arc::clone(&cell);
                Box::new(async move { Ok((manager(&cell)?.apps().await,)) })
            })
            .map_err(define)?;
        let cell = Arc::clone(&self.manager);
        instance
            .func_wrap_async("instances", move |_, (): ()| {
                let cell = Arc::clone(&cell);
                Box::new(async move { Ok((manager(&cell)?.instances().await,)) })
            })
            .map_err(define)?;
        let cell = Arc::clone(&self.manager);
        instance
            .func_wrap_async("add-app", move |_, (name, bytes): (String, Vec<u8>)| {
                let cell = Arc::clone(&cell);
                Box::new(async move { Ok((words(manager(&cell)?.add_app(&name, bytes).await),)) })
            })
            .map_err(define)?;
        let cell = Arc::clone(&self.manager);
        instance
            .func_wrap_async("start", move |_, (name, settings): (String, String)| {
                let cell = Arc::clone(&cell);
                Box::new(async move { Ok((words(manager(&cell)?.start(&name, &settings).await),)) })
            })
            .map_err(define)?;
        let cell = Arc::clone(&self.manager);
        instance
            .func_wrap_async("stop", move |_, (name,): (String,)| {
                let cell = Arc::clone(&cell);
                Box::new(async move { Ok((words(manager(&cell)?.stop(&name).await),)) })
            })
            .map_err(define)?;
        let cell = Arc::clone(&self.manager);
        instance
            .func_wrap_async("remove-app", move |_, (name,): (String,)| {
                let cell = Arc::clone(&cell);
                Box::new(async move { Ok((words(manager(&cell)?.remove_app(&name).await),)) })
            })
            .map_err(define)
    }

    fn configure(&self, _: &mut ContextBuilder) -> Result<(), system::Error> {
        Ok(())
    }
}

/// What a guest sees of an answer: its value, or the error's words.
fn words<T>(answer: Result<T, Error>) -> Result<T, String> {
    answer.map_err(|error| error.to_string())
}

/// The manager, or a trap if the composition has not finished starting.
fn manager(cell: &OnceLock<Arc<Manager>>) -> wasmtime::Result<Arc<Manager>> {
    let Some(manager) = cell.get() else {
        return Err(wasmtime::Error::msg("the runtime is still starting"));
    };
    Ok(Arc::clone(manager))
}
