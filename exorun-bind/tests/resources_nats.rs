//! Resources across a NATS lattice, on a real nats-server: a handle is made by whichever
//! runtime of the queue group answered, and every later use and drop of it reaches that same
//! runtime (a subject of its own); that runtime gone, its handles are `ResourceGone`.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::build;
use exorun_bind::builder::Linkable;
use exorun_bind::link::standins;
use exorun_bind::serve::Exports;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::runtime::Runtime;
use exorun_transport::dispatch;
use exorun_transport::nats;
use neorpc::failure::Failure;
use wasmtime::component::Val;

const COUNTERS: &str = "exorun:test/counters";
const SINK: &str = "exorun:test/counter-sink";
const USER: &str = "exorun:test/counter-user";
const LATTICE: &str = "resources";

/// A real nats-server on a random loopback port, killed when dropped (the test script installs
/// the Debian package).
struct NatsServer {
    child: std::process::Child,
    url: String,
}

impl NatsServer {
    fn start() -> Self {
        use std::io::BufRead;
        let spawned = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = spawned.unwrap_or_else(|error| {
            panic!("cannot start nats-server ({error}); `bash scripts/test_exorun.sh` installs it")
        });
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufReader::new(stderr).lines();
        let mut url = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some((_, at)) = line.split_once("Listening for client connections on ") {
                url = Some(format!("nats://{}", at.trim()));
            }
            if line.contains("Server is ready") {
                break;
            }
        }
        // Keep draining its log, so it never blocks on a full pipe.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        let url = url.expect("nats-server reported no client port");
        Self { child, url }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn settings(url: &str) -> nats::Settings {
    nats::Settings {
        urls: vec![url.to_owned()],
        name: "resources-test".to_owned(),
        ..nats::Settings::default()
    }
}

/// A runtime serving counter-provider as `counters` in the lattice: the provider, and what
/// stops its serving (the task ends once every call is answered).
async fn member(
    url: &str,
) -> (
    InstanceHandle,
    Arc<Exports>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<nats::Served>,
) {
    let runtime = Runtime::new().unwrap();
    let provider = build(&runtime, "counter-provider", Vec::new(), Some("counters")).await;
    let exports = Exports::new(runtime);
    exports.export("counters").unwrap();
    let subscribed = nats::join(&settings(url), LATTICE, &["counters".to_owned()])
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dispatcher: Arc<dyn dispatch::Dispatcher> = exports.clone();
    let serving = tokio::spawn(subscribed.serve(dispatcher, 64, async move {
        let _ = stopped.await;
    }));
    (provider, exports, stop, serving)
}

async fn user(
    consumer: &InstanceHandle,
    function: &str,
    args: &[Val],
) -> Result<Val, instance::Error> {
    let export = consumer.export(USER, function)?;
    let mut results = vec![Val::Bool(false); export.signature().results.len()];
    consumer.call_export(&export, args, &mut results).await?;
    Ok(results.pop().unwrap_or(Val::Tuple(Vec::new())))
}

async fn live(provider: &InstanceHandle) -> u32 {
    let mut results = [Val::U32(0)];
    provider
        .call(COUNTERS, "live", &[], &mut results)
        .await
        .unwrap();
    let [Val::U32(n)] = results else {
        unreachable!()
    };
    n
}

fn gone(error: &instance::Error) -> bool {
    let instance::Error::Raised(raised) = error.root_cause() else {
        return matches!(error.root_cause(), instance::Error::ResourceGone { .. });
    };
    matches!(
        exorun_bind::link::remote::failure_of(raised),
        Some(Failure::ResourceGone { resource }) if resource == "counter"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_made_in_a_lattice_is_used_and_dropped_where_it_lives() {
    let server = NatsServer::start();
    let (first, first_exports, stop_first, first_serving) = member(&server.url).await;
    let (second, second_exports, _stop_second, _second_serving) = member(&server.url).await;
    let runtime = Runtime::new().unwrap();
    let lattice: Arc<dyn exorun_transport::client::Channel> = Arc::new(nats::Lattice::new(
        settings(&server.url),
        LATTICE,
        Duration::from_secs(10),
    ));
    let link = Linkable::Remote {
        channel: lattice,
        target: "counters".into(),
    };
    let links = vec![(COUNTERS, link.clone()), (SINK, link)];
    let consumer = build(&runtime, "counter-consumer", links, None).await;

    // Sixteen counters, each made by whichever member NATS picked.
    let mut slots = Vec::new();
    for start in 0..16_u32 {
        let kept = user(&consumer, "keep", &[Val::U32(start * 100)])
            .await
            .unwrap();
        let Val::U32(slot) = kept else {
            panic!("{kept:?}")
        };
        slots.push((slot, start * 100));
    }
    let (on_first, on_second) = (live(&first).await, live(&second).await);
    assert_eq!(on_first + on_second, 16);
    assert_eq!(
        (first_exports.handles_held(), second_exports.handles_held()),
        (
            usize::try_from(on_first).unwrap(),
            usize::try_from(on_second).unwrap()
        ),
        "each member holds the ids of what it made"
    );
    // Every use reaches the member that holds the counter: each counts on from its start.
    for (slot, start) in &slots {
        let next = user(&consumer, "next", &[Val::U32(*slot)]).await.unwrap();
        assert_eq!(next, Val::U32(*start));
        let peeked = user(&consumer, "peek", &[Val::U32(*slot)]).await.unwrap();
        assert_eq!(peeked, Val::U32(start + 1), "a borrow reaches it too");
    }
    // A drop reaches it before the next call; a counter given home goes home.
    let (slot, _) = slots.pop().unwrap();
    user(&consumer, "forget", &[Val::U32(slot)]).await.unwrap();
    let (slot, start) = slots.pop().unwrap();
    let home = user(&consumer, "finish", &[Val::U32(slot)]).await.unwrap();
    assert_eq!(home, Val::U32(start + 1));
    assert_eq!(live(&first).await + live(&second).await, 14);

    // The first member stops serving: the handles it held are dropped with it, and a use of
    // one is `ResourceGone`, never another counter.
    stop_first.send(()).unwrap();
    first_serving.await.unwrap();
    standins::settled().await;
    assert_eq!((live(&first).await, first_exports.handles_held()), (0, 0));
    let held_by_second = live(&second).await;
    let mut gone_count = 0;
    for (slot, start) in &slots {
        match user(&consumer, "peek", &[Val::U32(*slot)]).await {
            Ok(value) => assert_eq!(value, Val::U32(start + 1)),
            Err(error) => {
                assert!(gone(&error), "{error:?}");
                gone_count += 1;
                break; // the consumer trapped: its replica, and its stand-ins, are replaced
            }
        }
    }
    if held_by_second < 14 {
        assert_eq!(gone_count, 1, "a handle of the stopped member is gone");
    }
    // The consumer that trapped dropped everything it held, on the member still there.
    standins::settled().await;
    assert!(held_by_second == 14 || live(&second).await == 0);
    drop(server);
}
