//! math-loop: `add-many(n)` calls the imported `math.add` n times in a row; measures a link.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/math-loop", generate_all });

struct App;

impl exports::exorun::test::looper::Guest for App {
    fn add_many(n: u32) -> u64 {
        (0..n)
            .map(|i| u64::from(exorun::test::math::add(i, 1)))
            .sum()
    }
}

export!(App);
