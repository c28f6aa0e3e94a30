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

use neopack::Tag;

use crate::cursor;
use crate::cursor::Cursor;
use crate::failure;
use crate::failure::Failure;

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

const FIELD_SEQ: &str = "seq";
const FIELD_TARGET: &str = "target";
const FIELD_METHOD: &str = "method";
const FIELD_ARGS: &str = "args";
const FIELD_CHAIN: &str = "chain";
const FIELD_LAST_SEQ: &str = "last_seq";
const FIELD_OK: &str = "ok";
const FIELD_FAIL: &str = "fail";

/// Where a call frame's u64 sequence number sits (SPEC.md, "Frames"): 5 (frame header) + 9
/// (`"Call"`) + 5 (map header) + 5 (`seq` entry header) + 8 (`"seq"`) + 1 (u64 tag).
const CALL_SEQ_OFFSET: usize = 33;

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
}

/// Writes a call frame: the header entries first, then the argument slab straight into
/// `args()` (exactly one item; `codec::encode_into` writes one), then `finish`.
pub struct CallWriter {
    encoder: Encoder,
}

/// An encoded call frame whose sequence number is stamped when it is sent, so a frame can be
/// built before the connection (and that connection's numbering) is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundCall {
    bytes: Vec<u8>,
}

/// Writes a successful reply frame: the header first, then the result slab straight into
/// `results()` (exactly one item), then `finish`.
pub struct ReplyWriter {
    encoder: Encoder,
}

impl std::fmt::Debug for CallWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallWriter")
    }
}

impl std::fmt::Debug for ReplyWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyWriter")
    }
}

impl CallWriter {
    /// Starts a call of `method` on `target` (its sequence number is set later).
    pub fn new(target: &str, method: &str) -> Result<Self, Error> {
        let mut encoder = Encoder::new();
        encoder.variant_begin(KIND_CALL)?;
        encoder.map_begin()?;
        entry_u64(&mut encoder, FIELD_SEQ, 0)?;
        entry_str(&mut encoder, FIELD_TARGET, target)?;
        entry_str(&mut encoder, FIELD_METHOD, method)?;
        encoder.variant_begin(FIELD_ARGS)?;
        Ok(Self { encoder })
    }

    /// Where the argument slab goes: write exactly one item.
    pub fn args(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    /// Closes the slab, appends `chain` (the calls this one is nested in; written only when
    /// non-empty, after the slab, so the slab's offset does not depend on it) and checks the
    /// finished frame against `FRAME_BYTES_MAX`.
    pub fn finish(mut self, chain: &[Hop]) -> Result<OutboundCall, Error> {
        if chain.len() > CHAIN_HOPS_MAX {
            return Err(chain_too_long());
        }
        self.encoder.variant_end()?;
        if !chain.is_empty() {
            encode_chain(&mut self.encoder, chain)?;
        }
        self.encoder.map_end()?;
        self.encoder.variant_end()?;
        let bytes = self.encoder.into_bytes()?;
        check_frame_size(&bytes)?;
        Ok(OutboundCall { bytes })
    }
}

impl OutboundCall {
    /// Stamps the sequence number this frame is sent under.
    pub fn set_seq(&mut self, seq: Seq) {
        let field = CALL_SEQ_OFFSET..CALL_SEQ_OFFSET + 8;
        self.bytes[field].copy_from_slice(&seq.0.to_le_bytes());
    }

    /// The frame's bytes as they stand.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The frame's bytes, for a transport to send without copying.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// A call frame sent before (bytes as they went out, seq stamped), to send again under
    /// another seq: it must decode as a call.
    pub fn from_sent(bytes: &[u8]) -> Result<Self, Error> {
        let Message::Call(_) = decode(bytes)? else {
            return Err(Error::UnknownKind {
                kind: "a frame that is not a call".to_owned(),
            });
        };
        Ok(Self {
            bytes: bytes.to_vec(),
        })
    }
}

impl ReplyWriter {
    /// Starts a successful reply to `seq`.
    pub fn new(seq: Seq) -> Result<Self, Error> {
        let mut encoder = Encoder::new();
        encoder.variant_begin(KIND_REPLY)?;
        encoder.map_begin()?;
        entry_u64(&mut encoder, FIELD_SEQ, seq.0)?;
        encoder.variant_begin(FIELD_OK)?;
        Ok(Self { encoder })
    }

