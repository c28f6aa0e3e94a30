//! The resource invariant, as a property: random sequences of create, call, lend, give back,
//! pass through another interface and drop give the same results and the same live counts
//! through a local link and a remote link as in a model of what one component would see.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;
use std::sync::OnceLock;

use common::build;
use exorun_bind::builder::Linkable;
use exorun_bind::serve::Exports;
use exorun_core::instance::InstanceHandle;
use exorun_core::runtime::Runtime;
use proptest::prelude::*;
use wasmtime::component::Val;

const COUNTERS: &str = "exorun:test/counters";
const SINK: &str = "exorun:test/counter-sink";
const USER: &str = "exorun:test/counter-user";

/// One step a guest takes; indexes pick among the counters it keeps (modulo how many).
#[derive(Debug, Clone)]
enum Op {
    Keep(u32),
    Next(usize),
    Peek(usize),
    Absorb(usize, usize),
    Finish(usize),
    Sink(usize),
    Forget(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..1_000_u32).prop_map(Op::Keep),
        any::<usize>().prop_map(Op::Next),
        any::<usize>().prop_map(Op::Peek),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Absorb(a, b)),
        any::<usize>().prop_map(Op::Finish),
        any::<usize>().prop_map(Op::Sink),
        any::<usize>().prop_map(Op::Forget),
    ]
}

/// What one component would see: each kept counter's slot and next value.
#[derive(Default)]
struct Model {
    kept: Vec<(u32, u32)>,
}

/// A consumer linked to a provider, and the provider (to count what it holds).
struct Pair {
    provider: InstanceHandle,
    consumer: InstanceHandle,
}

struct World {
    tokio: tokio::runtime::Runtime,
    local: Pair,
    remote: Pair,
    _exports: Arc<Exports>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (local, remote, exports) = tokio.block_on(async {
            let runtime = Runtime::new().unwrap();
            let provider = build(&runtime, "counter-provider", Vec::new(), None).await;
            let link = Linkable::Local(provider.clone());
            let links = vec![(COUNTERS, link.clone()), (SINK, link)];
            let consumer = build(&runtime, "counter-consumer", links, None).await;
            let local = Pair { provider, consumer };
            let served = Runtime::new().unwrap();
            let provider = build(&served, "counter-provider", Vec::new(), Some("counters")).await;
            let exports = Exports::new(served);
            exports.export("counters").unwrap();
            let link = Linkable::Remote {
                channel: common::memory_peer(&exports),
                target: "counters".into(),
            };
            let links = vec![(COUNTERS, link.clone()), (SINK, link)];
            let consumer = build(&runtime, "counter-consumer", links, None).await;
            (local, Pair { provider, consumer }, exports)
        });
        World {
            tokio,
            local,
            remote,
            _exports: exports,
        }
    })
}

async fn call(instance: &InstanceHandle, interface: &str, function: &str, args: &[Val]) -> Val {
    let export = instance.export(interface, function).unwrap();
    let mut results = vec![Val::Bool(false); export.signature().results.len()];
    let called = instance.call_export(&export, args, &mut results).await;
    called.unwrap_or_else(|error| panic!("{function}{args:?}: {error}"));
    results.pop().unwrap_or(Val::Tuple(Vec::new()))
}

async fn number(instance: &InstanceHandle, function: &str, args: &[Val]) -> u32 {
    let Val::U32(n) = call(instance, USER, function, args).await else {
        panic!("{function} returned no u32")
    };
    n
}

/// Runs `ops` through `pair` and the model side by side; the first difference, if any.
async fn run(pair: &Pair, ops: &[Op]) -> Result<(), String> {
    let mut model = Model::default();
    for op in ops {
        step(pair, &mut model, op).await?;
        let live = call(&pair.provider, COUNTERS, "live", &[]).await;
        let expected = u32::try_from(model.kept.len()).unwrap();
        if live != Val::U32(expected) {
            return Err(format!(
                "after {op:?}: {live:?} alive, the model has {expected}"
            ));
        }
    }
    // Leave nothing behind for the next case.
    for (slot, _) in std::mem::take(&mut model.kept) {
        call(&pair.consumer, USER, "forget", &[Val::U32(slot)]).await;
    }
    Ok(())
}

async fn step(pair: &Pair, model: &mut Model, op: &Op) -> Result<(), String> {
    let consumer = &pair.consumer;
    let pick = |index: usize| model.kept.get(index % model.kept.len().max(1)).copied();
    let (got, expected) = match *op {
        Op::Keep(start) => {
            let slot = number(consumer, "keep", &[Val::U32(start)]).await;
            model.kept.push((slot, start));
            return Ok(());
        }
        Op::Next(i) | Op::Peek(i) | Op::Finish(i) | Op::Sink(i) | Op::Forget(i) => {
            let Some((slot, value)) = pick(i) else {
                return Ok(());
            };
            let position = model
                .kept
                .iter()
                .position(|(kept, _)| *kept == slot)
                .unwrap();
            let function = match op {
                Op::Next(_) => "next",
                Op::Peek(_) => "peek",
                Op::Finish(_) => "finish",
                Op::Sink(_) => "sink",
                Op::Forget(_) | Op::Keep(_) | Op::Absorb(..) => "forget",
            };
            if function == "forget" {
                call(consumer, USER, "forget", &[Val::U32(slot)]).await;
                model.kept.remove(position);
                return Ok(());
            }
            let got = number(consumer, function, &[Val::U32(slot)]).await;
            match function {
                "next" => model.kept[position].1 = value.wrapping_add(1),
                "finish" | "sink" => {
                    model.kept.remove(position);
                }
                _ => {}
            }
            (got, value)
        }
        Op::Absorb(a, b) => {
            let (Some((slot, value)), Some((other, other_value))) = (pick(a), pick(b)) else {
                return Ok(());
            };
            let got = number(consumer, "absorb", &[Val::U32(slot), Val::U32(other)]).await;
            let expected = if slot == other {
                value.wrapping_add(1).wrapping_add(value)
            } else {
                let position = model
                    .kept
                    .iter()
                    .position(|(kept, _)| *kept == other)
                    .unwrap();
                model.kept[position].1 = other_value.wrapping_add(1);
                value.wrapping_add(other_value)
            };
            let position = model
                .kept
                .iter()
                .position(|(kept, _)| *kept == slot)
                .unwrap();
            model.kept[position].1 = expected;
            (got, expected)
        }
    };
    if got == expected {
        return Ok(());
    }
    Err(format!("{op:?}: got {got}, the model says {expected}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn local_and_remote_links_agree_with_the_model(ops in proptest::collection::vec(op(), 1..24)) {
        let world = world();
        for (link, pair) in [("local", &world.local), ("remote", &world.remote)] {
            let outcome = world.tokio.block_on(run(pair, &ops));
            prop_assert!(outcome.is_ok(), "{link}: {}", outcome.unwrap_err());
        }
    }
}
