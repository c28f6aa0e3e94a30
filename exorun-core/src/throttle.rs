//! `Throttle`: whether a line about a repeated event may be logged now, at most once a second
//! per throttle, so what a peer or guest can repeat (a refused request, a failed handler)
//! cannot flood the log. Lock-free; meant as a `static` beside the line it guards.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// One throttled line: the second (counted from the process's first use, plus one) it was
/// last logged in.
#[derive(Debug)]
pub struct Throttle {
    second: AtomicU64,
}

impl Throttle {
    /// A throttle that has logged nothing yet.
    pub const fn new() -> Self {
        Self {
            second: AtomicU64::new(0),
        }
    }

    /// Whether the line may be logged now: the first call in each second says yes.
    pub fn due(&self) -> bool {
        static START: OnceLock<Instant> = OnceLock::new();
        let start = START.get_or_init(Instant::now);
        let now = start.elapsed().as_secs().saturating_add(1);
        let last = self.second.load(Ordering::Relaxed);
        last < now
            && self
                .second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second() {
        let throttle = Throttle::new();
        assert!(throttle.due());
        let more = (0..1000).filter(|_| throttle.due()).count();
        // A second may turn over during the loop: at most one more line.
        assert!(more <= 1, "{more}");
    }
}
