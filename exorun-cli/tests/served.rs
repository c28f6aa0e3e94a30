//! A served runtime keeps its exports up: across two processes, an instance whose call trapped
//! is replaced, and the next remote call succeeds.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use exorun_bind::link::remote;
use std::time::Duration;
use std::time::Instant;

use common::Server;
use common::manifest;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::net;
use exorun_transport::transport;
use neorpc::failure::Failure;
use wasmtime::component::Type;
use wasmtime::component::Val;

/// A raw neorpc call of `exorun:test/misbehave#FUNCTION` on the served `math`.
async fn misbehave(
    client: &Client,
    function: &str,
    args: &[Val],
) -> Result<Vec<Val>, remote::Error> {
    let slab = neorpc::codec::encode(args).unwrap();
    let method = format!("exorun:test/misbehave#{function}");
    let frame = neorpc::frame::encode_call("math", &method, &slab, &[]).unwrap();
    let reply = client.call(frame).await.map_err(remote::Error::Channel)?;
    let reply = reply.map_err(remote::Error::Failed)?;
    let types: Vec<Type> = if function == "echo" {
        vec![Type::U32]
    } else {
        Vec::new()
    };
    Ok(neorpc::codec::decode(&reply, &types, &neorpc::codec::Limits::default()).unwrap())
}

/// A manifest that exports misbehave (a guest that traps, spins or eats memory on request) as
/// `math`.
const MISBEHAVE: &str = r#"
[apps]
misbehave = "{fixtures}/misbehave.wasm"
[instances.math]
app = "misbehave"
export = true
"#;

#[test]
fn a_served_instance_that_trapped_answers_the_next_call_from_a_fresh_instance() {
    let path = manifest("restarting", MISBEHAVE);
    let server = Server::start(&path, "tcp://127.0.0.1:0");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let address = Address::parse(&server.address).unwrap();
        let connection = net::connect(&address, transport::MESSAGE_BYTES_MAX)
            .await
            .unwrap();
        let client = Client::new(connection, client::Config::default());
        let trapped = misbehave(&client, "trap", &[]).await.unwrap_err();
        let remote::Error::Failed(Failure::AppTrapped { message }) = &trapped else {
            panic!("{trapped:?}")
        };
        assert!(message.contains("unreachable"), "{message}");
        for n in [1, 2] {
            let echoed = misbehave(&client, "echo", &[Val::U32(n)]).await.unwrap();
            assert_eq!(echoed, [Val::U32(n)]);
        }
    });
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
}

/// A server of `misbehave` as `math` and a cruncher allowed a 12 MiB answer as `crunch`,
/// logging each call's arrival, with `drain` as its drain timeout.
const STUCK: &str = r#"
[apps]
misbehave = "{fixtures}/misbehave.wasm"
cruncher = "{fixtures}/cruncher.wasm"
[instances.math]
app = "misbehave"
export = true
[instances.crunch]
app = "cruncher"
export = true
limits = { memory_mib = 64 }
"#;

fn serve_stuck(name: &str, drain: &str) -> (Server, common::Lines) {
    let path = manifest(name, STUCK);
    let args = ["--listen", "tcp://127.0.0.1:0", "--drain-timeout", drain];
    let mut server = Server::start_args(&path, &args, "exorun_transport::connection=debug");
    let lines = server.stderr_lines();
    (server, lines)
}

/// A peer that reads nothing, with a receive buffer as small as the kernel allows, asking for
/// a 12 MiB answer: more than the sockets' buffers can hold, so the server's writer to it is
/// stuck for good, whatever the machine's speed. Returns once the server logged the call's
/// arrival (so a stop finds it in flight, or its answer unwritten).
async fn stuck_peer(address: &str, lines: &common::Lines) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let host_port = address.trim_start_matches("tcp://").parse().unwrap();
    let mut flood = socket.connect(host_port).await.unwrap();
    let slab = neorpc::codec::encode(&[Val::U32(12 * 1024 * 1024)]).unwrap();
    let mut call =
        neorpc::frame::encode_call("crunch", "exorun:test/crunch#spill", &slab, &[]).unwrap();
    call.set_seq(neorpc::frame::Seq(1));
    let bytes = call.into_bytes();
    flood
        .write_all(&u32::try_from(bytes.len()).unwrap().to_le_bytes())
        .await
        .unwrap();
    flood.write_all(&bytes).await.unwrap();
    let (arrived, _) = lines.find("the call's arrival", |line| line.contains("call received"));
    assert!(arrived.is_some(), "the server never logged the call");
    flood
}

