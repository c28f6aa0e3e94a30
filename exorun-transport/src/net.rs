//! TCP and Unix-socket transports: connecting to an `address::Address`, and a listener that
//! accepts connections as transports.
//!
//! TCP sockets get `TCP_NODELAY`: calls are small request/response messages, and Nagle's algorithm would hold
//! each one back waiting for the previous acknowledgement. Each socket kind sits behind a cargo
//! feature (`tcp`, `unix`; both on by default; this module exists with either): addresses always
//! parse, and connecting to or binding one whose feature is off fails with
//! `transport::Error::NotBuilt`.
//!
//! `Lazy` connects on its first send instead of up front, so a composition can be checked and
//! started without touching the network, and a peer that is not up yet is retried by the next
//! call (a failed connect fails only the call that tried it).

#[cfg(feature = "unix")]
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use bytes::Bytes;
#[cfg(feature = "tcp")]
use tokio::net::TcpListener;
#[cfg(feature = "tcp")]
use tokio::net::TcpStream;
#[cfg(feature = "unix")]
use tokio::net::UnixListener;
#[cfg(feature = "unix")]
use tokio::net::UnixStream;
use tokio::sync::Notify;
use tokio::sync::OnceCell;

use crate::address::Address;
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

/// A transport to `address` that connects on the first send; see the module doc.
#[derive(Debug)]
pub struct Lazy {
    address: Address,
    message_bytes_max: u64,
    connection: OnceCell<Arc<stream::Transport>>,
    connected: Notify,
    closed: AtomicBool,
}

impl Lazy {
    /// A transport that will connect to `address` when first used.
    pub fn new(address: Address, message_bytes_max: u64) -> Self {
        Self {
            address,
            message_bytes_max,
            connection: OnceCell::new(),
            connected: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Waits for a connection (or `close`), then receives from it.
    async fn recv_when_connected(&self) -> Result<Option<Bytes>, transport::Error> {
        loop {
            // Registered before the checks, so a connection made in between is not missed.
            let notified = self.connected.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.closed.load(Ordering::Acquire) {
                return Ok(None);
            }
            if let Some(connection) = self.connection.get() {
                return connection.recv().await;
            }
            notified.await;
        }
    }

    /// Whether a connection has been made.
    pub fn is_connected(&self) -> bool {
        self.connection.initialized()
    }
}

impl Transport for Lazy {
    fn send(&self, message: Bytes) -> BoxFuture<'_, Result<(), transport::Error>> {
        Box::pin(async move {
            if self.closed.load(Ordering::Acquire) {
                return Err(transport::Error::Closed);
            }
            if let Some(connection) = self.connection.get() {
                return connection.send(message).await;
            }
            let connect = || connect(&self.address, self.message_bytes_max);
            let connection = self.connection.get_or_try_init(connect).await?;
            // Only the first sends get here; later ones take the branch above.
            self.connected.notify_waiters();
            connection.send(message).await
        })
    }

    fn recv(&self) -> BoxFuture<'_, Result<Option<Bytes>, transport::Error>> {
        Box::pin(self.recv_when_connected())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.closed.store(true, Ordering::Release);
            self.connected.notify_waiters();
            if let Some(connection) = self.connection.get() {
                connection.close().await;
            }
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
