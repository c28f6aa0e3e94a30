//! Reading frames: bounded, zero-copy decoding, and the sequence number of a broken frame.

use neopack::Tag;

use super::CAPABILITY_BYTES_MAX;
use super::CHAIN_HOPS_MAX;
use super::Call;
use super::Error;
use super::FIELD_ARGS;
use super::FIELD_CAPABILITY;
use super::FIELD_CHAIN;
use super::FIELD_FAIL;
use super::FIELD_HANDLE;
use super::FIELD_LAST_SEQ;
use super::FIELD_METHOD;
use super::FIELD_OK;
use super::FIELD_SEQ;
use super::FIELD_TARGET;
use super::FIELD_TRACE;
use super::FRAME_BYTES_MAX;
use super::Hop;
use super::KIND_CALL;
use super::KIND_GO_AWAY;
use super::KIND_PING;
use super::KIND_PONG;
use super::KIND_RELEASE;
use super::KIND_REPLY;
use super::Message;
use super::Reply;
use super::Seq;
use super::TraceContext;
use super::chain_too_long;
use super::reason;
use crate::cursor::Cursor;

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
        KIND_RELEASE => decode_release(&mut entries),
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

/// The target of a call frame, read from its entries up to the target (what follows it, the
/// slab and the chain, is not looked at): for a sender that routes a frame it just encoded.
pub fn decode_target(bytes: &[u8]) -> Result<&str, Error> {
    let (kind, mut entries) = open_frame(bytes, FRAME_BYTES_MAX)?;
    if kind != KIND_CALL {
        return Err(Error::UnknownKind {
            kind: format!("{kind} (a call frame was expected)"),
        });
    }
    while !entries.is_empty() {
        let (key, mut value) = entries.variant("map entry")?;
        if key == FIELD_TARGET {
            return Ok(value.str(FIELD_TARGET)?);
        }
    }
    Err(missing(FIELD_TARGET))
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

fn decode_release<'a>(entries: &mut Cursor<'a>) -> Result<Message<'a>, Error> {
    let mut seq = None;
    let mut handle = None;
    while !entries.is_empty() {
        let (key, mut value) = entries.variant("map entry")?;
        match key {
            FIELD_SEQ => set_once(&mut seq, FIELD_SEQ, Seq(value.u64(FIELD_SEQ)?))?,
            FIELD_HANDLE => set_once(&mut handle, FIELD_HANDLE, value.u64(FIELD_HANDLE)?)?,
            _ => continue,
        }
        value.finish()?;
    }
    Ok(Message::Release {
        seq: seq.ok_or(missing(FIELD_SEQ))?,
        handle: handle.ok_or(missing(FIELD_HANDLE))?,
    })
}

fn decode_call<'a>(entries: &mut Cursor<'a>) -> Result<Call<'a>, Error> {
    let mut seq = None;
    let mut target = None;
    let mut method = None;
    let mut args = None;
    let mut chain = None;
    let mut capability = None;
    let mut trace = None;
    while !entries.is_empty() {
        let (key, mut value) = entries.variant("map entry")?;
        match key {
            FIELD_SEQ => set_once(&mut seq, FIELD_SEQ, Seq(value.u64(FIELD_SEQ)?))?,
            FIELD_TARGET => set_once(&mut target, FIELD_TARGET, value.str(FIELD_TARGET)?)?,
            FIELD_METHOD => set_once(&mut method, FIELD_METHOD, value.str(FIELD_METHOD)?)?,
            FIELD_ARGS => set_once(&mut args, FIELD_ARGS, value.take_rest())?,
            FIELD_CHAIN => set_once(&mut chain, FIELD_CHAIN, decode_chain(&mut value)?)?,
            FIELD_CAPABILITY => {
                let bytes = decode_capability(&mut value)?;
                set_once(&mut capability, FIELD_CAPABILITY, bytes)?;
            }
            FIELD_TRACE => set_once(&mut trace, FIELD_TRACE, decode_trace(&mut value)?)?,
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
        capability,
        trace,
    })
}

/// A trace context: exactly `TRACE_BYTES` bytes.
fn decode_trace(value: &mut Cursor<'_>) -> Result<TraceContext, Error> {
    value.expect(neopack::Tag::Bytes, FIELD_TRACE)?;
    let bytes = value.read(|decoder| decoder.bytes())?;
    TraceContext::from_bytes(bytes).ok_or(Error::BadTrace { bytes: bytes.len() })
}

/// A capability's bytes, at most `CAPABILITY_BYTES_MAX`.
fn decode_capability<'a>(value: &mut Cursor<'a>) -> Result<&'a [u8], Error> {
    value.expect(neopack::Tag::Bytes, FIELD_CAPABILITY)?;
    let bytes = value.read(|decoder| decoder.bytes())?;
    if bytes.len() > CAPABILITY_BYTES_MAX {
        return Err(Error::CapabilityTooLarge {
            bytes: bytes.len(),
            max: CAPABILITY_BYTES_MAX,
        });
    }
    Ok(bytes)
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

fn decode_reply<'a>(entries: &mut Cursor<'a>) -> Result<Reply<'a>, Error> {
    let mut seq = None;
    let mut outcome = None;
    while !entries.is_empty() {
        let (key, mut value) = entries.variant("map entry")?;
        match key {
            FIELD_SEQ => set_once(&mut seq, FIELD_SEQ, Seq(value.u64(FIELD_SEQ)?))?,
            FIELD_OK => set_once(&mut outcome, "ok|fail", Ok(value.take_rest()))?,
            FIELD_FAIL => set_once(&mut outcome, "ok|fail", Err(reason::decode(&mut value)?))?,
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
