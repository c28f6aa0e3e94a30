//! `InstanceHandle`: one running instance, its store behind an async mutex.
//!
//! Calls run one at a time on a store. Before taking the lock a call checks the task-local call
//! chain: if this instance is already on it (A -> B -> A through links), the inner call fails
//! with `Reentrant` instead of waiting for a lock its own caller holds; a host function returns
//! that error, so it surfaces as a trap in the guest that made the call. Waiting for the lock is
//! bounded (`Busy`). Each call gets fresh fuel. Errors are classified (`OutOfFuel`,
//! `OutOfMemory`, `Trapped`, `Domain`, ...); after a call into the guest fails, wasmtime may
//! have left the instance mid-way, so it is marked failed and later calls get `Failed` (make a
//! new instance from its app to restart it). A panicking closure releases the lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use exorun_transport::transport::BoxFuture;
use neorpc::frame::Hop;
use wasmtime::Store;
use wasmtime::Trap;
use wasmtime::component::Func;
use wasmtime::component::Instance;
use wasmtime::component::Val;

use crate::context::ExorunCtx;
use crate::ledger::Ledger;
use crate::limits;
use crate::system::DomainError;

tokio::task_local! {
    /// The instances the current task's call chain is inside, outermost first, across runtimes.
    static CALL_CHAIN: Vec<Hop>;
}

/// The call chain of the current task, outermost first: what a remote link sends along with a
/// call, so the callee's runtime can refuse a re-entrant call (`neorpc::frame::Hop`).
pub fn current_chain() -> Vec<Hop> {
    CALL_CHAIN.try_with(Clone::clone).unwrap_or_default()
}

/// Runs `work` (a call that arrived from another runtime) inside the call chain it carried.
pub async fn within_chain<F: Future>(chain: Vec<Hop>, work: F) -> F::Output {
    CALL_CHAIN.scope(chain, work).await
}

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
    NotFound { instance: InstanceId },
    /// The instance exports no such function.
    #[error("no export {interface}#{function}")]
    ExportNotFound { interface: String, function: String },
    /// The instance is already on this call chain (A -> B -> A).
    #[error("re-entrant call into {instance}, which is already on the call chain")]
    Reentrant { instance: InstanceId },
    /// Another call held the instance for longer than the lock wait.
    #[error("{instance} stayed busy for {waited_ms} ms")]
    Busy {
        instance: InstanceId,
        waited_ms: u64,
    },
    /// An earlier call trapped; the instance must be recreated from its app.
    #[error("{instance} failed earlier: {reason}")]
    Failed {
        instance: InstanceId,
        reason: String,
    },
    /// The guest trapped.
    #[error("the guest trapped: {message}")]
    Trapped { message: String },
    /// The call used up its fuel.
    #[error("the guest ran out of fuel")]
    OutOfFuel,
    /// The guest grew memory or a table past its limit.
    #[error("the guest ran out of memory: {message}")]
    OutOfMemory { message: String },
    /// A host function rejected the call with a domain code.
    #[error("{0}")]
    Domain(DomainError),
    /// A call over a remote link failed: `error` says how (`client::Error::Remote` carries the
    /// callee's failure reason, e.g. a domain code and message).
    #[error("remote call {method} on `{target}`: {error}")]
    Remote {
        target: String,
        method: String,
        error: exorun_transport::client::Error,
    },
    /// A host function or wasmtime failed for another reason.
    #[error("host error: {message}")]
    Host { message: String },
}

/// Classifies an error that came out of wasmtime (or a host function under it).
pub fn classify(error: &wasmtime::Error) -> Error {
    if let Some(inner) = error.downcast_ref::<Error>() {
        return inner.clone();
    }
    if let Some(exceeded) = error.downcast_ref::<limits::Exceeded>() {
        return Error::OutOfMemory {
            message: exceeded.to_string(),
        };
    }
    if let Some(domain) = error.downcast_ref::<DomainError>() {
        return Error::Domain(domain.clone());
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Error::OutOfFuel,
        Some(trap) => Error::Trapped {
            message: trap.to_string(),
        },
        None => Error::Host {
            message: format!("{error:#}"),
        },
    }
}