    /// Where the result slab goes: write exactly one item.
    pub fn results(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    /// Closes the frame and checks it against `FRAME_BYTES_MAX`.
    pub fn finish(mut self) -> Result<Vec<u8>, Error> {
        self.encoder.variant_end()?;
        self.encoder.map_end()?;
        self.encoder.variant_end()?;
        let bytes = self.encoder.into_bytes()?;
        check_frame_size(&bytes)?;
        Ok(bytes)
    }
}

/// A call frame around an already encoded argument slab, copied in verbatim (for callers that
/// hold a slab; a codec writes into a `CallWriter` instead).
pub fn encode_call(
    target: &str,
    method: &str,
    args_slab: &[u8],
    chain: &[Hop],
) -> Result<OutboundCall, Error> {
    check_frame_size(args_slab)?;
    let mut writer = CallWriter::new(target, method)?;
    writer.args().append_raw(args_slab)?;
    writer.finish(chain)
}

/// A reply frame: the result slab copied in verbatim, or a failure reason.
pub fn encode_reply(seq: Seq, outcome: Result<&[u8], &Failure>) -> Result<Vec<u8>, Error> {
    let failure = match outcome {
        Ok(results_slab) => {
            check_frame_size(results_slab)?;
            let mut writer = ReplyWriter::new(seq)?;
            writer.results().append_raw(results_slab)?;
            return writer.finish();
        }
        Err(failure) => failure,
    };
    let mut encoder = Encoder::new();
    encoder.variant_begin(KIND_REPLY)?;
    encoder.map_begin()?;
    entry_u64(&mut encoder, FIELD_SEQ, seq.0)?;
    encoder.variant_begin(FIELD_FAIL)?;
    failure::encode(&mut encoder, failure)?;
    encoder.variant_end()?;
    encoder.map_end()?;
    encoder.variant_end()?;
    let bytes = encoder.into_bytes()?;
    check_frame_size(&bytes)?;
    Ok(bytes)
}

/// A `Ping` frame.
pub fn encode_ping(seq: Seq) -> Result<Vec<u8>, Error> {
    encode_one_entry(KIND_PING, FIELD_SEQ, seq.0)
}

/// A `Pong` frame answering the `Ping` of `seq`.
pub fn encode_pong(seq: Seq) -> Result<Vec<u8>, Error> {
    encode_one_entry(KIND_PONG, FIELD_SEQ, seq.0)
}

/// A `GoAway` frame: no call with a seq above `last_seq` will be read.
pub fn encode_go_away(last_seq: Seq) -> Result<Vec<u8>, Error> {
    encode_one_entry(KIND_GO_AWAY, FIELD_LAST_SEQ, last_seq.0)
}

/// A frame of `kind` whose map holds one u64 entry.
fn encode_one_entry(kind: &str, key: &str, value: u64) -> Result<Vec<u8>, Error> {
    let mut encoder = Encoder::new();
    encoder.variant_begin(kind)?;
    encoder.map_begin()?;
    entry_u64(&mut encoder, key, value)?;
    encoder.map_end()?;
    encoder.variant_end()?;
    Ok(encoder.into_bytes()?)
}

/// Decodes a frame no larger than `FRAME_BYTES_MAX`.
pub fn decode(bytes: &[u8]) -> Result<Message<'_>, Error> {
    decode_with_limit(bytes, FRAME_BYTES_MAX)
}

/// Decodes a frame no larger than `frame_bytes_max`; the size is checked before any read.
pub fn decode_with_limit(bytes: &[u8], frame_bytes_max: u64) -> Result<Message<'_>, Error> {
    let (kind, mut entries) = open_frame(bytes, frame_bytes_max)?;
    match kind {
        KIND_CALL => Ok(Message::Call(decode_call(&mut entries)?)),
        KIND_REPLY => Ok(Message::Reply(decode_reply(&mut entries)?)),
        KIND_PING => Ok(Message::Ping(Seq(decode_one_entry(
            &mut entries,
            FIELD_SEQ,
        )?))),
        KIND_PONG => Ok(Message::Pong(Seq(decode_one_entry(
            &mut entries,
            FIELD_SEQ,
        )?))),
        KIND_GO_AWAY => {
            let last_seq = Seq(decode_one_entry(&mut entries, FIELD_LAST_SEQ)?);
            Ok(Message::GoAway { last_seq })
        }
        other => Err(Error::UnknownKind {
            kind: other.to_owned(),
        }),
    }
}

