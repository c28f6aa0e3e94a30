//! Remote links: an import answered by an instance on another runtime, over neorpc.
//!
//! Each call writes its arguments once, straight into a call frame (`frame::CallWriter` and
//! `codec::encode_into`), with the caller's call chain converted to the wire's hops, hands the
//! frame to the shared `client::Caller` (one connection's `Client`, or a `peer::Peer` that
//! reconnects and fails over), and decodes the reply's result slab into wasmtime's result slots
//! against the import's own types. A failure is raised as the `client::Error` itself (with the
//! target and method as context), so a serving runtime that runs this guest passes a remote
//! `Failure` on to its own caller unchanged (`server::failure`), and an embedder reads it with
//! `instance::Raised::downcast_ref::<client::Error>()`. One debug line per call (target, method,
//! duration) goes to `exorun_bind::remote`.

use std::sync::Arc;

use exorun_core::chain;
use exorun_core::ledger::Signature;
use exorun_transport::client;
use exorun_transport::client::Caller;
use exorun_transport::transport::BoxFuture;
use neorpc::codec;
use neorpc::frame;
use wasmtime::component::Type;
use wasmtime::component::Val;

use crate::binder::Forward;

/// Why a remote call could not be made or its reply not read (raised with `client::Error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The arguments could not be encoded (a value the wire cannot carry, or past a limit).
    #[error("cannot encode the arguments: {0}")]
    Arguments(codec::Error),
    /// The call frame could not be built (too large, or a call chain too long).
    #[error("cannot build the call frame: {0}")]
    Frame(frame::Error),
    /// The reply's results do not decode against the import's result types.
    #[error("the reply's results do not match the import: {0}")]
    Results(codec::Error),
}

/// The wire form of a call chain.
pub(crate) fn to_wire(chain: &[chain::Hop]) -> Vec<frame::Hop> {
    let hops = chain.iter().map(|hop| frame::Hop {
        runtime: hop.runtime,
        instance: hop.instance,
    });
    hops.collect()
}

/// A call chain received from the wire.
pub(crate) fn from_wire(chain: &[frame::Hop]) -> Vec<chain::Hop> {
    let hops = chain.iter().map(|hop| chain::Hop {
        runtime: hop.runtime,
        instance: hop.instance,
    });
    hops.collect()
}

/// One remotely linked function: where calls go and how results decode.
pub(crate) struct Function {
    client: Arc<dyn Caller>,
    target: String,
    method: String,
    results: Vec<Type>,
}

impl Function {
    pub(crate) fn new(
        client: &Arc<dyn Caller>,
        target: &str,
        interface: &str,
        function: &str,
        signature: &Signature,
    ) -> Self {
        Self {
            client: Arc::clone(client),
            target: target.to_owned(),
            method: format!("{interface}#{function}"),
            results: signature.results.clone(),
        }
    }

    /// One call: encode, send, wait, decode.
    async fn call(&self, params: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
        let limits = codec::Limits::default();
        let frame = self
            .frame(params, &limits)
            .map_err(|error| self.raise(error))?;
        let called = self.client.call_within(frame, self.client.timeout()).await;
        let slab = called.map_err(|error| self.raise(error))?;
        let decoded = codec::decode_into(&slab, &self.results, results, &limits);
        decoded.map_err(|error| self.raise(Error::Results(error)))
    }

    fn frame(&self, params: &[Val], limits: &codec::Limits) -> Result<frame::OutboundCall, Error> {
        let mut writer =
            frame::CallWriter::new(&self.target, &self.method).map_err(Error::Frame)?;
        codec::encode_into(writer.args(), params, limits).map_err(Error::Arguments)?;
        let chain = to_wire(&chain::current());
        writer.finish(&chain).map_err(Error::Frame)
    }

    /// The error a failed call raises: the error itself, with where the call went as context.
    fn raise<E>(&self, error: E) -> wasmtime::Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let (target, method) = (&self.target, &self.method);
        wasmtime::Error::new(error).context(format!("remote call {method} on `{target}`"))
    }
}

impl Forward for Function {
    fn forward<'a>(
        &'a self,
        params: &'a [Val],
        results: &'a mut [Val],
    ) -> BoxFuture<'a, wasmtime::Result<()>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let outcome = self.call(params, results).await;
            let (target, method) = (self.target.as_str(), self.method.as_str());
            let duration_us = started.elapsed().as_micros();
            let ok = outcome.is_ok();
            tracing::debug!(target, method, duration_us, ok, "remote call");
            outcome
        })
    }
}

/// The client error a remote link raised, if `raised` is one.
pub fn client_error(raised: &exorun_core::instance::Raised) -> Option<&client::Error> {
    raised.downcast_ref::<client::Error>()
}
