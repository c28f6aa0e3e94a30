//! Call and reply envelopes, heartbeats and go-away notices (SPEC.md, "Frames").
//!
//! A frame is one neopack `Variant` named by its message kind (`Call`, `Reply`) whose payload is
//! a `Map` of named entries. Argument and result slabs are opaque here: a `CallWriter` or
//! `ReplyWriter` hands the caller the encoder positioned where the slab goes, so a codec writes
//! values straight into the frame (no separate slab, no copy), and the decoder returns slabs as
//! borrowed slices without looking inside. A call frame's sequence number sits at a fixed offset
//! and is stamped by whoever sends it (`OutboundCall::set_seq`), so a frame is encoded before the
//! connection it goes out on is known.
//!
//! Decoding is zero-copy and bounded by a frame size limit checked before anything is read. A
//! frame of a kind this version does not know fails with `Error::UnknownKind`, which a reader
//! logs and skips; entries a reader does not know are skipped, so later versions can add them.
//! Every malformed, truncated or oversized input is one `Error` variant carrying the facts.

use crate::cursor;
use crate::failure::Failure;

mod decode;
mod encode;
mod reason;

pub use decode::decode;
pub use decode::decode_seq;
pub use decode::decode_target;
pub use decode::decode_with_limit;
pub use encode::CallWriter;
pub use encode::OutboundCall;
pub use encode::ReplyWriter;
pub use encode::encode_call;
pub use encode::encode_go_away;
pub use encode::encode_ping;
pub use encode::encode_pong;
pub use encode::encode_release;
pub use encode::encode_reply;

/// The neopack encoder a slab writer writes into.
pub use neopack::Encoder;

/// Largest frame accepted by default, in bytes: 16 MiB holds a 64 KiB argument list many times
/// over while bounding what one peer can make us hold per message.
pub const FRAME_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Most hops a call chain may carry: deeper chains are refused, on encode and on decode.
pub const CHAIN_HOPS_MAX: usize = 64;

/// The message kind name of a call frame.
pub const KIND_CALL: &str = "Call";
/// The message kind name of a reply frame.
pub const KIND_REPLY: &str = "Reply";
/// The message kind name of a heartbeat a peer sends on a quiet connection.
pub const KIND_PING: &str = "Ping";
/// The message kind name of the answer to a `Ping`.
pub const KIND_PONG: &str = "Pong";
/// The message kind name of a server's notice that it reads no further calls on a connection.
pub const KIND_GO_AWAY: &str = "GoAway";
/// The message kind name of a caller's release of a resource handle it holds on the
/// connection (answered by a `Reply`, like a call).
pub const KIND_RELEASE: &str = "Release";

const FIELD_SEQ: &str = "seq";
const FIELD_TARGET: &str = "target";
const FIELD_METHOD: &str = "method";
const FIELD_ARGS: &str = "args";
const FIELD_CHAIN: &str = "chain";
const FIELD_CAPABILITY: &str = "capability";
const FIELD_TRACE: &str = "trace";

/// The bytes of a call's trace context: a 16-byte trace id, the 8-byte id of the caller's span
/// (the callee's parent) and one byte of W3C trace flags (`traceparent`'s fields, in binary).
pub const TRACE_BYTES: usize = 25;

/// W3C trace context a call carries, so one trace follows a call across runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace the call belongs to.
    pub trace_id: [u8; 16],
    /// The caller's span: the callee's span is its child.
    pub parent_id: [u8; 8],
    /// W3C trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// Its `TRACE_BYTES` wire bytes.
    pub fn to_bytes(&self) -> [u8; TRACE_BYTES] {
        let mut bytes = [0; TRACE_BYTES];
        bytes[..16].copy_from_slice(&self.trace_id);
        bytes[16..24].copy_from_slice(&self.parent_id);
        bytes[24] = self.flags;
        bytes
    }

    /// Reads exactly `TRACE_BYTES` bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; TRACE_BYTES] = bytes.try_into().ok()?;
        let mut trace_id = [0; 16];
        trace_id.copy_from_slice(&bytes[..16]);
        let mut parent_id = [0; 8];
        parent_id.copy_from_slice(&bytes[16..24]);
        Some(Self {
            trace_id,
            parent_id,
            flags: bytes[24],
        })
    }
}

/// Largest capability a call may present, in bytes (`exorun-cap`'s own bound).
pub const CAPABILITY_BYTES_MAX: usize = 16 * 1024;
const FIELD_LAST_SEQ: &str = "last_seq";
const FIELD_HANDLE: &str = "handle";
const FIELD_OK: &str = "ok";
const FIELD_FAIL: &str = "fail";

/// Where a call frame's u64 sequence number sits (SPEC.md, "Frames"): 5 (frame header) + 9
/// (`"Call"`) + 5 (map header) + 5 (`seq` entry header) + 8 (`"seq"`) + 1 (u64 tag).
const CALL_SEQ_OFFSET: usize = 33;
/// Where a release frame's sequence number sits: as a call's, with the kind name `"Release"`
/// three bytes longer.
const RELEASE_SEQ_OFFSET: usize = 36;

