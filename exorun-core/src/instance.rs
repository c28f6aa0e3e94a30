//! `InstanceHandle`: a named instance of an app, as one replica, several, or a fresh one per
//! call (`supervision::Replicas`), each replica running one call at a time.
//!
//! A call first takes a replica (`lease`): it checks the call chain (`chain`), and if this
//! instance is already on it (A -> B -> A through links) fails with `Reentrant` instead of
//! waiting for a replica its own caller holds. Waiting is bounded three ways: in time (the lock
//! wait, then `Busy`), in calls and in the bytes the waiting calls hold (then `TooManyWaiting` or
//! `TooManyBytesWaiting`, at once). Each call gets fresh fuel. Errors are classified
//! (`OutOfFuel`, `OutOfMemory`, `Trapped`, `Rejected`, ...); an error that a host function
//! raised and this crate does not interpret (a link's own failure, say) is kept as raised in
//! `Raised`, so the layer that raised it reads it back exactly.
//!
//! After a call into the guest fails (or never returns to us: its future was dropped, or a
//! host function under it panicked), wasmtime may have left the instance mid-way, so the
//! replica is failed and its store dropped. Under `Restart::Always` the next call that picks it
//! makes a fresh instance from the prepared app (its state is lost), logged at info and counted
//! (`restarts`); a replica failing again right after is restarted only after a back-off, and a
//! call reaching it meanwhile gets `BackingOff` with the cause at once. Under `Restart::Never`
//! later calls get `Failed`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use tokio::sync::OwnedMutexGuard;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use wasmtime::AsContextMut;
use wasmtime::StoreContextMut;
use wasmtime::component::InstancePre;
use wasmtime::component::ResourceAny;
use wasmtime::component::Val;

use crate::app::App;
use crate::app::Export;
use crate::call;
use crate::context::ContextBuilder;
use crate::context::ExorunCtx;
use crate::ledger::Ledger;
use crate::limits;
use crate::supervision::Replicas;
use crate::supervision::Restart;
use crate::supervision::Spec;

mod error;
mod pool;
#[cfg(test)]
mod race_tests;

pub use error::Error;
pub use error::Raised;
pub(crate) use error::classify;

use self::pool::Factory;
use self::pool::Pool;
use self::pool::Running;
use self::pool::Slot;
use self::pool::State;

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

/// Who an instance is: what the registry knows of it before it is made.
pub(crate) struct Identity {
    pub(crate) id: InstanceId,
    pub(crate) runtime: u64,
    pub(crate) name: Option<String>,
    pub(crate) app: App,
}

struct Inner {
    id: InstanceId,
    runtime: u64,
    name: Option<Arc<str>>,
    app: App,
    limits: limits::Limits,
    replicas: Replicas,
    restart: Restart,
    factory: Factory,
    pool: Pool,
    /// Replicas not taken (or per-call instances allowed to start).
    permits: Arc<Semaphore>,
    /// Held while a caller looks for a free replica without waiting (`ready_slot`, `failure`,
    /// `lease_on`'s first try): one such look at a time, so a free replica cannot move behind
    /// a caller's look while another caller takes the one ahead of it (see `ready_slot`).
    taking: std::sync::Mutex<()>,
    removed: AtomicBool,
    /// Set once a removed instance's replicas are dropped (see `retired`).
    retired: tokio::sync::watch::Sender<bool>,
    waiting_calls: AtomicUsize,
    waiting_bytes: AtomicU64,
    /// The waiting counts, published after each change (for whoever watches them).
    waiting_seen: tokio::sync::watch::Sender<(usize, u64)>,
    restarts: AtomicU64,
    /// Restarts by the cause of the failure they replaced (`RESTART_CAUSES` order).
    restarts_by_cause: [AtomicU64; RESTART_CAUSES.len()],
}

/// Restart lines: at most one a second over the process (`exorun_common::Throttle`).
static RESTART_LINES: exorun_common::Throttle = exorun_common::Throttle::new();

