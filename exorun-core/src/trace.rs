//! Traces: W3C trace context (a trace id and the current span's id), which the current call
//! carries in its context (`call::Context::span`). A serving runtime enters it for each call it
//! received with one (its own span a child of the caller's); a remote link writes it into the
//! calls it makes, starting a trace when there is none; host functions (guest logs) read it. Spans are `tracing` lines that name their ids and, when an embedder installs an
//! [`Exporter`] (the `exorun` command's `--otlp`), finished spans handed to it; without one
//! nothing is built. Roots are sampled at the ratio [`set_sampling`] sets (every one by
//! default); a child keeps its parent's decision, so a trace is exported whole or not at all.

use std::hash::BuildHasher;
use std::hash::Hasher;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::SystemTime;

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
    /// The root span of a new trace, sampled at the ratio [`set_sampling`] set.
    pub fn root() -> Self {
        let mut trace_id = [0; 16];
        let high = random_bytes();
        trace_id[..8].copy_from_slice(&high);
        trace_id[8..].copy_from_slice(&random_bytes());
        // The same draw for every runtime that sees this trace id: the high half, compared
        // with the threshold (W3C's trace-id ratio sampling reads the id the same way).
        let sampled = !SAMPLE_NONE.load(Ordering::Relaxed)
            && u64::from_be_bytes(high) <= SAMPLE_BELOW.load(Ordering::Relaxed);
        Self {
            trace_id,
            span_id: random_bytes(),
            parent_id: [0; 8],
            flags: u8::from(sampled),
        }
    }

    /// Whether this span's trace is sampled (W3C flag bit 0): exported when an exporter is
    /// installed.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
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
#[derive(Debug)]
pub struct Hex<'a>(&'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// Roots whose draw is at most this are sampled (`u64::MAX`: all of them).
static SAMPLE_BELOW: AtomicU64 = AtomicU64::new(u64::MAX);
/// Whether no new trace is sampled (ratio 0: not even a draw of 0, which `<=` would take).
static SAMPLE_NONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Samples new root spans at `ratio` (clamped to 0..=1; 1, the default, samples every trace,
/// 0 none). Traces begun elsewhere keep the decision their caller's flags carry.
pub fn set_sampling(ratio: f64) {
    let ratio = if ratio.is_nan() {
        0.0
    } else {
        ratio.clamp(0.0, 1.0)
    };
    let below = if ratio >= 1.0 {
        u64::MAX
    } else {
        // 2^64 * ratio, below 2^64 here; the float-to-integer conversion truncates.
        #[expect(
            clippy::as_conversions,
            reason = "f64 to u64 has no From; the value is in range, truncation intended"
        )]
        let scaled = (ratio * 18_446_744_073_709_551_616.0) as u64;
        scaled
    };
    SAMPLE_BELOW.store(below, Ordering::Relaxed);
    SAMPLE_NONE.store(ratio <= 0.0, Ordering::Relaxed);
}

/// Which side of a call a span stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A call this runtime made (a remote link's call).
    Client,
    /// A call this runtime served.
    Server,
}

/// A finished span, as an [`Exporter`] is handed it.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// Its ids and flags.
    pub span: Span,
    /// Whether it made or served the call.
    pub kind: Kind,
    /// What it is: `remote call` or `served call`.
    pub name: &'static str,
    /// When it started (wall clock, as collectors expect).
    pub started: SystemTime,
    /// How long it took.
    pub elapsed: Duration,
    /// What it was about: target or export, method or interface and function.
    pub attributes: &'a [(&'static str, &'a str)],
    /// How it ended: `ok`, or the failure's name.
    pub outcome: &'a str,
}

/// Where finished, sampled spans go (an OTLP exporter, in the `exorun` command). It is called
/// on the task that ran the call, so it must not block: queue and return.
pub trait Exporter: Send + Sync {
    /// Takes one finished span.
    fn export(&self, finished: &Finished<'_>);
}

static EXPORTER: std::sync::OnceLock<Box<dyn Exporter>> = std::sync::OnceLock::new();

/// Installs the process's exporter; only the first one is kept (`false` when one was there).
pub fn set_exporter(exporter: Box<dyn Exporter>) -> bool {
    EXPORTER.set(exporter).is_ok()
}

/// Whether a finished span of `span` would be exported: an exporter is installed and the
/// span is sampled. Callers check this before they read the clock for [`finish`].
pub fn exporting(span: &Span) -> bool {
    span.sampled() && EXPORTER.get().is_some()
}

/// Hands a finished span to the exporter, if one is installed and the span is sampled.
pub fn finish(finished: &Finished<'_>) {
    if !finished.span.sampled() {
        return;
    }
    let Some(exporter) = EXPORTER.get() else {
        return;
    };
    exporter.export(finished);
}
