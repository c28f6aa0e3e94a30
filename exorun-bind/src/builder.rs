//! `InstanceBuilder`: one app, a provider for each import, context settings and limits.
//!
//! `instantiate` first checks everything with the ledger and refuses with every problem listed
//! (an unlinked import, a link for an interface the app does not import, a system that lacks
//! the interface, a missing function, a mismatched signature, a handle across a local or remote
//! link). Only then does it build the linker (systems first, then local and remote links, which
//! may take over interfaces a system also installs), stage the context, instantiate and
//! register. Nothing runs and nothing is sent before the checks pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use exorun_core::context::ContextBuilder;
use exorun_core::instance::InstanceHandle;
use exorun_core::ledger;
use exorun_core::limits::Limits;
use exorun_core::registry;
use exorun_core::registry::App;
use exorun_core::registry::AppId;
use exorun_core::registry::Runtime;
use exorun_core::system::SystemComponent;
use exorun_transport::client::Client;
use wasmtime::component::Linker;

use crate::binder;

/// Why an instance was not built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ledger found problems; all of them are listed, in interface order.
    #[error("`{app}` cannot be linked: {}", list(problems))]
    Refused {
        app: String,
        problems: Vec<ledger::Error>,
    },
    /// A link could not be defined after the checks passed (e.g. a local target failed).
    #[error("`{app}`: {source}")]
    Link {
        app: String,
        source: Box<binder::Error>,
    },
    /// The registry refused (unknown app, name taken, instantiation failed).
    #[error(transparent)]
    Registry(#[from] registry::Error),
}

fn list(problems: &[ledger::Error]) -> String {
    let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

/// What provides one import.
#[derive(Clone)]
pub enum Linkable {
    /// Native host code.
    System(Arc<dyn SystemComponent>),
    /// Another instance of this runtime.
    Local(InstanceHandle),
    /// The instance of this runtime registered as `name`, running `app`, looked up at each call
    /// (links may form cycles; a restarted instance is picked up).
    Named { app: AppId, name: String },
    /// An instance on another runtime, by name, through a shared client.
    Remote { client: Arc<Client>, target: String },
}

impl std::fmt::Debug for Linkable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Linkable::System(system) => write!(f, "System({:?})", system.interfaces()),
            Linkable::Local(handle) => write!(f, "Local({})", handle.id()),
            Linkable::Named { name, .. } => write!(f, "Named({name})"),
            Linkable::Remote { target, .. } => write!(f, "Remote({target})"),
        }
    }
}

/// Builds one instance of one app.
#[allow(
    clippy::module_name_repetitions,
    reason = "the owner's API names this type; embedders import it by this name"
)]
pub struct InstanceBuilder {
    runtime: Arc<Runtime>,
    app: App,
    links: BTreeMap<String, Linkable>,
    context: ContextBuilder,
    limits: Limits,
    name: Option<String>,
}

impl InstanceBuilder {
    /// A builder for `app`, with an empty context and default limits.
    pub fn new(runtime: &Arc<Runtime>, app: AppId) -> Result<Self, Error> {
        Ok(Self {
            runtime: Arc::clone(runtime),
            app: runtime.app(app)?,
            links: BTreeMap::new(),
            context: ContextBuilder::new(),
            limits: Limits::default(),
            name: None,
        })
    }

    /// Links the import `interface` to `linkable` (replacing an earlier link for it).
    pub fn link(mut self, interface: &str, linkable: Linkable) -> Self {
        self.links.insert(interface.to_owned(), linkable);
        self
    }

    /// Links every import that `system` provides and that is not linked yet.
    pub fn system(mut self, system: &Arc<dyn SystemComponent>) -> Self {
        for interface in system.interfaces() {
            let imported = self.app.ledger.imports.contains_key(&interface);
            if imported && !self.links.contains_key(&interface) {
                self.links
                    .insert(interface, Linkable::System(Arc::clone(system)));
            }
        }
        self
    }

