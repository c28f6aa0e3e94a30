//! The binder's and the builder's own errors, each produced through the public API.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;

use common::MATH;
use common::add;
use common::build;
use common::counting_peer;
use exorun_bind::binder;
use exorun_bind::builder;
use exorun_bind::builder::InstanceBuilder;
use exorun_bind::builder::Linkable;
use exorun_core::context::Access;
use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::instance;
use exorun_core::ledger;
use exorun_core::registry;
use exorun_core::registry::AppId;
use exorun_core::registry::Runtime;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use exorun_systems::wasi::Wasi;
use wasmtime::component::Linker;

fn consumer_ledger(runtime: &Runtime) -> Arc<ledger::Ledger> {
    runtime.app(add(runtime, "math-consumer")).unwrap().ledger
}

#[tokio::test]
async fn local_links_refuse_what_is_not_imported_mismatched_or_gone() {
    let runtime = Runtime::new().unwrap();
    let ledger = consumer_ledger(&runtime);
    let provider = build(&runtime, "math-provider", Vec::new(), None).await;
    let mut linker: Linker<ExorunCtx> = Linker::new(runtime.engine());

    let stray =
        binder::link_local_interface(&mut linker, &ledger, "exorun:test/x", &provider).await;
    assert!(
        matches!(&stray, Err(binder::Error::NotImported { interface }) if interface == "exorun:test/x"),
        "{stray:?}"
    );

    let misbehave = build(&runtime, "misbehave", Vec::new(), None).await;
    let wrong = binder::link_local_interface(&mut linker, &ledger, MATH, &misbehave).await;
    let Err(binder::Error::Contract {
        interface,
        problems,
    }) = wrong
    else {
        panic!("{wrong:?}")
    };
    assert_eq!(interface, MATH);
    assert_eq!(
        problems,
        [ledger::Error::InterfaceNotFound {
            interface: MATH.into()
        }]
    );

    runtime.remove_instance(provider.id()).unwrap();
    let gone = binder::link_local_interface(&mut linker, &ledger, MATH, &provider).await;
    let Err(binder::Error::Target(instance::Error::NotFound { instance })) = gone else {
        panic!("{gone:?}")
    };
    assert_eq!(instance, provider.id());
}

#[tokio::test]
async fn a_second_definition_without_shadowing_is_refused_by_name() {
    let runtime = Runtime::new().unwrap();
    let ledger = consumer_ledger(&runtime);
    let (client, counting, _far) = counting_peer();
    let mut linker: Linker<ExorunCtx> = Linker::new(runtime.engine());
    binder::link_remote_interface(&mut linker, &ledger, MATH, &client, "math").unwrap();
    let again = binder::link_remote_interface(&mut linker, &ledger, MATH, &client, "math");
    let Err(binder::Error::Define {
        interface,
        function,
        ..
    }) = again
    else {
        panic!("{again:?}")
    };
    assert_eq!((interface.as_str(), function.as_str()), (MATH, "add"));
    assert_eq!(counting.sent(), 0, "linking sends nothing");
}

#[tokio::test]
async fn a_named_link_to_an_unknown_app_is_a_registry_error() {
    let runtime = Runtime::new().unwrap();
    let ledger = consumer_ledger(&runtime);
    let mut linker: Linker<ExorunCtx> = Linker::new(runtime.engine());
    let unknown = AppId(u64::MAX);
    let linked =
        binder::link_named_interface(&mut linker, &ledger, MATH, &runtime, unknown, "math");
    assert!(
        matches!(
            linked,
            Err(binder::Error::Registry(registry::Error::NotFound { .. }))
        ),
        "{linked:?}"
    );
    let builder = InstanceBuilder::new(&runtime, unknown);
    assert!(
        matches!(
            builder,
            Err(builder::Error::Registry(registry::Error::NotFound { .. }))
        ),
        "an unknown app"
    );
}

#[tokio::test]
async fn a_system_that_cannot_configure_fails_the_link_with_its_cause() {
    let runtime = Runtime::new().unwrap();
    let missing = std::env::temp_dir().join(format!("exorun-no-such-dir-{}", std::process::id()));
    let wasi = Wasi::new().preopen(&missing, "/data", Access::ReadOnly);
    let mut linker: Linker<ExorunCtx> = Linker::new(runtime.engine());
    let mut context = ContextBuilder::new();
    let linked = binder::link_system(&mut linker, &mut context, &wasi);
    assert!(
        matches!(
            &linked,
            Err(binder::Error::System(system::Error::Context(_)))
        ),
        "{linked:?}"
    );

    // Through the builder the contract holds, so the failure comes from linking, named by app.
    let wasi: Arc<dyn SystemComponent> = Arc::new(wasi);
    let reader = InstanceBuilder::new(&runtime, add(&runtime, "fs-reader"))
        .unwrap()
        .system(&wasi);
    assert_eq!(reader.check(), []);
    let error = reader.instantiate().await.unwrap_err();
    let builder::Error::Link { app, source } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(app, "fs-reader");
    assert!(
        matches!(**source, binder::Error::System(system::Error::Context(_))),
        "{source:?}"
    );
}

#[tokio::test]
async fn a_local_target_removed_after_the_check_fails_the_link() {
    let runtime = Runtime::new().unwrap();
    let provider = build(&runtime, "math-provider", Vec::new(), None).await;
    let consumer = InstanceBuilder::new(&runtime, add(&runtime, "math-consumer"))
        .unwrap()
        .link(MATH, Linkable::Local(provider.clone()));
    assert_eq!(consumer.check(), [], "the contract holds");
    runtime.remove_instance(provider.id()).unwrap();
    let error = consumer.instantiate().await.unwrap_err();
    let builder::Error::Link { source, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(
        matches!(
            **source,
            binder::Error::Target(instance::Error::NotFound { .. })
        ),
        "{source:?}"
    );
}
