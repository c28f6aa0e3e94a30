//! `InstanceHandle`: one running instance, its store behind an async mutex.
//!
//! Calls run one at a time on a store. Before taking the lock a call checks the call chain
//! (`chain`): if this instance is already on it (A -> B -> A through links), the inner call
//! fails with `Reentrant` instead of waiting for a lock its own caller holds. Waiting for the
//! lock is bounded (`Busy`). Each call gets fresh fuel. Errors are classified (`OutOfFuel`,
//! `OutOfMemory`, `Trapped`, `Rejected`, ...); an error that a host function raised and this
//! crate does not interpret (a link's own failure, say) is kept as raised in `Raised`, so the
//! layer that raised it reads it back exactly. After a call into the guest fails, wasmtime may
//! have left the instance mid-way, so it is marked failed and later calls get `Failed` (make a
//! new instance from its app to restart it). A call that never returns to us (its future was
//! dropped, or a host function under it panicked) releases the lock and leaves the instance
//! failed too.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use wasmtime::Store;
use wasmtime::Trap;
use wasmtime::WasmBacktrace;
use wasmtime::component::Func;
use wasmtime::component::Instance;
use wasmtime::component::Val;

use crate::chain;
use crate::context::ExorunCtx;
use crate::ledger::Ledger;
use crate::limits;
use crate::registry::App;
use crate::registry::Export;
use crate::system::Rejection;

/// Why an instance is failed when a call into it never returned (cancelled or panicked).
const INTERRUPTED: &str = "a call was cancelled or panicked before it returned";

/// The id of a running instance, unique within its runtime.
#[allow(
    clippy::module_name_repetitions,
    reason = "the owner's API names this type; embedders import it by this name"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub u64);

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "instance#{}", self.0)
    }
}

/// Why a call on an instance did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The instance was removed from its runtime.
    #[error("{instance} not found (removed)")]
    NotFound {
        /// The instance concerned.
        instance: InstanceId,
    },
    /// The instance exports no such function.
    #[error("no export {interface}#{function}")]
    ExportNotFound {
        /// The interface, fully qualified (e.g. `exorun:test/math`).
        interface: String,
        /// The function, by its name within the interface.
        function: String,
    },
    /// The instance is already on this call chain (A -> B -> A).
    #[error("re-entrant call into {instance}, which is already on the call chain")]
    Reentrant {
        /// The instance concerned.
        instance: InstanceId,
    },
    /// Another call held the instance for longer than the lock wait.
    #[error("{instance} stayed busy for {waited_ms} ms")]
    Busy {
        /// The instance concerned.
        instance: InstanceId,

        /// How long the call waited, in milliseconds.
        waited_ms: u64,
    },
    /// An earlier call trapped; the instance must be recreated from its app.
    #[error("{instance} failed earlier: {reason}")]
    Failed {
        /// The instance concerned.
        instance: InstanceId,

        /// Why, in words.
        reason: String,
    },
    /// The guest trapped.
    #[error("the guest trapped: {message}")]
    Trapped {
        /// What happened, in words.
        message: String,
    },
    /// The call used up its fuel.
    #[error("the guest ran out of fuel")]
    OutOfFuel,
    /// The guest grew memory or a table past its limit.
    #[error("the guest ran out of memory: {message}")]
    OutOfMemory {
        /// What happened, in words.
        message: String,
    },
    /// A host function refused the call with a code.
    #[error("{0}")]
    Rejected(Rejection),
    /// A host function (a system, or a link to another instance) failed with an error of its
    /// own layer, kept as raised: `Raised::downcast_ref` reads it back.
    #[error("{0}")]
    Raised(Raised),
    /// wasmtime failed around the call (not the guest, not a host function).
    #[error("host error: {message}")]
    Host {
        /// What happened, in words.
        message: String,
    },
}

/// An error raised by a host function, kept exactly as raised.
///
/// Equality compares the rendered text (the error chain), which is what a test can state.
#[derive(Debug, Clone)]
pub struct Raised(Arc<wasmtime::Error>);

impl Raised {
    /// The raised error (or one in its context chain) as an `E`, if it is one.
    pub fn downcast_ref<E>(&self) -> Option<&E>
    where
        E: std::fmt::Display + std::fmt::Debug + Send + Sync + 'static,
    {
        self.0.downcast_ref::<E>()
    }
}

impl std::fmt::Display for Raised {
    /// The error and its context chain, joined by `: `, without the wasm backtrace wasmtime
    /// adds when the error unwinds through the guest (that is for debugging, not for callers).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backtrace = self
            .0
            .downcast_ref::<WasmBacktrace>()
            .map(ToString::to_string);
        let mut links = self.0.chain().map(ToString::to_string).peekable();
        if links.peek() == backtrace.as_ref() {
            links.next();
        }
        let text: Vec<String> = links.collect();
        f.write_str(&text.join(": "))
    }
}

impl PartialEq for Raised {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Raised {}

/// Classifies an error that came out of wasmtime (or a host function under it).
pub fn classify(error: wasmtime::Error) -> Error {
    if let Some(inner) = error.downcast_ref::<Error>() {
        return inner.clone();
    }
    if let Some(exceeded) = error.downcast_ref::<limits::Exceeded>() {
        return Error::OutOfMemory {
            message: exceeded.to_string(),
        };
    }
    if let Some(rejection) = error.downcast_ref::<Rejection>() {
        return Error::Rejected(rejection.clone());
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Error::OutOfFuel,
        Some(trap) => Error::Trapped {
            message: trap.to_string(),
        },
        None => Error::Raised(Raised(Arc::new(error))),
    }
}

struct Slot {
    store: Store<ExorunCtx>,
    instance: Instance,
    failed: Option<String>,
}

/// A cloneable handle to one running instance.
#[allow(
    clippy::module_name_repetitions,
    reason = "the owner's API names this type; embedders import it by this name"
)]
#[derive(Clone)]
pub struct InstanceHandle {
    id: InstanceId,
    runtime: u64,
    name: Option<Arc<str>>,
    app: App,
    limits: limits::Limits,
    removed: Arc<AtomicBool>,
    slot: Arc<tokio::sync::Mutex<Slot>>,
}

