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

use exorun_bind::link::remote;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
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
    /// When each failed call ended.
    failed_at: Vec<Instant>,
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

/// The kind of a call's failure, without its details.
fn reason(error: &remote::Error) -> String {
    let remote::Error::Channel(error) = error else {
        let remote::Error::Failed(failure) = error else {
            return format!("{error}");
        };
        return format!("Remote(tag {})", failure.tag());
    };
    match error {
        client::Error::Timeout { .. } => "Timeout".to_owned(),
        client::Error::PeerClosed => "PeerClosed".to_owned(),
        client::Error::Unresponsive { .. } => "Unresponsive".to_owned(),
        client::Error::Unread(_) => "Unread".to_owned(),
        client::Error::SessionEnded => "SessionEnded".to_owned(),
        client::Error::Overloaded { .. } => "Overloaded".to_owned(),
        client::Error::Frame(_) => "Frame".to_owned(),
        client::Error::Transport(error) => format!("Transport({error})"),
    }
}

async fn add(peer: &Peer, n: u32) -> Result<Vec<Val>, remote::Error> {
    let slab = neorpc::codec::encode(&[Val::U32(n), Val::U32(1)]).unwrap();
    let frame = neorpc::frame::encode_call("math", "exorun:test/math#add", &slab, &[]).unwrap();
    let reply = peer.call(frame).await.map_err(remote::Error::Channel)?;
    let reply = reply.map_err(remote::Error::Failed)?;
    Ok(neorpc::codec::decode(&reply, &[Type::U32], &neorpc::codec::Limits::default()).unwrap())
}

/// What the restarting thread did, and the server it left running.
struct Restarts {
    server: Server,
    graceful: u32,
    killed: u32,
    down: Duration,
    /// When each restart began, and whether it was graceful.
    began: Vec<(Instant, bool)>,
}

/// Restarts `server` every `RESTART_EVERY` on `address` until `stop`, SIGTERM and SIGKILL in
/// turn.
fn restart_until(first: Server, path: &Path, address: &str, stop: &AtomicBool) -> Restarts {
    let mut restarts = Restarts {
        server: first,
        graceful: 0,
        killed: 0,
        down: Duration::ZERO,
        began: Vec::new(),
    };
    let mut next = Instant::now() + RESTART_EVERY;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let graceful = (restarts.graceful + restarts.killed).is_multiple_of(2);
        let signal = if graceful { "-TERM" } else { "-KILL" };
        let went = Instant::now();
        restarts.began.push((went, graceful));
        restarts.server.signal(signal);
        let _ = restarts.server.child.wait().unwrap();
        restarts.server = Server::start(path, address);
        restarts.down += went.elapsed();
        restarts.graceful += u32::from(graceful);
        restarts.killed += u32::from(!graceful);
        next += RESTART_EVERY;
    }
    restarts
}

/// Makes `seconds * rate` calls at `rate` a second through `peer`, each tallied as it ends,
/// then waits for the stragglers within their limit; returns how many were made.
async fn drive(peer: &Arc<Peer>, seconds: u64, rate: u64, tally: &Arc<Mutex<Tally>>) -> u64 {
    let mut calls = tokio::task::JoinSet::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / u32::try_from(rate).unwrap());
    let total = seconds * rate;
    for n in 0..total {
        ticks.tick().await;
        let peer = Arc::clone(peer);
        let tally = Arc::clone(tally);
        let n = u32::try_from(n).unwrap();
        calls.spawn(async move {
            let began = Instant::now();
            let result = add(&peer, n).await;
            tally.lock().unwrap().record(n, result, began.elapsed());
        });
        // Reap the finished ones so the set stays small.
        while calls.try_join_next().is_some() {}
    }
    // Every call ends within its own limit; one still running after it (plus slack) is lost.
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
}

impl Tally {
    /// Counts how call `n` ended.
    fn record(&mut self, n: u32, result: Result<Vec<Val>, remote::Error>, took: Duration) {
        let Ok(values) = result else {
            let reason = result.err().map(|error| reason(&error)).unwrap_or_default();
            *self.failed.entry(reason).or_default() += 1;
            self.failed_at.push(Instant::now());
            return;
        };
        if values != [Val::U32(n + 1)] {
            self.wrong += 1;
            return;
        }
        self.ok += 1;
        self.micros
            .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    /// Prints the tally of `sent` calls, failures by the kind of the restart before them;
    /// returns how many were lost.
    fn report(&mut self, sent: u64, restarts: &[(Instant, bool)]) -> u64 {
        let failed: u64 = self.failed.values().sum();
        let lost = sent - self.ok - self.wrong - failed;
        self.micros.sort_unstable();
        println!(
            "soak: ok {} / failed {failed} / lost {lost} / wrong {}",
            self.ok, self.wrong
        );
        for (reason, count) in &self.failed {
            println!("soak:   failed {reason}: {count}");
        }
        let (mut after_term, mut after_kill, mut before) = (0, 0, 0);
        for ended in &self.failed_at {
            let last = restarts.iter().rev().find(|(at, _)| at <= ended);
            match last {
                Some((_, true)) => after_term += 1,
                Some((_, false)) => after_kill += 1,
                None => before += 1,
            }
        }
        println!(
            "soak:   failed after a SIGTERM {after_term}, after a SIGKILL {after_kill}, before any restart {before}"
        );
        println!(
            "soak: latency of ok calls p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            permille(&self.micros, 500),
            permille(&self.micros, 990),
            permille(&self.micros, 999),
            self.micros.last().copied().unwrap_or(0)
        );
        lost
    }
}

/// The peer the soak calls through: waits for a restarting server within each call's limit.
fn soak_peer(address: &str) -> Peer {
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
    let connector = Arc::new(net::Sockets::new(transport::MESSAGE_BYTES_MAX));
    Peer::new(
        "soak",
        vec![Address::parse(address).unwrap()],
        connector,
        config,
    )
}

fn main() {
    let seconds = env_number("SOAK_SECS", 60);
    let rate = env_number("SOAK_RATE", 1000).max(1);
    let path = manifest("soak", common::PROVIDER);
    let first = Server::start(&path, "tcp://127.0.0.1:0");
    let address = first.address.clone();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let peer = Arc::new(soak_peer(&address));

    // The restarts run on their own thread: starting a server blocks on its first lines.
    let stop = Arc::new(AtomicBool::new(false));
    let restarter = {
        let stop = Arc::clone(&stop);
        let path = path.clone();
        let address = address.clone();
        std::thread::spawn(move || restart_until(first, &path, &address, &stop))
    };
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let sent = tokio.block_on(drive(&peer, seconds, rate, &tally));
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let restarts = restarter.join().unwrap();
    println!(
        "soak: {sent} calls at {rate}/s over {:.1} s; server restarted {} times ({} SIGTERM, {} SIGKILL), down {:.0} ms in all",
        elapsed.as_secs_f64(),
        restarts.graceful + restarts.killed,
        restarts.graceful,
        restarts.killed,
        restarts.down.as_secs_f64() * 1000.0
    );
    let mut tally = tally.lock().unwrap();
    let lost = tally.report(sent, &restarts.began);
    let (status, stderr) = restarts.server.interrupt();
    assert!(status.success(), "{stderr}");
    assert_eq!(lost, 0, "every call ends in exactly one way");
    assert_eq!(tally.wrong, 0, "every result is the right one");
}
