//! One trace across three real processes: a caller (`exorun run`), a relay (`exorun serve`,
//! whose `math` import is remote) and a provider. Each process logs its spans (`remote call`
//! on the calling side, `served call` on the serving side) with the trace id, its span id and
//! its parent's; the call frames carry the context between them. The test reads the three logs
//! and checks one trace id and an unbroken parent chain: caller -> relay -> relay's own call ->
//! provider.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::collections::BTreeMap;

use common::Server;
use common::manifest;
use common::text;

/// The fields of the log lines whose message is `message`: `key=value` pairs, unquoted.
fn spans(log: &str, message: &str) -> Vec<BTreeMap<String, String>> {
    let lines = log
        .lines()
        .filter(|line| line.contains(&format!(" {message} ")));
    let fields = |line: &str| {
        let pairs = line
            .split_whitespace()
            .filter_map(|word| word.split_once('='));
        let unquoted =
            pairs.map(|(key, value)| (key.to_owned(), value.trim_matches('"').to_owned()));
        unquoted.collect::<BTreeMap<_, _>>()
    };
    lines.map(fields).collect()
}

fn field<'a>(span: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    span.get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {key} in {span:?}"))
}

/// A provider and a relay (`exorun serve ARGS`, logging at `filter`) and a caller's manifest
/// whose `math` import is the relay: the three processes of a trace, names prefixed `prefix`.
fn three(prefix: &str, args: &[&str], filter: &str) -> (Server, Server, std::path::PathBuf) {
    let provider = manifest(&format!("{prefix}-provider"), common::PROVIDER);
    let provider = Server::start_args(&provider, args, filter);
    let relay = manifest(
        &format!("{prefix}-relay"),
        &r#"
[apps]
relay = "{fixtures}/relay.wasm"
[instances.relay]
app = "relay"
export = true
links = { "exorun:test/math" = { remote = "ADDRESS", target = "math" } }
"#
        .replace("ADDRESS", &provider.address),
    );
    let relay = Server::start_args(&relay, args, filter);
    let caller = manifest(
        &format!("{prefix}-caller"),
        &r#"
[apps]
math-consumer = "{fixtures}/math-consumer.wasm"
[instances.calc]
app = "math-consumer"
links = { "exorun:test/math" = { remote = "ADDRESS", target = "relay" } }
"#
        .replace("ADDRESS", &relay.address),
    );
    (provider, relay, caller)
}

#[test]
fn a_call_through_a_relay_is_one_trace_with_its_parent_chain() {
    let listen = ["--listen", "tcp://127.0.0.1:0"];
    let (provider, relay, caller) = three("traces", &listen, "exorun_bind=debug");
    let called = common::exorun()
        .env("RUST_LOG", "exorun_bind::link::remote=debug")
        .args(["run", caller.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(called.status.success(), "{}", text(&called.stderr));
    assert_eq!(text(&called.stdout), "calc: \"10 + 5 = 15\"\n");
    let (status, relay_log) = relay.interrupt();
    assert!(status.success(), "{relay_log}");
    let (status, provider_log) = provider.interrupt();
    assert!(status.success(), "{provider_log}");
    let caller_log = text(&called.stderr);
    let [first] = &spans(&caller_log, "remote call")[..] else {
        panic!("one call from the caller: {caller_log}")
    };
    let [relay_served] = &spans(&relay_log, "served call")[..] else {
        panic!("one call served by the relay: {relay_log}")
    };
    let [relay_call] = &spans(&relay_log, "remote call")[..] else {
        panic!("one call made by the relay: {relay_log}")
    };
    let [provided] = &spans(&provider_log, "served call")[..] else {
        panic!("one call served by the provider: {provider_log}")
    };
    let trace = field(first, "trace_id");
    assert_eq!(trace.len(), 32, "{first:?}");
    assert_eq!(
        field(first, "parent_id"),
        "0000000000000000",
        "the caller's span is the root"
    );
    for span in [relay_served, relay_call, provided] {
        assert_eq!(field(span, "trace_id"), trace, "{span:?}");
    }
    assert_eq!(field(relay_served, "parent_id"), field(first, "span_id"));
    assert_eq!(
        field(relay_call, "parent_id"),
        field(relay_served, "span_id")
    );
    assert_eq!(field(provided, "parent_id"), field(relay_call, "span_id"));
    let ids = [first, relay_served, relay_call, provided].map(|span| field(span, "span_id"));
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 4, "{ids:?}");
}

/// An OTLP/HTTP receiver: accepts connections on loopback, answers every request 200, and
/// hands each decoded export request (with the path it was posted to) to the test.
struct Receiver {
    address: String,
    requests: std::sync::mpsc::Receiver<(String, ExportTraceServiceRequest)>,
}

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

impl Receiver {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (sender, requests) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let sender = sender.clone();
                std::thread::spawn(move || serve_connection(stream, &sender));
            }
        });
        Self { address, requests }
    }

    /// Every span received so far, as (service name, span).
    fn spans(&self) -> Vec<(String, OtlpSpan)> {
        let mut spans = Vec::new();
        while let Ok((path, request)) = self.requests.try_recv() {
            assert_eq!(path, "/v1/traces");
            spans.extend(request.resource_spans.into_iter().flat_map(resource_spans));
        }
        spans
    }
}

