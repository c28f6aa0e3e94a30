//! Peers that heal, at exorun-transport's boundary: a connector whose connections the test
//! cuts, refuses or blackholes on command (in memory), tokio's paused clock for back-off and
//! heartbeats, and counts of every call made and served (nothing lost, nothing run twice).

#![allow(clippy::unwrap_used)]
// Test helpers: a failed unwrap is a failed test.
// A connector and many callers built in tests nest closures and loops by construction.
#![allow(clippy::excessive_nesting)]

mod common;

use common::Echo;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use exorun_common::BoxFuture;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::connection;
use exorun_transport::dispatch;
use exorun_transport::memory;
use exorun_transport::peer;
use exorun_transport::peer::Peer;
use exorun_transport::transport;
use exorun_transport::transport::Transport;
use neorpc::frame;
use tokio::sync::Notify;

/// What a connect to an address does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Serves calls (echo).
    Accept,
    /// Fails the connect, as a closed port does.
    Refuse,
    /// Connects, then never answers anything (a vanished host).
    Blackhole,
}

/// A connector to in-memory servers, one per connection, under the test's command.
struct Faulty {
    modes: Mutex<BTreeMap<String, Mode>>,
    connects: AtomicUsize,
    /// The far ends of live connections (closing one cuts it) and their stop switches.
    live: Mutex<Vec<(Arc<memory::Transport>, tokio::sync::oneshot::Sender<()>)>>,
    served: Arc<AtomicUsize>,
    release: Arc<Notify>,
    arrived: Arc<Notify>,
}

impl Faulty {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            modes: Mutex::new(BTreeMap::new()),
            connects: AtomicUsize::new(0),
            live: Mutex::new(Vec::new()),
            served: Arc::new(AtomicUsize::new(0)),
            release: Arc::new(Notify::new()),
            arrived: Arc::new(Notify::new()),
        })
    }

    fn set(&self, address: &Address, mode: Mode) {
        self.modes.lock().unwrap().insert(address.to_string(), mode);
    }

    /// Closes every live connection from the server's side.
    async fn cut(&self) {
        let live: Vec<_> = self.live.lock().unwrap().drain(..).collect();
        for (far, _) in live {
            far.close().await;
        }
    }

    /// Stops every live connection's serving loop gracefully (it sends a go-away).
    fn stop_gracefully(&self) {
        let live: Vec<_> = self.live.lock().unwrap().drain(..).collect();
        for (_, stop) in live {
            let _ = stop.send(());
        }
    }

    fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }
}

impl peer::Connector for Faulty {
    fn connect<'a>(
        &'a self,
        address: &'a Address,
    ) -> BoxFuture<'a, Result<Arc<dyn Transport>, transport::Error>> {
        Box::pin(async move {
            self.connects.fetch_add(1, Ordering::SeqCst);
            let mode = self
                .modes
                .lock()
                .unwrap()
                .get(&address.to_string())
                .copied();
            let (near, far) = memory::pair(memory::CAPACITY_DEFAULT);
            let far = Arc::new(far);
            match mode.unwrap_or(Mode::Accept) {
                Mode::Refuse => {
                    return Err(transport::Error::Io {
                        kind: std::io::ErrorKind::ConnectionRefused,
                        source: exorun_common::Cause::new(format!("{address} refused")),
                    });
                }
                Mode::Blackhole => {
                    // Kept open and never read: the peer hears nothing back.
                    let (stop, _) = tokio::sync::oneshot::channel();
                    self.live.lock().unwrap().push((far, stop));
                }
                Mode::Accept => {
                    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                    let echo = Echo {
                        served: Arc::clone(&self.served),
                        release: Arc::clone(&self.release),
                        arrived: Arc::clone(&self.arrived),
                    };
                    let served: Arc<dyn Transport> = far.clone();
                    let serving = connection::serve_until(
                        served,
                        Arc::new(echo),
                        connection::Config::default(),
                        dispatch::Origin::new(None),
                        async move {
                            let _ = stopped.await;
                        },
                    );
                    tokio::spawn(serving);
                    self.live.lock().unwrap().push((far, stop));
                }
            }
            let near: Arc<dyn Transport> = Arc::new(near);
            Ok(near)
        })
    }
}

