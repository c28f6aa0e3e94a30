//! http-hello: the trivial `wasi:http` handler the HTTP bench serves under `exorun serve
//! --http` and under `wasmtime serve` alike (it imports nothing but `wasi:http` and `wasi:io`):
//! every request is answered `200 hello`.

use wasip2::http::types::Fields;
use wasip2::http::types::IncomingRequest;
use wasip2::http::types::OutgoingBody;
use wasip2::http::types::OutgoingResponse;
use wasip2::http::types::ResponseOutparam;

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        let Ok(body) = response.body() else {
            return;
        };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(b"hello");
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

wasip2::http::proxy::export!(Hello);
