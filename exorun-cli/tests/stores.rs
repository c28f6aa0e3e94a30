//! Stores that outlive the process, across real processes: a redb store keeps every write a
//! caller saw acknowledged through `kill -9` of its runtime, and a file that is locked or
//! corrupt stops `exorun serve` at start, naming it; a JetStream store is shared by two
//! runtimes on one `nats-server -js` and keeps every acknowledged write through a restart of
//! the NATS server.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::time::Duration;
use std::time::Instant;

use common::Server;
use common::manifest;
use common::text;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::net;
use exorun_transport::transport;
use wasmtime::component::Type;
use wasmtime::component::Val;

/// kv-client as `notes`, exported, its kv linked to the store `notes`; `STORE` is the store's
/// table.
const NOTES: &str = r#"
[apps]
kv-client = "{fixtures}/kv-client.wasm"
[stores]
notes = STORE
[instances.notes]
app = "kv-client"
export = true
links = { "exorun:host/kv" = { system = "kv", store = "notes" } }
"#;

async fn connect(address: &str) -> Client {
    let address = Address::parse(address).unwrap();
    let connection = net::connect(&address, transport::MESSAGE_BYTES_MAX)
        .await
        .unwrap();
    Client::new(connection, client::Config::default())
}

async fn put(client: &Client, key: &str, value: &str) -> Result<(), client::Error> {
    let slab =
        neorpc::codec::encode(&[Val::String(key.into()), Val::String(value.into())]).unwrap();
    let frame = neorpc::frame::encode_call("notes", "exorun:test/notes#put", &slab, &[]).unwrap();
    let reply = client.call(frame).await?;
    reply
        .map(drop)
        .map_err(|failure| panic!("put failed: {failure}"))
}

async fn get(client: &Client, key: &str) -> Result<Option<String>, client::Error> {
    let slab = neorpc::codec::encode(&[Val::String(key.into())]).unwrap();
    let frame = neorpc::frame::encode_call("notes", "exorun:test/notes#get", &slab, &[]).unwrap();
    let reply = client.call(frame).await?.expect("get answers");
    let types = [option_of_string()];
    let values = neorpc::codec::decode(&reply, &types, &neorpc::codec::Limits::default()).unwrap();
    let [Val::Option(note)] = &values[..] else {
        panic!("{values:?}")
    };
    let Some(note) = note else {
        return Ok(None);
    };
    let Val::String(text) = note.as_ref() else {
        panic!("{note:?}")
    };
    Ok(Some(text.clone()))
}

