//! Locating the guest components that `scripts/build_apps.sh` builds into `fixtures/` at the
//! workspace root.
//!
//! Tests and the demo read them from here. A missing component is an error that says how to
//! build it, so a test never passes or skips silently because the apps were not built.

use std::path::PathBuf;

/// Overrides the fixtures directory (the build script honours the same variable).
pub const FIXTURES_ENV: &str = "EXORUN_FIXTURES";

/// A guest component could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The component file does not exist.
    #[error(
        "guest app `{app}` not found at {path}: build the apps with `bash scripts/build_apps.sh`"
    )]
    NotBuilt {
        /// The app, by its registered name.
        app: String,
        /// The file's path.
        path: PathBuf,
    },
}

/// The fixtures directory: `$EXORUN_FIXTURES`, or `fixtures/` at the workspace root.
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(FIXTURES_ENV) {
        return PathBuf::from(dir);
    }
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .parent()
        .map_or(crate_dir.clone(), PathBuf::from)
        .join("fixtures")
}

/// The path of the built component for `app` (e.g. `math-provider`), if it exists.
pub fn path(app: &str) -> Result<PathBuf, Error> {
    let path = dir().join(format!("{app}.wasm"));
    if !path.is_file() {
        return Err(Error::NotBuilt {
            app: app.to_owned(),
            path,
        });
    }
    Ok(path)
}
