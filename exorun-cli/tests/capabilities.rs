//! Capabilities across real processes over `tls://`: an `exorun serve` whose exports are guarded
//! by the `auth` app (trusting one operator key, with one link revoked in its configuration),
//! and callers that present capabilities made with `exorun cap` (or, for the ones the command
//! refuses to make, with `exorun-cap` and a node key directly). Every refusal is pinned with the
//! guard's exact reason; a three-link delegation works within its narrowing; a callee reads the
//! caller's key and the grant's caveats; a guard that traps or runs out of fuel denies (fail
//! closed) and the next call is decided again; a consumer process presents a capability from its
//! manifest.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use exorun_bind::link::remote;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use common::Server;
use common::manifest;
use common::run;
use common::text;
use exorun_cap::Capability;
use exorun_cap::Right;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::identity::NodeKey;
use exorun_transport::identity::PublicKey;
use exorun_transport::net;
use exorun_transport::tls::Secure;
use exorun_transport::transport;
use neorpc::codec;
use neorpc::failure::Failure;
use neorpc::frame;
use wasmtime::component::Type;
use wasmtime::component::Val;

const CRUNCH: &str = "exorun:test/crunch";
const NOTES: &str = "exorun:test/notes";
const RUNNABLE: &str = "exorun:test/runnable";

