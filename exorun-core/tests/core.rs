//! Boundary tests of exorun-core: instance handles, limits, re-entrancy and the registry,
//! against the built guest apps (the ledger: ledger.rs).

#![allow(clippy::unwrap_used)]
// Test helpers: a failed unwrap is a failed test.
// Concurrency tests nest spawn -> exec -> async by construction; flattening them hides the test.
#![allow(clippy::excessive_nesting)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::limits::Limits;
use exorun_core::runtime;
use exorun_core::runtime::Runtime;
use exorun_testkit::fixtures;
use wasmtime::component::Linker;
use wasmtime::component::Val;

fn add_app(runtime: &Runtime, app: &str) -> exorun_core::app::AppId {
    runtime
        .add_app_file(app, &fixtures::path(app).unwrap_or_else(|e| panic!("{e}")))
        .unwrap()
}

async fn plain(runtime: &Runtime, app: &str, limits: Limits) -> InstanceHandle {
    let id = add_app(runtime, app);
    let linker = Linker::new(runtime.engine());
    let prepared = runtime.prepare(id, &linker).unwrap();
    runtime
        .instantiate_prepared(&prepared, ContextBuilder::new(), limits, None)
        .await
        .unwrap()
}

/// Instantiates `app` with `linker`, an empty context and default limits.
async fn start(
    runtime: &Runtime,
    app: exorun_core::app::AppId,
    linker: &Linker<ExorunCtx>,
    name: Option<&str>,
) -> Result<InstanceHandle, runtime::Error> {
    let prepared = runtime.prepare(app, linker)?;
    runtime
        .instantiate_prepared(&prepared, ContextBuilder::new(), Limits::default(), name)
        .await
}

/// A relay whose `math` import is the host function `add`, as the test writes it.
async fn relay_over<F, Fut>(runtime: &Runtime, add: F) -> InstanceHandle
where
    F: Fn(u32, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = wasmtime::Result<u32>> + Send + 'static,
{
    let add = Arc::new(add);
    let mut linker: Linker<ExorunCtx> = Linker::new(runtime.engine());
    let mut math = linker.instance("exorun:test/math").unwrap();
    math.func_new_async("add", move |_store, _ty, params, results| {
        let [Val::U32(a), Val::U32(b)] = params else {
            panic!("add got {params:?}")
        };
        let sum = add(*a, *b);
        Box::new(async move {
            results[0] = Val::U32(sum.await?);
            Ok(())
        })
    })
    .unwrap();
    let app = add_app(runtime, "relay");
    start(runtime, app, &linker, None).await.unwrap()
}

async fn relay_add(handle: &InstanceHandle, a: u32, b: u32) -> Result<Val, instance::Error> {
    let mut results = [Val::Bool(false)];
    let params = [Val::U32(a), Val::U32(b)];
    handle
        .call("exorun:test/math", "add", &params, &mut results)
        .await?;
    Ok(results[0].clone())
}

async fn echo(handle: &InstanceHandle, n: u32) -> Result<Val, instance::Error> {
    let mut results = [Val::Bool(false)];
    handle
        .call(
            "exorun:test/misbehave",
            "echo",
            &[Val::U32(n)],
            &mut results,
        )
        .await?;
    Ok(results[0].clone())
}

async fn misbehave(handle: &InstanceHandle, function: &str) -> instance::Error {
    let mut results: Vec<Val> = if function == "hog" {
        vec![Val::U32(0)]
    } else {
        Vec::new()
    };
    handle
        .call("exorun:test/misbehave", function, &[], &mut results)
        .await
        .unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_one_instance_never_overlap() {
    let runtime = Runtime::new().unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (counting_inside, counting_most) = (Arc::clone(&inside), Arc::clone(&most));
    let relay = relay_over(&runtime, move |a, b| {
        let (inside, most) = (Arc::clone(&counting_inside), Arc::clone(&counting_most));
        async move {
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            // Gives every other caller the chance to get in, if the lock let it.
            tokio::task::yield_now().await;
            inside.fetch_sub(1, Ordering::SeqCst);
            Ok(a + b)
        }
    })
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let relay = relay.clone();
        tasks.spawn(async move { relay_add(&relay, i, 1).await });
    }
    let mut sums = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        let Val::U32(sum) = done.unwrap().unwrap() else {
            panic!("not a u32")
        };
        sums.insert(sum);
    }
    assert_eq!(sums, (1..=32).collect::<BTreeSet<u32>>());
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "two calls ran inside at once"
    );
}

