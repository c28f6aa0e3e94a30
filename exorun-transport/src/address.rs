//! Addresses: where a runtime listens or a peer is reached, written `tcp://HOST:PORT` or
//! `unix:///absolute/or/relative/path`. Parsing is pure and always built, whichever transports
//! this build has; a malformed address is `transport::Error::BadAddress` naming the reason.

use std::path::PathBuf;

use crate::transport;

/// Where a runtime listens or a peer is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `tcp://HOST:PORT`
    Tcp(String),
    /// `unix://PATH`
    Unix(PathBuf),
}

impl Address {
    /// Parses `tcp://HOST:PORT` or `unix://PATH`.
    pub fn parse(text: &str) -> Result<Self, transport::Error> {
        let bad = |reason| transport::Error::BadAddress {
            address: text.to_owned(),
            reason,
        };
        if let Some(host_port) = text.strip_prefix("tcp://") {
            let Some((host, port)) = host_port.rsplit_once(':') else {
                return Err(bad("a tcp address needs HOST:PORT"));
            };
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad("a tcp address needs a host and a port from 0 to 65535"));
            }
            return Ok(Address::Tcp(host_port.to_owned()));
        }
        let Some(path) = text.strip_prefix("unix://") else {
            return Err(bad("expected tcp://HOST:PORT or unix://PATH"));
        };
        if path.is_empty() {
            return Err(bad("a unix address needs a path"));
        }
        Ok(Address::Unix(PathBuf::from(path)))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(host_port) => write!(f, "tcp://{host_port}"),
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}
