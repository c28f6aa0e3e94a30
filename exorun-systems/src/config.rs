//! `wasi:config/store`: an instance's configuration (name-value pairs set by its embedder or
//! manifest, `config = { roots = "…" }`), on wasmtime's own implementation
//! (wasmtime-wasi-config). Each instance reads only its own values.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use wasmtime::component::Linker;
use wasmtime_wasi_config::WasiConfig;
use wasmtime_wasi_config::WasiConfigVariables;

/// The interface this system provides.
pub const INTERFACE: &str = "wasi:config/store@0.2.0-rc.1";

/// What an instance that was never configured reads: nothing.
static NONE: LazyLock<WasiConfigVariables> = LazyLock::new(WasiConfigVariables::new);

/// The config system: these values, for every instance it configures.
#[derive(Debug, Clone, Default)]
pub struct Config {
    values: BTreeMap<String, String>,
}

impl Config {
    /// Serves `values`.
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self { values }
    }
}

/// The values in a store's user data.
struct Values(WasiConfigVariables);

fn values(ctx: &mut ExorunCtx) -> WasiConfig<'_> {
    match ctx.user::<Values>() {
        Some(values) => WasiConfig::new(&values.0),
        None => WasiConfig::new(&NONE),
    }
}

impl SystemComponent for Config {
    fn interfaces(&self) -> Vec<String> {
        vec![INTERFACE.to_owned()]
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        wasmtime_wasi_config::add_to_linker(linker, values)
            .map_err(|error| system::define_error(INTERFACE, error))
    }

    fn configure(&self, builder: &mut ContextBuilder) -> Result<(), system::Error> {
        let mut variables = WasiConfigVariables::new();
        for (name, value) in &self.values {
            variables.insert(name, value);
        }
        builder.insert(Values(variables));
        Ok(())
    }
}
