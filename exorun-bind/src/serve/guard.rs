//! Guards: an instance of this runtime that decides, call by call, whether a guarded export may
//! be called (`exorun:auth/guard#check`, which the `auth` app exports). The host holds the
//! mechanism only: it asks the guard with what it knows of a call (the caller's key as its
//! connection proved it, the capability the call presented, the export, interface and function,
//! the time) and does what the guard answers. What a capability means, which keys are trusted,
//! what is revoked: all of that is the guard's.
//!
//! - **When.** After the export's allow list, before the call waits for its instance or its
//!   arguments are decoded: a denied call costs its callee nothing.
//! - **Fail closed.** A guard that is missing, does not export the check, traps, runs out of
//!   fuel or memory, or takes longer than `CHECK_TIMEOUT` (waiting for a replica of it included)
//!   denies the call (`PermissionDenied`,
//!   with what happened), and the failure is logged; its supervision restarts it like any other
//!   instance. A guard that is overloaded answers `Overloaded` (the call did not run either).
//! - **Reasons.** A denial carries the guard's reason, cut to `REASON_BYTES_MAX` bytes.
//! - **Cache.** A grant is kept for the connection it was made on (the caller's key is the
//!   connection's, fixed) for the same export, interface, function and capability bytes, until
//!   the grant's own expiry or `GRANT_TTL`, whichever is sooner: at most `GRANTS_PER_CONNECTION`
//!   per connection (the oldest goes first), dropped when the connection closes. `GRANT_TTL` is
//!   how long a revocation the guard learns of may take to reach a connection that was already
//!   granted.
//! - **Fairness.** A guard is asked as the caller (its party, as any call runs): a caller whose
//!   checks make the guard trap is held back by the guard's restart back-off, not everyone.
//!   At most `CHECKS_PER_SOURCE_MAX` checks of one source are asked at once; more are answered
//!   `Overloaded` at once.
//! - **Lattices.** A call from a NATS lattice has no caller key (a lattice's members are not
//!   authenticated to each other): a guarded export denies it.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;
use std::time::SystemTime;

use bytes::Bytes;
use exorun_core::instance;
use exorun_core::runtime::Runtime;
use exorun_transport::dispatch;
use neorpc::failure::Failure;
use tokio::time::Instant;
use wasmtime::component::Val;

/// The interface a guard exports.
pub const INTERFACE: &str = "exorun:auth/guard";
/// The function a guard exports in it.
pub const FUNCTION: &str = "check";
/// Longest a guard may take to decide one call, waiting for one of its replicas included,
/// before the call is denied.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a grant is kept for a connection (how late a revocation may take effect).
pub const GRANT_TTL: Duration = Duration::from_secs(60);
/// Grants kept per connection (the oldest is dropped for a new one).
pub const GRANTS_PER_CONNECTION: usize = 32;
/// Longest denial reason passed on to a caller, in bytes (longer ones are cut).
pub const REASON_BYTES_MAX: usize = 256;
/// Guards asked at once on behalf of one source (an IPv4 address or IPv6 /64; one connection
/// when the source is not an address): past it a call is answered `Overloaded` at once rather
/// than queue for the guard, so a flood of cold capabilities from one host waits behind its
/// own checks, not everyone's. Kept grants are not counted: they ask nothing.
pub const CHECKS_PER_SOURCE_MAX: usize = 4;

/// Why an instance cannot guard an export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No instance of this runtime is registered under the guard's name.
    #[error("no instance `{guard}` to guard the export")]
    NotFound {
        /// The guard's name.
        guard: String,
    },
    /// The instance does not export `exorun:auth/guard#check`.
    #[error("instance `{guard}` does not export {INTERFACE}#{FUNCTION}, so it cannot guard")]
    NotAGuard {
        /// The guard's name.
        guard: String,
    },
}

/// A call, as the guard is asked about it.
pub(crate) struct Ask<'a> {
    pub(crate) origin: &'a dispatch::Origin,
    /// The bytes the call holds while it waits for the guard (its arguments and capability),
    /// counted against the guard's `bytes_waiting_max`.
    pub(crate) weight: u64,
    pub(crate) capability: Option<Bytes>,
    pub(crate) export: &'a str,
    pub(crate) interface: &'a str,
    pub(crate) function: &'a str,
}

impl Ask<'_> {
    fn denied(&self, reason: &str) -> Failure {
        Failure::PermissionDenied {
            instance: self.export.to_owned(),
            interface: self.interface.to_owned(),
            reason: cut(reason),
        }
    }

    fn is(&self, grant: &Grant) -> bool {
        grant.export == self.export
            && grant.interface == self.interface
            && grant.function == self.function
            && grant.capability == self.capability
    }
}