    /// Sets the instance's limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Registers the instance under `name`, so remote callers can address it once exported.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// The context being staged (WASI settings, user data), for settings no system makes.
    pub fn context(&mut self) -> &mut ContextBuilder {
        &mut self.context
    }

    /// Every problem the ledger finds with the links as they stand; empty when all hold.
    pub fn check(&self) -> Vec<ledger::Error> {
        let ledger = &self.app.ledger;
        let mut problems = Vec::new();
        for (interface, import) in &ledger.imports {
            let Some(linkable) = self.links.get(interface) else {
                problems.push(ledger::Error::Unlinked {
                    interface: interface.clone(),
                });
                continue;
            };
            problems.extend(self.check_link(import, linkable));
        }
        let stray = self
            .links
            .keys()
            .filter(|interface| !ledger.imports.contains_key(*interface));
        problems.extend(stray.map(|interface| ledger::Error::NotImported {
            interface: interface.clone(),
        }));
        problems
    }

    /// The problems of one link: a system must name the interface; a local target must export
    /// it with equal signatures and no handles; a remote link must carry no handles.
    fn check_link(&self, import: &ledger::Interface, linkable: &Linkable) -> Vec<ledger::Error> {
        let local = |provider: &ledger::Ledger| {
            let provided = provider.exports.get(&import.name);
            ledger::check(import, provided, ledger::Link::Local)
        };
        match linkable {
            Linkable::System(system) => {
                if system.interfaces().contains(&import.name) {
                    return Vec::new();
                }
                vec![ledger::Error::InterfaceNotFound {
                    interface: import.name.clone(),
                }]
            }
            Linkable::Local(target) => local(target.ledger()),
            Linkable::Named { app, .. } => match self.runtime.app(*app) {
                Ok(provider) => local(&provider.ledger),
                Err(_) => vec![ledger::Error::UnknownProvider {
                    interface: import.name.clone(),
                    provider: format!("app #{}", app.0),
                }],
            },
            Linkable::Remote { .. } => ledger::crossing(import, ledger::Link::Remote),
        }
    }

    /// Checks, links, instantiates and registers the instance.
    pub async fn instantiate(mut self) -> Result<InstanceHandle, Error> {
        let problems = self.check();
        if !problems.is_empty() {
            return Err(Error::Refused {
                app: self.app.name.clone(),
                problems,
            });
        }
        let linker = self.linker().await.map_err(|source| Error::Link {
            app: self.app.name.clone(),
            source: Box::new(source),
        })?;
        let prepared = self.runtime.prepare(self.app.id, &linker)?;
        let handle = self
            .runtime
            .instantiate_prepared(&prepared, self.context, self.limits, self.name.as_deref())
            .await?;
        Ok(handle)
    }

    /// Systems first (each installed and configured once), then local and remote links.
    async fn linker(&mut self) -> Result<Linker<exorun_core::context::ExorunCtx>, binder::Error> {
        let mut linker = Linker::new(self.runtime.engine());
        linker.allow_shadowing(true);
        // Identities as addresses: raw pointers would make this future `!Send`.
        let mut installed: Vec<usize> = Vec::new();
        for linkable in self.links.values() {
            let Linkable::System(system) = linkable else {
                continue;
            };
            let identity = Arc::as_ptr(system).cast::<()>().addr();
            if installed.contains(&identity) {
                continue;
            }
            installed.push(identity);
            binder::link_system(&mut linker, &mut self.context, system.as_ref())?;
        }
        let ledger = &self.app.ledger;
        for (interface, linkable) in &self.links {
            match linkable {
                Linkable::System(_) => {}
                Linkable::Local(target) => {
                    binder::link_local_interface(&mut linker, ledger, interface, target).await?;
                }
                Linkable::Named { app, name } => {
                    let runtime = &self.runtime;
                    binder::link_named_interface(
                        &mut linker,
                        ledger,
                        interface,
                        runtime,
                        *app,
                        name,
                    )?;
                }
                Linkable::Remote { client, target } => {
                    binder::link_remote_interface(&mut linker, ledger, interface, client, target)?;
                }
            }
        }
        Ok(linker)
    }
}