type OtlpSpan = opentelemetry_proto::tonic::trace::v1::Span;

/// The spans of one resource, each with "SERVICE-NAME SCOPE".
fn resource_spans(
    resource: opentelemetry_proto::tonic::trace::v1::ResourceSpans,
) -> Vec<(String, OtlpSpan)> {
    let attributes = resource.resource.unwrap().attributes;
    let service = attributes
        .iter()
        .find(|pair| pair.key == "service.name")
        .and_then(|pair| pair.value.clone())
        .map(|value| format!("{:?}", value.value))
        .unwrap();
    let mut spans = Vec::new();
    for scope in resource.scope_spans {
        let named = format!("{service} {}", scope.scope.unwrap().name);
        spans.extend(scope.spans.into_iter().map(|span| (named.clone(), span)));
    }
    spans
}

/// HTTP/1.1 requests on one connection until it closes: head, `content-length` body, an empty
/// 200 answer (an empty protobuf `ExportTraceServiceResponse`).
fn serve_connection(
    stream: std::net::TcpStream,
    sender: &std::sync::mpsc::Sender<(String, ExportTraceServiceRequest)>,
) {
    use std::io::BufRead;
    use std::io::Read;
    use std::io::Write;
    let mut writer = stream.try_clone().unwrap();
    let mut reader = std::io::BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line.split(' ').nth(1).unwrap().to_owned();
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let request = <ExportTraceServiceRequest as prost::Message>::decode(&body[..]).unwrap();
        sender.send((path, request)).unwrap();
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        writer.write_all(answer.as_bytes()).unwrap();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn attribute(span: &OtlpSpan, key: &str) -> String {
    let pair = span.attributes.iter().find(|pair| pair.key == key);
    let value = pair
        .and_then(|pair| pair.value.clone())
        .and_then(|value| value.value);
    let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(text)) = value
    else {
        panic!("no string {key} in {span:?}")
    };
    text
}

/// The same three processes with `--otlp` pointed at a receiver the test runs: each sends its
/// own spans, and they arrive as one trace with the parent chain across the three, the kinds
/// and names of each side, and the outcome. A caller sampling nothing (`--otlp-sample 0`)
/// starts a trace none of the three exports: the relay and provider keep its decision.
#[test]
fn three_processes_export_one_trace_to_an_otlp_collector() {
    let receiver = Receiver::start();
    let otlp = ["--otlp", receiver.address.as_str()];
    let args = [&["--listen", "tcp://127.0.0.1:0"][..], &otlp].concat();
    let (provider, relay, caller) = three("otlp", &args, "warn");
    for sample in ["0", "1"] {
        let called = common::exorun()
            .args(["run", caller.to_str().unwrap()])
            .args(otlp)
            .args(["--otlp-sample", sample])
            .output()
            .unwrap();
        assert!(called.status.success(), "{}", text(&called.stderr));
        assert_eq!(text(&called.stdout), "calc: \"10 + 5 = 15\"\n");
    }
    // Each process sends what it queued before it exits, and the receiver answered each
    // request before its sender went on: after the stops, every span is here.
    for server in [relay, provider] {
        let (status, log) = server.interrupt();
        assert!(status.success(), "{log}");
    }
    let spans = receiver.spans();
    assert_eq!(
        spans.len(),
        4,
        "four spans of one sampled trace: {spans:#?}"
    );
    // OTLP's span kinds.
    const SERVER: i32 = 2;
    const CLIENT: i32 = 3;
    let mut roots = spans
        .iter()
        .filter(|(_, span)| span.parent_span_id.is_empty());
    let (Some((service, root)), None) = (roots.next(), roots.next()) else {
        panic!("one root: {spans:#?}")
    };
    assert_eq!(
        service, "Some(StringValue(\"exorun\")) exorun",
        "service.name and scope"
    );
    assert_eq!((root.name.as_str(), root.kind), ("remote call", CLIENT));
    assert_eq!(attribute(root, "exorun.target"), "relay");
    assert_eq!(attribute(root, "exorun.method"), "exorun:test/math#add");
    let trace = hex(&root.trace_id);
    assert_eq!(trace.len(), 32);
    let served = |export: &str| {
        let mut found = spans.iter().map(|(_, span)| span).filter(|span| {
            (span.name.as_str(), span.kind) == ("served call", SERVER)
                && attribute(span, "exorun.export") == export
        });
        found
            .next()
            .unwrap_or_else(|| panic!("no served call of {export}: {spans:#?}"))
    };
    let (relay_served, provided) = (served("relay"), served("math"));
    let mut made = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| span.kind == CLIENT);
    let relay_call = made.find(|span| !span.parent_span_id.is_empty()).unwrap();
    for span in [relay_served, provided, relay_call] {
        assert_eq!(hex(&span.trace_id), trace, "{span:?}");
        assert_eq!(attribute(span, "exorun.outcome"), "ok");
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    assert_eq!(relay_served.parent_span_id, root.span_id);
    assert_eq!(relay_call.parent_span_id, relay_served.span_id);
    assert_eq!(provided.parent_span_id, relay_call.span_id);
    assert_eq!(attribute(provided, "exorun.function"), "add");
    // The callee's span lies within its caller's, clocks of one machine.
    assert!(root.start_time_unix_nano <= relay_served.start_time_unix_nano);
    assert!(provided.end_time_unix_nano <= root.end_time_unix_nano);
}

