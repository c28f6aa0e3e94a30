//! `Exports`: which instances remote callers may reach and who may reach each, and the
//! dispatcher that resolves each call to its instance and function (see `serve`).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use exorun_common::BoxFuture;
use exorun_core::runtime;
use exorun_core::runtime::Runtime;
use exorun_transport::dispatch;
use exorun_transport::identity::PublicKey;
use neorpc::codec;
use neorpc::failure::Failure;
use neorpc::frame;

use super::failure::internal;
use super::guard;
use super::handles::Handles;
use super::job::Guarded;
use super::job::Job;
use crate::observe::Observer;
use crate::wire;

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
    Registry(runtime::Error),
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
    /// Each of its functions' observer, by method, made at its first call.
    observers: Arc<DashMap<String, Arc<Observer>>>,
}

/// The instances of a runtime that remote callers may reach, and who may reach each.
pub struct Exports {
    runtime: Arc<Runtime>,
    exported: DashMap<String, Exported>,
    handles: Arc<Handles>,
    guards: Arc<guard::Guards>,
}

impl std::fmt::Debug for Exports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exports")
            .field("exported", &self.names())
            .finish_non_exhaustive()
    }
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

    /// Resource handles the connection `connection` (`dispatch::Origin::connection`) holds now.
    pub fn handles_held_by(&self, connection: u64) -> usize {
        self.handles.held_by(connection)
    }

    /// Makes the instance registered as `name` reachable by any remote caller.
    pub fn export(&self, name: &str) -> Result<(), runtime::Error> {
        self.export_allowing(name, Allow::Anyone)
    }

    /// Makes the instance registered as `name` reachable by the callers `allow` names.
    pub fn export_allowing(&self, name: &str, allow: Allow) -> Result<(), runtime::Error> {
        self.runtime.instance_named(name)?;
        self.guards.forget_export(name);
        let calls = Arc::default();
        let exported = Exported {
            allow,
            guard: None,
            calls,
            observers: Arc::default(),
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
            observers: Arc::default(),
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
        origin: &dispatch::Origin,
    ) -> Result<Job, Failure> {
        let (target, method) = (call.target, call.method);
        let instance_not_found = || Failure::InstanceNotFound {
            instance: target.to_owned(),
        };
        let Some(Exported {
            allow,
            guard,
            calls,
            observers,
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
            chain: wire::from_wire(&call.chain),
            origin: origin.clone(),
            handles: Arc::clone(&self.handles),
            guarded,
            observer: observer_of(&observers, target, method, interface, function),
            trace: call.trace,
        })
    }
}

impl dispatch::Dispatcher for Exports {
    fn dispatch(
        &self,
        call: frame::Call<'_>,
        frame: &Bytes,
        origin: &dispatch::Origin,
    ) -> BoxFuture<'static, dispatch::Outcome> {
        match self.resolve(&call, frame, origin) {
            Ok(job) => Box::pin(job.run()),
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
        origin: &dispatch::Origin,
    ) -> BoxFuture<'static, dispatch::Outcome> {
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

    fn closed(&self, origin: &dispatch::Origin) {
        self.handles.closed(origin.connection());
        self.guards.closed(origin.connection());
    }
}

/// The observer of `method` of the export whose observers are `observers`, made at its first
/// call.
fn observer_of(
    observers: &DashMap<String, Arc<Observer>>,
    export: &str,
    method: &str,
    interface: &str,
    function: &str,
) -> Arc<Observer> {
    if let Some(found) = observers.get(method) {
        return Arc::clone(found.value());
    }
    let made = Arc::new(Observer::served(export, interface, function));
    let entry = observers.entry(method.to_owned()).or_insert(made);
    Arc::clone(entry.value())
}