/// A grant kept for a connection.
struct Grant {
    export: String,
    interface: String,
    function: String,
    capability: Option<Bytes>,
    caveats: Vec<String>,
    until: Instant,
}

/// What guard checks in flight are counted by: a source's address, or a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Asker {
    Source(std::net::IpAddr),
    Connection(u64),
}

/// The grants every connection holds, asked of guards by name, and the checks in flight per
/// source.
#[derive(Default)]
pub(crate) struct Guards {
    grants: Mutex<HashMap<u64, VecDeque<Grant>>>,
    asking: Mutex<HashMap<Asker, usize>>,
}

/// A check in flight, counted against its source until it ends (or is dropped).
struct Asking<'g> {
    guards: &'g Guards,
    asker: Asker,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        let mut asking = self.guards.asking();
        let Some(count) = asking.get_mut(&self.asker) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            asking.remove(&self.asker);
        }
    }
}

impl Guards {
    fn grants(&self) -> std::sync::MutexGuard<'_, HashMap<u64, VecDeque<Grant>>> {
        self.grants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn asking(&self) -> std::sync::MutexGuard<'_, HashMap<Asker, usize>> {
        self.asking.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more check of `origin`'s source, or `None` when it has all it may.
    fn ask_for(&self, origin: &dispatch::Origin) -> Option<Asking<'_>> {
        let asker = match origin.source() {
            Some(address) => Asker::Source(address),
            None => Asker::Connection(origin.connection()),
        };
        let mut asking = self.asking();
        let count = asking.entry(asker).or_insert(0);
        if *count >= CHECKS_PER_SOURCE_MAX {
            return None;
        }
        *count += 1;
        Some(Asking {
            guards: self,
            asker,
        })
    }

    /// Grants kept now, over every connection.
    pub(crate) fn kept(&self) -> usize {
        self.grants().values().map(VecDeque::len).sum()
    }

    /// The caveats `guard` (an instance of `runtime`) grants the call `ask` with, from the
    /// connection's kept grants or by asking it; or the failure the caller gets.
    pub(crate) async fn check(
        &self,
        runtime: &Runtime,
        guard: &str,
        ask: &Ask<'_>,
    ) -> Result<Vec<String>, Failure> {
        if ask.origin.via_lattice() {
            return Err(ask.denied("a guarded export is not served on a lattice (no caller key)"));
        }
        let connection = ask.origin.connection();
        if let Some(caveats) = self.kept_for(connection, ask) {
            return Ok(caveats);
        }
        let Some(asking) = self.ask_for(ask.origin) else {
            return Err(Failure::Overloaded);
        };
        let asked = ask_guard(runtime, guard, ask).await;
        drop(asking);
        let (caveats, not_after) = asked?;
        let until = Instant::now() + GRANT_TTL.min(until_unix(not_after));
        let mut grants = self.grants();
        let kept = grants.entry(connection).or_default();
        if kept.len() >= GRANTS_PER_CONNECTION {
            kept.pop_front();
        }
        kept.push_back(Grant {
            export: ask.export.to_owned(),
            interface: ask.interface.to_owned(),
            function: ask.function.to_owned(),
            // A copy: the presented bytes are a slice of the whole call frame, which a kept
            // grant must not pin.
            capability: ask.capability.as_deref().map(Bytes::copy_from_slice),
            caveats: caveats.clone(),
            until,
        });
        Ok(caveats)
    }

    fn kept_for(&self, connection: u64, ask: &Ask<'_>) -> Option<Vec<String>> {
        let mut grants = self.grants();
        let kept = grants.get_mut(&connection)?;
        let now = Instant::now();
        kept.retain(|grant| grant.until > now);
        let grant = kept.iter().find(|grant| ask.is(grant))?;
        Some(grant.caveats.clone())
    }

    /// Drops what `connection` was granted.
    pub(crate) fn closed(&self, connection: u64) {
        self.grants().remove(&connection);
    }

    /// Drops every grant for `export`, on every connection: it was exported anew (perhaps with
    /// another guard) or not at all any more.
    pub(crate) fn forget_export(&self, export: &str) {
        for kept in self.grants().values_mut() {
            kept.retain(|grant| grant.export != export);
        }
    }
}