/// The causes restarts are counted by: what failed the replica that was replaced.
pub const RESTART_CAUSES: [&str; 5] = [
    "trapped",
    "out_of_fuel",
    "out_of_memory",
    "interrupted",
    "other",
];

/// The index in `RESTART_CAUSES` of a failure's cause.
fn cause_index(cause: &Error) -> usize {
    match cause {
        Error::Trapped { .. } => 0,
        Error::OutOfFuel => 1,
        Error::OutOfMemory { .. } => 2,
        Error::Interrupted => 3,
        Error::NotFound { .. }
        | Error::ExportNotFound { .. }
        | Error::Busy { .. }
        | Error::TooManyWaiting { .. }
        | Error::TooManyBytesWaiting { .. }
        | Error::BackingOff { .. }
        | Error::Callee { .. }
        | Error::Reentrant { .. }
        | Error::ResourceGone { .. }
        | Error::Rejected(_)
        | Error::Raised(_)
        | Error::Failed { .. }
        | Error::Host { .. } => 4,
    }
}

/// A cloneable handle to one named instance (its replicas and their supervision).
#[allow(
    clippy::module_name_repetitions,
    reason = "the owner's API names this type; embedders import it by this name"
)]
#[derive(Clone)]
pub struct InstanceHandle {
    inner: Arc<Inner>,
}

/// Which replica of an instance, and which of its lives (each restart is a new one): what a
/// resource handle made there is pinned to. A handle whose replica was restarted since is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Replica {
    /// Its place in the instance's pool.
    pub index: usize,
    /// How many times that place was filled with a fresh instance (1 at the start).
    pub epoch: u64,
}

/// One instance taken for one call: a replica (released when the lease drops) or a fresh
/// per-call instance (dropped with it).
pub struct Lease {
    // Field order is drop order: the replica is unlocked before its permit is returned, so a
    // caller holding a permit always finds an unlocked replica.
    held: Held,
    handle: InstanceHandle,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = match &self.held {
            Held::Replica(slot) => format!("replica {}", slot.index),
            Held::Fresh(_) => "a fresh instance".to_owned(),
        };
        f.debug_struct("Lease")
            .field("instance", &self.handle.id())
            .field("held", &held)
            .finish_non_exhaustive()
    }
}

enum Held {
    Replica(OwnedMutexGuard<Slot>),
    Fresh(Box<Running>),
}

/// A lease dropped while its call was inside the guest (the call's future dropped: a deadline,
/// a caller gone) fails its replica at once: the store, and whatever its call left waiting on
/// it (an HTTP answer's body, say), is dropped now, not when another call next picks the
/// replica.
impl Drop for Lease {
    fn drop(&mut self) {
        if let Held::Replica(slot) = &mut self.held {
            slot.settle_interrupted(&self.handle.inner.restart);
        }
    }
}

/// Counts a call waiting for a replica, and uncounts it however the wait ends.
struct Waiting<'a> {
    inner: &'a Inner,
    bytes: u64,
}

impl std::fmt::Debug for InstanceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceHandle")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .finish()
    }
}

impl InstanceHandle {
    /// Makes the instances of a supervised instance as `spec` says (the registry calls this):
    /// its replicas now, or, per call, one made and dropped so start code that fails is
    /// reported here.
    pub(crate) async fn start(
        identity: Identity,
        engine: wasmtime::Engine,
        pre: InstancePre<ExorunCtx>,
        spec: Spec,
    ) -> Result<Self, Error> {
        let factory = Factory {
            engine,
            pre,
            limits: spec.limits,
            configure: Some(spec.configure),
        };
        let pool = match spec.replicas {
            Replicas::Fixed(count) => {
                let mut slots = Vec::with_capacity(count.get());
                for index in 0..count.get() {
                    let running = factory.make().await?;
                    let slot = Slot::running(index, running);
                    slots.push(Arc::new(tokio::sync::Mutex::new(slot)));
                }
                Pool::Replicas(slots)
            }
            Replicas::PerCall { .. } => {
                factory.make().await?;
                Pool::PerCall
            }
        };
        Ok(Self::new(
            identity,
            spec.replicas,
            spec.restart,
            factory,
            pool,
        ))
    }

