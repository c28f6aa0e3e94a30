//! QUIC with node keys (feature `quic`, on quinn): the same TLS 1.3 identities as `tls`, and
//! the same framing as TCP on one bidirectional stream per connection.
//!
//! One stream per connection, not one per call: calls are already multiplexed by sequence
//! number, so a stream per call would buy independence from a lost packet (head-of-line
//! blocking) at the cost of opening, flow-controlling and closing a stream for every call;
//! on loopback and on the low-loss links exorun is meant for, the measured cost
//! (`benches/roundtrip.rs`, README "Secure links") outweighs that. A lossy network, where the
//! trade may flip, is left for later: the frame layout does not change either way.
//!
//! The caller opens the stream and writes first (its first call or ping); the server accepts
//! that stream within the frame deadline, as it bounds the handshake. A connection carrying
//! nothing for `IDLE_TIMEOUT` is closed by QUIC itself; callers keep theirs alive with a
//! QUIC keep-alive every `KEEP_ALIVE`, so a quiet connection stays up and a vanished peer is
//! found by the heartbeat or the idle timeout, whichever comes first.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::io::ReadBuf;

use crate::address::Address;
use crate::identity::NodeKey;
use crate::identity::PublicKey;
use crate::stream;
use crate::tls;
use crate::tls::Secure;
use crate::transport;

/// A QUIC connection with no packet for this long is closed (QUIC's own idle timeout).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a caller's quiet connection sends a QUIC keep-alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

fn transport_config(keep_alive: bool) -> Arc<quinn::TransportConfig> {
    let mut config = quinn::TransportConfig::default();
    // 30 s is well inside QUIC's limit of 2^62 ms, so the conversion cannot fail.
    config.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    if keep_alive {
        config.keep_alive_interval(Some(KEEP_ALIVE));
    }
    Arc::new(config)
}

fn setup_error(address: &str, reason: impl std::fmt::Display) -> transport::Error {
    transport::Error::Handshake {
        address: address.to_owned(),
        reason: format!("QUIC setup: {reason}"),
    }
}

/// The first socket address `host_port` resolves to.
async fn resolve(host_port: &str) -> Result<SocketAddr, transport::Error> {
    let mut addresses = tokio::net::lookup_host(host_port).await?;
    addresses.next().ok_or_else(|| transport::Error::Io {
        kind: std::io::ErrorKind::NotFound,
        message: format!("{host_port} resolves to no address"),
    })
}

/// A server endpoint on `host_port`, presenting `key`.
pub(crate) async fn bind(
    host_port: &str,
    key: &NodeKey,
) -> Result<quinn::Endpoint, transport::Error> {
    let shown = format!("quic://{host_port}");
    let crypto = tls::server_config(key)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|error| setup_error(&shown, error))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config(false));
    let socket = resolve(host_port).await?;
    Ok(quinn::Endpoint::server(config, socket)?)
}

/// Connects to `host_port` as `secure.key`, accepting only `secure.pin`, and opens the one
/// stream.
pub(crate) async fn connect(
    address: &Address,
    host_port: &str,
    secure: &Secure,
    config: stream::Config,
) -> Result<Arc<stream::Transport>, transport::Error> {
    let shown = address.to_string();
    let (crypto, presented) = tls::client_config(secure)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|error| setup_error(&shown, error))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport_config(true));
    let target = resolve(host_port).await?;
    let local: SocketAddr = if target.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(local)?;
    let name = tls::server_name(host_port);
    let name = name.to_str();
    let connecting = endpoint
        .connect_with(client, target, &name)
        .map_err(|error| setup_error(&shown, error))?;
    let connection = connecting
        .await
        .map_err(|error| tls::handshake_error(&shown, secure, &presented, &error))?;
    let (send, recv) = connection
        .open_bi()
        .await
        .map_err(|error| closed(&shown, &error))?;
    let reader = Reading {
        stream: recv,
        _connection: connection,
        _endpoint: Some(endpoint),
    };
    Ok(Arc::new(stream::Transport::new(
        Box::new(reader),
        Box::new(send),
        config,
    )))
}

/// Makes the handshake of an incoming connection and accepts its stream, both within the
/// frame deadline.
pub(crate) async fn accept(
    incoming: quinn::Incoming,
    config: stream::Config,
) -> Result<(Arc<stream::Transport>, Option<PublicKey>), transport::Error> {
    let shown = format!("quic://{}", incoming.remote_address());
    let handshake = async {
        let connection = incoming.await.map_err(|error| closed(&shown, &error))?;
        let (send, recv) = connection
            .accept_bi()
            .await
            .map_err(|error| closed(&shown, &error))?;
        Ok::<_, transport::Error>((connection, send, recv))
    };
    let (connection, send, recv) =
        tls::within_deadline(config.frame_deadline, handshake, &shown).await??;
    let peer = connection
        .peer_identity()
        .and_then(|identity| {
            identity
                .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|certificates| tls::peer_key(Some(&certificates)));
    let reader = Reading {
        stream: recv,
        _connection: connection,
        _endpoint: None,
    };
    let transport = stream::Transport::new(Box::new(reader), Box::new(send), config);
    Ok((Arc::new(transport), peer))
}

fn closed(address: &str, error: &quinn::ConnectionError) -> transport::Error {
    transport::Error::Handshake {
        address: address.to_owned(),
        reason: error.to_string(),
    }
}

/// The receiving stream, holding its connection (and a caller's endpoint) for as long as the
/// transport reads.
struct Reading {
    stream: quinn::RecvStream,
    _connection: quinn::Connection,
    _endpoint: Option<quinn::Endpoint>,
}

impl AsyncRead for Reading {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}
