//! Boundary tests of the client and the transports: correlation under shuffled replies,
//! timeouts, closes, hostile input, backpressure and addresses (the serving loop: serve.rs).

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::call;
use common::call_within;
use common::reply_ok;
use exorun_transport::address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::client::WhenFull;
use exorun_transport::memory;
use exorun_transport::net;
use exorun_transport::transport;
use exorun_transport::transport::Transport;
use neorpc::frame;

/// A deterministic shuffle (xorshift), so failures reproduce.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = usize::try_from(seed % (u64::try_from(i).unwrap() + 1)).unwrap();
        items.swap(i, j);
    }
}

/// Collects `count` calls, then answers them in a shuffled order, echoing each call's args.
async fn shuffling_echo_server(transport: Arc<dyn Transport>, count: usize, seed: u64) {
    let mut calls = Vec::new();
    while calls.len() < count {
        let Some(message) = transport.recv().await.unwrap() else {
            return;
        };
        calls.push(message);
    }
    shuffle(&mut calls, seed);
    for message in calls {
        let frame::Message::Call(call) = frame::decode(&message).unwrap() else {
            panic!("not a call")
        };
        let mut echo = call.target.as_bytes().to_vec();
        echo.extend_from_slice(call.args);
        transport.send(reply_ok(call.seq, &echo)).await.unwrap();
    }
}

