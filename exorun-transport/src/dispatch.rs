//! What serving asks of whoever gives calls their meaning: a [`Dispatcher`] starts each call
//! and yields its reply frame or the failure to answer with (an [`Outcome`]), told where the
//! call came from (an [`Origin`]: the key its connection proved, the connection, the party its
//! failures count against, whether the caller is still there). The connection loop
//! (`connection`) and the server (`server`) know nothing of what a call means; a dispatcher
//! knows nothing of sockets.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use exorun_common::BoxFuture;
use neorpc::failure::Failure;
use neorpc::frame;

use crate::identity::PublicKey;

/// What a started call ends with: its encoded reply frame, or the failure to reply with.
pub type Outcome = Result<Vec<u8>, Failure>;

/// Runs calls for connections (what a call means; never what a socket is).
pub trait Dispatcher: Send + Sync {
    /// Starts `call`, decoded (once) from `frame`, for `origin`. Whatever the call needs after
    /// this returns it takes out now (the argument slab without copying, as
    /// `frame.slice_ref(call.args)`); the returned future runs the call and yields the whole
    /// reply frame (results written straight into it with `frame::ReplyWriter`) or the failure
    /// to answer with. A call still waiting to start when `origin.is_gone()` should not start.
    fn dispatch(
        &self,
        call: frame::Call<'_>,
        frame: &Bytes,
        origin: &Origin,
    ) -> BoxFuture<'static, Outcome>;

    /// Releases the resource handle `handle` that `origin`'s connection holds; the future
    /// yields the reply to `seq` (an empty result list once the resource is dropped) or the
    /// failure to answer with. A dispatcher that hands out no handles answers `ResourceGone`.
    fn release(
        &self,
        seq: frame::Seq,
        handle: u64,
        origin: &Origin,
    ) -> BoxFuture<'static, Outcome> {
        let _ = (seq, handle, origin);
        let gone = Failure::ResourceGone {
            resource: "resource".to_owned(),
        };
        Box::pin(std::future::ready(Err(gone)))
    }

    /// `origin`'s connection ended (after its last call finished): whatever it held, such as
    /// resource handles, is let go.
    fn closed(&self, origin: &Origin) {
        let _ = origin;
    }
}

/// Where a call came from, as its connection knows it: the node key its connection authenticated
/// with (secure listeners only), and whether that connection is still there to take the reply.
#[derive(Debug, Clone)]
pub struct Origin {
    key: Option<PublicKey>,
    connection: u64,
    party: u64,
    /// What its connection is counted by (`exorun_common::source`); `None` for a Unix socket,
    /// an in-memory pair or a lattice.
    source: Option<std::net::IpAddr>,
    gone: Arc<AtomicBool>,
    /// Calls from no one connection (they cannot hold resource handles).
    lattice: bool,
    /// Calls that came through a lattice (named caller or not): no key proved who sent them.
    via_lattice: bool,
}

/// A number no other origin of this process has (never 0).
fn next_connection() -> u64 {
    static CONNECTIONS: AtomicU64 = AtomicU64::new(1);
    CONNECTIONS.fetch_add(1, Ordering::Relaxed)
}

impl Origin {
    /// Calls from a connection that authenticated as `key` (`None`: a plaintext connection or
    /// a lattice, an anonymous caller).
    pub fn new(key: Option<PublicKey>) -> Self {
        let connection = next_connection();
        Self {
            key,
            connection,
            party: connection,
            source: None,
            gone: Arc::default(),
            lattice: false,
            via_lattice: false,
        }
    }

    /// Calls from a lattice that name no caller: anonymous, and from no one connection, so
    /// they cannot hold resource handles (a handle belongs to the connection that received it).
    pub fn lattice() -> Self {
        Self {
            lattice: true,
            via_lattice: true,
            ..Self::new(None)
        }
    }

    /// Calls from one caller of a lattice (it names itself in each request): anonymous, one
    /// party with every other lattice caller (`party`, the lattice's `Origin::party`), but a
    /// "connection" of its own, which can hold resource handles.
    pub fn lattice_caller(party: u64) -> Self {
        Self {
            party,
            via_lattice: true,
            ..Self::new(None)
        }
    }

    /// The same calls, from a connection whose peer is at `address` (counted by its source:
    /// an IPv4 address, an IPv6 /64).
    pub fn from_address(mut self, address: std::net::IpAddr) -> Self {
        self.source = Some(exorun_common::source(address));
        self
    }

    /// What the caller's connections are counted together by (an IPv4 address, an IPv6 /64),
    /// for the bounds a source shares; `None` for a Unix socket, an in-memory pair or a
    /// lattice.
    pub fn source(&self) -> Option<std::net::IpAddr> {
        self.source
    }

    /// Who supervision counts the calls of (see `exorun_core::call`): the connection,
    /// except that every caller of a lattice is one party.
    pub fn party(&self) -> u64 {
        self.party
    }

    /// Whether the calls came through a lattice (whether or not they name a caller): nothing
    /// proved who sent them, so what authenticated callers alone may do is not for them.
    pub fn via_lattice(&self) -> bool {
        self.via_lattice
    }

    /// Whether the calls come on one connection, which can hold resource handles.
    pub fn holds_handles(&self) -> bool {
        !self.lattice
    }

    /// The connection the calls came on, as a number no other connection of this process has
    /// (never 0): what a server accounts an anonymous caller's calls to.
    pub fn connection(&self) -> u64 {
        self.connection
    }

    /// The node key the caller's connection proved it holds; `None` for an anonymous one.
    pub fn key(&self) -> Option<&PublicKey> {
        self.key.as_ref()
    }

    /// Whether the connection the call came on has ended (its reply can no longer arrive).
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// The connection ended: calls still waiting to start should not.
    pub(crate) fn leave(&self) {
        self.gone.store(true, Ordering::Release);
    }
}
