//! Socket transports: connecting to an `address::Address`, and a listener that accepts
//! connections as transports. `tcp://` and `unix://` are plaintext; `tls://` (TLS 1.3 over
//! TCP) and `quic://` (QUIC over UDP) are authenticated and encrypted with node keys (see
//! `tls`), so connecting needs this node's key and the key pinned for the peer (`Secure`), and
//! listening needs this node's key.
//!
//! TCP sockets get `TCP_NODELAY`: calls are small request/response messages, and Nagle's
//! algorithm would hold each one back waiting for the previous acknowledgement. Each kind sits
//! behind a cargo feature (`tcp`, `unix`, both on by default; `tls`, `quic`; this module exists
//! with `tcp` or `unix`): addresses always parse, and connecting to or binding one whose
//! feature is off fails with `transport::Error::NotBuilt`.
//!
//! `Sockets` is the `peer::Connector` for these addresses: a `peer::Peer` over it connects on
//! the first call, reconnects, and fails over between addresses.

#[cfg(feature = "unix")]
use std::path::PathBuf;
use std::sync::Arc;
#[cfg(feature = "quic")]
use std::sync::atomic::AtomicUsize;

#[cfg(feature = "tcp")]
use tokio::net::TcpListener;
#[cfg(feature = "tcp")]
use tokio::net::TcpStream;
#[cfg(feature = "unix")]
use tokio::net::UnixListener;
#[cfg(feature = "unix")]
use tokio::net::UnixStream;

use crate::address::Address;
#[cfg(feature = "tls")]
use crate::identity::NodeKey;
use crate::identity::PublicKey;
use crate::peer;
#[cfg(feature = "quic")]
use crate::quic;
use crate::stream;
#[cfg(feature = "tls")]
use crate::tls;
#[cfg(feature = "tls")]
use crate::tls::Secure;
use crate::transport;
use crate::transport::Transport;
use exorun_common::BoxFuture;

/// The most any connection's transport (TLS, QUIC) buffers on its own, beyond what the stream
/// charges: a source's share of a server's budget is never smaller than one largest frame and
/// this.
#[cfg(feature = "quic")]
pub(crate) const CONNECTION_BUFFERS_BYTES_MAX: u64 = quic::CONNECTION_BUFFERS_BYTES;
/// The most any connection's transport (TLS) buffers on its own, beyond what the stream charges.
#[cfg(all(feature = "tls", not(feature = "quic")))]
pub(crate) const CONNECTION_BUFFERS_BYTES_MAX: u64 = tls::CONNECTION_BUFFERS_BYTES;
/// Plaintext sockets buffer nothing beyond what the stream charges.
#[cfg(not(feature = "tls"))]
pub(crate) const CONNECTION_BUFFERS_BYTES_MAX: u64 = 0;

/// Connects to a plaintext `address` (`tcp://`, `unix://`), refusing incoming messages over
/// `message_bytes_max`. A secure address needs `connect_secure`.
#[allow(
    unreachable_patterns,
    reason = "the catch-all arm is for builds that leave a kind out"
)]
pub async fn connect(
    address: &Address,
    message_bytes_max: u64,
) -> Result<Arc<stream::Transport>, transport::Error> {
    let config = stream::Config::new(message_bytes_max);
    match address {
        #[cfg(feature = "tcp")]
        Address::Tcp(host_port) => Ok(Arc::new(tcp(TcpStream::connect(host_port).await?, config)?)),
        #[cfg(feature = "unix")]
        Address::Unix(path) => Ok(Arc::new(unix(UnixStream::connect(path).await?, config))),
        Address::Tls(_) | Address::Quic(_) => Err(transport::Error::Identity {
            address: address.to_string(),
            reason: "a secure address needs this node's key and the peer's pinned key",
        }),
        Address::Nats(_) => Err(lattice_only(address)),
        unbuilt => Err(not_built(unbuilt)),
    }
}

