//! A system component with state of its own per instance, written against exorun-core alone.
//!
//! `PrivateKv` provides `exorun:host/kv` like exorun-systems' `kv`, but each instance gets its
//! own map and a count of its calls: `configure` puts a fresh `Slate` into each store's user
//! data, and the host functions change it through `ExorunCtx::user_mut`. `get` answers with the
//! value and how many calls this instance made, so two kv-client instances each print
//! `KV result: bar (call 2 of this instance)`: neither saw the other's calls.
//!
//! Run: `bash scripts/build_apps.sh`, then `cargo run -p exorun-core --example counting_system`.

use std::collections::BTreeMap;

use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::limits::Limits;
use exorun_core::runtime::Runtime;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use exorun_testkit::fixtures;
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;
use wasmtime::component::Val;

const KV: &str = "exorun:host/kv";

/// One instance's own entries and how many calls it made.
#[derive(Default)]
struct Slate {
    entries: BTreeMap<String, String>,
    calls: u64,
}

struct PrivateKv;

impl SystemComponent for PrivateKv {
    fn interfaces(&self) -> Vec<String> {
        vec![KV.to_owned()]
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        let define = |error: wasmtime::Error| system::define_error(KV, error);
        let mut kv = linker.instance(KV).map_err(define)?;
        kv.func_wrap("get", get).map_err(define)?;
        kv.func_wrap("set", set).map_err(define)
    }

    fn configure(&self, builder: &mut ContextBuilder) -> Result<(), system::Error> {
        builder.insert(Slate::default());
        Ok(())
    }
}

fn slate<'a>(ctx: &'a mut StoreContextMut<'_, ExorunCtx>) -> wasmtime::Result<&'a mut Slate> {
    let slate = ctx.data_mut().user_mut::<Slate>();
    slate.ok_or_else(|| wasmtime::format_err!("PrivateKv was not configured for this store"))
}

fn get(
    mut ctx: StoreContextMut<'_, ExorunCtx>,
    (key,): (String,),
) -> wasmtime::Result<(Option<String>,)> {
    let slate = slate(&mut ctx)?;
    slate.calls += 1;
    let calls = slate.calls;
    let found = slate.entries.get(&key);
    Ok((found.map(|value| format!("{value} (call {calls} of this instance)")),))
}

fn set(
    mut ctx: StoreContextMut<'_, ExorunCtx>,
    (key, value): (String, String),
) -> wasmtime::Result<()> {
    let slate = slate(&mut ctx)?;
    slate.calls += 1;
    slate.entries.insert(key, value);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::new()?;
    let app = runtime.add_app_file("kv-client", &fixtures::path("kv-client")?)?;
    let system = PrivateKv;
    let mut linker = Linker::new(runtime.engine());
    system.install(&mut linker)?;
    let prepared = runtime.prepare(app, &linker)?;
    for name in ["first", "second"] {
        let mut context = ContextBuilder::new();
        system.configure(&mut context)?;
        let handle = runtime
            .instantiate_prepared(&prepared, context, Limits::default(), Some(name))
            .await?;
        let mut results = [Val::Bool(false)];
        handle
            .call("exorun:test/runnable", "run", &[], &mut results)
            .await?;
        println!("{name}: {:?}", results[0]);
    }
    Ok(())
}
