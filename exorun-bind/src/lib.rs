#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - `builder`: `InstanceBuilder`, which checks every link (the ledger for contracts, listing
//!   every problem at once) before it links, instantiates and registers anything.
//! - `link`: the import side, each import linked to a system, a local instance (by handle or by
//!   name) or a remote one; `link::remote` is the one way to call another runtime with
//!   component values, and `link::standins` the handles an importer holds across links.
//! - `serve`: the export side, `Exports`, the dispatcher that lets remote callers reach the
//!   instances explicitly exported (exorun-transport's `server::Server` accepts connections and
//!   answers lattices for it), how an instance's failure reaches a remote caller, the ids a
//!   serving runtime hands each connection for its resources, and `serve::guard`, how a guarded
//!   export asks its guard about each call.
//!
//! Between them, one wrapper observes every call made and served (metrics, a debug line, the
//! trace span), and the call chain and trace context cross between the stacks in one place.

pub mod builder;
pub mod link;
mod observe;
pub mod serve;
mod wire;

pub use builder::InstanceBuilder;
pub use builder::Linkable;
pub use serve::Allow;
pub use serve::Exports;
