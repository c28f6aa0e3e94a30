//! `exorun cap`: issue, delegate, show and revoke capabilities (`exorun-cap`'s format), signed
//! with node keys. Capability files are written new, mode 0600, and read bounded.

use std::path::Path;
use std::time::Duration;
use std::time::SystemTime;

use exorun_cap::Capability;
use exorun_cap::Link;
use exorun_cap::Right;
use exorun_cap::format;
use exorun_transport::identity;
use exorun_transport::identity::NodeKey;
use exorun_transport::identity::PublicKey;

/// A capability's validity when `--expires-in` is not given: a week.
pub const EXPIRES_DEFAULT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a capability command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key or capability file could not be read or written.
    #[error("{0}")]
    Key(#[from] identity::Error),
    /// The file is not a capability.
    #[error("{path}: {source}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong with it.
        source: format::Error,
    },
    /// An `--allow` that is not `EXPORT[/INTERFACE[#FUNCTION]]`.
    #[error("--allow {text}: {source}")]
    Allow {
        /// What was given.
        text: String,
        /// Why it is not a right.
        source: format::Error,
    },
    /// An `--expires-in` that is not a duration.
    #[error("--expires-in {0}: a duration is a number and s, m, h or d (`90m`, `7d`)")]
    Duration(String),
    /// The key given does not hold the capability it delegates.
    #[error("{key} does not hold this capability (its holder is {holder})")]
    NotTheHolder {
        /// The key given.
        key: String,
        /// The capability's holder.
        holder: String,
    },
    /// A delegation that would widen what it delegates.
    #[error("a delegation only narrows: {what}")]
    Widens {
        /// What would widen.
        what: String,
    },
    /// `--link` past the chain.
    #[error("the capability has {links} links; link {link} does not exist")]
    NoSuchLink {
        /// The chain's length.
        links: usize,
        /// The link asked for.
        link: usize,
    },
}

/// What a new link grants.
#[derive(Debug)]
pub struct Grant<'a> {
    /// Its subject.
    pub to: PublicKey,
    /// `EXPORT[/INTERFACE[#FUNCTION]]` each (for a delegation, none: what the parent grants).
    pub allow: &'a [String],
    /// How long from now (for a delegation, none: until the parent ends).
    pub expires_in: Option<&'a str>,
    /// Opaque conditions for the callee.
    pub caveats: &'a [String],
}

/// A new root capability, issued by `issuer` (its node key file), written to `out`.
pub fn issue(issuer: &Path, grant: &Grant<'_>, out: &Path) -> Result<Capability, Error> {
    let key = NodeKey::read(issuer)?;
    let now = now();
    let expires_in = match grant.expires_in {
        Some(text) => parse_duration(text)?,
        None => EXPIRES_DEFAULT,
    };
    let mut link = Link {
        issuer: *key.public().as_bytes(),
        subject: *grant.to.as_bytes(),
        parent: [0; 32],
        not_before: now,
        not_after: now.saturating_add(expires_in.as_secs()),
        rights: rights(grant.allow)?,
        caveats: grant.caveats.to_vec(),
        signature: [0; 64],
    };
    sign(&key, &mut link, out)?;
    let capability = Capability { links: vec![link] };
    write(&capability, out)?;
    Ok(capability)
}

/// `capability` (a file) delegated by its holder (`holder`, a node key file) to another key,
/// narrowed as `grant` says, written to `out`.
pub fn delegate(
    capability: &Path,
    holder: &Path,
    grant: &Grant<'_>,
    out: &Path,
) -> Result<Capability, Error> {
    let mut chain = read(capability)?;
    let key = NodeKey::read(holder)?;
    let Some(parent) = chain.links.last().cloned() else {
        return Err(format_error(
            capability,
            format::Error::TooMany { what: "links" },
        ));
    };
    if parent.subject != *key.public().as_bytes() {
        return Err(Error::NotTheHolder {
            key: key.public().to_string(),
            holder: PublicKey::from_bytes(parent.subject).to_string(),
        });
    }
    let rights = match grant.allow {
        [] => parent.rights.clone(),
        allow => rights(allow)?,
    };
    if let Some(wider) = rights
        .iter()
        .find(|right| !parent.rights.iter().any(|granted| granted.covers(right)))
    {
        let what = format!("{wider} is not granted to the holder");
        return Err(Error::Widens { what });
    }
    let now = now();
    let not_after = match grant.expires_in {
        Some(text) => now.saturating_add(parse_duration(text)?.as_secs()),
        None => parent.not_after,
    };
    if not_after > parent.not_after {
        let what = "it would outlive the capability it delegates".to_owned();
        return Err(Error::Widens { what });
    }
    let mut link = Link {
        issuer: parent.subject,
        subject: *grant.to.as_bytes(),
        parent: parent.id(),
        not_before: now.max(parent.not_before),
        not_after,
        rights,
        caveats: grant.caveats.to_vec(),
        signature: [0; 64],
    };
    sign(&key, &mut link, out)?;
    chain.links.push(link);
    write(&chain, out)?;
    Ok(chain)
}

