#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - `builder`: `InstanceBuilder`, which checks every link (the ledger for contracts, listing
//!   every problem at once) before it links, instantiates and registers anything.
//! - `binder`: the three kinds of link the builder defines: system, local (by handle or by
//!   name) and remote.
//! - `remote`: remote links over a shared neorpc client, and the conversion of call chains
//!   between exorun-core and the wire.
//! - `server`: `Exports`, the dispatcher that lets remote callers reach the instances explicitly
//!   exported, and `serve`, which accepts connections for it.

pub mod binder;
pub mod builder;
pub mod remote;
pub mod server;
