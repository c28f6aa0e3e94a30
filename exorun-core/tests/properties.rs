//! The registry's routing invariant under random operation sequences: every live instance is
//! found by its id and its name, names are unique among live instances, and a removed
//! instance is `NotFound` by id and name while its old handle refuses calls.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::collections::HashMap;

use exorun_core::context::ContextBuilder;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::limits::Limits;
use exorun_core::runtime;
use exorun_core::runtime::Runtime;
use proptest::prelude::*;
use wasmtime::component::Linker;

#[derive(Debug, Clone)]
enum Op {
    /// Instantiate, under one of a few names (collisions are the point) or none.
    Add(Option<u8>),
    /// Remove the n-th live instance (modulo how many there are).
    Remove(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::option::of(0u8..4).prop_map(Op::Add),
        2 => any::<usize>().prop_map(Op::Remove),
    ]
}

/// The model: live instances, in creation order, with their names.
struct Model {
    live: Vec<(InstanceHandle, Option<String>)>,
    removed: Vec<InstanceHandle>,
}

async fn apply(runtime: &Runtime, prepared: &runtime::Prepared, model: &mut Model, op: Op) {
    match op {
        Op::Add(tag) => {
            let name = tag.map(|tag| format!("n{tag}"));
            let taken = name
                .as_ref()
                .is_some_and(|name| model.live.iter().any(|(_, n)| n.as_ref() == Some(name)));
            let made = runtime
                .instantiate_prepared(
                    prepared,
                    ContextBuilder::new(),
                    Limits::default(),
                    name.as_deref(),
                )
                .await;
            match made {
                Ok(handle) => {
                    assert!(!taken, "a taken name was handed out twice");
                    model.live.push((handle, name));
                }
                Err(runtime::Error::NameTaken { name: refused }) => {
                    assert!(taken);
                    assert_eq!(Some(refused), name);
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        Op::Remove(index) => {
            if model.live.is_empty() {
                return;
            }
            let (handle, _) = model.live.remove(index % model.live.len());
            runtime.remove_instance(handle.id()).unwrap();
            model.removed.push(handle);
        }
    }
}

async fn check(runtime: &Runtime, model: &Model) {
    assert_eq!(runtime.counts().1, model.live.len());
    let mut by_name = HashMap::new();
    for (handle, name) in &model.live {
        assert_eq!(runtime.instance(handle.id()).unwrap().id(), handle.id());
        if let Some(name) = name {
            assert_eq!(runtime.instance_named(name).unwrap().id(), handle.id());
            assert!(by_name.insert(name.clone(), handle.id()).is_none());
        }
    }
    for handle in &model.removed {
        assert!(matches!(
            runtime.instance(handle.id()),
            Err(runtime::Error::NotFound { .. })
        ));
        if let Some(name) = handle.name() {
            let found = runtime.instance_named(name).ok().map(|h| h.id());
            assert_eq!(found, by_name.get(name).copied(), "a stale name routes");
        }
        let refused = handle.call("", "anything", &[], &mut []).await.unwrap_err();
        assert_eq!(
            refused,
            instance::Error::NotFound {
                instance: handle.id()
            }
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn registry_routes_every_live_instance_and_nothing_else(
        ops in proptest::collection::vec(op(), 1..24)
    ) {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio.block_on(async {
            let runtime = Runtime::new().unwrap();
            let app = runtime.add_app("empty", b"(component)").unwrap();
            let prepared = runtime.prepare(app, &Linker::new(runtime.engine())).unwrap();
            let mut model = Model { live: Vec::new(), removed: Vec::new() };
            for op in ops {
                apply(&runtime, &prepared, &mut model, op).await;
                check(&runtime, &model).await;
            }
        });
    }
}
