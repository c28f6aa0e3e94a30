//! counter-consumer: imports `counters` and `counter-sink` and drives them from inside a guest
//! (`counter-user`): counters made, kept in slots, used, lent, given back, given to the sink
//! and dropped, so a test sees what a guest sees across a local, named or remote link.
use std::cell::RefCell;
use std::collections::BTreeMap;

wit_bindgen::generate!({ path: "../wit", world: "exorun:test/counter-consumer", generate_all });

use exorun::test::counters;
use exorun::test::counters::Counter;

struct App;

thread_local! {
    static SLOTS: RefCell<(u32, BTreeMap<u32, Counter>)> = const { RefCell::new((0, BTreeMap::new())) };
}

fn keep(counter: Counter) -> u32 {
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        slots.0 += 1;
        let slot = slots.0;
        slots.1.insert(slot, counter);
        slot
    })
}

fn take(slot: u32) -> Counter {
    let taken = SLOTS.with(|slots| slots.borrow_mut().1.remove(&slot));
    taken.unwrap_or_else(|| panic!("no counter in slot {slot}"))
}

fn with<R>(slot: u32, use_it: impl FnOnce(&Counter) -> R) -> R {
    SLOTS.with(|slots| {
        let slots = slots.borrow();
        let counter = slots.1.get(&slot).unwrap_or_else(|| panic!("no counter in slot {slot}"));
        use_it(counter)
    })
}

impl exports::exorun::test::counter_user::Guest for App {
    fn count(start: u32, steps: u32) -> u32 {
        let counter = Counter::new(start);
        let mut last = start;
        for _ in 0..steps {
            last = counter.next();
        }
        last
    }

    fn keep(start: u32) -> u32 {
        keep(counters::make(start))
    }

    fn next(slot: u32) -> u32 {
        with(slot, Counter::next)
    }

    fn forget(slot: u32) {
        drop(take(slot));
    }

    fn absorb(slot: u32, other: u32) -> u32 {
        with(other, |other| with(slot, |counter| counter.absorb(other)))
    }

    fn finish(slot: u32) -> u32 {
        counters::finish(take(slot))
    }

    fn sink(slot: u32) -> u32 {
        exorun::test::counter_sink::take(take(slot))
    }

    fn peek(slot: u32) -> u32 {
        with(slot, counters::peek)
    }

    fn pair(left: u32, right: u32) -> (u32, u32) {
        let pair = counters::make_pair(left, right);
        (keep(pair.left), keep(pair.right))
    }

    fn many(starts: Vec<u32>) -> Vec<u32> {
        counters::make_many(&starts).into_iter().map(keep).collect()
    }

    fn maybe(start: Option<u32>) -> Option<u32> {
        counters::maybe(start).map(keep)
    }

    fn checked(start: u32) -> Result<u32, String> {
        counters::checked(start).map(keep)
    }

    fn kept() -> u32 {
        SLOTS.with(|slots| u32::try_from(slots.borrow().1.len()).unwrap_or(u32::MAX))
    }

    fn live() -> u32 {
        counters::live()
    }
}

impl exports::exorun::test::runnable::Guest for App {
    /// A counter made across the link, counted twice, then given home: what the provider
    /// holds before and after.
    fn run() -> String {
        let counter = Counter::new(7);
        let first = counter.next();
        let second = counter.next();
        let alive = counters::live();
        let home = counters::finish(counter);
        let after = counters::live();
        format!("{first} {second}, alive {alive}, given home at {home}, alive {after}")
    }
}

export!(App);
