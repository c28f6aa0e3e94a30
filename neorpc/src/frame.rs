//! Call and reply envelopes (SPEC.md, "Frames").
//!
//! A frame is one neopack `Variant` named by its message kind (`Call`, `Reply`) whose payload is
//! a `Map` of named entries. Argument and result slabs are opaque: the encoder appends them
//! verbatim and the decoder returns them as borrowed slices without looking inside. Decoding is
//! zero-copy and bounded by a frame size limit checked before anything is read. A frame of a kind
//! this version does not know fails with `Error::UnknownKind`, which a reader logs and skips.
//! Entries a reader does not know are skipped, so later versions can add them.

use neopack::Tag;

use crate::cursor::Cursor;
use crate::error::Error;
use crate::error::Failure;
use crate::error::failure_tag;

/// The neopack encoder a slab writer (`encode_call_with`) writes into.
pub use neopack::Encoder;

/// Largest frame accepted by default, in bytes: 16 MiB holds a 64 KiB argument list many times
/// over while bounding what one peer can make us hold per message.
pub const FRAME_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The message kind name of a call frame.
pub const KIND_CALL: &str = "Call";
/// The message kind name of a reply frame.
pub const KIND_REPLY: &str = "Reply";

const FIELD_SEQ: &str = "seq";
const FIELD_TARGET: &str = "target";
const FIELD_METHOD: &str = "method";
const FIELD_ARGS: &str = "args";
const FIELD_CHAIN: &str = "chain";

/// Most hops a call chain may carry: deeper chains are refused, on encode and on decode.
pub const CHAIN_HOPS_MAX: usize = 64;

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
const FIELD_OK: &str = "ok";
const FIELD_FAIL: &str = "fail";

/// A call's sequence number: unique per connection among calls in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seq(pub u64);

/// Builds a call frame around an already encoded argument slab.
#[derive(Debug, Clone, Copy)]
pub struct CallEncoder<'a> {
    seq: Seq,
    target: &'a str,
    method: &'a str,
    args_payload: &'a [u8],
    chain: &'a [Hop],
}

/// Builds a reply frame: a result slab or a failure reason.
#[derive(Debug, Clone, Copy)]
pub struct ReplyEncoder<'a> {
    seq: Seq,
    outcome: Result<&'a [u8], &'a Failure>,
}

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
}

impl<'a> CallEncoder<'a> {
    /// A call of `method` on `target` carrying `args_payload` (an encoded slab) verbatim.
    pub fn new(seq: u64, target: &'a str, method: &'a str, args_payload: &'a [u8]) -> Self {
        Self {
            seq: Seq(seq),
            target,
            method,
            args_payload,
            chain: &[],
        }
    }

    /// Carries `chain`, the calls this one is nested in.
    #[must_use]
    pub fn chain(mut self, chain: &'a [Hop]) -> Self {
        self.chain = chain;
        self
    }

    /// Appends the frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let bytes = self.encode()?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    /// Encodes the frame into a new buffer.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        check_slab(self.args_payload)?;
        let copy_slab = |encoder: &mut Encoder| Ok(encoder.append_raw(self.args_payload)?);
        encode_call_with(self.seq.0, self.target, self.method, self.chain, copy_slab)
    }
}

impl<'a> ReplyEncoder<'a> {
    /// A successful reply carrying `results_payload` (an encoded slab) verbatim.
    pub fn ok(seq: u64, results_payload: &'a [u8]) -> Self {
        Self {
            seq: Seq(seq),
            outcome: Ok(results_payload),
        }
    }

    /// A failure reply.
    pub fn fail(seq: u64, failure: &'a Failure) -> Self {
        Self {
            seq: Seq(seq),
            outcome: Err(failure),
        }
    }

