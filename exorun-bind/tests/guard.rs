//! Guarded exports at the dispatcher's boundary, with a real guard instance (misbehave's, which
//! denies the capability `deny` and grants anything else).
//!
//! The property: over random calls on three connections presenting random capabilities, every
//! call is decided as the guard decides it (a kept grant never lets through what the guard would
//! not), and the grants kept are exactly what a model of the per-connection cache holds (one per
//! capability granted on that connection, at most `GRANTS_PER_CONNECTION`, the oldest dropped
//! first). Examples pin what a guard refuses to guard and a lattice call's denial.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;

use bytes::Bytes;
use common::build;
use exorun_bind::serve;
use exorun_bind::serve::Allow;
use exorun_bind::serve::Exports;
use exorun_bind::serve::guard;
use exorun_core::runtime::Runtime;
use exorun_transport::client::Client;
use exorun_transport::dispatch;
use exorun_transport::dispatch::Dispatcher;
use neorpc::failure::Failure;
use neorpc::frame;
use proptest::prelude::*;

const TALLY: &str = "exorun:test/crunch#tally";
const CONNECTIONS: usize = 3;

/// A runtime with cruncher exported as `guarded`, decided by misbehave's guard `wild`.
async fn guarded() -> Arc<Exports> {
    guarded_by().await.0
}

/// `guarded`, and the guard's handle.
async fn guarded_by() -> (Arc<Exports>, exorun_core::InstanceHandle) {
    let runtime = Runtime::new().unwrap();
    build(&runtime, "cruncher", Vec::new(), Some("guarded")).await;
    let wild = build(&runtime, "misbehave", Vec::new(), Some("wild")).await;
    let exports = Exports::new(runtime);
    exports
        .export_guarded("guarded", Allow::Anyone, "wild")
        .unwrap();
    (exports, wild)
}

fn call_frame(capability: &[u8]) -> frame::OutboundCall {
    let mut writer = frame::CallWriter::new("guarded", TALLY).unwrap();
    neorpc::codec::encode_into(writer.args(), &[], &neorpc::codec::Limits::default()).unwrap();
    writer.finish_presenting(&[], Some(capability)).unwrap()
}

fn told_to_deny() -> Failure {
    Failure::PermissionDenied {
        instance: "guarded".into(),
        interface: "exorun:test/crunch".into(),
        reason: "told to deny".into(),
    }
}

/// Kept across cases: the connections keep their grants, so the model keeps them too.
struct World {
    tokio: tokio::runtime::Runtime,
    exports: Arc<Exports>,
    clients: Vec<Arc<Client>>,
    model: Mutex<Vec<VecDeque<Vec<u8>>>>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (exports, clients) = tokio.block_on(async {
            let exports = guarded().await;
            let clients = (0..CONNECTIONS)
                .map(|_| common::memory_peer(&exports))
                .collect();
            (exports, clients)
        });
        World {
            tokio,
            exports,
            clients,
            model: Mutex::new(vec![VecDeque::new(); CONNECTIONS]),
        }
    })
}

