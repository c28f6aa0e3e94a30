//! Supervision as remote callers see it: pipelined large calls to a busy instance are refused
//! `Overloaded` at once while the bytes held stay within the bound, and a relay whose remote
//! import failed answers again once its peer is up.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;

use common::MATH;
use common::build;
use common::call_slab;
use common::math_host;
use common::memory_peer;
use common::socket_server;
use exorun_bind::builder::InstanceBuilder;
use exorun_bind::builder::Linkable;
use exorun_bind::serve::Exports;
use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::limits::Limits;
use exorun_core::runtime::Runtime;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use exorun_transport::address::Address;
use exorun_transport::net;
use exorun_transport::peer;
use exorun_transport::transport;
use neorpc::codec;
use neorpc::failure::Failure;
use tokio::sync::Notify;
use wasmtime::component::Linker;
use wasmtime::component::Val;

/// `exorun:test/math` whose `add` holds each call until released, saying when one arrives.
struct HeldMath {
    arrived: Arc<Notify>,
    release: Arc<Notify>,
}

impl SystemComponent for HeldMath {
    fn interfaces(&self) -> Vec<String> {
        vec![MATH.to_owned()]
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        let (arrived, release) = (Arc::clone(&self.arrived), Arc::clone(&self.release));
        let mut math = linker
            .instance(MATH)
            .map_err(|error| system::define_error(MATH, error))?;
        let held = math.func_new_async("add", move |_store, _ty, _params, results| {
            let (arrived, release) = (Arc::clone(&arrived), Arc::clone(&release));
            Box::new(async move {
                let released = release.notified();
                arrived.notify_waiters();
                released.await;
                results[0] = Val::U32(0);
                Ok(())
            })
        });
        held.map_err(|error| system::define_error(MATH, error))
    }

    fn configure(&self, _: &mut ContextBuilder) -> Result<(), system::Error> {
        Ok(())
    }
}

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_large_calls_to_a_busy_instance_are_refused_within_the_byte_bound() {
    let runtime = Runtime::new().unwrap();
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let math = HeldMath {
        arrived: Arc::clone(&arrived),
        release: Arc::clone(&release),
    };
    let limits = Limits {
        bytes_waiting_max: 4 * MIB,
        ..Limits::default()
    };
    let app = common::add(&runtime, "relay");
    let relay = InstanceBuilder::new(&runtime, app)
        .unwrap()
        .link(MATH, Linkable::System(Arc::new(math)))
        .limits(limits)
        .name("relay")
        .instantiate()
        .await
        .unwrap();
    let exports = Exports::new(Arc::clone(&runtime));
    exports.export("relay").unwrap();
    let client = memory_peer(&exports);
    let method = "exorun:test/math#add";
    let held = {
        let (client, slab) = (
            Arc::clone(&client),
            codec::encode(&[Val::U32(1), Val::U32(2)]).unwrap(),
        );
        let arrived = arrived.notified();
        let held = tokio::spawn(async move { call_slab(&client, "relay", method, &slab).await });
        arrived.await;
        held
    };
    // Thirty-two pipelined calls of 1 MiB each (their slabs are bytes, so they would fail to
    // decode as `add`'s arguments; they are weighed while they wait, before any decoding).
    let big = codec::encode(&[Val::List(vec![Val::U8(7); 1 << 20])]).unwrap();
    let mut pipelined = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (client, big) = (Arc::clone(&client), big.clone());
        pipelined.spawn(async move { call_slab(&client, "relay", method, &big).await });
    }
    // The ones past the bound are refused while the instance is still busy.
    let mut overloaded = 0;
    let mut most_held = 0;
    while overloaded < 32 - 3 {
        let outcome = pipelined.join_next().await.unwrap().unwrap();
        assert_eq!(outcome.unwrap().unwrap_err(), Failure::Overloaded);
        overloaded += 1;
        let (calls, bytes) = relay.waiting();
        most_held = most_held.max(bytes);
        assert!(
            calls <= 3 && bytes <= 4 * MIB,
            "{calls} calls, {bytes} bytes waiting"
        );
    }
    assert!(most_held > 0 && most_held <= 4 * MIB, "{most_held}");
    release.notify_waiters();
    assert!(matches!(held.await.unwrap(), Ok(Ok(_))));
    // The three that waited ran, and their slabs did not fit `add`.
    while let Some(outcome) = pipelined.join_next().await {
        let refused = outcome.unwrap().unwrap().unwrap_err();
        let Failure::BadArgumentCount {
            expected: 2,
            found: 1,
        } = refused
        else {
            panic!("{refused:?}")
        };
        release.notify_waiters();
    }
    assert_eq!(relay.waiting(), (0, 0));
}

