//! Resource handles an importer holds across a link: each is a stand-in in the importer's own
//! store (a wasmtime host resource of a dynamic type, one type per imported resource), and
//! stands for a handle that lives elsewhere, in another instance of this runtime or on another
//! runtime behind a channel.
//!
//! Meaning, the same for local, named and remote links:
//! - an `own` returned to the importer moves to it (a new stand-in); given back to its owner
//!   it goes home (the owner receives its own resource, not a proxy of it);
//! - a `borrow` lends for one call (the importer's borrow is dropped when the call returns);
//! - a handle given to an instance other than its owner is refused (`Error::Foreign`), naming
//!   the resource and both instances: delegation comes with capabilities;
//! - the importer dropping a stand-in drops the resource in its owner before the importer's
//!   next call runs (the destructor waits for it); the importer's store going (removed,
//!   restarted, a per-call instance done) drops every resource it still held, in the
//!   background;
//! - a handle is pinned to the replica that made it (every use goes there), and a replica
//!   restarted since, or an owner that cannot be reached, makes it `ResourceGone`.
//!
//! Stand-ins are bounded per store (`STANDINS_MAX`); past it a call that would make one fails
//! `TooMany` and the handle it would have stood for is let go.

use std::collections::HashMap;
use std::sync::Arc;

use exorun_core::context::ExorunCtx;
use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use exorun_core::instance::Replica;
use exorun_core::ledger::Ledger;
use exorun_core::ledger::Resource;
use exorun_core::resources;
use exorun_transport::client::Channel;
use wasmtime::StoreContextMut;
use wasmtime::component::ResourceAny;
use wasmtime::component::ResourceDynamic;
use wasmtime::component::ResourceType;
use wasmtime::component::Type;
use wasmtime::component::Val;

/// Most stand-ins one store may hold: each costs a few dozen bytes here and a resource in its
/// owner; 65,536 is far past what a composition holds at once while bounding what a guest that
/// never drops its handles can make its owners keep.
pub const STANDINS_MAX: usize = 65_536;

/// Why a handle could not cross a link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A handle that belongs to one instance, given to another.
    #[error(
        "the {resource} given to `{callee}` belongs to `{owner}`: a handle cannot be passed on \
         to a third instance"
    )]
    Foreign {
        /// The resource's name.
        resource: String,
        /// The instance that owns it.
        owner: String,
        /// The instance it was given to.
        callee: String,
    },
    /// The store holds `STANDINS_MAX` stand-ins already.
    #[error("{max} resource handles are held across links already")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// One call names handles that live in two replicas (or on two connections) of its callee.
    #[error("one call names {resource} handles from two replicas of `{callee}`")]
    Split {
        /// The resource's name.
        resource: String,
        /// The callee.
        callee: String,
    },
    /// A callee that runs a fresh instance per call returned handles: they went with it.
    #[error("`{callee}` runs a fresh instance per call: the resources it returned went with it")]
    PerCall {
        /// The callee.
        callee: String,
    },
    /// A resource of a kind no link stands in for (say, a system's own resource given to a
    /// linked instance).
    #[error("a {resource} from this instance's own host cannot be given across a link")]
    NotAStandIn {
        /// The resource's name.
        resource: String,
    },
}

/// The resource types an importer's linker defines for the resources of its linked imports:
/// each its own dynamic host type.
#[derive(Debug, Default)]
pub(crate) struct Kinds(Vec<(Resource, u32)>);

impl Kinds {
    /// A fresh dynamic type for each of `resources`, distinct from every other in the process.
    pub(crate) fn assign(resources: impl Iterator<Item = Resource>) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let kinds = resources.map(|resource| {
            let kind = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (resource, kind)
        });
        Self(kinds.collect())
    }

    fn of(&self, resource: &Resource) -> Option<u32> {
        let found = self.0.iter().find(|(known, _)| known == resource);
        found.map(|(_, kind)| *kind)
    }

    /// The dynamic types of the resources `interface` declares, by name.
    pub(crate) fn declared_by<'a>(
        &'a self,
        interface: &'a str,
    ) -> impl Iterator<Item = (&'a str, u32)> + 'a {
        let declared = self
            .0
            .iter()
            .filter(move |(resource, _)| resource.interface == interface);
        declared.map(|(resource, kind)| (resource.name.as_str(), *kind))
    }
}