/// Checks that `guard` names an instance of `runtime` that exports the check.
pub(crate) fn check_guard(runtime: &Runtime, guard: &str) -> Result<(), Error> {
    let Ok(handle) = runtime.instance_named(guard) else {
        return Err(Error::NotFound {
            guard: guard.to_owned(),
        });
    };
    if handle.app().export(INTERFACE, FUNCTION).is_none() {
        return Err(Error::NotAGuard {
            guard: guard.to_owned(),
        });
    }
    Ok(())
}

/// Asks the guard, failing closed: a grant's caveats and expiry, or the failure.
async fn ask_guard(
    runtime: &Runtime,
    guard: &str,
    ask: &Ask<'_>,
) -> Result<(Vec<String>, u64), Failure> {
    let failed = |what: &str| {
        tracing::warn!(
            guard,
            export = ask.export,
            what,
            "the guard failed: call denied"
        );
        ask.denied(&format!("the guard `{guard}` failed: {what}"))
    };
    let Ok(handle) = runtime.instance_named(guard) else {
        return Err(failed("it is not running"));
    };
    let Some(export) = handle.app().export(INTERFACE, FUNCTION) else {
        return Err(failed("it does not export the check"));
    };
    // One deadline for waiting for a replica and for the answer.
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let Ok(leased) = tokio::time::timeout_at(deadline, handle.lease(ask.weight)).await else {
        return Err(failed(&format!("no answer within {CHECK_TIMEOUT:?}")));
    };
    let mut lease = match leased {
        Ok(lease) => lease,
        Err(
            instance::Error::Busy { .. }
            | instance::Error::TooManyWaiting { .. }
            | instance::Error::TooManyBytesWaiting { .. },
        ) => return Err(Failure::Overloaded),
        Err(error) => return Err(failed(&error.to_string())),
    };
    let mut results = vec![Val::Bool(false)];
    let params = [request(ask)];
    let call = lease.call(&export, &params, &mut results);
    match tokio::time::timeout_at(deadline, call).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(failed(&error.to_string())),
        Err(_) => return Err(failed(&format!("no answer within {CHECK_TIMEOUT:?}"))),
    }
    let [Val::Result(answer)] = results.as_slice() else {
        return Err(failed("its answer is not a result"));
    };
    match answer {
        Ok(Some(grant)) => grant_of(grant).ok_or_else(|| failed("its grant is malformed")),
        Err(Some(reason)) => {
            let Val::String(reason) = reason.as_ref() else {
                return Err(failed("its denial is malformed"));
            };
            Err(ask.denied(reason))
        }
        Ok(None) | Err(None) => Err(failed("its answer is malformed")),
    }
}

/// The guard's `request` record for `ask`.
fn request(ask: &Ask<'_>) -> Val {
    let caller = ask
        .origin
        .key()
        .map(|key| Box::new(Val::String(key.to_string())));
    let capability = ask.capability.as_ref().map(|bytes| {
        let bytes = bytes.iter().map(|byte| Val::U8(*byte)).collect();
        Box::new(Val::List(bytes))
    });
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    Val::Record(vec![
        ("caller".to_owned(), Val::Option(caller)),
        ("capability".to_owned(), Val::Option(capability)),
        ("export".to_owned(), Val::String(ask.export.to_owned())),
        ("iface".to_owned(), Val::String(ask.interface.to_owned())),
        ("function".to_owned(), Val::String(ask.function.to_owned())),
        ("now".to_owned(), Val::U64(now)),
    ])
}

/// A `grant` record's caveats and not-after time.
fn grant_of(grant: &Val) -> Option<(Vec<String>, u64)> {
    let Val::Record(fields) = grant else {
        return None;
    };
    let [(_, Val::List(caveats)), (_, Val::U64(not_after))] = fields.as_slice() else {
        return None;
    };
    let caveats = caveats.iter().map(|caveat| {
        let Val::String(text) = caveat else {
            return None;
        };
        Some(text.clone())
    });
    Some((caveats.collect::<Option<Vec<_>>>()?, *not_after))
}

/// How long from now until the Unix time `not_after` (zero if past).
fn until_unix(not_after: u64) -> Duration {
    let Some(at) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(not_after)) else {
        return Duration::MAX;
    };
    at.duration_since(SystemTime::now()).unwrap_or_default()
}

/// `reason`, cut to `REASON_BYTES_MAX` bytes on a character boundary.
fn cut(reason: &str) -> String {
    if reason.len() <= REASON_BYTES_MAX {
        return reason.to_owned();
    }
    let mut end = REASON_BYTES_MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
