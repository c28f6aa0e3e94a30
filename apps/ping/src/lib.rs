//! ping: `ping(n)` calls the imported `pong(n)`; with pong calling back, proves re-entrancy is reported.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/ping", generate_all });

struct App;

impl exports::exorun::test::ping_api::Guest for App {
    fn ping(n: u32) -> u32 {
        exorun::test::pong_api::pong(n).wrapping_add(1)
    }
}

export!(App);
