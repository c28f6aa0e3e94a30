#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - `frame`: call and reply envelopes around opaque argument/result slabs, with its `Error`.
//!   Pure framing: no wasmtime, no tokio, no I/O.
//! - `failure`: `Failure`, the reason a remote side gives when a call fails, and its wire tags.
//! - `codec` (cargo feature `wasmtime`, on by default): component values <-> neopack slabs,
//!   with its `Error`.
//!
//! The byte-level format is written down in `SPEC.md` beside this crate.

#[cfg(feature = "wasmtime")]
pub mod codec;
mod cursor;
pub mod failure;
pub mod frame;
