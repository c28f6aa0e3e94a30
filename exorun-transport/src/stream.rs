//! Length-prefixed framing of a byte stream into whole messages.
//!
//! Each message is a u32 little-endian byte count followed by that many bytes. The count is
//! checked against the limit as soon as it arrives, and a message's buffer grows with the bytes
//! that really arrived, never up front from the count. Sends go through a bounded queue to one
//! writer task that drains every queued message into a buffer and flushes once, so many
//! concurrent calls share few syscalls.
//!
//! Reads happen on the caller's task, into one read buffer per connection: a single read takes
//! whatever the socket holds (several small messages, or the next piece of a large one), so a
//! small message costs one read syscall, and because that read comes back partial, tokio knows
//! the socket is drained and waits for readiness without another read that would only say
//! `EAGAIN`. Bytes read stay in the buffer when a `recv` is cancelled, so `recv` is cancel-safe.

use bytes::Buf;
use bytes::Bytes;
use bytes::BytesMut;
use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::io::BufWriter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::transport;
use crate::transport::BoxFuture;

/// Bytes of the length prefix.
const PREFIX_BYTES: usize = 4;
/// Messages queued for the writer before `send` waits: enough for a full pipeline of calls.
pub const OUTBOX_CAPACITY: usize = 1024;
/// How long a dropped transport's writer may keep flushing to a slow peer before it is stopped.
const WRITER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Write buffer size: a typical batch of small frames fits in one syscall.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// Room a read asks for: what one syscall may take from the socket at most.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Below this much free room the read buffer grows (or reclaims its consumed front) first.
const READ_ROOM_MIN_BYTES: usize = 4 * 1024;
/// Messages up to this size are copied out of the read buffer, so it keeps reusing one
/// allocation; larger ones are split off without a copy (they dominate their allocation).
const COPY_OUT_BYTES_MAX: usize = 4 * 1024;

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A message transport over any split byte stream (TCP and Unix sockets use it).
pub struct Transport {
    inbound: tokio::sync::Mutex<Inbound>,
    outbox: transport::Outbox,
    writer: JoinHandle<()>,
    message_bytes_max: u64,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("stream::Transport")
            .field("message_bytes_max", &self.message_bytes_max)
            .finish()
    }
}

impl Transport {
    /// Frames messages over `reader`/`writer`, refusing messages over `message_bytes_max`.
    pub fn new(reader: Reader, writer: Writer, message_bytes_max: u64) -> Self {
        let (outbox, queue) = mpsc::channel(OUTBOX_CAPACITY);
        let writer = tokio::spawn(write_loop(queue, writer));
        Self {
            inbound: tokio::sync::Mutex::new(Inbound {
                reader,
                buffer: BytesMut::new(),
            }),
            outbox: transport::Outbox::new(outbox),
            writer,
            message_bytes_max,
        }
    }

    async fn send_message(&self, message: Bytes) -> Result<(), transport::Error> {
        let message_bytes = u64::try_from(message.len()).unwrap_or(u64::MAX);
        if message_bytes > self.message_bytes_max {
            return Err(transport::Error::MessageTooLarge {
                message_bytes,
                max: self.message_bytes_max,
            });
        }
        let sender = self.outbox.sender()?;
        sender
            .send(message)
            .await
            .map_err(|_| transport::Error::Closed)
    }

    async fn recv_message(&self) -> Result<Option<Bytes>, transport::Error> {
        let mut inbound = self.inbound.lock().await;
        inbound.recv(self.message_bytes_max).await
    }
}

/// The reading side: the stream and the bytes read from it but not yet handed out.
struct Inbound {
    reader: Reader,
    buffer: BytesMut,
}

impl Inbound {
    /// The next whole message, reading as needed; `None` at a clean end of stream.
    async fn recv(&mut self, message_bytes_max: u64) -> Result<Option<Bytes>, transport::Error> {
        loop {
            if let Some(message) = self.take(message_bytes_max)? {
                return Ok(Some(message));
            }
            if self.buffer.capacity() - self.buffer.len() < READ_ROOM_MIN_BYTES {
                self.buffer.reserve(READ_CHUNK_BYTES);
            }
            let got = self.reader.read_buf(&mut self.buffer).await?;
            if got == 0 {
                return self.ended();
            }
        }
    }

