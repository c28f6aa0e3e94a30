//! What a guard costs a remote call, every row from one run: cruncher's `tally` (a trivial
//! call) over one tls:// loopback connection, exported as `plain` (no guard) and as `guarded`
//! (decided by the `auth` app, which trusts the operator; the caller presents a one-link
//! capability the operator issued to it).
//!
//! - `warm`: the same capability on every call, so after the first the connection's kept grant
//!   answers (no guard call).
//! - `cold`: a different capability on every call (each with its own caveat), so the guard is
//!   asked every time: decode, one ed25519 verification, the grant.
//! - `1 in flight`: one call after another. `256 in flight`: 256 calls at once on the one
//!   connection, repeated; ns per call is the wall time over the calls.
//!
//! Run: `cargo bench -p exorun-bind --bench guard`. BENCHMARKS.md records a run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use std::time::SystemTime;

use bytes::Bytes;
use exorun_bind::builder::InstanceBuilder;
use exorun_bind::serve::Allow;
use exorun_bind::serve::Exports;
use exorun_cap::Capability;
use exorun_cap::Link;
use exorun_cap::Right;
use exorun_core::runtime::Runtime;
use exorun_core::system::SystemComponent;
use exorun_systems::config::Config;
use exorun_systems::wasi::Wasi;
use exorun_testkit::fixtures;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::identity::NodeKey;
use exorun_transport::net;
use exorun_transport::server;
use exorun_transport::tls::Secure;
use exorun_transport::transport;
use neorpc::frame;

const METHOD: &str = "exorun:test/crunch#tally";
const SERIAL_CALLS: u32 = 4_000;
const COLD_SERIAL_CALLS: u32 = 1_000;
const BURSTS: u32 = 20;
const IN_FLIGHT: u32 = 256;

/// A runtime serving cruncher as `plain` and as `guarded` (by `auth`, trusting `operator`).
async fn serve(server_key: &NodeKey, operator: &NodeKey) -> Address {
    let runtime = Runtime::new().expect("runtime");
    let add = |name: &str| {
        let path = fixtures::path(name).expect("fixtures");
        runtime.add_app_file(name, &path).expect("app")
    };
    let (cruncher, auth) = (add("cruncher"), add("auth"));
    for name in ["plain", "guarded"] {
        let builder = InstanceBuilder::new(&runtime, cruncher).expect("builder");
        builder.name(name).instantiate().await.expect("cruncher");
    }
    let roots = BTreeMap::from([("roots".to_owned(), operator.public().to_string())]);
    let config: Arc<dyn SystemComponent> = Arc::new(Config::new(roots));
    let wasi: Arc<dyn SystemComponent> = Arc::new(Wasi::new());
    let builder = InstanceBuilder::new(&runtime, auth).expect("builder");
    let builder = builder.name("auth").system(&config).system(&wasi);
    builder.instantiate().await.expect("auth");
    let exports = Exports::new(runtime);
    exports.export("plain").expect("export");
    exports
        .export_guarded("guarded", Allow::Anyone, "auth")
        .expect("guard");
    let address = Address::parse("tls://127.0.0.1:0").expect("address");
    let listener = net::Listener::bind_secure(&address, server_key)
        .await
        .expect("bind");
    let bound = listener.local_address().expect("address");
    tokio::spawn(
        server::Server::new(exports, server::Config::default())
            .listen(listener)
            .run(std::future::pending()),
    );
    bound
}

/// A capability from `operator` to `holder` for `guarded`, with caveat `n` (so each `n` gives
/// different bytes).
fn capability(operator: &NodeKey, holder: &NodeKey, n: usize) -> Bytes {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let mut link = Link {
        issuer: *operator.public().as_bytes(),
        subject: *holder.public().as_bytes(),
        parent: [0; 32],
        not_before: now - 60,
        not_after: now + 3600,
        rights: vec![Right::parse("guarded").expect("right")],
        caveats: vec![format!("n={n}")],
        signature: [0; 64],
    };
    exorun_cap::verify::sign_with(&mut link, |signed| operator.sign(signed).expect("sign"))
        .expect("sign");
    let capability = Capability { links: vec![link] };
    Bytes::from(capability.encode().expect("encode"))
}

