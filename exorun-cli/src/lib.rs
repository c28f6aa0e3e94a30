//! The library half of the `exorun` command: the manifest format (`manifest`), building a
//! running composition from a checked manifest (`compose`), and `--invoke` call text
//! (`invoke`). The `exorun` binary is a thin command line over these; another tool can read
//! and start the same manifests with them.

pub mod capability;
pub mod compose;
pub mod invoke;
pub mod manage;
pub mod manifest;
pub mod meta;
pub mod observe;
pub mod otlp;
