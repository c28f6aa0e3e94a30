//! The library half of the `exorun` command, what its binary and its tests share beyond
//! `exorun-host` (manifests, compositions, managing): `--invoke` call text (`invoke`), the
//! metrics endpoint (`prometheus`: `/metrics`, `/healthz`, `/readyz` on exorun-http's bounded
//! server) and the OTLP span exporter (`otlp`). Argument parsing, output and process wiring
//! live in the binary's modules (`main`, and one `*_command` module per command family).

pub mod invoke;
pub mod otlp;
pub mod prometheus;