impl std::fmt::Debug for InstanceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceHandle")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

impl InstanceHandle {
    /// Wraps a freshly instantiated store of `app` (the registry calls this). `runtime` is the
    /// id of the runtime that owns it.
    pub(crate) fn new(
        runtime: u64,
        id: InstanceId,
        name: Option<&str>,
        app: App,
        limits: limits::Limits,
        store: Store<ExorunCtx>,
        instance: Instance,
    ) -> Self {
        let slot = Slot {
            store,
            instance,
            failed: None,
        };
        Self {
            id,
            runtime,
            name: name.map(Arc::from),
            app,
            limits,
            removed: Arc::new(AtomicBool::new(false)),
            slot: Arc::new(tokio::sync::Mutex::new(slot)),
        }
    }

    /// This instance's id.
    pub fn id(&self) -> InstanceId {
        self.id
    }

    /// This instance's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The app it runs.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The interfaces its app imports and exports (what a local link checks against).
    pub fn ledger(&self) -> &Ledger {
        &self.app.ledger
    }

    /// Why the instance failed, if a call trapped.
    pub async fn failure(&self) -> Option<String> {
        self.slot.lock().await.failed.clone()
    }

    /// Stops the instance: later calls fail with `NotFound`; calls in flight finish.
    pub fn remove(&self) {
        self.removed.store(true, Ordering::Release);
    }

    /// The exported function `interface#function` (`interface` empty for a root export),
    /// resolved once so calls through it skip the lookup. A removed instance exports nothing.
    pub fn export(&self, interface: &str, function: &str) -> Result<Export, Error> {
        self.check_present()?;
        self.app
            .export(interface, function)
            .ok_or_else(|| Error::ExportNotFound {
                interface: interface.to_owned(),
                function: function.to_owned(),
            })
    }

    /// Calls the exported `interface#function` with `params`, filling `results`.
    pub async fn call(
        &self,
        interface: &str,
        function: &str,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<(), Error> {
        let export = self.export(interface, function)?;
        self.call_export(&export, params, results).await
    }

    /// Calls a function resolved with `export`. Any failure marks the instance failed.
    pub async fn call_export(
        &self,
        export: &Export,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<(), Error> {
        let mut slot = self.lock().await?;
        let func = func(&mut slot, export)?;
        refuel(&mut slot, &self.limits)?;
        // Marked failed until the call returns: a call whose future is dropped (its caller gave
        // up) or that panics leaves the guest mid-way, and nothing may enter it again.
        slot.failed = Some(INTERRUPTED.to_owned());
        let call = func.call_async(&mut slot.store, params, results);
        let outcome = chain::within(chain::extended(self.hop()), call).await;
        slot.failed = None;
        settle(&mut slot, outcome)
    }

    /// This instance as a hop of a call chain.
    fn hop(&self) -> chain::Hop {
        chain::Hop {
            runtime: self.runtime,
            instance: self.id.0,
        }
    }

    async fn lock(&self) -> Result<tokio::sync::MutexGuard<'_, Slot>, Error> {
        if chain::contains(self.hop()) {
            return Err(Error::Reentrant { instance: self.id });
        }
        self.check_present()?;
        // An idle instance is taken without arming a timer; only contention waits, bounded.
        let slot = match self.slot.try_lock() {
            Ok(slot) => slot,
            Err(_) => self.wait_for_lock().await?,
        };
        self.check_present()?;
        if let Some(reason) = &slot.failed {
            return Err(Error::Failed {
                instance: self.id,
                reason: reason.clone(),
            });
        }
        Ok(slot)
    }

    async fn wait_for_lock(&self) -> Result<tokio::sync::MutexGuard<'_, Slot>, Error> {
        let waited = tokio::time::timeout(self.limits.lock_wait, self.slot.lock()).await;
        waited.map_err(|_| Error::Busy {
            instance: self.id,
            waited_ms: u64::try_from(self.limits.lock_wait.as_millis()).unwrap_or(u64::MAX),
        })
    }

    fn check_present(&self) -> Result<(), Error> {
        if self.removed.load(Ordering::Acquire) {
            return Err(Error::NotFound { instance: self.id });
        }
        Ok(())
    }
}

/// The function behind `export` in this slot's instance.
fn func(slot: &mut Slot, export: &Export) -> Result<Func, Error> {
    let found = slot.instance.get_func(&mut slot.store, export.index());
    found.ok_or_else(|| Error::Host {
        message: "an export resolved for another app".to_owned(),
    })
}

fn refuel(slot: &mut Slot, limits: &limits::Limits) -> Result<(), Error> {
    let fueled = slot.store.set_fuel(limits.fuel_per_call);
    fueled.map_err(|error| Error::Host {
        message: error.to_string(),
    })
}

/// Classifies a failed call into the guest and marks the instance failed: any error out of a
/// call into the guest unwound it mid-way, and wasmtime will not re-enter it.
fn settle<T>(slot: &mut Slot, outcome: wasmtime::Result<T>) -> Result<T, Error> {
    let error = match outcome {
        Ok(value) => return Ok(value),
        Err(error) => classify(error),
    };
    slot.failed = Some(error.to_string());
    Err(error)
}
