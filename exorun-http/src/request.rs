//! Answering one request: its trace, its bounded body, the call of its route's handler in a
//! replica's store, and the runtime's own answers when there is no other.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use exorun_common::Throttle;
use exorun_core::call;
use exorun_core::instance;
use exorun_core::trace;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use wasmtime::component::ResourceAny;
use wasmtime::component::Val;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::body::Bounded;
use crate::config::Config;
use crate::held;
use crate::routes::Route;

/// The request's span: a child of the caller's W3C `traceparent`, or the root of a new trace.
pub(crate) fn traced(request: &hyper::Request<Incoming>) -> trace::Span {
    let header = request.headers().get("traceparent");
    let parent = header
        .and_then(|value| value.to_str().ok())
        .and_then(traceparent);
    match parent {
        Some((trace_id, parent_id, flags)) => trace::Span::child_of(trace_id, parent_id, flags),
        None => trace::Span::root(),
    }
}

/// `00-TRACEID-PARENTID-FLAGS` (W3C trace context, version 00).
fn traceparent(text: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let mut parts = text.trim().split('-');
    let (Some("00"), Some(trace), Some(parent), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let trace_id: [u8; 16] = unhex(trace)?.try_into().ok()?;
    let parent_id: [u8; 8] = unhex(parent)?.try_into().ok()?;
    let [flags] = unhex(flags)?[..] else {
        return None;
    };
    let zero = trace_id == [0; 16] || parent_id == [0; 8];
    (!zero).then_some((trace_id, parent_id, flags))
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let pairs = text.as_bytes().chunks(2);
    let byte = |pair: &[u8]| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok();
    pairs.map(byte).collect()
}

/// Hands a request's span to the exporter: `http request`, its route and status; its outcome
/// `ok`, or the status when the runtime or the handler answered 5xx.
pub(crate) fn finish_span(
    span: trace::Span,
    route: &str,
    status: hyper::StatusCode,
    elapsed: Duration,
) {
    let now = std::time::SystemTime::now();
    let outcome = if status.is_server_error() {
        status.as_str()
    } else {
        "ok"
    };
    trace::finish(&trace::Finished {
        span,
        kind: trace::Kind::Server,
        name: "http request",
        started: now.checked_sub(elapsed).unwrap_or(now),
        elapsed,
        attributes: &[
            ("exorun.route", route),
            ("http.response.status_code", status.as_str()),
        ],
        outcome,
    });
}

/// A short answer of the runtime's own.
pub(crate) fn plain(status: u16, text: String) -> hyper::Response<HyperOutgoingBody> {
    let body = http_body_util::Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// How one request is handled: its scheme, its source, the server's bounds and byte budget,
/// and the signal that the server's `serve` is over (the handler's call is cut then).
pub(crate) struct Settings {
    pub(crate) scheme: Scheme,
    pub(crate) source: std::net::IpAddr,
    pub(crate) config: Config,
    pub(crate) budget: held::Budget,
    pub(crate) closed: tokio::sync::watch::Receiver<bool>,
}

/// Runs `route`'s handler for `request`: its body read whole first, its turn of the route's
/// replicas (its source's share), a replica taken, the request's resources made in its store,
/// `handle` called on a task of its own, and the answer taken from it as it is written (see
/// `held`); or the runtime's 4xx, 500 or 503 saying why there is none.
pub(crate) async fn handle(
    route: &Route,
    request: hyper::Request<Bounded>,
    settings: Settings,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> hyper::Response<HyperOutgoingBody> {
    let (parts, body) = request.into_parts();
    let (body, body_held) = match held::read_body(body, &settings.budget).await {
        Ok(read) => read,
        Err(refused) => return refused_body(&route.name, refused),
    };
    let request = hyper::Request::from_parts(parts, held::body_of(body));
    let deadline = settings.config.request_timeout;
    let turn = tokio::time::timeout(deadline, route.shares.turn(settings.source)).await;
    let Ok(turn) = turn else {
        return plain(
            503,
            format!("{} is busy with this address's requests\n", route.name),
        );
    };
    let lease = match lease(route).await {
        Ok(lease) => lease,
        Err(refused) => return refused,
    };
    let (sender, answer) = tokio::sync::oneshot::channel();
    let (ended, outcome) = tokio::sync::oneshot::channel();
    let holding = (slot, turn, body_held);
    let call = call_handler(route, (lease, request, sender), &settings, (holding, ended));
    // The task runs in the request's context (its party, as the lease was taken; its span).
    let mut task = tokio::spawn(call::Context::current().scope(call));
    let mut answer = answer;
    // The answer, or the end of the call without one (a handler cut at the deadline leaves
    // its response-outparam in a store that is only dropped at the replica's restart); how
    // the call ended, once known (a task is awaited once).
    let mut call_ended = None;
    let answered = tokio::select! {
        answered = &mut answer => answered,
        ended = &mut task => match answer.try_recv() {
            Ok(answered) => {
                call_ended = Some(ended);
                Ok(answered)
            }
            Err(_) => return failed(&route.name, ended),
        },
    };
    let response = match answered {
        Ok(Ok(response)) => response,
        Ok(Err(code)) => {
            return plain(500, format!("{} answered an error: {code:?}\n", route.name));
        }
        Err(_) => return failed(&route.name, task.await),
    };
    let config = &settings.config;
    let (parts, body) = response.into_parts();
    let taking = (
        &settings.budget,
        config.answer_bytes_max,
        config.answer_whole_within,
    );
    match held::take_answer(body, outcome, taking).await {
        held::Answer::Whole {
            body,
            held,
            returned: true,
        } => hyper::Response::from_parts(parts, held::Whole::new(body, held).boxed_unsync()),
        held::Answer::Whole { .. } => match call_ended {
            Some(ended) => failed(&route.name, ended),
            None => failed(&route.name, task.await),
        },
        held::Answer::Streaming(replay) => {
            hyper::Response::from_parts(parts, replay.boxed_unsync())
        }
    }
}

/// A replica of `route`'s instance, or the 503 saying why there is none.
async fn lease(route: &Route) -> Result<instance::Lease, hyper::Response<HyperOutgoingBody>> {
    match route.handle.lease(0).await {
        Ok(lease) => Ok(lease),
        Err(
            instance::Error::Busy { .. }
            | instance::Error::TooManyWaiting { .. }
            | instance::Error::TooManyBytesWaiting { .. },
        ) => Err(plain(503, format!("{} is overloaded\n", route.name))),
        Err(error) => {
            WARNINGS.note(|skipped| {
                tracing::warn!(route = %route.name, skipped, "no instance for a request: {error}");
            });
            Err(plain(503, format!("{} is unavailable\n", route.name)))
        }
    }
}

/// Where a handler's `response-outparam` sends its answer (or the error code it set).
type Answering = tokio::sync::oneshot::Sender<
    Result<
        hyper::Response<HyperOutgoingBody>,
        wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
    >,
>;

/// What a handler's call holds until it ends: the request slot, its source's turn of the
/// route's replicas, and its body's bytes.
type Holding = (
    tokio::sync::OwnedSemaphorePermit,
    crate::share::Turn,
    held::Held,
);

/// The handler's call, within the request deadline and cut when the server's `serve` is over;
/// it says how it ended on `ended`, and lets go of the replica and what it holds at its end.
fn call_handler(
    route: &Route,
    (lease, request, sender): (
        instance::Lease,
        hyper::Request<
            http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>,
        >,
        Answering,
    ),
    settings: &Settings,
    (holding, ended): (Holding, tokio::sync::oneshot::Sender<bool>),
) -> impl Future<Output = Result<(), String>> + Send + 'static {
    let export = route.export.clone();
    let deadline = settings.config.request_timeout;
    let (scheme, closed) = (settings.scheme.clone(), settings.closed.clone());
    async move {
        let mut lease = lease;
        let make =
            move |mut store: wasmtime::StoreContextMut<'_, exorun_core::context::ExorunCtx>| {
                let mut view = exorun_systems::http::view(store.data_mut());
                let request = view.new_incoming_request(scheme, request)?;
                let out = view.new_response_outparam(sender)?;
                let request = ResourceAny::try_from_resource(request, &mut store)?;
                let out = ResourceAny::try_from_resource(out, &mut store)?;
                Ok(vec![Val::Resource(request), Val::Resource(out)])
            };
        let called = lease.call_made(&export, make, &mut []);
        // Past the deadline, or once the server has stopped, the call is dropped mid-way:
        // its lease fails the replica, which is restarted for the next call.
        let called = until_closed(tokio::time::timeout(deadline, called), closed).await;
        let called = match called {
            Some(Ok(called)) => called.map_err(|error| format!("failed: {error}")),
            Some(Err(_)) => Err(format!("ran past the request deadline of {deadline:?}")),
            None => Err("was cut: the server stopped".to_owned()),
        };
        // The replica is free from here, with the request slot, the source's turn and the
        // body's bytes.
        drop(lease);
        drop(holding);
        let _ = ended.send(called.is_ok());
        called
    }
}

/// The answer to a request whose body was not read whole.
fn refused_body(name: &str, refused: held::Refused) -> hyper::Response<HyperOutgoingBody> {
    match refused {
        held::Refused::Budget => plain(
            503,
            "the server holds all the request bodies it may\n".to_owned(),
        ),
        held::Refused::Body(wasmtime_wasi_http::Error::HttpRequestBodySize(max)) => {
            let max = max.unwrap_or_default();
            plain(
                413,
                format!("{name} takes request bodies of at most {max} bytes\n"),
            )
        }
        held::Refused::Body(wasmtime_wasi_http::Error::ConnectionReadTimeout) => {
            plain(408, "the request body did not arrive in time\n".to_owned())
        }
        held::Refused::Body(error) => plain(
            400,
            format!("the request body could not be read: {error}\n"),
        ),
    }
}

/// `work`'s output, or `None` once `closed` turns true (or its server is gone).
async fn until_closed<F: Future>(
    work: F,
    mut closed: tokio::sync::watch::Receiver<bool>,
) -> Option<F::Output> {
    tokio::select! {
        done = work => Some(done),
        _ = closed.wait_for(|closed| *closed) => None,
    }
}

/// The 500 of a handler that never answered: how its call ended.
fn failed(
    name: &str,
    ended: Result<Result<(), String>, tokio::task::JoinError>,
) -> hyper::Response<HyperOutgoingBody> {
    let why = match ended {
        Ok(Ok(())) => "returned without answering".to_owned(),
        Ok(Err(why)) => why,
        Err(error) => format!("failed: {error}"),
    };
    WARNINGS.note(|skipped| {
        tracing::warn!(route = %name, skipped, "a request got no answer: the handler {why}");
    });
    plain(500, format!("the handler of {name} {why}\n"))
}

/// Warnings about requests: at most one a second over the process, so a client cannot flood
/// the log (each request is counted by its status anyway).
static WARNINGS: Throttle = Throttle::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_reads_version_00_only() {
        let parsed = traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let (trace_id, parent_id, flags) = parsed.unwrap_or_else(|| panic!("not read"));
        assert_eq!(trace_id[0], 0x0a);
        assert_eq!(parent_id[7], 0x31);
        assert_eq!(flags, 1);
        for bad in [
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert_eq!(traceparent(bad), None, "{bad}");
        }
    }
}
