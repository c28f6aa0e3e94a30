//! whoami: tells its caller what the host told it about the call (`exorun:host/caller`): the
//! caller's key and the caveats a guard granted the call with.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/whoami", generate_all });

struct App;

impl exports::exorun::test::called_by::Guest for App {
    fn who() -> (Option<String>, Vec<String>) {
        (exorun::host::caller::key(), exorun::host::caller::caveats())
    }
}

export!(App);