    /// Makes one instance with the context `builder` stages (the registry calls this); that
    /// context cannot be staged again, so it is never restarted.
    pub(crate) async fn start_once(
        identity: Identity,
        engine: wasmtime::Engine,
        pre: InstancePre<ExorunCtx>,
        builder: ContextBuilder,
        limits: limits::Limits,
    ) -> Result<Self, Error> {
        let factory = Factory {
            engine,
            pre,
            limits,
            configure: None,
        };
        let running = factory.make_with(builder).await?;
        let slot = Arc::new(tokio::sync::Mutex::new(Slot::running(0, running)));
        let pool = Pool::Replicas(vec![slot]);
        Ok(Self::new(
            identity,
            Replicas::ONE,
            Restart::Never,
            factory,
            pool,
        ))
    }

    fn new(
        identity: Identity,
        replicas: Replicas,
        restart: Restart,
        factory: Factory,
        pool: Pool,
    ) -> Self {
        let limits = factory.limits;
        let permits = match (&pool, replicas) {
            (_, Replicas::PerCall { concurrency }) => concurrency.get(),
            (Pool::Replicas(slots), Replicas::Fixed(_)) => slots.len(),
            (Pool::PerCall, Replicas::Fixed(replicas)) => replicas.get(),
        };
        let inner = Inner {
            id: identity.id,
            runtime: identity.runtime,
            name: identity.name.as_deref().map(Arc::from),
            app: identity.app,
            limits,
            replicas,
            restart,
            factory,
            pool,
            permits: Arc::new(Semaphore::new(permits)),
            taking: std::sync::Mutex::new(()),
            removed: AtomicBool::new(false),
            retired: tokio::sync::watch::Sender::new(false),
            waiting_calls: AtomicUsize::new(0),
            waiting_bytes: AtomicU64::new(0),
            waiting_seen: tokio::sync::watch::Sender::new((0, 0)),
            restarts: AtomicU64::new(0),
            restarts_by_cause: Default::default(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// This instance's id.
    pub fn id(&self) -> InstanceId {
        self.inner.id
    }

    /// This instance's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// The app it runs.
    pub fn app(&self) -> &App {
        &self.inner.app
    }

    /// The interfaces its app imports and exports (what a local link checks against).
    pub fn ledger(&self) -> &Ledger {
        &self.inner.app.ledger
    }

    /// How many instances serve it.
    pub fn replicas(&self) -> Replicas {
        self.inner.replicas
    }

    /// How many times a failed replica was replaced by a fresh instance.
    pub fn restarts(&self) -> u64 {
        self.inner.restarts.load(Ordering::Relaxed)
    }

    /// Restarts by cause, in `RESTART_CAUSES` order (they add up to `restarts`).
    pub fn restarts_by_cause(&self) -> [(&'static str, u64); RESTART_CAUSES.len()] {
        let counted = &self.inner.restarts_by_cause;
        std::array::from_fn(|index| {
            (
                RESTART_CAUSES[index],
                counted[index].load(Ordering::Relaxed),
            )
        })
    }

    /// Calls waiting for a replica now, and the argument bytes they hold (never above the
    /// limits' `calls_waiting_max` and `bytes_waiting_max`).
    pub fn waiting(&self) -> (usize, u64) {
        self.inner.waiting()
    }

    /// The waiting counts as they change: a receiver that sees each new (calls, bytes) after
    /// the counters moved (for a metrics exporter, or a test that waits for a queue to form).
    pub fn watch_waiting(&self) -> tokio::sync::watch::Receiver<(usize, u64)> {
        self.inner.waiting_seen.subscribe()
    }

    /// Why a replica is failed now (waiting for a restart, or for good), if one is and no
    /// call holds it. It looks only while a replica is free (holding a permit, as a call
    /// does, so a call never finds every replica locked).
    pub async fn failure(&self) -> Option<String> {
        let Pool::Replicas(slots) = &self.inner.pool else {
            return None;
        };
        let _permit = Arc::clone(&self.inner.permits).try_acquire_owned().ok()?;
        let _taking = self.inner.taking();
        for slot in slots {
            let Ok(mut slot) = slot.try_lock() else {
                continue;
            };
            slot.settle_interrupted(&self.inner.restart);
            if let State::Failed { cause, .. } = &slot.state {
                return Some(cause.to_string());
            }
        }
        None
    }

    /// Stops the instance: later calls fail with `NotFound`; calls in flight finish (through
    /// `Runtime::remove_instance`).
    pub(crate) fn remove(&self) {
        self.inner.removed.store(true, Ordering::Release);
        self.inner.permits.close();
        // Each replica's store goes as soon as its call (if any) ends, not when the last
        // handle to the instance does: what a store holds (handles into other instances,
        // across links) is let go with it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let handle = self.clone();
        runtime.spawn(async move { handle.retire().await });
    }

    /// Drops every replica's store, each once its call ends, then says so (`retired`).
    async fn retire(&self) {
        if let Pool::Replicas(slots) = &self.inner.pool {
            for slot in slots {
                let mut slot = Arc::clone(slot).lock_owned().await;
                let cause = Error::NotFound {
                    instance: self.id(),
                };
                slot.fail(cause, &Restart::Never);
            }
        }
        self.inner.retired.send_replace(true);
    }

    /// The linear memory its running replicas hold together, in bytes (each replica counted
    /// once its current call ends): what a leak check watches stay flat.
    pub async fn memory_bytes(&self) -> u64 {
        let Pool::Replicas(slots) = &self.inner.pool else {
            return 0;
        };
        let mut total: u64 = 0;
        for slot in slots {
            // With a permit, as a call holds one: a caller looking for a free replica never
            // finds this one taken without a permit counted for it.
            let Ok(_permit) = Arc::clone(&self.inner.permits).acquire_owned().await else {
                return total; // removed
            };
            let slot = slot.lock().await;
            if let State::Running { running, .. } = &slot.state {
                let bytes = running.0.data().memory_bytes();
                total = total.saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
            }
        }
        total
    }

    /// Waits until this instance, removed from its runtime, has dropped its replicas (and so
    /// whatever their stores held). Never returns for an instance not removed.
    pub async fn retired(&self) {
        let mut retired = self.inner.retired.subscribe();
        let _ = retired.wait_for(|retired| *retired).await;
    }

    /// The exported function `interface#function` (`interface` empty for a root export),
    /// resolved once so calls through it skip the lookup. A removed instance exports nothing.
    pub fn export(&self, interface: &str, function: &str) -> Result<Export, Error> {
        self.check_present()?;
        self.inner
            .app
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

    /// Calls a function resolved with `export` on a replica, as `lease` finds one.
    pub async fn call_export(
        &self,
        export: &Export,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<(), Error> {
        self.lease(0).await?.call(export, params, results).await
    }

    /// Takes a replica for one call (waiting for one within the limits), or makes a fresh
    /// per-call instance. `bytes` is what the caller holds for the call while it waits (a
    /// server's argument slab), counted against `bytes_waiting_max`; decode the arguments once
    /// the lease is had.
    pub async fn lease(&self, bytes: u64) -> Result<Lease, Error> {
        if call::contains(self.hop()) {
            return Err(Error::Reentrant {
                instance: self.id(),
            });
        }
        self.check_present()?;
        let permit = self.permit(bytes).await?;
        self.check_present()?;
        let held = match &self.inner.pool {
            Pool::PerCall => Held::Fresh(Box::new(self.inner.factory.make().await?)),
            Pool::Replicas(slots) => Held::Replica(self.ready_slot(slots).await?),
        };
        Ok(Lease {
            held,
            handle: self.clone(),
            _permit: permit,
        })
    }

    /// Takes `replica` itself for one call (waiting for it within the limits): where a call on a
    /// resource made there must run. A replica restarted since (a new epoch), failed, or of an
    /// instance that runs one per call, is `ResourceGone`: the handle's resource went with it.
    pub async fn lease_on(&self, replica: Replica, resource: &str) -> Result<Lease, Error> {
        let gone = || Error::ResourceGone {
            resource: resource.to_owned(),
        };
        if call::contains(self.hop()) {
            return Err(Error::Reentrant {
                instance: self.id(),
            });
        }
        self.check_present().map_err(|_| gone())?;
        let Pool::Replicas(slots) = &self.inner.pool else {
            return Err(gone());
        };
        let slot = slots.get(replica.index).ok_or_else(gone)?;
        let permit = self.permit(0).await?;
        // A free replica is taken under the same lock as `ready_slot`'s look; a busy one is
        // waited for (handed over by its holder, so it is never free in between).
        let free = Arc::clone(slot).try_lock_owned();
        let lock_wait = self.inner.limits.lock_wait;
        let locked = match free {
            Ok(guard) => Ok(guard),
            Err(_) => tokio::time::timeout(lock_wait, Arc::clone(slot).lock_owned()).await,
        };
        let Ok(mut slot) = locked else {
            let waited_ms = exorun_common::millis(lock_wait);
            let instance = self.id();
            return Err(Error::Busy {
                instance,
                waited_ms,
            });
        };
        slot.settle_interrupted(&self.inner.restart);
        if slot.epoch != replica.epoch || !slot.is_ready() {
            return Err(gone());
        }
        Ok(Lease {
            held: Held::Replica(slot),
            handle: self.clone(),
            _permit: permit,
        })
    }

    /// A permit to take a replica: at once if one is free, else after waiting in line.
    async fn permit(&self, bytes: u64) -> Result<OwnedSemaphorePermit, Error> {
        let permits = &self.inner.permits;
        if let Ok(permit) = Arc::clone(permits).try_acquire_owned() {
            return Ok(permit);
        }
        let _waiting = self.wait_in_line(bytes)?;
        let lock_wait = self.inner.limits.lock_wait;
        let acquired = tokio::time::timeout(lock_wait, Arc::clone(permits).acquire_owned()).await;
        let Ok(acquired) = acquired else {
            let waited_ms = exorun_common::millis(lock_wait);
            let instance = self.id();
            return Err(Error::Busy {
                instance,
                waited_ms,
            });
        };
        // The semaphore closes only when the instance is removed.
        acquired.map_err(|_| Error::NotFound {
            instance: self.id(),
        })
    }

    /// Counts this call among the waiting ones, or refuses it if that would pass a limit (the
    /// counters never go past their limits, not even for a moment).
    fn wait_in_line(&self, bytes: u64) -> Result<Waiting<'_>, Error> {
        let inner = &*self.inner;
        let (calls_max, bytes_max) = (
            inner.limits.calls_waiting_max,
            inner.limits.bytes_waiting_max,
        );
        let counted =
            inner
                .waiting_calls
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |calls| {
                    (calls < calls_max).then_some(calls + 1)
                });
        if counted.is_err() {
            return Err(Error::TooManyWaiting {
                instance: inner.id,
                calls_waiting_max: calls_max,
            });
        }
        let weighed =
            inner
                .waiting_bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                    held.checked_add(bytes).filter(|total| *total <= bytes_max)
                });
        if weighed.is_err() {
            inner.waiting_calls.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::TooManyBytesWaiting {
                instance: inner.id,
                bytes_waiting_max: bytes_max,
            });
        }
        inner.publish_waiting();
        Ok(Waiting { inner, bytes })
    }

    /// A ready replica: a running one, else a failed one restarted (when its policy and
    /// back-off allow), else the failure that keeps it down.
    async fn ready_slot(
        &self,
        slots: &[Arc<tokio::sync::Mutex<Slot>>],
    ) -> Result<OwnedMutexGuard<Slot>, Error> {
        let inner = &*self.inner;
        // Every lease and `failure` holds a permit while it holds a slot, and there are as
        // many permits as slots: a caller holding a permit always finds one unlocked. The
        // look is one at a time (`taking`): a look that goes slot by slot could otherwise pass
        // a slot still held, the slot be freed behind it while another caller took the one
        // ahead of it, and find none (seen once at the start of a trap storm). A removed
        // instance's replicas are taken by its retirement, without permits.
        let slot = {
            let _taking = inner.taking();
            Pool::pick(slots, &inner.restart)
        };
        let Some(mut slot) = slot else {
            assert!(
                inner.removed.load(Ordering::Acquire),
                "a held permit leaves a replica unlocked"
            );
            return Err(Error::NotFound { instance: inner.id });
        };
        let State::Failed { cause, retry_at } = &slot.state else {
            return Ok(slot);
        };
        if inner.restart == Restart::Never {
            let reason = cause.to_string();
            return Err(Error::Failed {
                instance: inner.id,
                reason,
            });
        }
        let now = Instant::now();
        // The back-off holds back the party whose calls failed the replica; anyone else's call
        // restarts it now rather than fail with another caller's fault.
        let offender = call::party() == slot.offender;
        if now < *retry_at && offender {
            let retry_in = retry_at.saturating_duration_since(now);
            return Err(Error::BackingOff {
                instance: inner.id,
                retry_in_ms: exorun_common::millis(retry_in),
                cause: Box::new(cause.clone()),
            });
        }
        let counted = cause_index(cause);
        let cause = cause.to_string();
        match inner.factory.make().await {
            Ok(running) => {
                let restarts = inner.restarts.fetch_add(1, Ordering::Relaxed) + 1;
                inner.restarts_by_cause[counted].fetch_add(1, Ordering::Relaxed);
                let (instance, replica) = (inner.id.to_string(), slot.index);
                let name = inner.name.as_deref().unwrap_or_default();
                // At most a line a second over the process: a caller whose calls trap makes
                // as many restarts as it likes (each counted in `restarts`).
                RESTART_LINES.note(|skipped| {
                    tracing::info!(
                        instance,
                        name,
                        replica,
                        restarts,
                        cause,
                        skipped,
                        "restarted a failed instance"
                    );
                });
                slot.state = State::Running {
                    running,
                    in_call: false,
                };
                slot.epoch += 1;
                Ok(slot)
            }
            Err(error) => {
                slot.fail(error.clone(), &inner.restart);
                Err(error)
            }
        }
    }

    /// This instance as a hop of a call chain.
    fn hop(&self) -> call::Hop {
        call::Hop {
            runtime: self.inner.runtime,
            instance: self.inner.id.0,
        }
    }

    fn check_present(&self) -> Result<(), Error> {
        if self.inner.removed.load(Ordering::Acquire) {
            return Err(Error::NotFound {
                instance: self.id(),
            });
        }
        Ok(())
    }
}

impl Lease {
    /// The replica taken (`None` for a fresh per-call instance, which outlives no call).
    pub fn replica(&self) -> Option<Replica> {
        let Held::Replica(slot) = &self.held else {
            return None;
        };
        Some(Replica {
            index: slot.index,
            epoch: slot.epoch,
        })
    }

