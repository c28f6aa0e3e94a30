//! What one HTTP server holds its clients to ([`Config`]), and the party a source's requests
//! run as.

use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::Error;
use crate::listen::Bounds;

/// What one server holds its clients to.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Connections open at once over every listener; one more is closed at once.
    pub connections_max: usize,
    /// Connections one source address may hold at once; one more is closed at once.
    pub connections_per_source_max: usize,
    /// The largest request head (request line and headers), in bytes.
    pub head_bytes_max: usize,
    /// How long a request head (and a TLS handshake) may take to arrive; also how long a
    /// kept-alive connection may stay idle.
    pub head_timeout: Duration,
    /// The largest request body, in bytes; a handler reading past it reads an error.
    pub body_bytes_max: u64,
    /// How long a request body may take to arrive from its request's start; a handler reading
    /// past it reads an error.
    pub body_timeout: Duration,
    /// Requests handled at once (each from its arrival until its handler returns); one more
    /// is answered 503 at once.
    pub requests_max: usize,
    /// Requests one source (an IPv4 address or an IPv6 /64) may have handled at once; one
    /// more is answered 503 at once, so a few hosts cannot take every request slot.
    pub requests_per_source_max: usize,
    /// Bytes of request bodies and answers held in memory at once, over every request: a
    /// body is read whole before its request takes a replica (a client that dribbles one holds
    /// none), and an answer is taken from its handler as it is written (its replica is free
    /// once it is produced, read or not). A body past it is answered 503; an answer past it
    /// streams instead.
    pub held_bytes_max: u64,
    /// The largest answer taken whole from its handler; a larger one streams (its replica held
    /// while the client reads it, bounded by `write_timeout`).
    pub answer_bytes_max: u64,
    /// How long an answer may take to be whole before it streams instead: a handler that
    /// streams its answer over time sends it as it comes.
    pub answer_whole_within: Duration,
    /// How long open connections may finish their requests after a stop.
    pub drain_timeout: Duration,
    /// How long a handler's `handle` may run, its answer's body included (a client that reads
    /// slowly holds it); past it, the call is cut and the replica restarted.
    pub request_timeout: Duration,
    /// How long answer bytes may wait for a client that takes none of them; past it, the
    /// connection is closed (a client that never reads holds nothing longer).
    pub write_timeout: Duration,
}

impl Config {
    /// Whether every bound can be used: counts from 1 to what a semaphore counts, times and
    /// sizes above zero.
    pub fn check(&self) -> Result<(), Error> {
        let counts = [
            ("connections_max", self.connections_max),
            (
                "connections_per_source_max",
                self.connections_per_source_max,
            ),
            ("requests_max", self.requests_max),
            ("requests_per_source_max", self.requests_per_source_max),
            ("head_bytes_max", self.head_bytes_max),
        ];
        for (bound, count) in counts {
            if count == 0 || count > Semaphore::MAX_PERMITS {
                let max = Semaphore::MAX_PERMITS;
                let message = format!("{count} is not from 1 to {max}");
                return Err(Error::Config { bound, message });
            }
        }
        let times = [
            ("head_timeout", self.head_timeout),
            ("body_timeout", self.body_timeout),
            ("request_timeout", self.request_timeout),
            ("write_timeout", self.write_timeout),
            ("answer_whole_within", self.answer_whole_within),
        ];
        for (bound, time) in times {
            if time.is_zero() {
                let message = "a time of zero would refuse everything".to_owned();
                return Err(Error::Config { bound, message });
            }
        }
        Ok(())
    }
}

impl Config {
    /// The bounds of its listener.
    pub(crate) fn bounds(&self) -> Bounds {
        Bounds {
            connections_max: self.connections_max,
            connections_per_source_max: self.connections_per_source_max,
            head_bytes_max: self.head_bytes_max,
            head_timeout: self.head_timeout,
            keep_alive: true,
            write_timeout: self.write_timeout,
            connection_timeout: None,
            drain_timeout: self.drain_timeout,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            connections_max: 1024,
            connections_per_source_max: 64,
            head_bytes_max: 16 * 1024,
            head_timeout: Duration::from_secs(10),
            body_bytes_max: 16 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            requests_max: 256,
            requests_per_source_max: 64,
            held_bytes_max: 256 * 1024 * 1024,
            answer_bytes_max: 16 * 1024 * 1024,
            answer_whole_within: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// The party a source's requests run as (`call::party`): a hash with fixed keys, never
/// `0` (the runtime's own) and never a principal's (those have the top bit set).
pub(crate) fn party(source: IpAddr) -> u64 {
    use std::hash::Hash;
    use std::hash::Hasher;
    let mut hasher = std::hash::DefaultHasher::new();
    source.hash(&mut hasher);
    (hasher.finish() & !(1 << 63)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use exorun_common::source;

    #[test]
    fn sources_are_addresses_and_ipv6_networks() {
        let v4: IpAddr = "192.0.2.7"
            .parse()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(source(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7"
            .parse()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(source(mapped), v4);
        let one: IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or_else(|error| panic!("{error}"));
        let two: IpAddr = "2001:db8:1:2:bbbb::9"
            .parse()
            .unwrap_or_else(|error| panic!("{error}"));
        let other: IpAddr = "2001:db8:1:3::1"
            .parse()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(source(one), source(two));
        assert_ne!(source(one), source(other));
        assert_eq!(source(one).to_string(), "2001:db8:1:2::");
        assert_ne!(party(source(one)), party(source(other)));
        assert_eq!(party(v4) & 1 << 63, 0);
        assert_ne!(party(v4), 0);
    }

    #[test]
    fn bounds_that_cannot_be_used_are_refused() {
        assert!(Config::default().check().is_ok());
        let zero = Config {
            requests_max: 0,
            ..Config::default()
        };
        let Err(Error::Config { bound, .. }) = zero.check() else {
            panic!("zero requests accepted");
        };
        assert_eq!(bound, "requests_max");
        let huge = Config {
            connections_max: usize::MAX,
            ..Config::default()
        };
        assert!(matches!(
            huge.check(),
            Err(Error::Config {
                bound: "connections_max",
                ..
            })
        ));
        let instant = Config {
            write_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert!(matches!(
            instant.check(),
            Err(Error::Config {
                bound: "write_timeout",
                ..
            })
        ));
    }
}
