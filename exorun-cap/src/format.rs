//! A capability's parts and their bytes (see `FORMAT.md` for the layout and golden bytes).
//!
//! A **capability** is a chain of links, root first. Each **link** is signed by its issuer and
//! grants its subject rights (exports, interfaces, functions), a validity window and caveats,
//! and names its parent by the parent's id (a hash of the parent's bytes, signature included),
//! so a link cannot be moved under another parent. The encoding is canonical (one byte string
//! per capability): a decoder refuses anything else, so a signature over the bytes is a
//! signature over the meaning.

use alloc::string::String;
use alloc::vec::Vec;

use sha2::Digest;

/// The bytes every capability starts with: `EXCAP` and the format's version.
pub const MAGIC: &[u8; 6] = b"EXCAP\x01";
/// Most links in one chain (the root and seven delegations).
pub const CHAIN_MAX: usize = 8;
/// Most rights one link grants.
pub const RIGHTS_MAX: usize = 32;
/// Most caveats one link carries.
pub const CAVEATS_MAX: usize = 16;
/// Longest export, interface or function name, and longest caveat, in bytes.
pub const TEXT_BYTES_MAX: usize = 256;
/// Largest capability, in bytes: what a call frame may carry.
pub const CAPABILITY_BYTES_MAX: usize = 16 * 1024;
/// What a link's signature covers, before the link's bytes (domain separation).
pub const SIGNING_CONTEXT: &[u8] = b"exorun-cap-v1/link\0";
/// What a link's id hashes, before the link's bytes with its signature.
pub const ID_CONTEXT: &[u8] = b"exorun-cap-v1/id\0";

/// An absent name, where a length would be.
const ABSENT: u16 = 0xFFFF;

/// What a right covers: an export, all of it or one interface, all of that or one function.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Right {
    /// The export's name (the instance a runtime exports).
    pub export: String,
    /// One interface of it (`None`: every interface).
    pub interface: Option<String>,
    /// One function of that interface (`None`: every function); only with an interface.
    pub function: Option<String>,
}

impl Right {
    /// Whether this right covers `other` (the same or a narrower right).
    pub fn covers(&self, other: &Right) -> bool {
        if self.export != other.export {
            return false;
        }
        let interface_ok = match (&self.interface, &other.interface) {
            (None, _) => true,
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => false,
        };
        let function_ok = match (&self.function, &other.function) {
            (None, _) => true,
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => false,
        };
        interface_ok && function_ok
    }

    /// `EXPORT[/INTERFACE[#FUNCTION]]` (the interface may hold `/` itself:
    /// `math/exorun:test/math#add`).
    pub fn parse(text: &str) -> Result<Right, Error> {
        let (export, rest) = match text.split_once('/') {
            Some((export, rest)) => (export, Some(rest)),
            None => (text, None),
        };
        let (interface, function) = match rest.map(|rest| rest.split_once('#')) {
            None => (None, None),
            Some(None) => (rest, None),
            Some(Some((interface, function))) => (Some(interface), Some(function)),
        };
        let right = Right {
            export: export.into(),
            interface: interface.map(Into::into),
            function: function.map(Into::into),
        };
        right.check()?;
        Ok(right)
    }

    fn check(&self) -> Result<(), Error> {
        let names = [
            Some(&self.export),
            self.interface.as_ref(),
            self.function.as_ref(),
        ];
        for name in names.into_iter().flatten() {
            if name.is_empty() || name.len() > TEXT_BYTES_MAX {
                return Err(Error::BadName);
            }
        }
        if self.function.is_some() && self.interface.is_none() {
            return Err(Error::BadName);
        }
        Ok(())
    }
}

impl core::fmt::Display for Right {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.export)?;
        if let Some(interface) = &self.interface {
            write!(f, "/{interface}")?;
        }
        if let Some(function) = &self.function {
            write!(f, "#{function}")?;
        }
        Ok(())
    }
}

