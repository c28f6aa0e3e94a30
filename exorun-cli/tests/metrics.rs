//! `exorun serve --metrics`: a real server process scraped over HTTP after a known mix of calls
//! (ok, trapped, refused for unknown names; and, over tls://, granted and denied by a guard),
//! with exact counts, the restart the trap caused, label values that stay bounded under a flood
//! of calls to unknown names, and `/healthz` and `/readyz`.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::io::Read;
use std::io::Write;

use common::Server;
use common::manifest;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::net;
use exorun_transport::transport;
use neorpc::codec;
use wasmtime::component::Val;

/// `GET PATH` over HTTP/1.1 to `address` (`http://HOST:PORT`): the status code and body.
fn get(address: &str, path: &str) -> (u16, String) {
    let (head, body) = get_whole(address, path);
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body)
}

/// `GET path`: the answer's head and body.
fn get_whole(address: &str, path: &str) -> (String, String) {
    let host = address.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// The value of the sample `line` (its name and labels as Prometheus writes them).
fn sample(metrics: &str, line: &str) -> Option<f64> {
    let found = metrics.lines().find_map(|text| text.strip_prefix(line))?;
    found.trim().parse().ok()
}

async fn add(
    client: &Client,
    target: &str,
    a: u32,
    b: u32,
) -> Result<client::Reply, client::Error> {
    let slab = codec::encode(&[Val::U32(a), Val::U32(b)]).unwrap();
    let frame = neorpc::frame::encode_call(target, "exorun:test/math#add", &slab, &[]).unwrap();
    client.call(frame).await
}

/// `exorun serve MANIFEST --listen LISTEN --metrics 127.0.0.1:0`: the server, its address,
/// the metrics endpoint's, and the line naming what it serves; checking that it is alive before
/// it serves and ready once it does.
fn serve_with_metrics(
    manifest: &std::path::Path,
    listen: &str,
) -> (Server, String, String, String) {
    serve_with_metrics_and(manifest, listen, &[])
}

/// As `serve_with_metrics`, with `more` arguments.
fn serve_with_metrics_and(
    manifest: &std::path::Path,
    listen: &str,
    more: &[&str],
) -> (Server, String, String, String) {
    let mut args = vec!["--listen", listen, "--metrics", "127.0.0.1:0"];
    args.extend_from_slice(more);
    let (child, lines) = common::spawn_serve(manifest, &args, "warn");
    let first = lines.next_line("the metrics address").unwrap();
    let metrics = first
        .strip_prefix("exorun: metrics on ")
        .unwrap()
        .to_owned();
    assert_eq!(get(&metrics, "/healthz").0, 200);
    let listening = lines.next_line("the server's address").unwrap();
    let address = listening
        .strip_prefix("exorun: listening on ")
        .unwrap()
        .to_owned();
    let serving = lines.next_line("the server's exports").unwrap();
    assert_eq!(get(&metrics, "/readyz"), (200, "ready\n".to_owned()));
    (
        Server::from_child(child, &address),
        address,
        metrics,
        serving,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_counts_exactly_what_was_served_and_no_unknown_name() {
    let provider = manifest(
        "metrics-provider",
        r#"
[apps]
misbehave = "{fixtures}/misbehave.wasm"
[instances.math]
app = "misbehave"
export = true
"#,
    );
    let (server, address, metrics, serving) = serve_with_metrics(&provider, "tcp://127.0.0.1:0");
    assert_eq!(serving, "exorun: serving math");
    let client = common::client_of(&address).await;
    for _ in 0..3 {
        add(&client, "math", 1, 2).await.unwrap().unwrap();
    }
    // Overflow traps in misbehave's `add`; the replica is restarted for the next call.
    assert!(matches!(
        add(&client, "math", u32::MAX, 2).await,
        Ok(Err(_))
    ));
    add(&client, "math", 1, 2).await.unwrap().unwrap();
    // A flood of calls to names that do not exist: counted, never a label.
    for index in 0..200 {
        let refused = add(&client, &format!("ghost-{index}"), 1, 2).await;
        assert!(matches!(refused, Ok(Err(_))), "{refused:?}");
    }
    let (head, _) = get_whole(&metrics, "/metrics");
    let kind = "content-type: text/plain; version=0.0.4; charset=utf-8";
    assert!(head.to_ascii_lowercase().contains(kind), "{head}");
    let (status, text) = get(&metrics, "/metrics");
    assert_eq!(status, 200);
    let served =
        r#"exorun_calls_served_total{export="math",interface="exorun:test/math",function="add","#;
    assert_eq!(
        sample(&text, &format!("{served}outcome=\"ok\"}}")),
        Some(4.0),
        "{text}"
    );
    let trapped = format!("{served}outcome=\"app_trapped\"}}");
    assert_eq!(sample(&text, &trapped), Some(1.0), "{text}");
    let refused = r#"exorun_calls_refused_total{outcome="instance_not_found"}"#;
    assert_eq!(sample(&text, refused), Some(200.0), "{text}");
    let restarts = r#"exorun_instance_restarts{instance="math"}"#;
    assert_eq!(sample(&text, restarts), Some(1.0), "{text}");
    let trapped = r#"exorun_instance_restarts_by_cause{instance="math",cause="trapped"}"#;
    assert_eq!(sample(&text, trapped), Some(1.0), "{text}");
    let fuel = r#"exorun_instance_restarts_by_cause{instance="math",cause="out_of_fuel"}"#;
    assert_eq!(sample(&text, fuel), Some(0.0), "{text}");
    let count = r#"exorun_call_served_seconds_count{export="math",interface="exorun:test/math",function="add"}"#;
    assert_eq!(sample(&text, count), Some(5.0), "{text}");
    assert!(
        !text.contains("ghost"),
        "an unknown name became a label: {text}"
    );
    // The one connection the calls came on, open still; the budget's size.
    let connections = r#"exorun_connections_total{transport="tcp"}"#;
    assert_eq!(sample(&text, connections), Some(1.0), "{text}");
    let open = r#"exorun_connections_open{transport="tcp"}"#;
    assert_eq!(sample(&text, open), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "exorun_budget_kib "),
        Some(262_144.0),
        "{text}"
    );
    assert_eq!(get(&metrics, "/nowhere").0, 404);
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
}

/// A server key (in a file, for the manifest) and a caller key.
fn keys() -> (
    std::path::PathBuf,
    exorun_transport::identity::NodeKey,
    exorun_transport::identity::NodeKey,
) {
    let dir = std::env::temp_dir().join(format!("exorun-cli-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server_file = dir.join("server.key");
    let _ = std::fs::remove_file(&server_file);
    let server_key = exorun_transport::identity::NodeKey::generate().unwrap();
    server_key.write_new(&server_file).unwrap();
    let caller_key = exorun_transport::identity::NodeKey::generate().unwrap();
    (server_file, server_key, caller_key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guards_denials_are_counted_by_reason() {
    let (server_file, server_key, caller_key) = keys();
    let guarded = manifest(
        "metrics-guarded",
        &r#"
key = "KEY"
[apps]
cruncher = "{fixtures}/cruncher.wasm"
misbehave = "{fixtures}/misbehave.wasm"
[instances.wild]
app = "misbehave"
[instances.crunch]
app = "cruncher"
export = { guard = "wild" }
"#
        .replace("KEY", server_file.to_str().unwrap()),
    );
    let (server, address, metrics, _) = serve_with_metrics(&guarded, "tls://127.0.0.1:0");
    let secure = exorun_transport::tls::Secure {
        key: std::sync::Arc::new(caller_key),
        pin: server_key.public(),
    };
    let max = transport::MESSAGE_BYTES_MAX;
    let parsed = Address::parse(&address).unwrap();
    let connection = net::connect_secure(&parsed, &secure, max).await.unwrap();
    let client = Client::new(connection, client::Config::default());
    for capability in [&b"ok"[..], b"deny", b"deny"] {
        let mut writer =
            neorpc::frame::CallWriter::new("crunch", "exorun:test/crunch#tally").unwrap();
        codec::encode_into(writer.args(), &[], &codec::Limits::default()).unwrap();
        let frame = writer.finish_presenting(&[], Some(capability)).unwrap();
        let answered = client.call(frame).await;
        let ok = matches!(answered, Ok(Ok(_)));
        assert_eq!(ok, capability == b"ok", "{answered:?}");
    }
    let (_, text) = get(&metrics, "/metrics");
    let served = r#"exorun_calls_served_total{export="crunch",interface="exorun:test/crunch",function="tally","#;
    assert_eq!(
        sample(&text, &format!("{served}outcome=\"ok\"}}")),
        Some(1.0),
        "{text}"
    );
    let denied = format!("{served}outcome=\"permission_denied\"}}");
    assert_eq!(sample(&text, &denied), Some(2.0), "{text}");
    let tls = r#"exorun_connections_total{transport="tls"}"#;
    assert_eq!(sample(&text, tls), Some(1.0), "{text}");
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
}

/// `exorun-test/misbehave`'s function `name` (no arguments) on `client`.
async fn misbehave(
    client: &Client,
    function: &str,
    args: &[Val],
) -> Result<client::Reply, client::Error> {
    let slab = codec::encode(args).unwrap();
    let method = format!("exorun:test/misbehave#{function}");
    let frame = neorpc::frame::encode_call("busy", &method, &slab, &[]).unwrap();
    client.call(frame).await
}

/// Scrapes until `line`'s value is `wanted` (each scrape a real request; the server's own
/// state is the event waited for), within 10 s.
fn scrape_until(metrics: &str, line: &str, wanted: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if sample(&get(metrics, "/metrics").1, line) == Some(wanted) {
            return;
        }
        std::thread::yield_now();
    }
    panic!("{line} never reached {wanted}");
}

/// Overloaded calls, exactly: one replica held by a call that spins (about 3 s of fuel), one
/// call waiting (seen in the scrape), and two more refused `Overloaded` at once because one
/// waiting call is the instance's bound. The counters then read spun out of fuel 1,
/// overloaded 2, and the waiting call's ok 1 once the replica is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_calls_are_counted_exactly() {
    let busy = manifest(
        "metrics-busy",
        r#"
[apps]
misbehave = "{fixtures}/misbehave.wasm"
[instances.busy]
app = "misbehave"
export = true
limits = { fuel_per_call = 6000000000, calls_waiting_max = 1 }
"#,
    );
    let (server, address, metrics, _) = serve_with_metrics(&busy, "tcp://127.0.0.1:0");
    let client = std::sync::Arc::new(common::client_of(&address).await);
    let spinner = std::sync::Arc::clone(&client);
    let spin = tokio::spawn(async move { misbehave(&spinner, "spin", &[]).await });
    let in_flight = r#"exorun_calls_in_flight{export="busy"}"#;
    let seen = metrics.clone();
    tokio::task::spawn_blocking(move || scrape_until(&seen, in_flight, 1.0))
        .await
        .unwrap();
    let waiter = std::sync::Arc::clone(&client);
    let waiting = tokio::spawn(async move { misbehave(&waiter, "echo", &[Val::U32(7)]).await });
    let queued = r#"exorun_instance_calls_waiting{instance="busy"}"#;
    let seen = metrics.clone();
    tokio::task::spawn_blocking(move || scrape_until(&seen, queued, 1.0))
        .await
        .unwrap();
    for _ in 0..2 {
        let refused = misbehave(&client, "echo", &[Val::U32(8)]).await;
        let Ok(Err(neorpc::failure::Failure::Overloaded)) = refused else {
            panic!("not overloaded: {refused:?}");
        };
    }
    let spun = spin.await.unwrap();
    let Ok(Err(neorpc::failure::Failure::OutOfFuel)) = spun else {
        panic!("the spin did not run out of fuel: {spun:?}");
    };
    waiting.await.unwrap().unwrap().unwrap();
    let (_, text) = get(&metrics, "/metrics");
    let echo = r#"exorun_calls_served_total{export="busy",interface="exorun:test/misbehave",function="echo","#;
    assert_eq!(
        sample(&text, &format!("{echo}outcome=\"overloaded\"}}")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("{echo}outcome=\"ok\"}}")),
        Some(1.0),
        "{text}"
    );
    let spin = r#"exorun_calls_served_total{export="busy",interface="exorun:test/misbehave",function="spin",outcome="out_of_fuel"}"#;
    assert_eq!(sample(&text, spin), Some(1.0), "{text}");
    let fuel = r#"exorun_instance_restarts_by_cause{instance="busy",cause="out_of_fuel"}"#;
    assert_eq!(sample(&text, fuel), Some(1.0), "{text}");
    assert_eq!(sample(&text, queued), Some(0.0), "{text}");
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
}

/// `count` calls of `math.add`, one after another.
async fn calls(client: std::sync::Arc<Client>, count: usize) {
    for _ in 0..count {
        add(&client, "math", 1, 2).await.unwrap().unwrap();
    }
}

/// Spans a collector cannot take are dropped and counted, never waited for. The collector
/// here accepts connections and never answers, so the first batch's request hangs (10 s) while
/// 6,000 served calls each finish a span: past the 4,096 queued and the batch in flight, every
/// span is dropped at once and counted in `exorun_spans_dropped_total` (before, that counter
/// was taken before the metrics recorder existed and counted nowhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_a_silent_collector_cannot_take_are_counted_as_dropped() {
    const CALLS: usize = 6_000;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let collector = format!("http://{}", silent.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        // Holds every connection open, reading nothing, answering nothing.
        silent.incoming().map_while(Result::ok).collect::<Vec<_>>()
    });
    let provider = manifest(
        "metrics-silent-collector",
        r#"
[apps]
math = "{fixtures}/math-provider.wasm"
[instances.math]
app = "math"
export = true
"#,
    );
    let more = ["--otlp", collector.as_str()];
    let (server, address, metrics, _) =
        serve_with_metrics_and(&provider, "tcp://127.0.0.1:0", &more);
    let client = std::sync::Arc::new(common::client_of(&address).await);
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        callers.spawn(calls(std::sync::Arc::clone(&client), CALLS / 8));
    }
    callers.join_all().await;
    let (_, text) = get(&metrics, "/metrics");
    let dropped = sample(&text, "exorun_spans_dropped_total").unwrap_or(0.0);
    // At most the queue (4,096) and two batches (512 each) are held; the rest is dropped.
    let held_at_most = 4_096 + 2 * 512;
    let least = f64::from(u32::try_from(CALLS - held_at_most).unwrap());
    assert!(dropped >= least, "{dropped} dropped of {CALLS}: {text}");
    drop(server);
    drop(held);
}

/// `/readyz` asked until it is not 200 (at most 10 s): its last answer.
fn readyz_once_not_ready(metrics: &str) -> (u16, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let answer = get(metrics, "/readyz");
        if answer.0 != 200 || std::time::Instant::now() > deadline {
            return answer;
        }
        std::thread::yield_now();
    }
}

