//! What the transport benches share: the trivial echo dispatcher they serve, and the timing of
//! CALLS calls spread over a number of workers.

#![allow(dead_code, reason = "each bench uses a different subset")]

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use exorun_common::BoxFuture;
use exorun_transport::client;
use exorun_transport::dispatch;
use neorpc::failure::Failure;
use neorpc::frame;

/// Calls per row: enough for a stable p99, few enough to finish in seconds.
pub(crate) const CALLS: usize = 40_000;
/// The argument slab of `add(10, 5)`.
pub(crate) const ADD_ARGS: [u8; 15] = [0x20, 0x0a, 0, 0, 0, 0x05, 10, 0, 0, 0, 0x05, 5, 0, 0, 0];

/// Answers every call with its own argument slab.
pub(crate) struct Echo;

impl dispatch::Dispatcher for Echo {
    fn dispatch(
        &self,
        call: frame::Call<'_>,
        _: &Bytes,
        _: &dispatch::Origin,
    ) -> BoxFuture<'static, dispatch::Outcome> {
        let reply =
            frame::encode_reply(call.seq, Ok(call.args)).map_err(|error| Failure::Internal {
                message: error.to_string(),
            });
        Box::pin(std::future::ready(reply))
    }
}

/// CALLS calls of `add` through `caller`, `in_flight` at once: (p50, p99, calls per second).
pub(crate) async fn measure(
    caller: Arc<dyn client::Channel>,
    in_flight: usize,
) -> (Duration, Duration, f64) {
    let call = move || {
        let caller = Arc::clone(&caller);
        async move {
            let frame =
                frame::encode_call("calc", "exorun:test/math#add", &ADD_ARGS, &[]).expect("frame");
            let timeout = caller.timeout();
            caller
                .call_within(frame, timeout)
                .await
                .expect("call")
                .expect("a reply");
        }
    };
    timed(in_flight, call).await
}

/// Runs `call` CALLS times over `in_flight` workers, each timing its own calls one after
/// another: (p50, p99, calls per second).
pub(crate) async fn timed<F, Call>(in_flight: usize, call: F) -> (Duration, Duration, f64)
where
    F: Fn() -> Call + Clone + Send + 'static,
    Call: Future<Output = ()> + Send + 'static,
{
    let per_worker = CALLS / in_flight;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let call = call.clone();
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let call_started = Instant::now();
                call().await;
                latencies.push(call_started.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::with_capacity(CALLS);
    while let Some(worker) = workers.join_next().await {
        latencies.extend(worker.expect("worker"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)];
    let calls = f64::from(u32::try_from(latencies.len()).expect("calls fit in u32"));
    (at(50), at(99), calls / elapsed.as_secs_f64())
}

/// `duration` in microseconds.
pub(crate) fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
