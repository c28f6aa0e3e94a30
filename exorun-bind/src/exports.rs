//! The instances remote callers may reach: `Exports`, the dispatcher exorun-transport's
//! handlers hand each call to (what a call means; listening, connection limits and draining
//! are `exorun_transport::server`'s).
//!
//! `Exports` is the neorpc dispatcher over one runtime: a call's `target` names an instance
//! that was explicitly exported (nothing else is reachable, registered or not) and its `method`
//! names `interface#function` (`#function` for a root export). An export may name who may call
//! it (`Allow::Keys`: node keys, each to all or some interfaces); a caller the list does not
//! name at all (another key, or an anonymous one on a plaintext connection) is answered
//! `InstanceNotFound`, as if the export did not exist, so a stranger cannot tell a guarded
//! export from a missing one; a named caller calling an interface it is not allowed is
//! answered `PermissionDenied`. Both before anything is decoded. Both are resolved as the call arrives, from the one decode the serving loop made; the call's future keeps the argument
//! slab as a slice of the frame, decodes it against the export's own parameter types when it
//! runs, and writes the results straight into the reply frame. Each way a call can fail has its
//! exact reason: unknown instance or method, wrong argument count or type, trap, fuel, memory, a
//! rejection's code; a remote failure further down a chain (a relay's own remote import) passes
//! through unchanged, and a named link that finds no instance says so. A call runs inside the
//! call chain it carried, so a call back into an instance already on it (A -> B -> A across
//! runtimes) fails at once with `Reentrant` instead of waiting for its caller, and as its
//! caller's principal (`exorun_core::caller`: the node key its connection authenticated with),
//! so host functions on its path can see who calls.
//!
//! How an instance's failure reaches a remote caller (`failure`): each reason once, in the
//! fewest types. A guest's own fault is `AppTrapped` (with the trap's message alone),
//! `OutOfFuel` or `OutOfMemory` (with what grew past which limit); exorun's own faults (a
//! wasmtime error around the call, an instance failed for good, a call cancelled mid-way) are
//! `Internal`; a callee's failure through a local link is the callee's own reason; a remote
//! failure a linked import raised passes on as the same `Failure` value.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use exorun_core::app::Export;
use exorun_core::chain;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::principal;
use exorun_core::registry;
use exorun_core::registry::Runtime;
use exorun_core::resources;
use exorun_core::trace;
use exorun_transport::handler;
use exorun_transport::identity::PublicKey;
use exorun_transport::transport::BoxFuture;
use neorpc::codec;
use neorpc::failure::Failure;
use neorpc::frame;
use wasmtime::component::Val;

use crate::guard;
use crate::handles::Handles;
use crate::remote;

mod failures;
mod measures;

use failures::bad_arguments;
pub(crate) use failures::failure;
use failures::failure_of;
use failures::internal;
use measures::Measures;
use measures::measured;
use measures::measures_of;

/// Who may call an export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Allow {
    /// Any caller that can connect, authenticated or not.
    #[default]
    Anyone,
    /// Only callers authenticated with one of these node keys, each to the interfaces listed
    /// (`None`: every interface).
    Keys(BTreeMap<PublicKey, Option<BTreeSet<String>>>),
}

impl Allow {
    /// Whether a caller authenticated as `key` (`None`: anonymous) may call `interface`.
    pub fn permits(&self, key: Option<&PublicKey>, interface: &str) -> bool {
        let Allow::Keys(keys) = self else {
            return true;
        };
        let Some(interfaces) = key.and_then(|key| keys.get(key)) else {
            return false;
        };
        interfaces
            .as_ref()
            .is_none_or(|interfaces| interfaces.contains(interface))
    }

    /// Whether the list names `key` at all (`Anyone` names everyone): a caller it does not is
    /// told the export does not exist, not that it was denied.
    pub fn names(&self, key: Option<&PublicKey>) -> bool {
        let Allow::Keys(keys) = self else {
            return true;
        };
        key.is_some_and(|key| keys.contains_key(key))
    }
}

/// Why an instance cannot be exported as asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No instance is registered under that name.
    #[error(transparent)]
    Registry(registry::Error),
    /// The guard named cannot guard.
    #[error(transparent)]
    Guard(guard::Error),
}

/// How an export is reached: who may call it, and the guard that decides each call beyond.
#[derive(Clone)]
struct Exported {
    allow: Allow,
    guard: Option<Arc<str>>,
    /// Calls dispatched to it (each counted once, whatever its outcome).
    calls: Arc<std::sync::atomic::AtomicU64>,
    /// Each of its functions' metric handles, by method, made at its first call.
    measures: Arc<DashMap<String, Arc<Measures>>>,
}

/// The instances of a runtime that remote callers may reach, and who may reach each.
pub struct Exports {
    runtime: Arc<Runtime>,
    exported: DashMap<String, Exported>,
    handles: Arc<Handles>,
    guards: Arc<guard::Guards>,
}

