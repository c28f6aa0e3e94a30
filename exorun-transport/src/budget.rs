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
//!
//! A **reserve** (an eighth of a whole budget) is kept for small charges (at most
//! `SMALL_CHARGE_BYTES_MAX`: read buffers, connection buffers, ordinary frames and replies):
//! every charge passes through the **open** seven eighths first, and only a small one may go
//! past it, into the reserve, when the open bytes are spent (or set aside for a large charge
//! waiting at their head). So sources holding every open byte between them (each within its
//! share, many shares adding up to the whole) cannot keep another source from reading its
//! call and writing its reply. Each share holds at most `RESERVE_PER_SHARE_BYTES` of the
//! reserve, so no one source takes it either: the reserve stays open while fewer than
//! reserve / `RESERVE_PER_SHARE_BYTES` sources (32 with the default budget) hold some.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;

/// Bytes a server's connections may hold together by default: 256 MiB keeps a 2-core machine
/// with 24 GiB far from trouble while fitting thirteen frames of the largest size in its open
/// bytes at once.
pub const BUDGET_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// The part of a whole budget kept for small charges, as a fraction (1/8).
pub const RESERVE_DIVISOR: u64 = 8;
/// The largest charge that may go into the reserve: a read buffer, a connection's TLS or QUIC
/// buffers, a frame or reply of up to 1 MiB (what a caller making ordinary calls needs; a
/// flood of large frames gets at most its share's part of the reserve).
pub const SMALL_CHARGE_BYTES_MAX: u64 = 1024 * 1024;
/// The most of the reserve one share (one source) holds at once: a connection's buffers (a
/// QUIC connection's 592 KiB included), its read buffer and small calls and replies, so a
/// reserve of 32 MiB (the default budget's) stays open to at least 32 sources at once.
pub const RESERVE_PER_SHARE_BYTES: u64 = 1024 * 1024;

/// Why bytes could not be charged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// More bytes than one charge may ever take (`Budget::charge_bytes_max`: the budget less
    /// its reserve, or a share's bytes): they could never be charged.
    #[error("{bytes} bytes exceed the {budget_bytes} one charge may take of the budget")]
    LargerThanBudget {
        /// The bytes asked for.
        bytes: u64,
        /// The most one charge may take, in bytes.
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
    /// Every byte of the budget (or share): what is charged now, and what waits to be.
    bytes: Arc<Semaphore>,
    /// A whole budget's open bytes (all but its reserve), which every charge passes first:
    /// `None` on a share.
    open: Option<Arc<Semaphore>>,
    /// A share's bytes of its whole budget's reserve that its charges hold now.
    reserved: AtomicU64,
    budget_bytes: u64,
    /// The budget this one is a share of.
    parent: Option<Budget>,
    /// Tasks waiting in `until`: only then do charges and returns wake anyone.
    watchers: AtomicUsize,
    changed: Notify,
}

/// Bytes charged to a budget (and to the budgets it is a share of), given back when dropped.
#[derive(Debug, Default)]
pub struct Charge {
    pieces: Vec<Piece>,
}

/// What a charge holds of one budget: its bytes, and the open bytes (or the claim on the
/// reserve) they passed through.
#[derive(Debug)]
struct Piece {
    permit: OwnedSemaphorePermit,
    passed: Passed,
    /// The budget to wake when they come back.
    budget: Budget,
}

/// How a piece's bytes got into a budget.
#[derive(Debug)]
enum Passed {
    /// A share's bytes: nothing to pass.
    Share,
    /// Through the whole budget's open bytes.
    Open(OwnedSemaphorePermit),
    /// Into the reserve, counted against a share (if any) while it is held.
    Reserve { _claim: Option<Reserved> },
}

/// Reserve bytes counted against a share, uncounted when dropped.
#[derive(Debug)]
struct Reserved {
    share: Budget,
    bytes: u64,
}

/// Bytes and the charge that pays for them, as the owner of a `Bytes`.
struct Charged<T> {
    bytes: T,
    _charge: Charge,
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Charged<T> {
    fn as_ref(&self) -> &[u8] {
        self.bytes.as_ref()
    }
}

impl Budget {
    /// A budget of `budget_bytes` bytes (at most about 2^60), an eighth of it kept for small
    /// charges.
    pub fn new(budget_bytes: u64) -> Self {
        Self::within(budget_bytes, None)
    }

