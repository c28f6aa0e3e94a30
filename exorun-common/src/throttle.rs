//! `Throttle`: logs a repeated event at most once per [`EVERY`], counting the ones not logged,
//! so what a peer or guest can repeat (stray frames, refused connections or requests, failed
//! handlers) cannot flood the log. Lock-free, usable as a `static` beside the line it guards.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

/// At most one log line per this long for one throttled event.
pub const EVERY: Duration = Duration::from_secs(1);

/// A throttled event: when it was last logged and how many since were not.
#[derive(Debug)]
pub struct Throttle {
    /// Milliseconds since the process's first throttled event, plus one (0: never logged).
    last_ms: AtomicU64,
    skipped: AtomicU64,
}

impl Throttle {
    /// A throttle that has logged nothing yet.
    pub const fn new() -> Self {
        Self {
            last_ms: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Runs `log` with the count of events not logged since the last line, if a line is due;
    /// otherwise counts this one.
    pub fn note(&self, log: impl FnOnce(u64)) {
        let now_ms = since_start_ms().saturating_add(1);
        let every_ms = crate::millis(EVERY);
        let last_ms = self.last_ms.load(Ordering::Acquire);
        let due = last_ms == 0 || now_ms.saturating_sub(last_ms) >= every_ms;
        let claimed = due
            && self
                .last_ms
                .compare_exchange(last_ms, now_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if !claimed {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        log(self.skipped.swap(0, Ordering::Relaxed));
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

fn since_start_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    crate::millis(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_logs_once_and_counts_the_rest() {
        let throttle = Throttle::new();
        let mut lines = Vec::new();
        for _ in 0..10_000 {
            throttle.note(|skipped| lines.push(skipped));
        }
        assert_eq!(lines, vec![0], "one line for the burst");
        assert_eq!(throttle.skipped.load(Ordering::Relaxed), 9_999);
    }
}
