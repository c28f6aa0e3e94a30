//! Helpers shared by the exorun-transport suites: calls from a raw slab, and replies.

#![allow(
    dead_code,
    reason = "each suite uses a different subset of the helpers"
)]

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use exorun_common::BoxFuture;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::dispatch;
use neorpc::frame;
use tokio::sync::Notify;

/// Calls `method` on `target` with `args` as the slab, with the client's default timeout.
pub(crate) async fn call(
    client: &Client,
    target: &str,
    method: &str,
    args: &[u8],
) -> Result<client::Reply, client::Error> {
    let frame = frame::encode_call(target, method, args, &[]).expect("a small call frame");
    client.call(frame).await
}

/// `call` with its own time limit.
pub(crate) async fn call_within(
    client: &Client,
    target: &str,
    method: &str,
    args: &[u8],
    timeout: Duration,
) -> Result<client::Reply, client::Error> {
    let frame = frame::encode_call(target, method, args, &[]).expect("a small call frame");
    client.call_within(frame, timeout).await
}

/// A successful reply to `seq` carrying `results` verbatim.
pub(crate) fn reply_ok(seq: frame::Seq, results: &[u8]) -> Bytes {
    Bytes::from(frame::encode_reply(seq, Ok(results)).expect("a small reply frame"))
}

/// Answers every call with its own arguments, counting what it served and holding a call
/// whose method is `hold` until released.
#[derive(Default)]
pub(crate) struct Echo {
    /// Calls served.
    pub(crate) served: Arc<AtomicUsize>,
    /// Releases the calls held (`notify_waiters`).
    pub(crate) release: Arc<Notify>,
    /// Notified when a held call has arrived.
    pub(crate) arrived: Arc<Notify>,
}

impl dispatch::Dispatcher for Echo {
    fn dispatch(
        &self,
        call: frame::Call<'_>,
        message: &Bytes,
        _: &dispatch::Origin,
    ) -> BoxFuture<'static, dispatch::Outcome> {
        let (seq, args) = (call.seq, message.slice_ref(call.args));
        let hold = call.method == "hold";
        let (served, release, arrived) = (
            Arc::clone(&self.served),
            Arc::clone(&self.release),
            Arc::clone(&self.arrived),
        );
        Box::pin(async move {
            if hold {
                let released = release.notified();
                arrived.notify_waiters();
                released.await;
            }
            served.fetch_add(1, Ordering::SeqCst);
            Ok(frame::encode_reply(seq, Ok(&args)).unwrap())
        })
    }
}
