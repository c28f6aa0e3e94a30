//! TLS 1.3 with node keys (feature `tls`): the rustls configurations that `tls://` (and, with
//! feature `quic`, `quic://`) connections use, and the TLS stream transports.
//!
//! There is no certificate authority. Each side presents its node key as an RFC 7250 raw
//! public key (no certificate at all), and both sides authenticate: the caller accepts the
//! server only if its key is the one pinned for that peer (anything else fails the handshake
//! as `transport::Error::WrongKey`, naming both keys), and the server accepts any caller that
//! proves it holds an ed25519 key, handing that key to the serving loop so that per-export
//! allow lists can decide what it may call. Signatures are checked by rustls with the `ring`
//! provider; only TLS 1.3 and ed25519 are offered. Both sides speak the ALPN protocol
//! `neorpc/1`.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::PoisonError;

use rustls::DigitallySignedStruct;
use rustls::DistinguishedName;
use rustls::SignatureScheme;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::danger::ServerCertVerified;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::ServerName;
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::UnixTime;
use rustls::server::danger::ClientCertVerified;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;

use crate::identity::NodeKey;
use crate::identity::PublicKey;
use crate::transport;

/// What one TLS connection may make rustls hold on its own: an incoming record being assembled
/// (16 KiB of plaintext and its overhead) and the records written but not yet on the socket;
/// 64 KiB with room to spare, charged to the server's budget for as long as it lives.
pub const CONNECTION_BUFFERS_BYTES: u64 = 64 * 1024;

/// The ALPN protocol both sides offer.
pub(crate) const ALPN: &[u8] = b"neorpc/1";

/// The keys a connection to a secure peer needs: this node's own, and the one the peer must
/// present.
#[derive(Debug, Clone)]
pub struct Secure {
    /// This node's key, presented to the peer.
    pub key: Arc<NodeKey>,
    /// The key the peer must present.
    pub pin: PublicKey,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn setup_error(error: &rustls::Error) -> transport::Error {
    transport::Error::Handshake {
        address: String::new(),
        reason: format!("TLS setup: {error}"),
    }
}

/// The node key as rustls presents it: its SubjectPublicKeyInfo, and a signer.
fn certified(
    key: &NodeKey,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, transport::Error> {
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
    let signer = provider
        .key_provider
        .load_private_key(der)
        .map_err(|error| setup_error(&error))?;
    let spki = CertificateDer::from(key.public().spki_der());
    Ok(Arc::new(CertifiedKey::new(vec![spki], signer)))
}

/// A server's configuration: presents `key`, requires every caller to present one.
#[doc(hidden)] // public for the secure bench's bare-quinn baseline only
pub fn server_config(key: &NodeKey) -> Result<rustls::ServerConfig, transport::Error> {
    let provider = provider();
    let certified = certified(key, &provider)?;
    let verifier = Arc::new(AnyNodeKey {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| setup_error(&error))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(certified),
        ));
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// A caller's configuration for one connection: presents `secure.key`, accepts only
/// `secure.pin`; the returned `Presented` tells, after a failed handshake, which key the
/// server showed instead.
#[doc(hidden)] // public for the secure bench's bare-quinn baseline only
pub fn client_config(
    secure: &Secure,
) -> Result<(rustls::ClientConfig, Arc<Presented>), transport::Error> {
    let provider = provider();
    let certified = certified(&secure.key, &provider)?;
    let presented = Arc::new(Presented::default());
    let verifier = Arc::new(Pinned {
        pin: secure.pin,
        presented: Arc::clone(&presented),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| setup_error(&error))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified),
        ));
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok((config, presented))
}

/// The name a caller sends for `host_port` (raw public keys make it informative only).
pub(crate) fn server_name(host_port: &str) -> ServerName<'static> {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::try_from("node.exorun").expect("a valid DNS name"))
}

/// The key a server presented, kept by the caller's verifier.
#[derive(Debug, Default)]
#[doc(hidden)]
pub struct Presented(Mutex<Option<PublicKey>>);

impl Presented {
    fn set(&self, key: PublicKey) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(key);
    }

    /// The key the server presented, if it got that far.
    pub fn key(&self) -> Option<PublicKey> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A failed handshake with `address`, as precisely as the verifier knows it: the wrong key,
/// or rustls's reason.
pub(crate) fn handshake_error(
    address: &str,
    secure: &Secure,
    presented: &Presented,
    error: &dyn std::fmt::Display,
) -> transport::Error {
    match presented.key() {
        Some(key) if key != secure.pin => transport::Error::WrongKey {
            address: address.to_owned(),
            pinned: secure.pin.to_string(),
            presented: key.to_string(),
        },
        _ => transport::Error::Handshake {
            address: address.to_owned(),
            reason: error.to_string(),
        },
    }
}

/// The caller key a server-side connection presented (every accepted one has one).
pub(crate) fn peer_key(certificates: Option<&[CertificateDer<'_>]>) -> Option<PublicKey> {
    let first = certificates?.first()?;
    PublicKey::from_spki_der(first.as_ref())
}

fn bad_key() -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
}

fn verify_tls13(
    message: &[u8],
    presented: &CertificateDer<'_>,
    signed: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let spki = SubjectPublicKeyInfoDer::from(presented.as_ref());
    rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, signed, algorithms)
}

fn no_tls12() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
}

/// The caller's check: the server's key must be the pinned one.
#[derive(Debug)]
struct Pinned {
    pin: PublicKey,
    presented: Arc<Presented>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(key) = PublicKey::from_spki_der(end_entity.as_ref()) else {
            return Err(bad_key());
        };
        self.presented.set(key);
        if key != self.pin {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The server's check: any caller that proves it holds an ed25519 key (what it may call is
/// decided per export, by key).
#[derive(Debug)]
struct AnyNodeKey {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyNodeKey {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if PublicKey::from_spki_der(end_entity.as_ref()).is_none() {
            return Err(bad_key());
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// `future`, bounded by `deadline` if there is one (a handshake a caller is slow to finish).
pub(crate) async fn within_deadline<T>(
    deadline: Option<std::time::Duration>,
    future: impl Future<Output = T>,
    address: &str,
) -> Result<T, transport::Error> {
    let Some(deadline) = deadline else {
        return Ok(future.await);
    };
    tokio::time::timeout(deadline, future)
        .await
        .map_err(|_| transport::Error::Handshake {
            address: address.to_owned(),
            reason: format!("not finished within {} ms", exorun_common::millis(deadline)),
        })
}
