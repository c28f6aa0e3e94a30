//! Round-trip latency (p50/p99) and throughput of the client + serving loop with a trivial echo
//! dispatcher, at 1, 16 and 256 calls in flight, over the in-memory pair and TCP loopback; then
//! sequential calls between two processes over TCP and a Unix socket, next to the floor: a
//! std-only blocking ping-pong of 32 bytes between two processes over the same kind of socket.
//!
//! Run: `cargo bench -p exorun-transport --bench roundtrip`. All rows come from one run, so the
//! ratios between them are measured, not assumed. The second process is this same binary,
//! started again with `EXORUN_BENCH_ROLE` set. BENCHMARKS.md records a run. With `-- --floor`
//! it prints only the floors (std blocking and raw tokio, tcp and unix), for
//! `scripts/bench_remote.sh` to set beside its rows.

mod common;

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use exorun_transport::address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::connection;
use exorun_transport::memory;
use exorun_transport::net;
use exorun_transport::transport;
use neorpc::frame;

/// Sequential round trips per two-process row.
const SEQUENTIAL: usize = 20_000;
/// Bytes each way of the floor's ping-pong.
const PING_BYTES: usize = 32;
/// Tells a started copy of this binary which server to be.
const ROLE_ENV: &str = "EXORUN_BENCH_ROLE";

async fn memory_client() -> Arc<Client> {
    let (near, far) = memory::pair(memory::CAPACITY_DEFAULT);
    tokio::spawn(connection::serve(
        Arc::new(far),
        Arc::new(common::Echo),
        connection::Config::default(),
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
        connection::serve(
            transport,
            Arc::new(common::Echo),
            connection::Config::default(),
        )
        .await
    });
    let transport = net::connect(&address, transport::MESSAGE_BYTES_MAX)
        .await
        .expect("connect");
    Arc::new(Client::new(transport, client::Config::default()))
}

async fn run(tcp: bool, in_flight: usize) -> (Duration, Duration, f64) {
    let client = if tcp {
        tcp_client().await
    } else {
        memory_client().await
    };
    common::measure(client, in_flight).await
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        return serve_as(&role);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::args().any(|arg| arg == "--floor") {
        return floors(&runtime);
    }
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
    two_processes(&runtime);
}

/// The sequential two-process rows and their floors, with the ratios.
fn two_processes(runtime: &tokio::runtime::Runtime) {
    println!();
    println!("{:<28} {:>14}", "two processes, sequential", "us per call");
    let socket_dir = std::env::temp_dir().join(format!("exorun-bench-{}", std::process::id()));
    std::fs::create_dir_all(&socket_dir).expect("socket dir");
    let unix = |name: &str| format!("unix://{}", socket_dir.join(name).display());
    let rows = [
        ("tcp", "tcp://127.0.0.1:0".to_owned()),
        ("unix", unix("exorun.sock")),
    ];
    for (kind, address) in rows {
        let exorun = runtime.block_on(async {
            tokio::spawn(exorun_sequential(address))
                .await
                .expect("worker")
        });
        let floor_address = match kind {
            "tcp" => "tcp://127.0.0.1:0".to_owned(),
            _ => unix("floor.sock"),
        };
        let floor = std_ping_pong(&floor_address);
        let tokio_address = match kind {
            "tcp" => "tcp://127.0.0.1:0".to_owned(),
            _ => unix("tokio.sock"),
        };
        let raw = runtime.block_on(async {
            tokio::spawn(tokio_ping_pong(tokio_address))
                .await
                .expect("worker")
        });
        let exorun_us = exorun.as_secs_f64() * 1e6;
        let floor_us = floor.as_secs_f64() * 1e6;
        let raw_us = raw.as_secs_f64() * 1e6;
        println!("{:<28} {exorun_us:>14.1}", format!("exorun {kind}"));
        println!("{:<28} {raw_us:>14.1}", format!("raw tokio {kind}"));
        println!(
            "{:<28} {floor_us:>14.1}",
            format!("std blocking {kind} (floor)")
        );
        println!(
            "{:<28} {:>14.2}",
            format!("ratio {kind} exorun/floor"),
            exorun_us / floor_us
        );
        println!(
            "{:<28} {:>14.2}",
            format!("ratio {kind} raw tokio/floor"),
            raw_us / floor_us
        );
    }
    let _ = std::fs::remove_dir_all(&socket_dir);
}

