//! What secure links cost, all rows from one run over loopback: the client + serving loop with
//! a trivial echo dispatcher at 1 and 256 calls in flight over `tcp://`, `tls://` and
//! `quic://`, the ratios to TCP, and the cost of a connection (TCP connect, TLS and QUIC
//! handshakes with node keys). Then the QUIC design question: one stream per connection (what
//! exorun does) against a fresh bidirectional stream per call, on raw quinn with the same
//! framing, at 1 and 256 in flight.
//!
//! Run: `cargo bench -p exorun-transport --features quic --bench secure`.

mod common;

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::connection;
use exorun_transport::identity::NodeKey;
use exorun_transport::net;
use exorun_transport::stream;
use exorun_transport::tls;
use exorun_transport::tls::Secure;
use exorun_transport::transport;
use exorun_transport::transport::Transport;
use neorpc::frame;

/// Connections made per handshake row.
const CONNECTS: u32 = 200;

/// Serves `Echo` on `address` (secure ones as `key`) until the process ends.
async fn echo_server(address: &str, key: &NodeKey) -> Address {
    let address = Address::parse(address).expect("address");
    let listener = net::Listener::bind_secure(&address, key)
        .await
        .expect("bind");
    let bound = listener.local_address().expect("local address");
    tokio::spawn(async move {
        loop {
            let accepted = listener.accept_socket().await.expect("accept");
            tokio::spawn(serve_one(accepted));
        }
    });
    bound
}

/// Opens one connection and serves `Echo` on it.
async fn serve_one(accepted: net::Accepted) {
    // The connect rows close without a call: over QUIC, before opening the stream.
    let config = stream::Config::new(transport::MESSAGE_BYTES_MAX);
    let Ok(opened) = accepted.open(config).await else {
        return;
    };
    let served: Arc<dyn Transport> = opened.transport;
    let _ = connection::serve(
        served,
        Arc::new(common::Echo),
        connection::Config::default(),
    )
    .await;
}

async fn connect(address: &Address, secure: &Secure) -> Arc<stream::Transport> {
    let connected = match address {
        Address::Tcp(_) => net::connect(address, transport::MESSAGE_BYTES_MAX).await,
        Address::Unix(_) | Address::Tls(_) | Address::Quic(_) | Address::Nats(_) => {
            net::connect_secure(address, secure, transport::MESSAGE_BYTES_MAX).await
        }
    };
    connected.expect("connect")
}

/// Average time to make one connection (handshake included, first call not).
async fn connect_cost(address: &Address, secure: &Secure) -> Duration {
    let started = Instant::now();
    for _ in 0..CONNECTS {
        let connection = connect(address, secure).await;
        connection.close().await;
    }
    started.elapsed() / CONNECTS
}

/// A raw quinn echo server that answers each length-prefixed message on the stream it came
/// on, for as many streams as the caller opens.
async fn raw_quic_server(key: &NodeKey) -> (quinn::Endpoint, std::net::SocketAddr) {
    let crypto = tls::server_config(key).expect("tls config");
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).expect("quic config");
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport_config = quinn::TransportConfig::default();
    transport_config.max_concurrent_bidi_streams(1024_u32.into());
    config.transport_config(Arc::new(transport_config));
    let endpoint =
        quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    let address = endpoint.local_addr().expect("local addr");
    let serving = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = serving.accept().await {
            tokio::spawn(raw_quic_connection(incoming));
        }
    });
    (endpoint, address)
}

/// Echoes every stream of one raw QUIC connection.
async fn raw_quic_connection(incoming: quinn::Incoming) {
    let connection = incoming.await.expect("handshake");
    while let Ok((send, recv)) = connection.accept_bi().await {
        tokio::spawn(raw_quic_echo(send, recv));
    }
}

/// Echoes one stream's whole message.
async fn raw_quic_echo(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let Ok(message) = recv.read_to_end(1 << 20).await else {
        return;
    };
    let _ = send.write_all(&message).await;
    let _ = send.finish();
}

/// CALLS calls on raw quinn, each on a fresh bidirectional stream, `in_flight` at once.
async fn stream_per_call(key: &NodeKey, in_flight: usize) -> (Duration, Duration, f64) {
    let (_server, address) = raw_quic_server(key).await;
    let me = Arc::new(NodeKey::generate().expect("key"));
    let secure = Secure {
        key: me,
        pin: key.public(),
    };
    let (crypto, _) = tls::client_config(&secure).expect("tls config");
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).expect("quic config");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connection = endpoint
        .connect(address, "localhost")
        .expect("connect")
        .await
        .expect("handshake");
    let frame = frame::encode_call("calc", "exorun:test/math#add", &common::ADD_ARGS, &[]);
    let frame = Bytes::from(frame.expect("frame").into_bytes());
    let call = move || {
        let (connection, frame) = (connection.clone(), frame.clone());
        async move {
            let (mut send, mut recv) = connection.open_bi().await.expect("open");
            send.write_all(&frame).await.expect("write");
            send.finish().expect("finish");
            recv.read_to_end(1 << 20).await.expect("read");
        }
    };
    common::timed(in_flight, call).await
}

#[tokio::main]
async fn main() {
    let server_key = NodeKey::generate().expect("key");
    let secure = Secure {
        key: Arc::new(NodeKey::generate().expect("key")),
        pin: server_key.public(),
    };
    let mut at_one = Vec::new();
    println!("| link | in flight | p50 (µs) | p99 (µs) | calls/s |");
    println!("|---|---|---|---|---|");
    for scheme in ["tcp", "tls", "quic"] {
        let address = echo_server(&format!("{scheme}://127.0.0.1:0"), &server_key).await;
        for in_flight in [1, 256] {
            let client = Arc::new(Client::new(
                connect(&address, &secure).await,
                client::Config::default(),
            ));
            let (p50, p99, rate) = common::measure(client, in_flight).await;
            println!(
                "| {scheme} | {in_flight} | {:.1} | {:.1} | {rate:.0} |",
                common::micros(p50),
                common::micros(p99)
            );
            at_one.extend((in_flight == 1).then_some((scheme, p50, rate)));
        }
        let cost = connect_cost(&address, &secure).await;
        println!(
            "connect {scheme}: {:.0} µs per connection",
            common::micros(cost)
        );
    }
    let (_, tcp_p50, tcp_rate) = at_one[0];
    for (scheme, p50, rate) in &at_one[1..] {
        println!(
            "{scheme} / tcp at 1 in flight: p50 {:.2}x, throughput {:.2}x slower",
            p50.as_secs_f64() / tcp_p50.as_secs_f64(),
            tcp_rate / rate
        );
    }
    println!("| quic design | in flight | p50 (µs) | p99 (µs) | calls/s |");
    println!("|---|---|---|---|---|");
    for in_flight in [1, 256] {
        let (p50, p99, rate) = stream_per_call(&server_key, in_flight).await;
        println!(
            "| a stream per call (raw quinn) | {in_flight} | {:.1} | {:.1} | {rate:.0} |",
            common::micros(p50),
            common::micros(p99)
        );
    }
}
