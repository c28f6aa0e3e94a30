//! kv-client: writes `foo = bar` to `exorun:host/kv` and reads it back; proves stateful systems.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/kv-client", generate_all });

struct App;

impl exports::exorun::test::runnable::Guest for App {
    fn run() -> String {
        exorun::host::kv::set("foo", "bar");
        let value = exorun::host::kv::get("foo").unwrap_or_else(|| "<missing>".to_string());
        format!("KV result: {value}")
    }
}

export!(App);
