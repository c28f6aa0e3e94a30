//! The README's builder example, compiled with the workspace so it stays true: a local link and
//! a shared kv store. Run after `bash scripts/build_apps.sh`:
//! `cargo run -p exorun-bind --example builder`.

use std::sync::Arc;

use exorun_bind::builder::InstanceBuilder;
use exorun_bind::builder::Linkable;
use exorun_core::runtime::Runtime;
use exorun_core::system::SystemComponent;
use exorun_systems::kv;
use exorun_testkit::fixtures;
use wasmtime::component::Val;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::new()?;
    let provider_app = runtime.add_app_file("math-provider", &fixtures::path("math-provider")?)?;
    let provider = InstanceBuilder::new(&runtime, provider_app)?
        .instantiate()
        .await?;

    let consumer_app = runtime.add_app_file("math-consumer", &fixtures::path("math-consumer")?)?;
    let consumer = InstanceBuilder::new(&runtime, consumer_app)?
        .link("exorun:test/math", Linkable::Local(provider)) // or Linkable::Remote { client, target }
        .instantiate() // the ledger checks every import first and lists all problems at once
        .await?;

    let store = kv::Store::new();
    let kv: Arc<dyn SystemComponent> = Arc::new(kv::Kv::new(store.clone()));
    let kv_app = runtime.add_app_file("kv-client", &fixtures::path("kv-client")?)?;
    let kv_client = InstanceBuilder::new(&runtime, kv_app)?
        .system(&kv) // links every import this system provides
        .instantiate()
        .await?;

    for handle in [&consumer, &kv_client] {
        let mut results = [Val::Bool(false)];
        handle
            .call("exorun:test/runnable", "run", &[], &mut results)
            .await?;
        println!("{results:?}");
    }
    println!("the kv store holds {} entry", store.entries().await?);
    Ok(())
}
