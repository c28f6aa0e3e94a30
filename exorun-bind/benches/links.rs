//! What a link costs, every row from one run: time per call of `add`.
//!
//! - `direct`: math-provider's `add` through wasmtime's dynamic API (`Func::call_async` on a
//!   plain store), the baseline a local link is held to.
//! - `handle`: the same call through exorun's `InstanceHandle` (lock, call chain, fuel), which is
//!   exactly what a local link's host function does per call.
//! - `relay->host`: relay's `add` with its `math` import answered by a native host function: one
//!   guest call plus one host call, the floor for any link.
//! - `relay->local`: relay's `add` with `math` linked locally to a math-provider instance.
//! - `relay->tcp`: relay's `add` with `math` linked remotely over TCP loopback to another runtime.
//!
//! Run: `cargo bench -p exorun-bind --bench links`. BENCHMARKS.md records a run.

use std::sync::Arc;
use std::time::Instant;

use exorun_bind::builder::InstanceBuilder;
use exorun_bind::builder::Linkable;
use exorun_bind::serve::Exports;
use exorun_core::context::ExorunCtx;
use exorun_core::instance::InstanceHandle;
use exorun_core::runtime::Runtime;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use exorun_testkit::fixtures;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::net;
use exorun_transport::server;
use exorun_transport::transport;
use wasmtime::component::Linker;
use wasmtime::component::Val;

const MATH: &str = "exorun:test/math";
const CALLS: u32 = 50_000;
const REMOTE_CALLS: u32 = 10_000;

/// `exorun:test/math` answered natively.
struct NativeMath;

impl SystemComponent for NativeMath {
    fn interfaces(&self) -> Vec<String> {
        vec![MATH.to_owned()]
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        let mut math = linker
            .instance(MATH)
            .map_err(|error| system::define_error(MATH, error))?;
        math.func_wrap("add", |_, (a, b): (u32, u32)| Ok((a.wrapping_add(b),)))
            .map_err(|error| system::define_error(MATH, error))
    }

    fn configure(&self, _: &mut exorun_core::context::ContextBuilder) -> Result<(), system::Error> {
        Ok(())
    }
}

/// Nanoseconds per call of the awaited expression `$call`, run `$calls` times after a tenth as
/// many warm-up calls. (A macro, because the direct row's future borrows the store mutably.)
macro_rules! measure {
    ($calls:expr, $call:expr) => {{
        for _ in 0..$calls / 10 {
            $call;
        }
        let started = Instant::now();
        for _ in 0..$calls {
            $call;
        }
        started.elapsed().as_secs_f64() * 1e9 / f64::from($calls)
    }};
}

async fn add_via(handle: &InstanceHandle, results: &mut [Val; 1]) {
    let params = [Val::U32(10), Val::U32(5)];
    handle
        .call(MATH, "add", &params, results)
        .await
        .expect("add");
}

async fn direct(runtime: &Arc<Runtime>) -> f64 {
    let path = fixtures::path("math-provider").expect("fixtures");
    let component =
        wasmtime::component::Component::from_file(runtime.engine(), path).expect("component");
    let linker: Linker<()> = Linker::new(runtime.engine());
    let mut store = wasmtime::Store::new(runtime.engine(), ());
    store.set_fuel(u64::MAX).expect("fuel");
    let instance = linker
        .instantiate_async(&mut store, &component)
        .await
        .expect("instance");
    let math = instance
        .get_export_index(&mut store, None, MATH)
        .expect("math");
    let add = instance
        .get_export_index(&mut store, Some(&math), "add")
        .expect("add");
    let func = instance.get_func(&mut store, add).expect("func");
    let params = [Val::U32(10), Val::U32(5)];
    let mut results = [Val::U32(0)];
    measure!(
        CALLS,
        func.call_async(&mut store, &params, &mut results)
            .await
            .expect("add")
    )
}

async fn instance(runtime: &Arc<Runtime>, app: &str, link: Option<Linkable>) -> InstanceHandle {
    let app = runtime
        .add_app_file(app, &fixtures::path(app).expect("fixtures"))
        .expect("app");
    let mut builder = InstanceBuilder::new(runtime, app).expect("builder");
    if let Some(link) = link {
        builder = builder.link(MATH, link);
    }
    builder.instantiate().await.expect("instance")
}

/// A runtime serving math-provider as `math`.
async fn math_exports() -> Arc<Exports> {
    let host = Runtime::new().expect("runtime");
    let path = fixtures::path("math-provider").expect("fixtures");
    let app = host.add_app_file("math-provider", &path).expect("app");
    InstanceBuilder::new(&host, app)
        .expect("builder")
        .name("math")
        .instantiate()
        .await
        .expect("named provider");
    let exports = Exports::new(Arc::clone(&host));
    exports.export("math").expect("export");
    exports
}