/// Where the resource a stand-in stands for lives.
#[derive(Clone)]
pub(crate) enum Owner {
    /// In an instance of this runtime, in the replica that made it.
    Local {
        instance: InstanceHandle,
        replica: Replica,
        handle: ResourceAny,
    },
    /// On another runtime: its id on the connection (session) that carried the call.
    Remote {
        channel: Arc<dyn Channel>,
        target: String,
        session: u64,
        id: u64,
    },
}

impl Owner {
    /// The owning instance, as an error names it.
    fn name(&self) -> String {
        match self {
            Owner::Local { instance, .. } => instance_name(instance),
            Owner::Remote { target, .. } => target.clone(),
        }
    }
}

/// A stand-in: the resource's name and where it lives.
#[derive(Clone)]
pub(crate) struct StandIn {
    pub(crate) resource: String,
    pub(crate) owner: Owner,
}

/// The stand-ins of one store (kept in its user data), by their host representation.
#[derive(Default)]
pub(crate) struct StandIns {
    entries: HashMap<u32, StandIn>,
    next: u32,
}

impl StandIns {
    fn insert(&mut self, stand_in: StandIn) -> Result<u32, Error> {
        if self.entries.len() >= STANDINS_MAX {
            return Err(Error::TooMany { max: STANDINS_MAX });
        }
        loop {
            self.next = self.next.wrapping_add(1);
            if !self.entries.contains_key(&self.next) {
                break;
            }
        }
        self.entries.insert(self.next, stand_in);
        Ok(self.next)
    }

    /// Takes the stand-in `rep` out (its handle was dropped or given back).
    pub(crate) fn take(&mut self, rep: u32) -> Option<StandIn> {
        self.entries.remove(&rep)
    }
}

impl Drop for StandIns {
    fn drop(&mut self) {
        // The store is going: every resource it still held is dropped in its owner, in the
        // background (this runs outside any task that could wait).
        let held: Vec<StandIn> = self.entries.drain().map(|(_, stand_in)| stand_in).collect();
        if held.is_empty() {
            return;
        }
        in_background(async move {
            for stand_in in held {
                release(stand_in).await;
            }
        });
    }
}

/// Drops counted while they run in the background (a store or connection gone), and what
/// wakes those waiting for none to be left.
static BACKGROUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static SETTLED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Runs `drops` in the background, counted until done (see `settled`). Outside a tokio runtime
/// nothing can run them: the owners keep those resources until they end themselves.
pub(crate) fn in_background(drops: impl std::future::Future<Output = ()> + Send + 'static) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("handles let go outside a runtime stay with their owners");
        return;
    };
    BACKGROUND.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // Counted down when the drops end or are cancelled (their runtime shutting down).
    let counted = Counted;
    runtime.spawn(async move {
        drops.await;
        drop(counted);
    });
}

/// One drop running in the background, until it is dropped.
struct Counted;

impl Drop for Counted {
    fn drop(&mut self) {
        BACKGROUND.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        SETTLED.notify_waiters();
    }
}

/// Waits until every drop this process started in the background (a store that went while
/// it held handles across links, a connection that ended while it held handles) has run: an
/// embedder that shuts down, or a test that counts what an owner still holds, waits here.
pub async fn settled() {
    loop {
        let notified = SETTLED.notified();
        if BACKGROUND.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            return;
        }
        notified.await;
    }
}

