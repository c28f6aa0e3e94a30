//! logger-client: logs one line through `exorun:host/logging`; proves a system link.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/logger-client", generate_all });

struct App;

impl exports::exorun::test::runnable::Guest for App {
    fn run() -> String {
        exorun::host::logging::log("INFO", "Hello from Wasm!");
        "Done".to_string()
    }
}

export!(App);