    /// Appends the frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let bytes = self.encode()?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    /// Encodes the frame into a new buffer.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut encoder = Encoder::new();
        encoder.variant_begin(KIND_REPLY)?;
        encoder.map_begin()?;
        entry_u64(&mut encoder, FIELD_SEQ, self.seq.0)?;
        match self.outcome {
            Ok(results) => {
                check_slab(results)?;
                encoder.variant_begin(FIELD_OK)?;
                encoder.append_raw(results)?;
                encoder.variant_end()?;
            }
            Err(failure) => {
                encoder.variant_begin(FIELD_FAIL)?;
                encode_failure(&mut encoder, failure)?;
                encoder.variant_end()?;
            }
        }
        encoder.map_end()?;
        encoder.variant_end()?;
        Ok(encoder.into_bytes()?)
    }
}

/// Encodes a call frame whose argument slab `write_args` writes straight into the frame, so the
/// arguments are encoded once with no intermediate buffer. `write_args` must write exactly one
/// item (`codec::encode_into` does). A non-empty `chain` goes after the arguments (so the slab's
/// offset does not depend on it). The finished frame is checked against `FRAME_BYTES_MAX`.
pub fn encode_call_with(
    seq: u64,
    target: &str,
    method: &str,
    chain: &[Hop],
    write_args: impl FnOnce(&mut Encoder) -> Result<(), Error>,
) -> Result<Vec<u8>, Error> {
    if chain.len() > CHAIN_HOPS_MAX {
        return Err(chain_too_long());
    }
    let mut encoder = Encoder::new();
    encoder.variant_begin(KIND_CALL)?;
    encoder.map_begin()?;
    entry_u64(&mut encoder, FIELD_SEQ, seq)?;
    entry_str(&mut encoder, FIELD_TARGET, target)?;
    entry_str(&mut encoder, FIELD_METHOD, method)?;
    encoder.variant_begin(FIELD_ARGS)?;
    write_args(&mut encoder)?;
    encoder.variant_end()?;
    if !chain.is_empty() {
        encoder.variant_begin(FIELD_CHAIN)?;
        encoder.list_begin()?;
        for hop in chain {
            encoder.u64(hop.runtime)?;
            encoder.u64(hop.instance)?;
        }
        encoder.list_end()?;
        encoder.variant_end()?;
    }
    encoder.map_end()?;
    encoder.variant_end()?;
    finish(encoder)
}

/// Encodes a successful reply whose result slab `write_results` writes straight into the frame
/// (exactly one item). The finished frame is checked against `FRAME_BYTES_MAX`.
pub fn encode_reply_ok_with(
    seq: u64,
    write_results: impl FnOnce(&mut Encoder) -> Result<(), Error>,
) -> Result<Vec<u8>, Error> {
    let mut encoder = Encoder::new();
    encoder.variant_begin(KIND_REPLY)?;
    encoder.map_begin()?;
    entry_u64(&mut encoder, FIELD_SEQ, seq)?;
    encoder.variant_begin(FIELD_OK)?;
    write_results(&mut encoder)?;
    encoder.variant_end()?;
    encoder.map_end()?;
    encoder.variant_end()?;
    finish(encoder)
}

fn finish(encoder: Encoder) -> Result<Vec<u8>, Error> {
    let bytes = encoder.into_bytes()?;
    check_slab(&bytes)?;
    Ok(bytes)
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
        other => Err(Error::UnknownKind {
            kind: other.to_owned(),
        }),
    }
}

/// Reads only the sequence number of a frame of any kind, so a reply can be routed before (or
/// without) decoding its payload.
pub fn decode_seq(bytes: &[u8]) -> Result<Seq, Error> {
    let (_kind, mut entries) = open_frame(bytes, FRAME_BYTES_MAX)?;
    while !entries.is_empty() {
        let (key, mut value) = entries.variant("map entry")?;
        if key == FIELD_SEQ {
            return Ok(Seq(value.u64(FIELD_SEQ)?));
        }
    }
    Err(Error::MissingField { field: FIELD_SEQ })
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
        seq: seq.ok_or(Error::MissingField { field: FIELD_SEQ })?,
        target: target.ok_or(Error::MissingField {
            field: FIELD_TARGET,
        })?,
        method: method.ok_or(Error::MissingField {
            field: FIELD_METHOD,
        })?,
        args: args.ok_or(Error::MissingField { field: FIELD_ARGS })?,
        chain: chain.unwrap_or_default(),
    })
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
    Error::TooManyElements {
        elements_max: u64::try_from(CHAIN_HOPS_MAX).unwrap_or(u64::MAX),
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
            FIELD_FAIL => set_once(&mut outcome, "ok|fail", Err(decode_failure(&mut value)?))?,
            _ => continue,
        }
        value.finish()?;
    }
    Ok(Reply {
        seq: seq.ok_or(Error::MissingField { field: FIELD_SEQ })?,
        outcome: outcome.ok_or(Error::MissingField { field: "ok|fail" })?,
    })
}

