//! Failure fidelity across a remote link: every way a served call can fail arrives as its exact
//! reason, both at the raw client and inside the calling guest's runtime.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;

use common::MATH;
use common::assert_remote;
use common::build;
use common::call_slab;
use common::memory_peer;
use common::run;
use exorun_bind::builder::InstanceBuilder;
use exorun_bind::builder::Linkable;
use exorun_bind::serve::Exports;
use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::limits::Limits;
use exorun_core::runtime::Runtime;
use exorun_core::system;
use exorun_core::system::Rejection;
use exorun_core::system::SystemComponent;
use exorun_transport::client;
use exorun_transport::client::Client;
use neorpc::codec;
use neorpc::failure::Failure;
use wasmtime::component::Linker;
use wasmtime::component::Val;

const MISBEHAVE: &str = "exorun:test/misbehave";

/// A runtime serving one misbehave instance per name, with tight limits, all exported.
async fn misbehave_host(names: &[&str]) -> Arc<Exports> {
    let runtime = Runtime::new().unwrap();
    let app = common::add(&runtime, "misbehave");
    let limits = Limits {
        fuel_per_call: 50_000_000,
        memory_bytes_max: 8 * 1024 * 1024,
        ..Limits::default()
    };
    let exports = Exports::new(Arc::clone(&runtime));
    for name in names {
        InstanceBuilder::new(&runtime, app)
            .unwrap()
            .limits(limits)
            .name(name)
            .instantiate()
            .await
            .unwrap();
        exports.export(name).unwrap();
    }
    exports
}

/// The failure a call to `target` ends in.
async fn call(client: &Client, target: &str, method: &str, args: &[Val]) -> Failure {
    let slab = codec::encode(args).unwrap();
    call_slab(client, target, method, &slab)
        .await
        .unwrap()
        .unwrap_err()
}

#[tokio::test]
async fn trap_fuel_and_memory_arrive_as_their_reasons() {
    let exports = misbehave_host(&["trap", "spin", "hog"]).await;
    let client = memory_peer(&exports);
    let trapped = call(&client, "trap", &format!("{MISBEHAVE}#trap"), &[]).await;
    let Failure::AppTrapped { message } = &trapped else {
        panic!("{trapped:?}")
    };
    assert!(message.contains("unreachable"), "{message}");
    // Each reason once: the trap's own message, not wrapped in what the layers call it.
    assert!(!message.contains("trapped"), "{message}");
    assert_eq!(
        call(&client, "spin", &format!("{MISBEHAVE}#spin"), &[]).await,
        Failure::OutOfFuel
    );
    let hog = call(&client, "hog", &format!("{MISBEHAVE}#hog"), &[]).await;
    let Failure::OutOfMemory { message } = &hog else {
        panic!("{hog:?}")
    };
    assert!(
        message.contains("memory"),
        "keeps what grew past which limit: {message}"
    );
    // The trapped instance was replaced: the next call on it runs on a fresh one.
    let slab = codec::encode(&[Val::U32(1)]).unwrap();
    let again = call_slab(&client, "trap", &format!("{MISBEHAVE}#echo"), &slab).await;
    let mut results = [Val::U32(0)];
    let types = [wasmtime::component::Type::U32];
    codec::decode_into(
        &again.unwrap().unwrap(),
        &types,
        &mut results,
        &codec::Limits::default(),
    )
    .unwrap();
    assert_eq!(results, [Val::U32(1)]);
}

#[tokio::test]
async fn unknown_targets_methods_and_bad_arguments_are_named() {
    let exports = misbehave_host(&["m"]).await;
    let client = memory_peer(&exports);
    let echo = format!("{MISBEHAVE}#echo");
    assert_eq!(
        call(&client, "nobody", &echo, &[Val::U32(1)]).await,
        Failure::InstanceNotFound {
            instance: "nobody".into()
        }
    );
    for method in [
        format!("{MISBEHAVE}#nope"),
        "echo".to_owned(),
        "x#echo".to_owned(),
    ] {
        assert_eq!(
            call(&client, "m", &method, &[]).await,
            Failure::MethodNotFound { method }
        );
    }
    assert_eq!(
        call(&client, "m", &echo, &[]).await,
        Failure::BadArgumentCount {
            expected: 1,
            found: 0
        }
    );
    assert_eq!(
        call(&client, "m", &echo, &[Val::String("one".into())]).await,
        Failure::BadArgumentType {
            index: 0,
            message: "type mismatch: expected u32, found string".into()
        }
    );
    let garbage = call_slab(&client, "m", &echo, &[0xff, 0x00])
        .await
        .unwrap()
        .unwrap_err();
    let Failure::ProtocolViolation { .. } = garbage else {
        panic!("{garbage:?}")
    };
    let mut results = [Val::U32(0)];
    let slab = codec::encode(&[Val::U32(41)]).unwrap();
    let reply = call_slab(&client, "m", &echo, &slab)
        .await
        .unwrap()
        .unwrap();
    let types = [wasmtime::component::Type::U32];
    codec::decode_into(&reply, &types, &mut results, &codec::Limits::default()).unwrap();
    assert_eq!(
        results,
        [Val::U32(41)],
        "bad calls left the instance usable"
    );
}

/// `exorun:test/math` as a host function that always refuses with a domain code.
struct RefusingMath;

const NO_ADDING: u32 = 42;

