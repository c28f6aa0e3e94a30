//! The capability format at its boundary: golden bytes (FORMAT.md), exact decode errors, every
//! denial reason, and properties: any changed byte fails, narrowing is transitive, encoding
//! round-trips.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use ed25519_dalek::Signer;
use ed25519_dalek::SigningKey;
use exorun_cap::Capability;
use exorun_cap::Denial;
use exorun_cap::Link;
use exorun_cap::Request;
use exorun_cap::Right;
use exorun_cap::format;
use exorun_cap::verify;
use proptest::prelude::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn public(seed: u8) -> [u8; 32] {
    key(seed).verifying_key().to_bytes()
}

/// A link from `issuer` to `subject` under `parent`, signed.
fn link(
    issuer: u8,
    subject: u8,
    parent: Option<&Link>,
    rights: &[&str],
    window: (u64, u64),
) -> Link {
    let mut link = Link {
        issuer: public(issuer),
        subject: public(subject),
        parent: parent.map_or([0; 32], Link::id),
        not_before: window.0,
        not_after: window.1,
        rights: rights
            .iter()
            .map(|right| Right::parse(right).unwrap())
            .collect(),
        caveats: Vec::new(),
        signature: [0; 64],
    };
    verify::sign_with(&mut link, |bytes| key(issuer).sign(bytes).to_bytes()).unwrap();
    link
}

fn request(caller: u8, function: &str, now: u64) -> Request<'_> {
    Request {
        caller: public(caller),
        export: "math",
        interface: "exorun:test/math",
        function,
        now,
    }
}

const DAY: (u64, u64) = (1_000, 87_400);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// FORMAT.md's example: root key 1 grants key 2 `math/exorun:test/math#add` from 1,000 to
/// 87,400 with the caveat `tier=free`.
fn golden() -> Capability {
    let mut root = Link {
        caveats: vec!["tier=free".to_owned()],
        ..link(1, 2, None, &["math/exorun:test/math#add"], DAY)
    };
    verify::sign_with(&mut root, |bytes| key(1).sign(bytes).to_bytes()).unwrap();
    Capability { links: vec![root] }
}

const GOLDEN: &str = include_str!("golden.hex");

#[test]
fn the_golden_capability_has_its_bytes_and_its_id() {
    let capability = golden();
    let bytes = capability.encode().unwrap();
    let expected: String = GOLDEN.split_whitespace().collect();
    assert_eq!(hex(&bytes), expected, "FORMAT.md's golden bytes");
    assert_eq!(Capability::decode(&bytes).unwrap(), capability);
    assert_eq!(
        bytes.len(),
        6 + 1 + 32 * 3 + 16 + 1 + (2 + 4) + (2 + 16) + (2 + 3) + 1 + (2 + 9) + 64
    );
    let roots = [public(1)];
    let grant = verify::verify(&capability, &roots, &[], &request(2, "add", 5_000)).unwrap();
    assert_eq!(grant.caveats, ["tier=free"]);
    assert_eq!(grant.chain, [capability.links[0].id()]);
}

#[test]
fn decoding_refuses_all_but_the_canonical_bytes() {
    let bytes = golden().encode().unwrap();
    assert_eq!(
        Capability::decode(&bytes[..10]),
        Err(format::Error::Truncated)
    );
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert_eq!(Capability::decode(&magic), Err(format::Error::BadMagic));
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Capability::decode(&longer),
        Err(format::Error::TrailingBytes { count: 1 })
    );
    let mut none = bytes.clone();
    none[6] = 0;
    assert_eq!(
        Capability::decode(&none),
        Err(format::Error::TooMany { what: "links" })
    );
    let huge = vec![0; format::CAPABILITY_BYTES_MAX + 1];
    assert_eq!(
        Capability::decode(&huge),
        Err(format::Error::TooLarge {
            bytes: format::CAPABILITY_BYTES_MAX + 1
        })
    );
}

#[test]
fn every_denial_has_its_reason() {
    let roots = [public(1)];
    let root = link(1, 2, None, &["math/exorun:test/math"], DAY);
    let one = Capability {
        links: vec![root.clone()],
    };
    let check = |capability: &Capability, request: &Request<'_>, revoked: &[[u8; 32]]| {
        verify::verify(capability, &roots, revoked, request)
    };
    assert!(check(&one, &request(2, "add", 5_000), &[]).is_ok());
    // A function of another interface, another export.
    let other_interface = Request {
        interface: "exorun:test/other",
        ..request(2, "add", 5_000)
    };
    assert_eq!(check(&one, &other_interface, &[]), Err(Denial::NotGranted));
    let other_export = Request {
        export: "calc",
        ..request(2, "add", 5_000)
    };
    assert_eq!(check(&one, &other_export, &[]), Err(Denial::NotGranted));
    assert_eq!(
        check(&one, &request(2, "add", 90_000), &[]),
        Err(Denial::Expired { link: 0 })
    );
    assert_eq!(
        check(&one, &request(2, "add", 10), &[]),
        Err(Denial::NotYetValid { link: 0 })
    );
    assert_eq!(
        check(&one, &request(3, "add", 5_000), &[]),
        Err(Denial::WrongHolder)
    );
    assert_eq!(
        check(&one, &request(2, "add", 5_000), &[root.id()]),
        Err(Denial::Revoked { link: 0 })
    );
    let untrusted = verify::verify(&one, &[public(9)], &[], &request(2, "add", 5_000));
    assert_eq!(untrusted, Err(Denial::UntrustedRoot));
    // A forged signature.
    let mut forged = one.clone();
    forged.links[0].not_after += 1;
    assert_eq!(
        check(&forged, &request(2, "add", 5_000), &[]),
        Err(Denial::BadSignature { link: 0 })
    );
}