/// A guarded call's question for its guard, asked when the call runs.
struct Guarded {
    guards: Arc<guard::Guards>,
    runtime: Arc<Runtime>,
    guard: Arc<str>,
    capability: Option<Bytes>,
    export: String,
    interface: String,
    function: String,
}

impl Guarded {
    async fn check(self, origin: &handler::Origin, args: u64) -> Result<Vec<String>, Failure> {
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
struct Job {
    seq: frame::Seq,
    handle: InstanceHandle,
    export: Export,
    args: Bytes,
    chain: Vec<chain::Hop>,
    origin: handler::Origin,
    handles: Arc<Handles>,
    guarded: Option<Guarded>,
    /// Its function's metric handles (names the export has, so bounded as labels).
    measures: Arc<Measures>,
    /// The trace it belongs to and the caller's span, as the frame carried them.
    trace: Option<frame::TraceContext>,
}

impl Exports {
    /// Exports nothing yet.
    pub fn new(runtime: Arc<Runtime>) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            exported: DashMap::new(),
            handles: Arc::default(),
            guards: Arc::default(),
        })
    }

    /// Resource handles remote callers hold now, over every connection (see `handles`).
    pub fn handles_held(&self) -> usize {
        self.handles.live()
    }

    /// The number of resource handles remote callers hold, as it changes.
    pub fn watch_handles(&self) -> tokio::sync::watch::Receiver<usize> {
        self.handles.watch()
    }

    /// Resource handles the connection `connection` (`handler::Origin::connection`) holds now.
    pub fn handles_held_by(&self, connection: u64) -> usize {
        self.handles.held_by(connection)
    }

    /// Makes the instance registered as `name` reachable by any remote caller.
    pub fn export(&self, name: &str) -> Result<(), registry::Error> {
        self.export_allowing(name, Allow::Anyone)
    }

    /// Makes the instance registered as `name` reachable by the callers `allow` names.
    pub fn export_allowing(&self, name: &str, allow: Allow) -> Result<(), registry::Error> {
        self.runtime.instance_named(name)?;
        self.guards.forget_export(name);
        let calls = Arc::default();
        let exported = Exported {
            allow,
            guard: None,
            calls,
            measures: Arc::default(),
        };
        self.exported.insert(name.to_owned(), exported);
        Ok(())
    }

    /// Makes the instance registered as `name` reachable by the callers `allow` names, each
    /// call decided by the instance registered as `guard` (which exports
    /// `exorun:auth/guard#check`; see `guard`).
    pub fn export_guarded(&self, name: &str, allow: Allow, guard: &str) -> Result<(), Error> {
        self.runtime.instance_named(name).map_err(Error::Registry)?;
        guard::check_guard(&self.runtime, guard).map_err(Error::Guard)?;
        self.guards.forget_export(name);
        let guard = Some(Arc::from(guard));
        let calls = Arc::default();
        let exported = Exported {
            allow,
            guard,
            calls,
            measures: Arc::default(),
        };
        self.exported.insert(name.to_owned(), exported);
        Ok(())
    }

    /// Makes `name` unreachable again (calls already dispatched to it run on); whether it was
    /// exported.
    pub fn unexport(&self, name: &str) -> bool {
        let removed = self.exported.remove(name).is_some();
        self.guards.forget_export(name);
        removed
    }

    /// Calls remote callers made to the export `name` so far (0 if it is not exported).
    pub fn calls(&self, name: &str) -> u64 {
        let calls = self.exported.get(name);
        calls.map_or(0, |exported| {
            exported.calls.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// Grants guards made that are kept now, over every connection (see `guard`).
    pub fn grants_kept(&self) -> usize {
        self.guards.kept()
    }

    /// The exported names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .exported
            .iter()
            .map(|entry| entry.key().clone())
            .collect();
        names.sort();
        names
    }

    /// The exported names that only some keys may call, or that a guard decides (so they are
    /// reachable only over authenticated connections, which carry the caller's key), sorted.
    pub fn restricted(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .exported
            .iter()
            .filter(|entry| {
                let exported = entry.value();
                matches!(exported.allow, Allow::Keys(_)) || exported.guard.is_some()
            })
            .map(|entry| entry.key().clone())
            .collect();
        names.sort();
        names
    }

    /// Resolves a call's target and method, or says which one is unknown.
    fn resolve(
        &self,
        call: &frame::Call<'_>,
        frame: &Bytes,
        origin: &handler::Origin,
    ) -> Result<Job, Failure> {
        let (target, method) = (call.target, call.method);
        let instance_not_found = || Failure::InstanceNotFound {
            instance: target.to_owned(),
        };
        let Some(Exported {
            allow,
            guard,
            calls,
            measures,
        }) = self.exported.get(target).map(|entry| entry.value().clone())
        else {
            return Err(instance_not_found());
        };
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let method_not_found = || Failure::MethodNotFound {
            method: method.to_owned(),
        };
        // A caller the allow list does not name learns nothing of the export, not even that it
        // exists; one it names is told which interface it may not call.
        if !allow.names(origin.key()) {
            return Err(instance_not_found());
        }
        let (interface, function) = method.split_once('#').ok_or_else(method_not_found)?;
        if !allow.permits(origin.key(), interface) {
            return Err(Failure::PermissionDenied {
                instance: target.to_owned(),
                interface: interface.to_owned(),
                reason: String::new(),
            });
        }
        let handle = self
            .runtime
            .instance_named(target)
            .map_err(|_| instance_not_found())?;
        let export = handle.app().export(interface, function);
        let export = export.ok_or_else(method_not_found)?;
        let guarded = guard.map(|guard| Guarded {
            guards: Arc::clone(&self.guards),
            runtime: Arc::clone(&self.runtime),
            guard,
            capability: call.capability.map(|bytes| frame.slice_ref(bytes)),
            export: target.to_owned(),
            interface: interface.to_owned(),
            function: function.to_owned(),
        });
        Ok(Job {
            seq: call.seq,
            handle,
            export,
            args: frame.slice_ref(call.args),
            chain: remote::from_wire(&call.chain),
            origin: origin.clone(),
            handles: Arc::clone(&self.handles),
            guarded,
            measures: measures_of(&measures, target, method, interface, function),
            trace: call.trace,
        })
    }
}

impl handler::Dispatcher for Exports {
    fn dispatch(
        &self,
        call: frame::Call<'_>,
        frame: &Bytes,
        origin: &handler::Origin,
    ) -> BoxFuture<'static, handler::Outcome> {
        match self.resolve(&call, frame, origin) {
            Ok(job) => {
                let measures = Arc::clone(&job.measures);
                Box::pin(measured(measures, job.run()))
            }
            Err(failure) => {
                // No names as labels: a caller chooses them, and unknown ones must not count.
                let outcome = failure.name();
                metrics::counter!("exorun_calls_refused_total", "outcome" => outcome).increment(1);
                Box::pin(std::future::ready(Err(failure)))
            }
        }
    }

    fn release(
        &self,
        seq: frame::Seq,
        handle: u64,
        origin: &handler::Origin,
    ) -> BoxFuture<'static, handler::Outcome> {
        let handles = Arc::clone(&self.handles);
        let connection = origin.connection();
        Box::pin(async move {
            handles.release(connection, handle).await?;
            let mut reply = frame::ReplyWriter::new(seq).map_err(internal)?;
            let limits = codec::Limits::default();
            codec::encode_into(reply.results(), &[], &limits).map_err(|error| {
                Failure::Internal {
                    message: format!("cannot encode the release's reply: {error}"),
                }
            })?;
            reply.finish().map_err(internal)
        })
    }

    fn closed(&self, origin: &handler::Origin) {
        self.handles.closed(origin.connection());
        self.guards.closed(origin.connection());
    }
}

