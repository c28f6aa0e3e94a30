//! Test plumbing for exorun's own tests, benches and examples: not a library for other
//! projects (it is not published, and it bakes in where this workspace keeps its built guest
//! apps).
//!
//! - `fixtures`: where the built guest apps live; a missing one is an error that says how to
//!   build it, so no test passes or skips silently because the apps were not built.

pub mod fixtures;
