//! What a lattice costs next to a direct link, all rows from one run over loopback: the same
//! trivial echo dispatcher at 1 and 256 calls in flight, reached through a direct `tcp://`
//! connection (client + serving loop) and through a real nats-server (`Lattice` requests to
//! a `Subscribed` runtime), with the ratios. A NATS call crosses two hops (caller → server →
//! runtime and back), a TCP call one.
//!
//! Run: `cargo bench -p exorun-transport --features nats --bench nats` (needs `nats-server`
//! on the PATH; `scripts/test_exorun.sh` installs it).

mod common;
#[path = "../tests/common/nats_server.rs"]
mod nats_server;

use std::sync::Arc;
use std::time::Duration;

use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::connection;
use exorun_transport::nats;
use exorun_transport::net;
use exorun_transport::transport;
use exorun_transport::transport::Transport;
use nats_server::NatsServer;

/// Each call's time limit (none should come near it).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `Echo` on a loopback TCP port until the process ends; a client connected to it.
async fn tcp_caller() -> Arc<dyn client::Channel> {
    let address = Address::parse("tcp://127.0.0.1:0").expect("address");
    let listener = net::Listener::bind(&address).await.expect("bind");
    let bound = listener.local_address().expect("local address");
    tokio::spawn(async move {
        loop {
            let accepted = listener
                .accept(transport::MESSAGE_BYTES_MAX)
                .await
                .expect("accept");
            let served: Arc<dyn Transport> = accepted;
            tokio::spawn(connection::serve(
                served,
                Arc::new(common::Echo),
                connection::Config::default(),
            ));
        }
    });
    let connected = net::connect(&bound, transport::MESSAGE_BYTES_MAX).await;
    let config = client::Config {
        timeout: TIMEOUT,
        ..client::Config::default()
    };
    Arc::new(Client::new(connected.expect("connect"), config))
}

/// Serves `Echo` as export `calc` of lattice `bench` on `server`; a lattice caller.
async fn nats_caller(server: &NatsServer) -> Arc<dyn client::Channel> {
    let settings = nats::Settings {
        urls: vec![server.url.clone()],
        name: "exorun-bench".to_owned(),
        ..nats::Settings::default()
    };
    let subscribed = nats::join(&settings, "bench", &["calc".to_owned()])
        .await
        .expect("join");
    tokio::spawn(subscribed.serve(Arc::new(common::Echo), 1024, std::future::pending()));
    Arc::new(nats::Lattice::new(settings, "bench", TIMEOUT))
}

#[tokio::main]
async fn main() {
    let server = NatsServer::start(&[]);
    let callers = [
        ("tcp", tcp_caller().await),
        ("nats", nats_caller(&server).await),
    ];
    let mut rows = Vec::new();
    println!("| link | in flight | p50 (µs) | p99 (µs) | calls/s |");
    println!("|---|---|---|---|---|");
    for (link, caller) in &callers {
        for in_flight in [1, 256] {
            let (p50, p99, rate) = common::measure(Arc::clone(caller), in_flight).await;
            println!(
                "| {link} | {in_flight} | {:.1} | {:.1} | {rate:.0} |",
                common::micros(p50),
                common::micros(p99)
            );
            rows.push((in_flight, p50, rate));
        }
    }
    for (index, in_flight) in [1, 256].into_iter().enumerate() {
        let ((_, tcp_p50, tcp_rate), (_, nats_p50, nats_rate)) = (rows[index], rows[index + 2]);
        println!(
            "nats / tcp at {in_flight} in flight: p50 {:.2}x, throughput {:.2}x lower",
            nats_p50.as_secs_f64() / tcp_p50.as_secs_f64(),
            tcp_rate / nats_rate
        );
    }
}