fn address(name: &str) -> Address {
    Address::parse(&format!("unix:///{name}")).unwrap()
}

fn peer_of(faulty: &Arc<Faulty>, addresses: &[&str], config: peer::Config) -> Arc<Peer> {
    let addresses = addresses.iter().map(|name| address(name)).collect();
    let connector: Arc<dyn peer::Connector> = faulty.clone();
    Arc::new(Peer::new("far", addresses, connector, config))
}

async fn call(peer: &Peer, method: &str, args: &[u8]) -> Result<client::Reply, client::Error> {
    peer.call(frame::encode_call("t", method, args, &[]).unwrap())
        .await
}

#[tokio::test]
async fn a_cut_mid_call_fails_it_at_once_and_the_next_call_reconnects() {
    let faulty = Faulty::new();
    let peer = peer_of(&faulty, &["a"], peer::Config::default());
    assert_eq!(
        peer.state(),
        peer::State::Idle,
        "nothing connects before a call"
    );
    assert_eq!(faulty.connects(), 0);
    let arrived = faulty.arrived.notified();
    let held = {
        let peer = Arc::clone(&peer);
        tokio::spawn(async move { call(&peer, "hold", b"h").await })
    };
    arrived.await;
    faulty.cut().await;
    assert_eq!(held.await.unwrap(), Err(client::Error::PeerClosed));
    assert_eq!(
        &call(&peer, "echo", b"again").await.unwrap().unwrap()[..],
        b"again"
    );
    assert_eq!(faulty.connects(), 2, "the next call reconnected");
    assert_eq!(peer.state(), peer::State::Connected(address("a")));
}

#[tokio::test(start_paused = true)]
async fn a_refusing_peer_backs_off_failing_calls_at_once_then_comes_back() {
    let faulty = Faulty::new();
    faulty.set(&address("a"), Mode::Refuse);
    let peer = peer_of(&faulty, &["a"], peer::Config::default());
    let refused = call(&peer, "echo", b"x").await.unwrap_err();
    let client::Error::Transport(transport::Error::Io { kind, .. }) = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(*kind, std::io::ErrorKind::ConnectionRefused);
    assert!(matches!(peer.state(), peer::State::BackingOff { .. }));
    // During the pause a call fails at once with the same error, trying nothing.
    assert_eq!(call(&peer, "echo", b"y").await.unwrap_err(), refused);
    assert_eq!(faulty.connects(), 1);
    faulty.set(&address("a"), Mode::Accept);
    // The first pause is 100 ms with ±20% jitter.
    tokio::time::advance(Duration::from_millis(121)).await;
    assert_eq!(
        &call(&peer, "echo", b"up").await.unwrap().unwrap()[..],
        b"up"
    );
    assert_eq!(faulty.connects(), 2);
}