    fn within(budget_bytes: u64, parent: Option<Budget>) -> Self {
        let permits = usize::try_from(budget_bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let reserve = usize::try_from(RESERVE_DIVISOR).unwrap_or(usize::MAX);
        let open = match parent {
            Some(_) => None,
            None => Some(Arc::new(Semaphore::new(permits - permits / reserve))),
        };
        let inner = Inner {
            bytes: Arc::new(Semaphore::new(permits)),
            open,
            reserved: AtomicU64::new(0),
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

    /// The whole budget (or share), in bytes.
    pub fn budget_bytes(&self) -> u64 {
        self.inner.budget_bytes
    }

    /// The largest charge that can ever be met: a whole budget's open bytes (a larger one
    /// could only be met from the reserve, which is for small ones), or a share's bytes within
    /// those of the budget it is a share of.
    pub fn charge_bytes_max(&self) -> u64 {
        let own = match &self.inner.open {
            Some(_) => self.inner.budget_bytes - self.inner.budget_bytes / RESERVE_DIVISOR,
            None => self.inner.budget_bytes,
        };
        let Some(parent) = &self.inner.parent else {
            return own.max(SMALL_CHARGE_BYTES_MAX.min(self.inner.budget_bytes));
        };
        own.min(parent.charge_bytes_max())
    }

    /// Bytes charged now, or set aside for a charge still waiting for the rest (never more than
    /// `budget_bytes`).
    pub fn held(&self) -> u64 {
        let available = self.inner.bytes.available_permits();
        let available = u64::try_from(available).unwrap_or(u64::MAX);
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
    /// share of) is spent; a small charge goes into the reserve rather than wait for open
    /// bytes.
    pub async fn charge(&self, bytes: u64) -> Result<Charge, Error> {
        let too_large = Error::LargerThanBudget {
            bytes,
            budget_bytes: self.charge_bytes_max(),
        };
        if bytes > self.charge_bytes_max() {
            return Err(too_large);
        }
        if bytes == 0 {
            return Ok(Charge::default());
        }
        let count = u32::try_from(bytes).map_err(|_| too_large.clone())?;
        let Some(parent) = &self.inner.parent else {
            let piece = self.charge_whole(count, None).await;
            return piece.map(Charge::of).ok_or(too_large);
        };
        // Semaphores here are never closed, so acquiring only ever waits.
        let own = Arc::clone(&self.inner.bytes)
            .acquire_many_owned(count)
            .await;
        let own = own.map_err(|_| too_large.clone())?;
        self.inner.wake();
        let whole = Box::pin(parent.charge_whole(count, Some(self))).await;
        let whole = whole.ok_or(too_large)?;
        Ok(Charge {
            pieces: vec![self.piece(own, Passed::Share), whole],
        })
    }

    /// Charges `bytes` at once, or says it cannot now (`None`): for what must not wait.
    pub fn try_charge(&self, bytes: u64) -> Option<Charge> {
        if bytes == 0 {
            return Some(Charge::default());
        }
        if bytes > self.charge_bytes_max() {
            return None;
        }
        let count = u32::try_from(bytes).ok()?;
        let Some(parent) = &self.inner.parent else {
            return self.try_charge_whole(count, None).map(Charge::of);
        };
        let own = Arc::clone(&self.inner.bytes)
            .try_acquire_many_owned(count)
            .ok()?;
        self.inner.wake();
        let whole = parent.try_charge_whole(count, Some(self))?;
        Some(Charge {
            pieces: vec![self.piece(own, Passed::Share), whole],
        })
    }

    /// A whole budget's piece of `count` bytes asked for through `share` (if any): through the
    /// open bytes, or (a small charge, within the share's part of the reserve) into the reserve
    /// when they are spent, else waiting for open bytes; then the bytes themselves (waiting
    /// only while the reserve, too, is spent). `None`: never (a closed semaphore).
    async fn charge_whole(&self, count: u32, share: Option<&Budget>) -> Option<Piece> {
        let passed = match self.pass(count, share) {
            Some(passed) => passed,
            None => {
                let open = self.inner.open.as_ref()?;
                Passed::Open(Arc::clone(open).acquire_many_owned(count).await.ok()?)
            }
        };
        let permit = Arc::clone(&self.inner.bytes)
            .acquire_many_owned(count)
            .await
            .ok()?;
        self.inner.wake();
        Some(self.piece(permit, passed))
    }

    /// `charge_whole`, without waiting.
    fn try_charge_whole(&self, count: u32, share: Option<&Budget>) -> Option<Piece> {
        let passed = self.pass(count, share)?;
        let permit = Arc::clone(&self.inner.bytes)
            .try_acquire_many_owned(count)
            .ok()?;
        self.inner.wake();
        Some(self.piece(permit, passed))
    }

    /// Lets `count` bytes into a whole budget at once, through its open bytes or (a small
    /// charge) into its reserve, or says they must wait for open bytes (`None`).
    fn pass(&self, count: u32, share: Option<&Budget>) -> Option<Passed> {
        let open = self.inner.open.as_ref()?;
        if let Ok(permit) = Arc::clone(open).try_acquire_many_owned(count) {
            return Some(Passed::Open(permit));
        }
        let bytes = u64::from(count);
        if bytes > SMALL_CHARGE_BYTES_MAX {
            return None;
        }
        // Counted against the share first, so two charges at once cannot both pass its bound.
        match share {
            Some(share) => Some(Passed::Reserve {
                _claim: Some(share.claim_reserve(bytes)?),
            }),
            None => Some(Passed::Reserve { _claim: None }),
        }
    }

    fn piece(&self, permit: OwnedSemaphorePermit, passed: Passed) -> Piece {
        Piece {
            permit,
            passed,
            budget: self.clone(),
        }
    }

    /// Counts `bytes` of the reserve against this share, if that keeps it within
    /// `RESERVE_PER_SHARE_BYTES`; uncounted when the claim is dropped.
    fn claim_reserve(&self, bytes: u64) -> Option<Reserved> {
        let within = |held: u64| {
            let now = held.checked_add(bytes)?;
            (now <= RESERVE_PER_SHARE_BYTES).then_some(now)
        };
        let reserved = &self.inner.reserved;
        reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, within)
            .ok()?;
        Some(Reserved {
            share: self.clone(),
            bytes,
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

impl Drop for Reserved {
    fn drop(&mut self) {
        let reserved = &self.share.inner.reserved;
        reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Charge {
    fn of(piece: Piece) -> Self {
        Self {
            pieces: vec![piece],
        }
    }

    /// Adds `other`'s bytes to this charge (pieces of one budget that passed the same way
    /// become one).
    pub(crate) fn merge(&mut self, mut other: Charge) {
        for piece in std::mem::take(&mut other.pieces) {
            let same = self.pieces.iter_mut().find(|held| {
                let alike = matches!(
                    (&held.passed, &piece.passed),
                    (Passed::Share, Passed::Share) | (Passed::Open(_), Passed::Open(_))
                );
                alike && Arc::ptr_eq(&held.budget.inner, &piece.budget.inner)
            });
            let Some(held) = same else {
                self.pieces.push(piece);
                continue;
            };
            let Piece { permit, passed, .. } = piece;
            held.permit.merge(permit);
            if let (Passed::Open(open), Passed::Open(more)) = (&mut held.passed, passed) {
                open.merge(more);
            }
        }
    }

    /// `bytes` paid for by this charge until they are dropped: the charge travels with them.
    pub(crate) fn attach<T>(self, bytes: T) -> Bytes
    where
        T: AsRef<[u8]> + Send + 'static,
    {
        Bytes::from_owner(Charged {
            bytes,
            _charge: self,
        })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        // Each piece's bytes are given back, then whoever waits on its budget is woken. A whole
        // budget's pieces go back before a share's: the other way round, a charge through the
        // same share could take the share's bytes, then the whole's, while the whole still
        // held these, and the whole would for a moment hold more of the share than the share
        // is (seen under load as a few read buffers over).
        let whole = |piece: &mut Piece| piece.budget.inner.parent.is_none();
        self.pieces.extract_if(.., whole).for_each(Piece::give_back);
        self.pieces.drain(..).for_each(Piece::give_back);
    }
}

impl Piece {
    /// Gives the bytes back, then wakes whoever waits on the budget.
    fn give_back(self) {
        let budget = self.budget.clone();
        drop(self);
        budget.inner.wake();
    }
}
