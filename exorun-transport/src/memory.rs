//! An in-memory duplex transport pair over bounded tokio channels, with fault injection.
//!
//! Tests use `Faults` to make one direction drop, delay or reorder messages, and `close` to make
//! a side go away. A full channel makes `send` wait (backpressure), never grow without bound.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::transport;
use exorun_common::BoxFuture;

/// Messages a direction buffers before `send` waits, by default.
pub const CAPACITY_DEFAULT: usize = 1024;

/// Misbehaviour injected into one direction of a pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Silently drop every n-th message (n >= 1), counting from 1.
    pub drop_every: Option<u64>,
    /// Wait this long before delivering each message.
    pub delay: Option<Duration>,
    /// Swap each pair of consecutive messages (hold one, deliver it after the next).
    pub reorder: bool,
}

/// One end of an in-memory pair.
#[derive(Debug)]
pub struct Transport {
    outbox: transport::Outbox,
    inbox: tokio::sync::Mutex<mpsc::Receiver<Bytes>>,
    faults: Faults,
    sent: AtomicU64,
    held: Mutex<Option<Bytes>>,
}

/// A connected pair with no faults.
pub fn pair(capacity: usize) -> (Transport, Transport) {
    pair_with_faults(capacity, Faults::default(), Faults::default())
}

/// A connected pair; `a_to_b` applies to what the first end sends, `b_to_a` to the second's.
pub fn pair_with_faults(capacity: usize, a_to_b: Faults, b_to_a: Faults) -> (Transport, Transport) {
    let (tx_ab, rx_ab) = mpsc::channel(capacity);
    let (tx_ba, rx_ba) = mpsc::channel(capacity);
    (end(tx_ab, rx_ba, a_to_b), end(tx_ba, rx_ab, b_to_a))
}

fn end(outbox: mpsc::Sender<Bytes>, inbox: mpsc::Receiver<Bytes>, faults: Faults) -> Transport {
    Transport {
        outbox: transport::Outbox::new(outbox),
        inbox: tokio::sync::Mutex::new(inbox),
        faults,
        sent: AtomicU64::new(0),
        held: Mutex::new(None),
    }
}

impl Transport {
    /// Applies the reorder fault: returns the messages to deliver now, in order.
    fn reorder(&self, message: Bytes) -> Vec<Bytes> {
        if !self.faults.reorder {
            return vec![message];
        }
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match held.take() {
            Some(earlier) => vec![message, earlier],
            None => {
                *held = Some(message);
                Vec::new()
            }
        }
    }

    async fn deliver(&self, message: Bytes) -> Result<(), transport::Error> {
        let sender = self.outbox.sender()?;
        let number = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let dropped = self
            .faults
            .drop_every
            .is_some_and(|n| n > 0 && number.is_multiple_of(n));
        if dropped {
            return Ok(());
        }
        if let Some(delay) = self.faults.delay {
            tokio::time::sleep(delay).await;
        }
        for ready in self.reorder(message) {
            sender
                .send(ready)
                .await
                .map_err(|_| transport::Error::Closed)?;
        }
        Ok(())
    }
}

impl transport::Transport for Transport {
    fn send(&self, message: Bytes) -> BoxFuture<'_, Result<(), transport::Error>> {
        Box::pin(self.deliver(message))
    }

    fn recv(&self) -> BoxFuture<'_, Result<Option<Bytes>, transport::Error>> {
        Box::pin(async move { Ok(self.inbox.lock().await.recv().await) })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.outbox.close() })
    }
}
