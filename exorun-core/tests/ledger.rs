//! Boundary tests of the ledger against the built guest apps: contracts checked with their
//! exact errors, handles refused across links, rich types described.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::sync::Arc;

use exorun_core::ledger;
use exorun_core::registry::Runtime;
use exorun_testkit::fixtures;

fn ledger_of(runtime: &Runtime, app: &str) -> Arc<ledger::Ledger> {
    let path = fixtures::path(app).unwrap_or_else(|e| panic!("{e}"));
    let id = runtime.add_app_file(app, &path).unwrap();
    runtime.app(id).unwrap().ledger
}

#[test]
fn ledger_checks_contracts_with_exact_errors() {
    let runtime = Runtime::new().unwrap();
    let consumer = ledger_of(&runtime, "math-consumer");
    let provider = ledger_of(&runtime, "math-provider");
    let wanted = &consumer.imports["exorun:test/math"];
    assert_eq!(
        ledger::check(
            wanted,
            provider.exports.get("exorun:test/math"),
            ledger::Link::Remote
        ),
        []
    );
    assert_eq!(
        ledger::check(
            wanted,
            ledger_of(&runtime, "relay").exports.get("exorun:test/math"),
            ledger::Link::Local
        ),
        []
    );

    let values = ledger_of(&runtime, "values");
    assert_eq!(
        ledger::check(
            wanted,
            values.exports.get("exorun:test/math"),
            ledger::Link::Local
        ),
        [ledger::Error::InterfaceNotFound {
            interface: "exorun:test/math".into()
        }]
    );

    let mut empty = provider.exports["exorun:test/math"].clone();
    empty.functions.clear();
    assert_eq!(
        ledger::check(wanted, Some(&empty), ledger::Link::Local),
        [ledger::Error::MethodNotFound {
            interface: "exorun:test/math".into(),
            function: "add".into()
        }]
    );

    let misbehave = ledger_of(&runtime, "misbehave");
    let mut wrong = provider.exports["exorun:test/math"].clone();
    wrong.functions.insert(
        "add".into(),
        misbehave.exports["exorun:test/misbehave"].functions["echo"].clone(),
    );
    assert_eq!(
        ledger::check(wanted, Some(&wrong), ledger::Link::Remote),
        [ledger::Error::SignatureMismatch {
            interface: "exorun:test/math".into(),
            function: "add".into(),
            expected: "func(a: u32, b: u32) -> u32".into(),
            found: "func(n: u32) -> u32".into(),
        }]
    );
}

#[test]
fn ledger_refuses_handles_across_links() {
    let runtime = Runtime::new().unwrap();
    let counters = ledger_of(&runtime, "counter-consumer");
    let counter_provider = ledger_of(&runtime, "counter-provider");
    let problems = ledger::check(
        &counters.imports["exorun:test/counters"],
        counter_provider.exports.get("exorun:test/counters"),
        ledger::Link::Remote,
    );
    assert_eq!(
        problems[0],
        ledger::Error::UnsupportedAcrossRemote {
            interface: "exorun:test/counters".into(),
            function: "[constructor]counter".into(),
            kind: "resource",
        }
    );
    let problems = ledger::check(
        &counters.imports["exorun:test/counters"],
        counter_provider.exports.get("exorun:test/counters"),
        ledger::Link::Local,
    );
    assert_eq!(
        problems[0],
        ledger::Error::UnsupportedAcrossStores {
            interface: "exorun:test/counters".into(),
            function: "[constructor]counter".into(),
            kind: "resource",
        }
    );
}

#[test]
fn ledger_describes_rich_types() {
    let runtime = Runtime::new().unwrap();
    let values = ledger_of(&runtime, "values");
    let echo = &values.exports["exorun:test/values"].functions["echo-result"];
    assert_eq!(
        ledger::describe_signature(echo),
        "func(v: result<record { x: s32, y: s32, label: string }, enum { red, green, blue }>) -> result<record { x: s32, y: s32, label: string }, enum { red, green, blue }>"
    );
    let everything = &values.exports["exorun:test/values"].functions["echo-everything"];
    let described = ledger::describe_signature(everything);
    let scalars = "v-bool: bool, v-s8: s8, v-u8: u8, v-s16: s16, v-u16: u16, v-s32: s32, \
        v-u32: u32, v-s64: s64, v-u64: u64, v-f32: f32, v-f64: f64, v-char: char, v-string: string";
    assert!(described.contains(scalars), "{described}");
    assert!(described.contains("bytes: list<u8>"), "{described}");
    let counters = ledger_of(&runtime, "counter-provider");
    let make = &counters.exports["exorun:test/counters"].functions["make"];
    assert_eq!(ledger::describe_signature(make), "func(start: u32) -> own");
}
