//! Secure links across real processes: node keys from `exorun keygen`, a provider serving an
//! export allowed to one key over `tls://` and `quic://`, a consumer that pins the provider's
//! key, a stranger refused per export, an impostor with its own key refused at the handshake,
//! and the mistakes `exorun` refuses before serving (a key file others may read, plaintext off
//! loopback, an allow list on a plaintext listener, a secure peer without a node key).

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::Server;
use common::manifest;
use common::refused;
use common::run;
use common::text;

/// A scratch directory for this process's keys.
fn keys_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exorun-cli-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `exorun keygen` into a fresh file; returns its path and the public key it printed.
fn keygen(name: &str) -> (PathBuf, String) {
    let path = keys_dir().join(format!("{name}.key"));
    let _ = std::fs::remove_file(&path);
    let output = run(&["keygen", "--out", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let public = text(&output.stdout).trim().to_owned();
    assert!(public.starts_with("ed25519:"), "{public}");
    (path, public)
}

/// A provider of `math`, exported only to `allowed` (for `exorun:test/math`).
fn provider_manifest(name: &str, key: &std::path::Path, allowed: &str) -> PathBuf {
    manifest(
        name,
        &r#"
key = "KEY"
[apps]
math-provider = "{fixtures}/math-provider.wasm"
[instances.math]
app = "math-provider"
export = { allow = { "ALLOWED" = ["exorun:test/math"] } }
"#
        .replace("KEY", key.to_str().unwrap())
        .replace("ALLOWED", allowed),
    )
}

/// A consumer whose `calc` calls `math` on the peer at `address`, pinned to `pin`.
fn consumer_manifest(
    name: &str,
    key: Option<&std::path::Path>,
    address: &str,
    pin: &str,
) -> PathBuf {
    let key_line = key.map_or_else(String::new, |key| format!("key = \"{}\"", key.display()));
    manifest(
        name,
        &r#"
KEY_LINE
[apps]
math-consumer = "{fixtures}/math-consumer.wasm"
[peers]
provider = { address = "ADDRESS", key = "PIN" }
[instances.calc]
app = "math-consumer"
links = { "exorun:test/math" = { remote = "provider", target = "math" } }
"#
        .replace("KEY_LINE", &key_line)
        .replace("ADDRESS", address)
        .replace("PIN", pin),
    )
}

fn across_two_processes(scheme: &str) {
    let (provider_key, provider_public) = keygen(&format!("provider-{scheme}"));
    let (consumer_key, consumer_public) = keygen(&format!("consumer-{scheme}"));
    let (stranger_key, _) = keygen(&format!("stranger-{scheme}"));
    let provider = provider_manifest(
        &format!("secure-provider-{scheme}"),
        &provider_key,
        &consumer_public,
    );
    let server = Server::start(&provider, &format!("{scheme}://127.0.0.1:0"));
    assert!(server.address.starts_with(&format!("{scheme}://")));
    let consumer = consumer_manifest(
        &format!("secure-consumer-{scheme}"),
        Some(&consumer_key),
        &server.address,
        &provider_public,
    );
    let allowed = run(&["run", consumer.to_str().unwrap()]);
    assert!(allowed.status.success(), "{}", text(&allowed.stderr));
    assert_eq!(text(&allowed.stdout), "calc: \"10 + 5 = 15\"\n");

    // The same composition under another key: authenticated, but not allowed.
    let stranger = run(&[
        "run",
        consumer.to_str().unwrap(),
        "--key",
        stranger_key.to_str().unwrap(),
    ]);
    assert_eq!(stranger.status.code(), Some(1));
    let stderr = text(&stranger.stderr);
    assert!(
        stderr.contains("no instance `math` is exported"),
        "{stderr}"
    );
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_pinned_allowed_caller_is_served_over_tls_and_a_stranger_is_denied() {
    across_two_processes("tls");
}

#[test]
fn a_pinned_allowed_caller_is_served_over_quic_and_a_stranger_is_denied() {
    across_two_processes("quic");
}

#[test]
fn an_impostor_in_the_middle_is_refused_naming_both_keys() {
    let (provider_key, provider_public) = keygen("real-provider");
    let (impostor_key, impostor_public) = keygen("impostor");
    let (consumer_key, consumer_public) = keygen("fooled-consumer");
    // The real provider is up, but the consumer is pointed at an impostor with its own key
    // (which even allows the consumer: the handshake refuses it first).
    let real = Server::start(
        &provider_manifest("real-provider", &provider_key, &consumer_public),
        "tls://127.0.0.1:0",
    );
    let impostor = Server::start(
        &provider_manifest("impostor", &impostor_key, &consumer_public),
        "tls://127.0.0.1:0",
    );
    let consumer = consumer_manifest(
        "fooled-consumer",
        Some(&consumer_key),
        &real.address,
        &provider_public,
    );
    let peer = format!("provider={}", impostor.address);
    let fooled = run(&["run", consumer.to_str().unwrap(), "--peer", &peer]);
    assert_eq!(fooled.status.code(), Some(1));
    let stderr = text(&fooled.stderr);
    let expected = format!(
        "{} presented the key {impostor_public}, not the pinned {provider_public}",
        impostor.address
    );
    assert!(stderr.contains(&expected), "{stderr}");
    for server in [real, impostor] {
        let (status, stderr) = server.interrupt();
        assert!(status.success(), "{stderr}");
    }
}

#[test]
fn keygen_writes_a_private_key_whose_public_key_reads_back() {
    let (path, public) = keygen("reads-back");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let shown = run(&["key", path.to_str().unwrap()]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    assert_eq!(text(&shown.stdout).trim(), public);
    let again = run(&["keygen", "--out", path.to_str().unwrap()]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing key is never overwritten"
    );
}

#[test]
fn a_key_file_others_may_read_is_refused() {
    let (path, _) = keygen("too-open");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = run(&["key", path.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        text(&refused.stderr),
        format!(
            "exorun: key file {} has mode 0644: others may read it; make it private (chmod 600)\n",
            path.display()
        )
    );
}

#[test]
fn plaintext_off_loopback_is_refused_without_insecure() {
    let plain = manifest("plain-provider", common::PROVIDER);
    let refused = run(&[
        "serve",
        plain.to_str().unwrap(),
        "--listen",
        "tcp://0.0.0.0:0",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty(), "nothing was bound");
    assert_eq!(
        text(&refused.stderr),
        "exorun: --listen tcp://0.0.0.0:0: plaintext tcp:// off loopback lets anyone on the \
         network call and read every call; use tls:// or quic:// with --key, or pass --insecure\n"
    );
}

#[test]
fn an_allow_list_on_a_plaintext_listener_is_a_mistake() {
    let (key, _) = keygen("allow-plain");
    let (_, caller) = keygen("allow-plain-caller");
    let provider = provider_manifest("allow-plain", &key, &caller);
    let refused = run(&[
        "serve",
        provider.to_str().unwrap(),
        "--listen",
        "tcp://127.0.0.1:0",
        "--listen",
        "tls://127.0.0.1:0",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty(), "nothing was bound");
    assert_eq!(
        text(&refused.stderr),
        format!(
            "exorun: {}: instances.math.export: an allow list or a guard needs secure listeners \
             (tls://, quic://), but `tcp://127.0.0.1:0` is plaintext\n",
            provider.display()
        )
    );
}

#[test]
fn a_secure_peer_without_a_node_key_or_a_pin_is_a_mistake() {
    let (_, provider_public) = keygen("unkeyed-provider");
    let unkeyed = consumer_manifest(
        "unkeyed-consumer",
        None,
        "tls://127.0.0.1:1",
        &provider_public,
    );
    let output = run(&["run", unkeyed.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr).replace(&unkeyed.display().to_string(), "M");
    assert_eq!(
        stderr,
        "exorun: M: peers.provider: a secure peer needs this runtime's node key: `key = PATH` \
         at the top of the manifest, or --key PATH\n"
    );
    let stderr = refused(
        "unpinned",
        r#"
[apps]
math-consumer = "{fixtures}/math-consumer.wasm"
[peers]
provider = "tls://127.0.0.1:1"
plain = { address = "tcp://127.0.0.1:1", key = "ed25519:0000000000000000000000000000000000000000000000000000000000000000" }
[instances.calc]
app = "math-consumer"
links = { "exorun:test/math" = { remote = "provider", target = "math" } }
"#,
    );
    assert_eq!(
        stderr,
        "exorun: M: peers.plain: `tcp://127.0.0.1:1` is plaintext and cannot check the pinned \
         key; use tls:// or quic://\n\
         exorun: M: peers.provider: a tls:// or quic:// peer needs `key`, the public key it \
         must present (`exorun key`)\n\
         exorun: M: instances.calc.links.\"exorun:test/math\": the peer `provider` is not \
         usable (see peers.provider)\n"
    );
}