/// Drops the resource `stand_in` stands for, in its owner. A resource already gone (its
/// replica restarted, its connection ended) needs nothing.
pub(crate) async fn release(stand_in: StandIn) {
    let resource = stand_in.resource;
    match stand_in.owner {
        Owner::Local {
            instance,
            replica,
            handle,
        } => {
            let Ok(mut lease) = instance.lease_on(replica, &resource).await else {
                return; // its replica (and the resource) are gone
            };
            if let Err(error) = lease.drop_resource(handle).await {
                tracing::info!(%error, resource, "dropping a resource across a link failed");
            }
        }
        Owner::Remote {
            channel,
            target,
            session,
            id,
        } => match channel.release(id, session, &target).await {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => {
                tracing::info!(%failure, resource, "the owner refused to release a resource");
            }
            Err(error) => {
                tracing::info!(%error, resource, "releasing a remote resource failed");
            }
        },
    }
}

/// The destructor of a stand-in type: called when the importer drops a stand-in, it drops the
/// resource in its owner before returning (so before the importer's next call starts).
pub(crate) async fn dropped(
    mut store: StoreContextMut<'_, ExorunCtx>,
    rep: u32,
) -> wasmtime::Result<()> {
    let (stand_ins, _) = store.data_mut().user_and_table(StandIns::default);
    let Some(stand_in) = stand_ins.take(rep) else {
        return Ok(());
    };
    release(stand_in).await;
    Ok(())
}

/// Who a call goes to, as handles must match it.
pub(crate) enum Callee<'a> {
    /// An instance of this runtime.
    Local(&'a InstanceHandle),
    /// An instance on another runtime, through `channel`.
    Remote {
        channel: &'a Arc<dyn Channel>,
        target: &'a str,
    },
}

impl Callee<'_> {
    fn name(&self) -> String {
        match self {
            Callee::Local(instance) => instance_name(instance),
            Callee::Remote { target, .. } => (*target).to_owned(),
        }
    }

    /// Writes into `value` the handle `stand_in` stands for, as this callee reads it, and says
    /// where the call must run; a handle of another instance is refused (one of an instance
    /// since replaced under the same name is gone).
    fn take(&self, stand_in: &StandIn, value: &mut Val) -> Result<Pin, wasmtime::Error> {
        if !self.owns(&stand_in.owner) {
            let resource = stand_in.resource.clone();
            let (owner, callee) = (stand_in.owner.name(), self.name());
            if owner == callee {
                return Err(wasmtime::Error::new(instance::Error::ResourceGone {
                    resource,
                }));
            }
            let foreign = Error::Foreign {
                resource,
                owner,
                callee,
            };
            return Err(wasmtime::Error::new(foreign));
        }
        match &stand_in.owner {
            Owner::Local {
                replica, handle, ..
            } => {
                *value = Val::Resource(*handle);
                Ok(Pin::Replica(*replica))
            }
            Owner::Remote { session, id, .. } => {
                *value = Val::U64(*id);
                Ok(Pin::Session(*session))
            }
        }
    }

    fn owns(&self, owner: &Owner) -> bool {
        match (self, owner) {
            (Callee::Local(callee), Owner::Local { instance, .. }) => callee.id() == instance.id(),
            (
                Callee::Remote { channel, target },
                Owner::Remote {
                    channel: held,
                    target: owner,
                    ..
                },
            ) => Arc::ptr_eq(channel, held) && target == owner,
            (Callee::Local(_), Owner::Remote { .. })
            | (Callee::Remote { .. }, Owner::Local { .. }) => false,
        }
    }
}

/// Where a call that names handles must run: the replica (local) or session (remote) its
/// handles live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pin {
    Replica(Replica),
    Session(u64),
}

/// Where a call must run, and the resource that says so (for `ResourceGone`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pinned {
    pub(crate) pin: Pin,
    pub(crate) resource: String,
}

impl Pinned {
    /// The error a call pinned here raises when its replica or session is gone.
    pub(crate) fn gone(&self) -> wasmtime::Error {
        let resource = self.resource.clone();
        wasmtime::Error::new(instance::Error::ResourceGone { resource })
    }
}

