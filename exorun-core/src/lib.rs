//! exorun-core: the wasmtime layer. Only this crate creates `Engine`s and `Store`s.
//!
//! - `limits`: per-instance fuel, memory and table limits, and the limiter that enforces them.
//! - `engine`: the one engine configuration every runtime uses.
//! - `context`: `ContextBuilder` and the per-store `ExorunCtx` (WASI, resource table, user data).
//! - `system`: the `SystemComponent` trait for native providers, and `DomainError`.
//! - `instance`: `InstanceHandle`, one running instance behind an async mutex, with
//!   re-entrancy detection and trap classification.
//! - `registry`: the `Runtime`: apps, peers and instances under typed ids.
//! - `ledger`: interfaces, functions and signatures of a component, and contract checks.
//! - `fixtures`: where the built guest apps live, for tests and the demo.

pub mod context;
pub mod engine;
pub mod fixtures;
pub mod instance;
pub mod ledger;
pub mod limits;
pub mod registry;
pub mod system;
