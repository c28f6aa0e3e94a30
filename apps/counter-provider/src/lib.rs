//! counter-provider: exports `counters` (a resource, handed out in records, lists, options and
//! results) and `counter-sink` (which takes one back through another interface), and counts
//! the counters alive in it, so a test can see that every handle dropped across a link is
//! dropped here.
use std::cell::Cell;

wit_bindgen::generate!({ path: "../wit", world: "exorun:test/counter-provider", generate_all });

use exports::exorun::test::counters::Counter;
use exports::exorun::test::counters::CounterBorrow;
use exports::exorun::test::counters::GuestCounter;
use exports::exorun::test::counters::Pair;

struct App;

thread_local! {
    static LIVE: Cell<u32> = const { Cell::new(0) };
}

struct Count {
    next: Cell<u32>,
}

impl Count {
    fn made(start: u32) -> Self {
        LIVE.with(|live| live.set(live.get() + 1));
        Count { next: Cell::new(start) }
    }

    fn step(&self) -> u32 {
        let value = self.next.get();
        self.next.set(value.wrapping_add(1));
        value
    }
}

impl Drop for Count {
    fn drop(&mut self) {
        LIVE.with(|live| live.set(live.get() - 1));
    }
}

impl GuestCounter for Count {
    fn new(start: u32) -> Self {
        Count::made(start)
    }

    fn next(&self) -> u32 {
        self.step()
    }

    fn absorb(&self, other: CounterBorrow<'_>) -> u32 {
        let gained = other.get::<Count>().step();
        self.next.set(self.next.get().wrapping_add(gained));
        self.next.get()
    }
}

fn counter(start: u32) -> Counter {
    Counter::new(Count::made(start))
}

impl exports::exorun::test::counters::Guest for App {
    type Counter = Count;

    fn make(start: u32) -> Counter {
        counter(start)
    }

    fn make_pair(left: u32, right: u32) -> Pair {
        Pair {
            left: counter(left),
            right: counter(right),
        }
    }

    fn make_many(starts: Vec<u32>) -> Vec<Counter> {
        starts.into_iter().map(counter).collect()
    }

    fn maybe(start: Option<u32>) -> Option<Counter> {
        start.map(counter)
    }

    fn checked(start: u32) -> Result<Counter, String> {
        if start == 0 {
            return Err("a counter cannot start at 0 here".to_owned());
        }
        Ok(counter(start))
    }

    fn finish(c: Counter) -> u32 {
        c.get::<Count>().step()
    }

    fn peek(c: CounterBorrow<'_>) -> u32 {
        c.get::<Count>().next.get()
    }

    fn live() -> u32 {
        LIVE.with(Cell::get)
    }

    fn crash() {
        panic!("crash on request");
    }
}

impl exports::exorun::test::counter_sink::Guest for App {
    fn take(c: Counter) -> u32 {
        c.get::<Count>().step()
    }
}

export!(App);
