//! The second round of hostile load, at exorun-transport's boundary, on real loopback sockets:
//! what one peer may make a `server::Server` hold, tried as an attacker would. The attacker
//! comes from 127.0.0.2 (Linux answers on all of 127.0.0.0/8), the legitimate caller from
//! 127.0.0.1, so the server can tell them apart as it would two hosts. Each test shows a
//! legitimate caller on every listener answered within `ANSWER_WITHIN` during the attack.
//! (Needs the `quic` feature; the workspace build has it.)

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use exorun_transport::address::Address;
use exorun_transport::budget;
use exorun_transport::budget::Budget;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::identity::NodeKey;
use exorun_transport::net;
use exorun_transport::quic;
use exorun_transport::server;
use exorun_transport::server::Server;
use exorun_transport::tls;
use exorun_transport::tls::Secure;
use exorun_transport::transport;
use neorpc::frame;
use tokio::io::AsyncWriteExt;

/// How long a legitimate call may take while the server is under attack.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// Where attacks come from.
const ATTACKER: [u8; 4] = [127, 0, 0, 2];
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// A server on tcp://, tls:// and quic:// (loopback), its addresses and key, the budget it
/// charges, and the sender that stops it.
struct Served {
    tcp: Address,
    tls: Address,
    quic: Address,
    key: Arc<NodeKey>,
    budget: Budget,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(mut config: server::Config) -> Served {
    let key = Arc::new(NodeKey::generate().unwrap());
    let budget = config.stream.budget.clone().unwrap();
    let listen = |text: &str| Address::parse(text).unwrap();
    let tcp = net::Listener::bind(&listen("tcp://127.0.0.1:0"))
        .await
        .unwrap();
    let (tls, quic) = (listen("tls://127.0.0.1:0"), listen("quic://127.0.0.1:0"));
    let tls = net::Listener::bind_secure(&tls, &key).await.unwrap();
    let quic = net::Listener::bind_secure(&quic, &key).await.unwrap();
    let addresses = (
        tcp.local_address().unwrap(),
        tls.local_address().unwrap(),
        quic.local_address().unwrap(),
    );
    // Silent connections are held for the whole test: a first-call timeout that a slow run
    // reaches mid-attack would let go of some and admit others past the share being counted.
    config.connection.first_call_timeout = Some(Duration::from_secs(600));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::new(Arc::new(common::Echo::default()), config)
        .listen(tcp)
        .listen(tls)
        .listen(quic);
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Served {
        tcp: addresses.0,
        tls: addresses.1,
        quic: addresses.2,
        key,
        budget,
        _stop: stop,
    }
}

/// A call answered on a fresh connection to `address` (a fresh caller key for tls and quic),
/// within `ANSWER_WITHIN`.
async fn legitimate(served: &Served, address: &Address) {
    let answered = tokio::time::timeout(ANSWER_WITHIN, async {
        let connection = match address {
            Address::Tcp(_) => net::connect(address, transport::MESSAGE_BYTES_MAX).await,
            Address::Unix(_) | Address::Tls(_) | Address::Quic(_) | Address::Nats(_) => {
                let secure = Secure {
                    key: Arc::new(NodeKey::generate().unwrap()),
                    pin: served.key.public(),
                };
                net::connect_secure(address, &secure, transport::MESSAGE_BYTES_MAX).await
            }
        };
        let client = Client::new(connection.unwrap(), client::Config::default());
        let call = frame::encode_call("echo", "i#f", &[0x0E], &[]).unwrap();
        client.call(call).await
    })
    .await;
    let reply = answered.unwrap_or_else(|_| panic!("{address} answered in time"));
    assert_eq!(&reply.unwrap().unwrap()[..], &[0x0E], "{address}");
}

async fn legitimate_everywhere(served: &Served) {
    legitimate(served, &served.tcp).await;
    legitimate(served, &served.tls).await;
    legitimate(served, &served.quic).await;
}

fn socket_address(address: &Address) -> SocketAddr {
    let text = address.to_string();
    let (_, host_port) = text.split_once("://").unwrap();
    host_port.parse().unwrap()
}

/// A TCP connection to `address` from `source`.
async fn connect_from(source: [u8; 4], address: &Address) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(socket_address(address)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_silent_sockets_from_one_peer_lock_no_listener_out() {
    let served = serve(server::Config::default()).await;
    let mut silent = Vec::new();
    for _ in 0..4100 {
        silent.push(connect_from(ATTACKER, &served.tcp).await);
    }
    legitimate_everywhere(&served).await;
    drop(silent);
}

/// A TLS connection to `address` from `source` with a throwaway key: the handshake made (when
/// the server lets it), then silence.
async fn throwaway_tls(served: &Served, source: [u8; 4]) -> Option<impl Send> {
    let secure = Secure {
        key: Arc::new(NodeKey::generate().unwrap()),
        pin: served.key.public(),
    };
    let (config, _) = tls::client_config(&secure).unwrap();
    let socket = connect_from(source, &served.tls).await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, socket).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_silent_tls_connections_from_one_peer_lock_no_listener_out() {
    let served = serve(server::Config::default()).await;
    let mut held = Vec::new();
    for _ in 0..4096 {
        if let Some(connection) = throwaway_tls(&served, ATTACKER).await {
            held.push(connection);
        }
    }
    let per_source = server::CONNECTIONS_PER_SOURCE_MAX_DEFAULT;
    assert!(held.len() <= per_source, "{} handshakes", held.len());
    legitimate_everywhere(&served).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_full_of_silent_sockets_leaves_the_others_their_share() {
    let config = server::Config {
        connections_max: 3 * 30,
        ..server::Config::default()
    };
    let served = serve(config).await;
    // Four sources, each under its own bound, send more than the whole cap (100 > 90) at the
    // tcp listener; it takes its share of 30 and refuses the rest.
    let mut silent = Vec::new();
    for source in 2..=5 {
        for _ in 0..25 {
            silent.push(connect_from([127, 0, 0, source], &served.tcp).await);
        }
    }
    legitimate(&served, &served.tls).await;
    legitimate(&served, &served.quic).await;
    drop(silent);
}

/// QUIC Initials with a full ClientHello from the attacker, one every `pause`, from clients that
/// never answer the server (half-open handshakes), each a new connection attempt; `midway` is
/// told once half of them are out.
async fn quic_half_open_flood(
    target: SocketAddr,
    count: usize,
    pause: Duration,
    midway: tokio::sync::oneshot::Sender<()>,
) {
    let mut midway = Some(midway);
    let socket = tokio::net::UdpSocket::bind(SocketAddr::from((ATTACKER, 0)))
        .await
        .unwrap();
    let secure = Secure {
        key: Arc::new(NodeKey::generate().unwrap()),
        pin: NodeKey::generate().unwrap().public(),
    };
    let (crypto, _) = tls::client_config(&secure).unwrap();
    let crypto = quinn_proto::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let crypto = Arc::new(crypto);
    let mut endpoint = quinn_proto::Endpoint::new(Arc::default(), None, true, None);
    let mut ticker = tokio::time::interval(pause);
    let mut datagram = Vec::new();
    for _ in 0..count {
        ticker.tick().await;
        let shared: Arc<dyn quinn_proto::crypto::ClientConfig> = crypto.clone();
        let config = quinn_proto::ClientConfig::new(shared);
        let now = std::time::Instant::now();
        let (_, mut connection) = endpoint.connect(now, config, target, "localhost").unwrap();
        datagram.clear();
        let transmit = connection.poll_transmit(now, 1, &mut datagram).unwrap();
        socket
            .send_to(&datagram[..transmit.size], target)
            .await
            .unwrap();
        if sent_half(&mut midway, endpoint.open_connections(), count) {
            continue;
        }
    }
}

/// Tells `midway` (once) when `sent` reached half of `count`; whether it had not yet.
fn sent_half(
    midway: &mut Option<tokio::sync::oneshot::Sender<()>>,
    sent: usize,
    count: usize,
) -> bool {
    if sent < count / 2 {
        return true;
    }
    if let Some(midway) = midway.take() {
        let _ = midway.send(());
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_open_quic_handshakes_locks_no_listener_out() {
    let served = serve(server::Config::default()).await;
    let target = socket_address(&served.quic);
    let (midway, halfway) = tokio::sync::oneshot::channel();
    let pace = Duration::from_millis(1);
    let flood = tokio::spawn(quic_half_open_flood(target, 3000, pace, midway));
    // Mid-flood: more handshakes are in progress than a Retry is needed past, and the source
    // holds its bound; legitimate callers (the QUIC one through a Retry) are answered.
    halfway.await.unwrap();
    legitimate_everywhere(&served).await;
    flood.await.unwrap();
    legitimate_everywhere(&served).await;
    const {
        assert!(quic::RETRY_AFTER_HANDSHAKES < server::CONNECTIONS_PER_SOURCE_MAX_DEFAULT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_gives_a_caller_one_stream_no_others_and_no_datagrams() {
    let served = serve(server::Config::default()).await;
    let secure = Secure {
        key: Arc::new(NodeKey::generate().unwrap()),
        pin: served.key.public(),
    };
    let (crypto, _) = tls::client_config(&secure).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let config = quinn::ClientConfig::new(Arc::new(crypto));
    let target = socket_address(&served.quic);
    let connecting = endpoint.connect_with(config, target, "localhost").unwrap();
    let connection = connecting.await.unwrap();
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    let ping = frame::encode_ping(frame::Seq(1)).unwrap();
    let mut framed = u32::try_from(ping.len()).unwrap().to_le_bytes().to_vec();
    framed.extend_from_slice(&ping);
    send.write_all(&framed).await.unwrap();
    // The server grants no second stream of either kind: opening one waits for credit that
    // never comes (a bounded wait for something that must not happen).
    let second = tokio::time::timeout(Duration::from_millis(300), connection.open_bi()).await;
    assert!(second.is_err(), "a second bidirectional stream was granted");
    let uni = tokio::time::timeout(Duration::from_millis(300), connection.open_uni()).await;
    assert!(uni.is_err(), "a unidirectional stream was granted");
    assert_eq!(connection.max_datagram_size(), None, "datagrams are off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_connections_buffers_are_charged_to_its_sources_share() {
    let mut config = server::Config::default();
    config.stream.message_bytes_max = 64 * KIB;
    // A budget whose per-source share (the floor: one frame, a read buffer, one connection's
    // QUIC buffers) holds one QUIC connection, not two.
    config.stream.budget = Some(Budget::new(2 * MIB));
    let served = serve(config).await;
    let (address, pin) = (&served.quic, served.key.public());
    let connect = || async move {
        let key = Arc::new(NodeKey::generate().unwrap());
        let secure = Secure { key, pin };
        net::connect_secure(address, &secure, 64 * KIB).await
    };
    let first = Client::new(connect().await.unwrap(), client::Config::default());
    let call = frame::encode_call("echo", "i#f", &[0x0E], &[]).unwrap();
    assert!(matches!(first.call(call).await, Ok(Ok(_))));
    assert!(served.budget.held() >= quic::CONNECTION_BUFFERS_BYTES);
    // The second from the same source does not fit its share: refused before its handshake.
    let second = connect().await;
    assert!(second.is_err(), "a second QUIC connection fit the share");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_stalling_large_frames_holds_only_its_share_of_the_budget() {
    let mut config = server::Config::default();
    config.stream.budget = Some(Budget::new(256 * MIB));
    let served = serve(config).await;
    let share = 256 * MIB / server::SOURCE_SHARE_DIVISOR;
    // 32 connections each announce a 16 MiB frame and send 4 MiB of it, then stall.
    let mut stalled = Vec::new();
    for _ in 0..32 {
        let mut socket = connect_from(ATTACKER, &served.tcp).await;
        let prefix = u32::try_from(16 * MIB).unwrap().to_le_bytes();
        socket.write_all(&prefix).await.unwrap();
        let body = vec![0u8; usize::try_from(4 * MIB).unwrap()];
        // Written from a task of its own: a connection the server no longer reads blocks.
        stalled.push(tokio::spawn(async move {
            let _ = socket.write_all(&body).await;
            socket
        }));
    }
    // The attacker's connections fill its share, and no more of the budget: all of it but
    // what the next step of a frame waiting at the share's head has set aside (measured:
    // 1.4 MiB), checked while the attack holds, well before the frames' deadline cuts them.
    let filled = served.budget.until(|held| held >= share - 2 * MIB);
    tokio::time::timeout(Duration::from_secs(20), filled)
        .await
        .expect("the attacker's share filled");
    // All the budget holds is the attacker's, and its share is all it can hold.
    assert!(served.budget.held() <= share, "{}", served.budget.held());
    legitimate_everywhere(&served).await;
    for task in stalled {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sources_stalling_large_frames_leave_the_reserve_to_everyone_else() {
    let served = serve(server::Config::default()).await;
    let whole = served.budget.budget_bytes();
    // One connection from each of 24 addresses announces a 16 MiB frame and sends 15 MiB of
    // it: 360 MiB asked for, each source within its share, together more than the budget.
    let mut stalled = Vec::new();
    for host in 2..26u8 {
        let mut socket = connect_from([127, 0, 0, host], &served.tcp).await;
        let prefix = u32::try_from(16 * MIB).unwrap().to_le_bytes();
        socket.write_all(&prefix).await.unwrap();
        let body = vec![0u8; usize::try_from(15 * MIB).unwrap()];
        stalled.push(tokio::spawn(async move {
            let _ = socket.write_all(&body).await;
            socket
        }));
    }
    // The open bytes (all but the reserve) are the attackers', but for what the frame waiting
    // at their head has set aside of its next step (at most 8 MiB as a frame doubles).
    let open = whole - whole / budget::RESERVE_DIVISOR;
    let filled = served.budget.until(|held| held >= open - 8 * MIB);
    tokio::time::timeout(Duration::from_secs(60), filled)
        .await
        .expect("the attackers spent the budget's open bytes");
    assert!(served.budget.held() <= whole, "{}", served.budget.held());
    // A caller from another address still gets its buffers, its call and its reply, on every
    // transport (QUIC's 592 KiB of connection buffers included), from the reserve.
    legitimate_everywhere(&served).await;
    legitimate_everywhere(&served).await;
    for task in stalled {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_a_peer_never_reads_are_held_within_its_share() {
    let mut config = server::Config::default();
    config.stream.message_bytes_max = 256 * KIB;
    config.stream.budget = Some(Budget::new(8 * MIB));
    let served = serve(config).await;
    let share = (8 * MIB / server::SOURCE_SHARE_DIVISOR).max(256 * KIB);
    // Calls with 64 KiB of arguments, each echoed back, from a peer that reads nothing: its
    // replies pile up in the server until its share of the budget is spent.
    let mut socket = connect_from(ATTACKER, &served.tcp).await;
    let slab = vec![0x0Eu8; usize::try_from(64 * KIB).unwrap()];
    let call = frame::encode_call("echo", "i#f", &slab, &[])
        .unwrap()
        .into_bytes();
    let mut framed = u32::try_from(call.len()).unwrap().to_le_bytes().to_vec();
    framed.extend_from_slice(&call);
    let writing = tokio::spawn(async move {
        // The server stops reading once the share is spent: these writes then block.
        let calls = std::iter::repeat_n(&framed, 2000);
        for framed in calls {
            let _ = socket.write_all(framed).await;
        }
    });
    let filled = served.budget.until(|held| held + 128 * KIB >= share);
    tokio::time::timeout(Duration::from_secs(20), filled)
        .await
        .expect("the unread replies were charged");
    assert!(served.budget.held() <= share, "{}", served.budget.held());
    legitimate_everywhere(&served).await;
    writing.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_unix_socket_is_replaced_and_a_live_one_is_named() {
    let path = std::env::temp_dir().join(format!("exorun-stale-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    // A server killed with -9 leaves its socket file behind, with nothing listening on it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "the stale socket file is there");
    let address = Address::Unix(path.clone());
    let listener = net::Listener::bind(&address).await.unwrap();
    // A second server on the same path while the first listens: refused, naming the path.
    let refused = net::Listener::bind(&address).await.unwrap_err();
    let transport::Error::Io { kind, source } = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(*kind, std::io::ErrorKind::AddrInUse);
    assert_eq!(
        &source.to_string(),
        &format!("{} is in use by a running server", path.display())
    );
    drop(listener);
    assert!(
        !path.exists(),
        "a listener removes its socket file when it goes"
    );
    // A regular file where the socket would go is named as what it is, and left alone.
    std::fs::write(&path, "not a socket").unwrap();
    let refused = net::Listener::bind(&address).await.unwrap_err();
    let transport::Error::Io { kind, source } = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(*kind, std::io::ErrorKind::AlreadyExists);
    assert_eq!(
        source.to_string(),
        format!(
            "{} exists and is not a socket (remove it, or listen elsewhere)",
            path.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
    std::fs::remove_file(&path).unwrap();
}
