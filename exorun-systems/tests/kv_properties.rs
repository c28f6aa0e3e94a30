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
