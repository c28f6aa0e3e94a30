//! Soak: a steady 1,000 calls a second for a minute through one `peer::Peer` while the served
//! runtime (a real `exorun serve` process) restarts every 10 s, alternately stopped gracefully
//! (SIGTERM: go-away, calls in flight finish) and killed (SIGKILL). Prints calls ok, failed (by
//! reason) and lost: every call must end in exactly one way, so lost must be 0, and a wrong
//! result is counted apart (it must be 0 too).
//!
//! `cargo bench -p exorun-cli --bench soak` (after `scripts/build_apps.sh`);
//! `SOAK_SECS` and `SOAK_RATE` change the length and the calls per second.

#![allow(clippy::unwrap_used)] // A benchmark: a failed unwrap is a failed run.
#![allow(clippy::print_stdout)] // It prints its figures.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use common::Server;
use common::manifest;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::net;
use exorun_transport::peer;
use exorun_transport::peer::Peer;
use exorun_transport::transport;
use wasmtime::component::Type;
use wasmtime::component::Val;

/// Between two restarts of the server.
const RESTART_EVERY: Duration = Duration::from_secs(10);
/// Each call's own limit: a call waits this long at most for the server to come back.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How one call ended.
#[derive(Default)]
struct Tally {
    ok: u64,
    wrong: u64,
    failed: BTreeMap<String, u64>,
    micros: Vec<u64>,
}

/// The value below which `p` thousandths of the sorted `micros` lie.
fn permille(micros: &[u64], p: usize) -> u64 {
    let index = (micros.len() * p / 1000).min(micros.len().saturating_sub(1));
    micros.get(index).copied().unwrap_or(0)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The kind of a client error, without its details.
fn reason(error: &client::Error) -> String {
    match error {
        client::Error::Remote(failure) => format!("Remote(tag {})", failure.tag()),
        client::Error::Timeout { .. } => "Timeout".to_owned(),
        client::Error::PeerClosed => "PeerClosed".to_owned(),
        client::Error::Unresponsive { .. } => "Unresponsive".to_owned(),
        client::Error::Unread(_) => "Unread".to_owned(),
        client::Error::Overloaded { .. } => "Overloaded".to_owned(),
        client::Error::Frame(_) => "Frame".to_owned(),
        client::Error::Transport(error) => format!("Transport({error})"),
    }
}

async fn add(peer: &Peer, n: u32) -> Result<Vec<Val>, client::Error> {
    let slab = neorpc::codec::encode(&[Val::U32(n), Val::U32(1)]).unwrap();
    let frame = neorpc::frame::encode_call("math", "exorun:test/math#add", &slab, &[]).unwrap();
    let reply = peer.call(frame).await?;
    Ok(neorpc::codec::decode(&reply, &[Type::U32], &neorpc::codec::Limits::default()).unwrap())
}

fn main() {
    let seconds = env_number("SOAK_SECS", 60);
    let rate = env_number("SOAK_RATE", 1000).max(1);
    let path = manifest(
        "soak",
        r#"
[apps]
math-provider = "{fixtures}/math-provider.wasm"
[instances.math]
app = "math-provider"
export = true
"#,
    );
    let first = Server::start(&path, "tcp://127.0.0.1:0");
    let address = first.address.clone();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = peer::Config {
        client: client::Config {
            timeout: CALL_TIMEOUT,
            heartbeat: Some(Duration::from_secs(1)),
            ..client::Config::default()
        },
        backoff_max: Duration::from_millis(200),
        when_down: peer::WhenDown::Wait,
        ..peer::Config::default()
    };
    let connector = Arc::new(net::Sockets {
        message_bytes_max: transport::MESSAGE_BYTES_MAX,
    });
    let peer = Arc::new(Peer::new(
        "soak",
        vec![Address::parse(&address).unwrap()],
        connector,
        config,
    ));

    // The restarts run on their own thread: starting a server blocks on its first lines.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let restarter = {
        let stop = Arc::clone(&stop);
        let path = path.clone();
        let address = address.clone();
        std::thread::spawn(move || {
            let mut server = first;
            let mut restarts = (0_u32, 0_u32);
            let mut down = Duration::ZERO;
            let mut next = Instant::now() + RESTART_EVERY;
            loop {
                while Instant::now() < next {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return (server, restarts, down);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let graceful = (restarts.0 + restarts.1).is_multiple_of(2);
                let went = Instant::now();
                server.signal(if graceful { "-TERM" } else { "-KILL" });
                let _ = server.child.wait().unwrap();
                server = Server::start(&path, &address);
                down += went.elapsed();
                if graceful {
                    restarts.0 += 1;
                } else {
                    restarts.1 += 1;
                }
                next += RESTART_EVERY;
            }
        })
    };

    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let sent = tokio.block_on(async {
        let mut calls = tokio::task::JoinSet::new();
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / u32::try_from(rate).unwrap());
        let total = seconds * rate;
        for n in 0..total {
            ticks.tick().await;
            let peer = Arc::clone(&peer);
            let tally = Arc::clone(&tally);
            let n = u32::try_from(n).unwrap();
            calls.spawn(async move {
                let began = Instant::now();
                let result = add(&peer, n).await;
                let took = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                let mut tally = tally.lock().unwrap();
                match result {
                    Ok(values) if values == [Val::U32(n + 1)] => {
                        tally.ok += 1;
                        tally.micros.push(took);
                    }
                    Ok(_) => tally.wrong += 1,
                    Err(error) => *tally.failed.entry(reason(&error)).or_default() += 1,
                }
            });
            // Reap the finished ones so the set stays small.
            while calls.try_join_next().is_some() {}
        }
        // Every call ends within its own limit; what is still running after it (plus slack) is
        // lost.
        let grace = tokio::time::sleep(CALL_TIMEOUT + Duration::from_secs(5));
        tokio::pin!(grace);
        loop {
            tokio::select! {
                joined = calls.join_next() => {
                    if joined.is_none() {
                        break;
                    }
                }
                () = &mut grace => break,
            }
        }
        calls.abort_all();
        total
    });
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (server, (graceful, killed), down) = restarter.join().unwrap();
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");

    let mut tally = tally.lock().unwrap();
    let failed: u64 = tally.failed.values().sum();
    let lost = sent - tally.ok - tally.wrong - failed;
    tally.micros.sort_unstable();
    println!(
        "soak: {sent} calls at {rate}/s over {:.1} s; server restarted {} times ({graceful} SIGTERM, {killed} SIGKILL), down {:.0} ms in all",
        elapsed.as_secs_f64(),
        graceful + killed,
        down.as_secs_f64() * 1000.0
    );
    println!(
        "soak: ok {} / failed {failed} / lost {lost} / wrong {}",
        tally.ok, tally.wrong
    );
    for (reason, count) in &tally.failed {
        println!("soak:   failed {reason}: {count}");
    }
    println!(
        "soak: latency of ok calls p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
        permille(&tally.micros, 500),
        permille(&tally.micros, 990),
        permille(&tally.micros, 999),
        tally.micros.last().copied().unwrap_or(0)
    );
    assert_eq!(lost, 0, "every call ends in exactly one way");
    assert_eq!(tally.wrong, 0, "every result is the right one");
}
