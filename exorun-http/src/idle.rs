//! Which connections are doing nothing: each open connection's requests in progress and since
//! when it has been idle (no request in progress: a kept-alive connection between requests, or
//! a new one whose first request head has not arrived), and, when the server is full, the one
//! to shed: the connection idle the longest, as production proxies drop idle connections under
//! pressure rather than refuse a new one. A connection with a request in progress is never
//! shed here (its bounds are the request's own: body, handler and write deadlines).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::PoisonError;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The open connections of one server.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Tracked>>>,
}

/// One open connection: its requests in progress and when it last went idle.
#[derive(Debug)]
pub(crate) struct Tracked {
    busy: AtomicUsize,
    /// Milliseconds since the process's first connection, when it last went idle.
    idle_since_ms: AtomicU64,
    /// Ends its task (set once the task is spawned).
    abort: OnceLock<tokio::task::AbortHandle>,
}

/// A request in progress on a connection: the connection is busy until it is dropped (with the
/// request's answer, once written).
#[derive(Debug)]
pub(crate) struct Busy(Arc<Tracked>);

impl Registry {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Tracked>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new connection in, idle from now; its id and its state.
    pub(crate) fn enter(&self) -> (u64, Arc<Tracked>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(Tracked {
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(now_ms()),
            abort: OnceLock::new(),
        });
        self.open().insert(id, Arc::clone(&tracked));
        (id, tracked)
    }

    /// Counts connection `id` out (it ended).
    pub(crate) fn leave(&self, id: u64) {
        self.open().remove(&id);
    }

    /// Ends the connection idle the longest, if any is idle; whether one was. It is counted
    /// out at once (its task ends at its next turn), so it is never chosen twice.
    pub(crate) fn shed_one(&self) -> bool {
        let mut open = self.open();
        let idle = open
            .iter()
            .filter(|(_, tracked)| tracked.busy.load(Ordering::Acquire) == 0)
            .filter(|(_, tracked)| tracked.abort.get().is_some())
            .min_by_key(|(_, tracked)| tracked.idle_since_ms.load(Ordering::Acquire))
            .map(|(id, _)| *id);
        let Some(tracked) = idle.and_then(|id| open.remove(&id)) else {
            return false;
        };
        if let Some(abort) = tracked.abort.get() {
            abort.abort();
        }
        true
    }
}

impl Tracked {
    /// Its task, which shedding aborts.
    pub(crate) fn spawned(&self, abort: tokio::task::AbortHandle) {
        let _ = self.abort.set(abort);
    }

    /// A request begins on it.
    pub(crate) fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since_ms.store(now_ms(), Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    exorun_common::millis(start.elapsed())
}

/// An answer's body that keeps its connection busy until it is written (or dropped).
#[derive(Debug)]
pub(crate) struct Answering<B> {
    inner: B,
    _busy: Busy,
}

impl<B> Answering<B> {
    pub(crate) fn new(inner: B, busy: Busy) -> Self {
        Self { inner, _busy: busy }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Answering<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_connection_idle_the_longest_is_shed_and_a_busy_one_never() {
        let registry = Registry::default();
        let forever = || tokio::spawn(std::future::pending::<()>());
        let (_, oldest) = registry.enter();
        let oldest_task = forever();
        oldest.spawned(oldest_task.abort_handle());
        let (_, busy) = registry.enter();
        let busy_task = forever();
        busy.spawned(busy_task.abort_handle());
        let request = busy.begin();
        assert!(registry.shed_one());
        assert!(oldest_task.await.is_err_and(|error| error.is_cancelled()));
        // The one left is busy (and one never spawned is not a candidate): nothing is shed.
        let (id, gone) = registry.enter();
        registry.leave(id);
        drop(gone);
        assert!(!registry.shed_one());
        drop(request);
        assert!(registry.shed_one(), "idle once its request is answered");
        assert!(busy_task.await.is_err_and(|error| error.is_cancelled()));
    }
}
