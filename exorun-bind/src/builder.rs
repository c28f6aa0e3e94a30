//! `InstanceBuilder`: one app, a provider for each import, context settings and limits.
//!
//! `checked` (and so `instantiate`) first checks everything, with the ledger for contracts, and
//! refuses with every problem listed (an unlinked import, a link for an interface the app does
//! not import, a system that lacks the interface, a missing function, a mismatched signature,
//! an interface that hands out resources linked to a per-call instance or through a channel
//! that cannot keep handles apart). A `Checked` builder then builds the linker (systems first,
//! then local and remote links, which may take over interfaces a system also installs) without
//! checking again, stages the context, instantiates and registers. Nothing runs and nothing is
//! sent before the checks pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use exorun_core::app::App;
use exorun_core::app::AppId;
use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::instance::InstanceHandle;
use exorun_core::ledger;
use exorun_core::limits::Limits;
use exorun_core::runtime;
use exorun_core::runtime::Runtime;
use exorun_core::supervision::Configure;
use exorun_core::supervision::Replicas;
use exorun_core::supervision::Restart;
use exorun_core::supervision::Spec;
use exorun_core::system::SystemComponent;
use exorun_transport::client::Channel;
use wasmtime::component::Linker;

use crate::link;
use crate::link::Kinds;

/// Why an instance was not built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The checks found problems; all of them are listed, in interface order.
    #[error("`{app}` cannot be linked: {}", list(problems))]
    Refused {
        /// The app, by its registered name.
        app: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// A link could not be defined after the checks passed.
    #[error("`{app}`: {source}")]
    Link {
        /// The app, by its registered name.
        app: String,

        /// The underlying error.
        source: Box<link::Error>,
    },
    /// The registry refused (unknown app, name taken, instantiation failed).
    #[error(transparent)]
    Registry(#[from] runtime::Error),
}

/// One problem with the links as they stand, found before anything is linked or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// An import that nothing provides.
    #[error("import {interface} is not linked")]
    Unlinked {
        /// The interface, fully qualified (e.g. `exorun:test/math`).
        interface: String,
    },
    /// A link for an interface the app does not import (a typo, or the wrong app).
    #[error("{interface} is linked but the app does not import it")]
    NotImported {
        /// The interface, fully qualified (e.g. `exorun:test/math`).
        interface: String,
    },
    /// A named link's app is not registered.
    #[error("{interface} is linked to `{provider}`, which is not registered")]
    UnknownProvider {
        /// The interface, fully qualified (e.g. `exorun:test/math`).
        interface: String,
        /// The provider, as the link names it.
        provider: String,
    },
    /// The system linked to the interface does not provide it.
    #[error("the system linked to {interface} does not provide it")]
    NotProvided {
        /// The interface, fully qualified (e.g. `exorun:test/math`).
        interface: String,
    },
    /// The provider does not meet the import's contract (the ledger's finding).
    #[error("{0}")]
    Contract(ledger::Error),
    /// The interface carries resources and is linked through a channel that cannot keep
    /// handles apart (`Channel::carries_handles` is false: no connection or caller of its own
    /// to bind them to).
    #[error("{interface} carries resources, which its channel cannot: link it over a connection")]
    ResourcesOverLattice {
        /// The interface, fully qualified (e.g. `exorun:test/counters`).
        interface: String,
    },
    /// The interface hands out resources and its provider runs a fresh instance per call: a
    /// handle would outlive the instance that made it.
    #[error("{interface} hands out resources, which a per-call instance cannot keep")]
    ResourcesPerCall {
        /// The interface, fully qualified (e.g. `exorun:test/counters`).
        interface: String,
    },
}

/// Whether `handle` runs a fresh instance per call.
fn per_call(handle: &InstanceHandle) -> bool {
    matches!(handle.replicas(), Replicas::PerCall { .. })
}

/// Whether `interface` declares resources or passes any (its functions' types).
pub fn carries_resources(interface: &ledger::Interface) -> bool {
    !interface.resources.is_empty()
        || interface.functions.values().any(|signature| {
            let types = signature.params.iter().map(|(_, ty)| ty);
            types
                .chain(&signature.results)
                .any(exorun_core::resources::carries_handles)
        })
}