/// `option<string>`, from kv-client's own `notes.get`.
fn option_of_string() -> Type {
    let engine = wasmtime::Engine::default();
    let path = exorun_testkit::fixtures::path("kv-client").unwrap();
    let component = wasmtime::component::Component::from_file(&engine, path).unwrap();
    let ty = component.component_type();
    let (_, notes) = ty
        .exports(&engine)
        .find(|(name, _)| *name == "exorun:test/notes")
        .unwrap();
    let wasmtime::component::types::ComponentItem::ComponentInstance(notes) = notes.ty else {
        panic!("notes is not an instance")
    };
    let (_, get) = notes
        .exports(&engine)
        .find(|(name, _)| *name == "get")
        .unwrap();
    let wasmtime::component::types::ComponentItem::ComponentFunc(get) = get.ty else {
        panic!("get is not a function")
    };
    get.results().next().unwrap()
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `exorun serve MANIFEST` that must refuse to start: its exit status and stderr.
fn refused_to_serve(path: &std::path::Path) -> (Option<i32>, String) {
    let child = common::exorun()
        .arg("serve")
        .arg(path)
        .args(["--listen", "tcp://127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (output, _) = common::exit_within(child, common::WAIT);
    (output.status.code(), text(&output.stderr))
}

#[test]
fn a_durable_store_keeps_every_acknowledged_write_through_kill_9() {
    let path = manifest(
        "durable",
        &NOTES.replace("STORE", r#"{ path = "notes.redb" }"#),
    );
    let file = path.parent().unwrap().join("notes.redb");
    let _ = std::fs::remove_file(&file);
    let tokio = tokio();
    let first = Server::start(&path, "tcp://127.0.0.1:0");
    tokio.block_on(async {
        let client = connect(&first.address).await;
        for i in 0..200 {
            put(&client, &format!("note-{i}"), &format!("text {i}"))
                .await
                .unwrap();
        }
    });
    // Killed without a word, right after the last acknowledgement.
    first.signal("-KILL");
    let _ = first.exit_within(Duration::from_secs(10));

    let second = Server::start(&path, "tcp://127.0.0.1:0");
    tokio.block_on(async {
        let client = connect(&second.address).await;
        for i in 0..200 {
            let note = get(&client, &format!("note-{i}")).await.unwrap();
            assert_eq!(note, Some(format!("text {i}")), "note {i}");
        }
    });
    // While it runs, the file is locked: a second runtime on it stops at start, naming it.
    let (code, stderr) = refused_to_serve(&path);
    assert_eq!(code, Some(1), "{stderr}");
    let named = format!("stores.notes: cannot open redb file {}", file.display());
    assert!(stderr.contains(&named), "{stderr}");
    let (status, stderr) = second.interrupt();
    assert!(status.success(), "{stderr}");

    // A file that is not a store is named too.
    let corrupt = manifest(
        "corrupt",
        &NOTES.replace("STORE", r#"{ path = "notes.redb" }"#),
    );
    let corrupt_file = corrupt.parent().unwrap().join("notes.redb");
    std::fs::write(&corrupt_file, vec![0x5A; 4096]).unwrap();
    let (code, stderr) = refused_to_serve(&corrupt);
    assert_eq!(code, Some(1), "{stderr}");
    let named = format!(
        "stores.notes: cannot open redb file {}",
        corrupt_file.display()
    );
    assert!(stderr.contains(&named), "{stderr}");
}

/// A nats-server with JetStream, on `port` (0: any) and store directory `dir`.
struct Jetstream {
    child: std::process::Child,
    port: u16,
}

impl Jetstream {
    fn start(port: u16, dir: &std::path::Path) -> Self {
        use std::io::BufRead;
        let port_arg = if port == 0 {
            "-1".to_owned()
        } else {
            port.to_string()
        };
        let mut child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nats-server (bash scripts/test_exorun.sh installs it)");
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut bound = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some((_, at)) = line.split_once("Listening for client connections on ") {
                bound = at
                    .trim()
                    .rsplit_once(':')
                    .map(|(_, port)| port.parse().unwrap());
            }
            if line.contains("Server is ready") {
                break;
            }
        }
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Self {
            child,
            port: bound.expect("nats-server reported no client port"),
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Jetstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_jetstream_store_is_shared_by_two_runtimes_and_outlives_a_nats_restart() {
    let dir = std::env::temp_dir().join(format!("exorun-cli-{}-js", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let nats = Jetstream::start(0, &dir);
    let port = nats.port;
    let store = format!(r#"{{ nats = "nats://127.0.0.1:{port}", bucket = "notes" }}"#);
    let path = manifest("jetstream", &NOTES.replace("STORE", &store));
    let (one, two) = (
        Server::start(&path, "tcp://127.0.0.1:0"),
        Server::start(&path, "tcp://127.0.0.1:0"),
    );
    let tokio = tokio();
    tokio.block_on(async {
        let (writer, reader) = (connect(&one.address).await, connect(&two.address).await);
        for i in 0..50 {
            put(&writer, &format!("note {i}"), &format!("from one {i}"))
                .await
                .unwrap();
        }
        for i in 0..50 {
            let note = get(&reader, &format!("note {i}")).await.unwrap();
            assert_eq!(
                note,
                Some(format!("from one {i}")),
                "seen by the other runtime"
            );
        }
    });
    // The NATS server is killed and comes back on the same port and store directory.
    nats.kill();
    let _nats = Jetstream::start(port, &dir);
    tokio.block_on(async {
        // Each attempt on a fresh connection (a party of its own: no back-off left by the
        // failed ones), each bounded by the store's 5 s operation timeout.
        let started = Instant::now();
        let note = loop {
            let reader = connect(&two.address).await;
            match get(&reader, "note 49").await {
                Ok(note) => break note,
                Err(error) => assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the store did not come back: {error}"
                ),
            }
        };
        assert_eq!(note, Some("from one 49".to_owned()));
        let reader = connect(&two.address).await;
        for i in 0..50 {
            let note = get(&reader, &format!("note {i}")).await.unwrap();
            assert_eq!(
                note,
                Some(format!("from one {i}")),
                "kept through the restart"
            );
        }
    });
    for server in [one, two] {
        let (status, stderr) = server.interrupt();
        assert!(status.success(), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A component written only for `wasi:config` and `wasi:keyvalue` runs unchanged: on a redb
/// store its bucket (and its visit count) outlives each `exorun run`, and an `exorun:host/kv`
/// guest linked to the same store reads the bucket's greeting under its prefix; with only
/// `"wasi:*"`, it runs on the default store in memory.
#[test]
fn a_component_written_for_wasi_keyvalue_and_config_runs_unchanged() {
    let dir = std::env::temp_dir().join(format!("exorun-keyvalue-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("shared.redb");
    let standard = manifest(
        "keyvalue-standard",
        &r#"
[apps]
standard = "{fixtures}/standard-store.wasm"
[stores]
shared = { path = "PATH" }
[instances.std]
app = "standard"
config = { bucket = "guests", greeting = "hello, standard world" }
links = { "wasi:config/store@0.2.0-rc.1" = { system = "config" }, "wasi:keyvalue/store@0.2.0-draft" = { system = "keyvalue", store = "shared" } }
"#
        .replace("PATH", store.to_str().unwrap()),
    );
    let seen = |visit: u32| {
        format!(
            "std: \"hello, standard world (visit {visit}); a=[1, 2, 255] b=[116, 119, 111] none; \
             keys a,b,greeting,visits; b after delete: false\"\n"
        )
    };
    for visit in 1..=2 {
        let ran = common::run(&["run", standard.to_str().unwrap()]);
        assert!(ran.status.success(), "{}", text(&ran.stderr));
        assert_eq!(text(&ran.stdout), seen(visit));
    }
    let reader = manifest(
        "keyvalue-reader",
        &r#"
[apps]
kv-client = "{fixtures}/kv-client.wasm"
[stores]
shared = { path = "PATH" }
[instances.notes]
app = "kv-client"
links = { "exorun:host/kv" = { system = "kv", store = "shared" } }
"#
        .replace("PATH", store.to_str().unwrap()),
    );
    let read = common::run(&[
        "run",
        reader.to_str().unwrap(),
        "--invoke",
        r#"notes.exorun:test/notes#get("wasi:keyvalue/guests/greeting")"#,
    ]);
    assert_eq!(
        text(&read.stdout),
        "some(\"thello, standard world\")\n",
        "{}",
        text(&read.stderr)
    );
    let wildcard = manifest(
        "keyvalue-wildcard",
        r#"
[apps]
standard = "{fixtures}/standard-store.wasm"
[instances.std]
app = "standard"
config = { bucket = "guests", greeting = "hello, standard world" }
links = { "wasi:*" = { system = "wasi" } }
"#,
    );
    let ran = common::run(&["run", wildcard.to_str().unwrap()]);
    assert_eq!(text(&ran.stdout), seen(1), "{}", text(&ran.stderr));
}
