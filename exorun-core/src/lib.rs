#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - `limits`: per-instance fuel, memory and table limits, and the limiter that enforces them.
//! - `engine`: the one engine configuration every runtime uses.
//! - `context`: `ContextBuilder` and the per-store `ExorunCtx` (resource table, typed user
//!   data where each system keeps its state, the limiter).
//! - `system`: the `SystemComponent` trait for native providers, and `Rejection`.
//! - `chain`: the call chain of nested calls, for re-entrancy detection across links.
//! - `principal`: the principal the current call came from (a served caller's node key), for host
//!   functions on its path.
//! - `trace`: the trace and span the current call belongs to (W3C trace context), which remote
//!   links carry across runtimes.
//! - `instance`: `InstanceHandle`, a named instance as one or more replicas (or one per call),
//!   each running one call at a time, with bounded waiting, re-entrancy detection, error
//!   classification, and failed replicas replaced.
//! - `supervision`: replicas, restart policy and back-off, and how each new context is staged.
//! - `app`: compiled components with their ledger and exports resolved once.
//! - `registry`: the `Runtime`: apps and instances under typed ids.
//! - `ledger`: interfaces, functions and signatures of a component (resources by name), and
//!   contract checks.
//! - `resources`: which types carry resource handles, and a walk over the handles in a value.

pub mod app;
pub mod chain;
pub mod context;
pub mod engine;
pub mod instance;
pub mod ledger;
pub mod limits;
pub mod principal;
pub mod registry;
pub mod resources;
pub mod supervision;
pub mod system;
pub mod throttle;
pub mod trace;