/// One link of a chain: an issuer grants a subject rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The issuer's ed25519 public key.
    pub issuer: [u8; 32],
    /// The subject's ed25519 public key (who may use, or delegate, these rights).
    pub subject: [u8; 32],
    /// The id of the link it narrows (all zero for a root).
    pub parent: [u8; 32],
    /// Valid from this time on (Unix seconds).
    pub not_before: u64,
    /// Valid until this time, included (Unix seconds).
    pub not_after: u64,
    /// What it grants.
    pub rights: Vec<Right>,
    /// Opaque conditions the callee may read (and enforce).
    pub caveats: Vec<String>,
    /// The issuer's signature over `SIGNING_CONTEXT` and the link's bytes without it.
    pub signature: [u8; 64],
}

impl Link {
    /// What the issuer signs: `SIGNING_CONTEXT`, then the link's bytes without the signature.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut bytes = Vec::from(SIGNING_CONTEXT);
        self.write_unsigned(&mut bytes)?;
        Ok(bytes)
    }

    /// The link's id: SHA-256 of `ID_CONTEXT` and its bytes with the signature. A child names
    /// its parent by it, and a revocation list names links by it.
    pub fn id(&self) -> [u8; 32] {
        let mut bytes = Vec::new();
        // A link that would not encode has no bytes to name; it never verifies either.
        if self.write_unsigned(&mut bytes).is_err() {
            return [0; 32];
        }
        bytes.extend_from_slice(&self.signature);
        let mut hash = sha2::Sha256::new();
        hash.update(ID_CONTEXT);
        hash.update(&bytes);
        hash.finalize().into()
    }

    fn write_unsigned(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        if self.rights.is_empty() || self.rights.len() > RIGHTS_MAX {
            return Err(Error::TooMany { what: "rights" });
        }
        if self.caveats.len() > CAVEATS_MAX {
            return Err(Error::TooMany { what: "caveats" });
        }
        out.extend_from_slice(&self.issuer);
        out.extend_from_slice(&self.subject);
        out.extend_from_slice(&self.parent);
        out.extend_from_slice(&self.not_before.to_le_bytes());
        out.extend_from_slice(&self.not_after.to_le_bytes());
        out.push(u8::try_from(self.rights.len()).map_err(|_| Error::TooMany { what: "rights" })?);
        for right in &self.rights {
            right.check()?;
            write_text(out, Some(&right.export))?;
            write_text(out, right.interface.as_deref())?;
            write_text(out, right.function.as_deref())?;
        }
        let caveats =
            u8::try_from(self.caveats.len()).map_err(|_| Error::TooMany { what: "caveats" })?;
        out.push(caveats);
        for caveat in &self.caveats {
            if caveat.len() > TEXT_BYTES_MAX {
                return Err(Error::BadName);
            }
            write_text(out, Some(caveat))?;
        }
        Ok(())
    }
}

fn write_text(out: &mut Vec<u8>, text: Option<&str>) -> Result<(), Error> {
    let Some(text) = text else {
        out.extend_from_slice(&ABSENT.to_le_bytes());
        return Ok(());
    };
    let length = u16::try_from(text.len()).map_err(|_| Error::BadName)?;
    if usize::from(length) > TEXT_BYTES_MAX {
        return Err(Error::BadName);
    }
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// A chain of links, root first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// The links, root first; the last one's subject holds the capability.
    pub links: Vec<Link>,
}

