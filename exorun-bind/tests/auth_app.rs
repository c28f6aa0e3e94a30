//! The `auth` guest app through its exported interfaces, as apps that build on it call them:
//! `crypto` (ed25519 keys and signatures that interoperate with the host's node keys, SHA-256
//! against a published vector, sealed messages that only their recipient opens) and
//! `capabilities` (issue, delegate, verify, link ids, revoke), whose bytes the host's
//! `exorun-cap` reads and verifies the same way.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use common::build;
use exorun_bind::builder::Linkable;
use exorun_core::instance::InstanceHandle;
use exorun_core::runtime::Runtime;
use exorun_core::system::SystemComponent;
use exorun_systems::config::Config;
use exorun_systems::wasi::Wasi;
use exorun_transport::identity::NodeKey;
use wasmtime::component::Val;

const CRYPTO: &str = "exorun:auth/crypto";
const CAPABILITIES: &str = "exorun:auth/capabilities";

/// An `auth` instance trusting `roots` (comma-separated keys).
async fn auth(runtime: &Arc<Runtime>, roots: &str) -> InstanceHandle {
    let values = BTreeMap::from([("roots".to_owned(), roots.to_owned())]);
    let config: Arc<dyn SystemComponent> = Arc::new(Config::new(values));
    let wasi: Arc<dyn SystemComponent> = Arc::new(Wasi::new());
    let links = vec![
        ("wasi:config/store@0.2.0-rc.1", Linkable::System(config)),
        ("wasi:random/random@0.2.12", Linkable::System(wasi)),
    ];
    build(runtime, "auth", links, None).await
}

async fn call(auth: &InstanceHandle, interface: &str, function: &str, args: &[Val]) -> Val {
    let mut results = [Val::Bool(false)];
    let called = auth.call(interface, function, args, &mut results);
    called
        .await
        .unwrap_or_else(|error| panic!("{function}: {error}"));
    results[0].clone()
}

fn bytes(data: &[u8]) -> Val {
    Val::List(data.iter().map(|byte| Val::U8(*byte)).collect())
}

fn strings(texts: &[&str]) -> Val {
    Val::List(
        texts
            .iter()
            .map(|text| Val::String((*text).into()))
            .collect(),
    )
}

fn to_bytes(value: &Val) -> Vec<u8> {
    let Val::List(items) = value else {
        panic!("not a list: {value:?}")
    };
    let byte = |item: &Val| {
        let Val::U8(byte) = item else {
            panic!("not a byte: {item:?}")
        };
        *byte
    };
    items.iter().map(byte).collect()
}

/// `Ok(value)` of a `result`, or the `Err`'s text.
fn ok(value: Val) -> Result<Val, String> {
    let Val::Result(result) = value else {
        panic!("not a result: {value:?}")
    };
    match result {
        Ok(value) => Ok(value.map_or(Val::Tuple(Vec::new()), |value| *value)),
        Err(Some(error)) => {
            let Val::String(text) = *error else {
                panic!("not a string: {error:?}")
            };
            Err(text)
        }
        Err(None) => Err(String::new()),
    }
}

/// A `key-pair` record's secret and public halves.
fn pair(value: &Val) -> (Vec<u8>, Vec<u8>) {
    let Val::Record(fields) = value else {
        panic!("not a record: {value:?}")
    };
    (to_bytes(&fields[0].1), to_bytes(&fields[1].1))
}

fn key_text(public: &[u8]) -> String {
    let hex: String = public.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("ed25519:{hex}")
}