/// Reads only the sequence number of a frame of any kind, so a frame whose rest is malformed
/// can still be answered (or routed) by its sequence number: from a well-formed frame's `seq`
/// entry wherever it is, or else from a frame that starts as writers write one (kind, then
/// `seq` first) however broken the bytes after the seq are (lengths that run past the end, a
/// garbled entry, trailing bytes).
pub fn decode_seq(bytes: &[u8]) -> Result<Seq, Error> {
    match scan_seq(bytes) {
        Ok(seq) => Ok(seq),
        Err(error) => leading_seq(bytes).ok_or(error),
    }
}

fn scan_seq(bytes: &[u8]) -> Result<Seq, Error> {
    let (_kind, mut entries) = open_frame(bytes, FRAME_BYTES_MAX)?;
    while !entries.is_empty() {
        let (key, mut value) = entries.variant("map entry")?;
        if key == FIELD_SEQ {
            return Ok(Seq(value.u64(FIELD_SEQ)?));
        }
    }
    Err(Error::MissingField { field: FIELD_SEQ })
}

/// The seq of a frame that begins `variant(kind) { map { variant("seq") { u64 ...`, read
/// from the leading bytes alone: container lengths are not held against the rest.
fn leading_seq(bytes: &[u8]) -> Option<Seq> {
    const VARIANT: u8 = 0x33;
    const MAP: u8 = 0x21;
    let mut lead = Leading { bytes, at: 0 };
    lead.tag(VARIANT)?;
    lead.take(4)?;
    lead.string()?;
    lead.tag(MAP)?;
    lead.take(4)?;
    lead.tag(VARIANT)?;
    lead.take(4)?;
    (lead.string()? == FIELD_SEQ.as_bytes()).then_some(())?;
    lead.tag(0x06)?;
    let value = lead.take(8)?.try_into().ok()?;
    Some(Seq(u64::from_le_bytes(value)))
}

/// Reads the leading bytes of a frame one raw piece at a time.
struct Leading<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Leading<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let piece = self.bytes.get(self.at..self.at.checked_add(count)?)?;
        self.at += count;
        Some(piece)
    }

    fn tag(&mut self, tag: u8) -> Option<()> {
        (self.take(1)? == [tag]).then_some(())
    }

    /// A string item's bytes (its UTF-8 is not checked: only its length and place matter).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.tag(0x10)?;
        let length = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        self.take(usize::try_from(length).ok()?)
    }
}

/// Checks the size, reads the kind and enters the entry map.
fn open_frame(bytes: &[u8], frame_bytes_max: u64) -> Result<(&str, Cursor<'_>), Error> {
    let frame_bytes = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if frame_bytes > frame_bytes_max {
        return Err(Error::FrameTooLarge {
            frame_bytes,
            max: frame_bytes_max,
        });
    }
    let mut frame = Cursor::new(bytes);
    let (kind, mut payload) = frame.variant("frame")?;
    frame.finish()?;
    let entries = payload.container(Tag::Map, "frame entries")?;
    payload.finish()?;
    Ok((kind, entries))
}

/// The one required u64 entry `field` of a frame (other entries skipped, as always).
fn decode_one_entry(entries: &mut Cursor<'_>, field: &'static str) -> Result<u64, Error> {
    let mut found = None;
    while !entries.is_empty() {
        let (key, mut value) = entries.variant("map entry")?;
        if key != field {
            continue;
        }
        set_once(&mut found, field, value.u64(field)?)?;
        value.finish()?;
    }
    found.ok_or(missing(field))
}

