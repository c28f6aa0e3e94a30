//! Starting instances in a running composition (`exorun:host/meta`'s `start`): checked like a
//! manifest's, linked by the same providers.

use std::collections::BTreeMap;
use std::sync::Arc;

use exorun_bind::builder;
use exorun_bind::builder::InstanceBuilder;
use exorun_bind::serve;
use exorun_bind::serve::Exports;
use exorun_core::app::AppId;
use exorun_core::instance::InstanceHandle;
use exorun_core::runtime::Runtime;

use super::Providers;
use super::link_all;
use super::problem_key;
use crate::manifest;
use crate::manifest::Manifest;
use crate::manifest::Problem;

/// What a running composition starts new instances with (through `exorun:host/meta`): its
/// providers (peers, stores, systems), its apps by name, and its manifest.
pub(crate) struct Composer {
    pub(super) providers: Providers,
    pub(super) apps: BTreeMap<String, AppId>,
    pub(super) manifest: Manifest,
}

impl Composer {
    /// The registered apps, by name.
    pub(crate) fn apps(&self) -> &BTreeMap<String, AppId> {
        &self.apps
    }

    /// Registers `app` under `name`.
    pub(crate) fn add_app(&mut self, name: &str, app: AppId) {
        self.apps.insert(name.to_owned(), app);
    }

    /// Forgets the app `name`.
    pub(crate) fn forget_app(&mut self, name: &str) -> Option<AppId> {
        self.apps.remove(name)
    }

    /// Checks instance `name` from `settings` (a manifest's instance table) against what runs
    /// (`deployed`: the instances started so, which alone it may link to locally), links it,
    /// instantiates it and exports it if it says so. Every problem at once, each as
    /// `instances.NAME.KEY: problem`.
    pub(crate) async fn start(
        &mut self,
        (runtime, exports): (&Arc<Runtime>, &Exports),
        deployed: &std::collections::BTreeSet<String>,
        name: &str,
        settings: &str,
    ) -> Result<InstanceHandle, Vec<String>> {
        let lines = |problems: Vec<(String, Problem)>| {
            let line = |(key, problem): (String, Problem)| format!("{key}: {problem}");
            problems.into_iter().map(line).collect::<Vec<_>>()
        };
        let known = manifest::Known {
            apps: self.apps.keys().cloned().collect(),
            instances: runtime
                .instances()
                .iter()
                .filter_map(|handle| handle.name().map(str::to_owned))
                .collect(),
            deployed: deployed.clone(),
        };
        let peers = &mut self.providers.peers;
        let parsed = manifest::parse_instance(&self.manifest, peers, &known, name, settings);
        let instance = parsed.map_err(lines)?;
        let app = self.apps.get(&instance.app).copied();
        let app = app.ok_or_else(|| vec![format!("no app `{}`", instance.app)])?;
        let builder =
            InstanceBuilder::new(runtime, app).map_err(|error| vec![error.to_string()])?;
        let app_of = |other: &str| Some(runtime.instance_named(other).ok()?.app().id);
        let builder = link_all(builder, name, &instance, &mut self.providers, app_of);
        let checked = match builder.checked() {
            Ok(checked) => checked,
            Err(builder::Error::Refused { problems, .. }) => {
                let keyed = problems.into_iter().map(|problem| {
                    let key = problem_key(name, &problem);
                    (key, Problem::Link(problem))
                });
                return Err(lines(keyed.collect()));
            }
            Err(error) => return Err(vec![error.to_string()]),
        };
        let handle = checked
            .instantiate()
            .await
            .map_err(|error| vec![error.to_string()])?;
        let Some(allow) = instance.export.clone() else {
            return Ok(handle);
        };
        let exported = match &instance.guard {
            Some(guard) => exports.export_guarded(name, allow, guard),
            None => exports
                .export_allowing(name, allow)
                .map_err(serve::Error::Registry),
        };
        if let Err(error) = exported {
            let _ = runtime.remove_instance(handle.id());
            return Err(vec![error.to_string()]);
        }
        Ok(handle)
    }
}
