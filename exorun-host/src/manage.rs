//! Managing a running runtime: what `exorun serve --manage` adds to a manifest (the `auth` and
//! `meta` components, meta exported as `meta` and guarded by auth with the operator's key as
//! its root), and the commands that call a runtime's meta export (`exorun deploy`, `ps`,
//! `stop`) over tls:// or quic://, presenting a capability.
//!
//! The two components are read from a components directory: `--components DIR`, else the
//! `EXORUN_COMPONENTS` environment variable, else the `fixtures` directory of the source tree
//! the binary was built from (`scripts/build_apps.sh` builds them there). A user with only the
//! binary points `--components` (or `EXORUN_COMPONENTS`) at a directory holding `auth.wasm`
//! and `meta.wasm`.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use exorun_bind::link::remote;
use exorun_core::runtime;
use exorun_core::runtime::Runtime;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::client::Channel;
use exorun_transport::client::Client;
use exorun_transport::client::Presenting;
use exorun_transport::identity;
use exorun_transport::identity::NodeKey;
use exorun_transport::identity::PublicKey;
use exorun_transport::net;
use exorun_transport::tls::Secure;
use exorun_transport::transport;
use neorpc::failure::Failure;
use wasmtime::component::Val;

use crate::capability;
use crate::manifest;

/// The environment variable naming the components directory.
pub const COMPONENTS_ENV: &str = "EXORUN_COMPONENTS";
/// The export `--manage` serves meta as.
pub const META_EXPORT: &str = "meta";
/// The interface the meta app exports.
pub const MANAGE: &str = "exorun:meta/manage";
/// The instance `--manage` runs auth as (meta's guard).
pub const AUTH_INSTANCE: &str = "exorun-auth";
/// Largest component `exorun deploy` sends (meta's own bound).
pub const DEPLOY_BYTES_MAX: u64 = 16 << 20;

/// Why a managing command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest (with what `--manage` adds) is wrong.
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
    /// A component could not be read or compiled (the one to deploy, or meta's own, whose
    /// types decode the answers).
    #[error(transparent)]
    Component(#[from] runtime::Error),
    /// The meta component does not export the function a command calls.
    #[error("{component} has no {MANAGE}#{function}")]
    NoFunction {
        /// The meta component's path.
        component: String,
        /// The function.
        function: String,
    },
    /// The runtime's address does not parse.
    #[error(transparent)]
    Address(transport::Error),
    /// A key (this caller's, or the runtime's pinned one) cannot be used.
    #[error(transparent)]
    Key(#[from] identity::Error),
    /// The capability to present cannot be read.
    #[error(transparent)]
    Capability(#[from] capability::Error),
    /// The runtime could not be reached, did not answer, or answered with a failure.
    #[error("{address}: {source}")]
    Call {
        /// Where.
        address: String,
        /// What happened.
        #[source]
        source: remote::Error,
    },
    /// meta's policy denied the request.
    #[error("permission denied: {0}")]
    Denied(String),
    /// The runtime refused the request (a bad component, a link that does not fit, …).
    #[error("refused: {0}")]
    Refused(String),
    /// A reply that is not what meta answers.
    #[error("unexpected answer from meta: {0}")]
    Answer(String),
}

/// The components directory: `given`, else `EXORUN_COMPONENTS`, else the source tree's
/// `fixtures`.
pub fn components(given: Option<&Path>) -> PathBuf {
    if let Some(given) = given {
        return given.to_owned();
    }
    if let Some(dir) = std::env::var_os(COMPONENTS_ENV) {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The manifest at `path` (none: an empty one, as if in the working directory) with auth and
/// meta added: meta trusted with the meta system, exported as `meta`, guarded by auth, which
/// trusts `operator`.
pub fn managed(
    path: Option<&Path>,
    operator: &PublicKey,
    components: &Path,
    peers: &BTreeMap<String, String>,
) -> Result<manifest::Manifest, Error> {
    let (path, text) = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| manifest::Error::Read {
                path: path.display().to_string(),
                source,
            })?;
            (path.to_owned(), text)
        }
        None => (PathBuf::from("managed.toml"), String::new()),
    };
    let shown = path.display().to_string();
    let syntax = |message: String| manifest::Error::Syntax {
        path: shown.clone(),
        message,
    };
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| syntax(e.to_string()))?;
    let added = format!(
        r#"
[apps]
exorun-auth = "{auth}"
exorun-meta = "{meta}"
[instances.{AUTH_INSTANCE}]
app = "exorun-auth"
config = {{ roots = "{operator}" }}
links = {{ "wasi:*" = {{ system = "wasi" }} }}
[instances.{META_EXPORT}]
app = "exorun-meta"
trusted = ["meta"]
export = {{ guard = "{AUTH_INSTANCE}" }}
links = {{ "exorun:host/meta" = {{ system = "meta" }}, "exorun:host/caller" = {{ system = "caller" }} }}
"#,
        auth = components.join("auth.wasm").display(),
        meta = components.join("meta.wasm").display(),
    );
    let added: toml::Table = toml::from_str(&added).map_err(|e| syntax(e.to_string()))?;
    for (section, entries) in added {
        let toml::Value::Table(entries) = entries else {
            continue;
        };
        let into = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(into) = into.as_table_mut() else {
            return Err(syntax(format!("`{section}` must be a table")).into());
        };
        for (name, value) in entries {
            if into.contains_key(&name) {
                let taken = format!("`{section}.{name}` is what --manage adds; rename yours");
                return Err(syntax(taken).into());
            }
            into.insert(name, value);
        }
    }
    Ok(manifest::parse(&path, &table.to_string(), peers)?)
}