struct Slot {
    store: Store<ExorunCtx>,
    instance: Instance,
    failed: Option<String>,
    funcs: HashMap<String, HashMap<String, Func>>,
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
    ledger: Arc<Ledger>,
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
    /// Wraps a freshly instantiated store (the registry calls this). `runtime` is the id of the
    /// runtime that owns it.
    pub fn new(
        runtime: u64,
        id: InstanceId,
        name: Option<&str>,
        ledger: Arc<Ledger>,
        limits: limits::Limits,
        store: Store<ExorunCtx>,
        instance: Instance,
    ) -> Self {
        let slot = Slot {
            store,
            instance,
            failed: None,
            funcs: HashMap::new(),
        };
        Self {
            id,
            runtime,
            name: name.map(Arc::from),
            ledger,
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

    /// The interfaces its app imports and exports (what a local link checks against).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Why the instance failed, if a call trapped.
    pub async fn failure(&self) -> Option<String> {
        self.slot.lock().await.failed.clone()
    }

    /// Stops the instance: later calls fail with `NotFound`; calls in flight finish.
    pub fn remove(&self) {
        self.removed.store(true, Ordering::Release);
    }

    /// Runs `run` with exclusive access to the store, fresh fuel, and this instance on the call
    /// chain. Only traps (not other errors of `run`) mark the instance failed.
    pub async fn exec<T, F>(&self, run: F) -> Result<T, Error>
    where
        T: Send,
        F: for<'a> FnOnce(&'a mut Store<ExorunCtx>, Instance) -> BoxFuture<'a, wasmtime::Result<T>>
            + Send,
    {
        let mut slot = self.lock().await?;
        refuel(&mut slot, &self.limits)?;
        let instance = slot.instance;
        let outcome = CALL_CHAIN
            .scope(self.chain(), run(&mut slot.store, instance))
            .await;
        settle(&mut slot, false, outcome)
    }

    /// Resolves the exported function `interface#function` (`interface` empty for a root export).
    pub async fn func(&self, interface: &str, function: &str) -> Result<Func, Error> {
        let mut slot = self.lock().await?;
        resolve(&mut slot, interface, function)
    }

    /// Calls the exported `interface#function` with `params`, filling `results`.
    pub async fn call(
        &self,
        interface: &str,
        function: &str,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<(), Error> {
        let mut slot = self.lock().await?;
        let func = resolve(&mut slot, interface, function)?;
        self.call_locked(&mut slot, func, params, results).await
    }

    /// Calls a function resolved with `func`. Any failure marks the instance failed.
    pub async fn call_func(
        &self,
        func: &Func,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<(), Error> {
        let mut slot = self.lock().await?;
        self.call_locked(&mut slot, *func, params, results).await
    }

    /// One call into the guest under an already held lock. Any failure marks the instance failed.
    async fn call_locked(
        &self,
        slot: &mut Slot,
        func: Func,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<(), Error> {
        refuel(slot, &self.limits)?;
        let call = func.call_async(&mut slot.store, params, results);
        let outcome = CALL_CHAIN.scope(self.chain(), call).await;
        settle(slot, true, outcome)
    }

    /// This instance as a hop of a call chain.
    fn hop(&self) -> Hop {
        Hop {
            runtime: self.runtime,
            instance: self.id.0,
        }
    }

    /// The current call chain with this instance appended.
    fn chain(&self) -> Vec<Hop> {
        let mut chain = current_chain();
        chain.push(self.hop());
        chain
    }

    async fn lock(&self) -> Result<tokio::sync::MutexGuard<'_, Slot>, Error> {
        let hop = self.hop();
        let on_chain = CALL_CHAIN
            .try_with(|chain| chain.contains(&hop))
            .unwrap_or(false);
        if on_chain {
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

fn refuel(slot: &mut Slot, limits: &limits::Limits) -> Result<(), Error> {
    let fueled = slot.store.set_fuel(limits.fuel_per_call);
    fueled.map_err(|error| Error::Host {
        message: error.to_string(),
    })
}

/// Classifies a failed call and marks the instance failed if the guest was unwound.
fn settle<T>(
    slot: &mut Slot,
    entered_guest: bool,
    outcome: wasmtime::Result<T>,
) -> Result<T, Error> {
    let error = match outcome {
        Ok(value) => return Ok(value),
        Err(error) => classify(&error),
    };
    let is_trap = matches!(
        error,
        Error::Trapped { .. } | Error::OutOfFuel | Error::OutOfMemory { .. }
    );
    // Any error out of a call into the guest unwound it mid-way (wasmtime will not re-enter it);
    // around other work only a trap means the guest was left in an unknown state.
    if entered_guest || is_trap {
        slot.failed = Some(error.to_string());
    }
    Err(error)
}

/// Looks an export up once and caches it (bounded by the component's own export count); a
/// cached lookup allocates nothing.
fn resolve(slot: &mut Slot, interface: &str, function: &str) -> Result<Func, Error> {
    let cached = slot
        .funcs
        .get(interface)
        .and_then(|funcs| funcs.get(function));
    if let Some(func) = cached {
        return Ok(*func);
    }
    let not_found = || Error::ExportNotFound {
        interface: interface.to_owned(),
        function: function.to_owned(),
    };
    let parent = match interface {
        "" => None,
        name => Some(
            slot.instance
                .get_export_index(&mut slot.store, None, name)
                .ok_or_else(not_found)?,
        ),
    };
    let index = slot
        .instance
        .get_export_index(&mut slot.store, parent.as_ref(), function)
        .ok_or_else(not_found)?;
    let func = slot
        .instance
        .get_func(&mut slot.store, index)
        .ok_or_else(not_found)?;
    let funcs = slot.funcs.entry(interface.to_owned()).or_default();
    funcs.insert(function.to_owned(), func);
    Ok(func)
}
