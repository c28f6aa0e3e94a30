//! Deploy to first call: how long a small component (math-provider, about 20 KiB) takes from
//! its bytes reaching a managed runtime to the first call answered, through the same
//! `exorun:host/meta` mechanism `exorun deploy` reaches (the manager in-process; the network
//! hop of the deploy itself is one call frame). Each of 10 rounds adds the app under a new name
//! (compiled on the blocking pool), starts it exported, calls `add` once, and stops it; the
//! median and the worst round are printed, each split into compile, start and first call.
//!
//! `cargo bench -p exorun-cli --bench deploy` (after `scripts/build_apps.sh`).

#![allow(clippy::unwrap_used)] // A benchmark: a failed unwrap is a failed run.
#![allow(clippy::print_stdout)] // It prints its figures.

use std::collections::BTreeMap;
use std::time::Duration;
use std::time::Instant;

use exorun_host::manage;
use exorun_testkit::fixtures;
use exorun_transport::identity::NodeKey;
use wasmtime::component::Val;

const ROUNDS: usize = 10;

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rounds = tokio.block_on(tokio.spawn(run())).unwrap();
    let mut totals: Vec<(Duration, [Duration; 3])> = rounds
        .into_iter()
        .map(|parts| (parts.iter().sum(), parts))
        .collect();
    totals.sort_by_key(|(total, _)| *total);
    let show = |label: &str, (total, [compile, start, call]): (Duration, [Duration; 3])| {
        println!(
            "{label:<8} {:>9.1} ms  (compile {:.1} ms, start {:.1} ms, first call {:.2} ms)",
            total.as_secs_f64() * 1e3,
            compile.as_secs_f64() * 1e3,
            start.as_secs_f64() * 1e3,
            call.as_secs_f64() * 1e3,
        );
    };
    println!("deploy to first call, math-provider, {ROUNDS} rounds");
    show("median", totals[ROUNDS / 2]);
    show("worst", totals[ROUNDS - 1]);
}

async fn run() -> Vec<[Duration; 3]> {
    let operator = NodeKey::generate().unwrap().public();
    let components = manage::components(None);
    let manifest = manage::managed(None, &operator, &components, &BTreeMap::new()).unwrap();
    let composition = exorun_host::Composition::start(manifest).await.unwrap();
    let manager = composition.manager;
    let bytes = std::fs::read(fixtures::path("math-provider").unwrap()).unwrap();
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let name = format!("math-{round}");
        let started = Instant::now();
        manager.add_app(&name, bytes.clone()).await.unwrap();
        let compiled = started.elapsed();
        let settings = format!("app = \"{name}\"\nexport = true\n");
        manager.start(&name, &settings).await.unwrap();
        let running = started.elapsed();
        let instance = manager.instance(&name).unwrap();
        let mut results = [Val::U32(0)];
        let args = [Val::U32(1), Val::U32(2)];
        instance
            .call("exorun:test/math", "add", &args, &mut results)
            .await
            .unwrap();
        assert_eq!(results[0], Val::U32(3));
        let answered = started.elapsed();
        rounds.push([compiled, running - compiled, answered - running]);
        manager.stop(&name).await.unwrap();
        manager.remove_app(&name).await.unwrap();
    }
    rounds
}