/// Only the floors: a blocking std ping-pong and a raw tokio one, over tcp and a Unix socket.
fn floors(runtime: &tokio::runtime::Runtime) {
    let socket_dir = std::env::temp_dir().join(format!("exorun-floor-{}", std::process::id()));
    std::fs::create_dir_all(&socket_dir).expect("socket dir");
    for kind in ["tcp", "unix"] {
        let address = |name: &str| match kind {
            "tcp" => "tcp://127.0.0.1:0".to_owned(),
            _ => format!("unix://{}", socket_dir.join(name).display()),
        };
        let floor = std_ping_pong(&address("floor.sock"));
        let tokio_address = address("tokio.sock");
        let raw = runtime.block_on(async {
            tokio::spawn(tokio_ping_pong(tokio_address))
                .await
                .expect("worker")
        });
        let floor_us = floor.as_secs_f64() * 1e6;
        let raw_us = raw.as_secs_f64() * 1e6;
        println!("{kind:<5} {floor_us:8.1} us per std blocking ping-pong (floor)");
        println!("{kind:<5} {raw_us:8.1} us per raw tokio ping-pong");
    }
    let _ = std::fs::remove_dir_all(&socket_dir);
}

/// Mean time of one sequential exorun call to an echo server in another process.
async fn exorun_sequential(address: String) -> Duration {
    let (mut child, bound) = start_server("exorun-echo", &address);
    let bound = address::Address::parse(&bound).expect("address");
    let transport = net::connect(&bound, transport::MESSAGE_BYTES_MAX)
        .await
        .expect("connect");
    let client = Client::new(transport, client::Config::default());
    let args = [0x20, 0x0a, 0, 0, 0, 0x05, 10, 0, 0, 0, 0x05, 5, 0, 0, 0];
    let call = || frame::encode_call("calc", "exorun:test/math#add", &args, &[]).expect("frame");
    for _ in 0..1000 {
        client
            .call(call())
            .await
            .expect("warm-up call")
            .expect("a reply");
    }
    let started = Instant::now();
    for _ in 0..SEQUENTIAL {
        client.call(call()).await.expect("call").expect("a reply");
    }
    let elapsed = started.elapsed();
    client.close().await;
    child
        .wait()
        .expect("server exits when the connection closes");
    elapsed / u32::try_from(SEQUENTIAL).expect("fits")
}

/// Mean time of one blocking 32-byte round trip to a std echo server in another process.
fn std_ping_pong(address: &str) -> Duration {
    let (mut child, bound) = start_server("std-echo", address);
    let mut stream = std_connect(&bound);
    let mut ping = [7u8; PING_BYTES];
    for _ in 0..1000 {
        round_trip(stream.as_mut(), &mut ping);
    }
    let started = Instant::now();
    for _ in 0..SEQUENTIAL {
        round_trip(stream.as_mut(), &mut ping);
    }
    let elapsed = started.elapsed();
    drop(stream);
    child
        .wait()
        .expect("floor server exits at the end of the stream");
    elapsed / u32::try_from(SEQUENTIAL).expect("fits")
}

fn round_trip(stream: &mut dyn ReadWrite, ping: &mut [u8; PING_BYTES]) {
    stream.write_all(ping).expect("ping");
    stream.read_exact(ping).expect("pong");
}

/// Mean time of one 32-byte round trip between two tokio runtimes (2 workers each, as exorun
/// runs), with no exorun code on either side: the cost of the async model itself.
async fn tokio_ping_pong(address: String) -> Duration {
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;
    let (mut child, bound) = start_server("tokio-echo", &address);
    let mut stream = tokio_connect(&bound).await;
    let mut ping = [7u8; PING_BYTES];
    let mut started = Instant::now();
    for round in 0..SEQUENTIAL + 1000 {
        if round == 1000 {
            started = Instant::now();
        }
        stream.write_all(&ping).await.expect("ping");
        stream.read_exact(&mut ping).await.expect("pong");
    }
    let elapsed = started.elapsed();
    drop(stream);
    child
        .wait()
        .expect("tokio echo server exits at the end of the stream");
    elapsed / u32::try_from(SEQUENTIAL).expect("fits")
}

