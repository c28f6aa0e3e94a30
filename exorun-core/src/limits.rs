//! Per-instance limits and the `ResourceLimiter` that enforces memory and table bounds.
//!
//! A guest that grows memory or a table past its limit traps with `Exceeded`, which
//! `instance::Error` reports as `OutOfMemory`; a guest that burns its fuel for one call traps
//! with wasmtime's `Trap::OutOfFuel`, reported as `OutOfFuel`.

use std::time::Duration;

/// Fuel one call may burn by default: about a second of straight-line guest work on the 2-core
/// machines, far beyond any test app's real calls, yet a spinning guest stops promptly.
pub const FUEL_PER_CALL: u64 = 2_000_000_000;
/// Fuel between cooperative yields to the async executor, so a busy guest cannot starve other
/// tasks on its thread (about a millisecond of guest work).
pub const FUEL_YIELD_INTERVAL: u64 = 1_000_000;
/// Linear memory one instance may hold by default: 64 MiB covers every test app many times over.
pub const MEMORY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Table elements one instance may hold by default.
pub const TABLE_ELEMENTS_MAX: usize = 100_000;
/// Host resources one store may hold at once (its resource table: WASI streams, HTTP fields,
/// key-value buckets, stand-ins for handles across links). One more is refused, and the host
/// function that asked traps the guest's call: a guest cannot grow host memory without bound
/// by making resources it never drops.
pub const HOST_RESOURCES_MAX: usize = 100_000;
/// Longest a call waits for an instance that another call is using, before failing `Busy`.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);
/// Most calls waiting for one instance (or pool) at once; one more is refused `Overloaded` at
/// once. 1,024 waiting calls ride out a burst, such as the calls that queued in a peer while
/// it reconnected to a restarted server (the soak bench: about 100 at 1,000 calls a second, 64
/// refused more than half of them), or a server's 256 calls in flight on four connections,
/// while a flood of callers is still told no in microseconds instead of after the lock wait;
/// their memory is bounded by `BYTES_WAITING_MAX` whatever their number.
pub const CALLS_WAITING_MAX: usize = 1024;
/// Most bytes of arguments that calls waiting for one instance (or pool) may hold, as their
/// callers weigh them (a server counts each waiting call's argument slab): 64 MiB lets the
/// 1,024 waiting calls carry 64 KiB each (or 64 of them 1 MiB) while bounding a pipelining peer far below the frame limit
/// times the calls in flight.
pub const BYTES_WAITING_MAX: u64 = 64 * 1024 * 1024;

/// Limits of one instance, set explicitly when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel each call starts with.
    pub fuel_per_call: u64,
    /// Largest total size of one linear memory, in bytes.
    pub memory_bytes_max: usize,
    /// Largest number of elements in one table.
    pub table_elements_max: usize,
    /// Longest wait for the instance's lock.
    pub lock_wait: Duration,
    /// Most calls waiting for the instance (or pool) at once.
    pub calls_waiting_max: usize,
    /// Most argument bytes the waiting calls may hold together.
    pub bytes_waiting_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel_per_call: FUEL_PER_CALL,
            memory_bytes_max: MEMORY_BYTES_MAX,
            table_elements_max: TABLE_ELEMENTS_MAX,
            lock_wait: LOCK_WAIT,
            calls_waiting_max: CALLS_WAITING_MAX,
            bytes_waiting_max: BYTES_WAITING_MAX,
        }
    }
}

/// A guest asked for more than its limits allow; raised as a trap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    /// A memory grow past `memory_bytes_max`.
    #[error("memory of {desired_bytes} bytes exceeds the limit of {max_bytes}")]
    Memory {
        /// The size asked for, in bytes.
        desired_bytes: usize,

        /// The limit, in bytes.
        max_bytes: usize,
    },
    /// A table grow past `table_elements_max`.
    #[error("table of {desired_elements} elements exceeds the limit of {max_elements}")]
    Table {
        /// The size asked for, in elements.
        desired_elements: usize,

        /// The limit, in elements.
        max_elements: usize,
    },
}

/// Enforces `Limits` on one store.
#[derive(Debug, Clone, Copy)]
pub struct Limiter {
    memory_bytes_max: usize,
    table_elements_max: usize,
    grown_bytes: usize,
}

impl Limiter {
    /// A limiter for `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            memory_bytes_max: limits.memory_bytes_max,
            table_elements_max: limits.table_elements_max,
            grown_bytes: 0,
        }
    }

    /// The linear memory the store's instance holds, in bytes (what its memories grew to).
    pub fn memory_bytes(&self) -> usize {
        self.grown_bytes
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            let exceeded = Exceeded::Memory {
                desired_bytes: desired,
                max_bytes: self.memory_bytes_max,
            };
            return Err(wasmtime::Error::new(exceeded));
        }
        self.grown_bytes = self
            .grown_bytes
            .saturating_add(desired.saturating_sub(current));
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements_max {
            let exceeded = Exceeded::Table {
                desired_elements: desired,
                max_elements: self.table_elements_max,
            };
            return Err(wasmtime::Error::new(exceeded));
        }
        Ok(true)
    }
}
