//! What counting and timing every call costs: cruncher's `tally` over TCP loopback to two
//! servers in one process, one whose metric handles were made before any recorder existed
//! (the facade's calls do nothing: metrics off) and one made under the Prometheus recorder
//! `exorun --metrics` installs (metrics on); 1 call in flight and 256 at once, in 10 blocks
//! alternating between the two so drift falls on both alike.
//!
//! Run: `cargo bench -p exorun-bind --bench metrics`. BENCHMARKS.md records a run.

use std::sync::Arc;
use std::time::Instant;

use exorun_bind::builder::InstanceBuilder;
use exorun_bind::serve::Exports;
use exorun_core::runtime::Runtime;
use exorun_testkit::fixtures;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::net;
use exorun_transport::server;
use exorun_transport::transport;
use neorpc::frame;

const METHOD: &str = "exorun:test/crunch#tally";
const SERIAL_CALLS: u32 = 1_000;
const BURSTS: u32 = 4;
const IN_FLIGHT: u32 = 256;

async fn serve() -> Address {
    let runtime = Runtime::new().expect("runtime");
    let path = fixtures::path("cruncher").expect("fixtures");
    let app = runtime.add_app_file("cruncher", &path).expect("app");
    let builder = InstanceBuilder::new(&runtime, app).expect("builder");
    builder
        .name("crunch")
        .instantiate()
        .await
        .expect("cruncher");
    let exports = Exports::new(runtime);
    exports.export("crunch").expect("export");
    let address = Address::parse("tcp://127.0.0.1:0").expect("address");
    let listener = net::Listener::bind(&address).await.expect("bind");
    let bound = listener.local_address().expect("address");
    tokio::spawn(
        server::Server::new(exports, server::Config::default())
            .listen(listener)
            .run(std::future::pending()),
    );
    bound
}

async fn tally(client: &Client) {
    let mut writer = frame::CallWriter::new("crunch", METHOD).expect("writer");
    neorpc::codec::encode_into(writer.args(), &[], &neorpc::codec::Limits::default())
        .expect("args");
    client
        .call(writer.finish(&[]).expect("frame"))
        .await
        .expect("call")
        .expect("a reply");
}

/// ns per call, one at a time.
async fn serial(client: &Client) -> f64 {
    let started = Instant::now();
    for _ in 0..SERIAL_CALLS {
        tally(client).await;
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(SERIAL_CALLS)
}

/// ns per call, `IN_FLIGHT` at once, `BURSTS` times.
async fn bursts(client: &Arc<Client>) -> f64 {
    let started = Instant::now();
    for _ in 0..BURSTS {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..IN_FLIGHT {
            let client = Arc::clone(client);
            calls.spawn(async move { tally(&client).await });
        }
        calls.join_all().await;
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(BURSTS * IN_FLIGHT)
}

/// A client of a new server (its metric handles made under the recorder installed now, as
/// `exorun --metrics` installs it before anything is exported).
async fn client() -> Arc<Client> {
    let address = serve().await;
    let max = transport::MESSAGE_BYTES_MAX;
    let connection = net::connect(&address, max).await.expect("connect");
    let client = Arc::new(Client::new(connection, client::Config::default()));
    serial(&client).await; // warm-up
    client
}

/// Blocks the rows alternate in.
const BLOCKS: u32 = 10;

async fn run() -> [f64; 4] {
    // The plain server's handles are made before the recorder exists, so they stay no-ops
    // after it is installed: both servers then run side by side, blocks alternating.
    let plain = client().await;
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("recorder");
    let counted = client().await;
    let mut sums = [0.0; 4];
    for _ in 0..BLOCKS {
        sums[0] += serial(&plain).await;
        sums[1] += serial(&counted).await;
        sums[2] += bursts(&plain).await;
        sums[3] += bursts(&counted).await;
    }
    assert!(handle.render().contains("exorun_calls_served_total"));
    sums.map(|sum| sum / f64::from(BLOCKS))
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let [off_1, on_1, off_256, on_256] = tokio.block_on(tokio.spawn(run())).expect("bench task");
    println!("{:<22} {:>12}", "row", "ns/call");
    println!("{:<22} {off_1:>12.0}", "metrics off, 1");
    println!("{:<22} {on_1:>12.0}", "metrics on, 1");
    println!("{:<22} {off_256:>12.0}", "metrics off, 256");
    println!("{:<22} {on_256:>12.0}", "metrics on, 256");
    println!();
    println!(
        "on - off at 1 in flight  = {:+.2} us  (aim <= 2 us)",
        (on_1 - off_1) / 1e3
    );
    println!(
        "on / off at 256 in flight = {:.3}x  (aim <= 1.03x)",
        on_256 / off_256
    );
}
