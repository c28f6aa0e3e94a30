//! Boundary tests of the ledger against the built guest apps: contracts checked with their
//! exact errors, handles refused across links, rich types described.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::sync::Arc;

use exorun_core::ledger;
use exorun_core::runtime::Runtime;
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
        ledger::check(wanted, provider.exports.get("exorun:test/math"),),
        []
    );
    assert_eq!(
        ledger::check(
            wanted,
            ledger_of(&runtime, "relay").exports.get("exorun:test/math"),
        ),
        []
    );

    let values = ledger_of(&runtime, "values");
    assert_eq!(
        ledger::check(wanted, values.exports.get("exorun:test/math"),),
        [ledger::Error::InterfaceNotFound {
            interface: "exorun:test/math".into()
        }]
    );

    let mut empty = provider.exports["exorun:test/math"].clone();
    empty.functions.clear();
    assert_eq!(
        ledger::check(wanted, Some(&empty)),
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
        ledger::check(wanted, Some(&wrong)),
        [ledger::Error::SignatureMismatch {
            interface: "exorun:test/math".into(),
            function: "add".into(),
            expected: "func(a: u32, b: u32) -> u32".into(),
            found: "func(n: u32) -> u32".into(),
        }]
    );
}

#[test]
fn ledger_matches_resources_by_name_and_shape() {
    let runtime = Runtime::new().unwrap();
    let consumer = ledger_of(&runtime, "counter-consumer");
    let provider = ledger_of(&runtime, "counter-provider");
    for interface in ["exorun:test/counters", "exorun:test/counter-sink"] {
        let problems = ledger::check(
            &consumer.imports[interface],
            provider.exports.get(interface),
        );
        assert_eq!(problems, [], "{interface}");
    }
    // Resources are named by the interface that declares them, in each component.
    let counters = &consumer.imports["exorun:test/counters"];
    assert_eq!(counters.resources, ["counter"]);
    assert_eq!(
        consumer.imports["exorun:test/counter-sink"].resources,
        Vec::<String>::new()
    );

    // A function that returns a counter where the import wants a u32 is named exactly.
    let mut wrong = provider.exports["exorun:test/counters"].clone();
    let make = wrong.functions["make"].clone();
    wrong.functions.insert("live".into(), make);
    assert_eq!(
        ledger::check(counters, Some(&wrong)),
        [ledger::Error::SignatureMismatch {
            interface: "exorun:test/counters".into(),
            function: "live".into(),
            expected: "func() -> u32".into(),
            found: "func(start: u32) -> own<counter>".into(),
        }]
    );
}

/// A component whose export passes a `future`: wasmtime here runs without the async component
/// model, so such an app is refused when it is added, before any link could carry one.
const FUTURE_APP: &str = r#"(component
  (type $f (future u32))
  (core module $m (func (export "get") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (func $get (result $f) (canon lift (core func $i "get")))
  (instance $api (export "get" (func $get)))
  (export "exorun:test/futures" (instance $api))
)"#;

#[test]
fn an_app_that_passes_futures_is_refused_when_added() {
    let runtime = Runtime::new().unwrap();
    let refused = runtime.add_app("futures", FUTURE_APP.as_bytes());
    let Err(error) = refused else {
        panic!("a component with a future type was accepted")
    };
    let text = error.to_string();
    assert!(
        text.starts_with("app `futures` is not a valid component"),
        "{text}"
    );
    assert!(
        text.contains("`future` requires the component model async feature"),
        "{text}"
    );
}

#[test]
fn ledger_describes_rich_types() {
    let runtime = Runtime::new().unwrap();
    let values = ledger_of(&runtime, "values");
    let echo = &values.exports["exorun:test/values"].functions["echo-result"];
    assert_eq!(
        echo.text,
        "func(v: result<record { x: s32, y: s32, label: string }, enum { red, green, blue }>) -> result<record { x: s32, y: s32, label: string }, enum { red, green, blue }>"
    );
    let everything = &values.exports["exorun:test/values"].functions["echo-everything"];
    let described = &everything.text;
    let scalars = "v-bool: bool, v-s8: s8, v-u8: u8, v-s16: s16, v-u16: u16, v-s32: s32, \
        v-u32: u32, v-s64: s64, v-u64: u64, v-f32: f32, v-f64: f64, v-char: char, v-string: string";
    assert!(described.contains(scalars), "{described}");
    assert!(described.contains("bytes: list<u8>"), "{described}");
    let counters = ledger_of(&runtime, "counter-provider");
    let make = &counters.exports["exorun:test/counters"].functions["make"];
    assert_eq!(make.text, "func(start: u32) -> own<counter>");
    let peek = &counters.exports["exorun:test/counters"].functions["peek"];
    assert_eq!(peek.text, "func(c: borrow<counter>) -> u32");
    let absorb = &counters.exports["exorun:test/counters"].functions["[method]counter.absorb"];
    assert_eq!(
        absorb.text,
        "func(self: borrow<counter>, other: borrow<counter>) -> u32"
    );
    let pair = &counters.exports["exorun:test/counters"].functions["make-pair"];
    assert_eq!(
        pair.text,
        "func(left: u32, right: u32) -> record { left: own<counter>, right: own<counter> }"
    );
    let sink = &counters.exports["exorun:test/counter-sink"].functions["take"];
    assert_eq!(sink.text, "func(c: own<counter>) -> u32");
}
