//! exorun-core: the wasmtime layer. Only this crate creates `Engine`s and `Store`s.
//!
//! - `fixtures`: where the built guest apps live, for tests and the demo.

pub mod fixtures;
