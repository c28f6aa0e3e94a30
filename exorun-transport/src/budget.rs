//! A byte budget shared by every connection of a server: what partly read frames, received
//! frames (calls waiting to run, with their argument slabs), replies not yet written and each
//! connection's own transport buffers (TLS records, QUIC windows) may hold together.
//!
//! Bytes are charged before they are allocated, and a charge is given back when what it pays
//! for is dropped; a message handed out of a budgeted transport carries its charge inside its
//! `Bytes` (`Bytes::from_owner`), so it is paid for exactly as long as any slice of it lives.
//! When the budget is spent a reader waits for bytes to come back (its connection stops being
//! read: backpressure) instead of allocating: the total held never exceeds the budget.
//!
//! A **share** (`Budget::share`) is a smaller budget inside a larger one: a charge takes bytes
//! from both, so a server gives each source address a share and one source can hold no more
//! than its share, however many connections it opens, while the rest stays for everyone else.
//! (The semaphore behind a budget is fair: a large charge waiting at its head holds back the
//! small ones behind it; a share keeps one source's large charges waiting on its own share,
//! not at the head of everyone's.)

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;

/// Bytes a server's connections may hold together by default: 256 MiB keeps a 2-core machine
/// with 24 GiB far from trouble while fitting sixteen frames of the largest size at once.
pub const BUDGET_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// Why bytes could not be charged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// More bytes than the whole budget (or share): they could never be charged.
    #[error("{bytes} bytes exceed the whole budget of {budget_bytes}")]
    LargerThanBudget {
        /// The bytes asked for.
        bytes: u64,
        /// The whole budget, in bytes.
        budget_bytes: u64,
    },
}

/// A shared byte budget (or a share of one); clones share it.
#[derive(Debug, Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bytes: Arc<Semaphore>,
    budget_bytes: u64,
    /// The budget this one is a share of.
    parent: Option<Budget>,
    /// Tasks waiting in `until`: only then do charges and returns wake anyone.
    watchers: AtomicUsize,
    changed: Notify,
}

/// Bytes charged to a budget (and to the budgets it is a share of), given back when dropped.
#[derive(Debug)]
pub struct Charge {
    permit: Option<OwnedSemaphorePermit>,
    budget: Option<Budget>,
    parent: Option<Box<Charge>>,
}

/// Bytes and the charge that pays for them, as the owner of a `Bytes`.
struct Charged {
    bytes: Vec<u8>,
    _charge: Charge,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Budget {
    /// A budget of `budget_bytes` bytes (at most about 2^60).
    pub fn new(budget_bytes: u64) -> Self {
        Self::within(budget_bytes, None)
    }

    fn within(budget_bytes: u64, parent: Option<Budget>) -> Self {
        let permits = usize::try_from(budget_bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let inner = Inner {
            bytes: Arc::new(Semaphore::new(permits)),
            budget_bytes: u64::try_from(permits).unwrap_or(u64::MAX),
            parent,
            watchers: AtomicUsize::new(0),
            changed: Notify::new(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// A share of this budget: at most `share_bytes` (and never more than this budget has)
    /// charged through it at once; every charge through it is charged here too.
    pub fn share(&self, share_bytes: u64) -> Budget {
        Self::within(share_bytes.min(self.budget_bytes()), Some(self.clone()))
    }

    /// The whole budget, in bytes.
    pub fn budget_bytes(&self) -> u64 {
        self.inner.budget_bytes
    }

    /// Bytes charged now, or set aside for a charge still waiting for the rest (never more than
    /// `budget_bytes`).
    pub fn held(&self) -> u64 {
        let available = u64::try_from(self.inner.bytes.available_permits()).unwrap_or(u64::MAX);
        self.inner.budget_bytes.saturating_sub(available)
    }

    /// Waits until `condition` holds of the bytes held (checked now, then at every charge and
    /// return): an event to wait on, for a caller that must not poll.
    pub async fn until(&self, condition: impl Fn(u64) -> bool) {
        self.inner.watchers.fetch_add(1, Ordering::AcqRel);
        let _unwatch = Unwatch(&self.inner);
        loop {
            let changed = self.inner.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if condition(self.held()) {
                return;
            }
            changed.await;
        }
    }

    /// Charges `bytes`, waiting for bytes to come back while the budget (or a budget it is a
    /// share of) is spent.
    pub async fn charge(&self, bytes: u64) -> Result<Charge, Error> {
        let too_large = Error::LargerThanBudget {
            bytes,
            budget_bytes: self.inner.budget_bytes,
        };
        if bytes > self.inner.budget_bytes {
            return Err(too_large);
        }
        if bytes == 0 {
            return Ok(Charge::none());
        }
        let count = u32::try_from(bytes).map_err(|_| too_large.clone())?;
        let semaphore = Arc::clone(&self.inner.bytes);
        // The semaphore is never closed, so acquiring only ever waits.
        let permit = semaphore
            .acquire_many_owned(count)
            .await
            .map_err(|_| too_large)?;
        let parent = match &self.inner.parent {
            Some(parent) => Some(Box::new(Box::pin(parent.charge(bytes)).await?)),
            None => None,
        };
        self.inner.wake();
        Ok(Charge {
            permit: Some(permit),
            budget: Some(self.clone()),
            parent,
        })
    }

    /// Charges `bytes` at once, or says it cannot now (`None`): for what must not wait.
    pub fn try_charge(&self, bytes: u64) -> Option<Charge> {
        if bytes == 0 {
            return Some(Charge::none());
        }
        let count = u32::try_from(bytes).ok()?;
        let semaphore = Arc::clone(&self.inner.bytes);
        let permit = semaphore.try_acquire_many_owned(count).ok()?;
        let parent = match &self.inner.parent {
            Some(parent) => Some(Box::new(parent.try_charge(bytes)?)),
            None => None,
        };
        self.inner.wake();
        Some(Charge {
            permit: Some(permit),
            budget: Some(self.clone()),
            parent,
        })
    }
}

impl Inner {
    fn wake(&self) {
        if self.watchers.load(Ordering::Acquire) > 0 {
            self.changed.notify_waiters();
        }
    }
}

/// Stops counting a watcher when its wait ends, however it ends.
struct Unwatch<'a>(&'a Inner);

impl Drop for Unwatch<'_> {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Charge {
    fn none() -> Self {
        Self {
            permit: None,
            budget: None,
            parent: None,
        }
    }

    /// Adds `other`'s bytes (charged to the same budget) to this charge.
    pub(crate) fn merge(&mut self, mut other: Charge) {
        let (budget, parent) = (other.budget.take(), other.parent.take());
        let Some(permit) = other.permit.take() else {
            return;
        };
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => {
                self.permit = Some(permit);
                self.budget = budget;
            }
        }
        match (&mut self.parent, parent) {
            (Some(held), Some(parent)) => held.merge(*parent),
            (held @ None, parent) => *held = parent,
            (Some(_), None) => {}
        }
    }

    /// `bytes` paid for by this charge until they are dropped: the charge travels with them.
    pub(crate) fn attach(self, bytes: Vec<u8>) -> Bytes {
        Bytes::from_owner(Charged {
            bytes,
            _charge: self,
        })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        // The bytes go back first (the permit), then whoever waits for them is woken.
        drop(self.permit.take());
        drop(self.parent.take());
        if let Some(budget) = &self.budget {
            budget.inner.wake();
        }
    }
}
