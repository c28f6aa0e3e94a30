//! One served call, resolved and waiting to run: its guard's question, its wait for an
//! instance, its arguments decoded against the export's own types, the call itself, and the
//! reply frame its results are written into.

use std::sync::Arc;

use bytes::Bytes;
use exorun_core::app::Export;
use exorun_core::call;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::resources;
use exorun_core::runtime::Runtime;
use exorun_core::trace;
use exorun_transport::dispatch;
use neorpc::codec;
use neorpc::failure::Failure;
use neorpc::frame;
use wasmtime::component::Val;

use super::failure::bad_arguments;
use super::failure::failure_of;
use super::failure::internal;
use super::guard;
use super::handles::Handles;
use crate::observe;
use crate::observe::Observer;
use crate::wire;

/// A guarded call's question for its guard, asked when the call runs.
pub(super) struct Guarded {
    pub(super) guards: Arc<guard::Guards>,
    pub(super) runtime: Arc<Runtime>,
    pub(super) guard: Arc<str>,
    pub(super) capability: Option<Bytes>,
    pub(super) export: String,
    pub(super) interface: String,
    pub(super) function: String,
}

impl Guarded {
    async fn check(self, origin: &dispatch::Origin, args: u64) -> Result<Vec<String>, Failure> {
        let presented = self.capability.as_ref().map_or(0, Bytes::len);
        let presented = u64::try_from(presented).unwrap_or(u64::MAX);
        let ask = guard::Ask {
            origin,
            weight: args.saturating_add(presented),
            capability: self.capability,
            export: &self.export,
            interface: &self.interface,
            function: &self.function,
        };
        self.guards.check(&self.runtime, &self.guard, &ask).await
    }
}

/// A call resolved to its instance and function, waiting to run.
pub(super) struct Job {
    pub(super) seq: frame::Seq,
    pub(super) handle: InstanceHandle,
    pub(super) export: Export,
    pub(super) args: Bytes,
    pub(super) chain: Vec<call::Hop>,
    pub(super) origin: dispatch::Origin,
    pub(super) handles: Arc<Handles>,
    pub(super) guarded: Option<Guarded>,
    /// Its function's observer (names the export has, so bounded as labels).
    pub(super) observer: Arc<Observer>,
    /// The trace it belongs to and the caller's span, as the frame carried them.
    pub(super) trace: Option<frame::TraceContext>,
}

impl Job {
    /// Asks the export's guard (if it has one), then waits for an instance (its argument slab
    /// counted as waiting bytes) and, if the caller is still there, decodes the arguments, runs
    /// the call inside its context (its chain, its caller's key and party, what the guard
    /// granted, its span) and writes the reply frame; observed as a whole.
    pub(super) async fn run(self) -> dispatch::Outcome {
        let span = wire::served_span(self.trace);
        let observer = Arc::clone(&self.observer);
        // The call's future is boxed once here; what wraps it moves only the box.
        observer.observe(span, Box::pin(self.guarded(span))).await
    }

    /// The call after its guard's check, in its context.
    async fn guarded(mut self, span: trace::Span) -> dispatch::Outcome {
        let principal = self.origin.key().map(ToString::to_string);
        let mut context = call::Context::from(principal.as_deref(), self.origin.party());
        context.chain = std::mem::take(&mut self.chain);
        context.span = Some(span);
        if let Some(guarded) = self.guarded.take() {
            // The guard is asked as the caller: a guard its checks fail backs off for it alone.
            let args = u64::try_from(self.args.len()).unwrap_or(u64::MAX);
            let asked = context.clone().scope(guarded.check(&self.origin, args));
            context.caveats = Arc::from(asked.await?);
        }
        context.scope(self.lease_and_call()).await
    }

    async fn lease_and_call(self) -> dispatch::Outcome {
        let signature = self.export.signature();
        let params = signature.params.iter().map(|(_, ty)| ty);
        if params
            .chain(&signature.results)
            .any(resources::carries_handles)
        {
            return self.carrying().await;
        }
        let weight = u64::try_from(self.args.len()).unwrap_or(u64::MAX);
        let lease = self.handle.lease(weight).await;
        let mut lease = lease.map_err(|error| self.failure(&error))?;
        if self.origin.is_gone() {
            return Err(Failure::Internal {
                message: "the caller went away before the call started".to_owned(),
            });
        }
        let signature = self.export.signature();
        let types = signature.params.iter().map(|(_, ty)| ty);
        let limits = codec::Limits::default();
        let params = codec::decode_args(&self.args, types, &limits).map_err(bad_arguments)?;
        drop(self.args);
        let mut results = vec![Val::Bool(false); signature.results.len()];
        let called = lease.call(&self.export, &params, &mut results).await;
        if let Err(error) = called {
            return Err(failure_of(&self.handle, &error));
        }
        let mut reply = frame::ReplyWriter::new(self.seq).map_err(internal)?;
        codec::encode_into(reply.results(), &results, &limits).map_err(|error| {
            Failure::Internal {
                message: format!("cannot encode the results: {error}"),
            }
        })?;
        reply.finish().map_err(internal)
    }

    /// A call whose arguments or results carry handles: its handle ids checked against what
    /// the connection holds before it waits (they say which replica it runs on), resolved to
    /// handles once it holds that replica, and the handles it returns entered as new ids.
    async fn carrying(self) -> dispatch::Outcome {
        if !self.origin.holds_handles() {
            return Err(Failure::ProtocolViolation {
                message: "resource handles cross only on a connection, not a lattice".to_owned(),
            });
        }
        let signature = self.export.signature();
        let types = signature.params.iter().map(|(_, ty)| ty);
        let limits = codec::Limits::default().with_handles();
        let mut params = codec::decode_args(&self.args, types, &limits).map_err(bad_arguments)?;
        let weight = u64::try_from(self.args.len()).unwrap_or(u64::MAX);
        drop(self.args);
        let connection = self.origin.connection();
        let (handles, instance) = (&self.handles, &self.handle);
        let pin = handles.pin(connection, &mut params, &signature.params, instance)?;
        let leased = match &pin {
            Some(pin) => instance.lease_on(pin.replica, &pin.resource).await,
            None => instance.lease(weight).await,
        };
        let mut lease = leased.map_err(|error| failure_of(instance, &error))?;
        if self.origin.is_gone() {
            return Err(Failure::Internal {
                message: "the caller went away before the call started".to_owned(),
            });
        }
        handles.resolve(
            connection,
            &mut params,
            &signature.params,
            instance.ledger(),
        )?;
        let mut results = vec![Val::Bool(false); signature.results.len()];
        let called = lease.call(&self.export, &params, &mut results).await;
        if let Err(error) = called {
            return Err(failure_of(instance, &error));
        }
        let types = &signature.results;
        let caller = (connection, self.origin.source());
        handles
            .hand_out(caller, &mut results, types, &mut lease, instance)
            .await?;
        drop(lease);
        let mut reply = frame::ReplyWriter::new(self.seq).map_err(internal)?;
        codec::encode_into(reply.results(), &results, &limits).map_err(|error| {
            Failure::Internal {
                message: format!("cannot encode the results: {error}"),
            }
        })?;
        reply.finish().map_err(internal)
    }

    fn failure(&self, error: &instance::Error) -> Failure {
        failure_of(&self.handle, error)
    }
}

impl observe::Outcome for dispatch::Outcome {
    /// `ok`, or the failure's name.
    fn outcome(&self) -> &'static str {
        self.as_ref().map_or_else(Failure::name, |_| "ok")
    }
}