/// A scratch directory for this process's keys and capabilities.
fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exorun-cli-caps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `exorun keygen` into a fresh file: its path and public key.
fn keygen(name: &str) -> (PathBuf, PublicKey) {
    let path = dir().join(format!("{name}.key"));
    let _ = std::fs::remove_file(&path);
    let output = run(&["keygen", "--out", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let public = PublicKey::parse(text(&output.stdout).trim()).unwrap();
    (path, public)
}

/// `exorun cap ARGS… --out DIR/NAME.cap`; the file's path.
fn cap(args: &[&str], name: &str) -> PathBuf {
    let out = dir().join(format!("{name}.cap"));
    let _ = std::fs::remove_file(&out);
    let mut all = vec!["cap"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let output = run(&all);
    assert!(output.status.success(), "{}", text(&output.stderr));
    out
}

fn bytes_of(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn now() -> u64 {
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    since.unwrap().as_secs()
}

/// A capability the command would refuse to make: links written here, each signed by the key
/// file given for it.
fn crafted(links: Vec<(exorun_cap::Link, &Path)>) -> Vec<u8> {
    let mut chain = Capability { links: Vec::new() };
    for (mut link, signer) in links {
        if let Some(parent) = chain.links.last() {
            link.parent = parent.id();
        }
        let key = NodeKey::read(signer).unwrap();
        exorun_cap::verify::sign_with(&mut link, |signed| key.sign(signed).unwrap()).unwrap();
        chain.links.push(link);
    }
    chain.encode().unwrap()
}

fn link(issuer: &PublicKey, subject: &PublicKey, rights: &[&str]) -> exorun_cap::Link {
    exorun_cap::Link {
        issuer: *issuer.as_bytes(),
        subject: *subject.as_bytes(),
        parent: [0; 32],
        not_before: now() - 60,
        not_after: now() + 3600,
        rights: rights
            .iter()
            .map(|right| Right::parse(right).unwrap())
            .collect(),
        caveats: Vec::new(),
        signature: [0; 64],
    }
}

/// One caller: a tls:// connection authenticated with its node key.
struct Caller {
    client: Client,
}

impl Caller {
    async fn connect(server: &Server, key: &Path, pin: PublicKey) -> Self {
        let secure = Secure {
            key: Arc::new(NodeKey::read(key).unwrap()),
            pin,
        };
        let address = Address::parse(&server.address).unwrap();
        let max = transport::MESSAGE_BYTES_MAX;
        let connection = net::connect_secure(&address, &secure, max).await.unwrap();
        let client = Client::new(connection, client::Config::default());
        Self { client }
    }

    /// Calls `target`'s `method` with `args`, presenting `capability`; the results as `types`.
    async fn call(
        &self,
        target: &str,
        method: &str,
        args: &[Val],
        types: &[Type],
        capability: Option<&[u8]>,
    ) -> Result<Vec<Val>, remote::Error> {
        let mut writer = frame::CallWriter::new(target, method).unwrap();
        let limits = codec::Limits::default();
        codec::encode_into(writer.args(), args, &limits).unwrap();
        let frame = writer.finish_presenting(&[], capability).unwrap();
        let reply = self
            .client
            .call(frame)
            .await
            .map_err(remote::Error::Channel)?;
        let slab: Bytes = reply.map_err(remote::Error::Failed)?;
        Ok(codec::decode(&slab, types, &limits).unwrap())
    }

    /// `crunch`'s `tally`, presenting `capability`.
    async fn tally(&self, capability: Option<&[u8]>) -> Result<u32, remote::Error> {
        let method = format!("{CRUNCH}#tally");
        let results = self
            .call("crunch", &method, &[], &[Type::U32], capability)
            .await?;
        let [Val::U32(count)] = results[..] else {
            panic!("{results:?}")
        };
        Ok(count)
    }
}

/// The failure a guard's denial reaches a caller as.
fn denied(export: &str, interface: &str, reason: &str) -> remote::Error {
    remote::Error::Failed(Failure::PermissionDenied {
        instance: export.to_owned(),
        interface: interface.to_owned(),
        reason: reason.to_owned(),
    })
}

/// The serving runtime: `crunch`, `notes`, `math` and `whoami` guarded by `auth` (which trusts
/// `operator` and has `revoked` on its list), and `tested` guarded by a guard that misbehaves on
/// command, with little fuel.
fn server_manifest(tag: &str, key: &Path, operator: &PublicKey, revoked: &str) -> PathBuf {
    manifest(
        &format!("caps-server-{tag}"),
        &r#"
key = "KEY"
[apps]
auth = "{fixtures}/auth.wasm"
cruncher = "{fixtures}/cruncher.wasm"
kv-client = "{fixtures}/kv-client.wasm"
math-provider = "{fixtures}/math-provider.wasm"
misbehave = "{fixtures}/misbehave.wasm"
whoami = "{fixtures}/whoami.wasm"
[instances.auth]
app = "auth"
config = { roots = "OPERATOR", revoked = "REVOKED" }
links = { "wasi:*" = { system = "wasi" } }
[instances.crunch]
app = "cruncher"
export = { guard = "auth" }
[instances.notes]
app = "kv-client"
export = { guard = "auth" }
links = { "exorun:host/kv" = { system = "kv" } }
[instances.math]
app = "math-provider"
export = { guard = "auth" }
[instances.whoami]
app = "whoami"
export = { guard = "auth" }
links = { "exorun:host/caller" = { system = "caller" } }
[instances.wild]
app = "misbehave"
limits = { fuel_per_call = 100000000 }
[instances.tested]
app = "cruncher"
export = { guard = "wild" }
"#
        .replace("KEY", key.to_str().unwrap())
        .replace("OPERATOR", &operator.to_string())
        .replace("REVOKED", revoked),
    )
}

struct World {
    server: Server,
    server_public: PublicKey,
    operator: PathBuf,
    operator_public: PublicKey,
    alice: PathBuf,
    alice_public: PublicKey,
    bob: PathBuf,
    bob_public: PublicKey,
    revoked: PathBuf,
}

/// Keys, a capability to revoke, and the server trusting the operator; `tag` keeps each test's
/// files apart.
fn world(tag: &str) -> World {
    let (server_key, server_public) = keygen(&format!("{tag}-server"));
    let (operator, operator_public) = keygen(&format!("{tag}-operator"));
    let (alice, alice_public) = keygen(&format!("{tag}-alice"));
    let (bob, bob_public) = keygen(&format!("{tag}-bob"));
    let to_alice = alice_public.to_string();
    let revoked = cap(
        &[
            "issue",
            "--key",
            operator.to_str().unwrap(),
            "--to",
            &to_alice,
            "--allow",
            "crunch",
        ],
        &format!("{tag}-revoked"),
    );
    let id = run(&["cap", "revoke", revoked.to_str().unwrap()]);
    assert!(id.status.success(), "{}", text(&id.stderr));
    let id = text(&id.stdout).trim().to_owned();
    assert_eq!(id.len(), 64, "{id}");
    let manifest = server_manifest(tag, &server_key, &operator_public, &id);
    let server = Server::start(&manifest, "tls://127.0.0.1:0");
    World {
        server,
        server_public,
        operator,
        operator_public,
        alice,
        alice_public,
        bob,
        bob_public,
        revoked,
    }
}

/// `exorun cap issue` by the operator to `to` for `rights`: the capability's bytes.
fn issue(world: &World, to: &PublicKey, rights: &[&str], name: &str) -> Vec<u8> {
    let (operator, to) = (world.operator.to_str().unwrap(), to.to_string());
    let mut args = vec!["issue", "--key", operator, "--to", &to];
    for right in rights {
        args.extend_from_slice(&["--allow", right]);
    }
    bytes_of(&cap(&args, name))
}

/// `crunch#tally`'s refusal with `reason`.
fn tally_denied(reason: &str) -> Result<u32, remote::Error> {
    Err(denied("crunch", CRUNCH, reason))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_for_one_function_reaches_it_and_nothing_else() {
    let world = world("one");
    let tally_rights = ["crunch/exorun:test/crunch#tally"];
    let tally_only = issue(&world, &world.alice_public, &tally_rights, "one-tally");
    let alice = Caller::connect(&world.server, &world.alice, world.server_public).await;
    assert_eq!(alice.tally(Some(&tally_only)).await, Ok(1));
    // Warm: the grant is kept for this connection, and the call runs again.
    assert_eq!(alice.tally(Some(&tally_only)).await, Ok(2));
    let not_granted = "the capability does not grant this call";
    // Another function of the same interface, and another export.
    let (crunch, three) = (format!("{CRUNCH}#crunch"), [Val::U32(3)]);
    let crunched = alice
        .call("crunch", &crunch, &three, &[Type::U64], Some(&tally_only))
        .await;
    assert_eq!(crunched, Err(denied("crunch", CRUNCH, not_granted)));
    let (add, two) = ("exorun:test/math#add", [Val::U32(1), Val::U32(2)]);
    let added = alice
        .call("math", add, &two, &[Type::U32], Some(&tally_only))
        .await;
    assert_eq!(added, Err(denied("math", "exorun:test/math", not_granted)));
    // Another interface of one export: a capability for `notes` only.
    let notes_rights = ["notes/exorun:test/notes"];
    let notes_only = issue(&world, &world.alice_public, &notes_rights, "one-notes");
    let (put, pair) = (
        format!("{NOTES}#put"),
        [Val::String("k".into()), Val::String("v".into())],
    );
    let put = alice
        .call("notes", &put, &pair, &[], Some(&notes_only))
        .await;
    assert_eq!(put, Ok(Vec::new()));
    let run = format!("{RUNNABLE}#run");
    let ran = alice
        .call("notes", &run, &[], &[Type::String], Some(&notes_only))
        .await;
    assert_eq!(ran, Err(denied("notes", RUNNABLE, not_granted)));
    // No capability at all, and the root key itself (which needs none).
    let bare = alice.tally(None).await;
    assert_eq!(bare, tally_denied("no capability was presented"));
    let root = Caller::connect(&world.server, &world.operator, world.server_public).await;
    assert_eq!(root.tally(None).await, Ok(3));
    let (status, stderr) = world.server.interrupt();
    assert!(status.success(), "{stderr}");
}

/// Capabilities for `crunch` that are wrong in time (expired, not yet valid) or revoked (the
/// root on the guard's list, and one delegated below it, presented by Bob).
fn wrong_in_time(world: &World) -> Vec<(&'static str, bool, Vec<u8>, &'static str)> {
    let (operator, alice) = (&world.operator, &world.alice);
    let (root, alice_key) = (&world.operator_public, &world.alice_public);
    let mut expired = link(root, alice_key, &["crunch"]);
    expired.not_after = now() - 10;
    let mut early = link(root, alice_key, &["crunch"]);
    early.not_before = now() + 3600;
    early.not_after = now() + 7200;
    let to_bob = world.bob_public.to_string();
    let revoked = world.revoked.to_str().unwrap();
    let alice_file = alice.to_str().unwrap();
    let below = ["delegate", revoked, "--key", alice_file, "--to", &to_bob];
    let below = bytes_of(&cap(&below, "bad-below-revoked"));
    vec![
        (
            "expired",
            false,
            crafted(vec![(expired, operator)]),
            "link 0 has expired",
        ),
        (
            "early",
            false,
            crafted(vec![(early, operator)]),
            "link 0 is not valid yet",
        ),
        (
            "revoked",
            false,
            bytes_of(&world.revoked),
            "link 0 is revoked",
        ),
        ("below revoked", true, below, "link 0 is revoked"),
    ]
}

/// Capabilities for `crunch` whose chain or bytes are wrong: widened by a delegation (which
/// the command refuses to make), forged (a byte changed after signing, or signed by a key that
/// is not the issuer it names), truncated, and a good one held by Alice presented by Bob.
fn wrong_in_chain(world: &World, good: &[u8]) -> Vec<(&'static str, bool, Vec<u8>, &'static str)> {
    let (operator, alice) = (&world.operator, &world.alice);
    let (root, alice_key) = (&world.operator_public, &world.alice_public);
    let narrow = link(root, alice_key, &["crunch/exorun:test/crunch#tally"]);
    let wider = link(alice_key, &world.bob_public, &["crunch"]);
    let widened = crafted(vec![(narrow, operator), (wider, alice)]);
    let mut forged = good.to_vec();
    let at = forged.windows(6).position(|w| w == b"crunch").unwrap();
    forged[at] = b'k';
    let impostor = crafted(vec![(link(root, alice_key, &["crunch"]), alice)]);
    let truncated = good[..good.len() - 1].to_vec();
    let unsigned = "link 0's signature does not verify";
    vec![
        (
            "widened",
            true,
            widened,
            "link 1 grants more than its parent (rights or time)",
        ),
        ("forged", false, forged, unsigned),
        ("impostor", false, impostor, unsigned),
        ("truncated", false, truncated, "the capability is truncated"),
        (
            "stolen",
            true,
            good.to_vec(),
            "the capability is held by another key",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_capabilities_are_refused_each_with_its_reason() {
    let world = world("bad");
    let alice = Caller::connect(&world.server, &world.alice, world.server_public).await;
    let bob = Caller::connect(&world.server, &world.bob, world.server_public).await;
    let root = &world.operator_public;
    let good = crafted(vec![(
        link(root, &world.alice_public, &["crunch"]),
        &world.operator,
    )]);
    assert_eq!(alice.tally(Some(&good)).await, Ok(1));
    let mut cases = wrong_in_time(&world);
    cases.extend(wrong_in_chain(&world, &good));
    for (case, by_bob, capability, reason) in cases {
        let caller = if by_bob { &bob } else { &alice };
        let refused = caller.tally(Some(&capability)).await;
        assert_eq!(refused, tally_denied(reason), "{case}");
    }
    // Nothing refused ran: the good capability's next call is the second.
    assert_eq!(alice.tally(Some(&good)).await, Ok(2));
    let (status, stderr) = world.server.interrupt();
    assert!(status.success(), "{stderr}");
}

/// Operator -> Alice (`crunch`, `math`, `whoami`, caveat `tenant=7`) -> Bob (`crunch`'s
/// interface and `whoami`, an hour, caveat `read-only`) -> Carol (`tally` and `whoami`), each
/// link made with `exorun cap`: the last file's bytes.
fn three_links(world: &World, carol: &PublicKey) -> Vec<u8> {
    let (alice, bob) = (world.alice.to_str().unwrap(), world.bob.to_str().unwrap());
    let (to_alice, to_bob) = (world.alice_public.to_string(), world.bob_public.to_string());
    let operator = world.operator.to_str().unwrap();
    let mut args = vec![
        "issue", "--key", operator, "--to", &to_alice, "--caveat", "tenant=7",
    ];
    args.extend(["--allow", "crunch", "--allow", "math", "--allow", "whoami"]);
    let root = cap(&args, "three-root");
    let root = root.to_str().unwrap();
    let mut args = vec![
        "delegate",
        root,
        "--key",
        alice,
        "--to",
        &to_bob,
        "--expires-in",
        "1h",
    ];
    args.extend(["--allow", "crunch/exorun:test/crunch", "--allow", "whoami"]);
    args.extend(["--caveat", "read-only"]);
    let middle = cap(&args, "three-middle");
    let (middle, to_carol) = (middle.to_str().unwrap(), carol.to_string());
    let mut args = vec!["delegate", middle, "--key", bob, "--to", &to_carol];
    args.extend([
        "--allow",
        "crunch/exorun:test/crunch#tally",
        "--allow",
        "whoami",
    ]);
    bytes_of(&cap(&args, "three-last"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_link_delegation_works_within_its_narrowing_and_the_callee_sees_it() {
    let world = world("three");
    let (carol, carol_public) = keygen("three-carol");
    let chain = three_links(&world, &carol_public);
    let carol_caller = Caller::connect(&world.server, &carol, world.server_public).await;
    assert_eq!(carol_caller.tally(Some(&chain)).await, Ok(1));
    let not_granted = "the capability does not grant this call";
    let (crunch, three) = (format!("{CRUNCH}#crunch"), [Val::U32(3)]);
    let crunched = carol_caller
        .call("crunch", &crunch, &three, &[Type::U64], Some(&chain))
        .await;
    assert_eq!(crunched, Err(denied("crunch", CRUNCH, not_granted)));
    let (add, two) = ("exorun:test/math#add", [Val::U32(1), Val::U32(2)]);
    let added = carol_caller
        .call("math", add, &two, &[Type::U32], Some(&chain))
        .await;
    assert_eq!(added, Err(denied("math", "exorun:test/math", not_granted)));
    // The callee reads who called and every caveat down the chain.
    let who = "exorun:test/called-by#who";
    let who = carol_caller
        .call("whoami", who, &[], &[Type::String], Some(&chain))
        .await;
    let expected = format!("caller {carol_public} caveats [tenant=7, read-only]");
    assert_eq!(who, Ok(vec![Val::String(expected)]));
    // A holder in the middle of the chain cannot use its end either.
    let bob_caller = Caller::connect(&world.server, &world.bob, world.server_public).await;
    let reason = "the capability is held by another key";
    assert_eq!(bob_caller.tally(Some(&chain)).await, tally_denied(reason));
    let (status, stderr) = world.server.interrupt();
    assert!(status.success(), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_that_traps_or_runs_out_of_fuel_denies_and_the_next_call_is_decided_again() {
    let world = world("wild");
    let caller = Caller::connect(&world.server, &world.alice, world.server_public).await;
    let tally = async |capability: &[u8]| {
        let method = format!("{CRUNCH}#tally");
        let results = caller
            .call("tested", &method, &[], &[Type::U32], Some(capability))
            .await?;
        let [Val::U32(count)] = results[..] else {
            panic!("{results:?}")
        };
        Ok::<u32, remote::Error>(count)
    };
    assert_eq!(tally(b"ok").await, Ok(1));
    assert_eq!(
        tally(b"deny").await,
        Err(denied("tested", CRUNCH, "told to deny"))
    );
    let Err(remote::Error::Failed(Failure::PermissionDenied { reason, .. })) = tally(b"trap").await
    else {
        panic!("a trapping guard let the call through")
    };
    assert!(
        reason.starts_with("the guard `wild` failed: ") && reason.contains("unreachable"),
        "{reason}"
    );
    // The guard was restarted; the next question is answered (a new capability: the kept
    // grant for `ok` would not ask).
    assert_eq!(tally(b"ok again").await, Ok(2));
    let Err(remote::Error::Failed(Failure::PermissionDenied { reason, .. })) = tally(b"spin").await
    else {
        panic!("a spinning guard let the call through")
    };
    assert_eq!(reason, "the guard `wild` failed: the guest ran out of fuel");
    assert_eq!(tally(b"ok once more").await, Ok(3));
    let (status, stderr) = world.server.interrupt();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("the guard failed: call denied"), "{stderr}");
}

#[test]
fn a_consumer_presents_the_capability_its_manifest_names() {
    let world = world("consumer");
    let (carol, carol_public) = keygen("carol-consumer");
    let operator = world.operator.to_str().unwrap();
    let granted = cap(
        &[
            "issue",
            "--key",
            operator,
            "--to",
            &carol_public.to_string(),
            "--allow",
            "math/exorun:test/math#add",
        ],
        "consumer-consumer",
    );
    let consumer = |name: &str, capability: &str| {
        manifest(
            name,
            &r#"
key = "KEY"
[apps]
math-consumer = "{fixtures}/math-consumer.wasm"
[peers]
provider = { address = "ADDRESS", key = "PIN"CAPABILITY }
[instances.calc]
app = "math-consumer"
links = { "exorun:test/math" = { remote = "provider", target = "math" } }
"#
            .replace("KEY", carol.to_str().unwrap())
            .replace("ADDRESS", &world.server.address)
            .replace("PIN", &world.server_public.to_string())
            .replace("CAPABILITY", capability),
        )
    };
    let presenting = consumer(
        "caps-consumer",
        &format!(", capability = \"{}\"", granted.display()),
    );
    let allowed = run(&["run", presenting.to_str().unwrap()]);
    assert!(allowed.status.success(), "{}", text(&allowed.stderr));
    assert_eq!(text(&allowed.stdout), "calc: \"10 + 5 = 15\"\n");
    let bare = consumer("caps-consumer-bare", "");
    let refused = run(&["run", bare.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains(
            "this caller may not call `exorun:test/math` on `math`: no capability was presented"
        ),
        "{stderr}"
    );
    let (status, stderr) = world.server.interrupt();
    assert!(status.success(), "{stderr}");
}
