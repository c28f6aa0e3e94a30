//! Peers in a manifest: addresses, pins, lattice settings, and their checks.

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use exorun_transport::address::Address;
use exorun_transport::identity::PublicKey;
use exorun_transport::peer;
use serde::Deserialize;

use super::Problem;

/// A peer: where it is reached (in order: failover) and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its addresses, tried in order.
    pub addresses: Vec<Address>,
    /// Call timeout, heartbeat, back-off, and what a call does while it is down.
    pub config: peer::Config,
    /// The key it must present (its addresses are then all secure).
    pub pin: Option<PublicKey>,
    /// For a lattice (nats:// addresses): its name and how to authenticate to NATS.
    pub nats: Option<Nats>,
    /// The capability file calls through it present (resolved against the manifest's
    /// directory), unless a link names its own.
    pub capability: Option<PathBuf>,
}

/// A lattice peer's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nats {
    /// The lattice's name (`nats::LATTICE_DEFAULT` unless given).
    pub lattice: String,
    /// An nkey seed file (resolved against the manifest's directory; mode 0600).
    pub nkey: Option<PathBuf>,
    /// A file holding `user:password` or a token for the NATS server (resolved against the
    /// manifest's directory; mode 0600), for addresses that carry no credentials.
    pub credentials: Option<PathBuf>,
    /// Whether TLS to the NATS server is required.
    pub require_tls: bool,
    /// A root certificate file (PEM) for the NATS server's TLS.
    pub ca: Option<PathBuf>,
}

/// A peer: its address, or a table with its addresses and settings.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawPeer {
    Address(String),
    Settings(Box<RawPeerSettings>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPeerSettings {
    address: Option<String>,
    addresses: Option<Vec<String>>,
    timeout_ms: Option<u64>,
    heartbeat_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    when_down: Option<String>,
    key: Option<String>,
    lattice: Option<String>,
    nkey: Option<PathBuf>,
    credentials: Option<PathBuf>,
    tls: Option<bool>,
    ca: Option<PathBuf>,
    capability: Option<PathBuf>,
}

impl RawPeer {
    /// `peer` (its settings, if the manifest has it) reached at `address` instead (`--peer`).
    pub(super) fn at(peer: Option<Self>, address: &str) -> Self {
        let settings = peer.map(Self::settings).unwrap_or_default();
        RawPeer::Settings(Box::new(RawPeerSettings {
            address: Some(address.to_owned()),
            addresses: None,
            ..settings
        }))
    }

    pub(super) fn settings(self) -> RawPeerSettings {
        match self {
            RawPeer::Address(address) => RawPeerSettings {
                address: Some(address),
                ..RawPeerSettings::default()
            },
            RawPeer::Settings(settings) => *settings,
        }
    }
}

/// A peer's addresses (one of `address` and `addresses`) and settings.
pub(super) fn check_peer(base: &Path, mut settings: RawPeerSettings) -> Result<Peer, Problem> {
    let written = match (settings.address.take(), settings.addresses.take()) {
        (Some(address), None) => vec![address],
        (None, Some(addresses)) if !addresses.is_empty() => addresses,
        _ => return Err(Problem::PeerAddresses),
    };
    let mut addresses = Vec::new();
    for address in &written {
        addresses.push(Address::parse(address).map_err(Problem::BadAddress)?);
    }
    let nats = check_nats(base, &settings, &addresses)?;
    let pin = settings.key.as_deref().map(PublicKey::parse).transpose();
    let pin = pin.map_err(Problem::Key)?;
    check_pin(pin.as_ref(), nats.is_some(), &addresses)?;
    let mut config = peer::Config::default();
    if let Some(ms) = settings.timeout_ms {
        config.client.timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = settings.heartbeat_ms {
        config.client.heartbeat = (ms > 0).then(|| Duration::from_millis(ms));
    }
    if let Some(ms) = settings.backoff_max_ms {
        config.backoff_max = Duration::from_millis(ms);
    }
    config.when_down = match settings.when_down.as_deref() {
        None | Some("fail") => peer::WhenDown::Fail,
        Some("wait") => peer::WhenDown::Wait,
        Some(other) => {
            let when_down = other.to_owned();
            return Err(Problem::BadWhenDown { when_down });
        }
    };
    if settings.capability.is_some() && nats.is_some() {
        return Err(Problem::CapabilityOnNats);
    }
    Ok(Peer {
        addresses,
        config,
        pin,
        nats,
        capability: settings.capability.as_ref().map(|file| base.join(file)),
    })
}

/// A pin needs secure addresses, and a secure address needs a pin; a lattice takes none.
fn check_pin(pin: Option<&PublicKey>, lattice: bool, addresses: &[Address]) -> Result<(), Problem> {
    if lattice {
        return match pin {
            Some(_) => Err(Problem::PinOnNats),
            None => Ok(()),
        };
    }
    let plaintext = addresses.iter().find(|address| !is_secure(address));
    match (pin, plaintext) {
        (Some(_), Some(address)) => Err(Problem::KeyOnPlaintext {
            address: address.to_string(),
        }),
        (None, _) if addresses.iter().any(is_secure) => Err(Problem::PeerNeedsKey),
        _ => Ok(()),
    }
}

/// A lattice's settings, if the peer's addresses are nats:// (all of them, or none).
fn check_nats(
    base: &Path,
    settings: &RawPeerSettings,
    addresses: &[Address],
) -> Result<Option<Nats>, Problem> {
    let lattices = addresses
        .iter()
        .filter(|address| matches!(address, Address::Nats(_)))
        .count();
    if lattices == 0 {
        let given = [
            ("lattice", settings.lattice.is_some()),
            ("nkey", settings.nkey.is_some()),
            ("credentials", settings.credentials.is_some()),
            ("tls", settings.tls.is_some()),
            ("ca", settings.ca.is_some()),
        ];
        if let Some((setting, _)) = given.into_iter().find(|(_, given)| *given) {
            return Err(Problem::NatsOnly { setting });
        }
        return Ok(None);
    }
    if lattices != addresses.len() {
        return Err(Problem::MixedNats);
    }
    Ok(Some(Nats {
        lattice: settings
            .lattice
            .clone()
            .unwrap_or_else(|| LATTICE_DEFAULT.to_owned()),
        nkey: settings.nkey.as_ref().map(|nkey| base.join(nkey)),
        credentials: settings.credentials.as_ref().map(|file| base.join(file)),
        require_tls: settings.tls.unwrap_or(false),
        ca: settings.ca.as_ref().map(|ca| base.join(ca)),
    }))
}

/// The lattice used when a nats:// peer or `exorun serve --nats` names none.
pub const LATTICE_DEFAULT: &str = exorun_transport::nats::LATTICE_DEFAULT;

/// Whether `address` is authenticated and encrypted (`tls://`, `quic://`).
pub fn is_secure(address: &Address) -> bool {
    matches!(address, Address::Tls(_) | Address::Quic(_))
}
