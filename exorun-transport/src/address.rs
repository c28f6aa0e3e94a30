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

/// `text` as an address may be shown: credentials before an `@` in its authority replaced by
/// `***` (`nats://***@host:4222`), anything else as written.
pub fn redacted(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return text.to_owned();
    };
    format!("{scheme}://***@{}", &rest[at + 1..])
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
