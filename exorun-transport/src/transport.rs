//! The `Transport` trait: an object-safe, async, whole-message pipe.
//!
//! A transport moves messages, not bytes: `send` takes one complete message and `recv` returns
//! one complete message, or `None` once the peer has closed. `send` takes the message as an
//! owned `Bytes`, so a frame encoded into a `Vec` reaches the transport's queue without being
//! copied again. Splitting a byte stream into messages (and refusing oversized ones before
//! allocating) is the stream transports' job.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::PoisonError;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Largest message a transport accepts by default: one neorpc frame at its largest.
pub const MESSAGE_BYTES_MAX: u64 = neorpc::frame::FRAME_BYTES_MAX;

/// A boxed, sendable future, as object-safe async trait methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What can go wrong while moving messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The transport was closed (by either side) and cannot send.
    #[error("transport closed")]
    Closed,
    /// A message over the size limit, refused before its body was read or allocated.
    #[error("message of {message_bytes} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// The message's size, in bytes.
        message_bytes: u64,
        /// The limit, in bytes.
        max: u64,
    },
    /// The stream ended in the middle of a message.
    #[error("stream ended after {got} of {expected} bytes of a message")]
    Truncated {
        /// What was expected.
        expected: u64,
        /// How many bytes arrived before the stream ended.
        got: u64,
    },
    /// An operating-system I/O error (or a NATS client's failure to move messages), with what
    /// was being done when it happened.
    #[error("i/o error ({kind:?}): {source}")]
    Io {
        /// The kind of error, as `std::io` classifies it.
        kind: std::io::ErrorKind,

        /// The error itself, with its context.
        #[source]
        source: exorun_common::Cause,
    },
    /// An address that is not `tcp://HOST:PORT` or `unix://PATH`.
    #[error("bad address `{address}`: {reason}")]
    BadAddress {
        /// The address as written.
        address: String,

        /// Why, in words.
        reason: &'static str,
    },
    /// A frame did not arrive whole within its deadline (counted from its first byte).
    #[error("a frame did not arrive whole within {deadline_ms} ms")]
    FrameDeadline {
        /// The deadline, in milliseconds.
        deadline_ms: u64,
    },
    /// A message could never be held within the byte budget.
    #[error("budget: {0}")]
    Budget(#[from] crate::budget::Error),
    /// A secure peer presented another key than the one pinned for it (a wrong address, a
    /// relay in the middle, or a peer that changed its key).
    #[error("{address} presented the key {presented}, not the pinned {pinned}")]
    WrongKey {
        /// The address connected to.
        address: String,
        /// The key pinned for it.
        pinned: String,
        /// The key it presented.
        presented: String,
    },
    /// A TLS or QUIC handshake failed for another reason (the peer refused our key, spoke
    /// another protocol, took too long).
    #[error("handshake with {address} failed: {reason}")]
    Handshake {
        /// The address concerned.
        address: String,
        /// Why, in words.
        reason: String,
    },
    /// An address used without the keys it needs, or with keys it cannot check.
    #[error("`{address}`: {reason}")]
    Identity {
        /// The address as written.
        address: String,
        /// Why, in words.
        reason: &'static str,
    },
    /// An address whose transport this build leaves out (a cargo feature of exorun-transport).
    #[error(
        "`{address}` needs exorun-transport's `{feature}` feature, which this build leaves out"
    )]
    NotBuilt {
        /// The address as written.
        address: String,

        /// The cargo feature that provides it.
        feature: &'static str,
    },
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Io {
            kind: error.kind(),
            source: exorun_common::Cause::new(error),
        }
    }
}

/// A bidirectional pipe of whole messages, shared by every task that talks to one peer.
pub trait Transport: Send + Sync {
    /// Sends one whole message. Concurrent sends never interleave their bytes.
    fn send(&self, message: Bytes) -> BoxFuture<'_, Result<(), Error>>;

    /// Receives the next whole message, or `None` once the peer has closed. Cancel-safe: a
    /// `recv` dropped before it returns loses nothing (the next one gets the message), so
    /// callers may race it against timeouts.
    fn recv(&self) -> BoxFuture<'_, Result<Option<Bytes>, Error>>;

    /// Closes the sending side; the peer's `recv` then returns `None`. Idempotent.
    fn close(&self) -> BoxFuture<'_, ()>;

    /// Once closed, waits until what was sent has left (written out, or the stream is gone):
    /// a stopping server counts a connection drained only then, so replies its peer never
    /// reads are cut at the drain deadline rather than left to a writer nobody counts. A
    /// transport with nothing queued between `send` and the wire returns at once.
    fn flushed(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// The sending half of a transport's message queue, closable through `&self`: every send
/// clones the sender out, and `close` drops the stored one so the queue ends once in-flight
/// sends finish.
#[derive(Debug)]
pub(crate) struct Outbox<T = Bytes>(Mutex<Option<mpsc::Sender<T>>>);

impl<T> Outbox<T> {
    pub(crate) fn new(sender: mpsc::Sender<T>) -> Self {
        Self(Mutex::new(Some(sender)))
    }

    /// A sender for one message, or `Closed` after `close`.
    pub(crate) fn sender(&self) -> Result<mpsc::Sender<T>, Error> {
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.clone().ok_or(Error::Closed)
    }

    /// Drops the stored sender. Idempotent.
    pub(crate) fn close(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}
