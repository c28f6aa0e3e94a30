//! One boundary suite for every kv backend (memory, a redb file, a JetStream bucket on a real
//! `nats-server -js`): the kv-client guest reads back what it wrote, two instances share one
//! store, every bound answers with its code (a guest sees a rejection, never a trap of its
//! own), keys that NATS would not take round-trip, and a durable file that cannot be opened is
//! named. Each case runs on each backend from one table.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::path::PathBuf;

use exorun_core::context::ContextBuilder;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::limits::Limits;
use exorun_core::runtime::Runtime;
use exorun_core::system::SystemComponent;
use exorun_systems::kv;
use exorun_testkit::fixtures;
use wasmtime::component::Linker;
use wasmtime::component::Val;

/// A real nats-server with JetStream on a random loopback port and a scratch store directory,
/// killed when dropped (the test script installs the Debian package).
struct NatsServer {
    child: std::process::Child,
    url: String,
    _dir: Scratch,
}

impl NatsServer {
    fn start() -> Self {
        use std::io::BufRead;
        let dir = Scratch::new("js");
        let spawned = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(&dir.0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = spawned.unwrap_or_else(|error| {
            panic!("cannot start nats-server ({error}); `bash scripts/test_exorun.sh` installs it")
        });
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
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
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        let url = url.expect("nats-server reported no client port");
        Self {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("exorun-kv-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a backend needs kept alive while its store is used (held, then dropped with it).
#[expect(dead_code, reason = "held only to be dropped after its store")]
enum Keep {
    Nothing,
    Dir(Scratch),
    Nats(NatsServer),
}

/// A fresh, empty store on each backend, by name.
async fn backends() -> Vec<(&'static str, kv::Store, Keep)> {
    let dir = Scratch::new("redb");
    let durable = kv::Store::open(&dir.0.join("store.redb")).await.unwrap();
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url.as_str()).await.unwrap();
    let bucket = kv::Store::jetstream(client, "suite").await.unwrap();
    vec![
        ("memory", kv::Store::new(), Keep::Nothing),
        ("durable", durable, Keep::Dir(dir)),
        ("jetstream", bucket, Keep::Nats(nats)),
    ]
}

async fn instantiate(runtime: &Runtime, store: &kv::Store) -> InstanceHandle {
    let path = fixtures::path("kv-client").unwrap_or_else(|e| panic!("{e}"));
    let id = runtime.add_app_file("kv-client", &path).unwrap();
    let mut linker = Linker::new(runtime.engine());
    let mut builder = ContextBuilder::new();
    let system = kv::Kv::new(store.clone());
    system.install(&mut linker).unwrap();
    system.configure(&mut builder).unwrap();
    let prepared = runtime.prepare(id, &linker).unwrap();
    let started = runtime.instantiate_prepared(&prepared, builder, Limits::default(), None);
    started.await.unwrap()
}

async fn run(handle: &InstanceHandle) -> Result<String, instance::Error> {
    let mut results = [Val::Bool(false)];
    handle
        .call("exorun:test/runnable", "run", &[], &mut results)
        .await?;
    let [Val::String(text)] = results else {
        panic!("run returned {results:?}")
    };
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_reads_back_what_it_wrote_and_two_instances_share_a_store() {
    for (backend, store, _keep) in backends().await {
        let runtime = Runtime::new().unwrap();
        store.set("seen", "by both").await.unwrap();
        let first = instantiate(&runtime, &store).await;
        let second = instantiate(&runtime, &store).await;
        assert_eq!(run(&first).await.unwrap(), "KV result: bar", "{backend}");
        assert_eq!(store.get("foo").await.unwrap().as_deref(), Some("bar"));
        store.set("foo", "changed").await.unwrap();
        // The second instance's `set` overwrites, then its `get` reads the shared store.
        assert_eq!(run(&second).await.unwrap(), "KV result: bar", "{backend}");
        assert_eq!(store.entries().await.unwrap(), 2, "{backend}");
        assert_eq!(store.get("missing").await.unwrap(), None, "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bound_answers_with_its_code_on_every_backend() {
    for (backend, store, _keep) in backends().await {
        let key = "k".repeat(kv::KEY_BYTES_MAX + 1);
        let error = store.set(&key, "v").await.unwrap_err();
        let expected = kv::Error::KeyTooLarge {
            bytes: kv::KEY_BYTES_MAX + 1,
            max: kv::KEY_BYTES_MAX,
        };
        assert_eq!(error, expected, "{backend}");
        assert_eq!(error.code(), kv::CODE_KEY_TOO_LARGE);
        let value = "v".repeat(kv::VALUE_BYTES_MAX + 1);
        let error = store.set("k", &value).await.unwrap_err();
        assert_eq!(error.code(), kv::CODE_VALUE_TOO_LARGE, "{backend}");
        // The largest key and value fit.
        let (key, value) = (
            "k".repeat(kv::KEY_BYTES_MAX),
            "v".repeat(kv::VALUE_BYTES_MAX),
        );
        store.set(&key, &value).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap(), Some(value), "{backend}");
        // A store of three entries takes an overwrite, not a fourth key.
        let small = store.clone().entries_max(3);
        small.set("a", "1").await.unwrap();
        small.set("b", "2").await.unwrap();
        let full = small.set("c", "3").await.unwrap_err();
        assert_eq!(full, kv::Error::Full { entries_max: 3 }, "{backend}");
        assert_eq!(full.code(), kv::CODE_FULL);
        small.set("a", "again").await.unwrap();
        assert_eq!(small.entries().await.unwrap(), 3, "{backend}");
        // A guest whose write is refused sees the rejection and its code.
        let runtime = Runtime::new().unwrap();
        let guest = instantiate(&runtime, &small).await;
        let refused = run(&guest).await.unwrap_err();
        let instance::Error::Rejected(rejection) = refused.root_cause() else {
            panic!("{backend}: {refused:?}")
        };
        assert_eq!(rejection.code, kv::CODE_FULL, "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_any_text_round_trip_apart() {
    let keys = ["a.b", "a=2eb", "=", "", "é", "*", ">", "a b", "x/y", "..."];
    for (backend, store, _keep) in backends().await {
        for (i, key) in keys.iter().enumerate() {
            store.set(key, &i.to_string()).await.unwrap();
        }
        for (i, key) in keys.iter().enumerate() {
            let value = store.get(key).await.unwrap();
            assert_eq!(value, Some(i.to_string()), "{backend}: {key:?}");
        }
        assert_eq!(store.entries().await.unwrap(), keys.len(), "{backend}");
    }
}

#[tokio::test]
async fn a_durable_file_that_cannot_be_opened_is_named() {
    let dir = Scratch::new("bad");
    let corrupt = dir.0.join("corrupt.redb");
    std::fs::write(&corrupt, vec![0xAB; 8192]).unwrap();
    let error = kv::Store::open(&corrupt).await.unwrap_err();
    let kv::Error::Open { store, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(store, &format!("redb file {}", corrupt.display()));
    assert!(
        error.to_string().starts_with("cannot open redb file "),
        "{error}"
    );
    // A file this process holds open already is refused, not shared behind its back.
    let held = dir.0.join("held.redb");
    let _open = kv::Store::open(&held).await.unwrap();
    let again = kv::Store::open(&held).await.unwrap_err();
    let kv::Error::Open { message, .. } = &again else {
        panic!("{again:?}")
    };
    assert!(!message.is_empty(), "{again}");
    // A directory that does not exist is named too.
    let nowhere = dir.0.join("missing").join("store.redb");
    let error = kv::Store::open(&nowhere).await.unwrap_err();
    assert!(error.to_string().contains("missing/store.redb"), "{error}");
}

#[tokio::test]
async fn a_value_written_is_read_by_a_store_opened_again() {
    let dir = Scratch::new("again");
    let path = dir.0.join("notes.redb");
    let store = kv::Store::open(&path).await.unwrap();
    for i in 0..100 {
        store
            .set(&format!("note-{i}"), &format!("text {i}"))
            .await
            .unwrap();
    }
    drop(store);
    let reopened = kv::Store::open(&path).await.unwrap();
    assert_eq!(reopened.entries().await.unwrap(), 100);
    let value = reopened.get("note-42").await.unwrap();
    assert_eq!(value.as_deref(), Some("text 42"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_nats_server_is_a_rejection_in_bounded_time() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url.as_str()).await.unwrap();
    let store = kv::Store::jetstream(client, "gone").await.unwrap();
    store.set("before", "1").await.unwrap();
    drop(nats); // killed: the client keeps trying to reconnect
    let runtime = Runtime::new().unwrap();
    let guest = instantiate(&runtime, &store).await;
    let started = std::time::Instant::now();
    let refused = run(&guest).await.unwrap_err();
    let waited = started.elapsed();
    let instance::Error::Rejected(rejection) = refused.root_cause() else {
        panic!("{refused:?}")
    };
    assert_eq!(rejection.code, kv::CODE_UNAVAILABLE);
    assert!(
        rejection.message.starts_with("JetStream bucket gone: "),
        "{}",
        rejection.message
    );
    assert!(
        waited < kv::OPERATION_TIMEOUT * 2,
        "answered within the operation bound: {waited:?}"
    );
}

/// A counter's change: the value as a decimal number, plus one (absent: 0).
fn plus_one() -> kv::Change {
    std::sync::Arc::new(|value: Option<&str>| {
        let now: u64 = value
            .map_or(Ok(0), str::parse)
            .map_err(|_| kv::Error::Unavailable {
                store: "test".to_owned(),
                message: "not a number".to_owned(),
            })?;
        Ok((now + 1).to_string())
    })
}

async fn ten_increments(store: kv::Store) {
    for _ in 0..10 {
        store.update("counter", plus_one()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_listings_and_atomic_updates_hold_on_every_backend() {
    for (backend, store, _keep) in backends().await {
        for key in ["b/2", "b/1", "a/1", "b/3", "c"] {
            store.set(key, "x").await.unwrap();
        }
        assert_eq!(
            store.keys("b/", None, 10).await.unwrap(),
            ["b/1", "b/2", "b/3"],
            "{backend}"
        );
        assert_eq!(
            store.keys("b/", None, 2).await.unwrap(),
            ["b/1", "b/2"],
            "{backend}"
        );
        store.delete("b/2").await.unwrap();
        // Deleting keys that were never set, or set and deleted, leaves nothing behind that
        // counts against the bound (on JetStream: no delete markers).
        let before = store.entries().await.unwrap();
        for n in 0..50 {
            store.delete(&format!("never/{n}")).await.unwrap();
            store.set("brief", "x").await.unwrap();
            store.delete("brief").await.unwrap();
        }
        assert_eq!(
            store.entries().await.unwrap(),
            before,
            "{backend}: after deletes"
        );
        assert_eq!(store.get("brief").await.unwrap(), None, "{backend}");
        let after = store.keys("b/", Some("b/1"), 10).await.unwrap();
        assert_eq!(after, ["b/3"], "{backend}: after a key");
        let before_prefix = store.keys("b/", Some("a"), 10).await.unwrap();
        assert_eq!(
            before_prefix,
            ["b/1", "b/3"],
            "{backend}: after a key before it"
        );
        assert_eq!(store.get("b/2").await.unwrap(), None, "{backend}");
        assert_eq!(
            store.keys("b/", None, 10).await.unwrap(),
            ["b/1", "b/3"],
            "{backend}"
        );
        // 4 tasks of 10 increments each, at once: none is lost.
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            tasks.spawn(ten_increments(store.clone()));
        }
        tasks.join_all().await;
        assert_eq!(
            store.get("counter").await.unwrap().as_deref(),
            Some("40"),
            "{backend}"
        );
        // A change that fails changes nothing; one past the value bound is refused.
        store.set("text", "abc").await.unwrap();
        let refused = store.update("text", plus_one()).await;
        assert!(refused.is_err(), "{backend}");
        assert_eq!(
            store.get("text").await.unwrap().as_deref(),
            Some("abc"),
            "{backend}"
        );
        let huge: kv::Change = std::sync::Arc::new(|_| Ok("v".repeat(kv::VALUE_BYTES_MAX + 1)));
        let refused = store.update("text", huge).await;
        assert_eq!(
            refused.map_err(|error| error.code()),
            Err(kv::CODE_VALUE_TOO_LARGE),
            "{backend}"
        );
    }
}
