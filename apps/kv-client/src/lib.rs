//! kv-client: writes `foo = bar` to `exorun:host/kv` and reads it back (`run`), and keeps notes
//! a caller puts and gets (`notes`); proves stateful systems and stores that outlive a process.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/kv-client", generate_all });

struct App;

impl exports::exorun::test::runnable::Guest for App {
    fn run() -> String {
        exorun::host::kv::set("foo", "bar");
        let value = exorun::host::kv::get("foo").unwrap_or_else(|| "<missing>".to_string());
        format!("KV result: {value}")
    }
}

impl exports::exorun::test::notes::Guest for App {
    fn put(key: String, value: String) {
        exorun::host::kv::set(&key, &value);
    }

    fn get(key: String) -> Option<String> {
        exorun::host::kv::get(&key)
    }
}

export!(App);