/// An encode or decode failure of a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ended in the middle of an item.
    #[error("input ended in the middle of an item")]
    Truncated,
    /// A byte where a neopack tag belongs is not a known tag.
    #[error("byte {byte:#04x} is not a neopack tag")]
    BadTag {
        /// The byte read.
        byte: u8,
    },
    /// A string is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    BadUtf8,
    /// The item found is not of the kind the frame layout requires.
    #[error("type mismatch: expected {expected}, found {found}")]
    TypeMismatch {
        /// What was expected.
        expected: &'static str,

        /// What was found instead.
        found: &'static str,
    },
    /// A frame lacks a required map entry.
    #[error("frame has no `{field}` entry")]
    MissingField {
        /// The entry's key.
        field: &'static str,
    },
    /// A frame carries the same map entry twice.
    #[error("frame has `{field}` twice")]
    DuplicateField {
        /// The entry's key.
        field: &'static str,
    },
    /// A frame of a message kind this version does not know (readers log and skip it).
    #[error("unknown message kind `{kind}`")]
    UnknownKind {
        /// The kind of value.
        kind: String,
    },
    /// A frame larger than the limit, refused before it is read (or after it is written).
    #[error("frame of {frame_bytes} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The frame's size, in bytes.
        frame_bytes: u64,
        /// The limit, in bytes.
        max: u64,
    },
    /// A trace entry that is not `TRACE_BYTES` bytes.
    #[error("a trace context of {bytes} bytes is not {TRACE_BYTES}")]
    BadTrace {
        /// Its size, in bytes.
        bytes: usize,
    },
    /// A capability longer than `CAPABILITY_BYTES_MAX`.
    #[error("a capability of {bytes} bytes is past {max}")]
    CapabilityTooLarge {
        /// Its size, in bytes.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A call chain longer than `CHAIN_HOPS_MAX`.
    #[error("call chain longer than {hops_max} hops")]
    ChainTooLong {
        /// The limit.
        hops_max: u64,
    },
    /// Bytes left over after a complete frame or entry.
    #[error("{count} bytes left over after a complete item")]
    TrailingBytes {
        /// How many bytes are left over.
        count: u64,
    },
    /// A failure reply with a reason tag this version does not know.
    #[error("unknown failure tag {tag}")]
    UnknownFailureTag {
        /// The tag read.
        tag: u32,
    },
    /// The neopack encoder refused a write (e.g. a slab writer wrote no item, or two).
    #[error("neopack refused the encoding: {reason}")]
    Encode {
        /// Why, in words.
        reason: &'static str,
    },
}

cursor::take_over!(Error);

/// One call on a chain of nested calls: the runtime and the instance it is running in. A call
/// carries the chain that led to it, so a runtime can refuse a call into an instance that is
/// already on it (A -> B -> A across runtimes) instead of waiting for its own caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hop {
    /// The runtime's id, unique per runtime process-wide and random across processes.
    pub runtime: u64,
    /// The instance's id within that runtime.
    pub instance: u64,
}

/// A call's sequence number: unique per connection among calls in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seq(pub u64);

/// A decoded call, borrowing from the frame bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<'a> {
    /// Pairs the reply with this call.
    pub seq: Seq,
    /// The instance the call is addressed to.
    pub target: &'a str,
    /// `interface#function` on that instance.
    pub method: &'a str,
    /// The argument slab, exactly as the caller encoded it.
    pub args: &'a [u8],
    /// The calls this one is nested in, outermost first (empty when the frame has none).
    pub chain: Vec<Hop>,
    /// The capability the caller presents, as it sent it (opaque to the frame layer; at most
    /// `CAPABILITY_BYTES_MAX` bytes).
    pub capability: Option<&'a [u8]>,
    /// The trace the call belongs to, and the caller's span.
    pub trace: Option<TraceContext>,
}

/// A decoded reply, borrowing from the frame bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The sequence number of the call this answers.
    pub seq: Seq,
    /// The result slab, or why the call failed.
    pub outcome: Result<&'a [u8], Failure>,
}

/// Any frame this version understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// A request to run `method` on `target`.
    Call(Call<'a>),
    /// The answer to a call.
    Reply(Reply<'a>),
    /// A heartbeat: the peer answers with a `Pong` of the same seq.
    Ping(Seq),
    /// The answer to the `Ping` of this seq.
    Pong(Seq),
    /// The server reads no further calls on this connection: every call it read has a seq of
    /// at most `last_seq` (0 if it read none) and will be answered; a call with a higher seq
    /// was not read and may be sent again elsewhere.
    GoAway {
        /// The highest seq of a call the server read on this connection.
        last_seq: Seq,
    },
    /// The caller drops the resource handle `handle` it holds on this connection; answered by a
    /// `Reply` to `seq` once the resource is dropped (a reply with an empty result list).
    Release {
        /// Pairs the reply with this release.
        seq: Seq,
        /// The handle's id on this connection.
        handle: u64,
    },
}

fn chain_too_long() -> Error {
    Error::ChainTooLong {
        hops_max: u64::try_from(CHAIN_HOPS_MAX).unwrap_or(u64::MAX),
    }
}