/// Capability 0 is `deny`; the others are granted, 48 of them (more than a connection keeps).
fn capability(index: usize) -> Vec<u8> {
    match index {
        0 => b"deny".to_vec(),
        index => format!("capability {index}").into_bytes(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn a_guarded_call_is_decided_as_the_guard_decides_and_grants_are_kept_as_modelled(
        calls in prop::collection::vec((0..CONNECTIONS, 0..49_usize), 1..40),
    ) {
        let world = world();
        let mut model = world.model.lock().unwrap();
        for (connection, index) in calls {
            let presented = capability(index);
            let client = &world.clients[connection];
            let outcome = world.tokio.block_on(client.call(call_frame(&presented)));
            if index == 0 {
                prop_assert_eq!(outcome, Ok(Err(told_to_deny())));
            } else {
                prop_assert!(matches!(outcome, Ok(Ok(_))), "{:?}", outcome);
                let kept = &mut model[connection];
                if !kept.contains(&presented) {
                    if kept.len() == guard::GRANTS_PER_CONNECTION {
                        kept.pop_front();
                    }
                    kept.push_back(presented);
                }
            }
            let modelled: usize = model.iter().map(VecDeque::len).sum();
            prop_assert_eq!(world.exports.grants_kept(), modelled);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_running_instance_that_exports_the_check_can_guard() {
    let exports = guarded().await;
    let missing = exports.export_guarded("guarded", Allow::Anyone, "ghost");
    let Err(serve::Error::Guard(missing)) = missing else {
        panic!("{missing:?}")
    };
    let ghost = "ghost".to_owned();
    assert_eq!(missing, guard::Error::NotFound { guard: ghost });
    // cruncher exports no guard: it cannot guard itself.
    let not_a_guard = exports.export_guarded("guarded", Allow::Anyone, "guarded");
    let Err(serve::Error::Guard(not_a_guard)) = not_a_guard else {
        panic!("{not_a_guard:?}")
    };
    let guarded = "guarded".to_owned();
    assert_eq!(not_a_guard, guard::Error::NotAGuard { guard: guarded });
    let no_export = exports.export_guarded("ghost", Allow::Anyone, "wild");
    assert!(matches!(no_export, Err(serve::Error::Registry(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lattice_call_to_a_guarded_export_is_denied_without_asking() {
    let exports = guarded().await;
    let bytes = Bytes::from(call_frame(b"granted").into_bytes());
    let frame::Message::Call(call) = frame::decode(&bytes).unwrap() else {
        panic!("not a call")
    };
    let denied = Failure::PermissionDenied {
        instance: "guarded".into(),
        interface: "exorun:test/crunch".into(),
        reason: "a guarded export is not served on a lattice (no caller key)".into(),
    };
    // Anonymous, or a caller that names itself (which proves nothing): both denied.
    for origin in [
        dispatch::Origin::lattice(),
        dispatch::Origin::lattice_caller(7),
    ] {
        let outcome = exports.dispatch(call.clone(), &bytes, &origin).await;
        assert_eq!(outcome.map(|_| ()), Err(denied.clone()));
    }
    assert_eq!(exports.grants_kept(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_go_with_the_export_they_were_made_for() {
    let exports = guarded().await;
    let client = common::memory_peer(&exports);
    client.call(call_frame(b"granted")).await.unwrap().unwrap();
    assert_eq!(exports.grants_kept(), 1);
    // Exported anew (with the same guard or another): what was granted before is asked again.
    exports
        .export_guarded("guarded", Allow::Anyone, "wild")
        .unwrap();
    assert_eq!(exports.grants_kept(), 0);
    client.call(call_frame(b"granted")).await.unwrap().unwrap();
    assert_eq!(exports.grants_kept(), 1);
    assert!(exports.unexport("guarded"));
    assert_eq!(exports.grants_kept(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_that_a_callers_checks_make_trap_backs_off_for_that_caller_only() {
    let exports = guarded().await;
    let (attacker, bystander) = (common::memory_peer(&exports), common::memory_peer(&exports));
    for round in 0..5 {
        // Twice in a row: the guard's replica is failed, then backs off for this caller.
        for _ in 0..2 {
            let trapped = attacker.call(call_frame(b"trap")).await.unwrap();
            assert!(
                matches!(trapped, Err(Failure::PermissionDenied { .. })),
                "{trapped:?}"
            );
        }
        // Another caller's cold check restarts the guard at once and is answered.
        let cold = format!("cold {round}");
        let answered = bystander.call(call_frame(cold.as_bytes())).await.unwrap();
        assert!(answered.is_ok(), "round {round}: {answered:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_cold_checks_from_one_source_waits_behind_its_own() {
    let (exports, wild) = guarded_by().await;
    let attacker = common::memory_peer(&exports);
    // Two hundred slow cold checks at once, from one connection (its own source).
    let mut flood = tokio::task::JoinSet::new();
    for index in 0..200 {
        let attacker = Arc::clone(&attacker);
        let capability = format!("slow {index}");
        flood.spawn(async move { attacker.call(call_frame(capability.as_bytes())).await });
    }
    // Once the guard has checks waiting for it, a cold check from elsewhere is answered
    // within 2 s: behind at most the source's share, not the whole flood.
    let mut waiting = wild.watch_waiting();
    waiting.wait_for(|(calls, _)| *calls >= 1).await.unwrap();
    let bystander = common::memory_peer(&exports);
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        bystander.call(call_frame(b"cold")),
    );
    let answered = answered.await.expect("answered within 2 s").unwrap();
    assert!(answered.is_ok(), "{answered:?}");
    let mut overloaded = 0;
    while let Some(ended) = flood.join_next().await {
        if let Ok(Err(Failure::Overloaded)) = ended.unwrap() {
            overloaded += 1;
        }
    }
    assert!(
        overloaded >= 200 - 2 * guard::CHECKS_PER_SOURCE_MAX,
        "{overloaded}"
    );
}
