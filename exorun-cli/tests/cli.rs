//! The real `exorun` binary: `run` on the examples, `serve` + `run` across two processes over
//! TCP and a Unix socket, `inspect`, timeouts, and a clean stop on SIGINT with a call in flight
//! (manifest mistakes: manifest.rs).

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use common::Server;
use common::examples;
use common::manifest;
use common::run;
use common::text;
use exorun_testkit::fixtures;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::net;
use exorun_transport::transport;
use neorpc::failure::Failure;

#[test]
fn run_prints_each_runnable_instance_of_the_local_example() {
    let local = examples().join("local.toml");
    let output = run(&["run", local.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "calc: \"10 + 5 = 15\"\ncounting: \"7 8, alive 1, given home at 9, alive 0\"\n\
         logger: \"Done\"\n"
    );
}

#[test]
fn invoke_takes_and_prints_wave_text() {
    let local = examples().join("local.toml");
    let local = local.to_str().unwrap();
    let added = run(&[
        "run",
        local,
        "--invoke",
        "provider.exorun:test/math#add(40, 2)",
    ]);
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert_eq!(text(&added.stdout), "42\n");
    let read = "reader.exorun:test/sandbox#read-file(\"note.txt\")";
    let read = run(&["run", local, "--invoke", read]);
    assert_eq!(
        text(&read.stdout),
        "ok(\"a file the fs-reader instance may read\\n\")\n"
    );
    let bad = run(&["run", local, "--invoke", "provider.exorun:test/math#add(1)"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).starts_with("exorun: --invoke: arguments: "),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn inspect_prints_the_ledger_of_math_consumer() {
    let component = fixtures::path("math-consumer").unwrap();
    let output = run(&["inspect", component.to_str().unwrap()]);
    assert!(output.status.success());
    assert_eq!(
        text(&output.stdout),
        "imports:\n  exorun:test/math\n    add: func(a: u32, b: u32) -> u32\n\
         exports:\n  exorun:test/runnable\n    run: func() -> string\n"
    );
    let missing = run(&["inspect", "/nonexistent/x.wasm"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).starts_with("exorun: cannot read /nonexistent/x.wasm: "));
}

#[test]
fn inspect_names_resources_and_groups_their_functions() {
    let component = fixtures::path("counter-provider").unwrap();
    let output = run(&["inspect", component.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let expected = "  exorun:test/counter-sink\n    take: func(c: own<counter>) -> u32\n\
        \x20 exorun:test/counters\n    resource counter\n\
        \x20     constructor: func(start: u32) -> own<counter>\n\
        \x20     absorb: func(self: borrow<counter>, other: borrow<counter>) -> u32\n\
        \x20     next: func(self: borrow<counter>) -> u32\n";
    assert!(stdout.contains(expected), "{stdout}");
    assert!(
        stdout.contains("    peek: func(c: borrow<counter>) -> u32\n"),
        "{stdout}"
    );
}

fn serve_then_run(listen: &str) {
    let server = Server::start(&examples().join("provider.toml"), listen);
    let composition = examples().join("composition.toml");
    let peer = format!("provider={}", server.address);
    let output = run(&["run", composition.to_str().unwrap(), "--peer", &peer]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "counting: \"7 8, alive 1, given home at 9, alive 0\"\n\
         kv-a: \"KV result: bar\"\nkv-b: \"KV result: bar\"\nlogger: \"Done\"\n\
         relayed-calc: \"10 + 5 = 15\"\nremote-calc: \"10 + 5 = 15\"\n"
    );
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
    assert!(stderr.ends_with("exorun: stopped\n"), "{stderr}");
}

#[test]
fn serve_and_run_across_two_processes_over_tcp() {
    serve_then_run("tcp://127.0.0.1:0");
}

#[test]
fn serve_and_run_across_two_processes_over_a_unix_socket() {
    let path = std::env::temp_dir().join(format!("exorun-cli-{}.sock", std::process::id()));
    serve_then_run(&format!("unix://{}", path.display()));
}

#[test]
fn an_unreachable_peer_fails_the_call_with_its_cause() {
    let composition = examples().join("composition.toml");
    let output = run(&[
        "run",
        composition.to_str().unwrap(),
        "--peer",
        "provider=tcp://127.0.0.1:1",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "exorun: remote-calc.exorun:test/runnable#run: remote call exorun:test/math#add \
             on `math`: transport: "
        ),
        "{stderr}"
    );
    assert!(
        text(&output.stdout).contains("logger: \"Done\""),
        "others still ran"
    );
}

/// A client of `address` whose calls may take two minutes.
async fn patient_client(address: &str) -> Arc<Client> {
    let address = exorun_transport::address::Address::parse(address).unwrap();
    let connection = net::connect(&address, transport::MESSAGE_BYTES_MAX)
        .await
        .unwrap();
    let config = client::Config {
        timeout: Duration::from_secs(120),
        ..client::Config::default()
    };
    Arc::new(Client::new(connection, config))
}

#[test]
fn serve_stops_cleanly_on_sigint_with_a_call_in_flight() {
    let path = manifest(
        "slow",
        r#"
[apps]
misbehave = "{fixtures}/misbehave.wasm"
[instances.math]
app = "misbehave"
export = true
limits = { fuel_per_call = 1500000000 }
"#,
    );
    // The spin takes a fraction of a second alone, many seconds on a loaded one: a drain timeout
    // it cannot reach, so the test shows the call finishing, not the deadline.
    let mut server = Server::start_args(
        &path,
        &["--listen", "tcp://127.0.0.1:0", "--drain-timeout", "120s"],
        "exorun_transport::connection=debug",
    );
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = tokio.block_on(patient_client(&server.address));
    let call = tokio.spawn({
        let client = Arc::clone(&client);
        let slab = neorpc::codec::encode(&[]).unwrap();
        let frame = neorpc::frame::encode_call("math", "exorun:test/misbehave#spin", &slab, &[]);
        async move { client.call(frame.unwrap()).await }
    });
    // The server logs each call as it arrives: interrupt only once the call is in flight.
    let stderr = server.stderr_lines();
    let (arrived, _) = stderr.find("the call's arrival", |line| line.contains("call received"));
    assert!(arrived.is_some(), "the server never logged the call");
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let reply = tokio.block_on(call).unwrap();
    assert_eq!(
        reply.unwrap().unwrap_err(),
        Failure::OutOfFuel,
        "the call in flight finished and was answered"
    );
    let rest = stderr.rest();
    let (output, _) = server.exit_within(common::WAIT);
    let status = output.status;
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|line| line.contains("call served")),
        "{rest:?}"
    );
    assert_eq!(
        rest.iter()
            .filter(|line| line.starts_with("exorun: "))
            .collect::<Vec<_>>(),
        [
            "exorun: stopping: letting calls in flight finish (at most 120000 ms)",
            "exorun: stopped"
        ]
    );
}

#[test]
fn a_peer_that_never_answers_times_out_as_configured() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", silent.local_addr().unwrap());
    let held = std::thread::spawn(move || silent.accept().map(|(connection, _)| connection));
    let path = manifest(
        "silent",
        &r#"
[apps]
consumer = "{fixtures}/math-consumer.wasm"
[peers]
quiet = { address = "ADDRESS", timeout_ms = 300 }
[instances.calc]
app = "consumer"
links = { "exorun:test/math" = { remote = "quiet", target = "math" } }
"#
        .replace("ADDRESS", &address),
    );
    let started = Instant::now();
    let output = run(&["run", path.to_str().unwrap()]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "exorun: calc.exorun:test/runnable#run: remote call exorun:test/math#add on `math`: no \
         reply within 300 ms\n"
    );
    drop(held.join().unwrap());
}

#[test]
fn invoke_names_an_unknown_instance_or_function() {
    let local = examples().join("local.toml");
    let local = local.to_str().unwrap();
    let nobody = run(&[
        "run",
        local,
        "--invoke",
        "nobody.exorun:test/math#add(1, 2)",
    ]);
    assert_eq!(nobody.status.code(), Some(1));
    assert_eq!(
        text(&nobody.stderr),
        "exorun: --invoke: no instance `nobody`\n"
    );
    let nothing = run(&[
        "run",
        local,
        "--invoke",
        "provider.exorun:test/math#sub(1, 2)",
    ]);
    assert_eq!(nothing.status.code(), Some(1));
    assert_eq!(
        text(&nothing.stderr),
        "exorun: --invoke: `provider` exports no exorun:test/math#sub\n"
    );
}
