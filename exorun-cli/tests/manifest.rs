//! Manifest mistakes through the real binary: each is reported as `PATH: KEY: problem`, all at
//! once, before anything runs or touches the network.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::manifest;
use common::refused;
use common::run;
use common::text;

#[test]
fn every_manifest_mistake_names_the_file_and_the_key() {
    let all_at_once = refused(
        "mistakes",
        r#"
[apps]
consumer = "{fixtures}/math-consumer.wasm"
[peers]
far = "http://nowhere"
[instances.a]
app = "nope"
[instances.b]
app = "consumer"
links = { "exorun:test/math" = { local = "ghost" } }
[instances.c]
app = "consumer"
links = { "exorun:test/math" = { remote = "far", target = "math" } }
[instances.d]
app = "consumer"
links = { "exorun:test/math" = { system = "clock" } }
[instances.e]
app = "consumer"
links = { "exorun:test/math" = { remote = "tcp://h:1" } }
[instances.f]
app = "consumer"
links = { "wasi:*" = { system = "logging" } }
[instances.g]
app = "consumer"
wasi = { env = { GREETING = "lost" } }
links = { "exorun:test/math" = { local = "b" } }
[instances.h]
app = "consumer"
wasi = { stdio = "loud" }
links = { "exorun:test/math" = { local = "b", system = "kv" }, "wasi:*" = { system = "wasi" } }
[instances.i]
app = "consumer"
links = { "exorun:test/math" = { system = "logging", store = "s" } }
[instances."j.k"]
app = "consumer"
links = { "exorun:test/math" = { local = "b" } }
"#,
    );
    assert_eq!(
        all_at_once,
        "exorun: M: peers.far: bad address `http://nowhere`: expected tcp://HOST:PORT, \
         unix://PATH, tls://HOST:PORT, quic://HOST:PORT or nats://HOST:PORT\n\
         exorun: M: instances.a.app: unknown app `nope`\n\
         exorun: M: instances.b.links.\"exorun:test/math\": unknown instance `ghost`\n\
         exorun: M: instances.c.links.\"exorun:test/math\": the peer `far` is not usable (see \
         peers.far)\n\
         exorun: M: instances.d.links.\"exorun:test/math\": unknown system `clock` (known: \
         wasi, logging, kv, keyvalue, config, caller, meta, http)\n\
         exorun: M: instances.e.links.\"exorun:test/math\": a remote link needs `target`, the \
         instance's name on the peer\n\
         exorun: M: instances.f.links.\"wasi:*\": `wasi:*` can only be linked to `system = \
         \"wasi\"`\n\
         exorun: M: instances.g.wasi: WASI settings are given but no import is linked to \
         `system = \"wasi\"`\n\
         exorun: M: instances.h.links.\"exorun:test/math\": a link needs exactly one of \
         `system`, `local` or `remote`\n\
         exorun: M: instances.h.wasi.stdio: stdio must be \"inherit\" or \"closed\", not `loud`\n\
         exorun: M: instances.i.links.\"exorun:test/math\": `store` applies only to `system = \
         \"kv\"` and `system = \"keyvalue\"`\n\
         exorun: M: instances.j.k: instance names may not be empty or contain `.`, `#`, `(` or \
         whitespace\n"
    );
}