/// Where a managing command calls, as whom, presenting what.
#[derive(Debug)]
pub struct Target<'a> {
    /// The runtime's address (tls:// or quic://).
    pub at: &'a str,
    /// The key it must present.
    pub peer_key: &'a str,
    /// This caller's node key file.
    pub key: &'a Path,
    /// A capability file to present (none: the caller's key is a root).
    pub capability: Option<&'a Path>,
    /// Where the meta component is (its types decode the answers).
    pub components: &'a Path,
}

/// An instance as `exorun ps` prints it.
#[derive(Debug)]
pub struct Listed {
    /// Its fields, in WIT order: name, app, exported, replicas, restarts, state, calls.
    pub fields: Vec<(String, Val)>,
}

impl Target<'_> {
    /// Calls `function` of meta's `manage` with `args` (made the one way remote calls are
    /// made from values, `link::remote::Function`); its `ok` value.
    async fn call(&self, function: &str, args: &[Val]) -> Result<Val, Error> {
        let runtime = Runtime::new()?;
        let meta = self.components.join("meta.wasm");
        let app = runtime.app(runtime.add_app_file("meta", &meta)?)?;
        let Some(export) = app.export(MANAGE, function) else {
            return Err(Error::NoFunction {
                component: meta.display().to_string(),
                function: function.to_owned(),
            });
        };
        let address = Address::parse(self.at).map_err(Error::Address)?;
        let pin = PublicKey::parse(self.peer_key)?;
        let key = NodeKey::read(self.key)?;
        let capability = match self.capability {
            Some(path) => Some(capability::load(path)?),
            None => None,
        };
        let secure = Secure {
            key: Arc::new(key),
            pin,
        };
        let called = |source: remote::Error| Error::Call {
            address: self.at.to_owned(),
            source,
        };
        let max = transport::MESSAGE_BYTES_MAX;
        let connection = net::connect_secure(&address, &secure, max).await;
        let connection = connection
            .map_err(|error| called(remote::Error::Channel(client::Error::Transport(error))))?;
        let mut channel: Arc<dyn Channel> =
            Arc::new(Client::new(connection, client::Config::default()));
        if let Some(capability) = capability {
            channel = Arc::new(Presenting::new(channel, capability));
        }
        let types = export.signature().results.clone();
        let mut results = vec![Val::Bool(false); types.len()];
        let meta = remote::Function::new(channel, META_EXPORT, MANAGE, function, types);
        meta.call(args, &mut results).await.map_err(called)?;
        let Some(Val::Result(answer)) = results.pop() else {
            return Err(Error::Answer("not a result".to_owned()));
        };
        match answer {
            Ok(value) => Ok(value.map_or(Val::Tuple(Vec::new()), |value| *value)),
            Err(Some(error)) => Err(meta_error(*error)),
            Err(None) => Err(Error::Answer("an error without a reason".to_owned())),
        }
    }

    /// Publishes `component` and starts it as `name` with `settings`; its exported interfaces.
    pub async fn deploy(
        &self,
        name: &str,
        component: &Path,
        settings: &str,
    ) -> Result<Vec<String>, Error> {
        let bytes = runtime::read_component(component, DEPLOY_BYTES_MAX)?;
        let bytes = Val::List(bytes.into_iter().map(Val::U8).collect());
        let args = [
            Val::String(name.to_owned()),
            bytes,
            Val::String(settings.to_owned()),
        ];
        let answer = self.call("deploy", &args).await?;
        let Val::List(interfaces) = answer else {
            return Err(Error::Answer(format!("{answer:?}")));
        };
        let text = |value: Val| {
            let Val::String(text) = value else {
                return Err(Error::Answer(format!("{value:?}")));
            };
            Ok(text)
        };
        interfaces.into_iter().map(text).collect()
    }

    /// What runs, as meta lets the caller see it.
    pub async fn ps(&self) -> Result<Vec<Listed>, Error> {
        let answer = self.call("ps", &[]).await?;
        let Val::List(instances) = answer else {
            return Err(Error::Answer(format!("{answer:?}")));
        };
        let listed = |value: Val| {
            let Val::Record(fields) = value else {
                return Err(Error::Answer(format!("{value:?}")));
            };
            Ok(Listed { fields })
        };
        instances.into_iter().map(listed).collect()
    }

    /// Stops instance `name`.
    pub async fn stop(&self, name: &str) -> Result<(), Error> {
        self.call("stop", &[Val::String(name.to_owned())]).await?;
        Ok(())
    }
}

/// meta's `error` variant as a command's error.
fn meta_error(error: Val) -> Error {
    let Val::Variant(case, Some(reason)) = error else {
        return Error::Answer(format!("{error:?}"));
    };
    let Val::String(reason) = *reason else {
        return Error::Answer(format!("{reason:?}"));
    };
    match case.as_str() {
        "denied" => Error::Denied(reason),
        _ => Error::Refused(reason),
    }
}

/// Whether a call failed because the guard denied it: the guard's answer, as a command prints
/// it.
pub fn guard_denial(error: &Error) -> Option<&Failure> {
    let Error::Call {
        source: remote::Error::Failed(failure @ Failure::PermissionDenied { .. }),
        ..
    } = error
    else {
        return None;
    };
    Some(failure)
}
