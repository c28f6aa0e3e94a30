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
//!
//! quinn is configured for what exorun uses and nothing more, so a peer cannot make it buffer
//! past a known bound: one bidirectional stream (the caller's), no unidirectional streams, no
//! datagrams, `RECEIVE_WINDOW_BYTES` for the stream and the connection alike and
//! `SEND_WINDOW_BYTES` of replies unacknowledged; at most `INCOMING_MAX` connection attempts
//! wait to be accepted, each buffering at most `INCOMING_BUFFER_BYTES`. What one connection may
//! hold (`CONNECTION_BUFFERS_BYTES`) is charged to the server's byte budget when it is
//! admitted. When more than `RETRY_AFTER_HANDSHAKES` handshakes are in progress, a new attempt
//! from an address not yet validated is answered with a Retry (QUIC's address validation: a
//! stateless round trip the caller's QUIC stack makes on its own) before anything is held for
//! it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
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
/// Bytes a peer may send ahead of what was read, on its stream and on the connection: 256 KiB
/// carries thousands of small calls in flight, or a large frame at loopback speed, in a
/// fraction of quinn's default (1.25 MB a stream, unbounded a connection).
pub const RECEIVE_WINDOW_BYTES: u64 = 256 * 1024;
/// Bytes of our own writes quinn keeps until acknowledged.
pub const SEND_WINDOW_BYTES: u64 = 256 * 1024;
/// Crypto (handshake) bytes quinn buffers per connection (its default).
const CRYPTO_BUFFER_BYTES: u64 = 16 * 1024;
/// Connection attempts waiting to be accepted at once; more are refused by quinn at once.
pub const INCOMING_MAX: usize = 256;
/// Bytes one waiting attempt may buffer (its later handshake packets).
pub const INCOMING_BUFFER_BYTES: u64 = 64 * 1024;
/// Bytes all waiting attempts may buffer together.
const INCOMING_BUFFER_TOTAL_BYTES: u64 = 4 * 1024 * 1024;
/// What one QUIC connection may make quinn hold: both windows, its crypto buffer and what it
/// buffered while waiting; charged to the server's budget for as long as it lives.
pub const CONNECTION_BUFFERS_BYTES: u64 =
    RECEIVE_WINDOW_BYTES + SEND_WINDOW_BYTES + CRYPTO_BUFFER_BYTES + INCOMING_BUFFER_BYTES;
/// Handshakes in progress past which a new attempt from an unvalidated address gets a Retry
/// first: below it an attempt costs a legitimate caller no extra round trip.
pub const RETRY_AFTER_HANDSHAKES: usize = 32;

/// A caller's (`caller`) or a server's QUIC transport settings.
fn transport_config(caller: bool) -> Arc<quinn::TransportConfig> {
    let mut config = quinn::TransportConfig::default();
    // 30 s is well inside QUIC's limit of 2^62 ms, so the conversion cannot fail.
    config.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    if caller {
        config.keep_alive_interval(Some(KEEP_ALIVE));
    }
    // The caller opens the one stream; the server opens none.
    let streams = if caller { 0u32 } else { 1u32 };
    config.max_concurrent_bidi_streams(streams.into());
    config.max_concurrent_uni_streams(0u32.into());
    let window = quinn::VarInt::from_u64(RECEIVE_WINDOW_BYTES);
    let window = window.expect("256 KiB is far below QUIC's 2^62 limit");
    config.stream_receive_window(window);
    config.receive_window(window);
    config.send_window(SEND_WINDOW_BYTES);
    config.crypto_buffer_size(usize::try_from(CRYPTO_BUFFER_BYTES).unwrap_or(usize::MAX));
    config.datagram_receive_buffer_size(None);
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
        source: exorun_common::Cause::new(format!("{host_port} resolves to no address")),
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
    config.max_incoming(INCOMING_MAX);
    config.incoming_buffer_size(INCOMING_BUFFER_BYTES);
    config.incoming_buffer_size_total(INCOMING_BUFFER_TOTAL_BYTES);
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

/// One handshake in progress, counted for as long as this lives.
#[derive(Debug)]
pub(crate) struct Handshake(Arc<AtomicUsize>);

impl Drop for Handshake {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The next connection attempt on `endpoint`, counted among its `handshakes`; while more than
/// `RETRY_AFTER_HANDSHAKES` are in progress, an attempt from an address not yet validated is
/// answered with a Retry and not returned (the caller comes back with a token).
pub(crate) async fn accept_attempt(
    endpoint: &quinn::Endpoint,
    handshakes: &Arc<AtomicUsize>,
) -> Result<(quinn::Incoming, Handshake), transport::Error> {
    loop {
        let Some(incoming) = endpoint.accept().await else {
            return Err(transport::Error::Closed);
        };
        let crowded = handshakes.load(Ordering::Acquire) >= RETRY_AFTER_HANDSHAKES;
        if crowded && !incoming.remote_address_validated() && incoming.may_retry() {
            // Stateless: nothing is held for the attempt until it returns validated.
            let _ = incoming.retry();
            continue;
        }
        handshakes.fetch_add(1, Ordering::AcqRel);
        return Ok((incoming, Handshake(Arc::clone(handshakes))));
    }
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
