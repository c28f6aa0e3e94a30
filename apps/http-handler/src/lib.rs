//! http-handler: a `wasi:http/incoming-handler` whose answers come from its imported `math`
//! (linked locally or remotely, like any import). Pages, by the path's last segment (wherever
//! the handler is routed):
//! - `/add?a=A&b=B`: `200` with `A + B = SUM` computed by `math.add`;
//! - `/echo` (a request body): `200` with the body's length in bytes;
//! - `/fetch?url=URL`: a GET of `URL` through `wasi:http/outgoing-handler`, answered with
//!   `fetched STATUS` or `refused: ERROR`;
//! - `/trap`: executes `unreachable` (the runtime answers 500);
//! - `/partial`: sets `200`, writes 1000 bytes of its body, then executes `unreachable` (the
//!   client must see a cut answer, not a complete one);
//! - `/big?kib=N`: `200` with N KiB of `x` (a client that never reads it holds the connection);
//! - anything else: `200` with `hello from exorun PATH`.

wit_bindgen::generate!({ path: "../wit", world: "exorun:test/http-handler", generate_all });

use wasip2::http::outgoing_handler;
use wasip2::http::types::Fields;
use wasip2::http::types::IncomingRequest;
use wasip2::http::types::OutgoingBody;
use wasip2::http::types::OutgoingRequest;
use wasip2::http::types::OutgoingResponse;
use wasip2::http::types::ResponseOutparam;
use wasip2::http::types::Scheme;

struct Handler;

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        // The last segment names the page, wherever the handler is routed.
        let page = path.rsplit('/').next().unwrap_or_default();
        let (status, body) = match page {
            "add" => add(query),
            "echo" => (200, format!("{} bytes", body_length(&request))),
            "fetch" => (200, fetch(param(query, "url").unwrap_or_default())),
            "trap" => core::arch::wasm32::unreachable(),
            // Runs until its fuel or the request deadline ends it.
            "spin" => loop {
                core::hint::spin_loop();
            },
            "partial" => partial(out),
            "big" => {
                let kib = param(query, "kib").and_then(|text| text.parse::<usize>().ok());
                (200, "x".repeat(kib.unwrap_or(1).min(16 * 1024) * 1024))
            }
            _ => (200, format!("hello from exorun {path}")),
        };
        respond(out, status, body.as_bytes());
    }
}

wasip2::http::proxy::export!(Handler);

/// The value of `name` in a query string.
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    let pairs = query.split('&').filter_map(|pair| pair.split_once('='));
    pairs.into_iter().find(|(key, _)| *key == name).map(|(_, value)| value)
}

fn add(query: &str) -> (u16, String) {
    let number = |name| param(query, name).and_then(|text| text.parse::<u32>().ok());
    let (Some(a), Some(b)) = (number("a"), number("b")) else {
        return (400, "give a and b as numbers".to_owned());
    };
    (200, format!("{a} + {b} = {}", exorun::test::math::add(a, b)))
}

/// Reads the whole request body, counting its bytes.
fn body_length(request: &IncomingRequest) -> u64 {
    let Ok(body) = request.consume() else {
        return 0;
    };
    let Ok(stream) = body.stream() else {
        return 0;
    };
    let mut length = 0;
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        length += chunk.len() as u64;
    }
    length
}

/// A GET of `url` (`http://HOST[:PORT]/PATH`) through the outgoing handler.
fn fetch(url: &str) -> String {
    let Some(rest) = url.strip_prefix("http://") else {
        return "refused: give an http:// url".to_owned();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(&path));
    let future = match outgoing_handler::handle(request, None) {
        Ok(future) => future,
        Err(error) => return format!("refused: {error:?}"),
    };
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => format!("fetched {}", response.status()),
        Some(Ok(Err(error))) => format!("refused: {error:?}"),
        Some(Err(())) | None => "refused: no response".to_owned(),
    }
}

/// Sets `200`, sends 1000 bytes of the body, and traps before finishing it.
fn partial(out: ResponseOutparam) -> ! {
    let response = OutgoingResponse::new(Fields::new());
    let outgoing = response.body().ok();
    ResponseOutparam::set(out, Ok(response));
    if let Some(stream) = outgoing.as_ref().and_then(|outgoing| outgoing.write().ok()) {
        let _ = stream.blocking_write_and_flush(&[b'p'; 1000]);
    }
    core::arch::wasm32::unreachable()
}

/// Answers `status` with `body` (written in chunks the stream accepts).
fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in body.chunks(4096) {
            let _ = stream.blocking_write_and_flush(chunk);
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