/// `/readyz` turns 503 `stopping` at the stop signal, while a call in flight (a spin of about
/// 3 s of fuel) holds the drain, so a load balancer takes the runtime out before it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_stopping_while_the_runtime_drains() {
    let busy = manifest(
        "metrics-draining",
        r#"
[apps]
misbehave = "{fixtures}/misbehave.wasm"
[instances.busy]
app = "misbehave"
export = true
limits = { fuel_per_call = 6000000000 }
"#,
    );
    let (server, address, metrics, _) = serve_with_metrics(&busy, "tcp://127.0.0.1:0");
    let client = common::client_of(&address).await;
    let spin = tokio::spawn(async move { misbehave(&client, "spin", &[]).await });
    let in_flight = r#"exorun_calls_in_flight{export="busy"}"#;
    let seen = metrics.clone();
    tokio::task::spawn_blocking(move || scrape_until(&seen, in_flight, 1.0))
        .await
        .unwrap();
    assert_eq!(get(&metrics, "/readyz"), (200, "ready\n".to_owned()));
    server.signal("-INT");
    let seen = metrics.clone();
    let answered = tokio::task::spawn_blocking(move || readyz_once_not_ready(&seen));
    assert_eq!(answered.await.unwrap(), (503, "stopping\n".to_owned()));
    let spun = spin.await.unwrap();
    assert!(
        matches!(spun, Ok(Err(_))),
        "the spin ran out of fuel: {spun:?}"
    );
    let (output, _) = server.exit_within(common::WAIT);
    assert!(output.status.success(), "{}", common::text(&output.stderr));
}