#[tokio::test]
async fn a_call_that_panics_or_is_dropped_mid_way_releases_the_lock_and_fails_the_instance() {
    let runtime = Runtime::new().unwrap();
    let panicking = relay_over(&runtime, |_, _| async { panic!("host function panicked") }).await;
    let joined = tokio::spawn({
        let relay = panicking.clone();
        async move { relay_add(&relay, 1, 2).await }
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    let after = relay_add(&panicking, 1, 2).await.unwrap_err();
    assert_eq!(
        after,
        instance::Error::Failed {
            instance: panicking.id(),
            reason: "a call was cancelled or panicked before it returned".into()
        }
    );

    let entered = Arc::new(tokio::sync::Notify::new());
    let signal = Arc::clone(&entered);
    let stuck = relay_over(&runtime, move |_, _| {
        let signal = Arc::clone(&signal);
        async move {
            signal.notify_one();
            std::future::pending::<()>().await;
            Ok(0)
        }
    })
    .await;
    let call = tokio::spawn({
        let relay = stuck.clone();
        async move { relay_add(&relay, 1, 2).await }
    });
    entered.notified().await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    let after = relay_add(&stuck, 1, 2).await.unwrap_err();
    assert!(
        matches!(after, instance::Error::Failed { instance, .. } if instance == stuck.id()),
        "{after:?}"
    );
}

#[tokio::test]
async fn an_error_a_host_function_raises_is_kept_as_raised() {
    #[derive(Debug, thiserror::Error, PartialEq)]
    #[error("the link is down: {0}")]
    struct LinkDown(u32);
    let runtime = Runtime::new().unwrap();
    let relay = relay_over(&runtime, |_, _| async {
        Err(wasmtime::Error::new(LinkDown(7)).context("calling math"))
    })
    .await;
    let error = relay_add(&relay, 1, 2).await.unwrap_err();
    let instance::Error::Raised(raised) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(raised.downcast_ref::<LinkDown>(), Some(&LinkDown(7)));
    assert!(
        raised
            .to_string()
            .starts_with("calling math: the link is down: 7"),
        "{raised}"
    );
    let rejecting = relay_over(&runtime, |_, _| async {
        Err(wasmtime::Error::new(exorun_core::system::Rejection {
            code: 9,
            message: "no".into(),
        }))
    })
    .await;
    assert_eq!(
        relay_add(&rejecting, 1, 2).await.unwrap_err(),
        instance::Error::Rejected(exorun_core::system::Rejection {
            code: 9,
            message: "no".into()
        })
    );
}

#[tokio::test]
async fn a_trap_is_reported_and_marks_the_instance_failed() {
    let runtime = Runtime::new().unwrap();
    let handle = plain(&runtime, "misbehave", Limits::default()).await;
    let error = misbehave(&handle, "trap").await;
    let instance::Error::Trapped { message } = &error else {
        panic!("{error:?}")
    };
    assert!(message.contains("unreachable"), "{message}");
    assert!(handle.failure().await.is_some());
    let later = echo(&handle, 1).await.unwrap_err();
    assert!(
        matches!(later, instance::Error::Failed { instance, .. } if instance == handle.id()),
        "{later:?}"
    );
}

#[tokio::test]
async fn spinning_runs_out_of_fuel_and_others_keep_working() {
    let runtime = Runtime::new().unwrap();
    let limits = Limits {
        fuel_per_call: 20_000_000,
        ..Limits::default()
    };
    let spinner = plain(&runtime, "misbehave", limits).await;
    let neighbour = plain(&runtime, "misbehave", Limits::default()).await;
    assert_eq!(
        misbehave(&spinner, "spin").await,
        instance::Error::OutOfFuel
    );
    assert_eq!(echo(&neighbour, 5).await.unwrap(), Val::U32(5));
}

#[tokio::test]
async fn the_memory_hog_stops_at_its_limit() {
    let runtime = Runtime::new().unwrap();
    let limits = Limits {
        memory_bytes_max: 16 * 1024 * 1024,
        ..Limits::default()
    };
    let hog = plain(&runtime, "misbehave", limits).await;
    let error = misbehave(&hog, "hog").await;
    let instance::Error::OutOfMemory { message } = &error else {
        panic!("{error:?}")
    };
    assert!(
        message.contains("exceeds the limit of 16777216"),
        "{message}"
    );
    let neighbour = plain(&runtime, "misbehave", Limits::default()).await;
    assert_eq!(echo(&neighbour, 9).await.unwrap(), Val::U32(9));
}

#[tokio::test]
async fn missing_export_and_removed_instance_are_specific() {
    let runtime = Runtime::new().unwrap();
    let handle = plain(&runtime, "misbehave", Limits::default()).await;
    let mut results = [];
    let missing = handle
        .call("exorun:test/misbehave", "nope", &[], &mut results)
        .await
        .unwrap_err();
    assert_eq!(
        missing,
        instance::Error::ExportNotFound {
            interface: "exorun:test/misbehave".into(),
            function: "nope".into()
        }
    );
    runtime.remove_instance(handle.id()).unwrap();
    assert_eq!(
        echo(&handle, 1).await.unwrap_err(),
        instance::Error::NotFound {
            instance: handle.id()
        }
    );
    assert!(matches!(
        runtime.instance(handle.id()),
        Err(runtime::Error::NotFound { .. })
    ));
}

/// pong's `ping` import calls whatever instance is put in `slot` later (a late-bound link).
fn pong_linker(runtime: &Runtime, slot: Arc<OnceLock<InstanceHandle>>) -> Linker<ExorunCtx> {
    let mut linker: Linker<ExorunCtx> = Linker::new(runtime.engine());
    let mut api = linker.instance("exorun:test/ping-api").unwrap();
    api.func_new_async("ping", move |_store, _ty, params, results| {
        let target = slot.get().cloned();
        Box::new(async move {
            let target = target.ok_or_else(|| wasmtime::format_err!("ping not linked yet"))?;
            let called = target
                .call("exorun:test/ping-api", "ping", params, results)
                .await;
            called.map_err(wasmtime::Error::new)
        })
    })
    .unwrap();
    linker
}

/// Links ping -> pong -> ping: pong's `ping` import calls the ping instance, set after both exist.
#[tokio::test]
async fn reentrancy_is_reported_instead_of_deadlocking() {
    let runtime = Runtime::new().unwrap();
    let ping_slot: Arc<OnceLock<InstanceHandle>> = Arc::new(OnceLock::new());
    let pong_linker = pong_linker(&runtime, Arc::clone(&ping_slot));
    let pong_app = add_app(&runtime, "pong");
    let pong = start(&runtime, pong_app, &pong_linker, Some("pong"))
        .await
        .unwrap();
    let mut ping_linker: Linker<ExorunCtx> = Linker::new(runtime.engine());
    let target = pong.clone();
    ping_linker
        .instance("exorun:test/pong-api")
        .unwrap()
        .func_new_async("pong", move |_store, _ty, params, results| {
            let target = target.clone();
            Box::new(async move {
                target
                    .call("exorun:test/pong-api", "pong", params, results)
                    .await
                    .map_err(wasmtime::Error::new)
            })
        })
        .unwrap();
    let ping_app = add_app(&runtime, "ping");
    let ping = start(&runtime, ping_app, &ping_linker, Some("ping"))
        .await
        .unwrap();
    ping_slot.set(ping.clone()).unwrap();
    let mut results = [Val::U32(0)];
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        ping.call("exorun:test/ping-api", "ping", &[Val::U32(3)], &mut results),
    )
    .await;
    let error = outcome
        .expect("a re-entrant call must not hang")
        .unwrap_err();
    assert_eq!(
        error,
        instance::Error::Reentrant {
            instance: ping.id()
        }
    );
    // The re-entrant call trapped inside pong, so pong was unwound and is marked failed too.
    assert!(pong.failure().await.is_some());
}

#[test]
fn concurrent_registration_has_no_id_collisions() {
    let runtime = Runtime::new().unwrap();
    let ids = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let (runtime, ids) = (&runtime, &ids);
            scope.spawn(move || {
                let tokio = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                tokio.block_on(async {
                    for round in 0..4 {
                        let app = runtime
                            .add_app(&format!("t{thread}-{round}"), b"(component)")
                            .unwrap();
                        let linker = Linker::new(runtime.engine());
                        let name = format!("i{thread}-{round}");
                        let instance = start(runtime, app, &linker, Some(&name)).await.unwrap();
                        ids.lock().unwrap().extend([app.0, instance.id().0]);
                        assert_eq!(runtime.app(app).unwrap().id, app);
                        assert_eq!(runtime.instance_named(&name).unwrap().id(), instance.id());
                    }
                });
            });
        }
    });
    let ids = ids.into_inner().unwrap();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!((ids.len(), unique.len()), (64, 64));
    assert_eq!(runtime.counts(), (32, 32));
    assert!(matches!(
        runtime.app(exorun_core::app::AppId(999_999)),
        Err(runtime::Error::NotFound { .. })
    ));
    assert!(matches!(
        runtime.instance_named("nobody"),
        Err(runtime::Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn invalid_bytes_and_taken_names_are_refused() {
    let runtime = Runtime::new().unwrap();
    let error = runtime.add_app("junk", b"\0asm not really").unwrap_err();
    assert!(
        matches!(error, runtime::Error::InvalidComponent { ref app, .. } if app == "junk"),
        "{error:?}"
    );
    let app = runtime.add_app("empty", b"(component)").unwrap();
    let linker = Linker::new(runtime.engine());
    start(&runtime, app, &linker, Some("same")).await.unwrap();
    let taken = start(&runtime, app, &linker, Some("same"))
        .await
        .unwrap_err();
    assert!(matches!(taken, runtime::Error::NameTaken { ref name } if name == "same"));
    let needs_math = add_app(&runtime, "math-consumer");
    let unlinked = start(&runtime, needs_math, &linker, None)
        .await
        .unwrap_err();
    assert!(
        matches!(unlinked, runtime::Error::Instantiate { .. }),
        "{unlinked:?}"
    );
}

#[tokio::test]
async fn one_prepared_app_restarts_a_failed_instance() {
    let runtime = Runtime::new().unwrap();
    let app = add_app(&runtime, "misbehave");
    let linker = Linker::new(runtime.engine());
    let prepared = runtime.prepare(app, &linker).unwrap();
    assert_eq!(prepared.app().id, app);
    let first = runtime
        .instantiate_prepared(&prepared, ContextBuilder::new(), Limits::default(), None)
        .await
        .unwrap();
    misbehave(&first, "trap").await;
    assert!(matches!(
        echo(&first, 1).await,
        Err(instance::Error::Failed { .. })
    ));
    let second = runtime
        .instantiate_prepared(&prepared, ContextBuilder::new(), Limits::default(), None)
        .await
        .unwrap();
    assert_ne!(first.id(), second.id());
    assert_eq!(echo(&second, 7).await.unwrap(), Val::U32(7));
    let needs_math = add_app(&runtime, "math-consumer");
    let unlinked = runtime.prepare(needs_math, &linker).err().unwrap();
    assert!(
        matches!(&unlinked, runtime::Error::Instantiate { app, .. } if app == "math-consumer"),
        "{unlinked:?}"
    );
}

#[test]
fn component_files_are_read_only_from_regular_files_within_the_limit() {
    let app = fixtures::path("math-provider").unwrap();
    let size = std::fs::metadata(&app).unwrap().len();
    assert_eq!(
        runtime::read_component(&app, size).unwrap().len(),
        usize::try_from(size).unwrap()
    );
    assert!(matches!(
        runtime::read_component(&app, size - 1),
        Err(runtime::Error::TooLarge { file_bytes, max, .. }) if file_bytes == size && max == size - 1
    ));
    for not_a_file in ["/dev/zero", "/tmp"] {
        let refused = runtime::read_component(std::path::Path::new(not_a_file), u64::MAX);
        assert!(
            matches!(&refused, Err(runtime::Error::NotAFile { path }) if path == not_a_file),
            "{refused:?}"
        );
    }
    let runtime = Runtime::new().unwrap();
    let refused = runtime.add_app_file("zero", std::path::Path::new("/dev/zero"));
    assert!(matches!(refused, Err(runtime::Error::NotAFile { .. })));
}

/// A store's host resources are bounded: the push past `HOST_RESOURCES_MAX` is refused (the
/// host function asking would trap its guest), and a dropped one makes room again.
#[test]
fn a_store_holds_at_most_its_host_resources() {
    let mut ctx = ContextBuilder::new().build(&Limits::default());
    let table = ctx.table();
    let mut last = None;
    for n in 0..exorun_core::limits::HOST_RESOURCES_MAX {
        last = Some(table.push(n).unwrap());
    }
    assert!(table.push(0_usize).is_err(), "one past the bound");
    table.delete(last.unwrap()).unwrap();
    assert!(table.push(0_usize).is_ok(), "room again after a drop");
}