    /// Splits the first message off the buffer if all of it is there; refuses an oversized
    /// one as soon as its length prefix is.
    fn take(&mut self, message_bytes_max: u64) -> Result<Option<Bytes>, transport::Error> {
        let Some(length) = self.length(message_bytes_max)? else {
            return Ok(None);
        };
        let whole = self.buffer.len() - PREFIX_BYTES >= length;
        if !whole {
            return Ok(None);
        }
        self.buffer.advance(PREFIX_BYTES);
        if length <= COPY_OUT_BYTES_MAX {
            let message = Bytes::copy_from_slice(&self.buffer[..length]);
            self.buffer.advance(length);
            return Ok(Some(message));
        }
        Ok(Some(self.buffer.split_to(length).freeze()))
    }

    /// The length of the first message, once its prefix is in the buffer.
    fn length(&self, message_bytes_max: u64) -> Result<Option<usize>, transport::Error> {
        let Some(prefix) = self.buffer.get(..PREFIX_BYTES) else {
            return Ok(None);
        };
        let mut bytes = [0u8; PREFIX_BYTES];
        bytes.copy_from_slice(prefix);
        let message_bytes = u64::from(u32::from_le_bytes(bytes));
        let too_large = transport::Error::MessageTooLarge {
            message_bytes,
            max: message_bytes_max,
        };
        if message_bytes > message_bytes_max {
            return Err(too_large);
        }
        let length = usize::try_from(message_bytes).map_err(|_| too_large)?;
        Ok(Some(length))
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
}

impl Drop for Transport {
    fn drop(&mut self) {
        // Closing the queue lets the writer flush what is queued and shut the stream down on
        // its own. It can only hang on a peer that stopped reading: give it a grace period when
        // a runtime is there to time one, and stop it at once when none is (never panic here).
        self.outbox.close();
        if self.writer.is_finished() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.writer.abort();
            return;
        };
        let writer = self.writer.abort_handle();
        runtime.spawn(async move {
            tokio::time::sleep(WRITER_GRACE).await;
            writer.abort();
        });
    }
}

impl transport::Transport for Transport {
    fn send(&self, message: Bytes) -> BoxFuture<'_, Result<(), transport::Error>> {
        Box::pin(self.send_message(message))
    }

    fn recv(&self) -> BoxFuture<'_, Result<Option<Bytes>, transport::Error>> {
        Box::pin(self.recv_message())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.outbox.close() })
    }
}

fn truncated(expected: usize, got: usize) -> transport::Error {
    transport::Error::Truncated {
        expected: u64::try_from(expected).unwrap_or(u64::MAX),
        got: u64::try_from(got).unwrap_or(u64::MAX),
    }
}

/// Writes queued messages, flushing once per batch; ends (shutting the stream down) when every
/// sender is gone, or on the first write error.
async fn write_loop(mut queue: mpsc::Receiver<Bytes>, writer: Writer) {
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
    while let Some(message) = queue.recv().await {
        if let Err(error) = write_batch(&mut writer, &mut queue, message).await {
            tracing::debug!(%error, "stream writer stopped");
            return;
        }
    }
    let _ = writer.shutdown().await;
}

async fn write_batch(
    writer: &mut BufWriter<Writer>,
    queue: &mut mpsc::Receiver<Bytes>,
    first: Bytes,
) -> std::io::Result<()> {
    write_message(writer, &first).await?;
    while let Ok(next) = queue.try_recv() {
        write_message(writer, &next).await?;
    }
    writer.flush().await
}

async fn write_message(writer: &mut BufWriter<Writer>, message: &[u8]) -> std::io::Result<()> {
    let length = u32::try_from(message.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    writer.write_all(&length.to_le_bytes()).await?;
    writer.write_all(message).await
}