/// The importer's arguments, made ready for the callee: each stand-in replaced by the handle
/// it stands for (a local callee's own `ResourceAny`, or a remote callee's id as `Val::U64`).
/// An `own` leaves the importer (its stand-in is taken out: the callee gets its resource back);
/// a `borrow` is lent for the call (wasmtime ends the importer's borrow as it is read). Returns
/// where the call must run, if a handle says. On an error, the handles the importer gave away
/// are dropped in their owners (the guest gave them up with the call).
pub(crate) async fn to_callee(
    store: &mut StoreContextMut<'_, ExorunCtx>,
    params: &mut [Val],
    types: &[(String, Type)],
    callee: &Callee<'_>,
    ledger: &Ledger,
) -> Result<Option<Pinned>, wasmtime::Error> {
    let mut pinned: Option<Pinned> = None;
    let mut given = Vec::new();
    let mut walked = Ok(());
    for (param, (_, ty)) in params.iter_mut().zip(types) {
        walked = resources::each_resource(param, ty, &mut |value, resource_ty, own| {
            let Val::Resource(handle) = value else {
                return Ok(());
            };
            let resource = resource_name(ledger, resource_ty);
            let held = ResourceDynamic::try_from_resource_any(*handle, &mut *store);
            let Ok(held) = held else {
                return Err(wasmtime::Error::new(Error::NotAStandIn { resource }));
            };
            if own {
                given.push(held.rep());
            }
            let (stand_ins, _) = store.data_mut().user_and_table(StandIns::default);
            let Some(stand_in) = stand_ins.entries.get(&held.rep()) else {
                return Err(wasmtime::Error::new(instance::Error::ResourceGone {
                    resource,
                }));
            };
            let here = callee.take(stand_in, value)?;
            if pinned.as_ref().is_some_and(|pinned| pinned.pin != here) {
                let callee = callee.name();
                return Err(wasmtime::Error::new(Error::Split { resource, callee }));
            }
            pinned = Some(Pinned {
                pin: here,
                resource,
            });
            Ok(())
        });
        if walked.is_err() {
            break;
        }
    }
    let (stand_ins, _) = store.data_mut().user_and_table(StandIns::default);
    let given: Vec<StandIn> = given
        .into_iter()
        .filter_map(|rep| stand_ins.take(rep))
        .collect();
    let Err(error) = walked else {
        return Ok(pinned);
    };
    for stand_in in given {
        release(stand_in).await;
    }
    Err(error)
}