fn list(problems: &[Problem]) -> String {
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
    Named {
        /// The app the instance under the name must run (its contract is checked).
        app: AppId,
        /// The instance's registered name.
        name: String,
    },
    /// An instance on another runtime, by name, through a shared channel: a `peer::Peer`
    /// (which reconnects and fails over), one connection's `Client`, or a NATS lattice.
    Remote {
        /// The shared channel to that runtime (or lattice).
        channel: Arc<dyn Channel>,
        /// The instance's name on that runtime.
        target: String,
    },
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

/// A builder whose links all passed the checks.
#[derive(Debug)]
pub struct Checked(InstanceBuilder);

impl Checked {
    /// Links, instantiates and registers the instance (its replicas, supervised).
    pub async fn instantiate(self) -> Result<InstanceHandle, Error> {
        let builder = self.0;
        let app = builder.app.name.clone();
        let link_error = |source| Error::Link {
            app: app.clone(),
            source: Box::new(source),
        };
        let (linker, systems) = builder.linker().map_err(link_error)?;
        let configure = configure(systems, builder.settings);
        // Staged once now so a system that cannot configure is named here, with its cause,
        // rather than as a failed instantiation.
        configure(&mut ContextBuilder::new())
            .map_err(|error| link_error(link::Error::System(error)))?;
        let runtime = &builder.runtime;
        let prepared = runtime.prepare(builder.app.id, &linker)?;
        let spec = Spec {
            name: builder.name,
            limits: builder.limits,
            replicas: builder.replicas,
            restart: builder.restart,
            configure,
        };
        Ok(runtime.start(&prepared, spec).await?)
    }
}

/// The systems an instance links, each once, in the order they were installed.
type Systems = Vec<Arc<dyn SystemComponent>>;

/// A setting of each new instance's context, made by the embedder.
type Setting = Arc<dyn Fn(&mut ContextBuilder) + Send + Sync>;

/// Each new context: every system configures it, then the embedder's settings apply.
fn configure(systems: Systems, settings: Vec<Setting>) -> Configure {
    Arc::new(move |context: &mut ContextBuilder| {
        for system in &systems {
            system.configure(context)?;
        }
        for setting in &settings {
            setting(context);
        }
        Ok(())
    })
}

/// Builds one instance of one app: its links, context settings, limits, replicas and restart
/// policy.
#[allow(
    clippy::module_name_repetitions,
    reason = "the owner's API names this type; embedders import it by this name"
)]
pub struct InstanceBuilder {
    runtime: Arc<Runtime>,
    app: App,
    links: BTreeMap<String, Linkable>,
    settings: Vec<Setting>,
    limits: Limits,
    name: Option<String>,
    replicas: Replicas,
    restart: Restart,
}

