//! whoami: tells its caller what the host told it about the call (`exorun:host/caller`): the
//! caller's key and the caveats a guard granted the call with.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/whoami", generate_all });

struct App;

impl exports::exorun::test::called_by::Guest for App {
    fn who() -> String {
        let key = exorun::host::caller::key().unwrap_or_else(|| "none".to_owned());
        let caveats = exorun::host::caller::caveats().join(", ");
        format!("caller {key} caveats [{caveats}]")
    }
}

export!(App);
