//! The integration suite: system, local and remote links through the instance builder, against
//! the built guest apps, between two runtimes over memory, TCP and Unix sockets.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use common::MATH;
use common::add;
use common::build;
use common::call_slab;
use common::counting_peer;
use common::math_host;
use common::memory_peer;
use common::remote_error;
use common::run;
use common::socket_peer;
use common::socket_server;
use exorun_bind::builder;
use exorun_bind::builder::InstanceBuilder;
use exorun_bind::builder::Linkable;
use exorun_bind::serve::Exports;
use exorun_core::instance;
use exorun_core::ledger;
use exorun_core::runtime;
use exorun_core::runtime::Runtime;
use exorun_core::system::SystemComponent;
use exorun_systems::kv;
use exorun_systems::logging;
use exorun_transport::client;

fn system(component: impl SystemComponent + 'static) -> Linkable {
    Linkable::System(Arc::new(component))
}

#[tokio::test]
async fn t1_t2_t3_runtime_apps_register_and_peers_connect() {
    let runtime = Runtime::new().unwrap();
    assert_eq!(runtime.counts(), (0, 0));
    let app = add(&runtime, "math-provider");
    assert_eq!(runtime.app(app).unwrap().name, "math-provider");
    let refused = runtime.add_app("junk", b"not wasm at all").unwrap_err();
    assert!(
        matches!(&refused, runtime::Error::InvalidComponent { app, .. } if app == "junk"),
        "{refused:?}"
    );
    let peer = memory_peer(&math_host().await);
    assert!(!peer.is_closed());
    assert_eq!(runtime.counts(), (1, 0));
}

#[tokio::test]
async fn instantiation_can_run_on_any_worker() {
    let runtime = Runtime::new().unwrap();
    let app = add(&runtime, "math-provider");
    let building = InstanceBuilder::new(&runtime, app).unwrap().instantiate();
    let handle = tokio::spawn(building).await.unwrap().unwrap();
    assert_eq!(runtime.instance(handle.id()).unwrap().id(), handle.id());
}

#[tokio::test]
async fn t4_system_link_logs_through_the_logging_system() {
    let runtime = Runtime::new().unwrap();
    let sink = logging::Sink::default();
    let logging = system(logging::Logging::with_sink(sink.clone()));
    let client = build(
        &runtime,
        "logger-client",
        vec![(logging::INTERFACE, logging)],
        None,
    )
    .await;
    assert_eq!(run(&client).await.unwrap(), "Done");
    assert_eq!(
        sink.records(),
        [logging::Record {
            level: "INFO".into(),
            message: "Hello from Wasm!".into()
        }]
    );
}

#[tokio::test]
async fn t5_local_link_reaches_the_provider() {
    let runtime = Runtime::new().unwrap();
    let provider = build(&runtime, "math-provider", Vec::new(), None).await;
    let consumer = build(
        &runtime,
        "math-consumer",
        vec![(MATH, Linkable::Local(provider))],
        None,
    )
    .await;
    assert_eq!(run(&consumer).await.unwrap(), "10 + 5 = 15");
    assert_eq!(runtime.counts(), (2, 2));
}

#[tokio::test]
async fn t6_t8_kv_system_is_stateful_and_shared_in_a_diamond() {
    let runtime = Runtime::new().unwrap();
    let store = kv::Store::new();
    store.set("seen", "by both").await.unwrap();
    let shared: Arc<dyn SystemComponent> = Arc::new(kv::Kv::new(store.clone()));
    let builder = |app: &str| {
        let app = add(&runtime, app);
        InstanceBuilder::new(&runtime, app).unwrap().system(&shared)
    };
    let first = builder("kv-client").instantiate().await.unwrap();
    let second = builder("kv-client").instantiate().await.unwrap();
    assert_eq!(run(&first).await.unwrap(), "KV result: bar");
    assert_eq!(store.get("foo").await.unwrap().as_deref(), Some("bar"));
    store.set("foo", "changed by the host").await.unwrap();
    assert_eq!(run(&second).await.unwrap(), "KV result: bar");
    assert_eq!(store.entries().await.unwrap(), 2, "one map: foo and seen");
    let seen = store.get("seen").await.unwrap();
    assert_eq!(seen.as_deref(), Some("by both"));
}

