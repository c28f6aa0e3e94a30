//! A byte budget shared by every connection of a server: what partly read frames and received
//! frames (calls waiting to run, with their argument slabs) may hold together.
//!
//! Bytes are charged before they are allocated, and a charge is given back when what it pays
//! for is dropped; a message handed out of a budgeted transport carries its charge inside its
//! `Bytes` (`Bytes::from_owner`), so it is paid for exactly as long as any slice of it lives.
//! When the budget is spent a reader waits for bytes to come back (its connection stops being
//! read: backpressure) instead of allocating: the total held never exceeds the budget.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;

/// Bytes a server's connections may hold together by default: 256 MiB keeps a 2-core machine
/// with 24 GiB far from trouble while fitting sixteen frames of the largest size at once.
pub const BUDGET_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// Why bytes could not be charged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// More bytes than the whole budget: they could never be charged.
    #[error("{bytes} bytes exceed the whole budget of {budget_bytes}")]
    LargerThanBudget {
        /// The bytes asked for.
        bytes: u64,
        /// The whole budget, in bytes.
        budget_bytes: u64,
    },
}

/// A shared byte budget; clones share it.
#[derive(Debug, Clone)]
pub struct Budget {
    bytes: Arc<Semaphore>,
    budget_bytes: u64,
}

/// Bytes charged to a budget, given back when dropped.
#[derive(Debug)]
pub struct Charge {
    permit: Option<OwnedSemaphorePermit>,
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
        let permits = usize::try_from(budget_bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(permits)),
            budget_bytes: u64::try_from(permits).unwrap_or(u64::MAX),
        }
    }

    /// The whole budget, in bytes.
    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }

    /// Bytes charged now, or set aside for a charge still waiting for the rest (never more than
    /// `budget_bytes`).
    pub fn held(&self) -> u64 {
        let available = u64::try_from(self.bytes.available_permits()).unwrap_or(u64::MAX);
        self.budget_bytes.saturating_sub(available)
    }

    /// Charges `bytes`, waiting for bytes to come back while the budget is spent.
    pub async fn charge(&self, bytes: u64) -> Result<Charge, Error> {
        let too_large = Error::LargerThanBudget {
            bytes,
            budget_bytes: self.budget_bytes,
        };
        if bytes > self.budget_bytes {
            return Err(too_large);
        }
        if bytes == 0 {
            return Ok(Charge { permit: None });
        }
        let count = u32::try_from(bytes).map_err(|_| too_large.clone())?;
        let bytes = Arc::clone(&self.bytes);
        // The semaphore is never closed, so acquiring only ever waits.
        let permit = bytes
            .acquire_many_owned(count)
            .await
            .map_err(|_| too_large)?;
        Ok(Charge {
            permit: Some(permit),
        })
    }
}

impl Charge {
    /// Adds `other`'s bytes to this charge.
    pub(crate) fn merge(&mut self, other: Charge) {
        let Some(other) = other.permit else {
            return;
        };
        match &mut self.permit {
            Some(permit) => permit.merge(other),
            None => self.permit = Some(other),
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
