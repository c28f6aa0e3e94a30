//! math-consumer: `run()` calls the imported `math.add(10, 5)`; proves an import reaches its provider.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/math-consumer", generate_all });

struct App;

impl exports::exorun::test::runnable::Guest for App {
    fn run() -> String {
        let sum = exorun::test::math::add(10, 5);
        format!("10 + 5 = {sum}")
    }
}

export!(App);