#[tokio::test]
async fn t7_remote_link_over_memory_between_two_runtimes() {
    let host = math_host().await;
    let runtime = Runtime::new().unwrap();
    let client = memory_peer(&host);
    let remote = Linkable::Remote {
        channel: client,
        target: "math".into(),
    };
    let consumer = build(&runtime, "math-consumer", vec![(MATH, remote)], None).await;
    assert_eq!(run(&consumer).await.unwrap(), "10 + 5 = 15");
    assert_eq!(run(&consumer).await.unwrap(), "10 + 5 = 15");
}

async fn remote_over_socket(address: &str) {
    let host = math_host().await;
    let (bound, stop, server) = socket_server(&host, address).await;
    let runtime = Runtime::new().unwrap();
    let client = socket_peer(&bound).await;
    let remote = Linkable::Remote {
        channel: client.clone(),
        target: "math".into(),
    };
    let consumer = build(&runtime, "math-consumer", vec![(MATH, remote)], None).await;
    assert_eq!(run(&consumer).await.unwrap(), "10 + 5 = 15");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    let answered = |called| matches!(called, Ok(Ok(_)));
    assert!(client.is_closed() || !answered(call_slab(&client, "math", "x", b"").await));
}

#[tokio::test]
async fn t7_remote_link_over_tcp_loopback() {
    remote_over_socket("tcp://127.0.0.1:0").await;
}

#[tokio::test]
async fn t7_remote_link_over_a_unix_socket() {
    let path = std::env::temp_dir().join(format!("exorun-bind-{}.sock", std::process::id()));
    remote_over_socket(&format!("unix://{}", path.display())).await;
}

#[tokio::test]
async fn a_chain_consumer_relay_local_provider_remote() {
    let host = math_host().await;
    let runtime = Runtime::new().unwrap();
    let remote = Linkable::Remote {
        channel: memory_peer(&host),
        target: "math".into(),
    };
    let relay = build(&runtime, "relay", vec![(MATH, remote)], None).await;
    let consumer = build(
        &runtime,
        "math-consumer",
        vec![(MATH, Linkable::Local(relay))],
        None,
    )
    .await;
    assert_eq!(run(&consumer).await.unwrap(), "10 + 5 = 15");
}

#[tokio::test]
async fn the_reentrant_pair_reports_reentrancy_instead_of_hanging() {
    let runtime = Runtime::new().unwrap();
    let (ping_app, pong_app) = (add(&runtime, "ping"), add(&runtime, "pong"));
    let pong_api = Linkable::Named {
        app: pong_app,
        name: "pong".into(),
    };
    let ping = InstanceBuilder::new(&runtime, ping_app)
        .unwrap()
        .link("exorun:test/pong-api", pong_api)
        .name("ping")
        .instantiate()
        .await
        .unwrap();
    InstanceBuilder::new(&runtime, pong_app)
        .unwrap()
        .link("exorun:test/ping-api", Linkable::Local(ping.clone()))
        .name("pong")
        .instantiate()
        .await
        .unwrap();
    let started = Instant::now();
    let mut results = [wasmtime::component::Val::U32(0)];
    let params = [wasmtime::component::Val::U32(1)];
    let called = ping
        .call("exorun:test/ping-api", "ping", &params, &mut results)
        .await;
    let error = called.unwrap_err();
    // ping -> pong -> ping: pong's call back into ping is refused, and each caller on the way
    // names the callee that failed.
    let reentrant = instance::Error::Reentrant {
        instance: ping.id(),
    };
    let expected = instance::Error::Callee {
        instance: "pong".into(),
        cause: Box::new(instance::Error::Callee {
            instance: "ping".into(),
            cause: Box::new(reentrant.clone()),
        }),
    };
    assert_eq!(error, expected);
    assert_eq!(error.root_cause(), &reentrant);
    assert!(started.elapsed() < Duration::from_secs(5), "no waiting");
}

