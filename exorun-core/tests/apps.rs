//! Inspection of every built guest app: its imports and exports must be exactly the WIT worlds
//! in `apps/wit`, interface by interface and function by function, so a broken build script or
//! a stray import (say, WASI pulled in by std) cannot pass silently. Imports list the functions
//! an app calls: wit-component drops imported functions the code never uses.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use exorun_testkit::fixtures;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

type Interfaces = BTreeMap<String, BTreeSet<String>>;

fn functions(engine: &wasmtime::Engine, item: &ComponentItem) -> BTreeSet<String> {
    let ComponentItem::ComponentInstance(instance) = item else {
        panic!("expected an instance, found {item:?}")
    };
    instance
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
        .map(|(name, _)| name.to_owned())
        .collect()
}

fn inspect(app: &str) -> (Interfaces, Interfaces) {
    let engine = wasmtime::Engine::default();
    let path = fixtures::path(app).unwrap_or_else(|e| panic!("{e}"));
    let component = Component::from_file(&engine, &path).unwrap();
    let ty = component.component_type();
    let imports = ty
        .imports(&engine)
        .map(|(n, i)| (n.to_owned(), functions(&engine, &i.ty)));
    let exports = ty
        .exports(&engine)
        .map(|(n, i)| (n.to_owned(), functions(&engine, &i.ty)));
    (imports.collect(), exports.collect())
}

fn world(entries: &[(&str, &[&str])]) -> Interfaces {
    let entry = |(name, funcs): &(&str, &[&str])| {
        (
            (*name).to_owned(),
            funcs.iter().map(|f| (*f).to_owned()).collect(),
        )
    };
    entries.iter().map(entry).collect()
}

const MATH: (&str, &[&str]) = ("exorun:test/math", &["add"]);
const RUNNABLE: (&str, &[&str]) = ("exorun:test/runnable", &["run"]);
const COUNTERS: (&str, &[&str]) = (
    "exorun:test/counters",
    &[
        "[constructor]counter",
        "[method]counter.absorb",
        "[method]counter.next",
        "checked",
        "crash",
        "finish",
        "live",
        "make",
        "make-many",
        "make-pair",
        "maybe",
        "peek",
    ],
);
const SINK: (&str, &[&str]) = ("exorun:test/counter-sink", &["take"]);
const USER: (&str, &[&str]) = (
    "exorun:test/counter-user",
    &[
        "absorb", "checked", "count", "finish", "forget", "keep", "kept", "live", "many", "maybe",
        "next", "pair", "peek", "sink",
    ],
);
// wit-component keeps only the imported functions an app calls: the consumer never calls `crash`.
const COUNTERS_USED: (&str, &[&str]) = (
    "exorun:test/counters",
    &[
        "[constructor]counter",
        "[method]counter.absorb",
        "[method]counter.next",
        "checked",
        "finish",
        "live",
        "make",
        "make-many",
        "make-pair",
        "maybe",
        "peek",
    ],
);

fn assert_world(app: &str, imports: &[(&str, &[&str])], exports: &[(&str, &[&str])]) {
    let (found_imports, found_exports) = inspect(app);
    assert_eq!(found_imports, world(imports), "imports of {app}");
    assert_eq!(found_exports, world(exports), "exports of {app}");
}

#[test]
fn math_apps_match_their_worlds() {
    assert_world("math-provider", &[], &[MATH]);
    assert_world("math-consumer", &[MATH], &[RUNNABLE]);
    assert_world("relay", &[MATH], &[MATH]);
    assert_world(
        "math-loop",
        &[MATH],
        &[("exorun:test/looper", &["add-many"])],
    );
    assert_world(
        "cruncher",
        &[],
        &[("exorun:test/crunch", &["crunch", "spill", "tally"])],
    );
}

#[test]
fn host_clients_match_their_worlds() {
    assert_world(
        "logger-client",
        &[("exorun:host/logging", &["log"])],
        &[RUNNABLE],
    );
    assert_world(
        "kv-client",
        &[("exorun:host/kv", &["get", "set"])],
        &[RUNNABLE, ("exorun:test/notes", &["get", "put"])],
    );
}