/// A `nats://` address names a lattice's NATS server, not a peer to hold a connection to.
fn lattice_only(address: &Address) -> transport::Error {
    transport::Error::BadAddress {
        address: address.to_string(),
        reason: "a nats:// address is reached through a lattice (`nats::Lattice`), not a socket",
    }
}

/// Connects to a secure `address` (`tls://`, `quic://`) as `secure.key`, accepting only a
/// peer that presents `secure.pin`; a plaintext address is refused (it could check no key).
#[cfg(feature = "tls")]
#[allow(
    unreachable_patterns,
    reason = "the catch-all arm is for builds that leave a kind out"
)]
pub async fn connect_secure(
    address: &Address,
    secure: &Secure,
    message_bytes_max: u64,
) -> Result<Arc<stream::Transport>, transport::Error> {
    let config = stream::Config::new(message_bytes_max);
    match address {
        Address::Tls(host_port) => tls_connect(address, host_port, secure, config).await,
        #[cfg(feature = "quic")]
        Address::Quic(host_port) => quic::connect(address, host_port, secure, config).await,
        Address::Tcp(_) | Address::Unix(_) => Err(transport::Error::Identity {
            address: address.to_string(),
            reason: "a plaintext address cannot check a pinned key; use tls:// or quic://",
        }),
        Address::Nats(_) => Err(lattice_only(address)),
        unbuilt => Err(not_built(unbuilt)),
    }
}

#[cfg(feature = "tls")]
async fn tls_connect(
    address: &Address,
    host_port: &str,
    secure: &Secure,
    config: stream::Config,
) -> Result<Arc<stream::Transport>, transport::Error> {
    let (client, presented) = tls::client_config(secure)?;
    let socket = TcpStream::connect(host_port).await?;
    socket.set_nodelay(true)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let connected = connector
        .connect(tls::server_name(host_port), socket)
        .await
        .map_err(|error| tls::handshake_error(&address.to_string(), secure, &presented, &error))?;
    let (reader, writer) = tokio::io::split(connected);
    Ok(Arc::new(stream::Transport::new(
        Box::new(reader),
        Box::new(writer),
        config,
    )))
}

/// Connects peers over sockets (`peer::Connector` for every address kind this build has).
#[derive(Debug, Clone)]
pub struct Sockets {
    message_bytes_max: u64,
    #[cfg(feature = "tls")]
    secure: Option<Secure>,
}

impl Sockets {
    /// Plaintext connections (`tcp://`, `unix://`) accepting messages up to
    /// `message_bytes_max`.
    pub fn new(message_bytes_max: u64) -> Self {
        Self {
            message_bytes_max,
            #[cfg(feature = "tls")]
            secure: None,
        }
    }

    /// Secure connections (`tls://`, `quic://`) as `secure.key` to a peer that must present
    /// `secure.pin`; a plaintext address is then refused.
    #[cfg(feature = "tls")]
    pub fn secure(message_bytes_max: u64, secure: Secure) -> Self {
        Self {
            message_bytes_max,
            secure: Some(secure),
        }
    }
}

impl peer::Connector for Sockets {
    fn connect<'a>(
        &'a self,
        address: &'a Address,
    ) -> BoxFuture<'a, Result<Arc<dyn Transport>, transport::Error>> {
        Box::pin(async move {
            #[cfg(feature = "tls")]
            if let Some(secure) = &self.secure {
                let connected: Arc<dyn Transport> =
                    connect_secure(address, secure, self.message_bytes_max).await?;
                return Ok(connected);
            }
            let connected: Arc<dyn Transport> = connect(address, self.message_bytes_max).await?;
            Ok(connected)
        })
    }
}

/// Accepts connections on a socket (what kind of socket, and its TLS or QUIC settings, stay
/// inside).
#[derive(Debug)]
pub struct Listener {
    kind: ListenerKind,
}

#[derive(Debug)]
enum ListenerKind {
    #[cfg(feature = "tcp")]
    Tcp(TcpListener),
    /// The listener and the path it created (removed when it is dropped).
    #[cfg(feature = "unix")]
    Unix(UnixListener, PathBuf),
    /// TCP, and the TLS configuration holding this node's key.
    #[cfg(feature = "tls")]
    Tls(TcpListener, Arc<rustls::ServerConfig>),
    /// The endpoint and the handshakes in progress on it.
    #[cfg(feature = "quic")]
    Quic(quinn::Endpoint, Arc<AtomicUsize>),
}

