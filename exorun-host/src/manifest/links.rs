//! An instance's links in a manifest: a system (with its settings), another instance by name,
//! or an instance on a peer.

use std::collections::BTreeMap;
use std::path::Path;

use super::Known;
use super::Link;
use super::Peer;
use super::Problem;
use super::RawLink;
use super::RawPeer;
use super::check_peer;

/// The system link `system` names, with its settings.
fn system_link(system: &str, link: &RawLink) -> Result<Link, Problem> {
    match system {
        "wasi" => Ok(Link::Wasi),
        "logging" => Ok(Link::Logging),
        "config" => Ok(Link::Config),
        "caller" => Ok(Link::Caller),
        "meta" => Ok(Link::Meta),
        "http" => {
            let allow = link.allow.clone().unwrap_or_default();
            let checked = exorun_systems::http::Http::new(&allow);
            checked.map_err(|error| Problem::HttpAllow {
                message: error.to_string(),
            })?;
            Ok(Link::Http { allow })
        }
        "kv" => Ok(Link::Kv {
            store: link.store.clone().unwrap_or_else(|| "default".to_owned()),
        }),
        "keyvalue" => Ok(Link::KeyValue {
            store: link.store.clone().unwrap_or_else(|| "default".to_owned()),
        }),
        other => Err(Problem::UnknownSystem {
            system: other.to_owned(),
        }),
    }
}

pub(super) fn check_link(
    raw: &Known,
    peers: &mut BTreeMap<String, Option<Peer>>,
    base: &Path,
    link: &RawLink,
) -> Result<Link, Problem> {
    let kinds = [&link.system, &link.local, &link.remote];
    if kinds.iter().filter(|kind| kind.is_some()).count() != 1 {
        return Err(Problem::LinkKind);
    }
    if link.capability.is_some() && link.remote.is_none() {
        return Err(Problem::StrayCapability);
    }
    let is_kv = matches!(link.system.as_deref(), Some("kv" | "keyvalue"));
    if link.store.is_some() && !is_kv {
        return Err(Problem::StrayStore);
    }
    let is_http = link.system.as_deref() == Some("http");
    if link.allow.is_some() && !is_http {
        return Err(Problem::StrayAllow);
    }
    if let Some(system) = &link.system {
        return system_link(system, link);
    }
    if let Some(instance) = &link.local {
        if !raw.instances.contains(instance) {
            let instance = instance.clone();
            return Err(Problem::UnknownInstance { instance });
        }
        return Ok(Link::Named {
            instance: instance.clone(),
        });
    }
    let remote = link.remote.as_deref().unwrap_or_default();
    if let Some(None) = peers.get(remote) {
        let peer = remote.to_owned();
        return Err(Problem::BrokenPeer { peer });
    }
    if !peers.contains_key(remote) {
        // Not a peer's name: an address given inline, a peer of its own with the defaults
        // (checked as a peer with nothing but that address; nothing in it names a file).
        let peer = check_peer(Path::new("."), RawPeer::at(None, remote).settings())?;
        peers.insert(remote.to_owned(), Some(peer));
    }
    let target = link.target.clone().ok_or(Problem::MissingTarget)?;
    let Some(Some(peer)) = peers.get(remote) else {
        let peer = remote.to_owned();
        return Err(Problem::BrokenPeer { peer });
    };
    let capability = match &link.capability {
        Some(file) => Some(base.join(file)),
        None => peer.capability.clone(),
    };
    if capability.is_some() && peer.nats.is_some() {
        return Err(Problem::CapabilityOnNats);
    }
    Ok(Link::Remote {
        peer: remote.to_owned(),
        target,
        capability,
    })
}
