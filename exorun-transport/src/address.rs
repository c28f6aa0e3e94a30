//! Addresses: where a runtime listens or a peer is reached, written `tcp://HOST:PORT`,
//! `unix:///absolute/or/relative/path`, `tls://HOST:PORT` (TLS 1.3 over TCP) or
//! `quic://HOST:PORT` (QUIC over UDP), or a NATS server, `nats://[CREDENTIALS@]HOST:PORT`, for
//! lattices (whose credentials are never shown: `Display` writes only the host and port). Parsing is pure and always built, whichever transports
//! this build has; a malformed address is `transport::Error::BadAddress` naming the reason.

use std::path::PathBuf;

use crate::transport;

/// Makes an address of one kind from its `HOST:PORT`.
type MakeAddress = fn(String) -> Address;

/// Where a runtime listens or a peer is reached. `Debug` and `Display` never show credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum Address {
    /// `tcp://HOST:PORT`
    Tcp(String),
    /// `unix://PATH`
    Unix(PathBuf),
    /// `tls://HOST:PORT`: TLS 1.3 over TCP, authenticated by node keys.
    Tls(String),
    /// `quic://HOST:PORT`: QUIC over UDP, authenticated by node keys.
    Quic(String),
    /// `nats://[user:password@|token@]HOST:PORT`: a NATS server of a lattice (the whole URL,
    /// credentials included; shown without them).
    Nats(String),
}

impl Address {
    /// Parses `tcp://HOST:PORT`, `unix://PATH`, `tls://HOST:PORT` or `quic://HOST:PORT`.
    pub fn parse(text: &str) -> Result<Self, transport::Error> {
        let bad = |reason| transport::Error::BadAddress {
            address: redacted(text),
            reason,
        };
        let schemes: [(&str, MakeAddress); 3] = [
            ("tcp://", Address::Tcp),
            ("tls://", Address::Tls),
            ("quic://", Address::Quic),
        ];
        for (scheme, make) in schemes {
            let Some(host_port) = text.strip_prefix(scheme) else {
                continue;
            };
            if host_port.contains('@') {
                return Err(bad(
                    "credentials belong in nats:// addresses only, and never in a flag",
                ));
            }
            let Some((host, port)) = host_port.rsplit_once(':') else {
                return Err(bad("a network address needs HOST:PORT"));
            };
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad(
                    "a network address needs a host and a port from 0 to 65535",
                ));
            }
            return Ok(make(host_port.to_owned()));
        }
        if let Some(rest) = text.strip_prefix("nats://") {
            let host_port = rest
                .rsplit_once('@')
                .map_or(rest, |(_, host_port)| host_port);
            let Some((host, port)) = host_port.rsplit_once(':') else {
                return Err(bad("a network address needs HOST:PORT"));
            };
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad(
                    "a network address needs a host and a port from 0 to 65535",
                ));
            }
            return Ok(Address::Nats(text.to_owned()));
        }
        let Some(path) = text.strip_prefix("unix://") else {
            return Err(bad(
                "expected tcp://HOST:PORT, unix://PATH, tls://HOST:PORT, quic://HOST:PORT or \
                 nats://HOST:PORT",
            ));
        };
        if path.is_empty() {
            return Err(bad("a unix address needs a path"));
        }
        Ok(Address::Unix(PathBuf::from(path)))
    }
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Address({self})")
    }
}

/// `text` as an address may be shown: whatever comes before the last `@` (credentials, in a
/// URL however mistyped: `nats:/u:p@h`, `tls://u:p@h`, `u:p@h`) replaced by `***` after the
/// scheme and its slashes (`nats://***@host:4222`); text without an `@`, and a `unix://`
/// path (which carries no credentials), as written. A URL's path with an `@` in it is shown
/// cut too: a message may say less, never a secret.
pub fn redacted(text: &str) -> String {
    let Some(at) = text.rfind('@').filter(|_| !text.starts_with("unix:")) else {
        return text.to_owned();
    };
    let is_scheme = |scheme: &str| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    };
    // A scheme is followed by at least one `/` (`nats:/…`, `tls://…`); `user:password@host`
    // has none.
    let scheme_end = text
        .find(':')
        .filter(|&end| end < at && is_scheme(&text[..end]) && text[end + 1..].starts_with('/'));
    let Some(end) = scheme_end else {
        return format!("***@{}", &text[at + 1..]);
    };
    let slashes = text[end + 1..at].chars().take_while(|&c| c == '/').count();
    format!("{}***@{}", &text[..end + 1 + slashes], &text[at + 1..])
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(host_port) => write!(f, "tcp://{host_port}"),
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
            Address::Tls(host_port) => write!(f, "tls://{host_port}"),
            Address::Quic(host_port) => write!(f, "quic://{host_port}"),
            Address::Nats(url) => {
                let rest = url.strip_prefix("nats://").unwrap_or(url);
                let host_port = rest
                    .rsplit_once('@')
                    .map_or(rest, |(_, host_port)| host_port);
                write!(f, "nats://{host_port}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_however_the_address_is_written() {
        let cases = [
            ("nats://u:secret@h:4222", "nats://***@h:4222"),
            ("nats:/u:secret@h:4222", "nats:/***@h:4222"),
            ("tls://u:secret@h:1", "tls://***@h:1"),
            ("u:secret@h:1", "***@h:1"),
            ("tcp://h:1", "tcp://h:1"),
        ];
        for (text, shown) in cases {
            assert_eq!(redacted(text), shown, "{text}");
        }
        for text in [
            "tls://u:secret@h:1",
            "tcp://u:secret@h:1",
            "nats:/u:secret@h:1",
        ] {
            let refused = Address::parse(text);
            let Err(transport::Error::BadAddress { address, .. }) = &refused else {
                panic!("{text} is not refused: {refused:?}");
            };
            assert!(!address.contains("secret"), "{text}: {address}");
            let message = refused.map_or_else(|error| error.to_string(), |_| String::new());
            assert!(!message.contains("secret"), "{text}: {message}");
        }
    }
}
