//! Secure links at exorun-transport's boundary, over real loopback sockets: node key files,
//! `tls://` and `quic://` connections that pin the server's key and tell the server the
//! caller's, the exact error for a wrong key, a handshake that never finishes, and addresses
//! used without the keys they need. (Needs the `quic` feature; the workspace build has it.)

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use exorun_common::BoxFuture;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::connection;
use exorun_transport::dispatch;
use exorun_transport::identity;
use exorun_transport::identity::NodeKey;
use exorun_transport::identity::PublicKey;
use exorun_transport::net;
use exorun_transport::peer;
use exorun_transport::peer::Peer;
use exorun_transport::stream;
use exorun_transport::tls::Secure;
use exorun_transport::transport;
use exorun_transport::transport::Transport;
use neorpc::frame;
use proptest::prelude::*;

/// Answers every call with the caller's key as text (or `anonymous`).
struct WhoCalls;

impl dispatch::Dispatcher for WhoCalls {
    fn dispatch(
        &self,
        call: frame::Call<'_>,
        _: &Bytes,
        caller: &dispatch::Origin,
    ) -> BoxFuture<'static, dispatch::Outcome> {
        let who = caller
            .key()
            .map_or_else(|| "anonymous".to_owned(), ToString::to_string);
        let reply = frame::encode_reply(call.seq, Ok(who.as_bytes())).unwrap();
        Box::pin(std::future::ready(Ok(reply)))
    }
}

/// Serves `WhoCalls` on `address` as `key`; returns the bound address.
async fn serve_as(address: &str, key: &NodeKey, deadline: Option<Duration>) -> Address {
    let listener = net::Listener::bind_secure(&Address::parse(address).unwrap(), key)
        .await
        .unwrap();
    let bound = listener.local_address().unwrap();
    tokio::spawn(async move {
        loop {
            let accepted = listener.accept_socket().await.unwrap();
            let config = stream::Config {
                frame_deadline: deadline,
                ..stream::Config::new(transport::MESSAGE_BYTES_MAX)
            };
            tokio::spawn(serve_one(accepted, config));
        }
    });
    bound
}

/// Opens one accepted connection and serves `WhoCalls` on it.
async fn serve_one(accepted: net::Accepted, config: stream::Config) {
    let Ok(opened) = accepted.open(config).await else {
        return;
    };
    let served: Arc<dyn Transport> = opened.transport;
    let _ = connection::serve_until(
        served,
        Arc::new(WhoCalls),
        connection::Config::default(),
        dispatch::Origin::new(opened.peer),
        std::future::pending(),
    )
    .await;
}

fn secure(key: &Arc<NodeKey>, pin: PublicKey) -> Secure {
    Secure {
        key: Arc::clone(key),
        pin,
    }
}

async fn who_am_i(address: &Address, secure: &Secure) -> Result<String, client::Error> {
    let connection = net::connect_secure(address, secure, transport::MESSAGE_BYTES_MAX).await?;
    let client = Client::new(connection, client::Config::default());
    let reply = common::call(&client, "t", "who", b"").await?;
    Ok(String::from_utf8(reply.unwrap().to_vec()).unwrap())
}

async fn the_server_learns_the_callers_key(scheme: &str) {
    let server = NodeKey::generate().unwrap();
    let caller = Arc::new(NodeKey::generate().unwrap());
    let address = serve_as(&format!("{scheme}://127.0.0.1:0"), &server, None).await;
    let who = who_am_i(&address, &secure(&caller, server.public()))
        .await
        .unwrap();
    assert_eq!(who, caller.public().to_string());
}

#[tokio::test]
async fn over_tls_the_server_learns_the_callers_key() {
    the_server_learns_the_callers_key("tls").await;
}

#[tokio::test]
async fn over_quic_the_server_learns_the_callers_key() {
    the_server_learns_the_callers_key("quic").await;
}

async fn a_wrong_server_key_is_refused_naming_both(scheme: &str) {
    let server = NodeKey::generate().unwrap();
    let expected = NodeKey::generate().unwrap().public();
    let caller = Arc::new(NodeKey::generate().unwrap());
    let address = serve_as(&format!("{scheme}://127.0.0.1:0"), &server, None).await;
    let refused = who_am_i(&address, &secure(&caller, expected)).await;
    let Err(client::Error::Transport(transport::Error::WrongKey {
        address: at,
        pinned,
        presented,
    })) = refused
    else {
        panic!("not refused for its key: {refused:?}");
    };
    assert_eq!(at, address.to_string());
    assert_eq!(pinned, expected.to_string());
    assert_eq!(presented, server.public().to_string());
}

#[tokio::test]
async fn over_tls_a_wrong_server_key_is_refused_naming_both() {
    a_wrong_server_key_is_refused_naming_both("tls").await;
}

#[tokio::test]
async fn over_quic_a_wrong_server_key_is_refused_naming_both() {
    a_wrong_server_key_is_refused_naming_both("quic").await;
}

