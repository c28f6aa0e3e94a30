//! Helpers shared by the exorun-transport suites: calls from a raw slab, and replies.

#![allow(
    dead_code,
    reason = "each suite uses a different subset of the helpers"
)]

use std::time::Duration;

use bytes::Bytes;
use exorun_transport::client;
use exorun_transport::client::Client;
use neorpc::frame;

/// Calls `method` on `target` with `args` as the slab, with the client's default timeout.
pub async fn call(
    client: &Client,
    target: &str,
    method: &str,
    args: &[u8],
) -> Result<Bytes, client::Error> {
    let frame = frame::encode_call(target, method, args, &[]).expect("a small call frame");
    client.call(frame).await
}

/// `call` with its own time limit.
pub async fn call_within(
    client: &Client,
    target: &str,
    method: &str,
    args: &[u8],
    timeout: Duration,
) -> Result<Bytes, client::Error> {
    let frame = frame::encode_call(target, method, args, &[]).expect("a small call frame");
    client.call_within(frame, timeout).await
}

/// A successful reply to `seq` carrying `results` verbatim.
pub fn reply_ok(seq: frame::Seq, results: &[u8]) -> Bytes {
    Bytes::from(frame::encode_reply(seq, Ok(results)).expect("a small reply frame"))
}
