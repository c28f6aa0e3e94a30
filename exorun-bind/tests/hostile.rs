//! Hostile peers against a served runtime over real TCP sockets, in-process: thousands of idle
//! connections, connections past the cap, huge length prefixes that stall, garbage and
//! malformed frames, and pipelined calls whose replies are never read. Each time a legitimate
//! caller is answered within a bound, during and after, and the byte budget's own counter never
//! passes its limit. Waits are on events (a reply, a connection closed), bounded by timeouts.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::time::Duration;

use common::call_slab;
use common::math_host;
use common::socket_peer;
use common::socket_server_with;
use exorun_transport::address::Address;
use exorun_transport::budget::Budget;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::server;
use exorun_transport::stream;
use exorun_transport::transport;
use neorpc::codec;
use neorpc::failure::Failure;
use neorpc::frame;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wasmtime::component::Val;

const MIB: u64 = 1024 * 1024;
/// How long a legitimate call may take while the server is under attack.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// A served math-provider with `config`, its address, the budget it charges, and the stopper.
async fn served(
    mut config: server::Config,
    budget_bytes: u64,
) -> (
    Address,
    Budget,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<server::Stopped>,
) {
    let budget = Budget::new(budget_bytes);
    config.stream.budget = Some(budget.clone());
    let exports = math_host().await;
    let (address, stop, server) = socket_server_with(&exports, "tcp://127.0.0.1:0", config).await;
    (address, budget, stop, server)
}

/// A legitimate `add(40, 2)` on a fresh connection, answered within `ANSWER_WITHIN`.
async fn legitimate_call(address: &Address) {
    let answered = tokio::time::timeout(ANSWER_WITHIN, async {
        let client = socket_peer(address).await;
        let slab = codec::encode(&[Val::U32(40), Val::U32(2)]).unwrap();
        call_slab(&client, "math", "exorun:test/math#add", &slab).await
    })
    .await;
    let reply = answered
        .expect("a legitimate caller was answered in time")
        .unwrap()
        .unwrap();
    let mut results = [Val::U32(0)];
    let types = [wasmtime::component::Type::U32];
    codec::decode_into(&reply, &types, &mut results, &codec::Limits::default()).unwrap();
    assert_eq!(results, [Val::U32(42)]);
}

fn host_port(address: &Address) -> String {
    address.to_string().trim_start_matches("tcp://").to_owned()
}

/// Waits until the server closes `socket` (a read sees the end), bounded by `within`.
async fn closed_by_server(socket: &mut TcpStream, within: Duration) {
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(within, socket.read(&mut byte)).await;
    let ended = read.expect("the server closed the connection in time");
    assert!(matches!(ended, Ok(0) | Err(_)), "{ended:?}");
}

/// A TCP connection to `address` from the loopback address `source` (Linux answers on all of
/// 127.0.0.0/8), so an attacker and a legitimate caller can be told apart on one machine.
async fn connect_from(source: [u8; 4], address: &Address) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .unwrap();
    let target: std::net::SocketAddr = host_port(address).parse().unwrap();
    socket.connect(target).await.unwrap()
}

const ATTACKER: [u8; 4] = [127, 0, 0, 2];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_lock_no_one_out() {
    let (address, budget, _stop, _server) = served(server::Config::default(), 256 * MIB).await;
    let mut idle = Vec::new();
    for _ in 0..3000 {
        idle.push(connect_from(ATTACKER, &address).await);
    }
    legitimate_call(&address).await;
    assert!(budget.held() <= 256 * MIB);
    drop(idle);
    legitimate_call(&address).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_connections_are_closed_at_once_and_room_comes_back() {
    let config = server::Config {
        connections_max: 20,
        ..server::Config::default()
    };
    let (address, _budget, _stop, _server) = served(config, 256 * MIB).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut socket = TcpStream::connect(host_port(&address)).await.unwrap();
        // A call answered proves the server took this connection (not closed it as excess).
        let call = frame::encode_call(
            "math",
            "exorun:test/math#add",
            &codec::encode(&[Val::U32(1), Val::U32(1)]).unwrap(),
            &[],
        )
        .unwrap();
        socket.write_all(&framed(call.into_bytes())).await.unwrap();
        let mut prefix = [0u8; 4];
        socket.read_exact(&mut prefix).await.unwrap();
        let mut reply = vec![0u8; usize::try_from(u32::from_le_bytes(prefix)).unwrap()];
        socket.read_exact(&mut reply).await.unwrap();
        held.push(socket);
    }
    let mut excess = TcpStream::connect(host_port(&address)).await.unwrap();
    closed_by_server(&mut excess, ANSWER_WITHIN).await;
    drop(held);
    // Once the held connections are gone the server has room again (it notices each close, in
    // its own time: a caller retries, as a peer would, every 10 ms).
    let retried = tokio::time::timeout(ANSWER_WITHIN, async {
        let mut every = tokio::time::interval(Duration::from_millis(10));
        while !answered(&address).await {
            every.tick().await;
        }
    })
    .await;
    retried.expect("a caller got in once room came back");
}