fn set_once<T>(slot: &mut Option<T>, field: &'static str, value: T) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::DuplicateField { field });
    }
    *slot = Some(value);
    Ok(())
}

fn check_slab(slab: &[u8]) -> Result<(), Error> {
    let frame_bytes = u64::try_from(slab.len()).unwrap_or(u64::MAX);
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

/// A failure is a list: the u32 reason tag, then that reason's fields in order.
fn encode_failure(encoder: &mut Encoder, failure: &Failure) -> Result<(), Error> {
    encoder.list_begin()?;
    encoder.u32(failure.tag())?;
    match failure {
        Failure::OutOfFuel | Failure::OutOfMemory | Failure::Overloaded => {}
        Failure::AppTrapped { message }
        | Failure::ProtocolViolation { message }
        | Failure::Internal { message } => encoder.str(message)?,
        Failure::InstanceNotFound { instance } | Failure::Reentrant { instance } => {
            encoder.str(instance)?;
        }
        Failure::MethodNotFound { method } => encoder.str(method)?,
        Failure::BadArgumentCount { expected, found } => {
            encoder.u32(*expected)?;
            encoder.u32(*found)?;
        }
        Failure::BadArgumentType {
            index: code,
            message,
        }
        | Failure::DomainSpecific { code, message } => {
            encoder.u32(*code)?;
            encoder.str(message)?;
        }
    }
    Ok(encoder.list_end()?)
}

fn decode_failure(value: &mut Cursor<'_>) -> Result<Failure, Error> {
    let mut fields = value.container(Tag::List, "failure")?;
    let tag = fields.u32("failure tag")?;
    let text = |fields: &mut Cursor<'_>| fields.str("failure text").map(str::to_owned);
    let failure = match tag {
        failure_tag::APP_TRAPPED => Failure::AppTrapped {
            message: text(&mut fields)?,
        },
        failure_tag::OUT_OF_FUEL => Failure::OutOfFuel,
        failure_tag::OUT_OF_MEMORY => Failure::OutOfMemory,
        failure_tag::INSTANCE_NOT_FOUND => Failure::InstanceNotFound {
            instance: text(&mut fields)?,
        },
        failure_tag::METHOD_NOT_FOUND => Failure::MethodNotFound {
            method: text(&mut fields)?,
        },
        failure_tag::BAD_ARGUMENT_COUNT => Failure::BadArgumentCount {
            expected: fields.u32("expected count")?,
            found: fields.u32("found count")?,
        },
        failure_tag::BAD_ARGUMENT_TYPE => Failure::BadArgumentType {
            index: fields.u32("argument index")?,
            message: text(&mut fields)?,
        },
        failure_tag::DOMAIN_SPECIFIC => Failure::DomainSpecific {
            code: fields.u32("domain code")?,
            message: text(&mut fields)?,
        },
        failure_tag::PROTOCOL_VIOLATION => Failure::ProtocolViolation {
            message: text(&mut fields)?,
        },
        failure_tag::OVERLOADED => Failure::Overloaded,
        failure_tag::INTERNAL => Failure::Internal {
            message: text(&mut fields)?,
        },
        failure_tag::REENTRANT => Failure::Reentrant {
            instance: text(&mut fields)?,
        },
        unknown => return Err(Error::UnknownFailureTag { tag: unknown }),
    };
    fields.finish()?;
    Ok(failure)
}
