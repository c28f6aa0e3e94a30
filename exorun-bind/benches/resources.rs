//! What a resource across a link costs, every row from one run, one call in flight.
//!
//! - `plain tcp`: counter-consumer's `live`, whose import `counters.live` is a plain remote call
//!   over TCP loopback (no handle).
//! - `method tcp`: counter-consumer's `next` on a kept counter: a method on a remote handle over
//!   the same link (the stand-in swapped for its id, the call pinned to its connection).
//! - `create+drop local` / `create+drop tcp`: counter-consumer's `count(n, 0)`, a constructor and
//!   a drop across a local link and a remote one (the drop is a `Release` answered before the
//!   guest goes on).
//!
//! Run: `cargo bench -p exorun-bind --bench resources`. BENCHMARKS.md records a run.

use std::sync::Arc;
use std::time::Instant;

use exorun_bind::builder::InstanceBuilder;
use exorun_bind::builder::Linkable;
use exorun_bind::serve::Exports;
use exorun_core::instance::InstanceHandle;
use exorun_core::runtime::Runtime;
use exorun_testkit::fixtures;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::net;
use exorun_transport::server;
use exorun_transport::transport;
use wasmtime::component::Val;

const COUNTERS: &str = "exorun:test/counters";
const SINK: &str = "exorun:test/counter-sink";
const USER: &str = "exorun:test/counter-user";
const LOCAL_CALLS: u32 = 20_000;
const REMOTE_CALLS: u32 = 10_000;
/// Blocks the plain and method rows alternate in.
const BLOCKS: u32 = 10;

async fn instance(runtime: &Arc<Runtime>, app: &str, link: Option<Linkable>) -> InstanceHandle {
    let path = fixtures::path(app).expect("fixtures");
    let app = runtime.add_app_file(app, &path).expect("app");
    let mut builder = InstanceBuilder::new(runtime, app).expect("builder");
    if let Some(link) = link {
        builder = builder.link(COUNTERS, link.clone()).link(SINK, link);
    }
    builder.instantiate().await.expect("instance")
}

/// A client over TCP loopback to a runtime serving counter-provider as `counters`.
async fn tcp_counters() -> Arc<Client> {
    let host = Runtime::new().expect("runtime");
    let path = fixtures::path("counter-provider").expect("fixtures");
    let app = host.add_app_file("counter-provider", &path).expect("app");
    InstanceBuilder::new(&host, app)
        .expect("builder")
        .name("counters")
        .instantiate()
        .await
        .expect("provider");
    let exports = Exports::new(host);
    exports.export("counters").expect("export");
    let address = exorun_transport::address::Address::parse("tcp://127.0.0.1:0").expect("address");
    let listener = net::Listener::bind(&address).await.expect("bind");
    let bound = listener.local_address().expect("address");
    tokio::spawn(
        server::Server::new(exports, server::Config::default())
            .listen(listener)
            .run(std::future::pending()),
    );
    let connection = net::connect(&bound, transport::MESSAGE_BYTES_MAX)
        .await
        .expect("connect");
    Arc::new(Client::new(connection, client::Config::default()))
}

async fn user(consumer: &InstanceHandle, function: &str, args: &[Val]) -> Val {
    let mut results = [Val::U32(0)];
    let count = usize::from(function != "forget");
    consumer
        .call(USER, function, args, &mut results[..count])
        .await
        .expect(function);
    results[0].clone()
}

/// Nanoseconds per call of `$call`, run `$calls` times after a tenth as many warm-up calls.
macro_rules! measure {
    ($calls:expr, $call:expr) => {{
        for _ in 0..$calls / 10 {
            $call;
        }
        let started = Instant::now();
        for _ in 0..$calls {
            $call;
        }
        started.elapsed().as_secs_f64() * 1e9 / f64::from($calls)
    }};
}

async fn run() -> Vec<(&'static str, f64)> {
    let runtime = Runtime::new().expect("runtime");
    let remote = Linkable::Remote {
        channel: tcp_counters().await,
        target: "counters".to_owned(),
    };
    let consumer = instance(&runtime, "counter-consumer", Some(remote)).await;
    let Val::U32(slot) = user(&consumer, "keep", &[Val::U32(1)]).await else {
        panic!("keep returned no slot")
    };
    let mut rows = Vec::new();
    // Interleaved in blocks, so drift on a shared machine falls on both rows alike; the ratio
    // reported is the median of the blocks' ratios.
    let (mut plain, mut method) = (0.0, 0.0);
    let mut ratios = Vec::new();
    for _ in 0..BLOCKS {
        let block_plain = measure!(REMOTE_CALLS / BLOCKS, user(&consumer, "live", &[]).await);
        let next = [Val::U32(slot)];
        let block_method = measure!(REMOTE_CALLS / BLOCKS, user(&consumer, "next", &next).await);
        plain += block_plain / f64::from(BLOCKS);
        method += block_method / f64::from(BLOCKS);
        ratios.push(block_method / block_plain);
    }
    ratios.sort_by(f64::total_cmp);
    rows.push(("plain tcp", plain));
    rows.push(("method tcp", method));
    rows.push(("median block ratio", ratios[ratios.len() / 2]));
    let provider = instance(&runtime, "counter-provider", None).await;
    let local = instance(
        &runtime,
        "counter-consumer",
        Some(Linkable::Local(provider)),
    )
    .await;
    let args = [Val::U32(1), Val::U32(0)];
    rows.push((
        "create+drop local",
        measure!(LOCAL_CALLS, user(&local, "count", &args).await),
    ));
    rows.push((
        "create+drop tcp",
        measure!(REMOTE_CALLS, user(&consumer, "count", &args).await),
    ));
    rows
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let rows = tokio.block_on(tokio.spawn(run())).expect("bench task");
    let time = |name: &str| {
        rows.iter()
            .find(|(row, _)| *row == name)
            .map_or(f64::NAN, |(_, ns)| *ns)
    };
    println!("{:<18} {:>12}", "row", "ns/call");
    for (name, ns) in rows.iter().filter(|(name, _)| !name.starts_with("median")) {
        println!("{name:<18} {ns:>12.0}");
    }
    println!();
    println!(
        "method tcp / plain tcp        = {:.2}x  (a method on a remote handle; aim <= 1.1x)",
        time("method tcp") / time("plain tcp")
    );
    println!(
        "median of the block ratios    = {:.2}x  (the same, each block against its neighbour)",
        time("median block ratio")
    );
    println!(
        "create+drop tcp / local       = {:.2}x  (a constructor and a drop, remote against local)",
        time("create+drop tcp") / time("create+drop local")
    );
}