#[tokio::test]
async fn a_caller_that_never_finishes_its_handshake_is_dropped_at_the_deadline() {
    let server = NodeKey::generate().unwrap();
    let listener =
        net::Listener::bind_secure(&Address::parse("tls://127.0.0.1:0").unwrap(), &server)
            .await
            .unwrap();
    let Address::Tls(host_port) = listener.local_address().unwrap() else {
        panic!("a tls listener")
    };
    // A TCP connection that never says a word.
    let _silent = tokio::net::TcpStream::connect(&host_port).await.unwrap();
    let accepted = listener.accept_socket().await.unwrap();
    let config = stream::Config {
        frame_deadline: Some(Duration::from_millis(200)),
        ..stream::Config::new(transport::MESSAGE_BYTES_MAX)
    };
    let opened = tokio::time::timeout(Duration::from_secs(5), accepted.open(config))
        .await
        .expect("bounded by the deadline");
    let Err(transport::Error::Handshake { reason, .. }) = opened else {
        panic!("not a handshake failure: {opened:?}");
    };
    assert_eq!(reason, "not finished within 200 ms");
}

#[tokio::test]
async fn addresses_without_the_keys_they_need_are_refused() {
    let tls = Address::parse("tls://127.0.0.1:1").unwrap();
    let plain = Address::parse("tcp://127.0.0.1:1").unwrap();
    let key = Arc::new(NodeKey::generate().unwrap());
    let identity = |error: transport::Error| {
        let transport::Error::Identity { reason, .. } = error else {
            panic!("{error:?}");
        };
        reason
    };
    assert_eq!(
        identity(net::connect(&tls, 1024).await.unwrap_err()),
        "a secure address needs this node's key and the peer's pinned key"
    );
    assert_eq!(
        identity(
            net::connect_secure(&plain, &secure(&key, key.public()), 1024)
                .await
                .unwrap_err()
        ),
        "a plaintext address cannot check a pinned key; use tls:// or quic://"
    );
    assert_eq!(
        identity(net::Listener::bind(&tls).await.unwrap_err()),
        "listening on a secure address needs this node's key"
    );
}

#[tokio::test]
async fn a_secure_peer_connects_again_after_its_connection_closed() {
    let server = NodeKey::generate().unwrap();
    let caller = Arc::new(NodeKey::generate().unwrap());
    let address = serve_as("tls://127.0.0.1:0", &server, None).await;
    let connector = Arc::new(net::Sockets::secure(
        transport::MESSAGE_BYTES_MAX,
        secure(&caller, server.public()),
    ));
    let peer = Peer::new(
        "secure",
        vec![address.clone()],
        connector,
        peer::Config::default(),
    );
    let frame = || frame::encode_call("t", "who", b"", &[]).unwrap();
    assert_eq!(
        peer.call(frame()).await.unwrap().unwrap(),
        caller.public().to_string().as_bytes()
    );
    peer.close().await;
    assert_eq!(
        peer.call(frame()).await.unwrap().unwrap(),
        caller.public().to_string().as_bytes()
    );
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("exorun-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn a_key_file_is_private_reads_back_and_is_never_overwritten() {
    let path = scratch("node.key");
    let key = NodeKey::generate().unwrap();
    key.write_new(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(NodeKey::read(&path).unwrap().public(), key.public());
    let again = key.write_new(&path);
    assert!(
        matches!(again, Err(identity::Error::File { .. })),
        "{again:?}"
    );
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
}

#[test]
fn a_key_file_others_may_read_is_refused() {
    let path = scratch("open.key");
    NodeKey::generate().unwrap().write_new(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = NodeKey::read(&path).unwrap_err();
    assert_eq!(
        refused,
        identity::Error::Exposed {
            path: path.display().to_string(),
            mode: 0o644
        }
    );
    assert!(refused.to_string().contains("mode 0644"), "{refused}");
}

#[test]
fn a_key_file_that_is_no_key_is_refused() {
    let path = scratch("junk.key");
    std::fs::write(&path, "not a key\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        NodeKey::read(&path),
        Err(identity::Error::NotAKey { .. })
    ));
    let directory = std::env::temp_dir();
    assert!(matches!(
        NodeKey::read(&directory),
        Err(identity::Error::NotAFile { .. })
    ));
}

proptest! {
    #[test]
    fn public_keys_round_trip_through_text_and_spki(bytes in any::<[u8; 32]>()) {
        let key = PublicKey::from_bytes(bytes);
        prop_assert_eq!(PublicKey::parse(&key.to_string()), Ok(key));
        prop_assert_eq!(PublicKey::from_spki_der(&key.spki_der()), Some(key));
    }

    #[test]
    fn text_that_is_not_a_key_never_parses_as_one(text in "\\PC{0,80}") {
        if let Ok(key) = PublicKey::parse(&text) {
            let hex = text.strip_prefix("ed25519:").unwrap_or_default();
            prop_assert_eq!(key.to_string(), format!("ed25519:{}", hex.to_lowercase()));
        }
    }
}
