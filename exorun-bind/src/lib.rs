//! exorun-bind: where an app's imports meet their providers.
//!
//! - `binder`: the three kinds of link. `link_system` lets a `SystemComponent` install itself;
//!   `link_local_interface` forwards each function to another instance in this runtime, passing
//!   `Val`s straight between the two stores; `link_remote_interface` sends each call through a
//!   shared neorpc client to an instance on another runtime.
//! - `builder`: `InstanceBuilder`, which checks every contract with the ledger (listing every
//!   problem at once) before it links, instantiates and registers anything.
//! - `server`: `Exports`, the dispatcher that lets remote callers reach the instances explicitly
//!   exported, and `serve`, which accepts TCP or Unix connections for it.

pub mod binder;
pub mod builder;
pub mod server;
