//! The reading side of a stream transport: one read buffer per connection, small messages
//! copied out of it, large ones assembled in a buffer of their own, every byte charged to the
//! budget before it is read, and each frame held to its deadline from its first byte on.
//!
//! A message over `MAPPED_FROM_BYTES` gets an anonymous memory mapping of its whole length at
//! once: its pages take memory only as its bytes arrive (each step charged first), and the
//! mapping goes back to the system whole when the message is dropped. So what a peer's
//! partly read frames make the process hold follows the budget, whatever the allocator would
//! have kept of buffers grown and freed (glibc's keeps freed large blocks once it has raised
//! its mapping threshold: 24 sources stalling 16 MiB frames over and over grew a server with
//! a 256 MiB budget to 458 MB; with mappings it stays at the budget).

use bytes::Buf;
use bytes::Bytes;
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::Config;
use super::PREFIX_BYTES;
use super::READ_BUFFER_BYTES;
use super::Reader;
use crate::budget;
use crate::budget::Charge;
use crate::transport;

/// Messages up to this size are copied out of the read buffer; larger ones get a buffer of
/// their own (the read buffer can then always hold a whole small message and a prefix).
const COPY_OUT_BYTES_MAX: usize = 4 * 1024;
/// Below this much free room the read buffer is compacted before reading.
const READ_ROOM_MIN_BYTES: usize = COPY_OUT_BYTES_MAX + PREFIX_BYTES;
/// Messages larger than this get an anonymous mapping of their own (smaller ones a heap
/// buffer, charged whole at their prefix): past it a mapping's system calls cost little next
/// to the bytes, and a buffer this size is one the allocator hands back on its own.
const MAPPED_FROM_BYTES: usize = 256 * 1024;
/// Growth step of what a mapped message may have read (and is charged for): it doubles, by at
/// least this much, never past the message's length.
const LARGE_STEP_BYTES: usize = 256 * 1024;

/// The stream, and the bytes read from it but not yet handed out.
pub(super) struct Inbound {
    reader: Reader,
    config: Config,
    /// Prefixes and small messages; allocated (and charged) on the first read.
    buffer: BytesMut,
    buffer_charge: Option<Charge>,
    /// A large message being assembled, once its prefix was read.
    large: Option<Large>,
    /// When the first byte of the frame being read arrived.
    started: Option<Instant>,
}

/// A large message's own buffer, the bytes that arrived in it, and how many of them may arrive
/// before the next charge.
struct Large {
    body: Body,
    filled: usize,
    charged: usize,
    charge: Option<Charge>,
}

/// Where a large message is assembled: exactly its length.
enum Body {
    Heap(Vec<u8>),
    Mapped(memmap2::MmapMut),
}

impl Body {
    /// A zeroed buffer of `length` bytes (a mapping's pages are taken only when written).
    fn new(length: usize) -> Result<Self, transport::Error> {
        if length <= MAPPED_FROM_BYTES {
            return Ok(Body::Heap(vec![0; length]));
        }
        let mut options = memmap2::MmapOptions::new();
        // The pages are charged to the budget as they fill; no swap is set aside up front.
        let mapped = options.len(length).no_reserve_swap().map_anon()?;
        Ok(Body::Mapped(mapped))
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Body::Heap(bytes) => bytes,
            Body::Mapped(mapped) => mapped,
        }
    }
}

impl AsRef<[u8]> for Body {
    fn as_ref(&self) -> &[u8] {
        match self {
            Body::Heap(bytes) => bytes,
            Body::Mapped(mapped) => mapped,
        }
    }
}

impl Inbound {
    pub(super) fn new(reader: Reader, config: Config) -> Self {
        Self {
            reader,
            config,
            buffer: BytesMut::new(),
            buffer_charge: None,
            large: None,
            started: None,
        }
    }

    /// The next whole message, reading as needed; `None` at a clean end of stream.
    pub(super) async fn recv(&mut self) -> Result<Option<Bytes>, transport::Error> {
        loop {
            let step = match self.large {
                Some(_) => self.read_large().await?,
                None => self.take_small().await?,
            };
            if let Some(message) = step {
                return Ok(Some(message));
            }
            // A large message just started is read on the next turn; else the buffer needs more.
            if self.large.is_none() && !self.read_more().await? {
                return self.ended();
            }
        }
    }

