//! The wasmtime layer: engine, per-store context, instance handles, the registry, the ledger, the `SystemComponent` trait and limits. Filled by issue 5.
