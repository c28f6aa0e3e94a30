//! Runs a composition from a manifest inside this process, calls an export of it and stops it:
//! what `exorun run` does, embedded. Needs the built guest apps (`bash scripts/build_apps.sh`).
//!
//!     cargo run -p exorun-host --example embed

use std::collections::BTreeMap;
use std::path::Path;

use exorun_host::Composition;
use exorun_host::manifest;
use exorun_testkit::fixtures;
use wasmtime::component::Val;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let provider = fixtures::path("math-provider")?;
    let consumer = fixtures::path("math-consumer")?;
    let text = format!(
        r#"
[apps]
provider = "{}"
consumer = "{}"
[instances.math]
app = "provider"
[instances.calc]
app = "consumer"
links = {{ "exorun:test/math" = {{ local = "math" }} }}
"#,
        provider.display(),
        consumer.display()
    );
    let manifest = manifest::parse(Path::new("embed.toml"), &text, &BTreeMap::new())?;
    let composition = Composition::start(manifest).await?;
    let mut results = [Val::Bool(false)];
    let calc = &composition.instances["calc"];
    calc.call("exorun:test/runnable", "run", &[], &mut results)
        .await?;
    println!("calc: {results:?}");
    for handle in composition.instances.values() {
        composition.runtime.remove_instance(handle.id())?;
        handle.retired().await;
    }
    println!(
        "stopped: {} instances left",
        composition.runtime.instances().len()
    );
    Ok(())
}