/// The callee's results, made ready for the importer: each handle it returned (a local
/// callee's `ResourceAny`, or a remote callee's id as `Val::U64`) replaced by a new stand-in
/// owned by the importer. A handle that cannot get a stand-in is released at once.
pub(crate) async fn from_callee(
    store: &mut StoreContextMut<'_, ExorunCtx>,
    results: &mut [Val],
    types: &[Type],
    ledger: &Ledger,
    kinds: &Kinds,
    owner: &(dyn Fn(&Val) -> Option<Owner> + Sync),
) -> Result<(), wasmtime::Error> {
    // Once one handle cannot get a stand-in, the rest are released too: the call fails, and
    // nothing it returned may be left held in its owner.
    let mut refused = Vec::new();
    let mut failure: Option<wasmtime::Error> = None;
    for (result, ty) in results.iter_mut().zip(types) {
        let walked = resources::each_resource(result, ty, &mut |value, resource_ty, _| {
            let Some(owner) = owner(value) else {
                return Ok::<(), wasmtime::Error>(());
            };
            let declared = ledger.resource(resource_ty);
            let resource = resource_name(ledger, resource_ty);
            let stand_in = StandIn { resource, owner };
            if failure.is_some() {
                refused.push(stand_in);
                return Ok(());
            }
            let (stand_ins, _) = store.data_mut().user_and_table(StandIns::default);
            let rep = match stand_ins.insert(stand_in.clone()) {
                Ok(rep) => rep,
                Err(error) => {
                    refused.push(stand_in);
                    failure = Some(wasmtime::Error::new(error));
                    return Ok(());
                }
            };
            let kind = declared
                .and_then(|declared| kinds.of(declared))
                .unwrap_or(0);
            let handle = ResourceDynamic::new_own(rep, kind).try_into_resource_any(&mut *store)?;
            *value = Val::Resource(handle);
            Ok(())
        });
        if let Err(error) = walked {
            failure.get_or_insert(error);
        }
    }
    for stand_in in refused {
        release(stand_in).await;
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The name of resource type `ty` in `ledger` (`resource` if it names none).
pub(crate) fn resource_name(ledger: &Ledger, ty: &ResourceType) -> String {
    ledger
        .resource(ty)
        .map_or_else(|| "resource".to_owned(), |resource| resource.name.clone())
}

fn instance_name(instance: &InstanceHandle) -> String {
    instance
        .name()
        .map_or_else(|| instance.id().to_string(), str::to_owned)
}

/// What a linked function that carries handles needs to swap them: the importer's ledger (to
/// name resources), the dynamic types its linker gave them, and the function's types as the
/// importer declares them.
pub(crate) struct Carry {
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) kinds: Arc<Kinds>,
    pub(crate) params: Vec<(String, Type)>,
    pub(crate) results: Vec<Type>,
}

impl Carry {
    /// A carry for `signature`, if any of its types carry handles (a function that carries
    /// none is forwarded as it is, with nothing swapped).
    pub(crate) fn of(
        signature: &exorun_core::ledger::Signature,
        ledger: &Arc<Ledger>,
        kinds: &Arc<Kinds>,
    ) -> Option<Arc<Self>> {
        let params = signature.params.iter().map(|(_, ty)| ty);
        if !params
            .chain(&signature.results)
            .any(resources::carries_handles)
        {
            return None;
        }
        Some(Arc::new(Self {
            ledger: Arc::clone(ledger),
            kinds: Arc::clone(kinds),
            params: signature.params.clone(),
            results: signature.results.clone(),
        }))
    }

    /// Whether the function's results carry handles.
    pub(crate) fn returns_handles(&self) -> bool {
        self.results.iter().any(resources::carries_handles)
    }

    /// One call on `target`, an instance of this runtime: the handles given go home, the call
    /// runs on the replica they live in, and the handles returned become the importer's.
    pub(crate) async fn call_local(
        &self,
        mut store: StoreContextMut<'_, ExorunCtx>,
        target: &InstanceHandle,
        export: &exorun_core::app::Export,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let mut params = params.to_vec();
        let callee = Callee::Local(target);
        let pinned =
            to_callee(&mut store, &mut params, &self.params, &callee, &self.ledger).await?;
        let leased = match &pinned {
            Some(Pinned {
                pin: Pin::Replica(replica),
                resource,
            }) => target.lease_on(*replica, resource).await,
            Some(pinned) => return Err(pinned.gone()),
            None => target.lease(0).await,
        };
        let mut lease = leased.map_err(|error| in_callee(error, target))?;
        let replica = lease.replica();
        let called = lease.call(export, &params, results).await;
        drop(lease);
        called.map_err(|error| in_callee(error, target))?;
        let Some(replica) = replica else {
            if self.returns_handles() {
                let callee = instance_name(target);
                return Err(wasmtime::Error::new(Error::PerCall { callee }));
            }
            return Ok(());
        };
        let owner = |value: &Val| {
            let Val::Resource(handle) = value else {
                return None;
            };
            Some(Owner::Local {
                instance: target.clone(),
                replica,
                handle: *handle,
            })
        };
        from_callee(
            &mut store,
            results,
            &self.results,
            &self.ledger,
            &self.kinds,
            &owner,
        )
        .await
    }
}

/// A callee's error as its caller raises it: a handle found gone as itself, anything else as
/// the callee's failure.
fn in_callee(error: instance::Error, target: &InstanceHandle) -> wasmtime::Error {
    if let instance::Error::ResourceGone { .. } = error {
        return wasmtime::Error::new(error);
    }
    wasmtime::Error::new(error.in_callee(target))
}
