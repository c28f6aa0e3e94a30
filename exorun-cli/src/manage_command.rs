//! `exorun serve --manage`'s arguments, and `exorun deploy`, `ps` and `stop`: calls to a
//! runtime's meta export (see `exorun_host::manage`).

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;

use exorun_host::manage;
use exorun_host::manifest;
use exorun_transport::identity;

use crate::Failed;

/// `exorun serve --manage …`.
#[derive(clap::Args)]
pub(crate) struct ManageArgs {
    /// Serves the `meta` export (guarded by `auth`) through which the runtime is changed.
    #[arg(long, requires = "operator")]
    pub(crate) manage: bool,
    /// The operator's key (`ed25519:…`): auth's trusted root, who needs no capability.
    #[arg(long, requires = "manage")]
    pub(crate) operator: Option<String>,
    /// Where what is deployed through meta is kept and started again from.
    #[arg(long, requires = "manage")]
    pub(crate) state: Option<PathBuf>,
    /// Where `auth.wasm` and `meta.wasm` are (default: `EXORUN_COMPONENTS`, else the source
    /// tree's `fixtures`).
    #[arg(long)]
    pub(crate) components: Option<PathBuf>,
}

/// Where a managing command calls (a runtime served with `--manage`), and as whom.
#[derive(clap::Args)]
pub(crate) struct AtArgs {
    /// The runtime's address (`tls://HOST:PORT` or `quic://HOST:PORT`).
    #[arg(long)]
    pub(crate) at: String,
    /// The key the runtime must present (`ed25519:…`).
    #[arg(long)]
    pub(crate) peer_key: String,
    /// This caller's node key file.
    #[arg(long)]
    pub(crate) key: PathBuf,
    /// A capability to present (none: the key is the operator's).
    #[arg(long)]
    pub(crate) capability: Option<PathBuf>,
    /// Where `meta.wasm` is (its types read the answers).
    #[arg(long)]
    pub(crate) components: Option<PathBuf>,
}

/// The manifest (if any) with what `--manage` adds.
pub(crate) fn managed(
    path: Option<&Path>,
    operator: &str,
    managing: &ManageArgs,
    peers: Vec<(String, String)>,
    key: Option<PathBuf>,
) -> Result<manifest::Manifest, Failed> {
    let operator = identity::PublicKey::parse(operator)?;
    let components = manage::components(managing.components.as_deref());
    for (_, address) in &peers {
        crate::refuse_credentials("--peer", address)?;
    }
    let peers: BTreeMap<String, String> = peers.into_iter().collect();
    let mut manifest = manage::managed(path, &operator, &components, &peers)?;
    if key.is_some() {
        manifest.key = key;
    }
    Ok(manifest)
}

pub(crate) fn target<'a>(at: &'a AtArgs, components: &'a Path) -> manage::Target<'a> {
    manage::Target {
        at: &at.at,
        peer_key: &at.peer_key,
        key: &at.key,
        capability: at.capability.as_deref(),
        components,
    }
}

pub(crate) async fn deploy(
    component: &Path,
    at: &AtArgs,
    name: &str,
    links: &[String],
    export: bool,
    replicas: Option<u32>,
) -> Result<(), Failed> {
    let mut settings = String::new();
    if !links.is_empty() {
        let mut written = Vec::new();
        for link in links {
            let Some((interface, target)) = link.split_once('=') else {
                return Err(Failed(vec![format!(
                    "--link {link}: expected IFACE={{ … }}"
                )]));
            };
            written.push(format!("{interface:?} = {target}"));
        }
        settings.push_str(&format!("links = {{ {} }}\n", written.join(", ")));
    }
    if export {
        settings.push_str("export = true\n");
    }
    if let Some(replicas) = replicas {
        settings.push_str(&format!("replicas = {replicas}\n"));
    }
    let components = manage::components(at.components.as_deref());
    let exports = target(at, &components)
        .deploy(name, component, &settings)
        .await?;
    println!("deployed {name}");
    for interface in exports {
        println!("  exports {interface}");
    }
    Ok(())
}

pub(crate) async fn ps(at: &AtArgs) -> Result<(), Failed> {
    let components = manage::components(at.components.as_deref());
    let listed = target(at, &components).ps().await?;
    println!("NAME\tAPP\tSTATE\tEXPORTED\tREPLICAS\tRESTARTS\tCALLS");
    for instance in listed {
        let field = |name: &str| {
            let found = instance.fields.iter().find(|(field, _)| field == name);
            found.map_or_else(String::new, |(_, value)| shown_value(value))
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            field("name"),
            field("app"),
            field("state"),
            field("exported"),
            field("replicas"),
            field("restarts"),
            field("calls")
        );
    }
    Ok(())
}

/// A listed field in plain text (strings unquoted), as WAVE writes the rest.
fn shown_value(value: &wasmtime::component::Val) -> String {
    use wasmtime::component::Val;
    if let Val::String(text) = value {
        return text.clone();
    }
    value.to_wave().unwrap_or_else(|error| format!("<{error}>"))
}
