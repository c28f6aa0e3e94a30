//! How an instance is kept up: how many replicas it runs, what happens to one whose call
//! failed, and how a fresh one's context is staged.
//!
//! Wasmtime is right that an instance whose call trapped (or ran out of fuel or memory, or
//! whose host call failed) must not run again: its state may be half-updated. Under
//! `Restart::Always` the failed replica is dropped and the next call that needs it gets a fresh
//! instance of the same prepared app (an instantiation, not a compile), so the state it held is
//! lost. A replica that keeps failing is restarted after a growing pause (`Backoff`); while it
//! waits, a call that reaches it gets the failure that caused the pause, at once.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::context::ContextBuilder;
use crate::limits::Limits;
use crate::system;

/// Pause before restarting a replica that failed again right after a restart: long enough to
/// stop a crash loop from eating a core, short enough that a passing fault costs little.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Longest pause between restarts of a replica that keeps failing.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What happens to a replica whose call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Replace it with a fresh instance: at once after a first failure, then after pauses
    /// that double from `initial` up to `max` while failures follow each other.
    Always(Backoff),
    /// Keep it failed: every later call gets `instance::Error::Failed`.
    Never,
}

/// The pauses between restarts of a replica that keeps failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Pause after the second failure in a row.
    pub initial: Duration,
    /// Longest pause.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: BACKOFF_INITIAL,
            max: BACKOFF_MAX,
        }
    }
}

impl Default for Restart {
    fn default() -> Self {
        Restart::Always(Backoff::default())
    }
}

impl Backoff {
    /// The pause before restarting after `streak` failures in a row (1 = the first): none
    /// after the first, then `initial`, doubling, at most `max`.
    pub(crate) fn pause(&self, streak: u32) -> Duration {
        let Some(doublings) = streak.checked_sub(2) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(doublings.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// How calls find an instance to run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    /// This many instances of the same app and links behind one name; a call takes an idle
    /// one, or waits for one within the lock wait. Each runs one call at a time and is
    /// supervised on its own. For apps without state worth keeping, unless it is one.
    Fixed(NonZeroUsize),
    /// A fresh instance for every call, dropped after it: nothing is kept between callers. At
    /// most `concurrency` calls run at once.
    PerCall {
        /// Most calls running at once.
        concurrency: NonZeroUsize,
    },
}

impl Replicas {
    /// One instance (a stateful app keeps this).
    pub const ONE: Replicas = Replicas::Fixed(NonZeroUsize::MIN);
}

impl Default for Replicas {
    fn default() -> Self {
        Replicas::ONE
    }
}

/// Stages the context of each new instance (the systems' `configure` and any settings of its
/// own); called once per instance made, restarts and per-call instances included.
pub type Configure = Arc<dyn Fn(&mut ContextBuilder) -> Result<(), system::Error> + Send + Sync>;

/// Everything about a supervised instance but its app.
#[derive(Clone)]
pub struct Spec {
    /// Its unique name in the runtime, if any (remote callers and named links use it).
    pub name: Option<String>,
    /// Its limits (each replica's, and the waiting bounds of the whole).
    pub limits: Limits,
    /// How many instances serve it.
    pub replicas: Replicas,
    /// What happens to a replica whose call failed.
    pub restart: Restart,
    /// Stages each new instance's context.
    pub configure: Configure,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .field("replicas", &self.replicas)
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            name: None,
            limits: Limits::default(),
            replicas: Replicas::default(),
            restart: Restart::default(),
            configure: Arc::new(|_| Ok(())),
        }
    }
}
