//! A served runtime keeps its exports up: across two processes, an instance whose call trapped
//! is replaced, and the next remote call succeeds.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use exorun_bind::link::remote;
use std::time::Duration;
use std::time::Instant;

use common::Server;
use common::manifest;
use common::text;
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

/// A peer that pipelines calls and never reads a reply, until the server stops taking its
/// calls (a chunk of calls that makes no progress for 5 s): the server's writes to it block.
/// (5 s, not less: a server merely starved of CPU by the tests running beside it must not
/// pass for a blocked one, or its stop finds nothing in flight.)
async fn stuck_peer(address: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let host_port = address.trim_start_matches("tcp://").parse().unwrap();
    let mut flood = socket.connect(host_port).await.unwrap();
    let slab = neorpc::codec::encode(&[Val::U32(1)]).unwrap();
    let mut chunk = Vec::new();
    for seq in 0..1000u64 {
        let mut call =
            neorpc::frame::encode_call("math", "exorun:test/misbehave#echo", &slab, &[]).unwrap();
        call.set_seq(neorpc::frame::Seq(seq));
        let bytes = call.into_bytes();
        chunk.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_le_bytes());
        chunk.extend_from_slice(&bytes);
    }
    for _ in 0..1000 {
        let wrote = tokio::time::timeout(Duration::from_secs(5), flood.write_all(&chunk)).await;
        if wrote.is_err() {
            return flood;
        }
    }
    panic!("the server kept reading calls it could not answer");
}

fn serve_misbehave(name: &str, drain: &str) -> Server {
    let path = manifest(name, MISBEHAVE);
    Server::start_with(
        &path,
        &["--listen", "tcp://127.0.0.1:0", "--drain-timeout", drain],
    )
}

#[test]
fn a_stop_with_a_peer_that_never_reads_ends_at_the_drain_timeout() {
    let server = serve_misbehave("drain", "500ms");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let flood = tokio.block_on(stuck_peer(&server.address));
    server.signal("-TERM");
    let (output, took) = server.exit_within(Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr
            .ends_with("exorun: drain timeout: closed 1 connections with calls still in flight\n"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(flood);
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut server = serve_misbehave("twice", "60s");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let flood = tokio.block_on(stuck_peer(&server.address));
    server.signal("-TERM");
    let stderr_says_stopping = server.wait_for_stderr("exorun: stopping");
    assert!(stderr_says_stopping, "the first signal started the stop");
    server.signal("-INT");
    let (output, took) = server.exit_within(Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(130), "{}", text(&output.stderr));
    assert!(
        took < Duration::from_secs(5),
        "not the 60 s drain: {took:?}"
    );
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
