//! TCP and Unix-socket transports: connecting to an `address::Address`, and a listener that
//! accepts connections as transports.
//!
//! TCP sockets get `TCP_NODELAY`: calls are small request/response messages, and Nagle's algorithm would hold
//! each one back waiting for the previous acknowledgement. Each socket kind sits behind a cargo
//! feature (`tcp`, `unix`; both on by default; this module exists with either): addresses always
//! parse, and connecting to or binding one whose feature is off fails with
//! `transport::Error::NotBuilt`.
//!
//! `Sockets` is the `peer::Connector` for these addresses: a `peer::Peer` over it connects on
//! the first call, reconnects, and fails over between addresses.

#[cfg(feature = "unix")]
use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "tcp")]
use tokio::net::TcpListener;
#[cfg(feature = "tcp")]
use tokio::net::TcpStream;
#[cfg(feature = "unix")]
use tokio::net::UnixListener;
#[cfg(feature = "unix")]
use tokio::net::UnixStream;

use crate::address::Address;
use crate::peer;
use crate::stream;
use crate::transport;
use crate::transport::BoxFuture;
use crate::transport::Transport;

/// Connects to `address`, refusing incoming messages over `message_bytes_max`.
pub async fn connect(
    address: &Address,
    message_bytes_max: u64,
) -> Result<Arc<stream::Transport>, transport::Error> {
    match address {
        #[cfg(feature = "tcp")]
        Address::Tcp(host_port) => Ok(Arc::new(tcp(
            TcpStream::connect(host_port).await?,
            stream::Config::new(message_bytes_max),
        )?)),
        #[cfg(feature = "unix")]
        Address::Unix(path) => Ok(Arc::new(unix(
            UnixStream::connect(path).await?,
            stream::Config::new(message_bytes_max),
        ))),
        #[cfg(not(all(feature = "tcp", feature = "unix")))]
        unbuilt => Err(not_built(unbuilt)),
    }
}

/// Connects peers over sockets (`peer::Connector` for `tcp://` and `unix://` addresses).
#[derive(Debug, Clone, Copy)]
pub struct Sockets {
    /// Largest message accepted on each connection.
    pub message_bytes_max: u64,
}

impl peer::Connector for Sockets {
    fn connect<'a>(
        &'a self,
        address: &'a Address,
    ) -> BoxFuture<'a, Result<Arc<dyn Transport>, transport::Error>> {
        Box::pin(async move {
            let connected: Arc<dyn Transport> = connect(address, self.message_bytes_max).await?;
            Ok(connected)
        })
    }
}

/// Accepts connections on a TCP or Unix socket.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    #[cfg(feature = "tcp")]
    Tcp(TcpListener),
    /// A Unix-socket listener and the path it created.
    #[cfg(feature = "unix")]
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `address` (`tcp://127.0.0.1:0` picks a free port).
    pub async fn bind(address: &Address) -> Result<Self, transport::Error> {
        match address {
            #[cfg(feature = "tcp")]
            Address::Tcp(host_port) => Ok(Listener::Tcp(TcpListener::bind(host_port).await?)),
            #[cfg(feature = "unix")]
            Address::Unix(path) => Ok(Listener::Unix(UnixListener::bind(path)?, path.clone())),
            #[cfg(not(all(feature = "tcp", feature = "unix")))]
            unbuilt => Err(not_built(unbuilt)),
        }
    }

    /// The address peers can connect to (with the real port for `:0`).
    pub fn local_address(&self) -> Result<Address, transport::Error> {
        match self {
            #[cfg(feature = "tcp")]
            Listener::Tcp(listener) => Ok(Address::Tcp(listener.local_addr()?.to_string())),
            #[cfg(feature = "unix")]
            Listener::Unix(_, path) => Ok(Address::Unix(path.clone())),
        }
    }

    /// Waits for the next connection and makes it a transport with a client's settings
    /// (messages up to `message_bytes_max`, no deadline, no budget).
    pub async fn accept(
        &self,
        message_bytes_max: u64,
    ) -> Result<Arc<stream::Transport>, transport::Error> {
        let accepted = self.accept_socket().await?;
        accepted.into_transport(stream::Config::new(message_bytes_max))
    }

    /// Waits for the next connection, as a socket: a server that is at its connection cap
    /// drops it (closing it at once, which costs nothing more), any other makes it a
    /// transport.
    pub async fn accept_socket(&self) -> Result<Accepted, transport::Error> {
        match self {
            #[cfg(feature = "tcp")]
            Listener::Tcp(listener) => Ok(Accepted::Tcp(listener.accept().await?.0)),
            #[cfg(feature = "unix")]
            Listener::Unix(listener, _) => Ok(Accepted::Unix(listener.accept().await?.0)),
        }
    }
}

/// An accepted connection, not yet a transport; dropping it closes it.
#[derive(Debug)]
pub enum Accepted {
    /// A TCP connection.
    #[cfg(feature = "tcp")]
    Tcp(TcpStream),
    /// A Unix-socket connection.
    #[cfg(feature = "unix")]
    Unix(UnixStream),
}

impl Accepted {
    /// The connection as a transport that reads as `config` says.
    pub fn into_transport(
        self,
        config: stream::Config,
    ) -> Result<Arc<stream::Transport>, transport::Error> {
        match self {
            #[cfg(feature = "tcp")]
            Accepted::Tcp(socket) => Ok(Arc::new(tcp(socket, config)?)),
            #[cfg(feature = "unix")]
            Accepted::Unix(socket) => Ok(Arc::new(unix(socket, config))),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        #[cfg(feature = "unix")]
        #[allow(
            irrefutable_let_patterns,
            reason = "a build with only the `unix` feature has no other kind of listener"
        )]
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(not(all(feature = "tcp", feature = "unix")))]
fn not_built(address: &Address) -> transport::Error {
    let feature = match address {
        Address::Tcp(_) => "tcp",
        Address::Unix(_) => "unix",
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
