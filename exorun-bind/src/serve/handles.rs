//! The resource handles a serving runtime has handed to remote callers: per connection, each
//! under an id drawn at random (64 bits, not a counter), so one connection cannot name
//! another's handles, even under the same key, and a peer cannot guess one.
//!
//! A handle is pinned to the replica that made it. A call that names handles runs there (see
//! `exports`); an `own` given back leaves the table (its resource goes home, into the guest); a
//! `borrow` is lent for the call. A `Release` drops one (in its replica, before the reply), and
//! a connection that ends drops all of its own. A handle whose replica was restarted since is
//! `ResourceGone`, and so is an id the connection does not hold: forged, already released, or
//! of another connection (the reply does not say which, so it tells a prober nothing).
//!
//! Bounds: `HANDLES_PER_CONNECTION_MAX` per connection, `HANDLES_PER_SOURCE_MAX` over every
//! connection of one source (an IPv4 address, an IPv6 /64: as connections are counted), and
//! `HANDLES_MAX` per runtime; a call whose results would pass any of them is answered
//! `Overloaded` and the handles it made are dropped at once, so nothing leaks. The share per
//! source keeps one host's many connections from filling the runtime's table for everyone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use dashmap::DashMap;
use exorun_core::instance::InstanceHandle;
use exorun_core::instance::Lease;
use exorun_core::instance::Replica;
use exorun_core::ledger::Ledger;
use exorun_core::ledger::Resource;
use exorun_core::resources;
use neorpc::failure::Failure;
use wasmtime::component::ResourceAny;
use wasmtime::component::Type;
use wasmtime::component::Val;

/// Most handles one connection may hold: a caller holding more at once is unusual, and each
/// keeps a resource alive in a guest.
pub const HANDLES_PER_CONNECTION_MAX: usize = 4_096;

/// Most handles all remote callers of one runtime may hold together.
pub const HANDLES_MAX: usize = 65_536;

/// Most handles the connections of one source may hold together: an eighth of the runtime's,
/// so eight hosts at least share it (as connections are shared per source), and one host's
/// twenty connections cannot take it all.
pub const HANDLES_PER_SOURCE_MAX: usize = HANDLES_MAX / 8;

/// One handle a connection holds.
#[derive(Clone)]
struct Held {
    instance: InstanceHandle,
    replica: Replica,
    handle: ResourceAny,
    resource: Resource,
}

/// A handle a call's arguments name: where, which resource the parameter wants, and whether it
/// is given (`own`) or lent (`borrow`).
#[derive(Debug, Clone)]
struct Named<'l> {
    index: u32,
    id: u64,
    resource: &'l Resource,
}

/// The handles one connection holds, and the source it counts against.
#[derive(Default)]
struct Table {
    source: Option<IpAddr>,
    held: HashMap<u64, Held>,
}

/// Every connection's handles.
pub(crate) struct Handles {
    by_connection: DashMap<u64, Table>,
    /// Handles held by each source's connections together.
    by_source: DashMap<IpAddr, usize>,
    live: AtomicUsize,
    watch: tokio::sync::watch::Sender<usize>,
}

