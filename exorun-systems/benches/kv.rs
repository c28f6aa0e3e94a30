//! What a store costs a guest, every row from one run: kv-client's `notes.put` and `notes.get`
//! (one `exorun:host/kv` call each) on a store in memory, in a redb file (each `set` fsynced)
//! and in a JetStream bucket on a local `nats-server -js` (each `set` acknowledged by the
//! server): operations per second and the median latency.
//!
//! Run: `cargo bench -p exorun-systems --bench kv` (needs `nats-server` on the PATH, as the
//! tests do). BENCHMARKS.md records a run.

use std::time::Duration;
use std::time::Instant;

use exorun_core::context::ContextBuilder;
use exorun_core::instance::InstanceHandle;
use exorun_core::limits::Limits;
use exorun_core::runtime::Runtime;
use exorun_core::system::SystemComponent;
use exorun_systems::kv;
use exorun_testkit::fixtures;
use wasmtime::component::Linker;
use wasmtime::component::Val;

const SETS: usize = 2_000;
const GETS: usize = 5_000;

async fn notes(runtime: &Runtime, store: &kv::Store) -> InstanceHandle {
    let path = fixtures::path("kv-client").expect("fixtures");
    let id = runtime.add_app_file("kv-client", &path).expect("app");
    let mut linker = Linker::new(runtime.engine());
    let mut context = ContextBuilder::new();
    let system = kv::Kv::new(store.clone());
    system.install(&mut linker).expect("install");
    system.configure(&mut context).expect("configure");
    let prepared = runtime.prepare(id, &linker).expect("prepare");
    let started = runtime.instantiate_prepared(&prepared, context, Limits::default(), None);
    started.await.expect("instance")
}

/// Operations per second and the median, over `count` calls of `function` with `args(i)`.
async fn measure(
    handle: &InstanceHandle,
    function: &str,
    count: usize,
    args: impl Fn(usize) -> Vec<Val>,
) -> (f64, Duration) {
    let mut latencies = Vec::with_capacity(count);
    let started = Instant::now();
    for i in 0..count {
        let one = Instant::now();
        let mut results = vec![Val::Bool(false); usize::from(function == "get")];
        handle
            .call("exorun:test/notes", function, &args(i), &mut results)
            .await
            .expect(function);
        latencies.push(one.elapsed());
    }
    let calls = u32::try_from(count).unwrap_or(u32::MAX);
    let per_second = f64::from(calls) / started.elapsed().as_secs_f64();
    latencies.sort();
    (per_second, latencies[count / 2])
}

/// A nats-server with JetStream on a random port, killed when dropped.
struct Nats(std::process::Child, String);

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nats(dir: &std::path::Path) -> Nats {
    use std::io::BufRead;
    let mut child = std::process::Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nats-server (bash scripts/test_exorun.sh installs it)");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.expect("log");
        if let Some((_, at)) = line.split_once("Listening for client connections on ") {
            url = Some(format!("nats://{}", at.trim()));
        }
        if line.contains("Server is ready") {
            break;
        }
    }
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    Nats(child, url.expect("nats-server reported no port"))
}

async fn run() -> Vec<(String, f64, Duration)> {
    let dir = std::env::temp_dir().join(format!("exorun-kv-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let server = nats(&dir.join("js"));
    let client = async_nats::connect(server.1.as_str()).await.expect("nats");
    let stores = [
        ("memory", kv::Store::new()),
        (
            "durable",
            kv::Store::open(&dir.join("bench.redb"))
                .await
                .expect("redb"),
        ),
        (
            "jetstream",
            kv::Store::jetstream(client, "bench").await.expect("bucket"),
        ),
    ];
    let runtime = Runtime::new().expect("runtime");
    let mut rows = Vec::new();
    for (name, store) in stores {
        let handle = notes(&runtime, &store).await;
        let key = |i: usize| Val::String(format!("key-{}", i % 500));
        let set = measure(&handle, "put", SETS, |i| {
            vec![key(i), Val::String(format!("value {i}"))]
        })
        .await;
        rows.push((format!("{name} set"), set.0, set.1));
        let get = measure(&handle, "get", GETS, |i| vec![key(i)]).await;
        rows.push((format!("{name} get"), get.0, get.1));
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let rows = tokio.block_on(tokio.spawn(run())).expect("bench task");
    println!("{:<16} {:>12} {:>12}", "row", "ops/s", "p50 µs");
    for (name, per_second, median) in &rows {
        let micros = median.as_secs_f64() * 1e6;
        println!("{name:<16} {per_second:>12.0} {micros:>12.1}");
    }
}
