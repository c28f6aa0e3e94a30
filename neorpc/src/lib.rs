//! neorpc: the exorun wire protocol.
//!
//! - `frame`: call and reply envelopes around opaque, already encoded argument/result slabs.
//!   Pure framing: no wasmtime, no tokio, no I/O.
//! - `codec` (cargo feature `wasmtime`, on by default): component values <-> neopack slabs.
//! - `error`: `Error` for every encode/decode failure, `Failure` for what a remote side reports.
//!
//! The byte-level format is written down in `SPEC.md` beside this crate.

#[cfg(feature = "wasmtime")]
pub mod codec;
mod cursor;
pub mod error;
pub mod frame;
