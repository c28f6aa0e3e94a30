//! The bounds a server's transports and serving loop hold a peer to, at the boundary: the byte
//! budget is never exceeded and stops reading when spent, a frame must arrive within its
//! deadline, a silent connection is closed after the idle timeout (tokio's paused clock; no
//! sleeping).

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use exorun_transport::budget;
use exorun_transport::budget::Budget;
use exorun_transport::connection;
use exorun_transport::memory;
use exorun_transport::stream;
use exorun_transport::transport;
use exorun_transport::transport::Transport;
use neorpc::frame;
use tokio::io::AsyncWriteExt;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// A budgeted server-side stream transport over an in-memory pipe, and the raw peer end.
fn budgeted(
    budget: &Budget,
    deadline: Option<Duration>,
) -> (stream::Transport, tokio::io::DuplexStream) {
    let (near, far) = tokio::io::duplex(1 << 20);
    let (reader, writer) = tokio::io::split(near);
    let config = stream::Config {
        message_bytes_max: 16 * 1024 * 1024,
        frame_deadline: deadline,
        budget: Some(budget.clone()),
    };
    (
        stream::Transport::new(Box::new(reader), Box::new(writer), config),
        far,
    )
}

fn prefixed(body: &[u8]) -> Vec<u8> {
    let mut bytes = u32::try_from(body.len()).unwrap().to_le_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

#[tokio::test(start_paused = true)]
async fn messages_are_charged_while_they_live_and_the_budget_never_passes_its_bound() {
    let budget = Budget::new(256 * KIB);
    let (transport, mut peer) = budgeted(&budget, None);
    let small = vec![1u8; 100];
    let large = vec![2u8; 100 * 1024];
    peer.write_all(&prefixed(&small)).await.unwrap();
    peer.write_all(&prefixed(&large)).await.unwrap();
    let first = transport.recv().await.unwrap().unwrap();
    assert_eq!(&first[..], &small[..]);
    let second = transport.recv().await.unwrap().unwrap();
    assert_eq!(&second[..], &large[..]);
    // The read buffer (16 KiB) and both messages are paid for while they live.
    assert_eq!(budget.held(), 16 * KIB + 100 + 100 * KIB);
    let slice = second.slice(10..20);
    drop(second);
    assert_eq!(
        budget.held(),
        16 * KIB + 100 + 100 * KIB,
        "a slice keeps its message paid for"
    );
    drop((first, slice));
    assert_eq!(budget.held(), 16 * KIB);
    drop(transport);
    assert_eq!(budget.held(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_stops_reading_instead_of_allocating() {
    let budget = Budget::new(128 * KIB);
    // Other connections hold 100 KiB of it.
    let others = budget.charge(100 * KIB).await.unwrap();
    let (transport, mut peer) = budgeted(&budget, None);
    let transport = Arc::new(transport);
    let message = vec![3u8; 60 * 1024];
    peer.write_all(&prefixed(&message)).await.unwrap();
    let reading = {
        let transport = Arc::clone(&transport);
        tokio::spawn(async move { transport.recv().await })
    };
    // The reader gets its read buffer (16 KiB), then waits for the 60 KiB the message needs.
    let waiting = budget.until(|held| held >= 116 * KIB);
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the reader charged its buffer and set bytes aside");
    for _ in 0..100 {
        tokio::task::yield_now().await;
        assert!(budget.held() <= 128 * KIB);
    }
    assert!(
        !reading.is_finished(),
        "the reader waits instead of allocating"
    );
    // (A waiting charge already sets aside what is free, so the whole budget may show held.)
    assert!(budget.held() <= 128 * KIB);
    drop(others);
    let received = reading.await.unwrap().unwrap().unwrap();
    assert_eq!(&received[..], &message[..]);
    assert_eq!(budget.held(), 16 * KIB + 60 * KIB);
    drop(received);
    drop(transport);
    assert_eq!(budget.held(), 0, "everything held was given back");
}

#[tokio::test(start_paused = true)]
async fn a_small_charge_finds_the_reserve_when_large_ones_spent_the_rest() {
    // 64 MiB: 56 MiB open to any charge, an eighth (8 MiB) kept for small ones.
    let budget = Budget::new(64 * MIB);
    let attacker = budget.share(64 * MIB);
    let large = attacker.try_charge(56 * MIB).unwrap();
    assert!(
        attacker.try_charge(2 * MIB).is_none(),
        "a large charge never takes from the reserve"
    );
    let small = attacker
        .try_charge(budget::RESERVE_PER_SHARE_BYTES)
        .unwrap();
    assert!(
        attacker.try_charge(1).is_none(),
        "one share holds at most its part of the reserve"
    );
    let caller = budget.share(8 * MIB);
    let read_buffer = caller.try_charge(16 * KIB).unwrap();
    let call = caller
        .try_charge(budget::SMALL_CHARGE_BYTES_MAX - 16 * KIB)
        .unwrap();
    assert_eq!(budget.held(), 56 * MIB + 2 * MIB);
    assert_eq!(caller.held(), MIB);
    drop(small);
    let again = attacker.try_charge(KIB).unwrap();
    drop((large, again, read_buffer, call));
    assert_eq!(budget.held(), 0, "everything given back");
    assert_eq!((attacker.held(), caller.held()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_large_charge_waiting_for_the_open_bytes_holds_no_small_one_back() {
    let budget = Budget::new(64 * MIB);
    let first = budget.share(48 * MIB).try_charge(40 * MIB).unwrap();
    // Another source's 20 MiB frame waits at the head, setting aside the 16 MiB open.
    let second = budget.share(48 * MIB);
    let waiting = tokio::spawn({
        let second = second.clone();
        async move { second.charge(20 * MIB).await }
    });
    // (Its share charged, it went on to the whole budget's open bytes in the same poll.)
    let set_aside = second.until(|held| held >= 20 * MIB);
    tokio::time::timeout(Duration::from_secs(10), set_aside)
        .await
        .expect("the large charge set the open bytes aside");
    // A third source's read buffer and small call are charged at once, from the reserve.
    let caller = budget.share(48 * MIB);
    let small = tokio::time::timeout(Duration::from_secs(10), caller.charge(64 * KIB))
        .await
        .expect("a small charge does not queue behind a large one")
        .unwrap();
    assert!(!waiting.is_finished());
    drop(first);
    let large = waiting.await.unwrap().unwrap();
    drop((large, small));
    assert_eq!(budget.held(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_message_larger_than_the_whole_budget_is_refused() {
    let budget = Budget::new(64 * KIB);
    let (transport, mut peer) = budgeted(&budget, None);
    peer.write_all(&prefixed(&vec![4u8; 100 * 1024]))
        .await
        .unwrap();
    let refused = transport.recv().await;
    assert_eq!(
        refused,
        Err(transport::Error::Budget(budget::Error::LargerThanBudget {
            bytes: 100 * KIB,
            budget_bytes: 64 * KIB
        }))
    );
}

#[tokio::test(start_paused = true)]
async fn a_frame_that_stalls_past_its_deadline_closes_the_connection() {
    let budget = Budget::new(256 * KIB);
    let deadline = Duration::from_secs(10);
    let (transport, mut peer) = budgeted(&budget, Some(deadline));
    // A whole message first: no deadline runs between frames.
    peer.write_all(&prefixed(b"whole")).await.unwrap();
    assert_eq!(&transport.recv().await.unwrap().unwrap()[..], b"whole");
    let started = tokio::time::Instant::now();
    peer.write_all(&(1000u32).to_le_bytes()).await.unwrap();
    peer.write_all(&[5u8; 10]).await.unwrap();
    let stalled = transport.recv().await;
    assert_eq!(
        stalled,
        Err(transport::Error::FrameDeadline {
            deadline_ms: 10_000
        })
    );
    assert_eq!(
        started.elapsed(),
        deadline,
        "measured from the frame's first byte"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_silent_with_no_call_in_flight_is_closed_after_the_idle_timeout() {
    let (near, far) = memory::pair(16);
    let config = connection::Config {
        idle_timeout: Some(Duration::from_secs(60)),
        first_call_timeout: None,
        ..connection::Config::default()
    };
    let started = tokio::time::Instant::now();
    let server = tokio::spawn(connection::serve(
        Arc::new(far),
        Arc::new(common::Echo::default()),
        config,
    ));
    // A call resets nothing by itself, but the connection lives while it talks.
    // The clock is paused: this moves it 59 s on at once; nothing is waited for.
    tokio::time::sleep(Duration::from_secs(59)).await;
    let call = frame::encode_call("t", "m", &[0x0E], &[]).unwrap();
    near.send(Bytes::from(call.into_bytes())).await.unwrap();
    assert!(near.recv().await.unwrap().is_some());
    let ended = server.await.unwrap();
    assert_eq!(ended, Err(connection::Error::Idle { idle_ms: 60_000 }));
    assert_eq!(started.elapsed(), Duration::from_secs(59 + 60));
    assert_eq!(near.recv().await, Ok(None), "the server closed its side");
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_makes_no_call_is_closed_at_the_first_call_timeout_pings_or_not() {
    let (near, far) = memory::pair(16);
    let config = connection::Config {
        first_call_timeout: Some(Duration::from_secs(10)),
        ..connection::Config::default()
    };
    let started = tokio::time::Instant::now();
    let server = tokio::spawn(connection::serve(
        Arc::new(far),
        Arc::new(common::Echo::default()),
        config,
    ));
    // Pings at 4 s and 8 s (the paused clock moves at once): traffic, but no call.
    for seq in 1..=2 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let ping = frame::encode_ping(frame::Seq(seq)).unwrap();
        near.send(Bytes::from(ping)).await.unwrap();
        let pong = near.recv().await.unwrap().unwrap();
        assert_eq!(
            frame::decode(&pong),
            Ok(frame::Message::Pong(frame::Seq(seq)))
        );
    }
    let ended = server.await.unwrap();
    assert_eq!(ended, Err(connection::Error::NoCall { timeout_ms: 10_000 }));
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(near.recv().await, Ok(None), "the server closed its side");
}

#[tokio::test(start_paused = true)]
async fn a_first_call_lifts_the_first_call_timeout() {
    let (near, far) = memory::pair(16);
    let config = connection::Config {
        first_call_timeout: Some(Duration::from_secs(10)),
        idle_timeout: Some(Duration::from_secs(600)),
        ..connection::Config::default()
    };
    let started = tokio::time::Instant::now();
    let server = tokio::spawn(connection::serve(
        Arc::new(far),
        Arc::new(common::Echo::default()),
        config,
    ));
    let call = frame::encode_call("t", "m", &[0x0E], &[]).unwrap();
    near.send(Bytes::from(call.into_bytes())).await.unwrap();
    assert!(near.recv().await.unwrap().is_some());
    let ended = server.await.unwrap();
    assert_eq!(ended, Err(connection::Error::Idle { idle_ms: 600_000 }));
    assert_eq!(started.elapsed(), Duration::from_secs(600));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

    /// Whatever the messages and the budget, what a budgeted transport holds (its read buffer
    /// and the messages it handed out that are still alive) never passes the budget, every
    /// message arrives whole, and everything is given back.
    #[test]
    fn a_budget_is_never_exceeded_and_always_given_back(
        sizes in proptest::collection::vec(0usize..90_000, 1..12),
        extra_kib in 0u64..256,
        keep in proptest::collection::vec(proptest::prelude::any::<bool>(), 12),
    ) {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        tokio.block_on(async move {
            let largest = u64::try_from(*sizes.iter().max().unwrap()).unwrap();
            let budget_bytes = 16 * KIB + largest + extra_kib * KIB;
            let budget = Budget::new(budget_bytes);
            let (transport, mut peer) = budgeted(&budget, Some(Duration::from_secs(10)));
            let writing = tokio::spawn({
                let sizes = sizes.clone();
                async move {
                    for (index, size) in sizes.iter().enumerate() {
                        let byte = u8::try_from(index).unwrap();
                        peer.write_all(&prefixed(&vec![byte; *size])).await.unwrap();
                    }
                    peer
                }
            });
            let mut kept = Vec::new();
            for (index, size) in sizes.iter().enumerate() {
                // A kept message stays paid for; one the budget cannot also hold is dropped.
                while kept.iter().map(|m: &Bytes| u64::try_from(m.len()).unwrap()).sum::<u64>()
                    + 16 * KIB + u64::try_from(*size).unwrap() > budget_bytes
                {
                    kept.remove(0);
                }
                let message = transport.recv().await.unwrap().unwrap();
                assert!(budget.held() <= budget_bytes);
                assert_eq!(message.len(), *size);
                assert!(message.iter().all(|byte| usize::from(*byte) == index));
                if keep[index] {
                    kept.push(message);
                }
            }
            let peer = writing.await.unwrap();
            drop((kept, transport, peer));
            assert_eq!(budget.held(), 0);
        });
    }

    /// Whatever large and small charges sources make and give back, through shares of a whole
    /// budget: the budget and each share hold no more than their bytes, no share holds more
    /// than its part of the reserve, and while fewer sources than the reserve has parts hold
    /// any of it, a newcomer's small charge is always met at once.
    #[test]
    fn the_reserve_stays_open_to_a_newcomer_whatever_the_other_sources_hold(
        charges in proptest::collection::vec((0usize..7, 1u64..(20 * MIB), proptest::prelude::any::<bool>()), 1..64),
    ) {
        let budget = Budget::new(64 * MIB);
        let shares: Vec<Budget> = (0..7).map(|_| budget.share(16 * MIB)).collect();
        let mut held = Vec::new();
        for (source, bytes, keep) in charges {
            // Half the charges are small (at most the reserve's part), half anything.
            let bytes = if keep { bytes % budget::SMALL_CHARGE_BYTES_MAX + 1 } else { bytes };
            if let Some(charge) = shares[source].try_charge(bytes) {
                held.push(charge);
            }
            proptest::prop_assert!(budget.held() <= budget.budget_bytes());
            for share in &shares {
                proptest::prop_assert!(share.held() <= share.budget_bytes());
            }
            let newcomer = budget.share(16 * MIB);
            let met = newcomer.try_charge(budget::RESERVE_PER_SHARE_BYTES);
            proptest::prop_assert!(met.is_some(), "a newcomer found the reserve closed");
        }
        drop(held);
        proptest::prop_assert_eq!(budget.held(), 0);
    }
}