/// Runs `count` concurrent calls; each must get back exactly its own target and args.
async fn assert_correlation(client: Arc<Client>, count: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let client = Arc::clone(&client);
        tasks.spawn(async move {
            let args = format!("args-{i}");
            let results = call(&client, &format!("t{i}"), "i#f", args.as_bytes())
                .await
                .unwrap();
            assert_eq!(
                &results.unwrap()[..],
                format!("t{i}args-{i}").as_bytes(),
                "call {i} got another's reply"
            );
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    assert_eq!(client.pending_len(), 0);
    assert_eq!(client.unroutable_replies(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_shuffled_replies_reach_their_callers_in_memory() {
    let (near, far) = memory::pair(memory::CAPACITY_DEFAULT);
    let server = tokio::spawn(shuffling_echo_server(Arc::new(far), 1000, 7));
    assert_correlation(
        Arc::new(Client::new(Arc::new(near), client::Config::default())),
        1000,
    )
    .await;
    server.await.unwrap();
}

async fn correlation_over(address: &str) {
    let listener = net::Listener::bind(&address::Address::parse(address).unwrap())
        .await
        .unwrap();
    let address = listener.local_address().unwrap();
    let server = tokio::spawn(async move {
        let transport = listener.accept(transport::MESSAGE_BYTES_MAX).await.unwrap();
        shuffling_echo_server(transport, 1000, 11).await;
    });
    let transport = net::connect(&address, transport::MESSAGE_BYTES_MAX)
        .await
        .unwrap();
    assert_correlation(
        Arc::new(Client::new(transport, client::Config::default())),
        1000,
    )
    .await;
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_shuffled_replies_over_tcp() {
    correlation_over("tcp://127.0.0.1:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_shuffled_replies_over_unix_socket() {
    let dir = std::env::temp_dir().join(format!("exorun-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    correlation_over(&format!("unix://{}", dir.join("corr.sock").display())).await;
}

#[tokio::test(start_paused = true)]
async fn timeout_removes_the_entry_and_drops_the_late_reply() {
    let (near, far) = memory::pair(16);
    let client = Client::new(Arc::new(near), client::Config::default());
    let slow = call_within(&client, "t", "i#f", b"a", Duration::from_millis(50)).await;
    assert_eq!(slow, Err(client::Error::Timeout { timeout_ms: 50 }));
    assert_eq!(client.pending_len(), 0);
    // The server answers the timed-out call late, then serves a fresh one in order.
    let late = far.recv().await.unwrap().unwrap();
    let frame::Message::Call(late_call) = frame::decode(&late).unwrap() else {
        panic!("not a call")
    };
    far.send(reply_ok(late_call.seq, b"late")).await.unwrap();
    let server = tokio::spawn(async move { shuffling_echo_server(Arc::new(far), 1, 1).await });
    assert_eq!(
        &call(&client, "t", "i#f", b"b").await.unwrap().unwrap()[..],
        b"tb"
    );
    server.await.unwrap();
    assert_eq!(
        client.unroutable_replies(),
        1,
        "the late reply was counted and dropped"
    );
    assert_eq!(client.pending_len(), 0);
}

#[tokio::test]
async fn dropped_server_fails_pending_calls_at_once_and_later_calls_immediately() {
    let (near, far) = memory::pair(64);
    let client = Arc::new(Client::new(Arc::new(near), client::Config::default()));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let client = Arc::clone(&client);
        calls.spawn(async move { call(&client, "t", "i#f", b"x").await });
    }
    for _ in 0..10 {
        far.recv().await.unwrap().unwrap();
    }
    drop(far);
    while let Some(outcome) = calls.join_next().await {
        assert_eq!(outcome.unwrap(), Err(client::Error::PeerClosed));
    }
    assert_eq!(client.pending_len(), 0);
    assert!(client.is_closed());
    // A later call is never sent: it comes back unread, its frame whole, for a peer to resend.
    let later = call(&client, "t", "i#f", b"y").await;
    let Err(client::Error::Unread(frame)) = later else {
        panic!("{later:?}")
    };
    let neorpc::frame::Message::Call(unsent) = neorpc::frame::decode(&frame).unwrap() else {
        panic!("not a call")
    };
    assert_eq!(unsent.args, b"y");
}

#[tokio::test]
async fn garbage_and_unknown_replies_are_counted_not_delivered() {
    let (near, far) = memory::pair(16);
    let client = Client::new(Arc::new(near), client::Config::default());
    far.send(Bytes::from_static(&[0xDE, 0xAD])).await.unwrap();
    far.send(reply_ok(frame::Seq(999), b"stray")).await.unwrap();
    let server = tokio::spawn(async move { shuffling_echo_server(Arc::new(far), 1, 3).await });
    assert_eq!(
        &call(&client, "t", "i#f", b"ok").await.unwrap().unwrap()[..],
        b"tok"
    );
    server.await.unwrap();
    assert_eq!(client.unroutable_replies(), 2);
}

#[tokio::test]
async fn oversized_length_prefix_is_refused_before_allocating() {
    use tokio::io::AsyncWriteExt;
    let listener = net::Listener::bind(&address::Address::parse("tcp://127.0.0.1:0").unwrap())
        .await
        .unwrap();
    let address::Address::Tcp(host_port) = listener.local_address().unwrap() else {
        panic!("tcp")
    };
    let mut raw = tokio::net::TcpStream::connect(host_port).await.unwrap();
    let transport = listener.accept(1024).await.unwrap();
    raw.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
    let error = transport.recv().await.unwrap_err();
    assert_eq!(
        error,
        transport::Error::MessageTooLarge {
            message_bytes: u64::from(u32::MAX),
            max: 1024
        }
    );
    // A message cut short by the peer closing is truncated, not a hang.
    let transport = {
        let mut raw = tokio::net::TcpStream::connect(
            listener
                .local_address()
                .unwrap()
                .to_string()
                .trim_start_matches("tcp://"),
        )
        .await
        .unwrap();
        let transport = listener.accept(1024).await.unwrap();
        raw.write_all(&[10, 0, 0, 0, 1, 2, 3]).await.unwrap();
        drop(raw);
        transport
    };
    assert_eq!(
        transport.recv().await,
        Err(transport::Error::Truncated {
            expected: 10,
            got: 3
        })
    );
    assert_eq!(
        transport.send(Bytes::from(vec![0u8; 2048])).await,
        Err(transport::Error::MessageTooLarge {
            message_bytes: 2048,
            max: 1024
        })
    );
}

/// A client at its in-flight limit of 4: the four calls holding the slots (answered by no one),
/// and the far end, which has received all four.
async fn full_client(
    when_full: WhenFull,
) -> (
    Arc<Client>,
    tokio::task::JoinSet<Result<client::Reply, client::Error>>,
    memory::Transport,
) {
    let config = client::Config {
        calls_in_flight_max: 4,
        when_full,
        ..client::Config::default()
    };
    let (near, far) = memory::pair(16);
    let client = Arc::new(Client::new(Arc::new(near), config));
    let mut held = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let client = Arc::clone(&client);
        held.spawn(async move { call(&client, "t", "i#f", b"held").await });
    }
    for _ in 0..4 {
        far.recv().await.unwrap().unwrap();
    }
    (client, held, far)
}

#[tokio::test(start_paused = true)]
async fn backpressure_waits_or_fails_as_configured() {
    let (client, _held, _far) = full_client(WhenFull::Fail).await;
    assert_eq!(
        call(&client, "t", "i#f", b"fifth").await,
        Err(client::Error::Overloaded {
            calls_in_flight_max: 4
        })
    );

    let (client, mut held, far) = full_client(WhenFull::Wait).await;
    let waited = call_within(&client, "t", "i#f", b"fifth", Duration::from_millis(20)).await;
    assert_eq!(waited, Err(client::Error::Timeout { timeout_ms: 20 }));
    // Dropping one held call's future frees its slot: the next call goes out.
    held.abort_all();
    while held.join_next().await.is_some() {}
    assert_eq!(client.pending_len(), 0, "dropped calls leave no entries");
    let sixth = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { call(&client, "t", "i#f", b"sixth").await })
    };
    let sent = far.recv().await.unwrap().unwrap();
    let frame::Message::Call(sent) = frame::decode(&sent).unwrap() else {
        panic!("not a call")
    };
    assert_eq!(sent.args, b"sixth");
    far.send(reply_ok(sent.seq, b"done")).await.unwrap();
    assert_eq!(&sixth.await.unwrap().unwrap().unwrap()[..], b"done");
    assert_eq!(client.pending_len(), 0);
}

#[tokio::test]
async fn a_malformed_reply_with_a_readable_seq_fails_its_call_at_once() {
    let (near, far) = memory::pair(16);
    let client = Arc::new(Client::new(Arc::new(near), client::Config::default()));
    let waiting = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { call(&client, "t", "i#f", b"x").await })
    };
    let sent = far.recv().await.unwrap().unwrap();
    let seq = frame::decode_seq(&sent).unwrap();
    // A reply with its seq but neither `ok` nor `fail`: the caller learns why, not by timeout.
    let mut encoder = frame::Encoder::new();
    encoder.variant_begin("Reply").unwrap();
    encoder.map_begin().unwrap();
    encoder.variant_begin("seq").unwrap();
    encoder.u64(seq.0).unwrap();
    encoder.variant_end().unwrap();
    encoder.map_end().unwrap();
    encoder.variant_end().unwrap();
    far.send(Bytes::from(encoder.into_bytes().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        waiting.await.unwrap(),
        Err(client::Error::Frame(frame::Error::MissingField {
            field: "ok|fail"
        }))
    );
    assert_eq!(client.pending_len(), 0);
    assert_eq!(client.unroutable_replies(), 0);
}

#[tokio::test(start_paused = true)]
async fn memory_faults_drop_delay_and_reorder() {
    let faults = memory::Faults {
        drop_every: Some(3),
        delay: Some(Duration::from_millis(5)),
        reorder: true,
    };
    let (near, far) = memory::pair_with_faults(16, faults, memory::Faults::default());
    for byte in 1..=7u8 {
        near.send(Bytes::from(vec![byte])).await.unwrap();
    }
    near.close().await;
    let mut got = Vec::new();
    while let Some(message) = far.recv().await.unwrap() {
        got.push(message[0]);
    }
    // 3 and 6 dropped; the rest swapped in pairs: (1,2) -> 2,1; (4,5) -> 5,4; 7 held back.
    assert_eq!(got, [2, 1, 5, 4]);
    assert_eq!(
        near.send(Bytes::from_static(&[9])).await,
        Err(transport::Error::Closed)
    );
}

#[test]
fn addresses_parse_or_say_why_not() {
    assert_eq!(
        address::Address::parse("tcp://127.0.0.1:80"),
        Ok(address::Address::Tcp("127.0.0.1:80".into()))
    );
    assert_eq!(
        address::Address::parse("unix:///tmp/x.sock"),
        Ok(address::Address::Unix("/tmp/x.sock".into()))
    );
    let bad = address::Address::parse("tcp://nope").unwrap_err();
    assert_eq!(
        bad,
        transport::Error::BadAddress {
            address: "tcp://nope".into(),
            reason: "a network address needs HOST:PORT"
        }
    );
    assert_eq!(
        address::Address::parse("tls://node.example:47411"),
        Ok(address::Address::Tls("node.example:47411".into()))
    );
    assert_eq!(
        address::Address::parse("quic://[::1]:47411"),
        Ok(address::Address::Quic("[::1]:47411".into()))
    );
    let nats = address::Address::parse("nats://user:secret@nats.example:4222").unwrap();
    assert_eq!(
        nats,
        address::Address::Nats("nats://user:secret@nats.example:4222".into())
    );
    assert_eq!(
        nats.to_string(),
        "nats://nats.example:4222",
        "credentials never show"
    );
    for text in ["tls://node.example", "quic://:1", "nats://user@:1"] {
        assert!(matches!(
            address::Address::parse(text),
            Err(transport::Error::BadAddress { .. })
        ));
    }
    assert!(matches!(
        address::Address::parse("http://x:1"),
        Err(transport::Error::BadAddress { .. })
    ));
    assert!(matches!(
        address::Address::parse("tcp://h:99999"),
        Err(transport::Error::BadAddress { .. })
    ));
}

#[test]
fn credentials_never_show_in_debug_or_in_errors() {
    let nats = address::Address::parse("nats://user:sekritpass@nats.example:4222").unwrap();
    let debug = format!("{nats:?}");
    assert_eq!(debug, "Address(nats://nats.example:4222)");
    let token = address::Address::parse("nats://s3cr3ttoken@nats.example:4222").unwrap();
    assert!(!format!("{token:?}").contains("s3cr3t"));
    // A malformed address with credentials is refused naming the address, never the secret.
    for text in [
        "nats://user:sekritpass@nats.example",
        "nats://user:sekritpass@:4222",
        "tcp://user:sekritpass@host",
    ] {
        let refused = address::Address::parse(text).unwrap_err();
        let shown = format!("{refused} {refused:?}");
        assert!(!shown.contains("sekritpass"), "{shown}");
        assert!(
            shown.contains("***@"),
            "the address is still named: {shown}"
        );
    }
    // Everything before the last `@` goes, however the URL is mistyped (a password with a
    // `/` in it would otherwise show as a path).
    assert_eq!(address::redacted("nats://u:p@h:1/x@y"), "nats://***@y");
    assert_eq!(address::redacted("nats://u:pa/ss@h:1"), "nats://***@h:1");
    assert_eq!(address::redacted("nats:/u:pass@h"), "nats:/***@h");
    assert_eq!(address::redacted("u:pass@h:4222"), "***@h:4222");
    assert_eq!(address::redacted("unix:///tmp/a@b"), "unix:///tmp/a@b");
}

#[tokio::test]
async fn io_errors_carry_their_kind() {
    let missing = address::Address::parse("unix:///nonexistent-dir/exorun.sock").unwrap();
    let error = net::connect(&missing, 1024).await.unwrap_err();
    assert!(
        matches!(
            error,
            transport::Error::Io {
                kind: std::io::ErrorKind::NotFound,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        client::Error::from(transport::Error::Closed),
        client::Error::PeerClosed
    );
    assert!(matches!(
        client::Error::from(error),
        client::Error::Transport(_)
    ));
}

#[test]
fn dropping_a_stuck_stream_transport_outside_a_runtime_does_not_panic() {
    use exorun_transport::stream;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (near, far) = tokio::io::duplex(16);
    let transport = runtime.block_on(async move {
        let (reader, writer) = tokio::io::split(near);
        let transport = stream::Transport::new(
            Box::new(reader),
            Box::new(writer),
            stream::Config::new(4096),
        );
        // The peer never reads, so the writer blocks on a full pipe and stays unfinished.
        transport.send(Bytes::from(vec![7u8; 1024])).await.unwrap();
        tokio::task::yield_now().await;
        transport
    });
    let dropped = std::thread::spawn(move || drop(transport)).join();
    assert!(
        dropped.is_ok(),
        "dropping the transport on a thread without a runtime panicked"
    );
    drop(far);
}
