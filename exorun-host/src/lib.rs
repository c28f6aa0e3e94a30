#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - `manifest`: the manifest format, TOML read into typed settings, every mistake reported at
//!   its key before anything is compiled or connected.
//! - `compose`: a checked manifest's providers (systems, stores, one channel per peer, NATS
//!   lattices), every instance linked and checked, every problem at once; how instances are
//!   started later with the same providers.
//! - `composition`: [`Composition`], every instance of a manifest running, and its manager.
//! - `meta`: the manager behind `exorun:host/meta` (apps added and removed, instances started
//!   and stopped, what runs listed, kept in a state directory) and the privileged system that
//!   exposes it to the one instance a manifest trusts with it.
//! - `manage`: managing another runtime: the manifest `exorun serve --manage` runs (the `auth`
//!   and `meta` components added), and deploy, list and stop calls to its meta export.
//! - `capability`: capability files: issued, delegated, shown, revoked, and read for the
//!   links that present them.

pub mod capability;
pub mod compose;
mod composition;
pub mod manage;
pub mod manifest;
pub mod meta;

pub use composition::Composition;
pub use manifest::Manifest;