#[test]
fn a_stop_with_a_peer_that_never_reads_ends_at_the_drain_timeout() {
    let (server, lines) = serve_stuck("drain", "500ms");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let flood = tokio.block_on(stuck_peer(&server.address, &lines));
    server.signal("-TERM");
    let (output, _) = server.exit_within(common::WAIT);
    assert_eq!(output.status.code(), Some(1));
    let rest = lines.rest();
    assert_eq!(
        rest.last().map(String::as_str),
        Some("exorun: drain timeout: closed 1 connections with calls still in flight"),
        "{rest:?}"
    );
    drop(flood);
}

#[test]
fn a_second_signal_exits_at_once() {
    let (server, lines) = serve_stuck("twice", "600s");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let flood = tokio.block_on(stuck_peer(&server.address, &lines));
    server.signal("-TERM");
    let (stopping, _) = lines.find("the stop", |line| line.starts_with("exorun: stopping"));
    assert!(stopping.is_some(), "the first signal started the stop");
    server.signal("-INT");
    // Not the 600 s drain: the second signal ends it.
    let (output, _) = server.exit_within(common::WAIT);
    assert_eq!(output.status.code(), Some(130));
    drop(flood);
}

/// `add(40, 2)` on `target` at `address`, over a fresh connection.
fn add_through(
    tokio: &tokio::runtime::Runtime,
    address: &str,
    target: &str,
) -> Result<Vec<Val>, remote::Error> {
    tokio.block_on(async {
        let address = Address::parse(address).unwrap();
        let connection = net::connect(&address, transport::MESSAGE_BYTES_MAX)
            .await
            .unwrap();
        let client = Client::new(connection, client::Config::default());
        let slab = neorpc::codec::encode(&[Val::U32(40), Val::U32(2)]).unwrap();
        let frame = neorpc::frame::encode_call(target, "exorun:test/math#add", &slab, &[]).unwrap();
        let reply = client.call(frame).await.map_err(remote::Error::Channel)?;
        let reply = reply.map_err(remote::Error::Failed)?;
        let types = [Type::U32];
        Ok(neorpc::codec::decode(&reply, &types, &neorpc::codec::Limits::default()).unwrap())
    })
}

#[test]
fn a_relay_heals_after_its_provider_is_killed_and_restarted_on_the_same_address() {
    let provider = manifest("heal-provider", common::PROVIDER);
    let first = Server::start(&provider, "tcp://127.0.0.1:0");
    let provider_address = first.address.clone();
    let relay = manifest(
        "heal-relay",
        &r#"
[apps]
relay = "{fixtures}/relay.wasm"
[peers]
provider = { address = "ADDRESS", backoff_max_ms = 200 }
[instances.relay]
app = "relay"
export = true
links = { "exorun:test/math" = { remote = "provider", target = "math" } }
"#
        .replace("ADDRESS", &provider_address),
    );
    let relay_server = Server::start(&relay, "tcp://127.0.0.1:0");
    let relay_pid = relay_server.child.id();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(
        add_through(&tokio, &relay_server.address, "relay").unwrap(),
        [Val::U32(42)]
    );

    // The provider dies without a word, and comes back on the same address.
    first.signal("-KILL");
    let (_, _) = first.exit_within(Duration::from_secs(10));
    let down = add_through(&tokio, &relay_server.address, "relay");
    assert!(
        down.is_err(),
        "a call through the relay fails while the provider is down"
    );
    let second = Server::start(&provider, &provider_address);
    assert_eq!(second.address, provider_address);
    let started = Instant::now();
    let healed = loop {
        match add_through(&tokio, &relay_server.address, "relay") {
            Ok(results) => break results,
            Err(error) => {
                // Within the back-off bound (200 ms pauses) plus a restart of the relay.
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "still failing: {error}"
                );
            }
        }
    };
    assert_eq!(healed, [Val::U32(42)]);
    assert_eq!(
        relay_server.child.id(),
        relay_pid,
        "the relay's runtime was never restarted"
    );
    let (status, stderr) = relay_server.interrupt();
    assert!(status.success(), "{stderr}");
    let (status, stderr) = second.interrupt();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_flood_of_stray_frames_writes_a_line_a_second_not_a_line_a_frame() {
    let path = manifest("stray", MISBEHAVE);
    let mut server = Server::start(&path, "tcp://127.0.0.1:0");
    let stderr = server.stderr_lines();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let address = Address::parse(&server.address).unwrap();
        let connection = net::connect(&address, transport::MESSAGE_BYTES_MAX)
            .await
            .unwrap();
        // 20,000 replies nobody asked for, on the connection a real call then uses: its answer
        // comes after the server read every one of them (a connection's frames are handled in
        // order).
        for seq in 0..20_000u64 {
            let stray = neorpc::frame::encode_reply(neorpc::frame::Seq(seq), Ok(&[0x0E]));
            transport::Transport::send(connection.as_ref(), stray.unwrap().into())
                .await
                .unwrap();
        }
        let client = Client::new(connection, client::Config::default());
        let echoed = misbehave(&client, "echo", &[Val::U32(3)]).await.unwrap();
        assert_eq!(echoed, [Val::U32(3)]);
    });
    server.signal("-INT");
    let (output, _) = server.exit_within(common::WAIT);
    assert!(output.status.success());
    let lines = stderr.rest();
    let warned = lines.iter().filter(|line| line.contains("skipped a reply"));
    let warned = warned.count();
    assert!((1..=3).contains(&warned), "{warned} lines: {lines:?}");
}

