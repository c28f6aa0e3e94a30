//! The `Transport` trait: an object-safe, async, whole-message pipe.
//!
//! A transport moves messages, not bytes: `send` takes one complete message and `recv` returns
//! one complete message, or `None` once the peer has closed. Splitting a byte stream into
//! messages (and refusing oversized ones before allocating) is the stream transports' job.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

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
    MessageTooLarge { message_bytes: u64, max: u64 },
    /// The stream ended in the middle of a message.
    #[error("stream ended after {got} of {expected} bytes of a message")]
    Truncated { expected: u64, got: u64 },
    /// An operating-system I/O error.
    #[error("i/o error ({kind:?}): {message}")]
    Io {
        kind: std::io::ErrorKind,
        message: String,
    },
    /// An address that is not `tcp://HOST:PORT` or `unix://PATH`.
    #[error("bad address `{address}`: {reason}")]
    BadAddress {
        address: String,
        reason: &'static str,
    },
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Io {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

/// A bidirectional pipe of whole messages, shared by every task that talks to one peer.
pub trait Transport: Send + Sync {
    /// Sends one whole message. Concurrent sends never interleave their bytes.
    fn send<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<(), Error>>;

    /// Receives the next whole message, or `None` once the peer has closed.
    fn recv(&self) -> BoxFuture<'_, Result<Option<Bytes>, Error>>;

    /// Closes the sending side; the peer's `recv` then returns `None`. Idempotent.
    fn close(&self) -> BoxFuture<'_, ()>;
}
