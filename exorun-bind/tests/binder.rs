//! The builder's and the binder's own errors, each produced through the public API.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;

use common::MATH;
use common::add;
use common::build;
use exorun_bind::builder;
use exorun_bind::builder::InstanceBuilder;
use exorun_bind::builder::Linkable;
use exorun_bind::link;
use exorun_core::app::AppId;
use exorun_core::instance;
use exorun_core::runtime;
use exorun_core::runtime::Runtime;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use exorun_systems::wasi::Access;
use exorun_systems::wasi::Wasi;

#[tokio::test]
async fn a_system_linked_to_an_interface_it_lacks_is_not_provided() {
    let runtime = Runtime::new().unwrap();
    let wasi: Arc<dyn SystemComponent> = Arc::new(Wasi::new());
    let error = InstanceBuilder::new(&runtime, add(&runtime, "math-consumer"))
        .unwrap()
        .link(MATH, Linkable::System(wasi))
        .checked()
        .err()
        .unwrap();
    let builder::Error::Refused { problems, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        problems,
        &[builder::Problem::NotProvided {
            interface: MATH.into()
        }]
    );
}

#[tokio::test]
async fn a_named_link_to_an_unknown_app_is_an_unknown_provider() {
    let runtime = Runtime::new().unwrap();
    let unknown = AppId(u64::MAX);
    let consumer = InstanceBuilder::new(&runtime, add(&runtime, "math-consumer"))
        .unwrap()
        .link(
            MATH,
            Linkable::Named {
                app: unknown,
                name: "math".into(),
            },
        );
    let error = consumer.checked().err().unwrap();
    let builder::Error::Refused { problems, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        problems,
        &[builder::Problem::UnknownProvider {
            interface: MATH.into(),
            provider: format!("app #{}", u64::MAX),
        }]
    );
    let builder = InstanceBuilder::new(&runtime, unknown);
    assert!(
        matches!(
            builder,
            Err(builder::Error::Registry(runtime::Error::NotFound { .. }))
        ),
        "an unknown app"
    );
}

#[tokio::test]
async fn a_system_that_cannot_configure_fails_the_link_with_its_cause() {
    let runtime = Runtime::new().unwrap();
    let missing = std::env::temp_dir().join(format!("exorun-no-such-dir-{}", std::process::id()));
    let wasi: Arc<dyn SystemComponent> =
        Arc::new(Wasi::new().preopen(&missing, "/data", Access::ReadOnly));
    // The contract holds, so the failure comes from linking, named by app.
    let reader = InstanceBuilder::new(&runtime, add(&runtime, "fs-reader"))
        .unwrap()
        .system(&wasi);
    let error = reader.checked().unwrap().instantiate().await.unwrap_err();
    let builder::Error::Link { app, source } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(app, "fs-reader");
    let link::Error::System(system::Error::Configure { system, source }) = &**source else {
        panic!("{source:?}")
    };
    assert_eq!(system, "wasi");
    let message = source.to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn a_local_target_removed_after_the_check_fails_the_link() {
    let runtime = Runtime::new().unwrap();
    let provider = build(&runtime, "math-provider", Vec::new(), None).await;
    let consumer = InstanceBuilder::new(&runtime, add(&runtime, "math-consumer"))
        .unwrap()
        .link(MATH, Linkable::Local(provider.clone()));
    let checked = consumer.checked().unwrap();
    runtime.remove_instance(provider.id()).unwrap();
    let error = checked.instantiate().await.unwrap_err();
    let builder::Error::Link { source, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(
        matches!(
            **source,
            link::Error::Target(instance::Error::NotFound { .. })
        ),
        "{source:?}"
    );
}
