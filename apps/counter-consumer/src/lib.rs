//! counter-consumer: imports the resource interface `counters`; proves the ledger refuses it across a remote link.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/counter-consumer", generate_all });

use exorun::test::counters::Counter;

struct App;

impl exports::exorun::test::runnable::Guest for App {
    fn run() -> String {
        let counter = Counter::new(7);
        let first = counter.next();
        let second = counter.next();
        format!("{first} {second}")
    }
}

export!(App);