/// Whether `/healthz` answers 200 within 2 s.
fn healthy_within_2s(metrics: &str) -> bool {
    let output = std::process::Command::new("curl")
        .args(["-s", "--max-time", "2", "-w", "%{http_code}"])
        .arg(format!("{metrics}/healthz"))
        .output()
        .unwrap();
    common::text(&output.stdout) == "alive\n200"
}

#[test]
fn health_checks_answer_while_crowds_hold_the_metrics_port() {
    let provider = manifest("metrics-crowds", common::PROVIDER);
    let (server, _, metrics, _) = serve_with_metrics(&provider, "tcp://127.0.0.1:0");
    // A thousand idle connections from one host: its share is held, the rest closed.
    let one_host: Vec<_> = (0..1_000)
        .map(|_| common::connect_from("127.0.0.2", metrics.trim_start_matches("http://"), None))
        .collect();
    assert_eq!((0..5).filter(|_| healthy_within_2s(&metrics)).count(), 5);
    drop(one_host);
    // Idle connections from a hundred hosts, past the endpoint's cap: the idle are shed.
    let mut crowd = Vec::new();
    for host in 10..110 {
        for _ in 0..16 {
            crowd.push(common::connect_from(
                &format!("127.0.1.{host}"),
                metrics.trim_start_matches("http://"),
                None,
            ));
        }
    }
    assert_eq!((0..5).filter(|_| healthy_within_2s(&metrics)).count(), 5);
    drop(crowd);
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
}
