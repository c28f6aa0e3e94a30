//! math-provider: exports `math.add`; the callee of local and remote links.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/math-provider", generate_all });

struct App;

impl exports::exorun::test::math::Guest for App {
    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }
}

export!(App);
