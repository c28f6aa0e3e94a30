//! Whether a capability lets a caller make a call: every link signed by its issuer, chained to
//! its parent, rooted in a trusted key, narrowing what its parent granted (rights only narrow,
//! the validity window only shrinks), none revoked, the time inside every window, and the
//! last subject the caller's own key. The first rule broken is the denial's reason.

use alloc::string::String;
use alloc::vec::Vec;

use crate::format::CHAIN_MAX;
use crate::format::Capability;
use crate::format::Link;
use crate::format::Right;

/// A call, as a guard sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The caller's ed25519 public key (its connection proved it holds the private half).
    pub caller: [u8; 32],
    /// The export called.
    pub export: &'a str,
    /// The interface called.
    pub interface: &'a str,
    /// The function called.
    pub function: &'a str,
    /// The time of the call (Unix seconds).
    pub now: u64,
}

/// What a verified capability grants a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Every link's caveats, root first: the callee may read and enforce them.
    pub caveats: Vec<String>,
    /// Until when the grant holds (the shortest window's end, Unix seconds).
    pub not_after: u64,
    /// The id of each link, root first.
    pub chain: Vec<[u8; 32]>,
}

/// Why a capability does not let a call through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The chain is empty or longer than `CHAIN_MAX`.
    ChainLength,
    /// The root's issuer is not a trusted key.
    UntrustedRoot,
    /// A link's issuer is not its parent's subject, or it does not name its parent's id (or
    /// the root names a parent).
    BrokenChain {
        /// The link, from 0 (the root).
        link: usize,
    },
    /// A link's signature does not verify against its issuer's key.
    BadSignature {
        /// The link.
        link: usize,
    },
    /// A link grants a right its parent does not, or a longer window.
    Widened {
        /// The link.
        link: usize,
    },
    /// The time is past a link's window.
    Expired {
        /// The link.
        link: usize,
    },
    /// The time is before a link's window.
    NotYetValid {
        /// The link.
        link: usize,
    },
    /// A link is on the revocation list.
    Revoked {
        /// The link.
        link: usize,
    },
    /// The last subject is not the caller (a capability held by another key).
    WrongHolder,
    /// Valid, but it grants nothing that covers this call.
    NotGranted,
}

impl core::fmt::Display for Denial {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Denial::ChainLength => write!(f, "a chain has 1 to {CHAIN_MAX} links"),
            Denial::UntrustedRoot => f.write_str("the root issuer is not trusted"),
            Denial::BrokenChain { link } => write!(f, "link {link} is not chained to its parent"),
            Denial::BadSignature { link } => write!(f, "link {link}'s signature does not verify"),
            Denial::Widened { link } => {
                write!(
                    f,
                    "link {link} grants more than its parent (rights or time)"
                )
            }
            Denial::Expired { link } => write!(f, "link {link} has expired"),
            Denial::NotYetValid { link } => write!(f, "link {link} is not valid yet"),
            Denial::Revoked { link } => write!(f, "link {link} is revoked"),
            Denial::WrongHolder => f.write_str("the capability is held by another key"),
            Denial::NotGranted => f.write_str("the capability does not grant this call"),
        }
    }
}

impl core::error::Error for Denial {}

/// Checks `capability` for `request`: see the module doc. `roots` are the trusted issuers,
/// `revoked` the ids of revoked links.
pub fn verify(
    capability: &Capability,
    roots: &[[u8; 32]],
    revoked: &[[u8; 32]],
    request: &Request<'_>,
) -> Result<Grant, Denial> {
    let links = &capability.links;
    if links.is_empty() || links.len() > CHAIN_MAX {
        return Err(Denial::ChainLength);
    }
    let mut chain = Vec::with_capacity(links.len());
    let mut parent: Option<&Link> = None;
    let mut caveats = Vec::new();
    for (index, link) in links.iter().enumerate() {
        check_link(index, link, parent, roots)?;
        let id = link.id();
        if revoked.contains(&id) {
            return Err(Denial::Revoked { link: index });
        }
        if request.now > link.not_after {
            return Err(Denial::Expired { link: index });
        }
        if request.now < link.not_before {
            return Err(Denial::NotYetValid { link: index });
        }
        caveats.extend(link.caveats.iter().cloned());
        chain.push(id);
        parent = Some(link);
    }
    let Some(last) = links.last() else {
        return Err(Denial::ChainLength);
    };
    if last.subject != request.caller {
        return Err(Denial::WrongHolder);
    }
    let wanted = Right {
        export: request.export.into(),
        interface: Some(request.interface.into()),
        function: Some(request.function.into()),
    };
    if !last.rights.iter().any(|right| right.covers(&wanted)) {
        return Err(Denial::NotGranted);
    }
    Ok(Grant {
        caveats,
        not_after: last.not_after,
        chain,
    })
}

/// One link against its parent (or, for the root, the trusted keys).
fn check_link(
    index: usize,
    link: &Link,
    parent: Option<&Link>,
    roots: &[[u8; 32]],
) -> Result<(), Denial> {
    match parent {
        None => {
            if !roots.contains(&link.issuer) {
                return Err(Denial::UntrustedRoot);
            }
            if link.parent != [0; 32] {
                return Err(Denial::BrokenChain { link: index });
            }
        }
        Some(parent) => {
            if link.issuer != parent.subject || link.parent != parent.id() {
                return Err(Denial::BrokenChain { link: index });
            }
            let narrower = link
                .rights
                .iter()
                .all(|right| parent.rights.iter().any(|granted| granted.covers(right)));
            let shorter =
                link.not_after <= parent.not_after && link.not_before >= parent.not_before;
            if !narrower || !shorter {
                return Err(Denial::Widened { link: index });
            }
        }
    }
    if !signature_holds(link) {
        return Err(Denial::BadSignature { link: index });
    }
    Ok(())
}

fn signature_holds(link: &Link) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&link.issuer) else {
        return false;
    };
    let Ok(message) = link.signed_bytes() else {
        return false;
    };
    let signature = ed25519_dalek::Signature::from_bytes(&link.signature);
    key.verify_strict(&message, &signature).is_ok()
}

/// Signs `link` in place with `sign` (an ed25519 signature over `signed`): the issuer's key,
/// wherever it is kept (a node key on a host, a key pair in a guest).
pub fn sign_with(
    link: &mut Link,
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Result<(), crate::format::Error> {
    let signed = link.signed_bytes()?;
    link.signature = sign(&signed);
    Ok(())
}
