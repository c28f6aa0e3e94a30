//! `exorun serve --http` beside `wasmtime serve` (wasmtime-cli of the same wasmtime version),
//! serving the same trivial handler (`http-hello`, which imports only `wasi:http`): requests per
//! second and p50/p99 latency at 1 and 64 concurrent keep-alive connections, from a load
//! generator in this process (hyper's HTTP/1.1 client) on loopback, bounded in requests and
//! time. The two servers run one after the other, twice each, alternating, and the better
//! round of each is shown.
//!
//! exorun serves the handler with 2 replicas (this machine's cores) and again per call;
//! `wasmtime serve` makes a fresh instance per request (its only mode).
//!
//! Run: `bash scripts/bench_http.sh` (installs wasmtime-cli 48.0.8 into target/tools if
//! missing, then runs `cargo bench -p exorun-cli --bench http`).

#![allow(clippy::unwrap_used)] // A benchmark: a failed unwrap is a failed run.
#![allow(clippy::print_stdout)] // It prints its figures.

use std::io::BufRead;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use exorun_testkit::fixtures;
use http_body_util::BodyExt;

/// Requests each connection makes in one round.
const REQUESTS_AT_1: usize = 4_000;
const REQUESTS_EACH_AT_64: usize = 150;
/// The longest one round may take.
const ROUND_LIMIT: Duration = Duration::from_secs(120);

/// A server process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` and waits for the line starting with `prefix`, whose rest (up to a `/`
/// or the end) is the address.
fn start(mut command: Command, prefix: &str) -> (Running, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (sender, found) = std::sync::mpsc::channel();
    let out: Box<dyn std::io::Read + Send> = Box::new(stdout);
    let err: Box<dyn std::io::Read + Send> = Box::new(stderr);
    for stream in [out, err] {
        let sender = sender.clone();
        let prefix = prefix.to_owned();
        std::thread::spawn(move || watch(stream, &prefix, &sender));
    }
    let address = found.recv_timeout(Duration::from_secs(120)).unwrap();
    (Running(child), address)
}

/// Sends the rest of each line of `stream` that starts with `prefix`.
fn watch(
    stream: Box<dyn std::io::Read + Send>,
    prefix: &str,
    sender: &std::sync::mpsc::Sender<String>,
) {
    let lines = std::io::BufReader::new(stream)
        .lines()
        .map_while(Result::ok);
    for rest in lines.filter_map(|line| line.strip_prefix(prefix).map(str::to_owned)) {
        let _ = sender.send(rest.trim_end_matches('/').to_owned());
    }
}

fn exorun(replicas: &str) -> (Running, String) {
    let dir = std::env::temp_dir().join(format!("exorun-bench-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join(format!("hello-{replicas}.toml"));
    let hello = fixtures::path("http-hello").unwrap();
    let text = format!(
        "[apps]\nhello = \"{}\"\n[instances.hello]\napp = \"hello\"\nreplicas = {replicas}\n\
         [http]\nroutes = {{ \"/\" = \"hello\" }}\n",
        hello.display()
    );
    std::fs::write(&manifest, text).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_exorun"));
    command
        .arg("serve")
        .arg(&manifest)
        .args(["--http", "127.0.0.1:0"]);
    start(command, "exorun: http on http://")
}

fn wasmtime(binary: &str) -> (Running, String) {
    let hello = fixtures::path("http-hello").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(binary);
    command
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .arg(hello);
    start(command, "Serving HTTP on http://")
}

/// One connection's requests: each one's latency.
async fn connection(address: String, requests: usize, deadline: Instant) -> Vec<Duration> {
    let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, driver) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(driver);
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        if Instant::now() > deadline {
            break;
        }
        let request = hyper::Request::get("/")
            .header("host", "bench")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let started = Instant::now();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
        latencies.push(started.elapsed());
    }
    latencies
}

/// One round at `connections` at once: requests per second, p50 and p99 in microseconds.
async fn round(address: &str, connections: usize, each: usize) -> [f64; 3] {
    let deadline = Instant::now() + ROUND_LIMIT;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(connection(address.to_owned(), each, deadline));
    }
    let mut latencies: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let count = latencies.len();
    let at = |share: usize| latencies[(count * share / 100).min(count - 1)].as_secs_f64() * 1e6;
    let rate = f64::from(u32::try_from(count).unwrap()) / elapsed;
    [rate, at(50), at(99)]
}

/// Starts a server: the process and its address.
type Starter<'a> = Box<dyn Fn() -> (Running, String) + 'a>;

/// The better of two results (higher rate; its latencies with it).
fn better(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    if a[0] >= b[0] { a } else { b }
}

fn main() {
    let binary = std::env::var("WASMTIME").unwrap_or_else(|_| "wasmtime".to_owned());
    let version = Command::new(&binary).arg("--version").output();
    let Ok(version) = version else {
        println!("no `{binary}`: run scripts/bench_http.sh, which installs wasmtime-cli 48.0.8");
        std::process::exit(1);
    };
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let servers: [(&str, Starter<'_>); 3] = [
        ("exorun serve --http, 2 replicas", Box::new(|| exorun("2"))),
        (
            "exorun serve --http, per call",
            Box::new(|| exorun("\"per-call\"")),
        ),
        ("wasmtime serve", Box::new(|| wasmtime(&binary))),
    ];
    let mut results = vec![[[0.0; 3]; 2]; servers.len()];
    for _ in 0..2 {
        for (index, (_, start)) in servers.iter().enumerate() {
            let (running, address) = start();
            let one = tokio.block_on(round(&address, 1, REQUESTS_AT_1));
            let many = tokio.block_on(round(&address, 64, REQUESTS_EACH_AT_64));
            drop(running);
            results[index][0] = better(results[index][0], one);
            results[index][1] = better(results[index][1], many);
        }
    }
    println!("http-hello, loopback, 2 cores; {version}");
    println!(
        "{:<34} {:>12} {:>10} {:>10} {:>12} {:>10} {:>10}",
        "server", "req/s @1", "p50 µs", "p99 µs", "req/s @64", "p50 µs", "p99 µs"
    );
    for ((label, _), [one, many]) in servers.iter().zip(&results) {
        println!(
            "{label:<34} {:>12.0} {:>10.0} {:>10.0} {:>12.0} {:>10.0} {:>10.0}",
            one[0], one[1], one[2], many[0], many[1], many[2]
        );
    }
    let wasmtime = results[2];
    for (index, (label, _)) in servers.iter().enumerate().take(2) {
        println!(
            "{label} / wasmtime serve: {:.2}x at 1, {:.2}x at 64 (requests per second; aim >= 1)",
            results[index][0][0] / wasmtime[0][0],
            results[index][1][0] / wasmtime[1][0]
        );
    }
}
