//! Round-trip latency (p50/p99) and throughput of the client + serving loop with a trivial echo
//! dispatcher, at 1, 16 and 256 calls in flight, over the in-memory pair and TCP loopback.
//!
//! Run: `cargo bench -p exorun-transport --bench roundtrip`. All rows come from one run, so the
//! ratios between them are measured, not assumed. BENCHMARKS.md records a run.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use exorun_transport::address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::memory;
use exorun_transport::net;
use exorun_transport::serve;
use exorun_transport::transport;
use exorun_transport::transport::BoxFuture;
use neorpc::failure::Failure;
use neorpc::frame;

/// Calls per configuration: enough for a stable p99, few enough to finish in seconds.
const CALLS: usize = 40_000;

struct Echo;

impl serve::Dispatcher for Echo {
    fn dispatch(&self, call: frame::Call<'_>, _: &Bytes) -> BoxFuture<'static, serve::Outcome> {
        let reply =
            frame::encode_reply(call.seq, Ok(call.args)).map_err(|error| Failure::Internal {
                message: error.to_string(),
            });
        Box::pin(std::future::ready(reply))
    }
}

async fn memory_client() -> Arc<Client> {
    let (near, far) = memory::pair(memory::CAPACITY_DEFAULT);
    tokio::spawn(serve::connection(
        Arc::new(far),
        Arc::new(Echo),
        serve::CALLS_IN_FLIGHT_MAX,
    ));
    Arc::new(Client::new(Arc::new(near), client::Config::default()))
}

async fn tcp_client() -> Arc<Client> {
    let address = address::Address::parse("tcp://127.0.0.1:0").expect("address");
    let listener = net::Listener::bind(&address).await.expect("bind");
    let address = listener.local_address().expect("local address");
    tokio::spawn(async move {
        let transport = listener
            .accept(transport::MESSAGE_BYTES_MAX)
            .await
            .expect("accept");
        serve::connection(transport, Arc::new(Echo), serve::CALLS_IN_FLIGHT_MAX).await
    });
    let transport = net::connect(&address, transport::MESSAGE_BYTES_MAX)
        .await
        .expect("connect");
    Arc::new(Client::new(transport, client::Config::default()))
}

/// Runs CALLS calls with `in_flight` workers; returns (p50, p99, calls per second).
async fn measure(client: Arc<Client>, in_flight: usize) -> (Duration, Duration, f64) {
    let args = [0x20, 0x0a, 0, 0, 0, 0x05, 10, 0, 0, 0, 0x05, 5, 0, 0, 0];
    let per_worker = CALLS / in_flight;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let client = Arc::clone(&client);
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let call_started = Instant::now();
                let frame =
                    frame::encode_call("calc", "exorun:test/math#add", &args, &[]).expect("frame");
                client.call(frame).await.expect("call");
                latencies.push(call_started.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::with_capacity(CALLS);
    while let Some(worker) = workers.join_next().await {
        latencies.extend(worker.expect("worker"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)];
    let calls = f64::from(u32::try_from(latencies.len()).expect("calls fit in u32"));
    (at(50), at(99), calls / elapsed.as_secs_f64())
}

async fn run(tcp: bool, in_flight: usize) -> (Duration, Duration, f64) {
    let client = if tcp {
        tcp_client().await
    } else {
        memory_client().await
    };
    measure(client, in_flight).await
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{:<8} {:>9} {:>10} {:>10} {:>12}",
        "link", "in-flight", "p50 (us)", "p99 (us)", "calls/s"
    );
    for (name, tcp) in [("memory", false), ("tcp", true)] {
        for in_flight in [1, 16, 256] {
            let (p50, p99, rate) = runtime.block_on(run(tcp, in_flight));
            println!(
                "{name:<8} {in_flight:>9} {:>10.1} {:>10.1} {rate:>12.0}",
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6
            );
        }
    }
}