#[tokio::test]
async fn the_builder_lists_every_problem_and_sends_nothing() {
    let runtime = Runtime::new().unwrap();
    let (client, counting, _far) = counting_peer();
    let remote = |target: &str| Linkable::Remote {
        channel: client.clone(),
        target: target.into(),
    };

    let unlinked = InstanceBuilder::new(&runtime, add(&runtime, "math-consumer"))
        .unwrap()
        .link("exorun:test/nothing", remote("math"));
    let error = unlinked.instantiate().await.unwrap_err();
    let builder::Error::Refused { app, problems } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(app, "math-consumer");
    assert_eq!(
        problems,
        &[
            builder::Problem::Unlinked {
                interface: MATH.into()
            },
            builder::Problem::NotImported {
                interface: "exorun:test/nothing".into()
            },
        ]
    );

    let cruncher = build(&runtime, "cruncher", Vec::new(), None).await;
    let mismatched = InstanceBuilder::new(&runtime, add(&runtime, "math-consumer"))
        .unwrap()
        .link(MATH, Linkable::Local(cruncher));
    let error = mismatched.instantiate().await.unwrap_err();
    let builder::Error::Refused { problems, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        problems,
        &[builder::Problem::Contract(
            ledger::Error::InterfaceNotFound {
                interface: MATH.into()
            }
        )]
    );

    assert_eq!(counting.sent(), 0, "the transport saw nothing");
    assert_eq!(runtime.counts().1, 1, "only the provider was instantiated");
}

/// A provider of `exorun:test/math` whose `add` takes one parameter.
const ONE_PARAMETER_MATH: &str = r#"(component
  (core module $m (func (export "add") (param i32) (result i32) local.get 0))
  (core instance $i (instantiate $m))
  (func $add (param "n" u32) (result u32) (canon lift (core func $i "add")))
  (instance $math (export "add" (func $add)))
  (export "exorun:test/math" (instance $math))
)"#;

#[tokio::test]
async fn the_builder_names_both_signatures_of_a_mismatch() {
    let runtime = Runtime::new().unwrap();
    let odd = runtime
        .add_app("odd-math", ONE_PARAMETER_MATH.as_bytes())
        .unwrap();
    let odd = InstanceBuilder::new(&runtime, odd)
        .unwrap()
        .instantiate()
        .await
        .unwrap();
    let consumer = InstanceBuilder::new(&runtime, add(&runtime, "math-consumer"))
        .unwrap()
        .link(MATH, Linkable::Local(odd));
    let error = consumer.instantiate().await.unwrap_err();
    let builder::Error::Refused { problems, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        problems,
        &[builder::Problem::Contract(
            ledger::Error::SignatureMismatch {
                interface: MATH.into(),
                function: "add".into(),
                expected: "func(a: u32, b: u32) -> u32".into(),
                found: "func(n: u32) -> u32".into(),
            }
        )]
    );
    assert_eq!(runtime.counts().1, 1, "the consumer was not instantiated");
}

#[tokio::test]
async fn a_remote_peer_that_disconnects_mid_call_fails_it_promptly() {
    let runtime = Runtime::new().unwrap();
    let (client, _counting, far) = counting_peer();
    let remote = Linkable::Remote {
        channel: client,
        target: "math".into(),
    };
    let consumer = build(&runtime, "math-consumer", vec![(MATH, remote)], None).await;
    let running = tokio::spawn(async move { run(&consumer).await });
    let call = exorun_transport::transport::Transport::recv(&far).await;
    assert!(call.unwrap().is_some(), "the call reached the peer");
    let started = Instant::now();
    drop(far);
    let error = running.await.unwrap().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(remote_error(&error), Some(&client::Error::PeerClosed));
    assert_eq!(
        error.to_string(),
        "remote call exorun:test/math#add on `math`: the peer closed the connection"
    );
}

#[tokio::test]
async fn only_exported_instances_are_reachable() {
    let runtime = Runtime::new().unwrap();
    build(&runtime, "math-provider", Vec::new(), Some("hidden")).await;
    let exports = Exports::new(Arc::clone(&runtime));
    assert!(matches!(
        exports.export("nobody"),
        Err(runtime::Error::NotFound { .. })
    ));
    let client = memory_peer(&exports);
    let slab = neorpc::codec::encode(&[
        wasmtime::component::Val::U32(1),
        wasmtime::component::Val::U32(2),
    ])
    .unwrap();
    let hidden = call_slab(&client, "hidden", "exorun:test/math#add", &slab).await;
    assert_eq!(
        hidden.unwrap().unwrap_err(),
        neorpc::failure::Failure::InstanceNotFound {
            instance: "hidden".into()
        }
    );
    exports.export("hidden").unwrap();
    assert_eq!(exports.names(), ["hidden"]);
    let reachable = call_slab(&client, "hidden", "exorun:test/math#add", &slab).await;
    assert!(matches!(reachable, Ok(Ok(_))), "{reachable:?}");
}

const ENVIRONMENT: &str = "wasi:cli/environment@0.2.12";