#[test]
fn delegation_only_narrows_and_revocation_cuts_below() {
    let roots = [public(1)];
    let root = link(1, 2, None, &["math/exorun:test/math"], DAY);
    let check = |capability: &Capability, request: &Request<'_>, revoked: &[[u8; 32]]| {
        verify::verify(capability, &roots, revoked, request)
    };
    // Delegation: 2 gives 3 `add` only; 3 gives 4 `add` for a shorter time.
    let second = link(
        2,
        3,
        Some(&root),
        &["math/exorun:test/math#add"],
        (2_000, 50_000),
    );
    let third = link(
        3,
        4,
        Some(&second),
        &["math/exorun:test/math#add"],
        (3_000, 40_000),
    );
    let chain = Capability {
        links: vec![root.clone(), second.clone(), third.clone()],
    };
    assert!(check(&chain, &request(4, "add", 5_000), &[]).is_ok());
    assert_eq!(
        check(&chain, &request(4, "mul", 5_000), &[]),
        Err(Denial::NotGranted)
    );
    // Revoking a middle link revokes everything below it.
    assert_eq!(
        check(&chain, &request(4, "add", 5_000), &[second.id()]),
        Err(Denial::Revoked { link: 1 })
    );
    // Widening by delegation: more rights, or a longer window.
    let wider = link(2, 3, Some(&root), &["math"], (2_000, 50_000));
    let widened = Capability {
        links: vec![root.clone(), wider],
    };
    assert_eq!(
        check(&widened, &request(3, "add", 5_000), &[]),
        Err(Denial::Widened { link: 1 })
    );
    let longer = link(
        2,
        3,
        Some(&root),
        &["math/exorun:test/math#add"],
        (2_000, 90_000),
    );
    let lengthened = Capability {
        links: vec![root.clone(), longer],
    };
    assert_eq!(
        check(&lengthened, &request(3, "add", 5_000), &[]),
        Err(Denial::Widened { link: 1 })
    );
    // A link moved under another parent, or issued by someone other than its parent's subject.
    let orphan = link(2, 3, None, &["math/exorun:test/math#add"], DAY);
    let moved = Capability {
        links: vec![root.clone(), orphan],
    };
    assert_eq!(
        check(&moved, &request(3, "add", 5_000), &[]),
        Err(Denial::BrokenChain { link: 1 })
    );
    let stranger = link(7, 3, Some(&root), &["math/exorun:test/math#add"], DAY);
    let hijacked = Capability {
        links: vec![root, stranger],
    };
    assert_eq!(
        check(&hijacked, &request(3, "add", 5_000), &[]),
        Err(Denial::BrokenChain { link: 1 })
    );
}

#[test]
fn rights_parse_from_their_text_and_back() {
    for text in ["math", "math/exorun:test/math", "math/exorun:test/math#add"] {
        assert_eq!(Right::parse(text).unwrap().to_string(), text);
    }
    assert_eq!(Right::parse(""), Err(format::Error::BadName));
    assert_eq!(Right::parse("math/"), Err(format::Error::BadName));
    assert_eq!(Right::parse("math/x#"), Err(format::Error::BadName));
}

fn right() -> impl Strategy<Value = Right> {
    let name = prop_oneof![Just("a".to_owned()), Just("b".to_owned())];
    (
        name.clone(),
        proptest::option::of(name.clone()),
        proptest::option::of(name),
    )
        .prop_map(|(export, interface, function)| Right {
            export,
            function: interface.as_ref().and(function),
            interface,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_changed_byte_fails(index in 0usize..300, flip in 1u8..=255) {
        let capability = golden();
        let mut bytes = capability.encode().unwrap();
        let index = index % bytes.len();
        bytes[index] ^= flip;
        let roots = [public(1)];
        let outcome = Capability::decode(&bytes)
            .map_err(|_| ())
            .and_then(|changed| verify::verify(&changed, &roots, &[], &request(2, "add", 5_000)).map_err(|_| ()));
        prop_assert!(outcome.is_err(), "byte {} changed and still verified", index);
    }

    #[test]
    fn narrowing_is_transitive(a in right(), b in right(), c in right()) {
        if a.covers(&b) && b.covers(&c) {
            prop_assert!(a.covers(&c));
        }
        prop_assert!(a.covers(&a));
    }

    #[test]
    fn encoding_round_trips(rights in proptest::collection::vec(right(), 1..5), caveats in proptest::collection::vec("[a-z=]{0,12}", 0..4), window in (0u64..1000, 1000u64..5000)) {
        let mut link = Link { caveats, ..link(1, 2, None, &["x"], window) };
        link.rights = rights;
        verify::sign_with(&mut link, |bytes| key(1).sign(bytes).to_bytes()).unwrap();
        let capability = Capability { links: vec![link] };
        let bytes = capability.encode().unwrap();
        prop_assert_eq!(Capability::decode(&bytes).unwrap(), capability.clone());
        prop_assert_eq!(Capability::decode(&bytes).unwrap().encode().unwrap(), bytes);
    }
}