/// An async byte stream of either kind.
trait AsyncStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncStream for T {}

async fn tokio_connect(address: &str) -> Box<dyn AsyncStream> {
    if let Some(host_port) = address.strip_prefix("tcp://") {
        let stream = tokio::net::TcpStream::connect(host_port)
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        return Box::new(stream);
    }
    let path = address.strip_prefix("unix://").expect("a unix address");
    Box::new(
        tokio::net::UnixStream::connect(path)
            .await
            .expect("connect"),
    )
}

fn tokio_echo(address: &str) {
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut stream: Box<dyn AsyncStream> = match address.strip_prefix("tcp://") {
            Some(host_port) => {
                let listener = tokio::net::TcpListener::bind(host_port)
                    .await
                    .expect("bind");
                println!("tcp://{}", listener.local_addr().expect("bound address"));
                let (stream, _) = listener.accept().await.expect("accept");
                stream.set_nodelay(true).expect("nodelay");
                Box::new(stream)
            }
            None => {
                let path = address.strip_prefix("unix://").expect("a unix address");
                let listener = tokio::net::UnixListener::bind(path).expect("bind");
                println!("{address}");
                Box::new(listener.accept().await.expect("accept").0)
            }
        };
        let mut ping = [0u8; PING_BYTES];
        while stream.read_exact(&mut ping).await.is_ok() {
            stream.write_all(&ping).await.expect("pong");
        }
    });
}

/// A blocking byte stream of either kind.
trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

fn std_connect(address: &str) -> Box<dyn ReadWrite> {
    if let Some(host_port) = address.strip_prefix("tcp://") {
        let stream = std::net::TcpStream::connect(host_port).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        return Box::new(stream);
    }
    let path = address.strip_prefix("unix://").expect("a unix address");
    Box::new(std::os::unix::net::UnixStream::connect(path).expect("connect"))
}

/// Starts this binary again as `role` listening on `address`; returns it and its real address.
fn start_server(role: &str, address: &str) -> (std::process::Child, String) {
    use std::io::BufRead;
    let exe = std::env::current_exe().expect("this bench's path");
    let mut child = std::process::Command::new(exe)
        .env(ROLE_ENV, role)
        .arg(address)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the server process");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the server's address");
    (child, line.trim().to_owned())
}

/// The second process: serves one connection at the address given as its last argument,
/// after printing the address it really listens on.
fn serve_as(role: &str) {
    let address = std::env::args().next_back().expect("an address argument");
    match role {
        "exorun-echo" => exorun_echo(&address),
        "std-echo" => std_echo(&address),
        "tokio-echo" => tokio_echo(&address),
        other => panic!("unknown role {other}"),
    }
}

fn exorun_echo(address: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let address = address::Address::parse(address).expect("address");
        let listener = net::Listener::bind(&address).await.expect("bind");
        println!("{}", listener.local_address().expect("bound address"));
        let connection = listener
            .accept(transport::MESSAGE_BYTES_MAX)
            .await
            .expect("accept");
        let _ = connection::serve(
            connection,
            Arc::new(common::Echo),
            connection::Config::default(),
        )
        .await;
    });
}

fn std_echo(address: &str) {
    let mut stream: Box<dyn ReadWrite> = if let Some(host_port) = address.strip_prefix("tcp://") {
        let listener = std::net::TcpListener::bind(host_port).expect("bind");
        println!("tcp://{}", listener.local_addr().expect("bound address"));
        let (stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        Box::new(stream)
    } else {
        let path = address.strip_prefix("unix://").expect("a unix address");
        let listener = std::os::unix::net::UnixListener::bind(path).expect("bind");
        println!("{address}");
        Box::new(listener.accept().expect("accept").0)
    };
    let mut ping = [0u8; PING_BYTES];
    while stream.read_exact(&mut ping).is_ok() {
        stream.write_all(&ping).expect("pong");
    }
}