impl Listener {
    /// Binds a plaintext `address` (`tcp://127.0.0.1:0` picks a free port). A secure address
    /// needs `bind_secure`. A Unix socket file left by a server that is gone (nothing accepts
    /// on it) is replaced; one something still listens on is `AddrInUse` naming the path.
    #[allow(
        unreachable_patterns,
        reason = "the catch-all arm is for builds that leave a kind out"
    )]
    pub async fn bind(address: &Address) -> Result<Self, transport::Error> {
        let kind = match address {
            #[cfg(feature = "tcp")]
            Address::Tcp(host_port) => ListenerKind::Tcp(TcpListener::bind(host_port).await?),
            #[cfg(feature = "unix")]
            Address::Unix(path) => ListenerKind::Unix(bind_unix(path).await?, path.clone()),
            Address::Tls(_) | Address::Quic(_) => {
                return Err(transport::Error::Identity {
                    address: address.to_string(),
                    reason: "listening on a secure address needs this node's key",
                });
            }
            Address::Nats(_) => return Err(lattice_only(address)),
            unbuilt => return Err(not_built(unbuilt)),
        };
        Ok(Self { kind })
    }

    /// Binds `address`, a secure one presenting `key` to every caller (a plaintext one has
    /// no use for the key and binds as `bind` does).
    #[cfg(feature = "tls")]
    #[allow(
        unreachable_patterns,
        reason = "the catch-all arm is for builds that leave a kind out"
    )]
    pub async fn bind_secure(address: &Address, key: &NodeKey) -> Result<Self, transport::Error> {
        let kind = match address {
            Address::Tls(host_port) => {
                let config = Arc::new(tls::server_config(key)?);
                ListenerKind::Tls(TcpListener::bind(host_port).await?, config)
            }
            #[cfg(feature = "quic")]
            Address::Quic(host_port) => {
                ListenerKind::Quic(quic::bind(host_port, key).await?, Arc::default())
            }
            Address::Tcp(_) | Address::Unix(_) | Address::Nats(_) => {
                return Self::bind(address).await;
            }
            unbuilt => return Err(not_built(unbuilt)),
        };
        Ok(Self { kind })
    }

    /// The address peers can connect to (with the real port for `:0`).
    pub fn local_address(&self) -> Result<Address, transport::Error> {
        match &self.kind {
            #[cfg(feature = "tcp")]
            ListenerKind::Tcp(listener) => Ok(Address::Tcp(listener.local_addr()?.to_string())),
            #[cfg(feature = "unix")]
            ListenerKind::Unix(_, path) => Ok(Address::Unix(path.clone())),
            #[cfg(feature = "tls")]
            ListenerKind::Tls(listener, _) => Ok(Address::Tls(listener.local_addr()?.to_string())),
            #[cfg(feature = "quic")]
            ListenerKind::Quic(endpoint, _) => {
                Ok(Address::Quic(endpoint.local_addr()?.to_string()))
            }
        }
    }

    /// Waits for the next connection and opens it with a client's settings (messages up to
    /// `message_bytes_max`, no deadline, no budget).
    pub async fn accept(
        &self,
        message_bytes_max: u64,
    ) -> Result<Arc<stream::Transport>, transport::Error> {
        let accepted = self.accept_socket().await?;
        let opened = accepted
            .open(stream::Config::new(message_bytes_max))
            .await?;
        Ok(opened.transport)
    }

    /// Waits for the next connection, not yet opened: a server that is at a bound drops it
    /// (closing it at once, before any handshake), any other opens it.
    pub async fn accept_socket(&self) -> Result<Accepted, transport::Error> {
        let kind = match &self.kind {
            #[cfg(feature = "tcp")]
            ListenerKind::Tcp(listener) => AcceptedKind::Tcp(listener.accept().await?.0),
            #[cfg(feature = "unix")]
            ListenerKind::Unix(listener, _) => AcceptedKind::Unix(listener.accept().await?.0),
            #[cfg(feature = "tls")]
            ListenerKind::Tls(listener, config) => {
                AcceptedKind::Tls(listener.accept().await?.0, Arc::clone(config))
            }
            #[cfg(feature = "quic")]
            ListenerKind::Quic(endpoint, handshakes) => {
                let (incoming, handshake) = quic::accept_attempt(endpoint, handshakes).await?;
                AcceptedKind::Quic(Box::new(incoming), handshake)
            }
        };
        Ok(Accepted { kind })
    }
}