async fn memory_math() -> Arc<Client> {
    let (near, far) = exorun_transport::memory::pair(exorun_transport::memory::CAPACITY_DEFAULT);
    let dispatcher: Arc<dyn exorun_transport::dispatch::Dispatcher> = math_exports().await;
    tokio::spawn(exorun_transport::connection::serve(
        Arc::new(far),
        dispatcher,
        exorun_transport::connection::Config::default(),
    ));
    Arc::new(Client::new(Arc::new(near), client::Config::default()))
}

async fn tcp_math() -> Arc<Client> {
    let exports = math_exports().await;
    let address = exorun_transport::address::Address::parse("tcp://127.0.0.1:0").expect("address");
    let listener = net::Listener::bind(&address).await.expect("bind");
    let bound = listener.local_address().expect("address");
    tokio::spawn(
        server::Server::new(exports, server::Config::default())
            .listen(listener)
            .run(std::future::pending()),
    );
    let connection = net::connect(&bound, transport::MESSAGE_BYTES_MAX)
        .await
        .expect("connect");
    Arc::new(Client::new(connection, client::Config::default()))
}

async fn run() -> Vec<(&'static str, f64)> {
    let runtime = Runtime::new().expect("runtime");
    let mut rows = vec![("direct", direct(&runtime).await)];
    let provider = instance(&runtime, "math-provider", None).await;
    let mut results = [Val::U32(0)];
    rows.push((
        "handle",
        measure!(CALLS, add_via(&provider, &mut results).await),
    ));
    let native: Arc<dyn SystemComponent> = Arc::new(NativeMath);
    let to_host = instance(&runtime, "relay", Some(Linkable::System(native))).await;
    let mut results = [Val::U32(0)];
    rows.push((
        "relay->host",
        measure!(CALLS, add_via(&to_host, &mut results).await),
    ));
    let to_local = instance(&runtime, "relay", Some(Linkable::Local(provider))).await;
    let mut results = [Val::U32(0)];
    rows.push((
        "relay->local",
        measure!(CALLS, add_via(&to_local, &mut results).await),
    ));
    let client = memory_math().await;
    let slab = neorpc::codec::encode(&[Val::U32(10), Val::U32(5)]).expect("slab");
    rows.push((
        "client->memory",
        measure!(REMOTE_CALLS, {
            let frame = neorpc::frame::encode_call("math", "exorun:test/math#add", &slab, &[])
                .expect("frame");
            client.call(frame).await.expect("call").expect("a reply")
        }),
    ));
    let remote = Linkable::Remote {
        channel: memory_math().await,
        target: "math".to_owned(),
    };
    let to_memory = instance(&runtime, "relay", Some(remote)).await;
    let mut results = [Val::U32(0)];
    rows.push((
        "relay->memory",
        measure!(REMOTE_CALLS, add_via(&to_memory, &mut results).await),
    ));
    let remote = Linkable::Remote {
        channel: tcp_math().await,
        target: "math".to_owned(),
    };
    let to_tcp = instance(&runtime, "relay", Some(remote)).await;
    let mut results = [Val::U32(0)];
    rows.push((
        "relay->tcp",
        measure!(REMOTE_CALLS, add_via(&to_tcp, &mut results).await),
    ));
    rows
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    // On a worker thread, like any real caller: `block_on`'s own thread is not a worker, and
    // waking it from a worker costs tens of microseconds per remote call.
    let rows = tokio.block_on(tokio.spawn(run())).expect("bench task");
    let time = |name: &str| {
        rows.iter()
            .find(|(row, _)| *row == name)
            .map_or(f64::NAN, |(_, ns)| *ns)
    };
    println!("{:<14} {:>12}", "row", "ns/call");
    for (name, ns) in &rows {
        println!("{name:<14} {ns:>12.0}");
    }
    println!();
    println!(
        "handle / direct             = {:.2}x  (the local link's per-call path; aim <= 2x)",
        time("handle") / time("direct")
    );
    println!(
        "relay->local / relay->host  = {:.2}x  (a local link against a native host function)",
        time("relay->local") / time("relay->host")
    );
    println!(
        "relay->local - relay->host  = {:.0} ns  (the local link's own cost)",
        time("relay->local") - time("relay->host")
    );
    println!(
        "relay->tcp / relay->local   = {:.2}x  (remote over TCP loopback against local)",
        time("relay->tcp") / time("relay->local")
    );
}
