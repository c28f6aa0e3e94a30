#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - `limits`: per-instance fuel, memory and table limits, and the limiter that enforces them.
//! - `engine`: the one engine configuration every runtime uses.
//! - `context`: `ContextBuilder` and the per-store `ExorunCtx` (WASI, resource table, user data).
//! - `system`: the `SystemComponent` trait for native providers, and `Rejection`.
//! - `chain`: the call chain of nested calls, for re-entrancy detection across links.
//! - `caller`: the principal the current call came from (a served caller's node key), for host
//!   functions on its path.
//! - `instance`: `InstanceHandle`, a named instance as one or more replicas (or one per call),
//!   each running one call at a time, with bounded waiting, re-entrancy detection, error
//!   classification, and failed replicas replaced.
//! - `supervision`: replicas, restart policy and back-off, and how each new context is staged.
//! - `registry`: the `Runtime`: apps and instances under typed ids.
//! - `ledger`: interfaces, functions and signatures of a component, and contract checks.
//! - `fixtures`: where the built guest apps live, for tests and the demo.

pub mod caller;
pub mod chain;
pub mod context;
pub mod engine;
pub mod fixtures;
pub mod instance;
pub mod ledger;
pub mod limits;
mod pool;
pub mod registry;
pub mod supervision;
pub mod system;
