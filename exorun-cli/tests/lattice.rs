//! Many hosts on NATS, across real processes: `exorun serve --nats` runtimes sharing one
//! export through a real nats-server, a caller spreading 10,000 calls over them, a runtime
//! killed (-9) mid-run, one started mid-run, one stopped (SIGTERM) mid-run; two nats-servers
//! joined by a route with runtimes on each; `exorun run` reaching an export by name; and the
//! mistakes refused before anything runs.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;
#[path = "../../exorun-transport/tests/common/nats_server.rs"]
mod nats_server;

use exorun_bind::link::remote;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use common::Server;
use common::exorun;
use common::manifest;
use common::refused;
use common::run;
use common::text;
use exorun_transport::client;
use exorun_transport::nats;
use exorun_transport::nats::Lattice;
use nats_server::NatsServer;
use wasmtime::component::Type;
use wasmtime::component::Val;

/// Calls in flight at once from the test's caller.
const IN_FLIGHT: usize = 32;
/// Each call's limit while a runtime is killed: a call delivered to it fails within this.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Each call's limit otherwise: far above any call's time on a loaded machine, so a call that
/// fails by timing out was lost, not slow.
const PATIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A runtime serving fs-reader as `who`, which answers `get-env("RUNTIME")` with `name`.
fn who_manifest(name: &str) -> PathBuf {
    manifest(
        &format!("lattice-{name}"),
        &r#"
[apps]
fs-reader = "{fixtures}/fs-reader.wasm"
[instances.who]
app = "fs-reader"
export = true
replicas = 2
wasi = { env = { RUNTIME = "NAME" } }
links = { "wasi:*" = { system = "wasi" } }
"#
        .replace("NAME", name),
    )
}

fn serve_in_lattice(name: &str, url: &str) -> Server {
    let args = ["--nats", url, "--lattice", "test"];
    let server = Server::start_args(
        &who_manifest(name),
        &args,
        "warn,exorun_transport::nats=info",
    );
    assert_eq!(server.address, format!("lattice `test` at {url}"));
    server
}

fn lattice(url: &str, timeout: Duration) -> Arc<Lattice> {
    let settings = nats::Settings {
        urls: vec![url.to_owned()],
        name: "exorun-test-caller".to_owned(),
        ..nats::Settings::default()
    };
    Arc::new(Lattice::new(settings, "test", timeout))
}

/// The result types of fs-reader's `get-env`, read from the component.
fn get_env_results() -> Vec<Type> {
    static RESULTS: std::sync::OnceLock<Vec<Type>> = std::sync::OnceLock::new();
    RESULTS
        .get_or_init(|| {
            let runtime = exorun_core::runtime::Runtime::new().unwrap();
            let path = exorun_testkit::fixtures::path("fs-reader").unwrap();
            let app = runtime
                .app(runtime.add_app_file("fs-reader", &path).unwrap())
                .unwrap();
            let sandbox = &app.ledger.exports["exorun:test/sandbox"];
            sandbox.functions["get-env"].results.clone()
        })
        .clone()
}

/// Which runtime answered one `who` call.
async fn who(lattice: &Lattice) -> Result<String, remote::Error> {
    let slab = neorpc::codec::encode(&[Val::String("RUNTIME".into())]).unwrap();
    let frame =
        neorpc::frame::encode_call("who", "exorun:test/sandbox#get-env", &slab, &[]).unwrap();
    let reply = client::Channel::call_within(lattice, frame, client::Channel::timeout(lattice));
    let reply = reply.await.map_err(remote::Error::Channel)?;
    let reply = reply.map_err(remote::Error::Failed)?;
    let types = get_env_results();
    let values = neorpc::codec::decode(&reply, &types, &neorpc::codec::Limits::default()).unwrap();
    let [Val::Option(Some(name))] = &values[..] else {
        panic!("{values:?}")
    };
    let Val::String(name) = name.as_ref() else {
        panic!("{name:?}")
    };
    Ok(name.clone())
}

/// What a run of calls came to: who answered how many, and how the failures failed.
#[derive(Default, Debug)]
struct Tally {
    served: BTreeMap<String, usize>,
    failed: BTreeMap<String, usize>,
}

impl Tally {
    fn total(&self) -> usize {
        self.served.values().sum::<usize>() + self.failed.values().sum::<usize>()
    }

