//! How a composition reaches its NATS lattices: URLs, credentials, seeds and CA files, read
//! before anything connects.

use std::collections::BTreeMap;

use exorun_transport::address::Address;
use exorun_transport::identity;
use exorun_transport::nats;

use crate::manifest;
use crate::manifest::Manifest;
use crate::manifest::Problem;

/// How to reach each lattice peer's NATS system: its URLs and its nkey seed, read now (a seed
/// file others may read is a problem at its key).
pub(super) fn lattice_settings(
    manifest: &Manifest,
    problems: &mut Vec<(String, Problem)>,
) -> BTreeMap<String, nats::Settings> {
    let mut lattices = BTreeMap::new();
    for (name, peer) in &manifest.peers {
        let Some(lattice) = &peer.nats else {
            continue;
        };
        let Some(settings) = nats_settings(lattice, &peer.addresses, problems, name) else {
            continue;
        };
        lattices.insert(name.clone(), settings);
    }
    lattices
}

/// NATS settings for `lattice` at `addresses`; a seed or credentials file that cannot be read
/// (or a CA file that is not a small regular file) is a problem at `peers.NAME.KEY`.
/// Credentials come from the address, else the credentials file, else the environment
/// (`nats::CREDENTIALS_ENV`).
pub fn nats_settings(
    lattice: &manifest::Nats,
    addresses: &[Address],
    problems: &mut Vec<(String, Problem)>,
    name: &str,
) -> Option<nats::Settings> {
    let mut secret = |key: &str, path: &Option<std::path::PathBuf>| {
        let path = path.as_ref()?;
        match identity::read_private(path) {
            Ok(seed) => Some(Ok(String::from_utf8_lossy(&seed).trim().to_owned())),
            Err(error) => {
                problems.push((format!("peers.{name}.{key}"), Problem::Key(error)));
                Some(Err(()))
            }
        }
    };
    let nkey_seed = secret("nkey", &lattice.nkey).transpose().ok()?;
    let from_file = secret("credentials", &lattice.credentials)
        .transpose()
        .ok()?;
    if let Some(ca) = &lattice.ca
        && let Err(error) = identity::check_file(ca, nats::CA_FILE_BYTES_MAX)
    {
        problems.push((format!("peers.{name}.ca"), Problem::Key(error)));
        return None;
    }
    let credentials = from_file.or_else(|| std::env::var(nats::CREDENTIALS_ENV).ok());
    let urls = addresses
        .iter()
        .filter_map(|address| match address {
            Address::Nats(url) => Some(url.clone()),
            Address::Tcp(_) | Address::Unix(_) | Address::Tls(_) | Address::Quic(_) => None,
        })
        .collect();
    Some(nats::Settings {
        urls,
        credentials,
        nkey_seed,
        require_tls: lattice.require_tls,
        root_certificates: lattice.ca.clone(),
        name: format!("exorun {name}"),
    })
}
