//! Resources across links, at exorun-bind's boundary: a counter made by counter-provider and
//! used by counter-consumer's guest through a local link, a named link, and remote links over
//! memory, TCP, Unix, TLS and QUIC, with the same meaning each time (ownership, borrows, drops
//! that reach the owner before the next call, handles nested in records, lists, options and
//! results, a handle going home through another interface); what is refused (a handle given
//! to a third instance, a per-call provider, a lattice); what ends handles (a restarted owner,
//! a closed connection); forged ids; bounds.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;

use common::build;
use exorun_bind::builder;
use exorun_bind::builder::InstanceBuilder;
use exorun_bind::builder::Linkable;
use exorun_bind::exports::Exports;
use exorun_bind::handles;
use exorun_bind::standins;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::registry::Runtime;
use exorun_core::supervision::Replicas;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::client::Channel;
use exorun_transport::client::Client;
use exorun_transport::identity::NodeKey;
use exorun_transport::net;
use exorun_transport::server;
use exorun_transport::tls::Secure;
use exorun_transport::transport;
use neorpc::codec;
use neorpc::failure::Failure;
use neorpc::frame;
use wasmtime::component::Type;
use wasmtime::component::Val;

const COUNTERS: &str = "exorun:test/counters";
const SINK: &str = "exorun:test/counter-sink";
const USER: &str = "exorun:test/counter-user";

/// How the consumer reaches its provider.
#[derive(Debug, Clone, Copy)]
enum Via {
    Local,
    Named,
    Memory,
    Tcp,
    Unix,
    Tls,
    Quic,
}

