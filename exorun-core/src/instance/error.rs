//! What a call on an instance fails with, and how an error out of wasmtime (or a host
//! function under it) is classified into it.

use std::sync::Arc;

use wasmtime::Trap;
use wasmtime::WasmBacktrace;

use crate::limits;
use crate::system::Rejection;

use super::InstanceId;

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
    /// Every replica stayed busy for longer than the lock wait.
    #[error("{instance} stayed busy for {waited_ms} ms")]
    Busy {
        /// The instance concerned.
        instance: InstanceId,

        /// How long the call waited, in milliseconds.
        waited_ms: u64,
    },
    /// As many calls as the limit already wait for the instance; this one was refused at once.
    #[error("{instance} already has {calls_waiting_max} calls waiting")]
    TooManyWaiting {
        /// The instance concerned.
        instance: InstanceId,
        /// The limit.
        calls_waiting_max: usize,
    },
    /// The calls waiting for the instance would hold more argument bytes than the limit.
    #[error("{instance}: calls waiting would hold more than {bytes_waiting_max} bytes")]
    TooManyBytesWaiting {
        /// The instance concerned.
        instance: InstanceId,
        /// The limit, in bytes.
        bytes_waiting_max: u64,
    },
    /// A replica failed and is waiting out its back-off before a restart; `cause` is why.
    #[error("{instance} is restarting in {retry_in_ms} ms after: {cause}")]
    BackingOff {
        /// The instance concerned.
        instance: InstanceId,
        /// How long until the replica may be restarted, in milliseconds.
        retry_in_ms: u64,
        /// The failure that caused the restart.
        cause: Box<Error>,
    },
    /// A call never returned to us (its future was dropped, or a host function panicked),
    /// leaving the guest mid-way: the cause of a replica's restart or failure.
    #[error("a call was cancelled or panicked before it returned")]
    Interrupted,
    /// An earlier call failed and the restart policy is `Never`.
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
    /// An instance this one called through a local link failed (and so this call did): which
    /// one, and why. The callee is restarted for its own failure, and this instance, unwound
    /// by its import's error, is restarted too (see `supervision`).
    #[error("callee `{instance}` failed: {cause}")]
    Callee {
        /// The callee, by its name (or id, if it has none).
        instance: String,
        /// Why the callee's call failed.
        cause: Box<Error>,
    },
    /// A resource handle named a resource that no longer exists: the replica that made it was
    /// restarted, or the instance was stopped, or its owner cannot be reached.
    #[error("the {resource} this handle named is gone")]
    ResourceGone {
        /// The resource's name (e.g. `counter`).
        resource: String,
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

impl Error {
    /// This error, as the caller of the instance it came from sees it through a local link.
    pub fn in_callee(self, callee: &super::InstanceHandle) -> Error {
        let instance = callee
            .name()
            .map_or_else(|| callee.id().to_string(), str::to_owned);
        Error::Callee {
            instance,
            cause: Box::new(self),
        }
    }

    /// The failure at the root of a chain of callees (this error itself when it is none).
    pub fn root_cause(&self) -> &Error {
        let mut error = self;
        while let Error::Callee { cause, .. } = error {
            error = cause;
        }
        error
    }
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
pub(crate) fn classify(error: wasmtime::Error) -> Error {
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
