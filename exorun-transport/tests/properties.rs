//! Property tests: the client's routing invariant under random reply orders and losses, and the
//! stream framing's round trip and truncation behaviour.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::call_within;
use common::reply_ok;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::memory;
use exorun_transport::stream;
use exorun_transport::transport;
use exorun_transport::transport::Transport;
use neorpc::frame;
use proptest::prelude::*;

/// Messages of every size class the reader treats apart: small ones copied out of the read
/// buffer, and large ones (past 4 KiB) assembled in their own growing buffer, past 64 KiB too.
fn message_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..300),
        1 => proptest::collection::vec(any::<u8>(), 4000..5000),
        1 => proptest::collection::vec(any::<u8>(), 60_000..140_000),
    ]
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every answered call gets exactly its own reply, every unanswered one times out, and
    /// nothing is left pending.
    #[test]
    fn replies_route_to_their_callers(
        order in Just((0..24usize).collect::<Vec<_>>()).prop_shuffle(),
        answered in proptest::collection::vec(any::<bool>(), 24),
    ) {
        paused_runtime().block_on(async move {
            let (near, far) = memory::pair(64);
            let client = Arc::new(Client::new(Arc::new(near), client::Config::default()));
            let mut tasks = Vec::new();
            for i in 0..24usize {
                let client = Arc::clone(&client);
                tasks.push(tokio::spawn(async move {
                    call_within(&client, "t", "i#f", &[u8::try_from(i).unwrap()], Duration::from_secs(1)).await
                }));
            }
            let mut calls = Vec::new();
            for _ in 0..24 {
                calls.push(far.recv().await.unwrap().unwrap());
            }
            for &index in &order {
                let frame::Message::Call(call) = frame::decode(&calls[index]).unwrap() else { panic!("call") };
                if !answered[usize::from(call.args[0])] { continue; }
                far.send(reply_ok(call.seq, call.args)).await.unwrap();
            }
            for (i, task) in tasks.into_iter().enumerate() {
                let outcome = task.await.unwrap();
                if answered[i] {
                    assert_eq!(&outcome.unwrap().unwrap()[..], &[u8::try_from(i).unwrap()]);
                } else {
                    assert_eq!(outcome, Err(client::Error::Timeout { timeout_ms: 1000 }));
                }
            }
            assert_eq!(client.pending_len(), 0);
            assert_eq!(client.unroutable_replies(), 0);
        });
    }

    /// Messages of any size up to the limit cross a byte stream intact and in order; a stream
    /// cut anywhere inside a message yields `Truncated`, never a hang or a panic.
    #[test]
    fn stream_framing_round_trips_and_truncates_cleanly(
        messages in proptest::collection::vec(message_strategy(), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        paused_runtime().block_on(async move {
            let (a, b) = tokio::io::duplex(1 << 16);
            let (a_read, a_write) = tokio::io::split(a);
            let (b_read, b_write) = tokio::io::split(b);
            let sender = stream::Transport::new(Box::new(a_read), Box::new(a_write), stream::Config::new(200_000));
            let receiver = stream::Transport::new(Box::new(b_read), Box::new(b_write), stream::Config::new(200_000));
            for message in &messages {
                sender.send(Bytes::copy_from_slice(message)).await.unwrap();
            }
            sender.close().await;
            for message in &messages {
                assert_eq!(&receiver.recv().await.unwrap().unwrap()[..], &message[..]);
            }
            assert_eq!(receiver.recv().await, Ok(None));

            // The same bytes, cut short at a random point inside the stream.
            let mut wire = Vec::new();
            for message in &messages {
                wire.extend_from_slice(&u32::try_from(message.len()).unwrap().to_le_bytes());
                wire.extend_from_slice(message);
            }
            let end = cut.index(wire.len());
            let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> = Box::new(std::io::Cursor::new(wire[..end].to_vec()));
            let cut_stream = stream::Transport::new(reader, Box::new(tokio::io::sink()), stream::Config::new(200_000));
            loop {
                match cut_stream.recv().await {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(transport::Error::Truncated { .. }) => break,
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
        });
    }
}
