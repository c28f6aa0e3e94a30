//! What a release `exorun serve` holds under the second round's memory attacks, against its
//! byte budget: the server's peak resident memory (VmHWM, from /proc) before and after each
//! attack, printed with the budget and the ratio of what the attack added to it. Loopback only,
//! bounded in count and time.
//!
//! `cargo bench -p exorun-cli --bench hostile` (after `scripts/build_apps.sh`).

#![allow(clippy::unwrap_used)] // A benchmark: a failed unwrap is a failed run.
#![allow(clippy::print_stdout)] // It prints its figures.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::Server;
use common::manifest;
use common::run;
use exorun_transport::identity::NodeKey;
use exorun_transport::tls;
use exorun_transport::tls::Secure;
use tokio::io::AsyncWriteExt;

/// The budget the server runs with.
const BUDGET_MIB: u64 = 64;
/// How long an attack is held before the server's peak is read.
const HOLD: Duration = Duration::from_secs(3);

/// A memory figure of `pid` from /proc (`VmHWM`: peak resident; `VmRSS`: now), in MiB.
fn memory_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

fn socket(address: &str) -> SocketAddr {
    address.split_once("://").unwrap().1.parse().unwrap()
}

/// Connections from 127.0.0.`source` that announce a 16 MiB frame, send 4 MiB of it, stall.
async fn stalled_frames(target: SocketAddr, sources: std::ops::RangeInclusive<u8>, each: usize) {
    let mut held = Vec::new();
    for source in sources {
        for _ in 0..each {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(SocketAddr::from(([127, 0, 0, source], 0)))
                .unwrap();
            let Ok(mut stream) = socket.connect(target).await else {
                continue;
            };
            held.push(tokio::spawn(async move {
                let _ = stream.write_all(&(16u32 << 20).to_le_bytes()).await;
                let _ = stream.write_all(&vec![7u8; 4 << 20]).await;
                stream
            }));
        }
    }
    tokio::time::sleep(HOLD).await; // a benchmark: the attack is held for a while, then let go
    for task in held {
        task.abort();
    }
}

/// QUIC connections from many sources (valid handshakes, throwaway keys) that then try to
/// open 200 streams each and fill them.
async fn quic_streams(target: SocketAddr, pin: exorun_transport::identity::PublicKey) {
    let mut held = Vec::new();
    for source in 2..=17u8 {
        let secure = Secure {
            key: Arc::new(NodeKey::generate().unwrap()),
            pin,
        };
        let (crypto, _) = tls::client_config(&secure).unwrap();
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
        let local = SocketAddr::from(([127, 0, 0, source], 0));
        let endpoint = quinn::Endpoint::client(local).unwrap();
        let config = quinn::ClientConfig::new(Arc::new(crypto));
        let Ok(connecting) = endpoint.connect_with(config, target, "localhost") else {
            continue;
        };
        let Ok(connection) = connecting.await else {
            continue;
        };
        held.push(tokio::spawn(fill_streams(endpoint, connection)));
    }
    tokio::time::sleep(HOLD).await; // a benchmark: the attack is held for a while, then let go
    for task in held {
        task.abort();
    }
}

/// Starts `exorun serve` with a tcp and a quic listener and the budget; returns the process
/// and the two addresses.
fn serve(manifest: &std::path::Path, key: &std::path::Path) -> (Server, SocketAddr, SocketAddr) {
    let budget = BUDGET_MIB.to_string();
    let mut child = common::exorun()
        .env("RUST_LOG", "error")
        .arg("serve")
        .arg(manifest)
        .args([
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            "quic://127.0.0.1:0",
        ])
        .args(["--key", key.to_str().unwrap(), "--budget-mib", &budget])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = common::Lines::new(child.stdout.take().unwrap());
    let mut listening = Vec::new();
    while listening.len() < 2 {
        let line = lines.next_line("the server's addresses").unwrap();
        if let Some(address) = line.strip_prefix("exorun: listening on ") {
            listening.push(socket(address));
        }
    }
    let server = Server::from_child(child, "");
    (server, listening[0], listening[1])
}

/// One attack's line: the server's peak before and after, and what it added per budget.
fn report(name: &str, pid: u32, before: u64) -> u64 {
    let after = memory_mib(pid, "VmHWM");
    let added_percent = after.saturating_sub(before) * 100 / BUDGET_MIB;
    println!("| {name} | {before} | {after} | {added_percent}% |");
    after
}

/// Opens (tries to) 200 streams on `connection` and writes 2 MiB into each one it gets.
async fn fill_streams(
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
) -> (quinn::Endpoint, quinn::Connection) {
    for _ in 0..200 {
        let opened = tokio::time::timeout(Duration::from_millis(50), connection.open_bi());
        let Ok(Ok((mut send, _))) = opened.await else {
            continue;
        };
        tokio::spawn(async move { send.write_all(&vec![1u8; 2 << 20]).await });
    }
    (endpoint, connection)
}

/// The attacks, each against a fresh server.
#[derive(Clone, Copy)]
enum Attack {
    StalledOneSource,
    StalledEightSources,
    QuicStreams,
}

impl Attack {
    fn name(self) -> &'static str {
        match self {
            Attack::StalledOneSource => "48 stalled 16 MiB frames, one source",
            Attack::StalledEightSources => "24 stalled 16 MiB frames from each of 8 sources",
            Attack::QuicStreams => "16 QUIC connections trying 200 streams of 2 MiB each",
        }
    }

    async fn run(
        self,
        tcp: SocketAddr,
        quic: SocketAddr,
        pin: exorun_transport::identity::PublicKey,
    ) {
        match self {
            Attack::StalledOneSource => stalled_frames(tcp, 2..=2, 48).await,
            Attack::StalledEightSources => stalled_frames(tcp, 2..=9, 24).await,
            Attack::QuicStreams => quic_streams(quic, pin).await,
        }
    }
}

fn main() {
    let path = manifest("hostile-bench", common::PROVIDER);
    let key = path.with_file_name("node.key");
    let _ = std::fs::remove_file(&key);
    assert!(
        run(&["keygen", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    let pin = NodeKey::read(&key).unwrap().public();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("hostile memory bench: release `exorun serve --budget-mib {BUDGET_MIB}`, peak RSS");
    println!(
        "| attack (each on a fresh server) | peak before (MiB) | peak after (MiB) | added, of the budget |"
    );
    println!("|---|---|---|---|");
    let attacks = [
        Attack::StalledOneSource,
        Attack::StalledEightSources,
        Attack::QuicStreams,
    ];
    for attack in attacks {
        let (server, tcp, quic) = serve(&path, &key);
        let pid = server.child.id();
        let before = memory_mib(pid, "VmHWM");
        tokio.block_on(attack.run(tcp, quic, pin));
        report(attack.name(), pid, before);
        let (status, _) = server.interrupt();
        assert!(status.success());
    }
}