#[tokio::test(start_paused = true)]
async fn pauses_double_up_to_the_cap_and_a_waiting_call_rides_them_out() {
    let faulty = Faulty::new();
    faulty.set(&address("a"), Mode::Refuse);
    let config = peer::Config {
        backoff_max: Duration::from_millis(400),
        when_down: peer::WhenDown::Wait,
        ..peer::Config::default()
    };
    let peer = peer_of(&faulty, &["a"], config);
    let started = tokio::time::Instant::now();
    let waiting = {
        let peer = Arc::clone(&peer);
        tokio::spawn(async move { call(&peer, "echo", b"patient").await })
    };
    // Rounds at 0, then after pauses of about 100, 200, 400 and 400 ms (the cap).
    while faulty.connects() < 5 {
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let (least, most) = (Duration::from_millis(880), Duration::from_millis(1330));
    assert!(elapsed >= least && elapsed <= most, "{elapsed:?}");
    faulty.set(&address("a"), Mode::Accept);
    assert_eq!(&waiting.await.unwrap().unwrap().unwrap()[..], b"patient");
}

#[tokio::test]
async fn the_first_address_down_and_the_second_up_fails_over() {
    let faulty = Faulty::new();
    faulty.set(&address("a"), Mode::Refuse);
    let peer = peer_of(&faulty, &["a", "b"], peer::Config::default());
    assert_eq!(
        &call(&peer, "echo", b"over").await.unwrap().unwrap()[..],
        b"over"
    );
    assert_eq!(peer.state(), peer::State::Connected(address("b")));
    assert_eq!(faulty.connects(), 2, "a, then b");
}

#[tokio::test(start_paused = true)]
async fn a_blackholed_peer_is_declared_dead_by_its_heartbeat() {
    let faulty = Faulty::new();
    faulty.set(&address("a"), Mode::Blackhole);
    let config = peer::Config {
        client: client::Config {
            heartbeat: Some(Duration::from_secs(1)),
            timeout: Duration::from_secs(60),
            ..client::Config::default()
        },
        ..peer::Config::default()
    };
    let peer = peer_of(&faulty, &["a"], config);
    let started = tokio::time::Instant::now();
    let lost = call(&peer, "echo", b"into the void").await.unwrap_err();
    let elapsed = started.elapsed();
    let client::Error::Unresponsive { silent_ms } = lost else {
        panic!("{lost:?}")
    };
    // Three silent intervals of 1 s, noticed at the next tick: 3 s to 4 s, not the 60 s timeout.
    assert!((3000..4000).contains(&silent_ms), "{silent_ms}");
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    faulty.set(&address("a"), Mode::Accept);
    assert_eq!(
        &call(&peer, "echo", b"back").await.unwrap().unwrap()[..],
        b"back"
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_quiet_healthy_connection_up() {
    let faulty = Faulty::new();
    let config = peer::Config {
        client: client::Config {
            heartbeat: Some(Duration::from_secs(1)),
            ..client::Config::default()
        },
        ..peer::Config::default()
    };
    let peer = peer_of(&faulty, &["a"], config);
    assert_eq!(
        &call(&peer, "echo", b"one").await.unwrap().unwrap()[..],
        b"one"
    );
    // The clock is paused: 30 quiet seconds pass at once, with the heartbeats they carry.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        &call(&peer, "echo", b"two").await.unwrap().unwrap()[..],
        b"two"
    );
    assert_eq!(
        faulty.connects(),
        1,
        "the same connection, kept alive by pongs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_away_under_load_loses_no_call_and_runs_none_twice() {
    let faulty = Faulty::new();
    let peer = peer_of(&faulty, &["a"], peer::Config::default());
    let made = Arc::new(AtomicUsize::new(0));
    let mut callers = tokio::task::JoinSet::new();
    // Graceful stops of whatever connection is live, every 500 calls made (up to 2,500), while
    // the calls go on (each stop's go-away leaves calls unread on the wire): the caller whose
    // call completed the count stops it, so nothing waits by polling.
    for caller in 0..16u32 {
        let (peer, made, faulty) = (Arc::clone(&peer), Arc::clone(&made), Arc::clone(&faulty));
        callers.spawn(async move {
            for round in 0..200u32 {
                let args = format!("{caller}-{round}");
                let echoed = call(&peer, "echo", args.as_bytes()).await.unwrap();
                assert_eq!(
                    &echoed.unwrap()[..],
                    args.as_bytes(),
                    "a call got another's reply"
                );
                let count = made.fetch_add(1, Ordering::SeqCst) + 1;
                if count % 500 == 0 && count <= 2500 {
                    faulty.stop_gracefully();
                }
            }
        });
    }
    while let Some(caller) = callers.join_next().await {
        caller.unwrap();
    }
    assert_eq!(
        made.load(Ordering::SeqCst),
        16 * 200,
        "every call succeeded"
    );
    assert_eq!(
        faulty.served.load(Ordering::SeqCst),
        16 * 200,
        "and ran exactly once"
    );
    assert!(
        faulty.connects() >= 2,
        "the go-aways moved calls to new connections"
    );
}
