//! A composition: every instance of a checked manifest, running, and the manager that changes
//! it while it runs (`exorun:host/meta`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::OnceLock;

use exorun_bind::serve::Exports;
use exorun_core::instance::InstanceHandle;
use exorun_core::runtime::Runtime;
use exorun_transport::identity::NodeKey;

use crate::compose;
use crate::manifest::Manifest;
use crate::meta;

/// Every instance of a manifest, running.
#[derive(Debug)]
pub struct Composition {
    /// The runtime everything runs in.
    pub runtime: Arc<Runtime>,
    /// What `exorun:host/meta` manages the running runtime with.
    pub manager: Arc<meta::Manager>,
    /// Each instance by its manifest name.
    pub instances: BTreeMap<String, InstanceHandle>,
    /// The instances remote callers may reach.
    pub exports: Arc<Exports>,
    /// This runtime's node key, if the manifest (or `--key`) named one.
    pub key: Option<Arc<NodeKey>>,
}

impl Composition {
    /// Checks everything `manifest` names (every problem at once, each at its key), then
    /// starts every instance in manifest order and exports those it exports.
    pub async fn start(manifest: Manifest) -> Result<Self, compose::Error> {
        let cell = Arc::new(OnceLock::new());
        let meta = Arc::new(meta::Meta::new(Arc::clone(&cell)));
        let mut checked = compose::check(manifest, meta).await?;
        let (instances, exports) = checked.start().await?;
        let compose::Checked {
            runtime,
            key,
            composer,
            ..
        } = checked;
        let manager = meta::Manager::new(&runtime, &exports, composer);
        let _ = cell.set(Arc::clone(&manager));
        Ok(Self {
            runtime,
            manager,
            instances,
            exports,
            key,
        })
    }
}
