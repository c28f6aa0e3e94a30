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

mod exports;
mod failure;
pub mod guard;
mod handles;
mod job;

pub use exports::Allow;
pub use exports::Error;
pub use exports::Exports;
pub use handles::HANDLES_MAX;
pub use handles::HANDLES_PER_CONNECTION_MAX;
pub use handles::HANDLES_PER_SOURCE_MAX;