/// The process's resident size now and at its highest, in bytes (`/proc/PID/status`).
fn resident(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|line| line.starts_with(name)).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Three times over from `source`: a connection announces a 16 MiB frame, sends 15 MiB of it
/// and stalls until the server closes it (at its frame deadline).
async fn stall_three_times(source: [u8; 4], server: std::net::SocketAddr) {
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;
    const MIB: usize = 1024 * 1024;
    for _round in 0..3 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((source, 0).into()).unwrap();
        let mut stream = socket.connect(server).await.unwrap();
        let prefix = u32::try_from(16 * MIB).unwrap().to_le_bytes();
        let body = vec![0u8; 15 * MIB];
        // Fails once the deadline closes the connection; then read to its end.
        let _ = stream.write_all(&prefix).await;
        let _ = stream.write_all(&body).await;
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    }
}

/// Three times over, one connection from each of 24 addresses announces a 16 MiB frame,
/// sends 15 MiB of it and stalls until the frame deadline closes it: the server's size stays
/// within its budget (and the documented 16 MiB over it), and a caller from another address
/// is answered all along.
#[test]
fn stalled_frames_from_many_sources_hold_the_process_within_its_budget() {
    const MIB: u64 = 1024 * 1024;
    const BUDGET_MIB: u64 = 64;
    let path = manifest("stalled-sources", MISBEHAVE);
    let args = [
        "--listen",
        "tcp://127.0.0.1:0",
        "--budget-mib",
        "64",
        "--frame-deadline",
        "2s",
    ];
    let server = Server::start_with(&path, &args);
    let pid = server.child.id();
    let (idle, _) = resident(pid);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let address = server.address.clone();
    let answered = tokio.block_on(async move {
        let host_port: std::net::SocketAddr = address.trim_start_matches("tcp://").parse().unwrap();
        let mut attackers = tokio::task::JoinSet::new();
        for host in 2..26u8 {
            attackers.spawn(stall_three_times([127, 0, 0, host], host_port));
        }
        // A caller from 127.0.0.1 all along: every call answered within 5 s.
        let client = common::client_of(&address).await;
        let mut answered = 0;
        while !attackers.is_empty() {
            let args = [Val::U32(answered)];
            let call = misbehave(&client, "echo", &args);
            let reply = tokio::time::timeout(Duration::from_secs(5), call).await;
            let reply = reply.unwrap_or_else(|_| panic!("call {answered} unanswered in 5 s"));
            assert_eq!(reply.unwrap(), vec![Val::U32(answered)]);
            answered += 1;
            while attackers.try_join_next().is_some() {}
        }
        answered
    });
    let (_, highest) = resident(pid);
    let grown = highest.saturating_sub(idle);
    assert!(
        grown <= (BUDGET_MIB + 16) * MIB,
        "the server grew by {} MiB with a {BUDGET_MIB} MiB budget",
        grown / MIB
    );
    eprintln!("grew by {} MiB, {answered} calls answered", grown / MIB);
    assert!(answered > 0);
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
}