#[test]
fn peer_and_supervision_mistakes_name_their_keys() {
    let all_at_once = refused(
        "supervision",
        r#"
[apps]
provider = "{fixtures}/math-provider.wasm"
[peers]
both = { address = "tcp://a:1", addresses = ["tcp://b:2"] }
none = { timeout_ms = 5 }
empty = { addresses = [] }
moody = { address = "tcp://a:1", when_down = "sulk" }
[instances.l]
app = "provider"
replicas = 0
restart = "sometimes"
[instances.m]
app = "provider"
replicas = "lots"
[instances.n]
app = "provider"
replicas = 1000000
limits = { memory_mib = 18446744073709551615, fuel_per_call = 18446744073709551615, lock_wait_ms = 86400000, calls_waiting_max = 100000000, bytes_waiting_mib = 1000000 }
"#,
    );
    assert_eq!(
        all_at_once,
        "exorun: M: peers.both: a peer needs `address` or a non-empty `addresses`, not both\n\
         exorun: M: peers.empty: a peer needs `address` or a non-empty `addresses`, not both\n\
         exorun: M: peers.moody: when_down must be \"fail\" or \"wait\", not `sulk`\n\
         exorun: M: peers.none: a peer needs `address` or a non-empty `addresses`, not both\n\
         exorun: M: instances.l.replicas: replicas must be a count from 1 up or \"per-call\"\n\
         exorun: M: instances.l.restart: restart must be \"always\" or \"never\", not \
         `sometimes`\n\
         exorun: M: instances.m.replicas: replicas must be a count from 1 up or \"per-call\"\n\
         exorun: M: instances.n.limits: fuel_per_call = 18446744073709551615 is past its bound \
         of 1000000000000\n\
         exorun: M: instances.n.limits: memory_mib = 18446744073709551615 is past its bound of \
         4096\n\
         exorun: M: instances.n.limits: lock_wait_ms = 86400000 is past its bound of 600000\n\
         exorun: M: instances.n.limits: calls_waiting_max = 100000000 is past its bound of \
         65536\n\
         exorun: M: instances.n.limits: bytes_waiting_mib = 1000000 is past its bound of 4096\n\
         exorun: M: instances.n.replicas: 1000000 replicas is more than the 256 one instance \
         may have\n"
    );
}

#[test]
fn store_mistakes_name_their_keys() {
    let all_at_once = refused(
        "stores",
        r#"
[apps]
kv = "{fixtures}/kv-client.wasm"
[peers]
plain = "tcp://127.0.0.1:1"
[stores]
both = { path = "a.redb", nats = "nats://127.0.0.1:1" }
neither = { bucket = "b" }
dotted = { nats = "nats://127.0.0.1:1", bucket = "a.b" }
tcp = { nats = "plain" }
stray = { path = "a.redb", bucket = "b" }
[instances.k]
app = "kv"
links = { "exorun:host/kv" = { system = "kv", store = "both" } }
"#,
    );
    assert_eq!(
        all_at_once,
        "exorun: M: stores.both: a store is `{ path = \"FILE\" }` or `{ nats = PEER_OR_ADDRESS, \
         bucket = \"NAME\" }`\n\
         exorun: M: stores.dotted: bucket `a.b` must be letters, digits, `-` and `_`\n\
         exorun: M: stores.neither: a store is `{ path = \"FILE\" }` or `{ nats = \
         PEER_OR_ADDRESS, bucket = \"NAME\" }`\n\
         exorun: M: stores.stray: a store is `{ path = \"FILE\" }` or `{ nats = \
         PEER_OR_ADDRESS, bucket = \"NAME\" }`\n\
         exorun: M: stores.tcp: `plain` is not a nats:// peer\n"
    );
}

/// A provider of `exorun:test/math` whose `add` takes one parameter, as a binary component.
fn odd_math() -> PathBuf {
    let wat = r#"(component
      (core module $m (func (export "add") (param i32) (result i32) local.get 0))
      (core instance $i (instantiate $m))
      (func $add (param "n" u32) (result u32) (canon lift (core func $i "add")))
      (instance $math (export "add" (func $add)))
      (export "exorun:test/math" (instance $math)))"#;
    let path = std::env::temp_dir().join(format!("exorun-cli-{}-odd.wasm", std::process::id()));
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    path
}

#[test]
fn contract_mistakes_are_found_before_anything_runs() {
    let odd = odd_math();
    let body = r#"
[apps]
consumer = "{fixtures}/math-consumer.wasm"
odd = "ODD"
counters = "{fixtures}/counter-consumer.wasm"
provider = "{fixtures}/counter-provider.wasm"
broken = "{fixtures}/not-there.wasm"
[instances.odd]
app = "odd"
[instances.unlinked]
app = "consumer"
[instances.mismatched]
app = "consumer"
links = { "exorun:test/math" = { local = "odd" } }
[instances.handles]
app = "counters"
links = { "exorun:test/counters" = { remote = "tcp://127.0.0.1:1", target = "c" }, "exorun:test/counter-sink" = { local = "sink" } }
[instances.sink]
app = "provider"
replicas = "per-call"
[instances.shared]
app = "provider"
replicas = "per-call"
export = true
[instances.stray]
app = "consumer"
links = { "exorun:test/math" = { local = "odd" }, "exorun:test/extra" = { system = "kv" } }
"#
    .replace("ODD", odd.to_str().unwrap());
    let stderr = refused("contracts", &body);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines[0].starts_with("exorun: M: apps.broken: cannot read "),
        "{stderr}"
    );
    assert_eq!(
        &lines[1..],
        [
            "exorun: M: instances.mismatched.links.\"exorun:test/math\": exorun:test/math#add: \
             the import expects func(a: u32, b: u32) -> u32, the provider has func(n: u32) -> u32",
            "exorun: M: instances.shared.replicas: exorun:test/counter-sink hands out resources, \
             which a per-call instance cannot keep",
            "exorun: M: instances.sink.replicas: exorun:test/counter-sink hands out resources, \
             which a per-call instance cannot keep",
            "exorun: M: instances.stray.links.\"exorun:test/math\": exorun:test/math#add: the \
             import expects func(a: u32, b: u32) -> u32, the provider has func(n: u32) -> u32",
            "exorun: M: instances.stray.links.\"exorun:test/extra\": exorun:test/extra is linked \
             but the app does not import it",
            "exorun: M: instances.unlinked.links: import exorun:test/math is not linked",
        ]
    );
}

