#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - `limits`: per-instance fuel, memory and table limits, and the limiter that enforces them.
//! - `engine`: the one engine configuration every runtime uses.
//! - `context`: `ContextBuilder` and the per-store `ExorunCtx` (WASI, resource table, user data).
//! - `system`: the `SystemComponent` trait for native providers, and `Rejection`.
//! - `chain`: the call chain of nested calls, for re-entrancy detection across links.
//! - `instance`: `InstanceHandle`, one running instance behind an async mutex, with
//!   re-entrancy detection and error classification.
//! - `registry`: the `Runtime`: apps and instances under typed ids.
//! - `ledger`: interfaces, functions and signatures of a component, and contract checks.
//! - `fixtures`: where the built guest apps live, for tests and the demo.

pub mod chain;
pub mod context;
pub mod engine;
pub mod fixtures;
pub mod instance;
pub mod ledger;
pub mod limits;
pub mod registry;
pub mod system;
