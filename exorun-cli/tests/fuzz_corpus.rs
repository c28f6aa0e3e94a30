//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) through the same checks the
//! cargo-fuzz targets run (`fuzz/checks.rs`), on stable, so every input fuzzing kept (seeds
//! and anything found) stays a regression test.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::PathBuf;

/// Runs `check` on every file of `fuzz/corpus/<target>`; there must be some.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
    for input in inputs {
        let data = std::fs::read(&input).unwrap();
        let replayed = std::panic::catch_unwind(|| check(&data));
        assert!(replayed.is_ok(), "{} fails its check", input.display());
    }
}

#[test]
fn the_frame_corpus_holds() {
    replay("frame", checks::frame);
}

#[test]
fn the_values_corpus_holds() {
    replay("values", checks::values);
}

#[test]
fn the_stream_corpus_holds() {
    replay("stream", checks::stream);
}

#[test]
fn the_manifest_corpus_holds() {
    replay("manifest", checks::manifest);
}
