//! Peers that heal over real sockets: a TCP server behind a small in-test proxy that cuts,
//! refuses or blackholes connections on command, and a `peer::Peer` on `net::Sockets` calling
//! through it. Every wait is on an event (a call arriving, a connect failing), never a sleep.

#![allow(clippy::unwrap_used)]
// Test helpers: a failed unwrap is a failed test.
// A proxy and its pumps nest loops and selects by construction.
#![allow(clippy::excessive_nesting)]

mod common;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Echo;
use exorun_common::BoxFuture;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::connection;
use exorun_transport::dispatch;
use exorun_transport::net;
use exorun_transport::peer;
use exorun_transport::peer::Peer;
use exorun_transport::transport;
use exorun_transport::transport::Transport;
use neorpc::frame;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest any single step may take: far above loopback, far below a hang.
const PROMPT: Duration = Duration::from_secs(5);

/// A TCP server answering with `Echo`, on its own port.
async fn echo_server(echo: Echo) -> String {
    let listener = net::Listener::bind(&Address::parse("tcp://127.0.0.1:0").unwrap())
        .await
        .unwrap();
    let address = listener.local_address().unwrap().to_string();
    let echo = Arc::new(echo);
    tokio::spawn(async move {
        loop {
            let connection = listener.accept(transport::MESSAGE_BYTES_MAX).await.unwrap();
            let connection: Arc<dyn Transport> = connection;
            let dispatcher: Arc<dyn dispatch::Dispatcher> = echo.clone();
            tokio::spawn(connection::serve(
                connection,
                dispatcher,
                connection::Config::default(),
            ));
        }
    });
    address
}

/// A live proxied connection: its pumps, and its blackhole switch.
type Live = (JoinHandle<()>, watch::Sender<bool>);

