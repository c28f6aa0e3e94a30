//! Property test of the kv store's central invariant: a write within the limits is read back
//! exactly (and seen through every clone); a write over a limit is refused and changes nothing.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use exorun_systems::kv;
use proptest::prelude::*;

proptest! {
    #[test]
    fn writes_within_limits_read_back_and_others_change_nothing(
        writes in proptest::collection::vec((0usize..1100, 0usize..70_000), 1..12),
    ) {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store = kv::Store::new();
        let shared = store.clone();
        for (i, (key_bytes, value_bytes)) in writes.into_iter().enumerate() {
            // A unique prefix per write, padded to the drawn length (at least 4 bytes).
            let key = format!("{i:04}{}", "k".repeat(key_bytes.saturating_sub(4)));
            let value = "v".repeat(value_bytes);
            let before = tokio.block_on(store.entries()).unwrap();
            let fits = key.len() <= kv::KEY_BYTES_MAX && value.len() <= kv::VALUE_BYTES_MAX;
            let outcome = tokio.block_on(store.set(&key, &value));
            prop_assert_eq!(outcome.is_ok(), fits);
            let read = tokio.block_on(shared.get(&key));
            if fits {
                prop_assert_eq!(read, Ok(Some(value)));
            } else {
                prop_assert_eq!(tokio.block_on(store.entries()).unwrap(), before);
                prop_assert!(read.is_err() || read == Ok(None));
            }
        }
    }
}

proptest! {
    /// A listing page is exactly the first `limit` keys, in byte order, that start with the
    /// prefix and come after `after`, whatever was written and deleted before; and the entry
    /// count is the number of keys left.
    #[test]
    fn a_listing_page_is_the_first_keys_after_its_cursor(
        written in proptest::collection::vec("[ab]{0,3}", 0..40),
        deleted in proptest::collection::vec("[ab]{0,3}", 0..10),
        prefix in "[ab]{0,1}",
        after in proptest::option::of("[ab]{0,3}"),
        limit in 0usize..12,
    ) {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store = kv::Store::new();
        let mut model = std::collections::BTreeSet::new();
        for key in &written {
            tokio.block_on(store.set(key, "v")).unwrap();
            model.insert(key.clone());
        }
        for key in &deleted {
            tokio.block_on(store.delete(key)).unwrap();
            model.remove(key);
        }
        let page = tokio.block_on(store.keys(&prefix, after.as_deref(), limit)).unwrap();
        let expected: Vec<String> = model
            .iter()
            .filter(|key| key.starts_with(prefix.as_str()))
            .filter(|key| after.as_ref().is_none_or(|after| *key > after))
            .take(limit)
            .cloned()
            .collect();
        prop_assert_eq!(page, expected);
        prop_assert_eq!(tokio.block_on(store.entries()).unwrap(), model.len());
    }
}

/// One writer's 100 new keys into `store`, half set and half updated: how many were `Full`.
fn hundred_new_keys(store: &kv::Store, thread: usize) -> usize {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut full = 0;
    for n in 0..100 {
        let key = format!("t{thread}/k{n}");
        let change: kv::Change = std::sync::Arc::new(|_| Ok("1".to_owned()));
        let written = match n % 2 {
            0 => tokio.block_on(store.set(&key, "v")).map(drop),
            _ => tokio.block_on(store.update(&key, change)).map(drop),
        };
        match written {
            Ok(()) => {}
            Err(kv::Error::Full { entries_max: 50 }) => full += 1,
            Err(other) => panic!("{other}"),
        }
    }
    full
}

/// Writers at once never take a store past its entry bound: 8 threads each set 100 new keys
/// into a store of 50 entries at most, and exactly 50 are kept, every other write `Full`.
#[test]
fn writers_at_once_hold_the_entry_bound() {
    let store = kv::Store::new().entries_max(50);
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || hundred_new_keys(&store, thread))
        })
        .collect();
    let full: usize = threads
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .sum();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(tokio.block_on(store.entries()).unwrap(), 50);
    assert_eq!(full, 8 * 100 - 50);
    let listed = tokio.block_on(store.keys("", None, 1000)).unwrap();
    assert_eq!(listed.len(), 50);
}
