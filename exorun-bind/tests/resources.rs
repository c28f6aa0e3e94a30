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
use exorun_bind::link::standins;
use exorun_bind::serve;
use exorun_bind::serve::Exports;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::runtime::Runtime;
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
    runtime: Arc<Runtime>,
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
        runtime,
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
    let dispatcher: Arc<dyn exorun_transport::dispatch::Dispatcher> = exports.clone();
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
        ..
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
    nested(via, &provider, &consumer, exports.as_deref(), s).await;
}

/// Handles nested in a record, a list, an option and a result; one going home through
/// another interface; all dropped. `s` is a kept counter at 113.
/// The slot in `some(slot)` or `ok(slot)`.
fn slot_in(value: Val) -> u32 {
    let (Val::Option(Some(inner)) | Val::Result(Ok(Some(inner)))) = &value else {
        panic!("no slot in {value:?}")
    };
    let Val::U32(slot) = **inner else {
        panic!("no slot in {value:?}")
    };
    slot
}

async fn nested(
    via: Via,
    provider: &InstanceHandle,
    consumer: &InstanceHandle,
    exports: Option<&Exports>,
    s: u32,
) {
    let u = |n: u32| Val::U32(n);
    let (provider, consumer) = (provider.clone(), consumer.clone());

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
    slots.push(slot_in(some.unwrap()));
    let refused = user(&consumer, "checked", &[u(0)]).await.unwrap();
    let expected = Val::Result(Err(Some(Box::new(Val::String(
        "a counter cannot start at 0 here".into(),
    )))));
    assert_eq!(refused, expected, "{via:?}");
    let kept = user(&consumer, "checked", &[u(4)]).await.unwrap();
    slots.push(slot_in(kept));
    assert_eq!(live(&provider).await, 8, "{via:?}");
    assert_eq!(
        u32_of(&consumer, "live", &[]).await,
        8,
        "{via:?}: through the link"
    );
    if let Some(exports) = exports {
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
    if let Some(exports) = exports {
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

/// The reason a handle was found gone, however the link raised it: a local link raises
/// `ResourceGone` itself, a remote one the wire's `Failure::ResourceGone`.
fn gone(error: &instance::Error) -> Option<String> {
    let root = error.root_cause();
    if let instance::Error::ResourceGone { resource } = root {
        return Some(resource.clone());
    }
    let instance::Error::Raised(raised) = root else {
        return None;
    };
    let Some(Failure::ResourceGone { resource }) = exorun_bind::link::remote::failure_of(raised)
    else {
        return None;
    };
    Some(resource.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_given_to_a_third_instance_is_refused_and_named() {
    for remote in [false, true] {
        let runtime = Runtime::new().unwrap();
        let first = build(&runtime, "counter-provider", Vec::new(), Some("counters")).await;
        let second = build(&runtime, "counter-provider", Vec::new(), Some("counters-2")).await;
        let (to_first, to_second) = match remote {
            false => (
                Linkable::Local(first.clone()),
                Linkable::Local(second.clone()),
            ),
            true => {
                let exports = Exports::new(Arc::clone(&runtime));
                exports.export("counters").unwrap();
                exports.export("counters-2").unwrap();
                let channel = |target: &str| Linkable::Remote {
                    channel: common::memory_peer(&exports),
                    target: target.to_owned(),
                };
                (channel("counters"), channel("counters-2"))
            }
        };
        let links = vec![(COUNTERS, to_first), (SINK, to_second)];
        let consumer = build(&runtime, "counter-consumer", links, None).await;
        let slot = u32_of(&consumer, "keep", &[Val::U32(1)]).await;
        let error = user(&consumer, "sink", &[Val::U32(slot)])
            .await
            .unwrap_err();
        let instance::Error::Raised(raised) = &error else {
            panic!("{error:?}")
        };
        assert_eq!(
            raised.downcast_ref::<standins::Error>(),
            Some(&standins::Error::Foreign {
                resource: "counter".into(),
                owner: "counters".into(),
                callee: "counters-2".into(),
            }),
            "remote: {remote}"
        );
        assert!(
            error.to_string().contains(
                "the counter given to `counters-2` belongs to `counters`: a handle cannot be \
                 passed on to a third instance"
            ),
            "{error}"
        );
        // Nothing reached the third instance, and the handle the guest gave up is dropped in
        // its owner.
        assert_eq!(live(&second).await, 0);
        assert_eq!(live(&first).await, 0, "remote: {remote}");
    }
}

/// A channel that forwards to a client but, like a lattice, cannot carry handles.
struct NoSessions(Arc<Client>);

impl Channel for NoSessions {
    fn call_within(
        &self,
        frame: frame::OutboundCall,
        timeout: std::time::Duration,
    ) -> exorun_transport::transport::BoxFuture<'_, Result<client::Reply, client::Error>> {
        Channel::call_within(self.0.as_ref(), frame, timeout)
    }

    fn timeout(&self) -> std::time::Duration {
        self.0.timeout()
    }
}

#[tokio::test]
async fn a_per_call_provider_and_a_lattice_are_refused_before_anything_runs() {
    let runtime = Runtime::new().unwrap();
    let app = common::add(&runtime, "counter-provider");
    let concurrency = std::num::NonZeroUsize::new(2).unwrap();
    let per_call = InstanceBuilder::new(&runtime, app)
        .unwrap()
        .replicas(Replicas::PerCall { concurrency })
        .instantiate()
        .await
        .unwrap();
    let (client, counting, _far) = common::counting_peer();
    let lattice: Arc<dyn Channel> = Arc::new(NoSessions(client));
    let consumer = common::add(&runtime, "counter-consumer");
    let refused = InstanceBuilder::new(&runtime, consumer)
        .unwrap()
        .link(COUNTERS, Linkable::Local(per_call))
        .link(
            SINK,
            Linkable::Remote {
                channel: lattice,
                target: "counters".into(),
            },
        )
        .instantiate()
        .await;
    let Err(builder::Error::Refused { problems, .. }) = refused else {
        panic!("{:?}", refused.err())
    };
    assert_eq!(
        problems,
        [
            builder::Problem::ResourcesOverLattice {
                interface: SINK.into()
            },
            builder::Problem::ResourcesPerCall {
                interface: COUNTERS.into()
            },
        ]
    );
    assert_eq!(counting.sent(), 0, "nothing touched the network");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_owner_makes_its_handles_gone_not_another_resource() {
    for via in [Via::Local, Via::Named, Via::Memory, Via::Tcp] {
        let setup = setup(via).await;
        let (provider, consumer) = (&setup.provider, &setup.consumer);
        let slot = u32_of(consumer, "keep", &[Val::U32(5)]).await;
        assert_eq!(u32_of(consumer, "next", &[Val::U32(slot)]).await, 5);
        let crashed = provider.call(COUNTERS, "crash", &[], &mut []).await;
        assert!(crashed.is_err(), "{via:?}: the provider trapped");
        let error = user(consumer, "next", &[Val::U32(slot)]).await.unwrap_err();
        assert_eq!(
            gone(&error).as_deref(),
            Some("counter"),
            "{via:?}: {error:?}"
        );
        assert!(
            error.to_string().contains("counter"),
            "{via:?}: the reason names the resource: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_importer_that_goes_drops_every_handle_it_held() {
    for via in [Via::Local, Via::Memory] {
        let setup = setup(via).await;
        let (provider, consumer) = (&setup.provider, &setup.consumer);
        for start in 1..=3 {
            u32_of(consumer, "keep", &[Val::U32(start)]).await;
        }
        assert_eq!(live(provider).await, 3);
        // A trap (a slot that does not exist) replaces the consumer's replica: its store, and
        // the handles in it, go.
        let trapped = user(consumer, "next", &[Val::U32(999)]).await;
        assert!(trapped.is_err());
        standins::settled().await;
        assert_eq!(live(provider).await, 0, "{via:?}: restarted importer");

        for start in 1..=2 {
            u32_of(consumer, "keep", &[Val::U32(start)]).await;
        }
        assert_eq!(live(provider).await, 2);
        // Removed: its replicas go once their calls end, whoever still holds the handle.
        setup.runtime.remove_instance(consumer.id()).unwrap();
        consumer.retired().await;
        standins::settled().await;
        assert_eq!(live(provider).await, 0, "{via:?}: removed importer");
    }
}

/// A runtime serving counter-provider as `counters`: the provider and the exports.
async fn counters_host() -> (InstanceHandle, Arc<Exports>) {
    let runtime = Runtime::new().unwrap();
    let provider = build(&runtime, "counter-provider", Vec::new(), Some("counters")).await;
    let exports = Exports::new(runtime);
    exports.export("counters").unwrap();
    (provider, exports)
}

/// A raw call on `counters`: its results decoded against the function's own types, handles
/// as their ids, or the failure the server answered with (a call that gets no reply fails the
/// test).
async fn raw(client: &Client, function: &str, args: &[Val]) -> Result<Vec<Val>, Failure> {
    let slab = codec::encode(args).unwrap();
    let method = format!("{COUNTERS}#{function}");
    let reply = common::call_slab(client, "counters", &method, &slab).await;
    let reply = reply.expect("a reply")?;
    let limits = codec::Limits::default().with_handles();
    Ok(codec::decode(&reply, &result_types(function), &limits).unwrap())
}

/// The result types of `counters#function`, from the provider app.
fn result_types(function: &str) -> Vec<Type> {
    static LEDGER: std::sync::OnceLock<Arc<exorun_core::ledger::Ledger>> =
        std::sync::OnceLock::new();
    let ledger = LEDGER.get_or_init(|| {
        let runtime = Runtime::new().unwrap();
        let app = common::add(&runtime, "counter-provider");
        runtime.app(app).unwrap().ledger
    });
    ledger.exports[COUNTERS].functions[function].results.clone()
}

async fn make(client: &Client, start: u32) -> u64 {
    let made = raw(client, "make", &[Val::U32(start)]).await;
    let Ok(made) = made else { panic!("{made:?}") };
    let [Val::U64(id)] = made[..] else {
        panic!("{made:?}")
    };
    id
}

async fn next(client: &Client, id: u64) -> Result<Vec<Val>, Failure> {
    raw(client, "[method]counter.next", &[Val::U64(id)]).await
}

fn remote_gone(resource: &str) -> Failure {
    Failure::ResourceGone {
        resource: resource.into(),
    }
}

#[tokio::test]
async fn a_forged_or_foreign_handle_id_is_answered_precisely_and_reaches_nothing() {
    let (provider, exports) = counters_host().await;
    let (mine, theirs) = (common::memory_peer(&exports), common::memory_peer(&exports));
    let id = make(&mine, 40).await;
    assert_ne!(id, 1, "ids are not a counter");
    let second = make(&mine, 50).await;
    assert!(second.abs_diff(id) > 1 << 16, "ids are drawn at random");
    assert_eq!(next(&mine, id).await, Ok(vec![Val::U32(40)]));
    // Another connection cannot name them, nor can a forged id.
    assert_eq!(next(&theirs, id).await, Err(remote_gone("counter")));
    assert_eq!(next(&mine, id ^ 1).await, Err(remote_gone("counter")));
    // An id where a plain value goes is a plain value; a plain value where a handle goes is
    // an id the connection does not hold.
    let borrowed = raw(&mine, "peek", &[Val::U64(7)]).await;
    assert_eq!(borrowed, Err(remote_gone("counter")));
    // A release of an id not held, and a second release, are answered the same way.
    assert_eq!(mine.release(id ^ 1).await, Ok(Err(remote_gone("resource"))));
    assert_eq!(live(&provider).await, 2, "nothing reached the provider");
    assert_eq!(mine.release(id).await, Ok(Ok(())));
    assert_eq!(live(&provider).await, 1, "released before the reply");
    assert_eq!(mine.release(id).await, Ok(Err(remote_gone("resource"))));
    assert_eq!(next(&mine, id).await, Err(remote_gone("counter")));
    assert_eq!(exports.handles_held(), 1);
    // A borrow lends for one call: the caller keeps its handle.
    let lent = raw(&mine, "peek", &[Val::U64(second)]).await;
    assert_eq!(lent, Ok(vec![Val::U32(50)]));
    assert_eq!(next(&mine, second).await, Ok(vec![Val::U32(50)]));
    // An own given home leaves the table.
    let home = raw(&mine, "finish", &[Val::U64(second)]).await;
    assert_eq!(home, Ok(vec![Val::U32(51)]));
    assert_eq!(next(&mine, second).await, Err(remote_gone("counter")));
    assert_eq!((exports.handles_held(), live(&provider).await), (0, 0));
}

#[tokio::test]
async fn a_connection_that_ends_drops_its_handles_and_a_new_one_cannot_name_them() {
    let (provider, exports) = counters_host().await;
    let (near, far) = exorun_transport::memory::pair(exorun_transport::memory::CAPACITY_DEFAULT);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dispatcher: Arc<dyn exorun_transport::dispatch::Dispatcher> = exports.clone();
    tokio::spawn(exorun_transport::connection::serve_until(
        Arc::new(far),
        dispatcher,
        exorun_transport::connection::Config::default(),
        exorun_transport::dispatch::Origin::new(None),
        async move {
            let _ = stopped.await;
        },
    ));
    let client = Arc::new(Client::new(Arc::new(near), client::Config::default()));
    // A consumer in another runtime holds two counters through this connection.
    let runtime = Runtime::new().unwrap();
    let channel: Arc<dyn Channel> = client.clone();
    let link = Linkable::Remote {
        channel,
        target: "counters".into(),
    };
    let links = vec![(COUNTERS, link.clone()), (SINK, link)];
    let consumer = build(&runtime, "counter-consumer", links, None).await;
    let slot = u32_of(&consumer, "keep", &[Val::U32(1)]).await;
    u32_of(&consumer, "keep", &[Val::U32(2)]).await;
    assert_eq!((exports.handles_held(), live(&provider).await), (2, 2));
    // The server goes away: the connection's handles are dropped in the provider.
    let mut held = exports.watch_handles();
    stop.send(()).unwrap();
    held.wait_for(|held| *held == 0).await.unwrap();
    standins::settled().await;
    assert_eq!(live(&provider).await, 0);
    // The consumer's handle is gone with the connection: exactly that, not another counter.
    let error = user(&consumer, "next", &[Val::U32(slot)])
        .await
        .unwrap_err();
    assert_eq!(gone(&error).as_deref(), Some("counter"), "{error:?}");
}

#[tokio::test]
async fn past_the_handle_bounds_a_call_is_overloaded_and_nothing_leaks() {
    let (provider, exports) = counters_host().await;
    let client = common::memory_peer(&exports);
    let max = serve::HANDLES_PER_CONNECTION_MAX;
    let starts = vec![Val::U32(1); max];
    let made = raw(&client, "make-many", &[Val::List(starts)]).await;
    let Ok(made) = made else { panic!("{made:?}") };
    let [Val::List(ids)] = &made[..] else {
        panic!()
    };
    assert_eq!(ids.len(), max);
    let over = raw(&client, "make", &[Val::U32(1)]).await;
    assert_eq!(over, Err(Failure::Overloaded));
    let over_pair = raw(
        &client,
        "maybe",
        &[Val::Option(Some(Box::new(Val::U32(1))))],
    )
    .await;
    assert_eq!(over_pair, Err(Failure::Overloaded));
    assert_eq!(
        live(&provider).await,
        u32::try_from(max).unwrap(),
        "the refused counters were dropped at once"
    );
    // One released makes room for one.
    let Val::U64(first) = ids[0] else { panic!() };
    client.release(first).await.unwrap().unwrap();
    make(&client, 3).await;
    assert_eq!(exports.handles_held(), max);
}

/// The provider's linear memory, in bytes (what it grew to).
async fn provider_memory(provider: &InstanceHandle) -> u64 {
    provider.memory_bytes().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_cycles_leave_nothing_in_the_owner() {
    for via in [Via::Local, Via::Memory] {
        let setup = setup(via).await;
        let (provider, consumer) = (&setup.provider, &setup.consumer);
        // Warm up, so the provider's memory has grown to what one cycle needs.
        for _ in 0..100 {
            u32_of(consumer, "count", &[Val::U32(1), Val::U32(1)]).await;
        }
        let before = provider_memory(provider).await;
        for cycle in 0..10_000_u32 {
            let last = u32_of(consumer, "count", &[Val::U32(cycle), Val::U32(2)]).await;
            assert_eq!(last, cycle.wrapping_add(1));
        }
        assert_eq!(live(provider).await, 0, "{via:?}");
        if let Some(exports) = &setup.exports {
            assert_eq!(exports.handles_held(), 0, "{via:?}");
        }
        let after = provider_memory(provider).await;
        assert_eq!(before, after, "{via:?}: the owner's memory stayed flat");
    }
}
