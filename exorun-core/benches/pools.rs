//! What replicas and per-call instances cost and buy, measured in one run:
//! - throughput of a CPU-heavy guest call (cruncher's `crunch`) from 8 concurrent callers,
//!   with 1 replica and with 2, on a 2-worker runtime, and their ratio;
//! - the time of a trivial call (cruncher's `tally`) on a kept replica and on a fresh per-call
//!   instance; the difference is what making an instance costs per call.
//!
//! Run: `cargo bench -p exorun-core --bench pools` (after `bash scripts/build_apps.sh`).
//! BENCHMARKS.md records a run.

use std::num::NonZeroUsize;
use std::time::Duration;
use std::time::Instant;

use exorun_core::instance::InstanceHandle;
use exorun_core::runtime::Runtime;
use exorun_core::supervision::Replicas;
use exorun_core::supervision::Spec;
use exorun_testkit::fixtures;
use wasmtime::component::Linker;
use wasmtime::component::Val;

const CRUNCH: &str = "exorun:test/crunch";
/// Rounds of one `crunch` call: a few milliseconds of guest work.
const ROUNDS: u32 = 2_000_000;
/// `crunch` calls per throughput row, spread over `CALLERS` concurrent callers.
const CRUNCHES: usize = 400;
const CALLERS: usize = 8;
/// `tally` calls per latency row.
const TALLIES: u32 = 4_000;

async fn start(runtime: &Runtime, replicas: Replicas) -> InstanceHandle {
    let path = fixtures::path("cruncher").unwrap_or_else(|error| panic!("{error}"));
    let app = runtime.add_app_file("cruncher", &path).expect("cruncher");
    let prepared = runtime
        .prepare(app, &Linker::new(runtime.engine()))
        .expect("prepared");
    let spec = Spec {
        replicas,
        ..Spec::default()
    };
    runtime.start(&prepared, spec).await.expect("started")
}

/// Calls per second of `crunch(ROUNDS)` from `CALLERS` concurrent callers.
async fn crunch_rate(handle: &InstanceHandle) -> f64 {
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..CALLERS {
        let handle = handle.clone();
        callers.spawn(async move {
            for _ in 0..CRUNCHES / CALLERS {
                let mut results = [Val::U64(0)];
                let rounds = [Val::U32(ROUNDS)];
                handle
                    .call(CRUNCH, "crunch", &rounds, &mut results)
                    .await
                    .expect("crunch");
            }
        });
    }
    while let Some(caller) = callers.join_next().await {
        caller.expect("caller");
    }
    let calls = f64::from(u32::try_from(CRUNCHES).expect("fits"));
    calls / started.elapsed().as_secs_f64()
}

/// Mean time of one `tally` call.
async fn tally_time(handle: &InstanceHandle) -> Duration {
    let mut results = [Val::U32(0)];
    for _ in 0..100 {
        handle
            .call(CRUNCH, "tally", &[], &mut results)
            .await
            .expect("warm-up");
    }
    let started = Instant::now();
    for _ in 0..TALLIES {
        handle
            .call(CRUNCH, "tally", &[], &mut results)
            .await
            .expect("tally");
    }
    started.elapsed() / TALLIES
}

async fn run() {
    let runtime = Runtime::new().expect("runtime");
    let two = NonZeroUsize::new(2).expect("two");
    let one = crunch_rate(&start(&runtime, Replicas::ONE).await).await;
    let pair = crunch_rate(&start(&runtime, Replicas::Fixed(two)).await).await;
    println!("{:<44} {:>12}", "crunch, 8 callers", "calls/s");
    println!("{:<44} {one:>12.1}", "1 replica");
    println!("{:<44} {pair:>12.1}", "2 replicas");
    println!("{:<44} {:>12.2}", "ratio 2 replicas / 1", pair / one);
    println!();
    let kept = tally_time(&start(&runtime, Replicas::ONE).await).await;
    let per_call = Replicas::PerCall { concurrency: two };
    let fresh = tally_time(&start(&runtime, per_call).await).await;
    let us = |time: Duration| time.as_secs_f64() * 1e6;
    println!("{:<44} {:>12}", "tally, sequential", "us per call");
    println!("{:<44} {:>12.2}", "kept replica", us(kept));
    println!("{:<44} {:>12.2}", "fresh instance per call", us(fresh));
    println!(
        "{:<44} {:>12.2}",
        "instantiation per call (difference)",
        us(fresh) - us(kept)
    );
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // On a worker, as every exorun caller runs.
    tokio.block_on(async { tokio::spawn(run()).await.expect("bench") });
}