    /// Drops `resource`, a handle the host holds into this instance, running the guest's
    /// destructor. A destructor that fails fails the replica, as a call would.
    pub async fn drop_resource(&mut self, resource: ResourceAny) -> Result<(), Error> {
        let inner = Arc::clone(&self.handle.inner);
        let slot = match &mut self.held {
            Held::Replica(slot) => slot,
            Held::Fresh(_) => return Ok(()),
        };
        // A replica an earlier call on this lease failed took its resources with it.
        let State::Running { running, in_call } = &mut slot.state else {
            return Ok(());
        };
        *in_call = true;
        let (store, _) = running;
        let dropped = resource.resource_drop_async(&mut *store).await;
        let Err(error) = dropped.map_err(classify) else {
            *in_call = false;
            return Ok(());
        };
        slot.fail(error.clone(), &inner.restart);
        Err(error)
    }

    /// Calls `export` on the instance taken, with fresh fuel and this instance on the call
    /// chain. A failure fails the replica (see the module doc).
    pub async fn call(
        &mut self,
        export: &Export,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<(), Error> {
        self.call_with(export, Params::<MakeNone>::Given(params), results)
            .await
    }

    /// Calls `export` as [`Lease::call`] does, with arguments `make` creates in the instance's
    /// own store just before the call: resources an embedder makes there (an HTTP request's
    /// `incoming-request` and `response-outparam`). An error from `make` fails the call, and
    /// the replica with it (what it left in the store is unknown).
    pub async fn call_made<F>(
        &mut self,
        export: &Export,
        make: F,
        results: &mut [Val],
    ) -> Result<(), Error>
    where
        F: FnOnce(StoreContextMut<'_, ExorunCtx>) -> wasmtime::Result<Vec<Val>>,
    {
        self.call_with(export, Params::Made(make), results).await
    }

    async fn call_with<F>(
        &mut self,
        export: &Export,
        params: Params<'_, F>,
        results: &mut [Val],
    ) -> Result<(), Error>
    where
        F: FnOnce(StoreContextMut<'_, ExorunCtx>) -> wasmtime::Result<Vec<Val>>,
    {
        let inner = Arc::clone(&self.handle.inner);
        let hop = self.handle.hop();
        let slot = match &mut self.held {
            Held::Fresh(running) => {
                return run(running, &inner, hop, export, params, results).await;
            }
            Held::Replica(slot) => slot,
        };
        slot.party = call::party();
        // A lease starts on a running replica (`ready_slot`, `lease_on`); an earlier call on the
        // same lease that failed it leaves it failed.
        let running = match &mut slot.state {
            State::Running { running, in_call } => (running, in_call),
            State::Failed { cause, .. } => return Err(cause.clone()),
        };
        let (running, in_call) = running;
        *in_call = true;
        let outcome = run(running, &inner, hop, export, params, results).await;
        let Err(error) = outcome else {
            *in_call = false;
            slot.streak = 0;
            return Ok(());
        };
        slot.fail(error.clone(), &inner.restart);
        Err(error)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.inner.waiting_calls.fetch_sub(1, Ordering::AcqRel);
        self.inner
            .waiting_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
        self.inner.publish_waiting();
    }
}

impl Inner {
    /// The lock a look for a free replica is made under (a look never panics while holding
    /// it, so a poisoned one is taken as it is).
    fn taking(&self) -> std::sync::MutexGuard<'_, ()> {
        self.taking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn waiting(&self) -> (usize, u64) {
        let calls = self.waiting_calls.load(Ordering::Acquire);
        (calls, self.waiting_bytes.load(Ordering::Acquire))
    }

    /// Publishes the counts as they are now: each change publishes after it moved both
    /// counters, so the last value published is always the current one.
    fn publish_waiting(&self) {
        self.waiting_seen.send_replace(self.waiting());
    }
}

/// A call's arguments: given, or made in the callee's store just before the call.
enum Params<'a, F> {
    Given(&'a [Val]),
    Made(F),
}

/// The maker type of a call whose arguments are given.
type MakeNone = fn(StoreContextMut<'_, ExorunCtx>) -> wasmtime::Result<Vec<Val>>;

/// One call into the guest of `running`.
async fn run<F>(
    running: &mut Running,
    inner: &Inner,
    hop: call::Hop,
    export: &Export,
    params: Params<'_, F>,
    results: &mut [Val],
) -> Result<(), Error>
where
    F: FnOnce(StoreContextMut<'_, ExorunCtx>) -> wasmtime::Result<Vec<Val>>,
{
    let (store, instance) = running;
    let func = instance.get_func(&mut *store, export.index());
    let func = func.ok_or_else(|| Error::Host {
        message: "an export resolved for another app".to_owned(),
    })?;
    let fueled = store.set_fuel(inner.limits.fuel_per_call);
    fueled.map_err(|error| Error::Host {
        message: error.to_string(),
    })?;
    let made;
    let params = match params {
        Params::Given(params) => params,
        Params::Made(make) => {
            made = make(store.as_context_mut()).map_err(|error| Error::Host {
                message: format!("cannot make the call's arguments: {error}"),
            })?;
            &made[..]
        }
    };
    let call = func.call_async(&mut *store, params, results);
    call::nested(hop, call).await.map_err(classify)
}