impl Job {
    /// Waits for an instance (its argument slab counted as waiting bytes), then, if the caller
    /// is still there, decodes the arguments, runs the call inside its chain and writes the
    /// reply frame.
    async fn run(mut self) -> handler::Outcome {
        let caveats = match self.guarded.take() {
            Some(guarded) => {
                let args = u64::try_from(self.args.len()).unwrap_or(u64::MAX);
                guarded.check(&self.origin, args).await?
            }
            None => Vec::new(),
        };
        let chain = std::mem::take(&mut self.chain);
        let principal = self.origin.key().map(ToString::to_string);
        let party = self.origin.party();
        // The callee's span: a child of the caller's, or the root of a trace of its own (also
        // when the caller's ids are all zeros, which W3C calls invalid and collectors refuse).
        let valid =
            |caller: &frame::TraceContext| caller.trace_id != [0; 16] && caller.parent_id != [0; 8];
        let span = match self.trace.filter(valid) {
            Some(caller) => trace::Span::child_of(caller.trace_id, caller.parent_id, caller.flags),
            None => trace::Span::root(),
        };
        let measures = Arc::clone(&self.measures);
        let started = std::time::Instant::now();
        let call = chain::within(chain, self.lease_and_call());
        let call = principal::within_grant(caveats, call);
        let outcome = trace::within(span, principal::within_party(principal, party, call)).await;
        let [(_, export), (_, interface), (_, function)] = &measures.labels;
        tracing::debug!(
            export,
            interface,
            function,
            trace_id = %span.trace_hex(),
            span_id = %span.span_hex(),
            parent_id = %span.parent_hex(),
            ok = outcome.is_ok(),
            "served call"
        );
        if trace::exporting(&span) {
            let elapsed = started.elapsed();
            trace::finish(&trace::Finished {
                span,
                kind: trace::Kind::Server,
                name: "served call",
                started: std::time::SystemTime::now() - elapsed,
                elapsed,
                attributes: &[
                    ("exorun.export", export),
                    ("exorun.interface", interface),
                    ("exorun.function", function),
                ],
                outcome: outcome.as_ref().map_or_else(Failure::name, |_| "ok"),
            });
        }
        outcome
    }

    async fn lease_and_call(self) -> handler::Outcome {
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
    async fn carrying(self) -> handler::Outcome {
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
        handles
            .hand_out(connection, &mut results, types, &mut lease, instance)
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
