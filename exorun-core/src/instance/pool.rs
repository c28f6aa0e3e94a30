//! The instances behind one handle: the factory that makes fresh ones from a prepared app, and
//! the replica slots that hold them, each running or failed (and when it may be restarted).
//!
//! A replica is taken for one call by locking its slot; a semaphore counts the slots not taken,
//! so a caller holding a permit always finds an unlocked slot. A running slot whose call failed
//! (or never returned: cancelled or panicked) becomes failed and drops its store at once; the
//! next caller that picks it restarts it when its back-off allows, or gets the failure that
//! caused it.

use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use wasmtime::Store;
use wasmtime::component::Instance;
use wasmtime::component::InstancePre;

use super::Error;
use super::classify;
use crate::context::ContextBuilder;
use crate::context::ExorunCtx;
use crate::limits;
use crate::supervision::Configure;
use crate::supervision::Restart;

/// A store and the instance in it.
pub(crate) type Running = (Store<ExorunCtx>, Instance);

/// Makes fresh instances of one prepared app, each with a context of its own.
pub(crate) struct Factory {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) pre: InstancePre<ExorunCtx>,
    pub(crate) limits: limits::Limits,
    /// Stages each new context; `None` when the first context was given whole (then nothing
    /// can be remade and the restart policy is `Never`).
    pub(crate) configure: Option<Configure>,
}

impl Factory {
    /// A fresh instance with a newly staged context.
    pub(crate) async fn make(&self) -> Result<Running, Error> {
        let mut builder = ContextBuilder::new();
        if let Some(configure) = &self.configure {
            configure(&mut builder).map_err(|error| Error::Host {
                message: format!("cannot stage the context: {error}"),
            })?;
        }
        self.make_with(builder).await
    }

    /// A fresh instance with the context `builder` stages.
    pub(crate) async fn make_with(&self, builder: ContextBuilder) -> Result<Running, Error> {
        let mut store = Store::new(&self.engine, builder.build(&self.limits));
        store.limiter(|ctx| ctx.limiter());
        let fueled = store.set_fuel(self.limits.fuel_per_call);
        fueled.map_err(classify)?;
        let yielding = store.fuel_async_yield_interval(Some(limits::FUEL_YIELD_INTERVAL));
        yielding.map_err(classify)?;
        let instance = self.pre.instantiate_async(&mut store).await;
        let instance = instance.map_err(classify)?;
        Ok((store, instance))
    }
}

/// One replica: running, or failed and waiting to be restarted.
pub(crate) struct Slot {
    pub(crate) state: State,
    /// Failures in a row by calls of one party (`offender`), for the back-off; a call that
    /// returns resets it, and a failure by another party starts a new streak.
    pub(crate) streak: u32,
    /// The party whose calls failed the replica last (`call::party`).
    pub(crate) offender: u64,
    /// The party of the call that entered the replica last (what a call that never returned
    /// is accounted to).
    pub(crate) party: u64,
    /// Its place in the pool, for logs and for handles pinned to it.
    pub(crate) index: usize,
    /// Which life of this place: 1 for the first instance, one more at each restart (handles
    /// made in an earlier life are gone).
    pub(crate) epoch: u64,
}

pub(crate) enum State {
    /// Ready for calls; `in_call` is set while a call is inside the guest.
    Running { running: Running, in_call: bool },
    /// Its last call failed (`cause`); it may be made again from `retry_at` on.
    Failed { cause: Error, retry_at: Instant },
}

impl Slot {
    pub(crate) fn running(index: usize, running: Running) -> Self {
        Self {
            state: State::Running {
                running,
                in_call: false,
            },
            streak: 0,
            offender: 0,
            party: 0,
            index,
            epoch: 1,
        }
    }

    /// Whether a call may run here now (running, and no earlier call was left inside).
    pub(crate) fn is_ready(&self) -> bool {
        matches!(self.state, State::Running { in_call: false, .. })
    }

    /// Turns a slot whose last call never returned into a failed one.
    pub(crate) fn settle_interrupted(&mut self, restart: &Restart) {
        if matches!(self.state, State::Running { in_call: true, .. }) {
            self.fail(Error::Interrupted, restart);
        }
    }

    /// Marks the replica failed with `cause` by the last call's party, dropping its store, and
    /// schedules its restart (for that party: see `InstanceHandle::lease`).
    pub(crate) fn fail(&mut self, cause: Error, restart: &Restart) {
        if self.offender != self.party {
            self.streak = 0;
        }
        self.offender = self.party;
        self.streak = self.streak.saturating_add(1);
        let pause = match restart {
            Restart::Always(backoff) => backoff.pause(self.streak),
            Restart::Never => std::time::Duration::MAX,
        };
        let now = Instant::now();
        let retry_at = now.checked_add(pause).unwrap_or(now + BACKOFF_CEILING);
        self.state = State::Failed { cause, retry_at };
    }
}

/// A bound for a pause that would overflow the clock (`Restart::Never`): about 30 years.
const BACKOFF_CEILING: std::time::Duration = std::time::Duration::from_secs(1 << 30);

/// The replicas of a handle, or the permits of per-call instances.
pub(crate) enum Pool {
    /// A fixed set of replicas.
    Replicas(Vec<Arc<Mutex<Slot>>>),
    /// A fresh instance per call.
    PerCall,
}

impl Pool {
    /// The first ready slot, else the first failed one (the caller restarts it or reports it).
    /// The caller holds a permit, so at least one slot is unlocked.
    pub(crate) fn pick(
        slots: &[Arc<Mutex<Slot>>],
        restart: &Restart,
    ) -> Option<OwnedMutexGuard<Slot>> {
        let mut fallback = None;
        for slot in slots {
            let Ok(mut guard) = Arc::clone(slot).try_lock_owned() else {
                #[cfg(test)]
                probed(slot);
                continue;
            };
            guard.settle_interrupted(restart);
            if guard.is_ready() {
                return Some(guard);
            }
            if fallback.is_none() {
                fallback = Some(guard);
            }
        }
        fallback
    }
}

/// What a test runs each time a look passes a held replica (its index), to force an
/// interleaving.
#[cfg(test)]
pub(crate) type Probe = Arc<dyn Fn(usize) + Send + Sync>;

#[cfg(test)]
static PROBE: std::sync::Mutex<Option<Probe>> = std::sync::Mutex::new(None);

/// Sets (or clears) the probe.
#[cfg(test)]
pub(crate) fn set_probe(probe: Option<Probe>) {
    *PROBE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = probe;
}

#[cfg(test)]
fn probed(slot: &Arc<Mutex<Slot>>) {
    let probe = PROBE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let Some(probe) = probe else {
        return;
    };
    // The slot is held, so its index cannot be read; its place in memory names it well enough.
    let index = Arc::as_ptr(slot).addr() % 4096;
    probe(index);
}
