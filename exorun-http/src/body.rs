//! The bodies a request's life passes through: its own, cut at its size and time bounds
//! ([`Bounded`]), and its handler's answer, which ends cleanly only when the handler's call
//! returned ([`Finishing`]).

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::task::Poll;

use bytes::Bytes;
use hyper::body::Incoming;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::config::Config;

/// The request body, cut at its size and time bounds.
pub(crate) fn bounded(body: Incoming, config: &Config) -> Bounded {
    let max = usize::try_from(config.body_bytes_max).unwrap_or(usize::MAX);
    Bounded {
        inner: http_body_util::Limited::new(body, max),
        deadline: Box::pin(tokio::time::sleep(config.body_timeout)),
        max: config.body_bytes_max,
    }
}

/// A request body with a size bound and a deadline.
pub(crate) struct Bounded {
    inner: http_body_util::Limited<Incoming>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    max: u64,
}

impl hyper::body::Body for Bounded {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        // What has arrived is read first, however late it is read (a request may have waited
        // for a replica); the deadline is for bytes still to come.
        let max = self.max;
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending() && self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout)));
        }
        polled.map(|frame| frame.map(|frame| frame.map_err(|error| body_error(error, max))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Why a request body failed: past its size, or the connection's own error.
fn body_error(
    error: Box<dyn std::error::Error + Send + Sync>,
    max: u64,
) -> wasmtime_wasi_http::Error {
    match error.downcast::<hyper::Error>() {
        Ok(hyper) => wasmtime_wasi_http::Error::Hyper(*hyper),
        Err(_) => wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max)),
    }
}

/// A handler's answer body that ends cleanly only when the handler's call returned: the body
/// wasmtime-wasi-http hands over also ends cleanly when the store it was written from is
/// dropped (a trap, a call cut at the deadline), which would pass a cut answer off as whole.
pub(crate) struct Finishing {
    inner: HyperOutgoingBody,
    /// Whether `inner` ended (it is not polled again).
    ended: bool,
    /// Whether the call returned; taken when it is known.
    outcome: Option<tokio::sync::oneshot::Receiver<bool>>,
}

impl Finishing {
    pub(crate) fn new(
        inner: HyperOutgoingBody,
        outcome: tokio::sync::oneshot::Receiver<bool>,
    ) -> Self {
        let outcome = Some(outcome);
        Self {
            inner,
            ended: false,
            outcome,
        }
    }
}

impl hyper::body::Body for Finishing {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if !self.ended {
            let polled = Pin::new(&mut self.inner).poll_frame(cx);
            let Poll::Ready(None) = polled else {
                return polled;
            };
            self.ended = true;
        }
        // The body ended: it is whole if the call returned (waiting for the call to end, which
        // the request deadline bounds).
        let Some(outcome) = self.outcome.as_mut() else {
            return Poll::Ready(None);
        };
        let Poll::Ready(returned) = Pin::new(outcome).poll(cx) else {
            return Poll::Pending;
        };
        self.outcome = None;
        match returned {
            Ok(true) => Poll::Ready(None),
            Ok(false) | Err(_) => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpProtocolError)))
            }
        }
    }
}