impl Default for Handles {
    fn default() -> Self {
        Self {
            by_connection: DashMap::new(),
            by_source: DashMap::new(),
            live: AtomicUsize::new(0),
            watch: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// A connection, and the source it counts against (`None`: counted on its own).
pub(crate) type Caller = (u64, Option<IpAddr>);

/// Where a call naming handles must run, as the first of them says.
pub(crate) struct Pin {
    pub(crate) replica: Replica,
    pub(crate) resource: String,
}

impl Handles {
    /// Handles held now, by every connection.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// The number of handles held, as it changes.
    pub(crate) fn watch(&self) -> tokio::sync::watch::Receiver<usize> {
        self.watch.subscribe()
    }

    fn publish(&self) {
        self.watch.send_replace(self.live.load(Ordering::SeqCst));
    }

    /// `count` handles of `source` let go.
    fn uncount(&self, source: Option<IpAddr>, count: usize) {
        self.live.fetch_sub(count, Ordering::SeqCst);
        let Some(source) = source else {
            return;
        };
        let emptied = {
            let Some(mut held) = self.by_source.get_mut(&source) else {
                return;
            };
            *held = held.saturating_sub(count);
            *held == 0
        };
        if emptied {
            self.by_source.remove_if(&source, |_, held| *held == 0);
        }
    }

    /// Handles connection `connection` holds now.
    pub(crate) fn held_by(&self, connection: u64) -> usize {
        self.by_connection
            .get(&connection)
            .map_or(0, |table| table.held.len())
    }

    /// Checks the handle ids in a call's decoded arguments (`Val::U64` where a handle goes)
    /// against what `connection` holds: each must be held, be of the resource its parameter
    /// wants, belong to `instance`, and all must live in one replica. Returns that replica,
    /// if any handle is named.
    pub(crate) fn pin(
        &self,
        connection: u64,
        params: &mut [Val],
        types: &[(String, Type)],
        instance: &InstanceHandle,
    ) -> Result<Option<Pin>, Failure> {
        let named = named(params, types, instance.ledger())?;
        let Some(table) = self.by_connection.get(&connection) else {
            return match named.first() {
                Some(first) => Err(gone(&first.resource.name)),
                None => Ok(None),
            };
        };
        let mut pin: Option<Pin> = None;
        for name in &named {
            let Some(entry) = table.held.get(&name.id) else {
                return Err(gone(&name.resource.name));
            };
            if entry.resource != *name.resource {
                return Err(Failure::BadArgumentType {
                    index: name.index,
                    message: format!(
                        "handle {:#x} is a {}, not a {}",
                        name.id, entry.resource, name.resource
                    ),
                });
            }
            if entry.instance.id() != instance.id() {
                return Err(Failure::BadArgumentType {
                    index: name.index,
                    message: format!(
                        "handle {:#x} belongs to another instance than the call's target",
                        name.id
                    ),
                });
            }
            if pin.as_ref().is_some_and(|pin| pin.replica != entry.replica) {
                return Err(Failure::BadArgumentType {
                    index: name.index,
                    message: "the call names handles of two replicas".to_owned(),
                });
            }
            pin = Some(Pin {
                replica: entry.replica,
                resource: name.resource.name.clone(),
            });
        }
        Ok(pin)
    }

    /// Replaces each handle id in the arguments by its handle, now that the call holds the
    /// replica they live in (so no other call can move them meanwhile): an `own` leaves the
    /// table, a `borrow` stays.
    pub(crate) fn resolve(
        &self,
        connection: u64,
        params: &mut [Val],
        types: &[(String, Type)],
        ledger: &Ledger,
    ) -> Result<(), Failure> {
        let mut table = self.by_connection.entry(connection).or_default();
        let source = table.source;
        let held = &mut table.held;
        let mut taken = 0;
        let types = types.iter().map(|(_, ty)| ty);
        let walked = resources::each_resource_in(params, types, &mut |value, resource_ty, own| {
            let Val::U64(id) = *value else {
                return Ok(());
            };
            let handle = match own {
                true => held
                    .remove(&id)
                    .inspect(|_| taken += 1)
                    .map(|entry| entry.handle),
                false => held.get(&id).map(|entry| entry.handle),
            };
            let Some(handle) = handle else {
                return Err(gone(&crate::link::standins::resource_name(
                    ledger,
                    resource_ty,
                )));
            };
            *value = Val::Resource(handle);
            Ok(())
        });
        drop(table);
        if taken > 0 {
            self.uncount(source, taken);
            self.publish();
        }
        walked
    }

    /// Replaces each handle in a call's results by a new id that `connection` holds. Past a
    /// bound (or for a caller already gone) nothing is kept: the handles are dropped in the
    /// replica (the lease is still held) and the call is answered `Overloaded`.
    pub(crate) async fn hand_out(
        &self,
        caller: Caller,
        results: &mut [Val],
        types: &[Type],
        lease: &mut Lease,
        instance: &InstanceHandle,
    ) -> Result<(), Failure> {
        let mut made = Vec::new();
        resources::each_resource_in(results, types, &mut |value, resource_ty, _| {
            let Val::Resource(handle) = *value else {
                return Ok::<(), Failure>(());
            };
            let resource = instance.ledger().resource(resource_ty).cloned();
            made.push((handle, resource));
            Ok(())
        })?;
        if made.is_empty() {
            return Ok(());
        }
        let Some(replica) = lease.replica() else {
            drop_all(lease, made.into_iter().map(|(handle, _)| handle)).await;
            return Err(Failure::Internal {
                message: "a per-call instance returned resource handles".to_owned(),
            });
        };
        let ids = match self.admit(caller, replica, instance, &made) {
            Ok(ids) => ids,
            Err(failure) => {
                drop_all(lease, made.into_iter().map(|(handle, _)| handle)).await;
                return Err(failure);
            }
        };
        let mut ids = ids.into_iter();
        resources::each_resource_in(results, types, &mut |value, _, _| {
            if let (Val::Resource(_), Some(id)) = (&*value, ids.next()) {
                *value = Val::U64(id);
            }
            Ok::<(), Failure>(())
        })?;
        Ok(())
    }

    /// Enters `made` into the connection's table within the bounds, each under a fresh random
    /// id, or none of them.
    fn admit(
        &self,
        (connection, source): Caller,
        replica: Replica,
        instance: &InstanceHandle,
        made: &[(ResourceAny, Option<Resource>)],
    ) -> Result<Vec<u64>, Failure> {
        let mut table = self.by_connection.entry(connection).or_default();
        table.source = source;
        if table.held.len() + made.len() > HANDLES_PER_CONNECTION_MAX {
            return Err(Failure::Overloaded);
        }
        self.count(source, made.len())?;
        let mut ids: Vec<u64> = Vec::with_capacity(made.len());
        while ids.len() < made.len() {
            let id = match fresh_id() {
                Ok(id) => id,
                Err(failure) => {
                    self.uncount(source, made.len());
                    return Err(failure);
                }
            };
            if id != 0 && !table.held.contains_key(&id) && !ids.contains(&id) {
                ids.push(id);
            }
        }
        let held = &mut table.held;
        for (id, (handle, resource)) in ids.iter().zip(made) {
            let resource = resource.clone().unwrap_or_else(|| Resource {
                interface: String::new(),
                name: "resource".to_owned(),
            });
            let entry = Held {
                instance: instance.clone(),
                replica,
                handle: *handle,
                resource,
            };
            held.insert(*id, entry);
        }
        drop(table);
        self.publish();
        Ok(ids)
    }

    /// Counts `count` more handles against the runtime and against `source`, or neither when
    /// either bound would be passed (the counters never go past their bounds).
    fn count(&self, source: Option<IpAddr>, count: usize) -> Result<(), Failure> {
        let reserved = self.live.fetch_add(count, Ordering::SeqCst);
        if reserved + count > HANDLES_MAX {
            self.live.fetch_sub(count, Ordering::SeqCst);
            return Err(Failure::Overloaded);
        }
        let Some(source) = source else {
            return Ok(());
        };
        let mut held = self.by_source.entry(source).or_insert(0);
        if *held + count > HANDLES_PER_SOURCE_MAX {
            drop(held);
            self.live.fetch_sub(count, Ordering::SeqCst);
            return Err(Failure::Overloaded);
        }
        *held += count;
        Ok(())
    }

    /// Drops the handle `id` that `connection` holds, in the replica it lives in: the reply
    /// comes once the guest's destructor ran. An id the connection does not hold (or whose
    /// replica was replaced) is `ResourceGone`.
    pub(crate) async fn release(&self, connection: u64, id: u64) -> Result<(), Failure> {
        let entry = self
            .by_connection
            .get(&connection)
            .and_then(|table| table.held.get(&id).cloned());
        let Some(entry) = entry else {
            return Err(gone("resource"));
        };
        let leased = entry
            .instance
            .lease_on(entry.replica, &entry.resource.name)
            .await;
        // Out of the table whatever happens next: its replica is gone, or it is dropped now.
        let removed = self
            .by_connection
            .get_mut(&connection)
            .and_then(|mut table| Some((table.held.remove(&id)?, table.source)));
        let Some((entry, source)) = removed else {
            return Err(gone(&entry.resource.name)); // a concurrent release or move took it
        };
        self.uncount(source, 1);
        self.publish();
        let Ok(mut lease) = leased else {
            return Err(gone(&entry.resource.name));
        };
        lease
            .drop_resource(entry.handle)
            .await
            .map_err(|error| super::failure::failure(&error))
    }

    /// The connection ended: every handle it held is dropped in its replica, in the
    /// background.
    pub(crate) fn closed(&self, connection: u64) {
        let Some((_, Table { source, held })) = self.by_connection.remove(&connection) else {
            return;
        };
        self.uncount(source, held.len());
        if held.is_empty() {
            self.publish();
            return;
        }
        // Counted in the background before the count is published, so whoever sees it fall
        // can wait for the drops (`standins::settled`).
        let drops = drop_held(held);
        crate::link::standins::in_background(drops);
        self.publish();
    }
}

/// Drops the handles a closed connection held, each in its replica (one whose replica is gone
/// went with it).
async fn drop_held(held: HashMap<u64, Held>) {
    for (_, entry) in held {
        let resource = &entry.resource.name;
        let Ok(mut lease) = entry.instance.lease_on(entry.replica, resource).await else {
            continue;
        };
        if let Err(error) = lease.drop_resource(entry.handle).await {
            tracing::info!(%error, "dropping a closed connection's handle failed");
        }
    }
}

/// The handle ids a call's arguments name, with the resource each parameter wants.
fn named<'l>(
    params: &mut [Val],
    types: &[(String, Type)],
    ledger: &'l Ledger,
) -> Result<Vec<Named<'l>>, Failure> {
    let mut named = Vec::new();
    for (index, (param, (_, ty))) in params.iter_mut().zip(types).enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        resources::each_resource(param, ty, &mut |value, resource_ty, _| {
            let Val::U64(id) = *value else {
                return Ok(());
            };
            let Some(resource) = ledger.resource(resource_ty) else {
                return Err(Failure::Internal {
                    message: "a parameter's resource type has no name".to_owned(),
                });
            };
            named.push(Named {
                index,
                id,
                resource,
            });
            Ok(())
        })?;
    }
    Ok(named)
}

async fn drop_all(lease: &mut Lease, handles: impl Iterator<Item = ResourceAny>) {
    for handle in handles {
        if let Err(error) = lease.drop_resource(handle).await {
            tracing::info!(%error, "dropping a handle that could not be handed out failed");
        }
    }
}

/// A random id, from the operating system's randomness.
fn fresh_id() -> Result<u64, Failure> {
    let mut bytes = [0_u8; 8];
    getrandom::fill(&mut bytes).map_err(|error| Failure::Internal {
        message: format!("no randomness for a handle id: {error}"),
    })?;
    Ok(u64::from_le_bytes(bytes))
}

fn gone(resource: &str) -> Failure {
    Failure::ResourceGone {
        resource: resource.to_owned(),
    }
}
