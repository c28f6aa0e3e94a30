//! What exporting spans costs: cruncher's `tally` over TCP loopback, served in this process,
//! 1 call in flight and 256 at once. Three rows: no exporter (traces off), `--otlp` installed
//! with sampling at 0 (each call still draws its span and checks the flag), and sampling at 1
//! (every served call's span converted, queued and sent to an OTLP/HTTP receiver this bench
//! runs on loopback). The off row runs first (an exporter, once installed, stays); the two
//! sampled rows then alternate in blocks so drift falls on both alike.
//!
//! Run: `cargo bench -p exorun-cli --bench traces` (after `scripts/build_apps.sh`).

#![allow(clippy::unwrap_used)] // A benchmark: a failed unwrap is a failed run.
#![allow(clippy::print_stdout)] // It prints its figures.

use std::io::BufRead;
use std::io::Read;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Instant;

use exorun_bind::builder::InstanceBuilder;
use exorun_bind::serve::Exports;
use exorun_cli::otlp;
use exorun_core::runtime::Runtime;
use exorun_core::trace;
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
const BLOCKS: u32 = 6;

/// Export requests and bytes the receiver took.
static RECEIVED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// A loopback OTLP/HTTP receiver that reads each request whole, counts it and answers 200.
fn receiver() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || answer(stream));
        }
    });
    address
}

fn answer(stream: std::net::TcpStream) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let Some((name, value)) = header.trim_end().split_once(':') else {
                break;
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        RECEIVED[0].fetch_add(1, Ordering::Relaxed);
        RECEIVED[1].fetch_add(u64::try_from(length).unwrap(), Ordering::Relaxed);
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        writer.write_all(ok.as_bytes()).unwrap();
        line.clear();
    }
}

async fn serve() -> Address {
    let runtime = Runtime::new().unwrap();
    let path = fixtures::path("cruncher").unwrap();
    let app = runtime.add_app_file("cruncher", &path).unwrap();
    let builder = InstanceBuilder::new(&runtime, app).unwrap();
    builder.name("crunch").instantiate().await.unwrap();
    let exports = Exports::new(runtime);
    exports.export("crunch").unwrap();
    let address = Address::parse("tcp://127.0.0.1:0").unwrap();
    let listener = net::Listener::bind(&address).await.unwrap();
    let bound = listener.local_address().unwrap();
    tokio::spawn(
        server::Server::new(exports, server::Config::default())
            .listen(listener)
            .run(std::future::pending()),
    );
    bound
}

async fn tally(client: &Client) {
    let mut writer = frame::CallWriter::new("crunch", METHOD).unwrap();
    neorpc::codec::encode_into(writer.args(), &[], &neorpc::codec::Limits::default()).unwrap();
    client
        .call(writer.finish(&[]).unwrap())
        .await
        .unwrap()
        .unwrap();
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

/// Sums of [serial, bursts] over `BLOCKS` blocks at `ratio` (`None`: as things are).
async fn block(client: &Arc<Client>, ratio: Option<f64>, sums: &mut [f64; 2]) {
    if let Some(ratio) = ratio {
        trace::set_sampling(ratio);
    }
    sums[0] += serial(client).await / f64::from(BLOCKS);
    sums[1] += bursts(client).await / f64::from(BLOCKS);
}

async fn run() -> [[f64; 2]; 3] {
    let address = serve().await;
    let max = transport::MESSAGE_BYTES_MAX;
    let connection = net::connect(&address, max).await.unwrap();
    let client = Arc::new(Client::new(connection, client::Config::default()));
    serial(&client).await; // warm-up
    let mut rows = [[0.0; 2]; 3];
    for _ in 0..BLOCKS {
        block(&client, None, &mut rows[0]).await;
    }
    let settings = otlp::Settings {
        endpoint: Some(receiver()),
        sample: 0.0,
    };
    let exporting = otlp::start(&settings).unwrap().unwrap();
    for _ in 0..BLOCKS {
        block(&client, Some(0.0), &mut rows[1]).await;
        block(&client, Some(1.0), &mut rows[2]).await;
    }
    exporting.flush().await;
    rows
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let [off, unsampled, sampled] = tokio.block_on(tokio.spawn(run())).unwrap();
    println!("{:<32} {:>10} {:>12}", "row", "ns/call 1", "ns/call 256");
    for (label, [one, many]) in [
        ("traces off", off),
        ("--otlp, sampling 0", unsampled),
        ("--otlp, sampling 1 (exported)", sampled),
    ] {
        println!("{label:<32} {one:>10.0} {many:>12.0}");
    }
    println!();
    println!(
        "sampling 0 - off at 1 in flight  = {:+.2} us",
        (unsampled[0] - off[0]) / 1e3
    );
    println!(
        "sampling 1 - sampling 0 at 1     = {:+.2} us",
        (sampled[0] - unsampled[0]) / 1e3
    );
    println!(
        "sampling 1 / sampling 0 at 256   = {:.3}x",
        sampled[1] / unsampled[1]
    );
    let requests = RECEIVED[0].load(Ordering::Relaxed);
    let kib = RECEIVED[1].load(Ordering::Relaxed) / 1024;
    println!("the receiver took {requests} export requests, {kib} KiB");
}
