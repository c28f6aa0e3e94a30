#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - `builder`: `InstanceBuilder`, which checks every link (the ledger for contracts, listing
//!   every problem at once) before it links, instantiates and registers anything.
//! - `binder`: the three kinds of link the builder defines: system, local (by handle or by
//!   name) and remote; `forward` makes each imported function a host function that forwards.
//! - `remote`: remote links over a shared `client::Channel`, and the conversion of call chains
//!   between exorun-core and the wire.
//! - `standins`: the handles an importer holds across links (host resources standing for the
//!   owner's), swapped on the way to and from each call; `handles`: the ids a serving runtime
//!   hands each connection for its resources.
//! - `exports`: `Exports`, the dispatcher that lets remote callers reach the instances
//!   explicitly exported (exorun-transport's `server::Server` accepts connections and answers
//!   lattices for it), and how an instance's failure reaches a remote caller.
//! - `guard`: how a guarded export asks its guard instance (`exorun:auth/guard`) about each
//!   call, failing closed, and the grants kept per connection.
//! - `http` (feature `http`): serving `wasi:http/incoming-handler` instances over HTTP/1.1
//!   and TLS, routed by path prefix, bounded like the neorpc listener.

pub mod binder;
pub mod builder;
pub mod exports;
mod forward;
pub mod guard;
pub mod handles;
#[cfg(feature = "http")]
pub mod http;
pub mod remote;
pub mod standins;