    fn add(&mut self, more: Tally) {
        for (runtime, count) in more.served {
            *self.served.entry(runtime).or_default() += count;
        }
        for (reason, count) in more.failed {
            *self.failed.entry(reason).or_default() += count;
        }
    }

    fn share(&self, runtime: &str) -> f64 {
        let served = self.served.get(runtime).copied().unwrap_or(0);
        let total = self.served.values().sum::<usize>().max(1);
        f64::from(u32::try_from(served).unwrap()) / f64::from(u32::try_from(total).unwrap())
    }
}

/// Makes `calls` calls, IN_FLIGHT at once; `at(done)` runs in the test thread's stead once
/// `done` calls have ended (to inject a fault mid-run), through `progress`.
async fn calls(lattice: &Arc<Lattice>, calls: usize, progress: &Arc<Progress>) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (lattice, tally, next, progress) = (
            Arc::clone(lattice),
            Arc::clone(&tally),
            Arc::clone(&next),
            Arc::clone(progress),
        );
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < calls {
                let answered = who(&lattice).await;
                let mut tally = tally.lock().unwrap();
                match answered {
                    Ok(runtime) => *tally.served.entry(runtime).or_default() += 1,
                    Err(error) => *tally.failed.entry(reason(&error)).or_default() += 1,
                }
                progress.add();
            }
        });
    }
    while workers.join_next().await.is_some() {}
    Arc::try_unwrap(tally).unwrap().into_inner().unwrap()
}

fn reason(error: &remote::Error) -> String {
    let remote::Error::Channel(error) = error else {
        let remote::Error::Failed(failure) = error else {
            return error.to_string();
        };
        return format!("remote: {failure}");
    };
    match error {
        client::Error::Timeout { .. } => "timeout".to_owned(),
        client::Error::PeerClosed
        | client::Error::Unresponsive { .. }
        | client::Error::Unread(_)
        | client::Error::SessionEnded
        | client::Error::Overloaded { .. }
        | client::Error::Frame(_)
        | client::Error::Transport(_) => error.to_string(),
    }
}

/// Calls ended so far, and a condition variable to wait on them.
#[derive(Default)]
struct Progress {
    made: Mutex<usize>,
    changed: std::sync::Condvar,
}

impl Progress {
    fn add(&self) {
        *self.made.lock().unwrap() += 1;
        self.changed.notify_all();
    }

    fn made(&self) -> usize {
        *self.made.lock().unwrap()
    }
}

/// Runs `then` on a helper thread once `progress` reaches `count` (waiting on it, at most 60 s).
fn when_done(
    progress: &Arc<Progress>,
    count: usize,
    then: impl FnOnce() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let progress = Arc::clone(progress);
    std::thread::spawn(move || {
        let made = progress.made.lock().unwrap();
        let waited = progress
            .changed
            .wait_timeout_while(made, Duration::from_secs(60), |made| *made < count);
        let (made, timeout) = waited.unwrap();
        drop(made);
        assert!(!timeout.timed_out(), "the calls stalled before {count}");
        then();
    })
}

#[test]
fn a_lattice_spreads_calls_and_rides_out_runtimes_that_die_join_and_leave() {
    let server = NatsServer::start(&[]);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let [r1, r2, r3] = ["r1", "r2", "r3"].map(|name| serve_in_lattice(name, &server.url));
    let caller = lattice(&server.url, PATIENT_TIMEOUT);

    // 10,000 calls over three runtimes: every one succeeds, each runtime serves a share.
    let even = tokio.block_on(calls(&caller, 10_000, &Arc::new(Progress::default())));
    eprintln!("even phase: {even:?}");
    assert_eq!(even.failed, BTreeMap::new(), "{even:?}");
    assert_eq!(even.total(), 10_000);
    for runtime in ["r1", "r2", "r3"] {
        assert!(even.share(runtime) >= 0.15, "{runtime}: {even:?}");
    }
    killed_mid_run(&tokio, &lattice(&server.url, CALL_TIMEOUT), r3);
    let r4 = joined_mid_run(&tokio, &caller, &server.url);
    stopped_mid_run(&tokio, &caller, r1);
    for server in [r2, r4] {
        let (status, stderr) = server.interrupt();
        assert!(status.success(), "{stderr}");
    }
}

