//! Supervision and pools at exorun-core's boundary, against the built guest apps: a failed
//! replica is replaced (and its state lost), a crash loop backs off on tokio's paused clock,
//! replicas overlap, per-call instances keep nothing, waiting is bounded.

#![allow(clippy::unwrap_used)]
// Test helpers: a failed unwrap is a failed test.
// Host functions built in tests nest closure -> async by construction.
#![allow(clippy::excessive_nesting)]

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use exorun_core::call;
use exorun_core::context::ExorunCtx;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::limits::Limits;
use exorun_core::runtime::Runtime;
use exorun_core::supervision::Backoff;
use exorun_core::supervision::Replicas;
use exorun_core::supervision::Restart;
use exorun_core::supervision::Spec;
use exorun_testkit::fixtures;
use tokio::sync::Notify;
use wasmtime::component::Linker;
use wasmtime::component::Val;

const MISBEHAVE: &str = "exorun:test/misbehave";
const CRUNCH: &str = "exorun:test/crunch";

async fn start(
    runtime: &Runtime,
    app: &str,
    linker: &Linker<ExorunCtx>,
    spec: Spec,
) -> InstanceHandle {
    let path = fixtures::path(app).unwrap_or_else(|e| panic!("{e}"));
    let app = runtime.add_app_file(app, &path).unwrap();
    let prepared = runtime.prepare(app, linker).unwrap();
    runtime.start(&prepared, spec).await.unwrap()
}

async fn plain(runtime: &Runtime, app: &str, spec: Spec) -> InstanceHandle {
    start(runtime, app, &Linker::new(runtime.engine()), spec).await
}

fn tight() -> Limits {
    Limits {
        fuel_per_call: 20_000_000,
        memory_bytes_max: 16 * 1024 * 1024,
        ..Limits::default()
    }
}

async fn misbehave(handle: &InstanceHandle, function: &str) -> Result<(), instance::Error> {
    let mut results: Vec<Val> = if function == "hog" {
        vec![Val::U32(0)]
    } else {
        Vec::new()
    };
    handle.call(MISBEHAVE, function, &[], &mut results).await
}

async fn echo(handle: &InstanceHandle, n: u32) -> Result<Val, instance::Error> {
    let mut results = [Val::Bool(false)];
    handle
        .call(MISBEHAVE, "echo", &[Val::U32(n)], &mut results)
        .await?;
    Ok(results[0].clone())
}

async fn tally(handle: &InstanceHandle) -> Result<Val, instance::Error> {
    let mut results = [Val::Bool(false)];
    handle.call(CRUNCH, "tally", &[], &mut results).await?;
    Ok(results[0].clone())
}

#[tokio::test]
async fn a_trap_fuel_or_memory_failure_then_a_good_call_runs_on_a_fresh_instance() {
    let runtime = Runtime::new().unwrap();
    for function in ["trap", "spin", "hog"] {
        let spec = Spec {
            limits: tight(),
            ..Spec::default()
        };
        let handle = plain(&runtime, "misbehave", spec).await;
        let failed = misbehave(&handle, function).await.unwrap_err();
        let expected = match function {
            "trap" => matches!(failed, instance::Error::Trapped { .. }),
            "spin" => failed == instance::Error::OutOfFuel,
            _ => matches!(failed, instance::Error::OutOfMemory { .. }),
        };
        assert!(expected, "{function}: {failed:?}");
        assert_eq!(handle.failure().await, Some(failed.to_string()));
        assert_eq!(handle.restarts(), 0);
        assert_eq!(echo(&handle, 7).await.unwrap(), Val::U32(7), "{function}");
        assert_eq!(handle.restarts(), 1, "{function}");
        let cause = match function {
            "trap" => "trapped",
            "spin" => "out_of_fuel",
            _ => "out_of_memory",
        };
        let counted = handle.restarts_by_cause();
        let by_cause = counted.iter().map(|(name, count)| (*name, *count));
        let expected = instance::RESTART_CAUSES.map(|name| (name, u64::from(name == cause)));
        assert_eq!(
            by_cause.collect::<Vec<_>>(),
            expected.to_vec(),
            "{function}"
        );
        assert_eq!(handle.failure().await, None);
    }
}

