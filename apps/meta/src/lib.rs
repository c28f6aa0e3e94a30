//! meta: manages the runtime it runs in through the privileged `exorun:host/meta`, deciding each
//! request itself. The host has verified the caller's capability for the function called (its
//! guard, `auth`); this app reads the grant's caveats (`exorun:host/caller`) and enforces what
//! they say about names and sizes:
//!
//! - `prefix=P`: only instances whose names start with `P` may be deployed, listed or stopped;
//! - `bytes-max=N`: a deployed component may be at most `N` bytes.
//!
//! A grant without them (the operator's own key, or a capability without caveats) is limited
//! only by the functions it grants. Deployed apps are named after their instance.
wit_bindgen::generate!({ path: "../wit", world: "exorun:meta/meta", generate_all });

use exorun::host::caller;
use exorun::host::meta;
use exports::exorun::meta::manage;
use exports::exorun::meta::manage::Error;

struct App;

/// What the caller's grant allows, from its caveats.
struct Policy {
    prefixes: Vec<String>,
    bytes_max: Option<u64>,
}

impl Policy {
    fn of_caller() -> Result<Policy, Error> {
        let mut policy = Policy {
            prefixes: Vec::new(),
            bytes_max: None,
        };
        for caveat in caller::caveats() {
            if let Some(prefix) = caveat.strip_prefix("prefix=") {
                policy.prefixes.push(prefix.to_owned());
            } else if let Some(max) = caveat.strip_prefix("bytes-max=") {
                let max = max
                    .parse::<u64>()
                    .map_err(|_| Error::Denied(format!("caveat `{caveat}` is not a size")))?;
                policy.bytes_max = Some(policy.bytes_max.map_or(max, |earlier| earlier.min(max)));
            }
        }
        Ok(policy)
    }

    /// Every prefix caveat must hold (each link of a chain may narrow it further).
    fn may_touch(&self, name: &str) -> bool {
        self.prefixes.iter().all(|prefix| name.starts_with(prefix.as_str()))
    }

    fn touch(&self, name: &str) -> Result<(), Error> {
        if self.may_touch(name) {
            return Ok(());
        }
        let prefixes = self.prefixes.join("`, `");
        Err(Error::Denied(format!("`{name}` is outside the names granted (`{prefixes}`…)")))
    }
}

fn refused(reason: String) -> Error {
    Error::Refused(reason)
}

impl manage::Guest for App {
    fn deploy(name: String, component: Vec<u8>, settings: String) -> Result<Vec<String>, Error> {
        let policy = Policy::of_caller()?;
        policy.touch(&name)?;
        let bytes = u64::try_from(component.len()).unwrap_or(u64::MAX);
        if let Some(max) = policy.bytes_max.filter(|max| bytes > *max) {
            return Err(Error::Denied(format!(
                "a component of {bytes} bytes is over the {max} granted"
            )));
        }
        if meta::instances().iter().any(|instance| instance.name == name) {
            return Err(refused(format!("an instance named `{name}` already exists")));
        }
        meta::add_app(&name, &component).map_err(refused)?;
        let settings = format!("app = \"{name}\"\n{settings}");
        meta::start(&name, &settings).map_err(|problems| {
            let _ = meta::remove_app(&name);
            refused(problems)
        })
    }

    fn ps() -> Result<Vec<manage::Instance>, Error> {
        let policy = Policy::of_caller()?;
        let visible = meta::instances().into_iter().filter(|instance| policy.may_touch(&instance.name));
        let listed = visible.map(|instance| manage::Instance {
            name: instance.name,
            app: instance.app,
            exported: instance.exported,
            replicas: instance.replicas,
            restarts: instance.restarts,
            state: instance.state,
            calls: instance.calls,
        });
        Ok(listed.collect())
    }

    fn stop(name: String) -> Result<(), Error> {
        let policy = Policy::of_caller()?;
        policy.touch(&name)?;
        meta::stop(&name).map_err(refused)?;
        // The app was published with the instance; another instance may still run it.
        let _ = meta::remove_app(&name);
        Ok(())
    }
}

export!(App);