/// An HTTP request is a span too: `exorun serve --http --otlp`, asked by curl with a W3C
/// `traceparent`, exports a SERVER span `http request` in that trace, child of the header's
/// parent, with its route and status.
#[test]
fn an_http_request_is_exported_in_its_callers_trace() {
    let receiver = Receiver::start();
    let site = manifest(
        "otlp-http",
        r#"
[apps]
hello = "{fixtures}/http-hello.wasm"
[instances.hello]
app = "hello"
[http]
routes = { "/" = "hello" }
"#,
    );
    let args = ["--http", "127.0.0.1:0", "--otlp", receiver.address.as_str()];
    let (child, lines) = common::spawn_serve(&site, &args, "warn");
    let shown = lines.next_line("the http address").unwrap();
    let http = shown.strip_prefix("exorun: http on ").unwrap().to_owned();
    let server = Server::from_child(child, &http);
    lines.next_line("serving").unwrap();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let parent = "b7ad6b7169203331";
    let fetched = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-H", &format!("traceparent: 00-{trace}-{parent}-01")])
        .arg(format!("{http}/page"))
        .output()
        .unwrap();
    assert_eq!(text(&fetched.stdout), "200", "{}", text(&fetched.stderr));
    // The stop sends what is queued; the receiver answered it before the process exited.
    let (status, log) = server.interrupt();
    assert!(status.success(), "{log}");
    let spans = receiver.spans();
    let [(_, span)] = &spans[..] else {
        panic!("one span: {spans:#?}");
    };
    const SERVER: i32 = 2;
    assert_eq!((span.name.as_str(), span.kind), ("http request", SERVER));
    assert_eq!(hex(&span.trace_id), trace);
    assert_eq!(hex(&span.parent_span_id), parent);
    assert_eq!(attribute(span, "exorun.route"), "hello");
    assert_eq!(attribute(span, "http.response.status_code"), "200");
    assert_eq!(attribute(span, "exorun.outcome"), "ok");
}

/// A call frame whose trace context is all zeros (invalid in W3C trace context, refused by
/// collectors) is served as the root of a trace of its own: the exported span has a trace id
/// that is not zeros and no parent.
#[test]
fn a_call_with_zero_trace_ids_is_served_as_a_new_root() {
    use neorpc::frame;
    let receiver = Receiver::start();
    let provider = manifest("otlp-zero-ids", common::PROVIDER);
    let args = [
        "--listen",
        "tcp://127.0.0.1:0",
        "--otlp",
        receiver.address.as_str(),
    ];
    let (child, lines) = common::spawn_serve(&provider, &args, "warn");
    let shown = lines.next_line("the address").unwrap();
    let address = shown
        .strip_prefix("exorun: listening on ")
        .unwrap()
        .to_owned();
    let server = Server::from_child(child, &address);
    lines.next_line("serving").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = common::client_of(&address).await;
        let vals = [
            wasmtime::component::Val::U32(1),
            wasmtime::component::Val::U32(2),
        ];
        let slab = neorpc::codec::encode(&vals).unwrap();
        let mut writer = frame::CallWriter::new("math", "exorun:test/math#add").unwrap();
        writer.args().append_raw(&slab).unwrap();
        let zeros = frame::TraceContext {
            trace_id: [0; 16],
            parent_id: [0; 8],
            flags: 1,
        };
        let call = writer.finish_traced(&[], None, Some(&zeros)).unwrap();
        client.call(call).await.unwrap().unwrap();
    });
    let (status, log) = server.interrupt();
    assert!(status.success(), "{log}");
    let spans = receiver.spans();
    let [(_, span)] = &spans[..] else {
        panic!("one span: {spans:#?}");
    };
    assert_eq!(span.name, "served call");
    assert_ne!(hex(&span.trace_id), "0".repeat(32));
    assert!(span.parent_span_id.is_empty(), "{span:?}");
}