/// An accepted connection, not yet opened (no handshake made); dropping it closes it.
#[derive(Debug)]
pub struct Accepted {
    kind: AcceptedKind,
}

#[derive(Debug)]
enum AcceptedKind {
    #[cfg(feature = "tcp")]
    Tcp(TcpStream),
    #[cfg(feature = "unix")]
    Unix(UnixStream),
    #[cfg(feature = "tls")]
    Tls(TcpStream, Arc<rustls::ServerConfig>),
    /// The attempt, and its place among the handshakes in progress.
    #[cfg(feature = "quic")]
    Quic(Box<quinn::Incoming>, quic::Handshake),
}

/// An opened connection: its transport, and the key its caller authenticated with (secure
/// listeners only).
#[derive(Debug)]
pub struct Opened {
    /// The connection as a transport.
    pub transport: Arc<stream::Transport>,
    /// The caller's node key, as its handshake proved it; `None` on a plaintext listener.
    pub peer: Option<PublicKey>,
}

impl Accepted {
    /// The address the connection comes from (`None` for a Unix socket).
    pub(crate) fn source(&self) -> Option<std::net::IpAddr> {
        match &self.kind {
            #[cfg(feature = "tcp")]
            AcceptedKind::Tcp(socket) => socket.peer_addr().ok().map(|peer| peer.ip()),
            #[cfg(feature = "unix")]
            AcceptedKind::Unix(_) => None,
            #[cfg(feature = "tls")]
            AcceptedKind::Tls(socket, _) => socket.peer_addr().ok().map(|peer| peer.ip()),
            #[cfg(feature = "quic")]
            AcceptedKind::Quic(incoming, _) => Some(incoming.remote_address().ip()),
        }
    }

    /// What the connection's transport buffers on its own (TLS records, QUIC windows), beyond
    /// what the stream charges: a server charges it to its budget when it admits the
    /// connection.
    pub(crate) fn buffers_bytes(&self) -> u64 {
        match &self.kind {
            #[cfg(feature = "tcp")]
            AcceptedKind::Tcp(_) => 0,
            #[cfg(feature = "unix")]
            AcceptedKind::Unix(_) => 0,
            #[cfg(feature = "tls")]
            AcceptedKind::Tls(..) => tls::CONNECTION_BUFFERS_BYTES,
            #[cfg(feature = "quic")]
            AcceptedKind::Quic(..) => quic::CONNECTION_BUFFERS_BYTES,
        }
    }

    /// Makes the handshake, if any (within `config.frame_deadline`, when set), and opens the
    /// connection as a transport that reads as `config` says.
    pub async fn open(self, config: stream::Config) -> Result<Opened, transport::Error> {
        let plain = |transport| Opened {
            transport: Arc::new(transport),
            peer: None,
        };
        match self.kind {
            #[cfg(feature = "tcp")]
            AcceptedKind::Tcp(socket) => Ok(plain(tcp(socket, config)?)),
            #[cfg(feature = "unix")]
            AcceptedKind::Unix(socket) => Ok(plain(unix(socket, config))),
            #[cfg(feature = "tls")]
            AcceptedKind::Tls(socket, server) => tls_accept(socket, server, config).await,
            #[cfg(feature = "quic")]
            AcceptedKind::Quic(incoming, handshake) => {
                let accepted = quic::accept(*incoming, config).await;
                drop(handshake);
                let (transport, peer) = accepted?;
                Ok(Opened { transport, peer })
            }
        }
    }
}

