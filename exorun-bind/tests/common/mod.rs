//! Helpers shared by the exorun-bind suites: runtimes with apps, peers over memory and sockets,
//! and a transport that counts what it is asked to send.

#![allow(
    dead_code,
    reason = "each suite uses a different subset of the helpers"
)]

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use exorun_bind::builder::InstanceBuilder;
use exorun_bind::builder::Linkable;
use exorun_bind::serve::Exports;
use exorun_common::BoxFuture;
use exorun_core::app::AppId;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::runtime::Runtime;
use exorun_testkit::fixtures;
use exorun_transport::address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::connection;
use exorun_transport::dispatch;
use exorun_transport::memory;
use exorun_transport::net;
use exorun_transport::server;
use exorun_transport::transport;
use exorun_transport::transport::Transport;
use neorpc::failure::Failure;
use wasmtime::component::Val;

pub(crate) const MATH: &str = "exorun:test/math";
pub(crate) const RUNNABLE: &str = "exorun:test/runnable";

pub(crate) fn add(runtime: &Runtime, app: &str) -> AppId {
    let path = fixtures::path(app).unwrap_or_else(|e| panic!("{e}"));
    runtime.add_app_file(app, &path).unwrap()
}

/// Calls `exorun:test/runnable#run`.
pub(crate) async fn run(handle: &InstanceHandle) -> Result<String, instance::Error> {
    let mut results = [Val::Bool(false)];
    handle.call(RUNNABLE, "run", &[], &mut results).await?;
    let [Val::String(text)] = results else {
        panic!("run returned {results:?}")
    };
    Ok(text)
}

/// Builds an instance of `app` with `links` and an optional name.
pub(crate) async fn build(
    runtime: &Arc<Runtime>,
    app: &str,
    links: Vec<(&str, Linkable)>,
    name: Option<&str>,
) -> InstanceHandle {
    let mut builder = InstanceBuilder::new(runtime, add(runtime, app)).unwrap();
    for (interface, linkable) in links {
        builder = builder.link(interface, linkable);
    }
    if let Some(name) = name {
        builder = builder.name(name);
    }
    builder.instantiate().await.unwrap()
}

/// A runtime hosting math-provider as `math`, exported.
pub(crate) async fn math_host() -> Arc<Exports> {
    let runtime = Runtime::new().unwrap();
    build(&runtime, "math-provider", Vec::new(), Some("math")).await;
    let exports = Exports::new(runtime);
    exports.export("math").unwrap();
    exports
}

/// A client whose calls `exports` serves over an in-memory pair.
pub(crate) fn memory_peer(exports: &Arc<Exports>) -> Arc<Client> {
    let (near, far) = memory::pair(memory::CAPACITY_DEFAULT);
    let dispatcher: Arc<dyn dispatch::Dispatcher> = exports.clone();
    tokio::spawn(connection::serve(
        Arc::new(far),
        dispatcher,
        connection::Config::default(),
    ));
    Arc::new(Client::new(Arc::new(near), client::Config::default()))
}

/// A server for `exports` on `address` (port 0 / a fresh path), its real address, and the
/// sender that stops it.
pub(crate) async fn socket_server(
    exports: &Arc<Exports>,
    address: &str,
) -> (
    address::Address,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<server::Stopped>,
) {
    socket_server_with(exports, address, server::Config::default()).await
}

/// `socket_server` with its own limits.
pub(crate) async fn socket_server_with(
    exports: &Arc<Exports>,
    address: &str,
    config: server::Config,
) -> (
    address::Address,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<server::Stopped>,
) {
    let listener = net::Listener::bind(&address::Address::parse(address).unwrap())
        .await
        .unwrap();
    let bound = listener.local_address().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopping = async move {
        let _ = stopped.await;
    };
    let dispatcher: Arc<dyn dispatch::Dispatcher> = exports.clone();
    let server = server::Server::new(dispatcher, config)
        .listen(listener)
        .run(stopping);
    (bound, stop, tokio::spawn(server))
}

/// A client connected to `address`.
pub(crate) async fn socket_peer(address: &address::Address) -> Arc<Client> {
    let connection = net::connect(address, transport::MESSAGE_BYTES_MAX)
        .await
        .unwrap();
    Arc::new(Client::new(connection, client::Config::default()))
}

/// Wraps a transport and counts the messages it is asked to send.
pub(crate) struct Counting {
    pub(crate) inner: memory::Transport,
    pub(crate) sent: AtomicUsize,
}

impl Counting {
    pub(crate) fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }
}

impl Transport for Counting {
    fn send(&self, message: Bytes) -> BoxFuture<'_, Result<(), transport::Error>> {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.inner.send(message)
    }

    fn recv(&self) -> BoxFuture<'_, Result<Option<Bytes>, transport::Error>> {
        self.inner.recv()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close()
    }
}

/// A client over a counting transport whose far end is returned unserved.
pub(crate) fn counting_peer() -> (Arc<Client>, Arc<Counting>, memory::Transport) {
    let (near, far) = memory::pair(memory::CAPACITY_DEFAULT);
    let counting = Arc::new(Counting {
        inner: near,
        sent: AtomicUsize::new(0),
    });
    let transport: Arc<dyn Transport> = counting.clone();
    let client = Arc::new(Client::new(transport, client::Config::default()));
    (client, counting, far)
}

/// A raw neorpc call of `method` on `target` with an encoded argument slab.
pub(crate) async fn call_slab(
    client: &Client,
    target: &str,
    method: &str,
    slab: &[u8],
) -> Result<client::Reply, client::Error> {
    let frame = neorpc::frame::encode_call(target, method, slab, &[]).unwrap();
    client.call(frame).await
}

/// The client error a remote link raised into `error`, if it is one.
pub(crate) fn remote_error(error: &instance::Error) -> Option<&client::Error> {
    let instance::Error::Raised(raised) = error else {
        return None;
    };
    exorun_bind::link::remote::client_error(raised)
}

/// Asserts that `error` is what a remote link raised for a call of `method` on `target` that
/// the callee failed: exactly the `expected` failure (the wire's `Failure`, as
/// `remote::Error::Failed` inside `instance::Error::Raised`), with where the call went as
/// context and the reason written once.
pub(crate) fn assert_remote(
    error: &instance::Error,
    target: &str,
    method: &str,
    expected: &Failure,
) {
    let instance::Error::Raised(raised) = error else {
        panic!("{error:?}")
    };
    assert_eq!(
        exorun_bind::link::remote::failure_of(raised),
        Some(expected),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("remote call {method} on `{target}`: {expected}")
    );
}