#[tokio::test]
async fn a_restart_loses_the_instance_state() {
    let runtime = Runtime::new().unwrap();
    let spec = Spec {
        limits: tight(),
        ..Spec::default()
    };
    let handle = plain(&runtime, "cruncher", spec).await;
    assert_eq!(tally(&handle).await.unwrap(), Val::U32(1));
    assert_eq!(tally(&handle).await.unwrap(), Val::U32(2));
    let mut results = [Val::U64(0)];
    let burn = handle
        .call(CRUNCH, "crunch", &[Val::U32(u32::MAX)], &mut results)
        .await;
    assert_eq!(burn.unwrap_err(), instance::Error::OutOfFuel);
    assert_eq!(
        tally(&handle).await.unwrap(),
        Val::U32(1),
        "a fresh instance"
    );
    assert_eq!(handle.restarts(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_crash_loop_backs_off_doubling_to_its_cap_and_reports_the_cause() {
    let runtime = Runtime::new().unwrap();
    let backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(250),
    };
    let spec = Spec {
        restart: Restart::Always(backoff),
        ..Spec::default()
    };
    let handle = plain(&runtime, "misbehave", spec).await;
    // The first failure is restarted at once.
    let cause = misbehave(&handle, "trap").await.unwrap_err();
    assert!(
        matches!(cause, instance::Error::Trapped { .. }),
        "{cause:?}"
    );
    // Failing again right after each restart: pauses of 100, 200, then 250 ms (the cap).
    for pause_ms in [100u64, 200, 250] {
        let again = misbehave(&handle, "trap").await.unwrap_err();
        assert_eq!(again, cause, "the restarted instance trapped the same way");
        let refused = echo(&handle, 1).await.unwrap_err();
        assert_eq!(
            refused,
            instance::Error::BackingOff {
                instance: handle.id(),
                retry_in_ms: pause_ms,
                cause: Box::new(cause.clone()),
            }
        );
        tokio::time::advance(Duration::from_millis(pause_ms - 1)).await;
        let still = echo(&handle, 1).await.unwrap_err();
        assert!(
            matches!(still, instance::Error::BackingOff { retry_in_ms: 1, .. }),
            "{still:?}"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    let restarts = handle.restarts();
    assert_eq!(
        restarts, 3,
        "one restart at once, then one after each of two pauses"
    );
    // Once the pause is over a good call runs, and the streak is forgotten.
    assert_eq!(echo(&handle, 5).await.unwrap(), Val::U32(5));
    assert_eq!(handle.restarts(), 4);
    misbehave(&handle, "trap").await.unwrap_err();
    assert_eq!(
        echo(&handle, 6).await.unwrap(),
        Val::U32(6),
        "restarted at once again"
    );
    assert_eq!(handle.restarts(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_back_off_holds_back_only_the_party_whose_calls_failed() {
    let runtime = Runtime::new().unwrap();
    let spec = Spec {
        restart: Restart::Always(Backoff::default()),
        ..Spec::default()
    };
    let handle = plain(&runtime, "misbehave", spec).await;
    let (offender, bystander) = (11u64, 22u64);
    // The offender traps the replica twice in a row: it is backing off, for the offender.
    let trapped = call::Context::from(None, offender)
        .scope(misbehave(&handle, "trap"))
        .await;
    let cause = trapped.unwrap_err();
    call::Context::from(None, offender)
        .scope(misbehave(&handle, "trap"))
        .await
        .unwrap_err();
    let refused = call::Context::from(None, offender)
        .scope(echo(&handle, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, instance::Error::BackingOff { cause: c, .. } if **c == cause),
        "{refused:?}"
    );
    // Another party is not made to fail with the offender's trap: its call restarts the
    // replica at once and runs.
    let answered = call::Context::from(None, bystander)
        .scope(echo(&handle, 7))
        .await;
    assert_eq!(answered.unwrap(), Val::U32(7));
    assert_eq!(handle.restarts(), 2);
    // The offender keeps trapping: each failure is its own, the bystander's calls still run.
    for round in 0..5u32 {
        call::Context::from(None, offender)
            .scope(misbehave(&handle, "trap"))
            .await
            .unwrap_err();
        let answered = call::Context::from(None, bystander)
            .scope(echo(&handle, round))
            .await;
        assert_eq!(answered.unwrap(), Val::U32(round));
    }
    // Calls with the same key are one party, whatever connection they came on.
    let key = || Some("ed25519:0b".to_owned());
    call::Context::from(key().as_deref(), 1)
        .scope(misbehave(&handle, "trap"))
        .await
        .unwrap_err();
    call::Context::from(key().as_deref(), 2)
        .scope(misbehave(&handle, "trap"))
        .await
        .unwrap_err();
    let refused = call::Context::from(key().as_deref(), 3)
        .scope(echo(&handle, 1))
        .await;
    assert!(
        matches!(refused, Err(instance::Error::BackingOff { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn restart_never_keeps_a_failed_instance_failed() {
    let runtime = Runtime::new().unwrap();
    let spec = Spec {
        restart: Restart::Never,
        ..Spec::default()
    };
    let handle = plain(&runtime, "misbehave", spec).await;
    let cause = misbehave(&handle, "trap").await.unwrap_err();
    for _ in 0..2 {
        assert_eq!(
            echo(&handle, 1).await.unwrap_err(),
            instance::Error::Failed {
                instance: handle.id(),
                reason: cause.to_string()
            }
        );
    }
    assert_eq!(handle.restarts(), 0);
}

/// A relay whose `math.add` host function counts the calls inside it, says when one arrives,
/// and holds each until `release` is notified (or until two are inside, if `meet`).
struct Gate {
    inside: AtomicUsize,
    most: AtomicUsize,
    arrived: Notify,
    release: Notify,
}

/// A call counted inside the gate.
struct Inside(Arc<Gate>);

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn gated_relay(runtime: &Runtime, gate: &Arc<Gate>, spec: Spec) -> InstanceHandle {
    let mut linker: Linker<ExorunCtx> = Linker::new(runtime.engine());
    let host_gate = Arc::clone(gate);
    linker
        .instance("exorun:test/math")
        .unwrap()
        .func_new_async("add", move |_store, _ty, params, results| {
            let gate = Arc::clone(&host_gate);
            let [Val::U32(a), Val::U32(b)] = params else {
                panic!("add got {params:?}")
            };
            let sum = a + b;
            Box::new(async move {
                let released = gate.release.notified();
                let now = gate.inside.fetch_add(1, Ordering::SeqCst) + 1;
                // Uncounted however the call ends, a cancelled one included.
                let _inside = Inside(Arc::clone(&gate));
                gate.most.fetch_max(now, Ordering::SeqCst);
                gate.arrived.notify_waiters();
                if now < 2 {
                    released.await;
                } else {
                    gate.release.notify_waiters();
                }
                results[0] = Val::U32(sum);
                Ok(())
            })
        })
        .unwrap();
    start(runtime, "relay", &linker, spec).await
}

fn gate() -> Arc<Gate> {
    Arc::new(Gate {
        inside: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        arrived: Notify::new(),
        release: Notify::new(),
    })
}

/// `add(a, 1)` on `handle`, in a task of its own.
fn spawn_add(
    handle: &InstanceHandle,
    a: u32,
) -> tokio::task::JoinHandle<Result<Val, instance::Error>> {
    let handle = handle.clone();
    tokio::spawn(async move { add(&handle, a).await })
}

async fn add(handle: &InstanceHandle, a: u32) -> Result<Val, instance::Error> {
    let mut results = [Val::U32(0)];
    let params = [Val::U32(a), Val::U32(1)];
    handle
        .call("exorun:test/math", "add", &params, &mut results)
        .await?;
    Ok(results[0].clone())
}

/// Waits until `handle` counts `waiting` (calls, bytes) waiting, as it publishes them: an
/// event, no polling, and never longer than a broken test deserves.
async fn until_waiting(handle: &InstanceHandle, waiting: (usize, u64)) {
    let mut seen = handle.watch_waiting();
    let reached = seen.wait_for(|now| *now == waiting);
    let reached = tokio::time::timeout(Duration::from_secs(30), reached).await;
    reached
        .expect("the waiting counts were reached in time")
        .expect("the handle lives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_two_calls_at_once_and_one_runs_them_in_turn() {
    let runtime = Runtime::new().unwrap();
    let two = Spec {
        replicas: Replicas::Fixed(NonZeroUsize::new(2).unwrap()),
        ..Spec::default()
    };
    let pair = gate();
    let relay = gated_relay(&runtime, &pair, two).await;
    let (first, second) = tokio::join!(add(&relay, 1), add(&relay, 2));
    assert_eq!(
        (first.unwrap(), second.unwrap()),
        (Val::U32(2), Val::U32(3))
    );
    assert_eq!(
        pair.most.load(Ordering::SeqCst),
        2,
        "both calls were inside at once"
    );

    let single = gate();
    let relay = gated_relay(&runtime, &single, Spec::default()).await;
    let arrived = single.arrived.notified();
    let first = spawn_add(&relay, 1);
    arrived.await;
    let second = spawn_add(&relay, 2);
    until_waiting(&relay, (1, 0)).await;
    // Registered before the release, so the second call's arrival cannot be missed.
    let second_arrived = single.arrived.notified();
    single.release.notify_waiters();
    assert_eq!(first.await.unwrap().unwrap(), Val::U32(2));
    second_arrived.await;
    single.release.notify_waiters();
    assert_eq!(second.await.unwrap().unwrap(), Val::U32(3));
    assert_eq!(
        single.most.load(Ordering::SeqCst),
        1,
        "one replica ran them in turn"
    );
}

#[tokio::test]
async fn per_call_instances_keep_nothing_between_calls() {
    let runtime = Runtime::new().unwrap();
    let per_call = Spec {
        replicas: Replicas::PerCall {
            concurrency: NonZeroUsize::new(2).unwrap(),
        },
        ..Spec::default()
    };
    let fresh = plain(&runtime, "cruncher", per_call).await;
    for _ in 0..3 {
        assert_eq!(tally(&fresh).await.unwrap(), Val::U32(1));
    }
    let kept = plain(&runtime, "cruncher", Spec::default()).await;
    for expected in 1..=3 {
        assert_eq!(tally(&kept).await.unwrap(), Val::U32(expected));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_is_refused_at_once_past_its_call_and_byte_bounds() {
    let runtime = Runtime::new().unwrap();
    let limits = Limits {
        calls_waiting_max: 3,
        bytes_waiting_max: 1000,
        ..Limits::default()
    };
    let spec = Spec {
        limits,
        ..Spec::default()
    };
    let busy = gate();
    let relay = gated_relay(&runtime, &busy, spec).await;
    let arrived = busy.arrived.notified();
    let holder = spawn_add(&relay, 1);
    arrived.await;
    // Two waiters of 400 bytes each: 800 held.
    let mut waiters = Vec::new();
    for expected in 1..=2 {
        let waiting = relay.clone();
        waiters.push(tokio::spawn(
            async move { waiting.lease(400).await.map(drop) },
        ));
        until_waiting(&relay, (expected, 400 * u64::try_from(expected).unwrap())).await;
    }
    assert_eq!(relay.waiting(), (2, 800));
    let heavy = relay.lease(201).await.err().unwrap();
    assert_eq!(
        heavy,
        instance::Error::TooManyBytesWaiting {
            instance: relay.id(),
            bytes_waiting_max: 1000
        }
    );
    let third = {
        let relay = relay.clone();
        tokio::spawn(async move { relay.lease(200).await.map(drop) })
    };
    until_waiting(&relay, (3, 1000)).await;
    let fourth = relay.lease(0).await.err().unwrap();
    assert_eq!(
        fourth,
        instance::Error::TooManyWaiting {
            instance: relay.id(),
            calls_waiting_max: 3
        }
    );
    busy.release.notify_waiters();
    assert_eq!(holder.await.unwrap().unwrap(), Val::U32(2));
    for waiter in waiters {
        waiter.await.unwrap().unwrap();
    }
    third.await.unwrap().unwrap();
    assert_eq!(relay.waiting(), (0, 0), "nothing left counted");
}

#[tokio::test]
async fn an_interrupted_call_restarts_its_replica_and_removal_fails_waiters() {
    let runtime = Runtime::new().unwrap();
    let stuck = gate();
    let relay = gated_relay(&runtime, &stuck, Spec::default()).await;
    let arrived = stuck.arrived.notified();
    let call = spawn_add(&relay, 1);
    arrived.await;
    let waiter = spawn_add(&relay, 2);
    until_waiting(&relay, (1, 0)).await;
    let waiter_arrived = stuck.arrived.notified();
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    waiter_arrived.await;
    assert_eq!(
        relay.restarts(),
        1,
        "the waiter found the replica interrupted and restarted it"
    );
    stuck.release.notify_waiters();
    assert_eq!(waiter.await.unwrap().unwrap(), Val::U32(3));

    let arrived = stuck.arrived.notified();
    let holder = spawn_add(&relay, 1);
    arrived.await;
    let waiter = spawn_add(&relay, 2);
    until_waiting(&relay, (1, 0)).await;
    runtime.remove_instance(relay.id()).unwrap();
    assert_eq!(
        waiter.await.unwrap().unwrap_err(),
        instance::Error::NotFound {
            instance: relay.id()
        }
    );
    stuck.release.notify_waiters();
    assert_eq!(
        holder.await.unwrap().unwrap(),
        Val::U32(2),
        "the call in flight finished"
    );
}