impl SystemComponent for RefusingMath {
    fn interfaces(&self) -> Vec<String> {
        vec![MATH.to_owned()]
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        let mut math = linker
            .instance(MATH)
            .map_err(|error| system::define_error(MATH, error))?;
        let refuse = |_: wasmtime::StoreContextMut<'_, ExorunCtx>, _: (u32, u32)| {
            Err::<(u32,), _>(wasmtime::Error::new(Rejection {
                code: NO_ADDING,
                message: "no adding today".into(),
            }))
        };
        math.func_wrap("add", refuse)
            .map_err(|error| system::define_error(MATH, error))
    }

    fn configure(&self, _: &mut ContextBuilder) -> Result<(), system::Error> {
        Ok(())
    }
}

#[tokio::test]
async fn a_domain_code_crosses_a_chain_to_the_calling_runtime() {
    // Runtime B serves a relay whose math is a refusing system; runtime A's consumer calls it.
    let host = Runtime::new().unwrap();
    let refusing = Linkable::System(Arc::new(RefusingMath));
    build(&host, "relay", vec![(MATH, refusing)], Some("relay")).await;
    let exports = Exports::new(host);
    exports.export("relay").unwrap();
    let runtime = Runtime::new().unwrap();
    let link = Linkable::Remote {
        channel: memory_peer(&exports),
        target: "relay".into(),
    };
    let consumer = build(&runtime, "math-consumer", vec![(MATH, link)], None).await;
    let error = run(&consumer).await.unwrap_err();
    assert_remote(
        &error,
        "relay",
        "exorun:test/math#add",
        &Failure::DomainSpecific {
            code: NO_ADDING,
            message: "no adding today".into(),
        },
    );
    assert!(
        consumer.failure().await.is_some(),
        "the calling guest trapped"
    );
}

#[tokio::test]
async fn a_remote_target_without_the_method_fails_the_guest_with_method_not_found() {
    // cruncher, exported as `math`, exports no `exorun:test/math`.
    let host = Runtime::new().unwrap();
    build(&host, "cruncher", Vec::new(), Some("math")).await;
    let exports = Exports::new(host);
    exports.export("math").unwrap();
    let runtime = Runtime::new().unwrap();
    let link = Linkable::Remote {
        channel: memory_peer(&exports),
        target: "math".into(),
    };
    let consumer = build(&runtime, "math-consumer", vec![(MATH, link)], None).await;
    assert_remote(
        &run(&consumer).await.unwrap_err(),
        "math",
        "exorun:test/math#add",
        &Failure::MethodNotFound {
            method: "exorun:test/math#add".into(),
        },
    );
}

#[tokio::test]
async fn a_cycle_across_two_runtimes_fails_as_reentrant_at_once() {
    let (one, two) = (Runtime::new().unwrap(), Runtime::new().unwrap());
    assert_ne!(one.id(), two.id());
    let (exports_one, exports_two) = (
        Exports::new(Arc::clone(&one)),
        Exports::new(Arc::clone(&two)),
    );
    let to_pong = Linkable::Remote {
        channel: memory_peer(&exports_two),
        target: "pong".into(),
    };
    let to_ping = Linkable::Remote {
        channel: memory_peer(&exports_one),
        target: "ping".into(),
    };
    let ping = build(
        &one,
        "ping",
        vec![("exorun:test/pong-api", to_pong)],
        Some("ping"),
    )
    .await;
    build(
        &two,
        "pong",
        vec![("exorun:test/ping-api", to_ping)],
        Some("pong"),
    )
    .await;
    exports_one.export("ping").unwrap();
    exports_two.export("pong").unwrap();
    let started = std::time::Instant::now();
    let mut results = [Val::U32(0)];
    let called = ping
        .call("exorun:test/ping-api", "ping", &[Val::U32(1)], &mut results)
        .await;
    assert_remote(
        &called.unwrap_err(),
        "pong",
        "exorun:test/pong-api#pong",
        &Failure::Reentrant {
            instance: "ping".into(),
        },
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "refused at once, not after the 30 s lock wait"
    );
}

#[tokio::test]
async fn a_named_link_with_nothing_to_call_reaches_a_remote_caller_as_not_found() {
    let host = Runtime::new().unwrap();
    let provider = common::add(&host, "math-provider");
    let named = Linkable::Named {
        app: provider,
        name: "absent".into(),
    };
    build(&host, "math-consumer", vec![(MATH, named)], Some("calc")).await;
    let exports = Exports::new(host);
    exports.export("calc").unwrap();
    let client = memory_peer(&exports);
    let runnable = "exorun:test/runnable#run";
    assert_eq!(
        call(&client, "calc", runnable, &[]).await,
        Failure::InstanceNotFound {
            instance: "absent".into()
        }
    );
}

#[tokio::test]
async fn a_relay_whose_remote_import_is_down_answers_internal_with_the_cause() {
    let (near, far) = exorun_transport::memory::pair(4);
    drop(far);
    let gone = Arc::new(Client::new(Arc::new(near), client::Config::default()));
    let host = Runtime::new().unwrap();
    let link = Linkable::Remote {
        channel: gone,
        target: "math".into(),
    };
    build(&host, "relay", vec![(MATH, link)], Some("relay")).await;
    let exports = Exports::new(host);
    exports.export("relay").unwrap();
    let client = memory_peer(&exports);
    let failed = call(
        &client,
        "relay",
        "exorun:test/math#add",
        &[Val::U32(1), Val::U32(2)],
    )
    .await;
    assert_eq!(
        failed,
        Failure::Internal {
            message: "remote call exorun:test/math#add on `math`: the connection ended before the \
                      server read the call"
                .into()
        }
    );
}
