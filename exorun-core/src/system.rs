//! The `SystemComponent` trait: native Rust that provides interfaces to guests, and
//! `Rejection`, what a host function raises to refuse a call with a code.
//!
//! A system component `install`s host functions into a linker and `configure`s what each
//! store's context needs (its state goes into user data, where its host functions find it).

use wasmtime::component::Linker;

use crate::context::ContextBuilder;
use crate::context::ExorunCtx;

/// A system component failed to install or configure itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The linker refused a definition (a duplicate, or a malformed name).
    #[error("cannot define {interface}: {source}")]
    Define {
        /// The interface, fully qualified (e.g. `exorun:test/math`).
        interface: String,
        /// What wasmtime said.
        #[source]
        source: exorun_common::Cause,
    },
    /// A system could not stage a store's context (a preopened directory that cannot be
    /// opened, say).
    #[error("{system}: {source}")]
    Configure {
        /// The system, by the interfaces it provides or its name.
        system: String,
        /// What went wrong.
        #[source]
        source: exorun_common::Cause,
    },
}

/// A native provider of one or more interfaces.
#[allow(
    clippy::module_name_repetitions,
    reason = "the owner's API names this type; embedders import it by this name"
)]
pub trait SystemComponent: Send + Sync {
    /// The interfaces this component provides, as fully qualified names
    /// (`exorun:host/kv`, `wasi:filesystem/types@0.2.12`).
    fn interfaces(&self) -> Vec<String>;

    /// Defines this component's host functions in `linker`.
    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), Error>;

    /// Stages what each store's context needs (its state, as user data).
    fn configure(&self, builder: &mut ContextBuilder) -> Result<(), Error>;
}

/// A host function's deliberate refusal of a call: an application or authorization error with
/// a stable numeric code. Raised as the host function's error, it traps the guest's call and
/// reaches the embedder as `instance::Error::Rejected`; a serving runtime reports it to a
/// remote caller with its code and message (neorpc's `DomainSpecific`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("domain error {code}: {message}")]
pub struct Rejection {
    /// What kind of rejection, for callers that handle it by code.
    pub code: u32,
    /// A human-readable explanation.
    pub message: String,
}

/// Wraps a linker error for `interface` as a `system::Error`, kept as its source.
pub fn define_error(interface: &str, error: wasmtime::Error) -> Error {
    Error::Define {
        interface: interface.to_owned(),
        source: exorun_common::Cause::new(error),
    }
}