    /// A small message copied out of the read buffer, if one is whole there; starts a large
    /// one (moving what arrived of it into its own buffer) if its prefix says so.
    async fn take_small(&mut self) -> Result<Option<Bytes>, transport::Error> {
        let Some(length) = self.length()? else {
            return Ok(None);
        };
        self.check_fits_budget(length)?;
        if length > COPY_OUT_BYTES_MAX {
            self.start_large(length).await?;
            return Ok(None);
        }
        if self.buffer.len() - PREFIX_BYTES < length {
            return Ok(None);
        }
        let charge = self.charge(length).await?;
        self.buffer.advance(PREFIX_BYTES);
        let message = self.buffer[..length].to_vec();
        self.buffer.advance(length);
        self.frame_done();
        Ok(Some(self.attach(charge, message)))
    }

    /// Moves the body bytes already read of a large message into a buffer of its own.
    async fn start_large(&mut self, length: usize) -> Result<(), transport::Error> {
        let arrived = (self.buffer.len() - PREFIX_BYTES).min(length);
        let charged = if length <= MAPPED_FROM_BYTES {
            length
        } else {
            length.min(arrived.max(LARGE_STEP_BYTES))
        };
        let charge = self.charge(charged).await?;
        let mut body = Body::new(length)?;
        self.buffer.advance(PREFIX_BYTES);
        let bytes = body.bytes_mut();
        bytes[..arrived].copy_from_slice(&self.buffer[..arrived]);
        self.buffer.advance(arrived);
        self.large = Some(Large {
            body,
            filled: arrived,
            charged,
            charge,
        });
        Ok(())
    }

    /// Reads into the large message's buffer (charging the next step first once the bytes
    /// charged are filled); returns it when whole.
    async fn read_large(&mut self) -> Result<Option<Bytes>, transport::Error> {
        let deadline = self.deadline();
        let Some(large) = &mut self.large else {
            return Ok(None);
        };
        let length = large.body.as_ref().len();
        if large.filled == large.charged && large.filled < length {
            let charged = large.charged;
            let grown = length.min(charged.saturating_mul(2).max(charged + LARGE_STEP_BYTES));
            let more = grown - charged;
            let charge = within(deadline, charge_for(self.config.budget.as_ref(), more)).await??;
            let Some(large) = &mut self.large else {
                return Ok(None);
            };
            large.charged = grown;
            match (&mut large.charge, charge) {
                (Some(held), Some(charge)) => held.merge(charge),
                (held @ None, charge) => *held = charge,
                (Some(_), None) => {}
            }
        }
        let Some(large) = &mut self.large else {
            return Ok(None);
        };
        if large.filled < length {
            let (from, to) = (large.filled, large.charged);
            let room = &mut large.body.bytes_mut()[from..to];
            let got = within(deadline, self.reader.read(room)).await??;
            if got == 0 {
                return Err(truncated(length, large.filled));
            }
            large.filled += got;
        }
        if large.filled < length {
            return Ok(None);
        }
        let Some(large) = self.large.take() else {
            return Ok(None);
        };
        self.frame_done();
        Ok(Some(match large.charge {
            Some(charge) => charge.attach(large.body),
            None => Bytes::from_owner(large.body),
        }))
    }

    /// Reads what the socket has into the read buffer (allocating and charging it first if
    /// needed); `false` at the end of the stream.
    async fn read_more(&mut self) -> Result<bool, transport::Error> {
        if self.buffer_charge.is_none() && self.config.budget.is_some() {
            let charge = self.charge(READ_BUFFER_BYTES).await?;
            self.buffer_charge = charge;
        }
        if self.buffer.capacity() - self.buffer.len() < READ_ROOM_MIN_BYTES {
            // Reclaims the front of the same allocation (the buffer is never shared, since
            // messages are copied out of it): no growth past READ_BUFFER_BYTES.
            self.buffer.reserve(READ_BUFFER_BYTES - self.buffer.len());
        }
        let deadline = self.deadline();
        let got = within(deadline, self.reader.read_buf(&mut self.buffer)).await??;
        if got > 0 && self.started.is_none() {
            self.started = Some(Instant::now());
        }
        Ok(got > 0)
    }