fn decode_call<'a>(entries: &mut Cursor<'a>) -> Result<Call<'a>, Error> {
    let mut seq = None;
    let mut target = None;
    let mut method = None;
    let mut args = None;
    let mut chain = None;
    while !entries.is_empty() {
        let (key, mut value) = entries.variant("map entry")?;
        match key {
            FIELD_SEQ => set_once(&mut seq, FIELD_SEQ, Seq(value.u64(FIELD_SEQ)?))?,
            FIELD_TARGET => set_once(&mut target, FIELD_TARGET, value.str(FIELD_TARGET)?)?,
            FIELD_METHOD => set_once(&mut method, FIELD_METHOD, value.str(FIELD_METHOD)?)?,
            FIELD_ARGS => set_once(&mut args, FIELD_ARGS, value.take_rest())?,
            FIELD_CHAIN => set_once(&mut chain, FIELD_CHAIN, decode_chain(&mut value)?)?,
            _ => continue,
        }
        value.finish()?;
    }
    Ok(Call {
        seq: seq.ok_or(missing(FIELD_SEQ))?,
        target: target.ok_or(missing(FIELD_TARGET))?,
        method: method.ok_or(missing(FIELD_METHOD))?,
        args: args.ok_or(missing(FIELD_ARGS))?,
        chain: chain.unwrap_or_default(),
    })
}

fn encode_chain(encoder: &mut Encoder, chain: &[Hop]) -> Result<(), Error> {
    encoder.variant_begin(FIELD_CHAIN)?;
    encoder.list_begin()?;
    for hop in chain {
        encoder.u64(hop.runtime)?;
        encoder.u64(hop.instance)?;
    }
    encoder.list_end()?;
    Ok(encoder.variant_end()?)
}

/// A flat list of u64 pairs (runtime, instance), at most `CHAIN_HOPS_MAX` of them.
fn decode_chain(value: &mut Cursor<'_>) -> Result<Vec<Hop>, Error> {
    let mut list = value.container(Tag::List, FIELD_CHAIN)?;
    let mut chain = Vec::new();
    while !list.is_empty() {
        if chain.len() == CHAIN_HOPS_MAX {
            return Err(chain_too_long());
        }
        let runtime = list.u64("chain runtime")?;
        let instance = list.u64("chain instance")?;
        chain.push(Hop { runtime, instance });
    }
    Ok(chain)
}

fn chain_too_long() -> Error {
    Error::ChainTooLong {
        hops_max: u64::try_from(CHAIN_HOPS_MAX).unwrap_or(u64::MAX),
    }
}

fn decode_reply<'a>(entries: &mut Cursor<'a>) -> Result<Reply<'a>, Error> {
    let mut seq = None;
    let mut outcome = None;
    while !entries.is_empty() {
        let (key, mut value) = entries.variant("map entry")?;
        match key {
            FIELD_SEQ => set_once(&mut seq, FIELD_SEQ, Seq(value.u64(FIELD_SEQ)?))?,
            FIELD_OK => set_once(&mut outcome, "ok|fail", Ok(value.take_rest()))?,
            FIELD_FAIL => set_once(&mut outcome, "ok|fail", Err(failure::decode(&mut value)?))?,
            _ => continue,
        }
        value.finish()?;
    }
    Ok(Reply {
        seq: seq.ok_or(missing(FIELD_SEQ))?,
        outcome: outcome.ok_or(missing("ok|fail"))?,
    })
}

fn set_once<T>(slot: &mut Option<T>, field: &'static str, value: T) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::DuplicateField { field });
    }
    *slot = Some(value);
    Ok(())
}

fn missing(field: &'static str) -> Error {
    Error::MissingField { field }
}

/// Refuses a frame (or a slab that would make one) over `FRAME_BYTES_MAX`.
fn check_frame_size(bytes: &[u8]) -> Result<(), Error> {
    let frame_bytes = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if frame_bytes > FRAME_BYTES_MAX {
        return Err(Error::FrameTooLarge {
            frame_bytes,
            max: FRAME_BYTES_MAX,
        });
    }
    Ok(())
}

fn entry_u64(encoder: &mut Encoder, key: &str, value: u64) -> Result<(), Error> {
    encoder.variant_begin(key)?;
    encoder.u64(value)?;
    Ok(encoder.variant_end()?)
}

fn entry_str(encoder: &mut Encoder, key: &str, value: &str) -> Result<(), Error> {
    encoder.variant_begin(key)?;
    encoder.str(value)?;
    Ok(encoder.variant_end()?)
}
