//! Apps: compiled components, with their ledger (interfaces, functions, signatures) and their
//! exported functions resolved once, so a call skips the lookup.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::Component;
use wasmtime::component::ComponentExportIndex;
use wasmtime::component::types::ComponentItem;

use crate::ledger::Ledger;
use crate::ledger::Signature;

/// The id of a registered app.
#[allow(
    clippy::module_name_repetitions,
    reason = "the owner's API names this type; embedders import it by this name"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(pub u64);

/// A compiled component and what it imports and exports.
#[derive(Clone)]
pub struct App {
    /// Its id.
    pub id: AppId,
    /// The name it was registered under.
    pub name: String,
    /// The compiled component.
    pub component: Component,
    /// Its interfaces, functions and signatures.
    pub ledger: Arc<Ledger>,
    /// Each exported interface function, resolved to an index once.
    exports: Arc<BTreeMap<String, BTreeMap<String, Export>>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// An exported function of an app, resolved once: valid in every instance of that app, with
/// its signature, and cheap to clone into a call.
#[derive(Debug, Clone)]
pub struct Export {
    index: ComponentExportIndex,
    signature: Arc<Signature>,
}

impl Export {
    /// The function's parameter and result types.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    pub(crate) fn index(&self) -> ComponentExportIndex {
        self.index
    }
}

impl App {
    /// An app of `component`, registered as `name` under `id`: its ledger read and its exports
    /// resolved now.
    pub(crate) fn new(id: AppId, name: &str, component: Component) -> Self {
        let ledger = Arc::new(Ledger::of(component.engine(), &component));
        let exports = Arc::new(resolve_exports(&component, &ledger));
        Self {
            id,
            name: name.to_owned(),
            component,
            ledger,
            exports,
        }
    }

    /// The exported function `interface#function` (`interface` empty for a root export).
    pub fn export(&self, interface: &str, function: &str) -> Option<Export> {
        if interface.is_empty() {
            return root_export(&self.component, &self.ledger, function);
        }
        self.exports.get(interface)?.get(function).cloned()
    }
}

/// A function exported at the component's root (not inside an interface), looked up by name.
fn root_export(component: &Component, ledger: &Ledger, function: &str) -> Option<Export> {
    let index = component.get_export_index(None, function)?;
    let ty = component.component_type();
    let (_, item) = ty
        .exports(component.engine())
        .find(|(name, _)| *name == function)?;
    let ComponentItem::ComponentFunc(func) = item.ty else {
        return None;
    };
    let signature = Arc::new(ledger.signature(&func));
    Some(Export { index, signature })
}

/// Each function of each exported interface in `ledger`, resolved to its index in `component`.
fn resolve_exports(
    component: &Component,
    ledger: &Ledger,
) -> BTreeMap<String, BTreeMap<String, Export>> {
    let mut exports = BTreeMap::new();
    for (name, interface) in &ledger.exports {
        let Some(parent) = component.get_export_index(None, name) else {
            continue;
        };
        let functions = interface
            .functions
            .iter()
            .filter_map(|(function, signature)| {
                let index = component.get_export_index(Some(&parent), function)?;
                let signature = Arc::new(signature.clone());
                Some((function.clone(), Export { index, signature }))
            });
        exports.insert(name.clone(), functions.collect());
    }
    exports
}