fn now() -> u64 {
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    since.unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crypto_signs_hashes_and_seals_interoperably() {
    let runtime = Runtime::new().unwrap();
    let auth = auth(&runtime, "").await;
    let (secret, public) = pair(&call(&auth, CRYPTO, "generate", &[]).await);
    assert_eq!((secret.len(), public.len()), (32, 32));
    let message = bytes(b"a message");
    let signed = call(&auth, CRYPTO, "sign", &[bytes(&secret), message.clone()]).await;
    let signature = ok(signed).unwrap();
    let verify = [bytes(&public), message.clone(), signature.clone()];
    assert_eq!(
        call(&auth, CRYPTO, "verify", &verify).await,
        Val::Bool(true)
    );
    let other = [bytes(&public), bytes(b"another message"), signature];
    assert_eq!(
        call(&auth, CRYPTO, "verify", &other).await,
        Val::Bool(false)
    );
    // A host node key's signature verifies in the guest: plain ed25519 on both sides.
    let node = NodeKey::generate().unwrap();
    let host_signature = node.sign(b"a message").unwrap();
    let node_public = node.public();
    let host = [
        bytes(node_public.as_bytes()),
        message,
        bytes(&host_signature),
    ];
    assert_eq!(call(&auth, CRYPTO, "verify", &host).await, Val::Bool(true));
    // SHA-256("abc"), FIPS 180-2's first example.
    let digest = to_bytes(&call(&auth, CRYPTO, "hash", &[bytes(b"abc")]).await);
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(
        hex,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let (secret, public) = pair(&call(&auth, CRYPTO, "generate-exchange", &[]).await);
    let (other_secret, _) = pair(&call(&auth, CRYPTO, "generate-exchange", &[]).await);
    let seal = [bytes(&public), bytes(b"for your eyes")];
    let sealed = to_bytes(&ok(call(&auth, CRYPTO, "seal", &seal).await).unwrap());
    let again = to_bytes(&ok(call(&auth, CRYPTO, "seal", &seal).await).unwrap());
    assert_ne!(sealed, again, "a fresh ephemeral key and nonce each time");
    let open = [bytes(&secret), bytes(&sealed)];
    let opened = ok(call(&auth, CRYPTO, "open", &open).await).unwrap();
    assert_eq!(to_bytes(&opened), b"for your eyes");
    let refused = "the message was tampered with, or sealed to another key";
    let wrong_key = [bytes(&other_secret), bytes(&sealed)];
    let wrong_key = ok(call(&auth, CRYPTO, "open", &wrong_key).await);
    assert_eq!(wrong_key, Err(refused.to_owned()));
    let mut tampered = sealed;
    *tampered.last_mut().unwrap() ^= 1;
    let tampered = [bytes(&secret), bytes(&tampered)];
    let tampered = ok(call(&auth, CRYPTO, "open", &tampered).await);
    assert_eq!(tampered, Err(refused.to_owned()));
}

/// Verifies `capability` with the host's `exorun-cap` for Alice's `crunch#tally`, trusting
/// `root`: the grant's not-after (its caveats checked).
fn natively(capability: &[u8], root: &[u8], alice: &[u8]) -> u64 {
    let decoded = exorun_cap::Capability::decode(capability).unwrap();
    let request = exorun_cap::Request {
        caller: alice.try_into().unwrap(),
        export: "crunch",
        interface: "exorun:test/crunch",
        function: "tally",
        now: now(),
    };
    let root: [u8; 32] = root.try_into().unwrap();
    let grant = exorun_cap::verify::verify(&decoded, &[root], &[], &request).unwrap();
    assert_eq!(grant.caveats, ["t=1"]);
    grant.not_after
}

/// `verify`'s arguments: `capability` presented by `caller` for `crunch`'s `function`, now.
fn verify(capability: &[u8], caller: &str, function: &str) -> [Val; 6] {
    [
        bytes(capability),
        Val::String(caller.to_owned()),
        Val::String("crunch".into()),
        Val::String("exorun:test/crunch".into()),
        Val::String(function.into()),
        Val::U64(now()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_issue_delegate_verify_and_revoke() {
    let runtime = Runtime::new().unwrap();
    let keys = auth(&runtime, "").await;
    let generate = async || pair(&call(&keys, CRYPTO, "generate", &[]).await);
    let (operator_secret, operator) = generate().await;
    let (alice_secret, alice) = generate().await;
    let (_, bob) = generate().await;
    let auth = auth(&runtime, &key_text(&operator)).await;
    let (alice_key, bob_key) = (key_text(&alice), key_text(&bob));
    let tally = ["crunch/exorun:test/crunch#tally"];
    let issue = [
        bytes(&operator_secret),
        Val::String(alice_key.clone()),
        strings(&tally),
        Val::U64(now() - 10),
        Val::U64(now() + 3600),
        strings(&["t=1"]),
    ];
    let issued = to_bytes(&ok(call(&auth, CAPABILITIES, "issue", &issue).await).unwrap());
    // The host's format crate reads and verifies what the guest issued.
    let not_after = natively(&issued, &operator, &alice);
    let granted = ok(call(
        &auth,
        CAPABILITIES,
        "verify",
        &verify(&issued, &alice_key, "tally"),
    )
    .await);
    let grant = Val::Record(vec![
        ("caveats".into(), strings(&["t=1"])),
        ("not-after".into(), Val::U64(not_after)),
    ]);
    assert_eq!(granted, Ok(grant));
    let other = verify(&issued, &alice_key, "crunch");
    let other = ok(call(&auth, CAPABILITIES, "verify", &other).await);
    assert_eq!(
        other,
        Err("the capability does not grant this call".to_owned())
    );
    // Delegation narrows (or is refused), and a revoked link refuses what hangs below it.
    let delegate = |rights: &[&str]| {
        [
            bytes(&issued),
            bytes(&alice_secret),
            Val::String(bob_key.clone()),
            strings(rights),
            Val::U64(now() + 60),
            strings(&[]),
        ]
    };
    let wider = ok(call(&auth, CAPABILITIES, "delegate", &delegate(&["crunch"])).await);
    let widened = "a delegation only narrows: crunch is not granted to the holder";
    assert_eq!(wider, Err(widened.to_owned()));
    let delegated = ok(call(&auth, CAPABILITIES, "delegate", &delegate(&tally)).await).unwrap();
    let delegated = to_bytes(&delegated);
    let by_bob = verify(&delegated, &bob_key, "tally");
    assert!(ok(call(&auth, CAPABILITIES, "verify", &by_bob).await).is_ok());
    let ids = ok(call(&auth, CAPABILITIES, "link-ids", &[bytes(&delegated)]).await).unwrap();
    let Val::List(ids) = ids else {
        panic!("{ids:?}")
    };
    assert_eq!(ids.len(), 2);
    call(&auth, CAPABILITIES, "revoke", &[ids[0].clone()]).await;
    let revoked = ok(call(&auth, CAPABILITIES, "verify", &by_bob).await);
    assert_eq!(revoked, Err("link 0 is revoked".to_owned()));
}