#[test]
fn unreadable_and_malformed_manifests_are_refused() {
    let missing = run(&["run", "/nonexistent/manifest.toml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).starts_with("exorun: /nonexistent/manifest.toml: cannot read: "),
        "{}",
        text(&missing.stderr)
    );
    let typo = refused("typo", "[instances.a]\napp = \"x\"\nexprot = true\n");
    assert!(
        typo.starts_with("exorun: M: unknown field `exprot`"),
        "{typo}"
    );
}

#[test]
fn an_instance_that_fails_to_start_is_named_with_its_cause() {
    let path = manifest(
        "tiny",
        r#"
[apps]
provider = "{fixtures}/math-provider.wasm"
[instances.math]
app = "provider"
limits = { memory_mib = 0 }
"#,
    );
    let output = run(&["run", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr).replace(&path.display().to_string(), "M");
    assert!(
        stderr.starts_with(
            "exorun: M: instances.math: cannot instantiate `provider`: the guest ran out of \
             memory: memory of "
        ),
        "{stderr}"
    );
    assert!(stderr.ends_with("exceeds the limit of 0\n"), "{stderr}");
}

#[test]
fn unusable_component_files_are_reported_with_every_other_mistake() {
    let fifo = std::env::temp_dir().join(format!("exorun-cli-{}-fifo.wasm", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let body = r#"
[apps]
zero = "/dev/zero"
pipe = "FIFO"
gone = "{fixtures}/not-there.wasm"
[instances.a]
app = "nope"
"#
    .replace("FIFO", fifo.to_str().unwrap());
    let all_at_once = refused("files", &body);
    let missing = fixtures_path("not-there.wasm");
    assert_eq!(
        all_at_once,
        format!(
            "exorun: M: instances.a.app: unknown app `nope`\n\
             exorun: M: apps.gone: cannot read {missing}: No such file or directory (os error 2)\n\
             exorun: M: apps.pipe: {} is not a regular file\n\
             exorun: M: apps.zero: /dev/zero is not a regular file\n",
            fifo.display()
        )
    );
    std::fs::remove_file(&fifo).unwrap();
}

fn fixtures_path(file: &str) -> String {
    exorun_testkit::fixtures::dir()
        .join(file)
        .display()
        .to_string()
}

#[test]
fn guard_config_and_capability_mistakes_are_reported_at_their_keys() {
    let not_a_capability = manifest("caps-not-a-cap", "# a manifest, not a capability");
    let private = std::fs::Permissions::from_mode(0o600);
    std::fs::set_permissions(&not_a_capability, private).unwrap();
    let all_at_once = refused(
        "guarded",
        &r#"
[apps]
provider = "{fixtures}/math-provider.wasm"
consumer = "{fixtures}/math-consumer.wasm"
[peers]
lattice = { address = "nats://127.0.0.1:4222", capability = "x.cap" }
[instances.a]
app = "provider"
export = { guard = "ghost" }
[instances.b]
app = "provider"
export = { guard = "a" }
config = { roots = "lost" }
[instances.c]
app = "provider"
export = {}
[instances.d]
app = "consumer"
links = { "exorun:test/math" = { local = "a", capability = "x.cap" } }
[instances.e]
app = "consumer"
links = { "exorun:test/math" = { remote = "tcp://127.0.0.1:1", target = "math", capability = "NOT_A_CAP" } }
"#
        .replace("NOT_A_CAP", not_a_capability.to_str().unwrap()),
    );
    let shown = not_a_capability.display();
    assert_eq!(
        all_at_once,
        format!(
            "exorun: M: peers.lattice: a capability is held by a caller's key, which NATS does \
             not carry; present it over tls:// or quic://\n\
             exorun: M: instances.a.export: unknown instance `ghost`\n\
             exorun: M: instances.b.config: `config` is given but no import is linked to \
             `system = \"config\"` (or `wasi:*`)\n\
             exorun: M: instances.c.export: an export table needs `allow`, `guard` or both; to \
             reach anyone, use `export = true`\n\
             exorun: M: instances.d.links.\"exorun:test/math\": `capability` applies only to \
             remote links\n\
             exorun: M: instances.e.links.\"exorun:test/math\": {shown}: not a capability \
             (no EXCAP\\x01 header)\n\
             exorun: M: instances.b.export: `a` cannot guard: its app does not export \
             exorun:auth/guard#check\n"
        )
    );
}

#[test]
fn a_deployed_instance_is_confined_to_what_its_deployer_was_granted() {
    use exorun_host::manifest::Known;
    use exorun_host::manifest::Link;
    let base = exorun_host::manifest::parse(
        std::path::Path::new("m.toml"),
        "[peers]\ndeclared = \"tcp://127.0.0.1:2\"\n",
        &std::collections::BTreeMap::new(),
    )
    .unwrap();
    let names = |list: &[&str]| list.iter().map(|name| (*name).to_owned()).collect();
    let known = Known {
        apps: names(&["x"]),
        instances: names(&["meta", "team-a"]),
        deployed: names(&["team-a"]),
    };
    // A running runtime's peers start as its manifest's (`Composer::start`).
    let mut peers = base.peers.clone();
    let settings = r#"
app = "x"
trusted = ["meta"]
wasi = { stdio = "inherit", preopen = [{ host = "/", guest = "/", writable = true }] }
links = { "a:b/c" = { local = "meta" }, "a:b/d" = { remote = "tcp://127.0.0.1:1", target = "t", capability = "/etc/x.cap" }, "wasi:*" = { system = "wasi" } }
"#;
    let refused =
        exorun_host::manifest::parse_instance(&base, &mut peers, &known, "team-b", settings);
    let problems: Vec<String> = refused
        .unwrap_err()
        .into_iter()
        .map(|(key, problem)| format!("{key}: {problem}"))
        .collect();
    assert_eq!(
        problems,
        [
            "instances.team-b.trusted: `system = \"meta\"` is linked only by an instance of the \
             manifest marked `trusted = [\"meta\"]`",
            "instances.team-b.wasi: a deployed instance may not use preopened host directories",
            "instances.team-b.wasi: a deployed instance may not use the host's stdout and stderr",
            "instances.team-b.links.\"a:b/d\": a deployed instance may not use a capability file \
             on the host",
            "instances.team-b.links.\"a:b/c\": a deployed instance may not use a local link to \
             `meta`, which was not deployed",
            "instances.team-b.links.\"a:b/d\": a deployed instance may not use a remote link to \
             `tcp://127.0.0.1:1`, which is not a peer the operator declared (a deployed instance \
             names a declared peer, never an address)",
        ]
    );
    let declared: Vec<&String> = peers.keys().collect();
    assert_eq!(declared, ["declared"], "a refused instance adds no peer");
    // Not even a socket path: only peers the operator declared, by name.
    let settings = r#"
app = "x"
links = { "a:b/d" = { remote = "unix:///run/private.sock", target = "t" } }
"#;
    let refused =
        exorun_host::manifest::parse_instance(&base, &mut peers, &known, "team-b", settings);
    assert_eq!(refused.unwrap_err().len(), 1);
    // Allowed: a local link to another deployed instance, a store of its own, and a remote
    // link to a declared peer.
    let settings = r#"
app = "x"
links = { "a:b/c" = { local = "team-a" }, "a:b/k" = { system = "kv", store = "notes" }, "a:b/d" = { remote = "declared", target = "t" } }
"#;
    let instance =
        exorun_host::manifest::parse_instance(&base, &mut peers, &known, "team-b", settings)
            .unwrap();
    let store = Link::Kv {
        store: "deployed/notes".to_owned(),
    };
    assert_eq!(instance.links.get("a:b/k"), Some(&store));
}
