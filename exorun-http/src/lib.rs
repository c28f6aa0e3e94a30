#![doc = include_str!("../README.md")]
//!
//! ## How it serves
//!
//! Serving `wasi:http/incoming-handler` instances over HTTP/1.1 (plaintext or TLS), on hyper
//! and wasmtime-wasi-http, routed by path prefix.
//!
//! Each request is matched to the route with the longest prefix that covers its path (a
//! prefix covers `/api` and `/api/...`, never `/apiary`; `/` covers everything). It takes a
//! replica of the route's instance (or a fresh instance in `per-call` mode) within the
//! instance's own limits, its `incoming-request` and `response-outparam` are made in that
//! replica's store, and `handle` runs there with the instance's fuel. Its other imports are
//! linked as any instance's are, so a handler here may compute its pages with instances on
//! other runtimes.
//!
//! **Answers the runtime gives itself:** no route 404; no request slot, or the instance's
//! waiting calls full, 503; a handler that trapped, ran out of fuel or memory, or returned
//! without answering, 500 (and the replica is restarted by supervision). Each carries a short
//! text saying which.
//!
//! **Bounds (`Config`):** connections over all, and per source (an IPv4 address, or an IPv6
//! /64; one more is closed at once); a request head's size and the time it may take to arrive
//! (also the keep-alive idle time); a request body's size and the time it may take; requests
//! being handled at once; how long a handler may run; how long answer bytes may wait for a
//! client that takes none. A TLS handshake must finish within the head deadline. On stop, no
//! connection is accepted, open ones finish the request they are in and close, within the
//! drain time.
//!
//! **Whose fault.** Each request runs as a call of its source's party (a hash of the source),
//! so a client whose requests fail a replica is the one held back by its restart back-off, not
//! every client of the route. A request without a `Host` header is answered 400 before it
//! reaches an instance.
//!
//! **A cut answer looks cut.** An answer's body ends cleanly only when its handler returned;
//! one whose handler trapped or was cut at the deadline after it began to answer ends with an
//! error, so hyper closes the connection without the body's last chunk and the client sees an
//! incomplete answer, never a short one that looks whole.

//!
//! ## Modules
//!
//! - `listen`: the bounded hyper server every HTTP listener here runs on (the `exorun`
//!   command's metrics endpoint too): [`Listen`] with its [`Bounds`], an [`Answer`] per
//!   request, and what connections are counted by ([`exorun_common::source`]).
//! - `server`: [`Server`] (routes behind a bounded listener, within its request slots) and
//!   the TLS identity ([`tls_config`]).
//! - `routes`: [`Routes`], path prefixes and their handlers' instances ([`HANDLER`]).
//! - `config`: [`Config`], the bounds a server holds its clients to.
//! - `request`: one request's answer: its trace, its turn, its handler's call.
//! - `body`: a request's body cut at its bounds, and an answer's that ends cleanly only when
//!   its handler returned.
//! - `held`: bodies and answers held whole in memory against the server's byte budget.
//! - `share`: each source's share of a route's replicas and of the request slots.
//! - `idle`: which connections are doing nothing (shed first when a listener is full).
//! - `stall`: a deadline on answer bytes a client does not take.

mod body;
mod config;
mod held;
mod idle;
mod listen;
mod request;
mod routes;
mod server;
mod share;
mod stall;

pub use config::Config;
pub use listen::Answer;
pub use listen::Bounds;
pub use listen::Listen;
pub use listen::Peer;
pub use listen::SHED_WAIT;
pub use routes::HANDLER;
pub use routes::ROUTES_MAX;
pub use routes::Routes;
pub use server::Server;
pub use server::tls_config;

/// Why HTTP cannot be served as asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A routed instance does not export `wasi:http/incoming-handler`.
    #[error("`{instance}` does not export wasi:http/incoming-handler#handle")]
    NoHandler {
        /// The instance, by name.
        instance: String,
    },
    /// A route's prefix does not start with `/`, or is routed twice.
    #[error("route `{prefix}`: a prefix starts with `/` and is routed once")]
    Prefix {
        /// The prefix.
        prefix: String,
    },
    /// More than [`ROUTES_MAX`] routes.
    #[error("at most {ROUTES_MAX} routes")]
    TooManyRoutes,
    /// The certificate or key cannot be used.
    #[error("TLS: {message}")]
    Tls {
        /// What is wrong, with the file.
        message: String,
    },
    /// A bound of `Config` that cannot be used (zero, or past what it can count).
    #[error("HTTP bound `{bound}`: {message}")]
    Config {
        /// The bound, by its field's name.
        bound: &'static str,
        /// Why not.
        message: String,
    },
}