#[tokio::test]
async fn a_relay_whose_remote_import_failed_answers_once_its_peer_is_up() {
    let probe = net::Listener::bind(&Address::parse("tcp://127.0.0.1:0").unwrap())
        .await
        .unwrap();
    let address = probe.local_address().unwrap();
    drop(probe);
    let sockets = net::Sockets::new(transport::MESSAGE_BYTES_MAX);
    let to_provider = Arc::new(peer::Peer::new(
        "provider",
        vec![address.clone()],
        Arc::new(sockets),
        peer::Config::default(),
    ));
    let runtime = Runtime::new().unwrap();
    let link = Linkable::Remote {
        channel: to_provider,
        target: "math".into(),
    };
    let relay = build(&runtime, "relay", vec![(MATH, link)], Some("relay")).await;
    let exports = Exports::new(Arc::clone(&runtime));
    exports.export("relay").unwrap();
    let caller = memory_peer(&exports);
    let slab = codec::encode(&[Val::U32(40), Val::U32(2)]).unwrap();
    let method = "exorun:test/math#add";
    let down = call_slab(&caller, "relay", method, &slab)
        .await
        .unwrap()
        .unwrap_err();
    let Failure::Internal { message } = &down else {
        panic!("{down:?}")
    };
    assert!(
        message.contains("remote call exorun:test/math#add on `math`"),
        "{message}"
    );
    assert!(
        relay.failure().await.is_some(),
        "the relay's guest was unwound"
    );
    // The provider comes up where the relay's peer points.
    let provider = math_host().await;
    let (bound, _stop, _server) = socket_server(&provider, &address.to_string()).await;
    assert_eq!(bound, address);
    let reply = call_slab(&caller, "relay", method, &slab)
        .await
        .unwrap()
        .unwrap();
    let mut results = [Val::U32(0)];
    let types = [wasmtime::component::Type::U32];
    codec::decode_into(&reply, &types, &mut results, &codec::Limits::default()).unwrap();
    assert_eq!(results, [Val::U32(42)]);
    assert_eq!(relay.restarts(), 1);
}

#[tokio::test]
async fn a_reply_too_large_for_a_frame_is_answered_with_both_sizes() {
    let runtime = Runtime::new().unwrap();
    let limits = Limits {
        memory_bytes_max: 64 * 1024 * 1024,
        ..Limits::default()
    };
    let app = common::add(&runtime, "cruncher");
    InstanceBuilder::new(&runtime, app)
        .unwrap()
        .limits(limits)
        .name("spiller")
        .instantiate()
        .await
        .unwrap();
    let exports = Exports::new(Arc::clone(&runtime));
    exports.export("spiller").unwrap();
    let client = memory_peer(&exports);
    let bytes = 17 * 1024 * 1024;
    let slab = codec::encode(&[Val::U32(bytes)]).unwrap();
    let refused = call_slab(&client, "spiller", "exorun:test/crunch#spill", &slab)
        .await
        .unwrap()
        .unwrap_err();
    let Failure::ReplyTooLarge { reply_bytes, max } = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(max, neorpc::frame::FRAME_BYTES_MAX);
    assert!(reply_bytes > u64::from(bytes), "{reply_bytes}");
    // A reply that fits still comes back whole.
    let slab = codec::encode(&[Val::U32(1024)]).unwrap();
    let reply = call_slab(&client, "spiller", "exorun:test/crunch#spill", &slab)
        .await
        .unwrap()
        .unwrap();
    // The result slab: a list holding one 1024-byte string.
    assert_eq!(reply.len(), 5 + 5 + 1024);
}
