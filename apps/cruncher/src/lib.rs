//! cruncher: `crunch(rounds)` mixes a 64-bit state for that many rounds (CPU work, no imports);
//! `tally()` counts its calls in this instance (state that a fresh instance does not have);
//! `spill(n)` returns n bytes (a reply much larger than its call).
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/cruncher", generate_all });

use core::sync::atomic::AtomicU32;
use core::sync::atomic::Ordering;

/// This instance's calls of `tally`.
static TALLY: AtomicU32 = AtomicU32::new(0);

struct App;

impl exports::exorun::test::crunch::Guest for App {
    fn crunch(rounds: u32) -> u64 {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..rounds {
            // xorshift-multiply: cheap, data-dependent, not foldable by the compiler.
            state ^= state >> 33;
            state = state.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
            state ^= u64::from(round);
        }
        state
    }

    fn tally() -> u32 {
        TALLY.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn spill(bytes: u32) -> String {
        "Z".repeat(usize::try_from(bytes).unwrap_or(0))
    }
}

export!(App);
