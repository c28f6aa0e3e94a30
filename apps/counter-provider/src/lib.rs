//! counter-provider: exports a resource type; proves the ledger refuses resources across a remote link.
use std::cell::Cell;

wit_bindgen::generate!({ path: "../wit", world: "exorun:test/counter-provider", generate_all });

use exports::exorun::test::counters::Counter;
use exports::exorun::test::counters::GuestCounter;

struct App;

struct Count {
    next: Cell<u32>,
}

impl GuestCounter for Count {
    fn new(start: u32) -> Self {
        Count { next: Cell::new(start) }
    }

    fn next(&self) -> u32 {
        let value = self.next.get();
        self.next.set(value.wrapping_add(1));
        value
    }
}

impl exports::exorun::test::counters::Guest for App {
    type Counter = Count;

    fn make(start: u32) -> Counter {
        Counter::new(Count::new(start))
    }
}

export!(App);
