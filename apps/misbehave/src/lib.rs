//! misbehave: traps, spins forever and eats memory on request; proves traps, deadlines and memory
//! limits. Its `math` traps on an overflowing `add`: a callee that fails behind a plain interface.
//! Its guard (`exorun:auth/guard`) traps, spins or denies on command, and grants otherwise.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/misbehave-app", generate_all });

struct App;

impl exports::exorun::test::misbehave::Guest for App {
    fn trap() {
        core::arch::wasm32::unreachable()
    }

    fn spin() {
        let mut turns: u64 = 0;
        loop {
            turns = core::hint::black_box(turns.wrapping_add(1));
        }
    }

    fn hog() -> u32 {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every chunk so the memory is really used, not optimised away.
            chunks.push(vec![1u8; 1 << 20]);
            let grown = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
            if grown == u32::MAX {
                return core::hint::black_box(grown);
            }
        }
    }

    fn echo(n: u32) -> u32 {
        n
    }
}

impl exports::exorun::test::math::Guest for App {
    /// Traps (`unreachable`) when `a + b` does not fit a u32.
    fn add(a: u32, b: u32) -> u32 {
        match a.checked_add(b) {
            Some(sum) => sum,
            None => core::arch::wasm32::unreachable(),
        }
    }
}

impl exports::exorun::auth::guard::Guest for App {
    /// A guard that fails on command: the capability's bytes say what to do.
    fn check(
        request: exports::exorun::auth::guard::Request,
    ) -> Result<exports::exorun::auth::guard::Grant, String> {
        match request.capability.as_deref() {
            Some(b"trap") => core::arch::wasm32::unreachable(),
            Some(b"spin") => {
                <App as exports::exorun::test::misbehave::Guest>::spin();
                Err("the spin ended".to_owned())
            }
            Some(b"deny") => Err("told to deny".to_owned()),
            // A check that takes its time and then denies (a cold capability's signature, say):
            // costly for the guard, harmless to the replica.
            Some(slow) if slow.starts_with(b"slow") => {
                let mut spun: u64 = 0;
                for round in 0..6_000_000_u64 {
                    spun = core::hint::black_box(spun.wrapping_add(round));
                }
                Err(format!("slow, after {} rounds", spun % 7))
            }
            _ => Ok(exports::exorun::auth::guard::Grant {
                caveats: vec![format!("function={}", request.function)],
                not_after: u64::MAX,
            }),
        }
    }
}

export!(App);
