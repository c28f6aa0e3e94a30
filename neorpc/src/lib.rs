#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
//!
//! ## Modules
//!
//! - `frame`: call and reply envelopes around opaque argument/result slabs, with its `Error`.
//!   Pure framing: no wasmtime, no tokio, no I/O.
//! - `failure`: `Failure`, the reason a remote side gives when a call fails, and its wire tags.
//! - `codec` (cargo feature `wasmtime`, off by default): component values <-> neopack slabs,
//!   with its `Error`.
//!
//! The byte-level format is written down in `SPEC.md` beside this crate.

#[cfg(feature = "wasmtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "wasmtime")))]
pub mod codec;
mod cursor;
pub mod failure;
pub mod frame;