/// A provider (`counters`, in its own runtime for remote links) and a consumer linked to it.
struct Setup {
    provider: InstanceHandle,
    consumer: InstanceHandle,
    exports: Option<Arc<Exports>>,
    _stop: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn setup(via: Via) -> Setup {
    let runtime = Runtime::new().unwrap();
    let provider_runtime = match via {
        Via::Local | Via::Named => Arc::clone(&runtime),
        Via::Memory | Via::Tcp | Via::Unix | Via::Tls | Via::Quic => Runtime::new().unwrap(),
    };
    let provider = build(
        &provider_runtime,
        "counter-provider",
        Vec::new(),
        Some("counters"),
    )
    .await;
    let (link, exports, stop) = match via {
        Via::Local => (Linkable::Local(provider.clone()), None, None),
        Via::Named => {
            let app = provider.app().id;
            let name = "counters".to_owned();
            (Linkable::Named { app, name }, None, None)
        }
        Via::Memory | Via::Tcp | Via::Unix | Via::Tls | Via::Quic => {
            let exports = Exports::new(Arc::clone(&provider_runtime));
            exports.export("counters").unwrap();
            let (channel, stop) = serve(&exports, via).await;
            let target = "counters".to_owned();
            (Linkable::Remote { channel, target }, Some(exports), stop)
        }
    };
    let links = vec![(COUNTERS, link.clone()), (SINK, link)];
    let consumer = build(&runtime, "counter-consumer", links, None).await;
    Setup {
        provider,
        consumer,
        exports,
        _stop: stop,
    }
}

/// A channel to `exports` over `via`, and what stops its server (none for memory).
async fn serve(
    exports: &Arc<Exports>,
    via: Via,
) -> (Arc<dyn Channel>, Option<tokio::sync::oneshot::Sender<()>>) {
    let address = match via {
        Via::Tcp => "tcp://127.0.0.1:0".to_owned(),
        Via::Unix => {
            let dir = std::env::temp_dir().join(format!("exorun-res-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let n = NEXT_SOCKET.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("unix://{}", dir.join(format!("s{n}.sock")).display())
        }
        Via::Tls => "tls://127.0.0.1:0".to_owned(),
        Via::Quic => "quic://127.0.0.1:0".to_owned(),
        Via::Local | Via::Named | Via::Memory => return (common::memory_peer(exports), None),
    };
    let address = Address::parse(&address).unwrap();
    let secure = matches!(via, Via::Tls | Via::Quic);
    let server_key = NodeKey::generate().unwrap();
    let listener = match secure {
        true => net::Listener::bind_secure(&address, &server_key)
            .await
            .unwrap(),
        false => net::Listener::bind(&address).await.unwrap(),
    };
    let bound = listener.local_address().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dispatcher: Arc<dyn exorun_transport::handler::Dispatcher> = exports.clone();
    let server = server::Server::new(dispatcher, server::Config::default())
        .listen(listener)
        .run(async move {
            let _ = stopped.await;
        });
    tokio::spawn(server);
    let connection = match secure {
        true => {
            let secure = Secure {
                key: Arc::new(NodeKey::generate().unwrap()),
                pin: server_key.public(),
            };
            net::connect_secure(&bound, &secure, transport::MESSAGE_BYTES_MAX)
                .await
                .unwrap()
        }
        false => net::connect(&bound, transport::MESSAGE_BYTES_MAX)
            .await
            .unwrap(),
    };
    let client: Arc<dyn Channel> = Arc::new(Client::new(connection, client::Config::default()));
    (client, Some(stop))
}

static NEXT_SOCKET: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Calls `counter-user#function` on the consumer; the single result, if any.
async fn user(
    consumer: &InstanceHandle,
    function: &str,
    args: &[Val],
) -> Result<Val, instance::Error> {
    let export = consumer.export(USER, function)?;
    let count = export.signature().results.len();
    let mut results = vec![Val::Bool(false); count];
    consumer.call_export(&export, args, &mut results).await?;
    Ok(results.pop().unwrap_or(Val::Tuple(Vec::new())))
}

async fn u32_of(consumer: &InstanceHandle, function: &str, args: &[Val]) -> u32 {
    match user(consumer, function, args).await {
        Ok(Val::U32(n)) => n,
        other => panic!("{function}{args:?}: {other:?}"),
    }
}

/// Counters alive in the provider, asked directly.
async fn live(provider: &InstanceHandle) -> u32 {
    let mut results = [Val::U32(0)];
    provider
        .call(COUNTERS, "live", &[], &mut results)
        .await
        .unwrap();
    let [Val::U32(n)] = results else {
        unreachable!()
    };
    n
}

/// What every link kind must do the same way.
async fn scenario(via: Via) {
    let Setup {
        provider,
        consumer,
        exports,
        _stop: _serving,
    } = setup(via).await;
    let u = |n: u32| Val::U32(n);
    // A counter made, used and dropped inside one call: its drop reached the provider before
    // the call returned.
    assert_eq!(
        u32_of(&consumer, "count", &[u(3), u(4)]).await,
        6,
        "{via:?}"
    );
    assert_eq!(
        live(&provider).await,
        0,
        "{via:?}: the drop reached the owner"
    );

    let s = u32_of(&consumer, "keep", &[u(10)]).await;
    assert_eq!(u32_of(&consumer, "next", &[u(s)]).await, 10);
    assert_eq!(u32_of(&consumer, "next", &[u(s)]).await, 11);
    assert_eq!(
        u32_of(&consumer, "peek", &[u(s)]).await,
        12,
        "{via:?}: a borrow"
    );
    assert_eq!(u32_of(&consumer, "next", &[u(s)]).await, 12);
    let t = u32_of(&consumer, "keep", &[u(100)]).await;
    assert_eq!(live(&provider).await, 2);
    // s absorbs t (lent): s counts 13 + 100, t moved on to 101 and stays the consumer's.
    assert_eq!(
        u32_of(&consumer, "absorb", &[u(s), u(t)]).await,
        113,
        "{via:?}"
    );
    assert_eq!(u32_of(&consumer, "next", &[u(t)]).await, 101);
    // t goes home: the provider receives its own counter.
    assert_eq!(u32_of(&consumer, "finish", &[u(t)]).await, 102, "{via:?}");
    assert_eq!(
        live(&provider).await,
        1,
        "{via:?}: the counter given home was dropped there"
    );

    // Handles nested in a record, a list, an option and a result.
    let Ok(Val::Tuple(pair)) = user(&consumer, "pair", &[u(1), u(2)]).await else {
        panic!("{via:?}: pair")
    };
    let [Val::U32(a), Val::U32(b)] = pair[..] else {
        panic!("{pair:?}")
    };
    assert_eq!(u32_of(&consumer, "next", &[u(a)]).await, 1);
    assert_eq!(u32_of(&consumer, "next", &[u(b)]).await, 2);
    let mut slots = vec![a, b];
    let many = user(&consumer, "many", &[Val::List(vec![u(5), u(6), u(7)])]).await;
    let Ok(Val::List(many)) = many else {
        panic!("{via:?}: {many:?}")
    };
    assert_eq!(many.len(), 3);
    for (slot, start) in many.iter().zip([5, 6, 7]) {
        let Val::U32(slot) = slot else {
            panic!("{slot:?}")
        };
        assert_eq!(u32_of(&consumer, "next", &[u(*slot)]).await, start);
        slots.push(*slot);
    }
    let none = user(&consumer, "maybe", &[Val::Option(None)])
        .await
        .unwrap();
    assert_eq!(none, Val::Option(None));
    let some = user(&consumer, "maybe", &[Val::Option(Some(Box::new(u(9))))]).await;
    let Ok(Val::Option(Some(slot))) = some else {
        panic!("{some:?}")
    };
    let Val::U32(slot) = *slot else {
        panic!("{slot:?}")
    };
    slots.push(slot);
    let refused = user(&consumer, "checked", &[u(0)]).await.unwrap();
    let expected = Val::Result(Err(Some(Box::new(Val::String(
        "a counter cannot start at 0 here".into(),
    )))));
    assert_eq!(refused, expected, "{via:?}");
    let kept = user(&consumer, "checked", &[u(4)]).await.unwrap();
    let Val::Result(Ok(Some(slot))) = kept else {
        panic!("{kept:?}")
    };
    let Val::U32(slot) = *slot else {
        panic!("{slot:?}")
    };
    slots.push(slot);
    assert_eq!(live(&provider).await, 8, "{via:?}");
    assert_eq!(
        u32_of(&consumer, "live", &[]).await,
        8,
        "{via:?}: through the link"
    );
    if let Some(exports) = &exports {
        assert_eq!(exports.handles_held(), 8, "{via:?}: one id per handle");
    }

    // Through another interface of the same provider, the counter goes home too.
    assert_eq!(u32_of(&consumer, "sink", &[u(s)]).await, 113, "{via:?}");
    assert_eq!(live(&provider).await, 7);

    // Everything the consumer keeps, dropped: nothing left in the owner.
    assert_eq!(u32_of(&consumer, "kept", &[]).await, 7);
    for slot in slots {
        user(&consumer, "forget", &[u(slot)]).await.unwrap();
    }
    assert_eq!(u32_of(&consumer, "kept", &[]).await, 0);
    assert_eq!(
        live(&provider).await,
        0,
        "{via:?}: every drop reached the owner"
    );
    if let Some(exports) = &exports {
        assert_eq!(exports.handles_held(), 0, "{via:?}: and no id is left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_means_the_same_across_every_link() {
    for via in [
        Via::Local,
        Via::Named,
        Via::Memory,
        Via::Tcp,
        Via::Unix,
        Via::Tls,
        Via::Quic,
    ] {
        scenario(via).await;
    }
}
