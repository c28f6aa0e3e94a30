//! exorun-host at its boundary: a manifest started from Rust, an export called, the
//! composition stopped; and what does not start fails with every problem at its key, before
//! anything runs.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::path::Path;

use exorun_bind::builder;
use exorun_host::Composition;
use exorun_host::compose;
use exorun_host::manifest;
use exorun_testkit::fixtures;
use wasmtime::component::Val;

/// A manifest of `math-provider` and `math-consumer`, `calc`'s math linked as `link`.
fn manifest_text(link: &str) -> String {
    let provider = fixtures::path("math-provider").unwrap();
    let consumer = fixtures::path("math-consumer").unwrap();
    format!(
        r#"
[apps]
provider = "{}"
consumer = "{}"
[instances.math]
app = "provider"
[instances.calc]
app = "consumer"
links = {{ "exorun:test/math" = {link} }}
"#,
        provider.display(),
        consumer.display()
    )
}

fn parse(text: &str) -> manifest::Manifest {
    manifest::parse(Path::new("host.toml"), text, &BTreeMap::new()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_starts_answers_and_stops_from_rust() {
    let manifest = parse(&manifest_text(r#"{ local = "math" }"#));
    let composition = Composition::start(manifest).await.unwrap();
    assert_eq!(
        composition.instances.keys().collect::<Vec<_>>(),
        ["calc", "math"]
    );
    let mut results = [Val::Bool(false)];
    let calc = &composition.instances["calc"];
    calc.call("exorun:test/runnable", "run", &[], &mut results)
        .await
        .unwrap();
    assert_eq!(results, [Val::String("10 + 5 = 15".into())]);
    for handle in composition.instances.values() {
        composition.runtime.remove_instance(handle.id()).unwrap();
        handle.retired().await;
    }
    assert!(composition.runtime.instances().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_does_not_hold_is_refused_at_its_key_before_anything_runs() {
    // `logging` does not provide `exorun:test/math`.
    let manifest = parse(&manifest_text(r#"{ system = "logging" }"#));
    let refused = Composition::start(manifest).await.unwrap_err();
    let compose::Error::Manifest(manifest::Error::Invalid { path, problems }) = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(path, "host.toml");
    let [(key, manifest::Problem::Link(problem))] = &problems[..] else {
        panic!("{problems:?}")
    };
    assert_eq!(key, "instances.calc.links.\"exorun:test/math\"");
    assert_eq!(
        problem,
        &builder::Problem::NotProvided {
            interface: "exorun:test/math".into()
        }
    );
}

#[test]
fn a_manifest_that_cannot_be_read_keeps_the_reason() {
    let missing = std::env::temp_dir().join("exorun-host-no-such-manifest.toml");
    let refused = manifest::load(&missing, &BTreeMap::new()).unwrap_err();
    let manifest::Error::Read { source, .. } = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    let shown = std::error::Error::source(&refused).map(ToString::to_string);
    assert_eq!(
        shown,
        Some(source.to_string()),
        "the cause is the error's source"
    );
}