#[test]
fn values_and_values_relay_carry_every_echo() {
    let echoes: &[&str] = &[
        "echo-bytes",
        "echo-everything",
        "echo-extremes",
        "echo-floats",
        "echo-perms",
        "echo-result",
        "echo-shapes",
        "echo-string",
    ];
    assert_world("values", &[], &[("exorun:test/values", echoes)]);
    let values: &[(&str, &[&str])] = &[("exorun:test/values", echoes)];
    assert_world("values-relay", values, values);
}

#[test]
fn fs_reader_imports_only_the_wasi_it_uses() {
    let imports: &[(&str, &[&str])] = &[
        ("wasi:cli/environment@0.2.12", &["get-environment"]),
        ("wasi:cli/stderr@0.2.12", &["get-stderr"]),
        ("wasi:cli/stdout@0.2.12", &["get-stdout"]),
        ("wasi:filesystem/preopens@0.2.12", &["get-directories"]),
        (
            "wasi:filesystem/types@0.2.12",
            &["[method]descriptor.open-at", "[method]descriptor.read"],
        ),
        ("wasi:io/error@0.2.12", &[]),
        (
            "wasi:io/streams@0.2.12",
            &["[method]output-stream.blocking-write-and-flush"],
        ),
    ];
    let exports: &[(&str, &[&str])] = &[(
        "exorun:test/sandbox",
        &["get-env", "preopens", "read-file", "say"],
    )];
    assert_world("fs-reader", imports, exports);
}

#[test]
fn misbehave_and_reentrant_pair_match_their_worlds() {
    assert_world(
        "misbehave",
        &[],
        &[
            ("exorun:auth/guard", &["check"]),
            ("exorun:test/math", &["add"]),
            ("exorun:test/misbehave", &["echo", "hog", "spin", "trap"]),
        ],
    );
    let ping: (&str, &[&str]) = ("exorun:test/ping-api", &["ping"]);
    let pong: (&str, &[&str]) = ("exorun:test/pong-api", &["pong"]);
    assert_world("ping", &[pong], &[ping]);
    assert_world("pong", &[ping], &[pong]);
}

#[test]
fn resource_apps_match_their_worlds() {
    assert_world("counter-provider", &[], &[SINK, COUNTERS]);
    assert_world(
        "counter-consumer",
        &[SINK, COUNTERS_USED],
        &[USER, RUNNABLE],
    );
}

#[test]
fn a_missing_app_says_how_to_build_it() {
    let error = fixtures::path("no-such-app").unwrap_err();
    assert!(
        error.to_string().contains("bash scripts/build_apps.sh"),
        "{error}"
    );
}

#[test]
fn env_provider_exports_a_wasi_interface_itself() {
    let exports: &[(&str, &[&str])] = &[(
        "wasi:cli/environment@0.2.12",
        &["get-arguments", "get-environment", "initial-cwd"],
    )];
    assert_world("env-provider", &[], exports);
}

#[test]
fn auth_and_whoami_match_their_worlds() {
    assert_world(
        "auth",
        &[
            ("wasi:config/store@0.2.0-rc.1", &["get"]),
            ("wasi:random/random@0.2.12", &["get-random-bytes"]),
        ],
        &[
            (
                "exorun:auth/capabilities",
                &["delegate", "issue", "link-ids", "revoke", "verify"],
            ),
            (
                "exorun:auth/crypto",
                &[
                    "generate",
                    "generate-exchange",
                    "hash",
                    "open",
                    "seal",
                    "sign",
                    "verify",
                ],
            ),
            ("exorun:auth/guard", &["check"]),
        ],
    );
    assert_world(
        "whoami",
        &[("exorun:host/caller", &["caveats", "key"])],
        &[("exorun:test/called-by", &["who"])],
    );
}

#[test]
fn meta_matches_its_world() {
    assert_world(
        "meta",
        &[
            ("exorun:host/caller", &["caveats"]),
            (
                "exorun:host/meta",
                &["add-app", "instances", "remove-app", "start", "stop"],
            ),
        ],
        &[("exorun:meta/manage", &["deploy", "ps", "stop"])],
    );
}
