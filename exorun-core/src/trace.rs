//! The trace the current call belongs to: W3C trace context (a trace id and the current span's
//! id), carried in a task-local the way the call chain is. A serving runtime enters it for each
//! call it received with one (its own span a child of the caller's); a remote link writes it
//! into the calls it makes, starting a trace when there is none; host functions (guest logs)
//! read it. No exporter here: spans are `tracing` lines that name their ids.

use std::hash::BuildHasher;
use std::hash::Hasher;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

tokio::task_local! {
    static SPAN: Span;
}

/// One span of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// The trace it belongs to.
    pub trace_id: [u8; 16],
    /// Its own id.
    pub span_id: [u8; 8],
    /// Its parent's id (all zero: the root).
    pub parent_id: [u8; 8],
    /// W3C trace flags (bit 0: sampled).
    pub flags: u8,
}

/// Eight bytes no other call of this process drew, unpredictable across processes (a randomly
/// keyed hash of a counter; ids need to be unique, not secret).
fn random_bytes() -> [u8; 8] {
    static STATE: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let mut hasher = STATE.get_or_init(Default::default).build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish().to_le_bytes()
}

impl Span {
    /// The root span of a new trace (sampled).
    pub fn root() -> Self {
        let mut trace_id = [0; 16];
        trace_id[..8].copy_from_slice(&random_bytes());
        trace_id[8..].copy_from_slice(&random_bytes());
        Self {
            trace_id,
            span_id: random_bytes(),
            parent_id: [0; 8],
            flags: 1,
        }
    }

    /// A new span of trace `trace_id` whose parent is the span `parent_id`.
    pub fn child_of(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Self {
        Self {
            trace_id,
            span_id: random_bytes(),
            parent_id,
            flags,
        }
    }

    /// The trace id, shown in lowercase hex (as W3C `traceparent` writes it) only when
    /// formatted: a log line that is not written costs nothing.
    pub fn trace_hex(&self) -> Hex<'_> {
        Hex(&self.trace_id)
    }

    /// The span id, shown in lowercase hex.
    pub fn span_hex(&self) -> Hex<'_> {
        Hex(&self.span_id)
    }

    /// The parent's id, shown in lowercase hex.
    pub fn parent_hex(&self) -> Hex<'_> {
        Hex(&self.parent_id)
    }
}

/// Bytes shown in lowercase hex.
pub struct Hex<'a>(&'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// The span of the current call, if it belongs to a trace.
pub fn current() -> Option<Span> {
    SPAN.try_with(|span| *span).ok()
}

/// Runs `work` as span `span`: every remote call it makes is that span's child.
pub async fn within<F: Future>(span: Span, work: F) -> F::Output {
    SPAN.scope(span, work).await
}
