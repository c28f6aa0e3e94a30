//! `wasi:keyvalue` values as exorun's stores keep them: any bytes come back exactly, text stays
//! readable text, and only what `encode` wrote decodes.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use exorun_systems::keyvalue;
use proptest::prelude::*;

#[test]
fn text_is_kept_as_text_and_bytes_as_hex() {
    assert_eq!(keyvalue::encode(b"two"), "ttwo");
    assert_eq!(keyvalue::encode(&[1, 2, 255]), "x0102ff");
    assert_eq!(keyvalue::encode(b""), "t");
    assert_eq!(keyvalue::decode("x0102ff"), Some(vec![1, 2, 255]));
    for foreign in ["", "plain", "x0", "xzz", "y12"] {
        assert_eq!(keyvalue::decode(foreign), None, "{foreign:?}");
    }
}

proptest! {
    #[test]
    fn any_value_round_trips(value in proptest::collection::vec(any::<u8>(), 0..512)) {
        let kept = keyvalue::encode(&value);
        prop_assert_eq!(keyvalue::decode(&kept), Some(value.clone()));
        prop_assert!(kept.len() <= 1 + value.len() * 2);
    }

    #[test]
    fn text_values_cost_one_byte(text in ".{0,64}") {
        let kept = keyvalue::encode(text.as_bytes());
        prop_assert_eq!(kept.len(), text.len() + 1);
        prop_assert_eq!(keyvalue::decode(&kept), Some(text.into_bytes()));
    }
}