#[cfg(feature = "tls")]
async fn tls_accept(
    socket: TcpStream,
    server: Arc<rustls::ServerConfig>,
    config: stream::Config,
) -> Result<Opened, transport::Error> {
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    socket.set_nodelay(true)?;
    let address = socket
        .peer_addr()
        .map_or_else(|_| "a caller".to_owned(), |peer| format!("tls://{peer}"));
    let handshake = acceptor.accept(socket);
    let accepted = tls::within_deadline(config.frame_deadline, handshake, &address).await?;
    let accepted = accepted.map_err(|error| transport::Error::Handshake {
        address: address.clone(),
        reason: error.to_string(),
    })?;
    let peer = tls::peer_key(accepted.get_ref().1.peer_certificates());
    let (reader, writer) = tokio::io::split(accepted);
    Ok(Opened {
        transport: Arc::new(stream::Transport::new(
            Box::new(reader),
            Box::new(writer),
            config,
        )),
        peer,
    })
}

/// Binds a Unix socket at `path`, replacing a socket file left by a server that is gone.
#[cfg(feature = "unix")]
async fn bind_unix(path: &std::path::Path) -> Result<UnixListener, transport::Error> {
    let in_use = |path: &std::path::Path| transport::Error::Io {
        kind: std::io::ErrorKind::AddrInUse,
        source: exorun_common::Cause::new(format!(
            "{} is in use by a running server",
            path.display()
        )),
    };
    match UnixListener::bind(path) {
        Ok(listener) => return Ok(listener),
        Err(error) if error.kind() != std::io::ErrorKind::AddrInUse => {
            return Err(transport::Error::Io {
                kind: error.kind(),
                source: exorun_common::Cause::with_context(
                    format!("cannot listen on {}", path.display()),
                    error,
                ),
            });
        }
        Err(_) => {}
    }
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|metadata| {
        use std::os::unix::fs::FileTypeExt;
        metadata.file_type().is_socket()
    });
    if !is_socket {
        // A file, a directory or a link where the socket would go: not a server's, and not
        // for this one to remove.
        return Err(transport::Error::Io {
            kind: std::io::ErrorKind::AlreadyExists,
            source: exorun_common::Cause::new(format!(
                "{} exists and is not a socket (remove it, or listen elsewhere)",
                path.display()
            )),
        });
    }
    let refused = matches!(
        UnixStream::connect(path).await,
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused
    );
    if !refused {
        return Err(in_use(path));
    }
    tracing::info!(path = %path.display(), "replaced a stale socket file nothing listens on");
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(|_| in_use(path))
}

impl Drop for Listener {
    fn drop(&mut self) {
        #[cfg(feature = "unix")]
        #[allow(
            irrefutable_let_patterns,
            reason = "a build with only the `unix` feature has no other kind of listener"
        )]
        if let ListenerKind::Unix(_, path) = &self.kind {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `address` needs a feature this build leaves out.
fn not_built(address: &Address) -> transport::Error {
    let feature = match address {
        Address::Tcp(_) => "tcp",
        Address::Unix(_) => "unix",
        Address::Tls(_) => "tls",
        Address::Quic(_) => "quic",
        Address::Nats(_) => "nats",
    };
    transport::Error::NotBuilt {
        address: address.to_string(),
        feature,
    }
}

#[cfg(feature = "tcp")]
fn tcp(socket: TcpStream, config: stream::Config) -> Result<stream::Transport, transport::Error> {
    socket.set_nodelay(true)?;
    let (reader, writer) = socket.into_split();
    Ok(stream::Transport::new(
        Box::new(reader),
        Box::new(writer),
        config,
    ))
}

#[cfg(feature = "unix")]
fn unix(socket: UnixStream, config: stream::Config) -> stream::Transport {
    let (reader, writer) = socket.into_split();
    stream::Transport::new(Box::new(reader), Box::new(writer), config)
}