impl std::fmt::Debug for InstanceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceBuilder")
            .field("app", &self.app.name)
            .field("name", &self.name)
            .field("links", &self.links)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl InstanceBuilder {
    /// A builder for `app`, with an empty context, default limits, one replica and
    /// `Restart::Always` with the default back-off.
    pub fn new(runtime: &Arc<Runtime>, app: AppId) -> Result<Self, Error> {
        Ok(Self {
            runtime: Arc::clone(runtime),
            app: runtime.app(app)?,
            links: BTreeMap::new(),
            settings: Vec::new(),
            limits: Limits::default(),
            name: None,
            replicas: Replicas::ONE,
            restart: Restart::default(),
        })
    }

    /// Links the import `interface` to `linkable` (replacing an earlier link for it).
    pub fn link(mut self, interface: &str, linkable: Linkable) -> Self {
        self.links.insert(interface.to_owned(), linkable);
        self
    }

    /// Links every import that `system` provides and that is not linked yet.
    pub fn system(mut self, system: &Arc<dyn SystemComponent>) -> Self {
        let provided = system.interfaces();
        let imports = self.app.ledger.imports.keys();
        let covered = imports.filter(|import| {
            let provides = provided.iter().any(|offered| compatible(offered, import));
            provides && !self.links.contains_key(*import)
        });
        let covered: Vec<String> = covered.cloned().collect();
        for interface in covered {
            self.links
                .insert(interface, Linkable::System(Arc::clone(system)));
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

    /// Adds a setting of each new instance's context (WASI settings, user data) that no system
    /// makes; it runs for every instance made, restarts included, after the systems configure.
    pub fn configure(
        mut self,
        setting: impl Fn(&mut ContextBuilder) + Send + Sync + 'static,
    ) -> Self {
        self.settings.push(Arc::new(setting));
        self
    }

    /// Runs this many instances behind the name, or a fresh one per call (for apps without
    /// state worth keeping; a stateful app keeps one).
    pub fn replicas(mut self, replicas: Replicas) -> Self {
        self.replicas = replicas;
        self
    }

    /// What happens to a replica whose call failed.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Checks every link and returns the builder ready to instantiate, or every problem.
    pub fn checked(self) -> Result<Checked, Error> {
        let problems = self.problems();
        if !problems.is_empty() {
            let app = self.app.name.clone();
            return Err(Error::Refused { app, problems });
        }
        Ok(Checked(self))
    }

    /// Checks, links, instantiates and registers the instance.
    pub async fn instantiate(self) -> Result<InstanceHandle, Error> {
        self.checked()?.instantiate().await
    }

    fn problems(&self) -> Vec<Problem> {
        let ledger = &self.app.ledger;
        let mut problems = Vec::new();
        for (interface, import) in &ledger.imports {
            let Some(linkable) = self.links.get(interface) else {
                let interface = interface.clone();
                problems.push(Problem::Unlinked { interface });
                continue;
            };
            problems.extend(self.check_link(import, linkable));
        }
        let stray = self
            .links
            .keys()
            .filter(|interface| !ledger.imports.contains_key(*interface));
        problems.extend(stray.map(|interface| Problem::NotImported {
            interface: interface.clone(),
        }));
        problems
    }

    /// The problems of one link: a system must name the interface; a local target must export
    /// it with equal signatures (and, if it hands out resources, keep its instances: a handle
    /// lives in one replica, and a per-call instance is gone when its call ends). A remote
    /// link's provider is not known here.
    fn check_link(&self, import: &ledger::Interface, linkable: &Linkable) -> Vec<Problem> {
        let contract = |found: Vec<ledger::Error>| found.into_iter().map(Problem::Contract);
        let local = |provider: &ledger::Ledger| {
            let provided = provider.exports.get(&import.name);
            contract(ledger::check(import, provided)).collect()
        };
        match linkable {
            Linkable::System(system) => {
                let provided = system.interfaces();
                if provided
                    .iter()
                    .any(|offered| compatible(offered, &import.name))
                {
                    return Vec::new();
                }
                let interface = import.name.clone();
                vec![Problem::NotProvided { interface }]
            }
            Linkable::Local(target) if per_call(target) && carries_resources(import) => {
                vec![Problem::ResourcesPerCall {
                    interface: import.name.clone(),
                }]
            }
            Linkable::Local(target) => local(target.ledger()),
            Linkable::Named { app, .. } => match self.runtime.app(*app) {
                Ok(provider) => local(&provider.ledger),
                Err(_) => vec![Problem::UnknownProvider {
                    interface: import.name.clone(),
                    provider: format!("app #{}", app.0),
                }],
            },
            Linkable::Remote { channel, .. }
                if !channel.carries_handles() && carries_resources(import) =>
            {
                vec![Problem::ResourcesOverLattice {
                    interface: import.name.clone(),
                }]
            }
            Linkable::Remote { .. } => Vec::new(),
        }
    }

    /// A dynamic type for each resource an import linked to another instance declares (an
    /// import a system provides keeps the system's own types).
    fn kinds(&self) -> Kinds {
        let linked = self
            .links
            .iter()
            .filter(|(_, linkable)| !matches!(linkable, Linkable::System(_)));
        let imports = linked.filter_map(|(interface, _)| self.app.ledger.imports.get(interface));
        let resources = imports.flat_map(|import| {
            import.resources.iter().map(|name| ledger::Resource {
                interface: import.name.clone(),
                name: name.clone(),
            })
        });
        Kinds::assign(resources)
    }

    /// Systems first (each installed once; returned in order, to configure every new context),
    /// then local and remote links.
    fn linker(&self) -> Result<(Linker<ExorunCtx>, Systems), link::Error> {
        let mut linker = Linker::new(self.runtime.engine());
        linker.allow_shadowing(true);
        let mut systems: Systems = Vec::new();
        for linkable in self.links.values() {
            let Linkable::System(system) = linkable else {
                continue;
            };
            if systems
                .iter()
                .any(|installed| Arc::ptr_eq(installed, system))
            {
                continue;
            }
            link::link_system(&mut linker, system.as_ref())?;
            systems.push(Arc::clone(system));
        }
        let ledger = Arc::clone(&self.app.ledger);
        let importer = link::Importer {
            kinds: Arc::new(self.kinds()),
            ledger: Arc::clone(&ledger),
        };
        for (interface, linkable) in &self.links {
            // Checked: every link is for an import of the app.
            let Some(import) = ledger.imports.get(interface) else {
                continue;
            };
            match linkable {
                Linkable::System(_) => {}
                Linkable::Local(target) => {
                    link::link_local(&mut linker, &importer, import, target)?;
                }
                Linkable::Named { app, name } => {
                    let runtime = &self.runtime;
                    link::link_named(&mut linker, &importer, import, runtime, *app, name)?;
                }
                Linkable::Remote { channel, target } => {
                    link::link_remote(&mut linker, &importer, import, channel, target)?;
                }
            }
        }
        Ok((linker, systems))
    }
}

/// Whether an interface a system provides, `offered`, satisfies an import `imported`, as
/// wasmtime's linker decides: the same name, and either no version on both sides, or versions
/// of one semver series (same major, and same minor below 1.0) with the import's no newer
/// (`wasi:http/types@0.2.12` serves an import of `@0.2.4`).
pub fn compatible(offered: &str, imported: &str) -> bool {
    if offered == imported {
        return true;
    }
    let (Some((name, offered)), Some((wanted, imported))) =
        (offered.split_once('@'), imported.split_once('@'))
    else {
        return false;
    };
    let version = |text: &str| -> Option<[u64; 3]> {
        let mut parts = text.split('.').map(|part| part.parse::<u64>().ok());
        let (Some(Some(major)), Some(Some(minor)), Some(Some(patch)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some([major, minor, patch])
    };
    let (Some([major, minor, patch]), Some([want_major, want_minor, want_patch])) =
        (version(offered), version(imported))
    else {
        return false;
    };
    let series = major == want_major && (major != 0 || minor == want_minor);
    let newer = (minor, patch) >= (want_minor, want_patch);
    name == wanted && series && newer
}

#[cfg(test)]
mod tests {
    use super::compatible;

    #[test]
    fn a_system_serves_imports_of_its_semver_series() {
        let http = "wasi:http/types@0.2.12";
        assert!(compatible(http, "wasi:http/types@0.2.12"));
        assert!(compatible(http, "wasi:http/types@0.2.0"));
        assert!(
            !compatible(http, "wasi:http/types@0.2.13"),
            "newer than provided"
        );
        assert!(
            !compatible(http, "wasi:http/types@0.3.0"),
            "another 0.x series"
        );
        assert!(
            !compatible(http, "wasi:http/handler@0.2.0"),
            "another interface"
        );
        assert!(!compatible(http, "wasi:http/types"), "unversioned");
        assert!(compatible("exorun:host/kv", "exorun:host/kv"));
        assert!(compatible("a:b/c@1.4.0", "a:b/c@1.2.9"));
        assert!(!compatible("a:b/c@1.4.0", "a:b/c@2.0.0"));
        assert!(
            !compatible("a:b/c@1.4.0", "a:b/c@1.4.0-rc.1"),
            "pre-releases match exactly"
        );
    }
}