async fn greeting(reader: &exorun_core::instance::InstanceHandle) -> wasmtime::component::Val {
    let mut results = [wasmtime::component::Val::Bool(false)];
    let key = [wasmtime::component::Val::String("GREETING".into())];
    reader
        .call("exorun:test/sandbox", "get-env", &key, &mut results)
        .await
        .unwrap();
    let [found] = results;
    found
}

#[tokio::test]
async fn a_wasi_interface_links_to_a_component_locally_and_remotely() {
    use exorun_systems::wasi::Wasi;
    let expected = wasmtime::component::Val::Option(Some(Box::new(
        wasmtime::component::Val::String("from a component".into()),
    )));
    let runtime = Runtime::new().unwrap();
    let wasi: Arc<dyn SystemComponent> = Arc::new(Wasi::new().env("GREETING", "from the host"));
    let reader_app = add(&runtime, "fs-reader");

    let system_only = InstanceBuilder::new(&runtime, reader_app)
        .unwrap()
        .system(&wasi)
        .instantiate()
        .await
        .unwrap();
    let from_host = wasmtime::component::Val::Option(Some(Box::new(
        wasmtime::component::Val::String("from the host".into()),
    )));
    assert_eq!(greeting(&system_only).await, from_host);

    let provider = build(&runtime, "env-provider", Vec::new(), Some("env")).await;
    let local = InstanceBuilder::new(&runtime, reader_app)
        .unwrap()
        .link(ENVIRONMENT, Linkable::Local(provider))
        .system(&wasi)
        .instantiate()
        .await
        .unwrap();
    assert_eq!(greeting(&local).await, expected);

    let exports = Exports::new(Arc::clone(&runtime));
    exports.export("env").unwrap();
    let elsewhere = Runtime::new().unwrap();
    let remote = Linkable::Remote {
        channel: memory_peer(&exports),
        target: "env".into(),
    };
    let reader_app = add(&elsewhere, "fs-reader");
    let remote = InstanceBuilder::new(&elsewhere, reader_app)
        .unwrap()
        .link(ENVIRONMENT, remote)
        .system(&wasi)
        .instantiate()
        .await
        .unwrap();
    assert_eq!(greeting(&remote).await, expected);
}

/// `add(a, b)` on `handle`'s `exorun:test/math`.
async fn add_on(handle: &instance::InstanceHandle, a: u32, b: u32) -> Result<u32, instance::Error> {
    let mut results = [wasmtime::component::Val::U32(0)];
    let params = [
        wasmtime::component::Val::U32(a),
        wasmtime::component::Val::U32(b),
    ];
    handle.call(MATH, "add", &params, &mut results).await?;
    let [wasmtime::component::Val::U32(sum)] = results else {
        panic!("add returned {results:?}")
    };
    Ok(sum)
}

#[tokio::test]
async fn a_callee_that_traps_is_named_and_both_instances_restart() {
    let runtime = Runtime::new().unwrap();
    let callee = build(&runtime, "misbehave", Vec::new(), Some("faulty")).await;
    let relay = build(
        &runtime,
        "relay",
        vec![(MATH, Linkable::Local(callee.clone()))],
        Some("relay"),
    )
    .await;
    assert_eq!(add_on(&relay, 40, 2).await, Ok(42));
    // The callee's `add` traps on overflow: the relay's call fails naming it, the trap's own
    // reason inside.
    let error = add_on(&relay, u32::MAX, 1).await.unwrap_err();
    let instance::Error::Callee { instance, cause } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(instance, "faulty");
    assert!(
        matches!(&**cause, instance::Error::Trapped { message } if message.contains("unreachable")),
        "{cause:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("callee `faulty` failed: {cause}"),
        "each reason once"
    );
    // Both were left mid-call: the callee by its trap, the relay by its import's failure
    // (wasmtime will not enter either again). Each is restarted on its next call.
    assert!(callee.failure().await.is_some());
    assert!(relay.failure().await.is_some());
    assert_eq!(add_on(&relay, 1, 2).await, Ok(3));
    assert_eq!((relay.restarts(), callee.restarts()), (1, 1));
    // A failure of the relay's own making is not a callee's: calling the callee directly
    // traps it, and the error says so without naming anyone else.
    let direct = add_on(&callee, u32::MAX, 1).await.unwrap_err();
    assert!(
        matches!(direct, instance::Error::Trapped { .. }),
        "{direct:?}"
    );
}