/// Whether an `add` on a fresh connection is answered (a connection past the cap is not).
async fn answered(address: &Address) -> bool {
    let client = socket_peer(address).await;
    let slab = codec::encode(&[Val::U32(40), Val::U32(2)]).unwrap();
    let called = call_slab(&client, "math", "exorun:test/math#add", &slab).await;
    matches!(called, Ok(Ok(_)))
}

fn framed(frame: Vec<u8>) -> Vec<u8> {
    let mut bytes = u32::try_from(frame.len()).unwrap().to_le_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_stalled_frames_hold_no_more_than_the_budget_and_only_until_their_deadline() {
    let mut config = server::Config::default();
    config.stream.frame_deadline = Some(Duration::from_millis(500));
    let budget_bytes = 20 * MIB;
    let (address, budget, _stop, _server) = served(config, budget_bytes).await;
    // Eight peers each announce a 16 MiB frame, send 4 MiB of it, and stall: 32 MiB offered
    // against a 20 MiB budget.
    let mut attackers = Vec::new();
    for _ in 0..8 {
        let mut socket = TcpStream::connect(host_port(&address)).await.unwrap();
        socket
            .write_all(&(16 * 1024 * 1024u32 - 1).to_le_bytes())
            .await
            .unwrap();
        attackers.push(socket);
    }
    let body = vec![9u8; 4 * 1024 * 1024];
    let mut writers = tokio::task::JoinSet::new();
    for mut socket in attackers {
        let body = body.clone();
        writers.spawn(async move {
            // The server may stop reading (budget spent) and then close (deadline): both end
            // the write one way or another.
            let _ = socket.write_all(&body).await;
            socket
        });
    }
    legitimate_call(&address).await;
    assert!(budget.held() <= budget_bytes);
    while let Some(written) = writers.join_next().await {
        let mut socket = written.unwrap();
        assert!(budget.held() <= budget_bytes);
        closed_by_server(&mut socket, ANSWER_WITHIN).await;
    }
    legitimate_call(&address).await;
    // Every stalled frame was let go: what is left is at most the read buffers of connections.
    let released = tokio::time::timeout(ANSWER_WITHIN, budget.until(|held| held <= MIB)).await;
    released.expect("the stalled frames' bytes came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_malformed_frames_are_answered_or_closed_and_others_go_on() {
    let (address, _budget, _stop, _server) = served(server::Config::default(), 256 * MIB).await;
    let mut garbage = TcpStream::connect(host_port(&address)).await.unwrap();
    garbage.write_all(&framed(vec![0xFF; 64])).await.unwrap();
    closed_by_server(&mut garbage, ANSWER_WITHIN).await;
    let mut oversized = TcpStream::connect(host_port(&address)).await.unwrap();
    oversized.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
    closed_by_server(&mut oversized, ANSWER_WITHIN).await;
    // A call whose seq is readable but whose rest is cut short is answered, by its seq.
    let mut broken = TcpStream::connect(host_port(&address)).await.unwrap();
    let mut call = frame::encode_call("math", "exorun:test/math#add", &[0x0E], &[]).unwrap();
    call.set_seq(frame::Seq(77));
    let mut bytes = call.into_bytes();
    bytes.truncate(60);
    broken.write_all(&framed(bytes)).await.unwrap();
    let mut prefix = [0u8; 4];
    broken.read_exact(&mut prefix).await.unwrap();
    let mut reply = vec![0u8; usize::try_from(u32::from_le_bytes(prefix)).unwrap()];
    broken.read_exact(&mut reply).await.unwrap();
    let frame::Message::Reply(reply) = frame::decode(&reply).unwrap() else {
        panic!("not a reply")
    };
    assert_eq!(reply.seq, frame::Seq(77));
    assert!(
        matches!(reply.outcome, Err(Failure::ProtocolViolation { .. })),
        "{:?}",
        reply.outcome
    );
    legitimate_call(&address).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_calls_whose_replies_are_never_read_do_not_stall_others_or_a_stop() {
    let budget_bytes = 64 * MIB;
    let config = server::Config {
        drain_timeout: Duration::from_millis(500),
        ..server::Config::default()
    };
    let budget = Budget::new(budget_bytes);
    let mut config = config;
    config.stream.budget = Some(budget.clone());
    let runtime = exorun_core::Runtime::new().unwrap();
    common::build(&runtime, "math-provider", Vec::new(), Some("math")).await;
    spiller(&runtime).await;
    let exports = exorun_bind::Exports::new(runtime);
    exports.export("math").unwrap();
    exports.export("spiller").unwrap();
    let (address, stop, server) = socket_server_with(&exports, "tcp://127.0.0.1:0", config).await;
    // A peer that reads nothing, with a receive buffer as small as the kernel allows, asks for
    // a 12 MiB reply: more than the socket's buffers on both sides can ever hold, so the
    // server's writer to it is stuck for good, whatever the machine's speed.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut flood = socket
        .connect(host_port(&address).parse().unwrap())
        .await
        .unwrap();
    let spilled = 12 * 1024 * 1024_u32;
    let slab = codec::encode(&[Val::U32(spilled)]).unwrap();
    let mut call = frame::encode_call("spiller", "exorun:test/crunch#spill", &slab, &[]).unwrap();
    call.set_seq(frame::Seq(1));
    flood.write_all(&framed(call.into_bytes())).await.unwrap();
    // The reply is charged to the budget once it is made: the event that says it is stuck.
    tokio::time::timeout(
        Duration::from_secs(60),
        budget.until(|held| held >= u64::from(spilled)),
    )
    .await
    .expect("the reply was made and charged");
    // Calls pipelined behind it are read and answered into the stuck queue; others go on.
    let adds = codec::encode(&[Val::U32(1), Val::U32(2)]).unwrap();
    let mut chunk = Vec::new();
    for seq in 2..200u64 {
        let mut call = frame::encode_call("math", "exorun:test/math#add", &adds, &[]).unwrap();
        call.set_seq(frame::Seq(seq));
        chunk.extend_from_slice(&framed(call.into_bytes()));
    }
    flood.write_all(&chunk).await.unwrap();
    legitimate_call(&address).await;
    assert!(budget.held() <= budget_bytes);
    // A stop with that connection stuck ends at the drain deadline, cutting it: its replies
    // never left.
    stop.send(()).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(60), server).await;
    let stopped = stopped
        .expect("the stop ended at the drain deadline")
        .unwrap();
    let cut = server::Stopped {
        cut: 1,
        ..server::Stopped::default()
    };
    assert_eq!(stopped, cut);
    drop(flood);
}

/// Adds `spiller`, a cruncher allowed the memory a 12 MiB answer needs.
async fn spiller(runtime: &std::sync::Arc<exorun_core::Runtime>) {
    let limits = exorun_core::limits::Limits {
        memory_bytes_max: 64 * 1024 * 1024,
        ..exorun_core::limits::Limits::default()
    };
    let app = common::add(runtime, "cruncher");
    exorun_bind::InstanceBuilder::new(runtime, app)
        .unwrap()
        .limits(limits)
        .name("spiller")
        .instantiate()
        .await
        .unwrap();
}

/// A client whose connection comes from `source` (another loopback address: another host).
async fn client_from(source: [u8; 4], address: &Address) -> std::sync::Arc<Client> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .unwrap();
    let stream = socket
        .connect(host_port(address).parse().unwrap())
        .await
        .unwrap();
    let (reader, writer) = stream.into_split();
    let config = stream::Config::new(transport::MESSAGE_BYTES_MAX);
    let transport = stream::Transport::new(Box::new(reader), Box::new(writer), config);
    std::sync::Arc::new(Client::new(
        std::sync::Arc::new(transport),
        client::Config::default(),
    ))
}

/// `counters#make-many` of `count` counters: whether they were handed out, or the failure.
async fn make_many(client: &Client, count: usize) -> Result<(), Failure> {
    let slab = codec::encode(&[Val::List(vec![Val::U32(1); count])]).unwrap();
    let method = "exorun:test/counters#make-many";
    let reply = call_slab(client, "counters", method, &slab).await.unwrap();
    reply.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_cannot_fill_the_runtimes_handle_table() {
    let runtime = exorun_core::Runtime::new().unwrap();
    common::build(&runtime, "counter-provider", Vec::new(), Some("counters")).await;
    let exports = exorun_bind::Exports::new(runtime);
    exports.export("counters").unwrap();
    let (address, _stop, _server) =
        socket_server_with(&exports, "tcp://127.0.0.1:0", server::Config::default()).await;
    // Twenty connections from one host, each asking for all a connection may hold.
    let per_connection = exorun_bind::serve::HANDLES_PER_CONNECTION_MAX;
    let mut attackers = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        let attacker = client_from(ATTACKER, &address).await;
        match make_many(&attacker, per_connection).await {
            Ok(()) => {}
            Err(Failure::Overloaded) => refused += 1,
            Err(failure) => panic!("{failure:?}"),
        }
        attackers.push(attacker);
    }
    let share = exorun_bind::serve::HANDLES_PER_SOURCE_MAX;
    assert_eq!(exports.handles_held(), share, "the host holds its share");
    assert_eq!(refused, 20 - share / per_connection);
    // A caller on another host still gets handles, at once.
    let client = socket_peer(&address).await;
    let legitimate = tokio::time::timeout(Duration::from_secs(2), make_many(&client, 16));
    assert_eq!(legitimate.await.expect("answered within 2 s"), Ok(()));
    // The host's connections gone, its share is free again.
    drop(attackers);
    let mut held = exports.watch_handles();
    held.wait_for(|held| *held == 16).await.unwrap();
    drop(client);
}
