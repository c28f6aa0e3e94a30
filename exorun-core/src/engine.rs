//! The engine configuration every exorun runtime uses: the component model, async host calls,
//! and fuel metering (so every call has a bound on the work it may do).

/// The engine could not be created.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// wasmtime refused the configuration.
    #[error("engine configuration refused: {source}")]
    Config {
        /// What wasmtime said.
        #[source]
        source: exorun_common::Cause,
    },
}

/// A new engine with exorun's configuration.
pub fn new() -> Result<wasmtime::Engine, Error> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    wasmtime::Engine::new(&config).map_err(|error| Error::Config {
        source: exorun_common::Cause::new(error),
    })
}
