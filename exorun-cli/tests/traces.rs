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

#[test]
fn a_call_through_a_relay_is_one_trace_with_its_parent_chain() {
    let provider = manifest("traces-provider", common::PROVIDER);
    let provider = Server::start_logging(&provider, "tcp://127.0.0.1:0", "exorun_bind=debug");
    let relay = manifest(
        "traces-relay",
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
    let relay = Server::start_logging(&relay, "tcp://127.0.0.1:0", "exorun_bind=debug");
    let caller = manifest(
        "traces-caller",
        &r#"
[apps]
math-consumer = "{fixtures}/math-consumer.wasm"
[instances.calc]
app = "math-consumer"
links = { "exorun:test/math" = { remote = "ADDRESS", target = "relay" } }
"#
        .replace("ADDRESS", &relay.address),
    );
    let called = common::exorun()
        .env("RUST_LOG", "exorun_bind::remote=debug")
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
