//! Length-prefixed framing of a byte stream into whole messages.
//!
//! Each message is a u32 little-endian byte count followed by that many bytes. The count is
//! checked against the limit as soon as it arrives, and a message's buffer grows with the bytes
//! that really arrived, never up front from the count. Sends go through a bounded queue to one
//! writer task that drains every queued message into one batch and writes it at once, so many
//! concurrent calls share few syscalls; the batch buffer exists only while there is something
//! to write (an idle connection holds none), and a large message is written from its own
//! bytes, not copied into it.
//!
//! Reads happen on the caller's task, into one read buffer per connection: a single read takes
//! whatever the socket holds (several small messages, or the next piece of a large one), so a
//! small message costs one read syscall, and because that read comes back partial, tokio knows
//! the socket is drained and waits for readiness without another read that would only say
//! `EAGAIN`. Bytes read stay in the buffer when a `recv` is cancelled, so `recv` is cancel-safe.
//!
//! A server's transports (`Config`) charge every buffer to a shared `budget::Budget` before
//! allocating it and hold each frame to a deadline from its first byte: a peer that starts a
//! frame and stalls holds its bytes no longer than that, and when the budget is spent the
//! connection is simply not read until bytes come back. Messages sent (a server's replies) are
//! charged too, from when they are queued until they are written, so a peer that never reads
//! its replies holds no more than its budget of them.

mod inbound;

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::budget;
use crate::transport;
use exorun_common::BoxFuture;

use self::inbound::Inbound;

/// The read buffer of a connection: what one read syscall may take at most (several small
/// messages at once, or the start of a large one); charged to its budget once it first reads.
pub(crate) const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Bytes of the length prefix.
const PREFIX_BYTES: usize = 4;
/// Messages queued for the writer before `send` waits: enough for a full pipeline of calls.
pub const OUTBOX_CAPACITY: usize = 1024;
/// How long a dropped transport's writer may keep flushing to a slow peer before it is stopped.
const WRITER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Most bytes of small messages batched into one write: a typical batch of small frames fits
/// in one syscall. A message larger than this is written from its own bytes.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// A batch buffer grown past this is given back once the queue is empty, so a connection
/// that once sent a burst does not keep its buffer while idle.
const WRITE_BATCH_KEPT_BYTES: usize = 4 * 1024;

/// The reading half of a byte stream.
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// How long a frame may take to arrive once its first byte has, by default: 10 s is ample for
/// 16 MiB on any link a call should use, and bounds how long a stalled peer holds its bytes.
pub const FRAME_DEADLINE_DEFAULT: Duration = Duration::from_secs(10);

/// How a stream transport reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest message accepted; a longer one is refused as its length prefix arrives.
    pub message_bytes_max: u64,
    /// How long a message may take to arrive once its first byte has (`None`: no bound, as a
    /// client reading its own replies may choose).
    pub frame_deadline: Option<Duration>,
    /// The budget this connection's buffers and messages are charged to (a server's, shared by
    /// all its connections; `None` charges nothing).
    pub budget: Option<budget::Budget>,
}

impl Config {
    /// Messages up to `message_bytes_max`, no deadline, no budget (a client's transport).
    pub fn new(message_bytes_max: u64) -> Self {
        Self {
            message_bytes_max,
            frame_deadline: None,
            budget: None,
        }
    }
}

/// A message on its way out, with the charge that pays for it until it is written.
struct Outgoing {
    message: Bytes,
    _charge: Option<budget::Charge>,
}

/// A message transport over any split byte stream (TCP and Unix sockets use it).
pub struct Transport {
    inbound: tokio::sync::Mutex<Inbound>,
    outbox: transport::Outbox<Outgoing>,
    writer: JoinHandle<()>,
    /// Turns true when the writer has ended (everything written, or the stream gone).
    written: tokio::sync::watch::Receiver<bool>,
    message_bytes_max: u64,
    budget: Option<budget::Budget>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("stream::Transport")
            .field("message_bytes_max", &self.message_bytes_max)
            .finish()
    }
}

impl Transport {
    /// Frames messages over `reader`/`writer` as `config` says.
    pub fn new(reader: Reader, writer: Writer, config: Config) -> Self {
        let (outbox, queue) = mpsc::channel(OUTBOX_CAPACITY);
        let (ended, written) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn(write_loop(queue, writer, Ended(ended)));
        let message_bytes_max = config.message_bytes_max;
        let budget = config.budget.clone();
        Self {
            inbound: tokio::sync::Mutex::new(Inbound::new(reader, config)),
            outbox: transport::Outbox::new(outbox),
            writer,
            written,
            message_bytes_max,
            budget,
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
        let charge = match &self.budget {
            Some(budget) => Some(budget.charge(message_bytes).await?),
            None => None,
        };
        let outgoing = Outgoing {
            message,
            _charge: charge,
        };
        sender
            .send(outgoing)
            .await
            .map_err(|_| transport::Error::Closed)
    }

    async fn recv_message(&self) -> Result<Option<Bytes>, transport::Error> {
        self.inbound.lock().await.recv().await
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

    fn flushed(&self) -> BoxFuture<'_, ()> {
        let mut written = self.written.clone();
        Box::pin(async move {
            // An error: the writer is gone (ended, or aborted with its transport).
            let _ = written.wait_for(|written| *written).await;
        })
    }
}

/// Says the writer ended when it is dropped: at its end, or when it is aborted.
struct Ended(tokio::sync::watch::Sender<bool>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// Writes queued messages, one batch per write; ends (shutting the stream down) when every
/// sender is gone, or on the first write error.
async fn write_loop(mut queue: mpsc::Receiver<Outgoing>, mut writer: Writer, _ended: Ended) {
    let mut batch = Vec::new();
    while let Some(first) = queue.recv().await {
        if let Err(error) = write_batch(&mut writer, &mut queue, &mut batch, first).await {
            tracing::debug!(%error, "stream writer stopped");
            return;
        }
        batch.clear();
        if batch.capacity() > WRITE_BATCH_KEPT_BYTES {
            batch = Vec::new();
        }
    }
    let _ = writer.shutdown().await;
}

/// Writes `first` and whatever else is queued: small messages copied into `batch` and written
/// together, a large one from its own bytes.
async fn write_batch(
    writer: &mut Writer,
    queue: &mut mpsc::Receiver<Outgoing>,
    batch: &mut Vec<u8>,
    first: Outgoing,
) -> std::io::Result<()> {
    let mut written = Vec::new();
    let mut next = Some(first);
    while let Some(outgoing) = next.take() {
        let message = &outgoing.message;
        let length = u32::try_from(message.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        batch.extend_from_slice(&length.to_le_bytes());
        if message.len() > WRITE_BATCH_BYTES {
            writer.write_all(batch).await?;
            batch.clear();
            writer.write_all(message).await?;
        } else {
            batch.extend_from_slice(message);
        }
        // Kept until written: its charge pays for it until then.
        written.push(outgoing);
        if batch.len() < WRITE_BATCH_BYTES {
            next = queue.try_recv().ok();
        }
    }
    writer.write_all(batch).await?;
    writer.flush().await
}
