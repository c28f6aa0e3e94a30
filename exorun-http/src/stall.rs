//! A connection's bytes with a deadline on stalled writes: while answer bytes wait for a
//! client that takes none of them, a timer runs; past `Bounds::write_timeout` the
//! write fails and hyper closes the connection. Any progress resets it. Without this, a client
//! that asks for a large answer and never reads it would hold its connection (and its place in
//! the connection bounds) for good once the handler has returned.

use std::pin::Pin;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::io::ReadBuf;

/// `inner` whose writes fail once they have made no progress for `timeout`.
pub(crate) struct Stall<S> {
    inner: S,
    timeout: Duration,
    /// Running while a write (or flush) waits; `None` after progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Stall<S> {
    pub(crate) fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// What a write that returned `polled` means: progress resets the timer; a wait starts it
    /// (once) and, past the timeout, fails.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.stalled = None;
        let message = format!("the client took no answer bytes for {timeout:?}");
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            message,
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stall<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stall<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;

    /// A peer that reads nothing: writes fill the pipe, then fail after the timeout with
    /// `TimedOut`; a peer that reads lets every write through.
    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_takes_fails_after_the_timeout() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut stalled = Stall::new(near, Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        let written = stalled.write_all(&[7; 4096]).await;
        let error = written.err().map(|error| error.kind());
        assert_eq!(error, Some(std::io::ErrorKind::TimedOut));
        assert_eq!(started.elapsed(), Duration::from_secs(5));

        let (near, mut far_reading) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far_reading.read_to_end(&mut all).await.map(|_| all.len())
        });
        let mut flowing = Stall::new(near, Duration::from_secs(5));
        let written = flowing.write_all(&[7; 64 * 1024]).await;
        assert!(written.is_ok());
        drop(flowing);
        assert_eq!(reader.await.ok().and_then(Result::ok), Some(64 * 1024));
        let mut first = [0; 16];
        assert_eq!(far.read(&mut first).await.ok(), Some(16));
    }
}
