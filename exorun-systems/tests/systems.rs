//! System components against the real guest apps: logging, kv (shared between instances) and
//! WASI (preopens, the sandbox, env).

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use exorun_core::context::ContextBuilder;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::limits::Limits;
use exorun_core::runtime::Runtime;
use exorun_core::system::Rejection;
use exorun_core::system::SystemComponent;
use exorun_systems::kv;
use exorun_systems::logging;
use exorun_systems::wasi::Access;
use exorun_systems::wasi::Capture;
use exorun_systems::wasi::Wasi;
use exorun_testkit::fixtures;
use wasmtime::component::Linker;
use wasmtime::component::Val;

async fn instantiate(
    runtime: &Runtime,
    app: &str,
    systems: &[&dyn SystemComponent],
) -> InstanceHandle {
    let path = fixtures::path(app).unwrap_or_else(|e| panic!("{e}"));
    let id = runtime.add_app_file(app, &path).unwrap();
    let mut linker = Linker::new(runtime.engine());
    let mut builder = ContextBuilder::new();
    for system in systems {
        system.install(&mut linker).unwrap();
        system.configure(&mut builder).unwrap();
    }
    runtime
        .instantiate_prepared(
            &runtime.prepare(id, &linker).unwrap(),
            builder,
            Limits::default(),
            None,
        )
        .await
        .unwrap()
}

async fn call_string(
    handle: &InstanceHandle,
    interface: &str,
    function: &str,
    params: &[Val],
) -> Val {
    let mut results = [Val::Bool(false)];
    handle
        .call(interface, function, params, &mut results)
        .await
        .unwrap();
    results[0].clone()
}

async fn run(handle: &InstanceHandle) -> String {
    let Val::String(text) = call_string(handle, "exorun:test/runnable", "run", &[]).await else {
        panic!("not a string")
    };
    text
}

#[tokio::test]
async fn logger_client_log_line_is_captured() {
    let runtime = Runtime::new().unwrap();
    let sink = logging::Sink::default();
    let handle = instantiate(
        &runtime,
        "logger-client",
        &[&logging::Logging::with_sink(sink.clone())],
    )
    .await;
    assert_eq!(run(&handle).await, "Done");
    assert_eq!(
        sink.records(),
        [logging::Record {
            level: "INFO".into(),
            message: "Hello from Wasm!".into()
        }]
    );
}

#[tokio::test]
async fn an_unconfigured_kv_is_a_host_error_not_a_panic() {
    let runtime = Runtime::new().unwrap();
    let path = fixtures::path("kv-client").unwrap_or_else(|e| panic!("{e}"));
    let id = runtime.add_app_file("kv-client", &path).unwrap();
    let mut linker = Linker::new(runtime.engine());
    kv::Kv::new(kv::Store::new()).install(&mut linker).unwrap();
    let handle = runtime
        .instantiate_prepared(
            &runtime.prepare(id, &linker).unwrap(),
            ContextBuilder::new(),
            Limits::default(),
            None,
        )
        .await
        .unwrap();
    let mut results = [Val::Bool(false)];
    let error = handle
        .call("exorun:test/runnable", "run", &[], &mut results)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, instance::Error::Raised(raised) if raised.to_string().contains("kv store not configured")),
        "{error:?}"
    );
}

struct Sandbox {
    _dir: std::path::PathBuf,
    handle: InstanceHandle,
}

async fn fs_reader(runtime: &Runtime, tag: &str) -> Sandbox {
    let base = std::env::temp_dir().join(format!("exorun-fs-{}-{tag}", std::process::id()));
    let inside = base.join("inside");
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::write(inside.join("hello.txt"), "hello, sandbox").unwrap();
    std::fs::write(base.join("secret.txt"), "outside").unwrap();
    let wasi = Wasi::new()
        .preopen(&inside, "/data", Access::ReadOnly)
        .env("GREETING", "hi there");
    let handle = instantiate(runtime, "fs-reader", &[&wasi]).await;
    Sandbox { _dir: base, handle }
}