/// A proxy in front of `backend` on its own loopback port, under the test's command.
struct Proxy {
    /// The port it listens on (kept across `refuse` and `accept`).
    port: u16,
    backend: String,
    /// Its accept loop, while it accepts.
    accepting: Mutex<Option<JoinHandle<()>>>,
    /// The pumps of every live connection, and each connection's blackhole switch.
    live: Arc<Mutex<Vec<Live>>>,
    accepted: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(backend: String) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Arc::new(Self {
            port,
            backend,
            accepting: Mutex::new(None),
            live: Arc::new(Mutex::new(Vec::new())),
            accepted: Arc::new(AtomicUsize::new(0)),
        });
        proxy.accept_on(listener);
        proxy
    }

    fn address(&self) -> Address {
        Address::parse(&format!("tcp://127.0.0.1:{}", self.port)).unwrap()
    }

    fn accept_on(&self, listener: TcpListener) {
        let (backend, live, accepted) = (
            self.backend.clone(),
            Arc::clone(&self.live),
            Arc::clone(&self.accepted),
        );
        let accepting = tokio::spawn(async move {
            loop {
                let (near, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let far = TcpStream::connect(backend.trim_start_matches("tcp://"))
                    .await
                    .unwrap();
                let (blackhole, holed) = watch::channel(false);
                let pumps = tokio::spawn(pump_both(near, far, holed));
                live.lock().unwrap().push((pumps, blackhole));
            }
        });
        *self.accepting.lock().unwrap() = Some(accepting);
    }

    /// Closes every live connection at once (both sockets dropped).
    fn cut(&self) {
        for (pumps, _) in self.live.lock().unwrap().drain(..) {
            pumps.abort();
        }
    }

    /// Closes the port: connects are refused (cuts nothing that is live).
    async fn refuse(&self) {
        let accepting = self.accepting.lock().unwrap().take();
        let Some(accepting) = accepting else {
            return;
        };
        accepting.abort();
        // Only once the task is gone is its listener closed.
        let _ = accepting.await;
    }

    /// Opens the port again.
    async fn accept(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.accept_on(listener);
    }

    /// Live connections stay open but carry nothing more, either way.
    fn blackhole(&self) {
        for (_, blackhole) in self.live.lock().unwrap().iter() {
            blackhole.send_replace(true);
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Copies bytes both ways between `near` and `far` until either closes; once `holed` turns
/// true, bytes read are dropped instead (the connection stays open and says nothing).
async fn pump_both(near: TcpStream, far: TcpStream, holed: watch::Receiver<bool>) {
    let (near_read, near_write) = near.into_split();
    let (far_read, far_write) = far.into_split();
    let there = pump(near_read, far_write, holed.clone());
    let back = pump(far_read, near_write, holed);
    tokio::select! {
        () = there => {}
        () = back => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    holed: watch::Receiver<bool>,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            return;
        }
        if *holed.borrow() {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// Real sockets (`net::Sockets`), telling the test of every connect that failed.
struct Watched {
    sockets: net::Sockets,
    failed: Arc<Notify>,
    failures: AtomicUsize,
}

impl peer::Connector for Watched {
    fn connect<'a>(
        &'a self,
        address: &'a Address,
    ) -> BoxFuture<'a, Result<Arc<dyn Transport>, transport::Error>> {
        Box::pin(async move {
            let connected = peer::Connector::connect(&self.sockets, address).await;
            if connected.is_err() {
                self.failures.fetch_add(1, Ordering::SeqCst);
                self.failed.notify_one();
            }
            connected
        })
    }
}

fn watched() -> Arc<Watched> {
    Arc::new(Watched {
        sockets: net::Sockets::new(transport::MESSAGE_BYTES_MAX),
        failed: Arc::new(Notify::new()),
        failures: AtomicUsize::new(0),
    })
}

fn peer_through(connector: &Arc<Watched>, addresses: Vec<Address>, config: peer::Config) -> Peer {
    let connector: Arc<dyn peer::Connector> = connector.clone();
    Peer::new("proxied", addresses, connector, config)
}

async fn call(peer: &Peer, method: &str, args: &[u8]) -> Result<client::Reply, client::Error> {
    let frame = frame::encode_call("t", method, args, &[]).unwrap();
    tokio::time::timeout(PROMPT, peer.call(frame))
        .await
        .expect("every call ends promptly")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_mid_call_fails_it_at_once_and_the_next_call_reconnects() {
    let echo = Echo::default();
    let arrived = Arc::clone(&echo.arrived);
    let proxy = Proxy::start(echo_server(echo).await).await;
    let connector = watched();
    let peer = Arc::new(peer_through(
        &connector,
        vec![proxy.address()],
        peer::Config::default(),
    ));
    assert_eq!(
        &call(&peer, "echo", b"one").await.unwrap().unwrap()[..],
        b"one"
    );

    let held = arrived.notified();
    let holding = tokio::spawn({
        let peer = Arc::clone(&peer);
        async move { call(&peer, "hold", b"two").await }
    });
    held.await;
    proxy.cut();
    let cut = holding.await.unwrap();
    assert!(
        matches!(cut, Err(client::Error::PeerClosed)),
        "the call in flight fails as cut: {cut:?}"
    );
    assert_eq!(
        &call(&peer, "echo", b"three").await.unwrap().unwrap()[..],
        b"three"
    );
    assert_eq!(proxy.accepted(), 2, "the next call made a new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_port_is_waited_out_and_the_call_succeeds_when_it_opens() {
    let proxy = Proxy::start(echo_server(Echo::default()).await).await;
    proxy.refuse().await;
    let connector = watched();
    let config = peer::Config {
        when_down: peer::WhenDown::Wait,
        ..peer::Config::default()
    };
    let peer = Arc::new(peer_through(&connector, vec![proxy.address()], config));
    let failed = connector.failed.notified();
    let waiting = tokio::spawn({
        let peer = Arc::clone(&peer);
        async move { call(&peer, "echo", b"patient").await }
    });
    failed.await;
    assert!(!waiting.is_finished(), "the call waits for the peer");
    proxy.accept().await;
    assert_eq!(&waiting.await.unwrap().unwrap().unwrap()[..], b"patient");
    assert!(connector.failures.load(Ordering::SeqCst) >= 1);
    assert_eq!(peer.state(), peer::State::Connected(proxy.address()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_port_fails_calls_at_once_with_the_connect_error() {
    let proxy = Proxy::start(echo_server(Echo::default()).await).await;
    proxy.refuse().await;
    let connector = watched();
    let peer = peer_through(&connector, vec![proxy.address()], peer::Config::default());
    let refused = call(&peer, "echo", b"x").await;
    let Err(client::Error::Transport(transport::Error::Io { kind, .. })) = refused else {
        panic!("not the connect error: {refused:?}");
    };
    assert_eq!(kind, std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_connection_is_declared_dead_and_the_next_call_reconnects() {
    let proxy = Proxy::start(echo_server(Echo::default()).await).await;
    let connector = watched();
    let heartbeat = Duration::from_millis(100);
    let config = peer::Config {
        client: client::Config {
            heartbeat: Some(heartbeat),
            ..client::Config::default()
        },
        ..peer::Config::default()
    };
    let peer = peer_through(&connector, vec![proxy.address()], config);
    assert_eq!(
        &call(&peer, "echo", b"up").await.unwrap().unwrap()[..],
        b"up"
    );

    proxy.blackhole();
    let started = std::time::Instant::now();
    let silent = call(&peer, "echo", b"into the void").await;
    let Err(client::Error::Unresponsive { silent_ms }) = silent else {
        panic!("not declared dead: {silent:?}");
    };
    assert!(
        silent_ms >= 300,
        "three silent intervals at least: {silent_ms}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "within a few intervals, not TCP's minutes: {:?}",
        started.elapsed()
    );
    assert_eq!(
        &call(&peer, "echo", b"back").await.unwrap().unwrap()[..],
        b"back"
    );
    assert_eq!(proxy.accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_first_address_fails_over_to_the_second() {
    let proxy = Proxy::start(echo_server(Echo::default()).await).await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_address =
        Address::parse(&format!("tcp://{}", closed.local_addr().unwrap())).unwrap();
    drop(closed);
    let connector = watched();
    let peer = peer_through(
        &connector,
        vec![closed_address, proxy.address()],
        peer::Config::default(),
    );
    assert_eq!(
        &call(&peer, "echo", b"over").await.unwrap().unwrap()[..],
        b"over"
    );
    assert_eq!(connector.failures.load(Ordering::SeqCst), 1);
    assert_eq!(proxy.accepted(), 1);
}
