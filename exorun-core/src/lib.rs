#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - `limits`: per-instance fuel, memory and table limits, and the limiter that enforces them.
//! - `engine`: the one engine configuration every runtime uses.
//! - `context`: `ContextBuilder` and the per-store `ExorunCtx` (resource table, typed user
//!   data where each system keeps its state, the limiter).
//! - `system`: the `SystemComponent` trait for native providers, and `Rejection`.
//! - `call`: the context of the current call, in one task-local: its chain of nested calls
//!   (re-entrancy detection across links), who it came from and what a guard granted it, the
//!   party its failures count against, and its trace span.
//! - `trace`: W3C trace context (spans, sampling, an exporter hook), which remote links carry
//!   across runtimes.
//! - `instance`: `InstanceHandle`, a named instance as one or more replicas (or one per call),
//!   each running one call at a time, with bounded waiting, re-entrancy detection, error
//!   classification, and failed replicas replaced.
//! - `supervision`: replicas, restart policy and back-off, and how each new context is staged.
//! - `app`: compiled components with their ledger and exports resolved once.
//! - `runtime`: the `Runtime`: apps and instances under typed ids.
//! - `ledger`: interfaces, functions and signatures of a component (resources by name), and
//!   contract checks.
//! - `resources`: which types carry resource handles, and a walk over the handles in a value.
//!
//! The types an embedder names most are re-exported here: [`Runtime`], [`InstanceHandle`],
//! [`App`], [`AppId`], [`Export`], [`Ledger`], [`Limits`], [`ContextBuilder`], [`ExorunCtx`],
//! [`SystemComponent`], [`Rejection`], [`Replicas`] and [`Restart`].

pub mod app;
pub mod call;
pub mod context;
pub mod engine;
pub mod instance;
pub mod ledger;
pub mod limits;
pub mod resources;
pub mod runtime;
pub mod supervision;
pub mod system;
pub mod trace;

pub use app::App;
pub use app::AppId;
pub use app::Export;
pub use context::ContextBuilder;
pub use context::ExorunCtx;
pub use instance::InstanceHandle;
pub use ledger::Ledger;
pub use limits::Limits;
pub use runtime::Runtime;
pub use supervision::Replicas;
pub use supervision::Restart;
pub use system::Rejection;
pub use system::SystemComponent;