/// A capability's links, in words.
pub fn show(path: &Path) -> Result<String, Error> {
    let capability = read(path)?;
    let now = now();
    let mut text = String::new();
    for (index, link) in capability.links.iter().enumerate() {
        let role = if index == 0 { "root" } else { "delegated" };
        text.push_str(&format!("link {index} ({role}) id {}\n", hex(&link.id())));
        let issuer = PublicKey::from_bytes(link.issuer);
        let subject = PublicKey::from_bytes(link.subject);
        text.push_str(&format!("  issuer   {issuer}\n  subject  {subject}\n"));
        let state = window(now, link.not_before, link.not_after);
        text.push_str(&format!(
            "  valid    {} to {} (Unix seconds; {state})\n",
            link.not_before, link.not_after
        ));
        for right in &link.rights {
            text.push_str(&format!("  allows   {right}\n"));
        }
        for caveat in &link.caveats {
            text.push_str(&format!("  caveat   {caveat}\n"));
        }
    }
    Ok(text)
}

/// The id of link `link` (default: the last) of a capability: what a guard's revocation list
/// names to revoke it, and every link below it.
pub fn revoke(path: &Path, link: Option<usize>) -> Result<String, Error> {
    let capability = read(path)?;
    let links = capability.links.len();
    let index = link.unwrap_or(links.saturating_sub(1));
    let Some(link) = capability.links.get(index) else {
        return Err(Error::NoSuchLink { links, link: index });
    };
    Ok(hex(&link.id()))
}

fn window(now: u64, not_before: u64, not_after: u64) -> String {
    if now < not_before {
        return format!("valid in {}", span(not_before - now));
    }
    if now > not_after {
        return format!("expired {} ago", span(now - not_after));
    }
    format!("expires in {}", span(not_after - now))
}

fn span(seconds: u64) -> String {
    match seconds {
        0..120 => format!("{seconds}s"),
        120..7200 => format!("{}m", seconds / 60),
        7200..172_800 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn rights(allow: &[String]) -> Result<Vec<Right>, Error> {
    let parsed = allow.iter().map(|text| {
        Right::parse(text).map_err(|source| Error::Allow {
            text: text.clone(),
            source,
        })
    });
    parsed.collect()
}

/// `90s`, `30m`, `12h`, `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let bad = || Error::Duration(text.to_owned());
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(
        number.checked_mul(seconds).ok_or_else(bad)?,
    ))
}

fn now() -> u64 {
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    since.map_or(0, |since| since.as_secs())
}

fn sign(key: &NodeKey, link: &mut Link, out: &Path) -> Result<(), Error> {
    let signed = link
        .signed_bytes()
        .map_err(|error| format_error(out, error))?;
    link.signature = key.sign(&signed)?;
    Ok(())
}

fn format_error(path: &Path, source: format::Error) -> Error {
    Error::Format {
        path: path.display().to_string(),
        source,
    }
}

/// Reads a capability file (bounded, refused if others may read it).
pub fn read(path: &Path) -> Result<Capability, Error> {
    let bytes = identity::read_private(path)?;
    Capability::decode(&bytes).map_err(|error| format_error(path, error))
}

/// The bytes of the capability file at `path` as a call presents them, checked to be a
/// capability (not verified: that is the guard's).
pub fn load(path: &Path) -> Result<bytes::Bytes, Error> {
    let bytes = identity::read_private(path)?;
    Capability::decode(&bytes).map_err(|error| format_error(path, error))?;
    Ok(bytes::Bytes::from(bytes))
}

fn write(capability: &Capability, out: &Path) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let bytes = capability
        .encode()
        .map_err(|error| format_error(out, error))?;
    let file_error = |error: std::io::Error| {
        Error::Key(identity::Error::File {
            path: out.display().to_string(),
            source: exorun_common::Cause::new(error),
        })
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(file_error)?;
    file.write_all(&bytes).map_err(file_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exorun_cap::verify;

    #[test]
    fn durations_read_with_their_unit() {
        assert_eq!(parse_duration("90s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("7d").ok(),
            Some(Duration::from_secs(604_800))
        );
        for bad in ["", "d", "7", "7w", "-1h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    // `verify` is exercised end to end by the CLI tests; here, that a signed link verifies.
    #[test]
    fn a_link_signed_with_a_node_key_verifies() {
        let key = NodeKey::generate().unwrap_or_else(|error| panic!("{error}"));
        let mut link = Link {
            issuer: *key.public().as_bytes(),
            subject: *key.public().as_bytes(),
            parent: [0; 32],
            not_before: 0,
            not_after: u64::MAX,
            rights: vec![Right::parse("math").unwrap_or_else(|error| panic!("{error}"))],
            caveats: Vec::new(),
            signature: [0; 64],
        };
        sign(&key, &mut link, Path::new("x")).unwrap_or_else(|error| panic!("{error}"));
        let capability = Capability { links: vec![link] };
        let request = verify::Request {
            caller: *key.public().as_bytes(),
            export: "math",
            interface: "exorun:test/math",
            function: "add",
            now: 10,
        };
        let roots = [*key.public().as_bytes()];
        assert!(verify::verify(&capability, &roots, &[], &request).is_ok());
    }
}
