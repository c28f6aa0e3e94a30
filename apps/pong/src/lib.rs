//! pong: `pong(n)` calls back into the imported `ping(n - 1)` until n is 0 (A -> B -> A).
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/pong", generate_all });

struct App;

impl exports::exorun::test::pong_api::Guest for App {
    fn pong(n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        exorun::test::ping_api::ping(n - 1).wrapping_add(1)
    }
}

export!(App);
