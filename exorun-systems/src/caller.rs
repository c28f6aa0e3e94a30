//! `exorun:host/caller`: who called the current call (its key, as its connection proved it)
//! and the caveats a guard granted it with, read from `exorun_core::call`. The host
//! decides nothing here: an app that wants rules finer than a function enforces them itself.

use exorun_core::call;
use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use wasmtime::component::Linker;

/// The interface this system provides.
pub const INTERFACE: &str = "exorun:host/caller";

/// The caller system (no state of its own).
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller;

impl SystemComponent for Caller {
    fn interfaces(&self) -> Vec<String> {
        vec![INTERFACE.to_owned()]
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        let define = |e: wasmtime::Error| system::define_error(INTERFACE, e);
        let mut instance = linker.instance(INTERFACE).map_err(define)?;
        instance
            .func_wrap("key", |_, (): ()| Ok((call::principal(),)))
            .map_err(define)?;
        instance
            .func_wrap("caveats", |_, (): ()| Ok((call::caveats(),)))
            .map_err(define)
    }

    fn configure(&self, _: &mut ContextBuilder) -> Result<(), system::Error> {
        Ok(())
    }
}
