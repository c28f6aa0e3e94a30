#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
//!
//! ## Modules
//!
//! - `wasi`: WASI preview 2 (preopened directories, env, args, stdio).
//! - `logging`: `exorun:host/logging`, to `tracing` and an optional readable sink.
//! - `kv`: `exorun:host/kv` over a shared concurrent map (one store, many instances).
//! - `config`: `wasi:config/store`, an instance's name-value configuration.
//! - `caller`: `exorun:host/caller`, who called the current call and what a guard granted.
//! - `keyvalue`: `wasi:keyvalue` (store, atomics, batch) over the same stores as `kv`.
//! - `http` (feature `http`): `wasi:http` types and outgoing requests to allowed hosts only.

pub mod caller;
pub mod config;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod keyvalue;
pub mod kv;
pub mod logging;
pub mod wasi;