/// kill -9 a runtime mid-run: only calls delivered to it may fail, and only by timing out;
/// every later call succeeds.
fn killed_mid_run(tokio: &tokio::runtime::Runtime, caller: &Arc<Lattice>, victim: Server) {
    let progress = Arc::new(Progress::default());
    let killer = when_done(&progress, 1_000, move || {
        victim.signal("-KILL");
        let _ = victim.exit_within(common::WAIT);
    });
    let killed = tokio.block_on(calls(caller, 4_000, &progress));
    killer.join().unwrap();
    eprintln!("kill -9 phase: {killed:?}");
    let failed: usize = killed.failed.values().sum();
    // Each caller has one call in flight: no more can have been on the runtime that died.
    assert!(
        failed <= IN_FLIGHT,
        "more failed than were in flight: {killed:?}"
    );
    assert!(
        killed.failed.keys().all(|reason| reason == "timeout"),
        "{killed:?}"
    );
    assert_eq!(killed.total(), 4_000);
    let after = tokio.block_on(calls(caller, 1_000, &Arc::new(Progress::default())));
    assert_eq!(
        after.failed,
        BTreeMap::new(),
        "every later call succeeds: {after:?}"
    );
    assert!(!after.served.contains_key("r3"));
}

/// A fourth runtime started mid-run begins receiving calls; none fails meanwhile.
fn joined_mid_run(tokio: &tokio::runtime::Runtime, caller: &Arc<Lattice>, url: &str) -> Server {
    let progress = Arc::new(Progress::default());
    let url = url.to_owned();
    let joiner = std::thread::spawn(move || serve_in_lattice("r4", &url));
    let joined_run = tokio.block_on(async {
        let mut tally = Tally::default();
        while !tally.served.contains_key("r4") {
            let more = calls(caller, 500, &progress).await;
            tally.add(more);
            let made = progress.made();
            assert!(made < 200_000, "r4 never got a call");
        }
        tally
    });
    assert_eq!(joined_run.failed, BTreeMap::new(), "{joined_run:?}");
    joiner.join().unwrap()
}

/// A runtime stopped gracefully (SIGTERM) mid-run loses no call.
fn stopped_mid_run(tokio: &tokio::runtime::Runtime, caller: &Arc<Lattice>, leaving: Server) {
    let progress = Arc::new(Progress::default());
    let stopper = when_done(&progress, 1_000, move || {
        leaving.signal("-TERM");
        let (output, _) = leaving.exit_within(common::WAIT);
        eprintln!(
            "the stopped runtime's log: {}",
            text(&output.stderr).replace('\n', " | ")
        );
        let log = text(&output.stderr);
        assert!(output.status.success(), "{log}");
        assert!(log.contains("stopped serving the lattice"), "{log}");
        assert!(
            !log.contains("never saw"),
            "NATS delivered calls it lost: {log}"
        );
    });
    let stopped = tokio.block_on(calls(caller, 4_000, &progress));
    stopper.join().unwrap();
    eprintln!("SIGTERM phase: {stopped:?}");
    assert_eq!(
        stopped.failed,
        BTreeMap::new(),
        "a graceful stop costs nothing: {stopped:?}"
    );
    assert_eq!(stopped.total(), 4_000);
}

#[test]
fn calls_cross_a_route_between_two_nats_servers() {
    let mut first = NatsServer::start(&[
        "--cluster",
        "nats://127.0.0.1:-1",
        "--cluster_name",
        "exorun",
    ]);
    let route = first.cluster.clone().expect("a cluster port");
    let mut second = NatsServer::start(&[
        "--cluster",
        "nats://127.0.0.1:-1",
        "--cluster_name",
        "exorun",
        "--routes",
        &route,
    ]);
    assert!(first.wait_for_log("Route connection created"));
    assert!(second.wait_for_log("Route connection created"));
    // The runtime is attached to the second server, the caller to the first.
    let runtime = serve_in_lattice("far", &second.url);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let caller = lattice(&first.url, PATIENT_TIMEOUT);
    let answered = tokio.block_on(async {
        // The route carries the subscription's interest shortly after it is made; until it
        // has, the first server answers "no responders".
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match who(&caller).await {
                Ok(runtime) => break runtime,
                Err(error) => assert!(Instant::now() < deadline, "never crossed: {error}"),
            }
            tokio::task::yield_now().await;
        }
    });
    assert_eq!(answered, "far");
    let (status, stderr) = runtime.interrupt();
    assert!(status.success(), "{stderr}");
}

