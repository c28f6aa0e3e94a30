//! Writing frames: call and reply writers (slabs encoded in place), heartbeats, go-away.

use neopack::Encoder;

use super::CALL_SEQ_OFFSET;
use super::CAPABILITY_BYTES_MAX;
use super::CHAIN_HOPS_MAX;
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
use super::RELEASE_SEQ_OFFSET;
use super::Seq;
use super::TraceContext;
use super::chain_too_long;
use super::decode;
use super::reason;
use crate::failure::Failure;

/// Writes a call frame: the header entries first, then the argument slab straight into
/// `args()` (exactly one item; `codec::encode_into` writes one), then `finish`.
pub struct CallWriter {
    encoder: Encoder,
}

/// An encoded call (or release) frame whose sequence number is stamped when it is sent, so a
/// frame can be built before the connection (and that connection's numbering) is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundCall {
    bytes: Vec<u8>,
    /// Where its seq sits.
    seq_offset: usize,
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
    pub fn finish(self, chain: &[Hop]) -> Result<OutboundCall, Error> {
        self.finish_presenting(chain, None)
    }

    /// `finish`, presenting `capability` (written after the chain, only when given; at most
    /// `CAPABILITY_BYTES_MAX` bytes).
    pub fn finish_presenting(
        self,
        chain: &[Hop],
        capability: Option<&[u8]>,
    ) -> Result<OutboundCall, Error> {
        self.finish_traced(chain, capability, None)
    }

    /// `finish_presenting`, carrying `trace` too (written last, only when given).
    pub fn finish_traced(
        mut self,
        chain: &[Hop],
        capability: Option<&[u8]>,
        trace: Option<&TraceContext>,
    ) -> Result<OutboundCall, Error> {
        if chain.len() > CHAIN_HOPS_MAX {
            return Err(chain_too_long());
        }
        let presented = capability.map_or(0, <[u8]>::len);
        if presented > CAPABILITY_BYTES_MAX {
            return Err(Error::CapabilityTooLarge {
                bytes: presented,
                max: CAPABILITY_BYTES_MAX,
            });
        }
        self.encoder.variant_end()?;
        if !chain.is_empty() {
            encode_chain(&mut self.encoder, chain)?;
        }
        if let Some(capability) = capability {
            self.encoder.variant_begin(FIELD_CAPABILITY)?;
            self.encoder.bytes(capability)?;
            self.encoder.variant_end()?;
        }
        if let Some(trace) = trace {
            self.encoder.variant_begin(FIELD_TRACE)?;
            self.encoder.bytes(&trace.to_bytes())?;
            self.encoder.variant_end()?;
        }
        self.encoder.map_end()?;
        self.encoder.variant_end()?;
        let bytes = self.encoder.into_bytes()?;
        check_frame_size(&bytes)?;
        Ok(OutboundCall {
            bytes,
            seq_offset: CALL_SEQ_OFFSET,
        })
    }
}

impl OutboundCall {
    /// Stamps the sequence number this frame is sent under.
    pub fn set_seq(&mut self, seq: Seq) {
        let field = self.seq_offset..self.seq_offset + 8;
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
    /// another seq: it must decode as a call (a release names a handle of the connection it
    /// was sent on, and means nothing on another).
    pub fn from_sent(bytes: &[u8]) -> Result<Self, Error> {
        let Message::Call(_) = decode(bytes)? else {
            return Err(Error::UnknownKind {
                kind: "a frame that is not a call".to_owned(),
            });
        };
        Ok(Self {
            bytes: bytes.to_vec(),
            seq_offset: CALL_SEQ_OFFSET,
        })
    }

    /// Whether this is a release (not a call).
    pub fn is_release(&self) -> bool {
        self.seq_offset == RELEASE_SEQ_OFFSET
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
    reason::encode(&mut encoder, failure)?;
    encoder.variant_end()?;
    encoder.map_end()?;
    encoder.variant_end()?;
    let bytes = encoder.into_bytes()?;
    check_frame_size(&bytes)?;
    Ok(bytes)
}

/// A `Release` frame for `handle` (its seq stamped when it is sent, as a call's).
pub fn encode_release(handle: u64) -> Result<OutboundCall, Error> {
    let mut encoder = Encoder::new();
    encoder.variant_begin(KIND_RELEASE)?;
    encoder.map_begin()?;
    entry_u64(&mut encoder, FIELD_SEQ, 0)?;
    entry_u64(&mut encoder, FIELD_HANDLE, handle)?;
    encoder.map_end()?;
    encoder.variant_end()?;
    Ok(OutboundCall {
        bytes: encoder.into_bytes()?,
        seq_offset: RELEASE_SEQ_OFFSET,
    })
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
