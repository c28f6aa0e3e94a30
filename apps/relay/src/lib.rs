//! relay: exports `math` by forwarding to its imported `math`; chains links (consumer -> relay -> provider).
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/relay", generate_all });

struct App;

impl exports::exorun::test::math::Guest for App {
    fn add(a: u32, b: u32) -> u32 {
        exorun::test::math::add(a, b)
    }
}

export!(App);
