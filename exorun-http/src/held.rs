//! What a request holds in memory, and for how long: its body, read whole (within its bounds)
//! before it takes a replica, so a client that dribbles a body holds no replica; and its
//! answer, taken from the handler as it writes it, so a handler is done (and its replica
//! free) once its answer is produced, whether or not the client reads it. Both count against
//! one byte budget of the server's (`Config::held_bytes_max`); an answer that would pass it,
//! or its own bound, or that is not whole within `Config::answer_whole_within`, streams
//! instead (its handler's replica held while the client reads, bounded by the write
//! deadline). An answer taken whole is sent with its `Content-Length`; one whose handler did
//! not return (it trapped, or was cut at the deadline) is answered 500, never sent as if it
//! were whole.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::body::Bounded;
use crate::body::Finishing;

/// The server's byte budget for bodies and answers held in memory.
#[derive(Debug, Clone)]
pub(crate) struct Budget(Arc<Semaphore>);

/// Bytes held against the budget (given back when dropped).
#[derive(Debug)]
pub(crate) struct Held(Option<OwnedSemaphorePermit>);

impl Budget {
    pub(crate) fn new(bytes: u64) -> Self {
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        Self(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    /// `bytes` more for `held`, or `false` when the budget is spent.
    fn take(&self, held: &mut Held, bytes: usize) -> bool {
        let Ok(bytes) = u32::try_from(bytes) else {
            return false;
        };
        let Ok(more) = Arc::clone(&self.0).try_acquire_many_owned(bytes) else {
            return false;
        };
        match &mut held.0 {
            Some(permit) => permit.merge(more),
            None => held.0 = Some(more),
        }
        true
    }
}

/// Why a request body was not read whole.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Past its bound, its deadline, or its connection's end (what the body reader said).
    Body(wasmtime_wasi_http::Error),
    /// The server holds all it may in memory now.
    Budget,
}

/// Reads `body` whole within its bounds, holding its bytes against `budget`.
pub(crate) async fn read_body(
    mut body: Bounded,
    budget: &Budget,
) -> Result<(Bytes, Held), Refused> {
    let mut held = Held(None);
    let mut whole = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Refused::Body)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: a handler sees none
        };
        if !budget.take(&mut held, data.len()) {
            return Err(Refused::Budget);
        }
        whole.extend_from_slice(&data);
    }
    Ok((Bytes::from(whole), held))
}

/// A whole request body, as a handler's `incoming-request` reads it.
pub(crate) fn body_of(
    bytes: Bytes,
) -> http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error> {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// What an answer's body became: taken whole (and whether its handler returned), or begun and
/// to be streamed.
pub(crate) enum Answer {
    /// Every byte, held against the budget; `returned`: the handler's call ended well.
    Whole {
        body: Bytes,
        held: Held,
        returned: bool,
    },
    /// What was taken so far, and the rest, to stream (ending cleanly only if the handler
    /// returns).
    Streaming(Replay),
}

/// Takes `body` from the handler as it writes it, until it ends (then waits for the call's
/// outcome), passes `bytes_max` or the budget, or is not whole within `whole_within`.
pub(crate) async fn take_answer(
    mut body: HyperOutgoingBody,
    mut returned: tokio::sync::oneshot::Receiver<bool>,
    (budget, bytes_max, whole_within): (&Budget, u64, Duration),
) -> Answer {
    let mut held = Held(None);
    let mut taken: VecDeque<Bytes> = VecDeque::new();
    let mut trailers = None;
    let mut size: u64 = 0;
    let deadline = tokio::time::sleep(whole_within);
    let mut deadline = std::pin::pin!(deadline);
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = &mut deadline => break,
        };
        let Some(Ok(frame)) = frame else {
            // Ended (or failed: the call's outcome says whether the answer is whole).
            let returned = frame.is_none() && (&mut returned).await.unwrap_or(false);
            let body = taken.into_iter().flatten_bytes();
            return Answer::Whole {
                body,
                held,
                returned,
            };
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                trailers = Some(frame); // streamed as they are, after what was taken
                break;
            }
        };
        size = size.saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
        let fits = size <= bytes_max && budget.take(&mut held, data.len());
        taken.push_back(data);
        if !fits {
            break;
        }
    }
    Answer::Streaming(Replay {
        taken,
        trailers,
        rest: Finishing::new(body, returned),
        _held: held,
    })
}

/// Joins byte chunks into one.
trait FlattenBytes {
    fn flatten_bytes(self) -> Bytes;
}

impl<I: Iterator<Item = Bytes>> FlattenBytes for I {
    fn flatten_bytes(self) -> Bytes {
        let chunks: Vec<Bytes> = self.collect();
        if let [one] = &chunks[..] {
            return one.clone();
        }
        let mut whole = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
        chunks
            .iter()
            .for_each(|chunk| whole.extend_from_slice(chunk));
        Bytes::from(whole)
    }
}

/// A whole answer's body: its bytes (so hyper sends its `Content-Length`), held against the
/// budget until written.
pub(crate) struct Whole {
    body: http_body_util::Full<Bytes>,
    _held: Held,
}

impl Whole {
    pub(crate) fn new(body: Bytes, held: Held) -> Self {
        Self {
            body: http_body_util::Full::new(body),
            _held: held,
        }
    }
}

impl hyper::body::Body for Whole {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        polled.map(|frame| frame.map(|frame| frame.map_err(|never| match never {})))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A streamed answer: what was taken first, then the rest as the handler writes it.
pub(crate) struct Replay {
    taken: VecDeque<Bytes>,
    trailers: Option<hyper::body::Frame<Bytes>>,
    rest: Finishing,
    _held: Held,
}

impl hyper::body::Body for Replay {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if let Some(data) = self.taken.pop_front() {
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(data))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(trailers)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}