fn result_text(val: Val) -> Result<String, String> {
    let Val::Result(outcome) = val else {
        panic!("not a result: {val:?}")
    };
    let text = |payload: Option<Box<Val>>| match payload.map(|b| *b) {
        Some(Val::String(text)) => text,
        other => panic!("not a string: {other:?}"),
    };
    outcome.map(text).map_err(text)
}

#[tokio::test]
async fn fs_reader_reads_a_preopened_file_and_nothing_else() {
    let runtime = Runtime::new().unwrap();
    let sandbox = fs_reader(&runtime, "read").await;
    let read = |path: &str| Val::String(path.into());
    let handle = &sandbox.handle;
    let ok = call_string(
        handle,
        "exorun:test/sandbox",
        "read-file",
        &[read("hello.txt")],
    )
    .await;
    assert_eq!(result_text(ok), Ok("hello, sandbox".into()));
    let missing = call_string(
        handle,
        "exorun:test/sandbox",
        "read-file",
        &[read("nope.txt")],
    )
    .await;
    assert_eq!(result_text(missing), Err("no-entry".into()));
    let escape = call_string(
        handle,
        "exorun:test/sandbox",
        "read-file",
        &[read("../secret.txt")],
    )
    .await;
    assert_eq!(result_text(escape), Err("not-permitted".into()));
    let preopens = call_string(handle, "exorun:test/sandbox", "preopens", &[]).await;
    assert_eq!(
        preopens,
        Val::List(vec![Val::String("/data".into())]),
        "only guest paths are visible"
    );
}

#[tokio::test]
async fn fs_reader_sees_its_env() {
    let runtime = Runtime::new().unwrap();
    let sandbox = fs_reader(&runtime, "env").await;
    let env = call_string(
        &sandbox.handle,
        "exorun:test/sandbox",
        "get-env",
        &[Val::String("GREETING".into())],
    )
    .await;
    assert_eq!(
        env,
        Val::Option(Some(Box::new(Val::String("hi there".into()))))
    );
    let unset = call_string(
        &sandbox.handle,
        "exorun:test/sandbox",
        "get-env",
        &[Val::String("NOPE".into())],
    )
    .await;
    assert_eq!(unset, Val::Option(None));
}

#[test]
fn oversized_log_lines_are_domain_errors() {
    let error = logging::Error::TooLarge {
        field: "message",
        bytes: 20_000,
        max: logging::MESSAGE_BYTES_MAX,
    };
    let domain = Rejection {
        code: logging::CODE_TOO_LARGE,
        message: error.to_string(),
    };
    assert_eq!(
        domain.to_string(),
        "domain error 1101: log message of 20000 bytes exceeds 16384"
    );
}

async fn say(handle: &InstanceHandle, out: &str, err: &str) -> Val {
    let params = [Val::String(out.into()), Val::String(err.into())];
    call_string(handle, "exorun:test/sandbox", "say", &params).await
}

#[tokio::test]
async fn stdout_and_stderr_are_captured_separately_and_bounded() {
    let runtime = Runtime::new().unwrap();
    let capture = Capture::new(16);
    let wasi = Wasi::new().capture_stdio(&capture);
    let handle = instantiate(&runtime, "fs-reader", &[&wasi]).await;
    let said = say(&handle, "to stdout\n", "to stderr\n").await;
    assert_eq!(said, Val::Result(Ok(None)));
    assert_eq!(capture.stdout(), b"to stdout\n");
    assert_eq!(capture.stderr(), b"to stderr\n");
    let overflow = say(&handle, "0123456789", "").await;
    assert_eq!(
        result_text(overflow),
        Err("closed".into()),
        "writing past the bound closes the guest's stream"
    );
    assert_eq!(
        capture.stdout().len(),
        16,
        "filled to the bound, no further"
    );
    assert!(capture.stdout().starts_with(b"to stdout\n"));
}

#[tokio::test]
async fn without_capture_or_inherit_output_is_discarded() {
    let runtime = Runtime::new().unwrap();
    let handle = instantiate(&runtime, "fs-reader", &[&Wasi::new()]).await;
    let said = say(&handle, "nobody hears this", "nor this").await;
    assert_eq!(said, Val::Result(Ok(None)));
}