async fn tally(client: &Client, target: &str, capability: Option<&Bytes>) {
    let mut writer = frame::CallWriter::new(target, METHOD).expect("writer");
    neorpc::codec::encode_into(writer.args(), &[], &neorpc::codec::Limits::default())
        .expect("args");
    let presented = capability.map(|bytes| &bytes[..]);
    let frame = writer.finish_presenting(&[], presented).expect("frame");
    client.call(frame).await.expect("call").expect("a reply");
}

/// ns per call, one at a time; `capabilities` cycles (one: warm).
async fn serial(client: &Client, target: &str, capabilities: &[Option<Bytes>], calls: u32) -> f64 {
    let started = Instant::now();
    let count = usize::try_from(calls).expect("count");
    for capability in capabilities.iter().cycle().take(count) {
        tally(client, target, capability.as_ref()).await;
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(calls)
}

/// ns per call, `IN_FLIGHT` at once, `BURSTS` times.
async fn bursts(client: &Arc<Client>, target: &str, capabilities: &[Option<Bytes>]) -> f64 {
    let started = Instant::now();
    let mut cycle = capabilities.iter().cycle();
    for _ in 0..BURSTS {
        let mut calls = tokio::task::JoinSet::new();
        for capability in cycle
            .by_ref()
            .take(usize::try_from(IN_FLIGHT).expect("count"))
        {
            let capability = capability.clone();
            let (client, target) = (Arc::clone(client), target.to_owned());
            calls.spawn(async move { tally(&client, &target, capability.as_ref()).await });
        }
        calls.join_all().await;
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(BURSTS * IN_FLIGHT)
}

async fn run() -> Vec<(&'static str, f64)> {
    let server_key = NodeKey::generate().expect("key");
    let operator = NodeKey::generate().expect("key");
    let holder = Arc::new(NodeKey::generate().expect("key"));
    let address = serve(&server_key, &operator).await;
    let secure = Secure {
        key: Arc::clone(&holder),
        pin: server_key.public(),
    };
    let max = transport::MESSAGE_BYTES_MAX;
    let connection = net::connect_secure(&address, &secure, max)
        .await
        .expect("connect");
    let client = Arc::new(Client::new(connection, client::Config::default()));
    let none = [None];
    let warm = [Some(capability(&operator, &holder, 0))];
    let cold_count = usize::try_from(COLD_SERIAL_CALLS.max(BURSTS * IN_FLIGHT)).expect("count");
    let cold: Vec<Option<Bytes>> = (1..=cold_count)
        .map(|n| Some(capability(&operator, &holder, n)))
        .collect();
    // Warm-up: both exports, and the warm grant kept.
    serial(&client, "plain", &none, SERIAL_CALLS / 10).await;
    serial(&client, "guarded", &warm, SERIAL_CALLS / 10).await;
    vec![
        (
            "plain 1",
            serial(&client, "plain", &none, SERIAL_CALLS).await,
        ),
        (
            "warm 1",
            serial(&client, "guarded", &warm, SERIAL_CALLS).await,
        ),
        (
            "cold 1",
            serial(&client, "guarded", &cold, COLD_SERIAL_CALLS).await,
        ),
        ("plain 256", bursts(&client, "plain", &none).await),
        ("warm 256", bursts(&client, "guarded", &warm).await),
        ("cold 256", bursts(&client, "guarded", &cold).await),
    ]
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let rows = tokio.block_on(tokio.spawn(run())).expect("bench task");
    let time = |name: &str| {
        rows.iter()
            .find(|(row, _)| *row == name)
            .map_or(f64::NAN, |(_, ns)| *ns)
    };
    println!("{:<18} {:>12}", "row (in flight)", "ns/call");
    for (name, ns) in &rows {
        println!("{name:<18} {ns:>12.0}");
    }
    println!();
    let ratio = |guarded: &str, plain: &str, note: &str| {
        let ratio = time(guarded) / time(plain);
        println!("{guarded:<9} / {plain:<9} = {ratio:>6.2}x  ({note})");
    };
    ratio(
        "warm 1",
        "plain 1",
        "a kept grant, one call at a time; aim <= 1.2x",
    );
    ratio("cold 1", "plain 1", "the guard asked every call");
    ratio("warm 256", "plain 256", "a kept grant, 256 in flight");
    ratio(
        "cold 256",
        "plain 256",
        "the guard asked every call, 256 in flight",
    );
}
