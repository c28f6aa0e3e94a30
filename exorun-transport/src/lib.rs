#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
//!
//! ## Modules
//!
//! - `transport`: the `Transport` trait (whole messages in, whole messages out) and its `Error`.
//! - `memory`: an in-memory duplex pair that can drop, delay or reorder messages for tests.
//! - `budget`: a byte budget shared by a server's connections.
//! - `address`: `tcp://` and `unix://` addresses, parsed whichever transports are built.
//! - `stream`: length-prefixed framing of a byte stream; `net` puts it on TCP and Unix sockets
//!   (cargo features `tcp` and `unix`, both on by default), with a listener and `tcp://` /
//!   `unix://` addresses.
//! - `identity`: node public keys (`ed25519:HEX`, always built) and, with feature `tls`, node
//!   keys: generated, read from and written to PEM files of mode 0600.
//! - `tls` (feature `tls`) and `quic` (feature `quic`): TLS 1.3 and QUIC with node keys as raw
//!   public keys, pinned by the caller, reported to the server.
//! - `nats` (feature `nats`): exports by name across many hosts, as NATS requests in a lattice.
//! - `client`: one correlating client per connection, driving its session, a state machine
//!   without I/O (sequence numbers, pending calls and their deadlines, heartbeats, go-away,
//!   the in-flight bound; property-tested inside the crate); the `Channel` trait calls go
//!   through.
//! - `peer`: a named peer with failover addresses that keeps a connection up: reconnection
//!   with back-off, heartbeats, go-away.
//! - `dispatch`: what serving asks of whoever gives calls their meaning: the `Dispatcher`, the
//!   `Origin` of each call, its `Outcome`.
//! - `connection`: serving one connection, which decodes each call frame once, hands it to a
//!   `Dispatcher` (what a call means) and writes replies.
//! - `server`: listeners (each accepting connections to serve, within a connection cap,
//!   per-listener shares and per-source bounds) and lattices, until one stop, then a bounded
//!   drain.

pub mod address;
pub mod budget;
pub mod client;
pub mod connection;
pub mod dispatch;
pub mod identity;
pub mod memory;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
#[cfg(any(feature = "tcp", feature = "unix"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "tcp", feature = "unix"))))]
pub mod net;
pub mod peer;
#[cfg(feature = "quic")]
#[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
pub mod quic;
pub mod server;
pub mod stream;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
pub mod transport;
