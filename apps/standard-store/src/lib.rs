//! standard-store: uses only `wasi:config` and `wasi:keyvalue`, as a component written for
//! the standard would. `run` reads its bucket's name and a greeting from its configuration,
//! stores the greeting, counts a visit atomically, writes and reads a batch (one value text,
//! one not), lists the bucket's keys, deletes one, and says what it saw.

wit_bindgen::generate!({ path: "../wit", world: "exorun:test/standard-store", generate_all });

use wasi::config::store as config;
use wasi::keyvalue::atomics;
use wasi::keyvalue::batch;
use wasi::keyvalue::store;

struct App;

impl exports::exorun::test::runnable::Guest for App {
    fn run() -> String {
        match visit() {
            Ok(seen) => seen,
            Err(error) => format!("failed: {error}"),
        }
    }
}

fn setting(name: &str) -> Result<String, String> {
    match config::get(name) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(format!("no `{name}` in the configuration")),
        Err(error) => Err(format!("{error:?}")),
    }
}

fn visit() -> Result<String, String> {
    let shown = |error: store::Error| format!("{error:?}");
    let bucket = store::open(&setting("bucket")?).map_err(shown)?;
    bucket.set("greeting", setting("greeting")?.as_bytes()).map_err(shown)?;
    let visits = atomics::increment(&bucket, "visits", 1).map_err(shown)?;
    let pairs = [("a".to_owned(), vec![1, 2, 255]), ("b".to_owned(), b"two".to_vec())];
    batch::set_many(&bucket, &pairs).map_err(shown)?;
    let keys = ["a".to_owned(), "b".to_owned(), "missing".to_owned()];
    let got = batch::get_many(&bucket, &keys).map_err(shown)?;
    let got: Vec<String> = got
        .into_iter()
        .map(|found| match found {
            Some((key, value)) => format!("{key}={value:?}"),
            None => "none".to_owned(),
        })
        .collect();
    let listed = bucket.list_keys(None).map_err(shown)?;
    bucket.delete("b").map_err(shown)?;
    let b_after = bucket.exists("b").map_err(shown)?;
    let greeting = bucket.get("greeting").map_err(shown)?.unwrap_or_default();
    Ok(format!(
        "{} (visit {visits}); {}; keys {}; b after delete: {b_after}",
        String::from_utf8_lossy(&greeting),
        got.join(" "),
        listed.keys.join(",")
    ))
}

export!(App);