#[test]
fn exorun_run_reaches_an_export_by_name_in_a_lattice() {
    let server = NatsServer::start(&[]);
    let provider = manifest("lattice-math", common::PROVIDER);
    let runtime = Server::start_with(&provider, &["--nats", &server.url, "--lattice", "calc"]);
    let consumer = manifest(
        "lattice-consumer",
        &r#"
[apps]
math-consumer = "{fixtures}/math-consumer.wasm"
[peers]
lattice = { address = "URL", lattice = "calc", timeout_ms = 5000 }
[instances.calc]
app = "math-consumer"
links = { "exorun:test/math" = { remote = "lattice", target = "math" } }
"#
        .replace("URL", &server.url),
    );
    let output = run(&["run", consumer.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "calc: \"10 + 5 = 15\"\n");
    // Another lattice has no `math`: said at once, not after the timeout.
    let elsewhere = manifest(
        "lattice-elsewhere",
        &text(&std::fs::read(&consumer).unwrap()).replace(
            "\"calc\", timeout_ms = 5000",
            "\"other\", timeout_ms = 30000",
        ),
    );
    let started = Instant::now();
    let missing = run(&["run", elsewhere.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        text(&missing.stderr).contains("no instance `math` is exported"),
        "{}",
        text(&missing.stderr)
    );
    // Neither side names a lattice: both use the default one; `--peer` turns a tcp:// peer
    // into a lattice.
    let unnamed = Server::start_with(&provider, &["--nats", &server.url]);
    let overridden = manifest(
        "lattice-overridden",
        &text(&std::fs::read(&consumer).unwrap()).replace(
            &format!("address = \"{}\", lattice = \"calc\",", server.url),
            "address = \"tcp://127.0.0.1:9\",",
        ),
    );
    let written = text(&std::fs::read(&overridden).unwrap());
    assert!(
        written.contains("tcp://127.0.0.1:9") && !written.contains("nats"),
        "{written}"
    );
    let peer = format!("lattice={}", server.url);
    let output = run(&["run", overridden.to_str().unwrap(), "--peer", &peer]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "calc: \"10 + 5 = 15\"\n");
    for runtime in [runtime, unnamed] {
        let (status, stderr) = runtime.interrupt();
        assert!(status.success(), "{stderr}");
    }
}

/// Both ends reach a nats-server that requires TLS, trusting its CA: the server side with
/// `--nats-tls --nats-ca`, the caller with `tls = true, ca = ...` on its peer.
#[test]
fn a_lattice_over_tls_to_nats() {
    let (ca, cert, key) = nats_server::tls_files("cli");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = NatsServer::start(&["--tls", "--tlscert", cert, "--tlskey", key]);
    let provider = manifest("lattice-tls-math", common::PROVIDER);
    let ca = ca.to_str().unwrap();
    let runtime = Server::start_with(
        &provider,
        &["--nats", &server.url, "--nats-tls", "--nats-ca", ca],
    );
    let consumer = manifest(
        "lattice-tls-consumer",
        &r#"
[apps]
math-consumer = "{fixtures}/math-consumer.wasm"
[peers]
lattice = { address = "URL", tls = true, ca = "CA", timeout_ms = 5000 }
[instances.calc]
app = "math-consumer"
links = { "exorun:test/math" = { remote = "lattice", target = "math" } }
"#
        .replace("URL", &server.url)
        .replace("CA", ca),
    );
    let output = run(&["run", consumer.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "calc: \"10 + 5 = 15\"\n");
    // Without the CA the server is not trusted: refused, with the reason.
    let untrusted = manifest(
        "lattice-tls-untrusted",
        &text(&std::fs::read(&consumer).unwrap()).replace(&format!(", ca = \"{ca}\""), ""),
    );
    let output = run(&["run", untrusted.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("UnknownIssuer"),
        "{}",
        text(&output.stderr)
    );
    let (status, stderr) = runtime.interrupt();
    assert!(status.success(), "{stderr}");
}

#[test]
fn lattice_mistakes_are_refused_before_anything_runs() {
    let stderr = refused(
        "lattice-mistakes",
        r#"
[apps]
math-consumer = "{fixtures}/math-consumer.wasm"
[peers]
mixed = { addresses = ["nats://127.0.0.1:1", "tcp://127.0.0.1:1"] }
stray = { address = "tcp://127.0.0.1:1", lattice = "prod" }
pinned = { address = "nats://127.0.0.1:1", key = "ed25519:0000000000000000000000000000000000000000000000000000000000000000" }
[instances.calc]
app = "math-consumer"
links = { "exorun:test/math" = { remote = "mixed", target = "math" } }
"#,
    );
    assert_eq!(
        stderr,
        "exorun: M: peers.mixed: a peer's addresses are all nats:// (a lattice) or none are\n\
         exorun: M: peers.pinned: a nats:// peer is authenticated by NATS (credentials, nkey, \
         TLS); `key` pins tls:// and quic:// peers\n\
         exorun: M: peers.stray: `lattice` applies only to nats:// peers\n\
         exorun: M: instances.calc.links.\"exorun:test/math\": the peer `mixed` is not usable \
         (see peers.mixed)\n"
    );
    // An allow list names node keys, and a NATS caller has none.
    let restricted = manifest(
        "lattice-restricted",
        r#"
key = "node.key"
[apps]
math-provider = "{fixtures}/math-provider.wasm"
[instances.math]
app = "math-provider"
export = { allow = ["ed25519:0000000000000000000000000000000000000000000000000000000000000000"] }
"#,
    );
    let key = restricted.with_file_name("node.key");
    let _ = std::fs::remove_file(&key);
    assert!(
        run(&["keygen", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    let refused = run(&[
        "serve",
        restricted.to_str().unwrap(),
        "--nats",
        "nats://127.0.0.1:1",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr).replace(&restricted.display().to_string(), "M");
    assert_eq!(
        stderr,
        "exorun: M: instances.math.export: an allow list or a guard needs secure listeners \
         (tls://, quic://); NATS carries no caller key (restrict who may publish to the export's \
         subject with NATS permissions instead)\n"
    );
}

/// `exorun serve --nats` against a nats-server that requires a password: the password reaches
/// NATS however it is given (URL, file, environment) and never shows, at any log level, in any
/// mistake.
#[test]
fn nats_credentials_never_show_at_any_log_level() {
    let server = NatsServer::start(&["--user", "exorun", "--pass", "sekritpass"]);
    let port = server.url.rsplit_once(':').unwrap().1.to_owned();
    let manifest_path = who_manifest("secret");
    let dir = manifest_path.parent().unwrap().to_owned();
    let credentials = dir.join("nats.credentials");
    std::fs::write(&credentials, "exorun:sekritpass\n").unwrap();
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
    let plain_url = format!("nats://127.0.0.1:{port}");
    let in_url = format!("nats://exorun:sekritpass@127.0.0.1:{port}");
    // The NATS client and exorun's wire stack at their most verbose (wasmtime's compiler at
    // trace would only make the test slow).
    let trace = "warn,async_nats=trace,exorun_transport=trace,exorun_bind=trace";
    let ways: [(&[&str], Option<&str>); 2] = [
        (
            &[
                "--nats",
                &plain_url,
                "--nats-credentials",
                credentials.to_str().unwrap(),
            ],
            None,
        ),
        (&["--nats", &plain_url], Some("exorun:sekritpass")),
    ];
    for (args, environment) in ways {
        let stderr = serve_logging(&manifest_path, args, environment, trace);
        // The client's own lines come through at info, never below (its trace CONNECT line
        // carries the password), whatever RUST_LOG asks.
        assert!(stderr.contains("INFO async_nats"), "logged: {stderr}");
        let verbose = stderr.lines().filter(|line| line.contains("async_nats"));
        let verbose = verbose.filter(|line| line.contains("DEBUG") || line.contains("TRACE"));
        assert_eq!(verbose.count(), 0, "{stderr}");
        assert!(
            !stderr.contains("sekritpass"),
            "{args:?} showed the password: {stderr}"
        );
    }
    refused_without_showing(&port, &in_url, &manifest_path, trace);
}

/// Credentials on the command line are refused (other users can read it), and a mistake in an
/// address with credentials, however mistyped, names it without them.
fn refused_without_showing(port: &str, in_url: &str, manifest_path: &std::path::Path, trace: &str) {
    let bad = format!("nats://exorun:sekritpass@127.0.0.1:{port}x");
    let mistyped = format!("nats:/exorun:sekritpass@127.0.0.1:{port}");
    let tls = format!("tls://exorun:sekritpass@127.0.0.1:{port}");
    let dialled = "tcp://exorun:sekritpass@127.0.0.1:1".to_owned();
    let manifest_arg = manifest_path.to_str().unwrap().to_owned();
    let mut commands: Vec<[String; 4]> = Vec::new();
    for url in [&in_url.to_owned(), &bad, &mistyped, &tls] {
        commands.push([
            "serve".into(),
            manifest_arg.clone(),
            "--nats".into(),
            url.clone(),
        ]);
    }
    for address in [&bad, &tls, &dialled] {
        let peer = format!("p={address}");
        commands.push(["run".into(), manifest_arg.clone(), "--peer".into(), peer]);
    }
    for command in commands {
        let output = exorun()
            .env("RUST_LOG", trace)
            .args(&command)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{command:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("***@"), "{stderr}");
        assert!(!stderr.contains("sekritpass"), "{command:?}: {stderr}");
        assert!(
            stderr.contains("credentials never go on the command line"),
            "{command:?}: {stderr}"
        );
    }
    // In a manifest, credentials belong only in a nats:// address: one in a tcp:// peer is
    // refused when read (never dialled, never logged), named without them.
    let body = r#"
[apps]
math-consumer = "{fixtures}/math-consumer.wasm"
[peers]
p = "tcp://exorun:sekritpass@127.0.0.1:1"
[instances.calc]
app = "math-consumer"
links = { "exorun:test/math" = { remote = "p", target = "math" } }
"#;
    let with_credentials = common::manifest("lattice-tcp-credentials", body);
    let output = exorun()
        .env("RUST_LOG", trace)
        .args(["run", with_credentials.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("tcp://***@127.0.0.1:1") && !stderr.contains("sekritpass"),
        "{stderr}"
    );
}

/// Runs `exorun serve MANIFEST ARGS` logging at `filter` (with `environment` as NATS
/// credentials, if any) until it serves, stops it, and returns its stderr.
fn serve_logging(
    manifest: &std::path::Path,
    args: &[&str],
    environment: Option<&str>,
    filter: &str,
) -> String {
    let mut command = exorun();
    command
        .env("RUST_LOG", filter)
        .arg("serve")
        .arg(manifest)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(credentials) = environment {
        command.env(nats::CREDENTIALS_ENV, credentials);
    }
    let mut child = command.spawn().unwrap();
    // Both pipes are read as the server writes (verbose logging fills a pipe fast).
    let stderr = common::Lines::new(child.stderr.take().unwrap());
    let stdout = common::Lines::new(child.stdout.take().unwrap());
    let (serving, _) = stdout.find("serving", |line| line.starts_with("exorun: serving"));
    assert!(serving.is_some(), "{args:?} connected and served");
    let server = Server::from_child(child, "");
    server.signal("-INT");
    let (output, _) = server.exit_within(common::WAIT);
    let stderr = stderr.rest().join("\n");
    assert!(output.status.success(), "{stderr}");
    stderr
}

#[test]
fn key_seed_and_ca_files_that_would_hang_or_flood_are_refused_before_they_are_opened() {
    let path = who_manifest("files");
    let dir = path.parent().unwrap().to_owned();
    let fifo = dir.join("key.fifo");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let fifo = fifo.to_str().unwrap();
    // Each would block in `open` for ever (a FIFO) or read for ever (a device) if opened.
    let cases: [&[&str]; 4] = [
        &["--key", fifo, "--listen", "tcp://127.0.0.1:0"],
        &["--nats", "nats://127.0.0.1:1", "--nats-nkey", fifo],
        &["--nats", "nats://127.0.0.1:1", "--nats-ca", "/dev/zero"],
        &["--nats", "nats://127.0.0.1:1", "--nats-credentials", fifo],
    ];
    for args in cases {
        let mut child = exorun()
            .arg("serve")
            .arg(&path)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let server = Server::from_child(child, "");
        let (output, took) = server.exit_within(common::WAIT);
        drop(stdout);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("not a regular file"), "{args:?}: {stderr}");
        assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
    }
}