impl Capability {
    /// The capability's bytes (see `FORMAT.md`).
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        if self.links.is_empty() || self.links.len() > CHAIN_MAX {
            return Err(Error::TooMany { what: "links" });
        }
        let mut out = Vec::from(&MAGIC[..]);
        out.push(u8::try_from(self.links.len()).map_err(|_| Error::TooMany { what: "links" })?);
        for link in &self.links {
            link.write_unsigned(&mut out)?;
            out.extend_from_slice(&link.signature);
        }
        if out.len() > CAPABILITY_BYTES_MAX {
            return Err(Error::TooLarge { bytes: out.len() });
        }
        Ok(out)
    }

    /// Reads a capability from exactly `bytes`; anything but the one canonical encoding is
    /// refused.
    pub fn decode(bytes: &[u8]) -> Result<Capability, Error> {
        if bytes.len() > CAPABILITY_BYTES_MAX {
            return Err(Error::TooLarge { bytes: bytes.len() });
        }
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(MAGIC.len())? != MAGIC {
            return Err(Error::BadMagic);
        }
        let count = usize::from(reader.byte()?);
        if count == 0 || count > CHAIN_MAX {
            return Err(Error::TooMany { what: "links" });
        }
        let mut links = Vec::with_capacity(count);
        for _ in 0..count {
            links.push(reader.link()?);
        }
        if reader.at != bytes.len() {
            return Err(Error::TrailingBytes {
                count: bytes.len() - reader.at,
            });
        }
        Ok(Capability { links })
    }

    /// The key that holds it (the last link's subject).
    pub fn holder(&self) -> Option<[u8; 32]> {
        self.links.last().map(|link| link.subject)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(count).ok_or(Error::Truncated)?;
        let taken = self.bytes.get(self.at..end).ok_or(Error::Truncated)?;
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let taken = self.take(N)?;
        taken.try_into().map_err(|_| Error::Truncated)
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn text(&mut self) -> Result<Option<String>, Error> {
        let length = u16::from_le_bytes(self.array()?);
        if length == ABSENT {
            return Ok(None);
        }
        if usize::from(length) > TEXT_BYTES_MAX {
            return Err(Error::BadName);
        }
        let bytes = self.take(usize::from(length))?;
        let text = core::str::from_utf8(bytes).map_err(|_| Error::NotUtf8)?;
        Ok(Some(text.into()))
    }

    fn link(&mut self) -> Result<Link, Error> {
        let issuer = self.array()?;
        let subject = self.array()?;
        let parent = self.array()?;
        let not_before = self.u64()?;
        let not_after = self.u64()?;
        let rights_count = usize::from(self.byte()?);
        if rights_count == 0 || rights_count > RIGHTS_MAX {
            return Err(Error::TooMany { what: "rights" });
        }
        let mut rights = Vec::with_capacity(rights_count);
        for _ in 0..rights_count {
            let export = self.text()?.ok_or(Error::BadName)?;
            let interface = self.text()?;
            let function = self.text()?;
            let right = Right {
                export,
                interface,
                function,
            };
            right.check()?;
            rights.push(right);
        }
        let caveats_count = usize::from(self.byte()?);
        if caveats_count > CAVEATS_MAX {
            return Err(Error::TooMany { what: "caveats" });
        }
        let mut caveats = Vec::with_capacity(caveats_count);
        for _ in 0..caveats_count {
            caveats.push(self.text()?.ok_or(Error::BadName)?);
        }
        let signature = self.array()?;
        Ok(Link {
            issuer,
            subject,
            parent,
            not_before,
            not_after,
            rights,
            caveats,
            signature,
        })
    }
}

/// Why bytes are not a capability (or a capability cannot be written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes end before the capability does.
    Truncated,
    /// They do not start with `MAGIC`.
    BadMagic,
    /// Bytes after the last link.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// Over `CAPABILITY_BYTES_MAX`.
    TooLarge {
        /// The size, in bytes.
        bytes: usize,
    },
    /// None, or more than the bound, of links, rights or caveats.
    TooMany {
        /// Which.
        what: &'static str,
    },
    /// A name that is empty or over `TEXT_BYTES_MAX`, or a function without an interface.
    BadName,
    /// A name or caveat that is not UTF-8.
    NotUtf8,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated => f.write_str("the capability is truncated"),
            Error::BadMagic => f.write_str("not a capability (no EXCAP\\x01 header)"),
            Error::TrailingBytes { count } => {
                write!(f, "{count} bytes follow the capability's last link")
            }
            Error::TooLarge { bytes } => write!(
                f,
                "the capability is {bytes} bytes, past {CAPABILITY_BYTES_MAX}"
            ),
            Error::TooMany { what } => write!(f, "no {what}, or more than the bound"),
            Error::BadName => {
                f.write_str("a name or caveat is empty or too long, or a function has no interface")
            }
            Error::NotUtf8 => f.write_str("a name or caveat is not UTF-8"),
        }
    }
}

impl core::error::Error for Error {}