    /// The length of the first message in the read buffer, once its prefix is there; refuses
    /// an oversized one as soon as the prefix arrives.
    fn length(&self) -> Result<Option<usize>, transport::Error> {
        let Some(prefix) = self.buffer.get(..PREFIX_BYTES) else {
            return Ok(None);
        };
        let mut bytes = [0u8; PREFIX_BYTES];
        bytes.copy_from_slice(prefix);
        let message_bytes = u64::from(u32::from_le_bytes(bytes));
        let max = self.config.message_bytes_max;
        let too_large = transport::Error::MessageTooLarge { message_bytes, max };
        if message_bytes > max {
            return Err(too_large);
        }
        let length = usize::try_from(message_bytes).map_err(|_| too_large)?;
        Ok(Some(length))
    }

    /// Refuses a message that could never be held within the budget (with the read buffer:
    /// `Budget::charge_bytes_max`), as soon as its length is known: waiting for it would wait
    /// for ever.
    fn check_fits_budget(&self, length: usize) -> Result<(), transport::Error> {
        let Some(budget) = &self.config.budget else {
            return Ok(());
        };
        let bytes = u64::try_from(length.saturating_add(READ_BUFFER_BYTES)).unwrap_or(u64::MAX);
        if bytes <= budget.charge_bytes_max() {
            return Ok(());
        }
        Err(transport::Error::Budget(budget::Error::LargerThanBudget {
            bytes: u64::try_from(length).unwrap_or(u64::MAX),
            budget_bytes: budget.charge_bytes_max(),
        }))
    }

    /// The stream ended: cleanly between messages, or in the middle of one.
    fn ended(&self) -> Result<Option<Bytes>, transport::Error> {
        let held = self.buffer.len();
        if held == 0 {
            return Ok(None);
        }
        if held < PREFIX_BYTES {
            return Err(truncated(PREFIX_BYTES, held));
        }
        let mut bytes = [0u8; PREFIX_BYTES];
        bytes.copy_from_slice(&self.buffer[..PREFIX_BYTES]);
        let length = usize::try_from(u32::from_le_bytes(bytes)).unwrap_or(usize::MAX);
        Err(truncated(length, held - PREFIX_BYTES))
    }

    /// A message was handed out: the next frame's clock starts with its first byte (which may
    /// already be in the buffer).
    fn frame_done(&mut self) {
        self.started = (!self.buffer.is_empty()).then(Instant::now);
    }

    /// When the frame being read must be whole, if it has started and frames have a deadline.
    fn deadline(&self) -> Option<(Instant, u64)> {
        let deadline = self.config.frame_deadline?;
        let started = self.started?;
        let deadline_ms = exorun_common::millis(deadline);
        Some((started + deadline, deadline_ms))
    }

    /// Charges `bytes` to the budget, if there is one, within the frame's deadline. (The
    /// future borrows nothing of `self`: the stream half in it is not `Sync`.)
    fn charge(
        &self,
        bytes: usize,
    ) -> impl Future<Output = Result<Option<Charge>, transport::Error>> + Send + 'static {
        let (budget, deadline) = (self.config.budget.clone(), self.deadline());
        async move { within(deadline, charge_for(budget.as_ref(), bytes)).await? }
    }

    /// A message's bytes, carrying their charge (if any) for as long as they live.
    fn attach(&self, charge: Option<Charge>, message: Vec<u8>) -> Bytes {
        match charge {
            Some(charge) => charge.attach(message),
            None => Bytes::from(message),
        }
    }
}

/// Charges `bytes` to `budget`, if there is one.
async fn charge_for(
    budget: Option<&budget::Budget>,
    bytes: usize,
) -> Result<Option<Charge>, transport::Error> {
    let Some(budget) = budget else {
        return Ok(None);
    };
    let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
    Ok(Some(budget.charge(bytes).await?))
}

/// Runs `work` until `deadline`, if there is one; past it, the frame took too long.
async fn within<T>(
    deadline: Option<(Instant, u64)>,
    work: impl Future<Output = T>,
) -> Result<T, transport::Error> {
    let Some((at, deadline_ms)) = deadline else {
        return Ok(work.await);
    };
    let done = tokio::time::timeout_at(at, work).await;
    done.map_err(|_| transport::Error::FrameDeadline { deadline_ms })
}

fn truncated(expected: usize, got: usize) -> transport::Error {
    transport::Error::Truncated {
        expected: u64::try_from(expected).unwrap_or(u64::MAX),
        got: u64::try_from(got).unwrap_or(u64::MAX),
    }
}
