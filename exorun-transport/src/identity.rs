//! Node identities: a runtime is known by its ed25519 public key.
//!
//! A `PublicKey` is written `ed25519:` followed by its 32 bytes in lowercase hex (64 digits),
//! the same text in manifests, allow lists, logs and errors; parsing it is pure and always
//! built. A `NodeKey` (feature `tls`) is the private half: generated with `ring`, kept in a
//! PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`, as `openssl genpkey -algorithm ed25519`
//! writes one, which is read too) of mode 0600. A key file that others may read or write is
//! refused, as ssh refuses one; so is one that is not a regular file or is over 16 KiB.
//!
//! On the wire (TLS 1.3 and QUIC, RFC 7250 raw public keys) a node presents its key as an
//! X.509 `SubjectPublicKeyInfo`: for ed25519 always the same 12 bytes followed by the key.

use std::path::Path;

/// How a public key's text begins.
pub const PREFIX: &str = "ed25519:";
/// The DER prefix of an ed25519 `SubjectPublicKeyInfo` (RFC 8410): SEQUENCE, SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING of 33 bytes (no unused bits), then the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// Largest key file read: a PEM ed25519 key is about 120 bytes.
pub const KEY_FILE_BYTES_MAX: u64 = 16 * 1024;

/// What can go wrong with keys and key files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A public key's text is not `ed25519:` and 64 hex digits.
    #[error("bad public key `{text}`: {reason}")]
    BadPublicKey {
        /// The text as written.
        text: String,
        /// Why, in words.
        reason: &'static str,
    },
    /// A key file that others may read or write.
    #[error("key file {path} has mode {mode:04o}: others may read it; make it private (chmod 600)")]
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file that cannot be read, or written (it exists already, say).
    #[error("key file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// What the system said.
        #[source]
        source: exorun_common::Cause,
    },
    /// A file that is not a regular file (a FIFO would block its open for ever, a device such
    /// as `/dev/zero` would never end).
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The file.
        path: String,
    },
    /// A file larger than what it may hold.
    #[error("{path} holds {file_bytes} bytes, more than {max}")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size, in bytes (at least `max + 1` when it was read rather than looked at).
        file_bytes: u64,
        /// The bound, in bytes.
        max: u64,
    },
    /// A key file whose contents are not an ed25519 private key.
    #[error("key file {path} holds no ed25519 private key: {reason}")]
    NotAKey {
        /// The file.
        path: String,
        /// Why, in words.
        reason: String,
    },
    /// Bytes that are not an ed25519 PKCS#8 private key.
    #[error("not an ed25519 private key: {reason}")]
    BadPrivateKey {
        /// Why, in words.
        reason: String,
    },
    /// The system's random source failed while generating a key.
    #[error("could not generate a key: the system's random source failed")]
    Random,
}

/// A node's ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The key with these 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Its 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses `ed25519:` and 64 hex digits (either case).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |reason| Error::BadPublicKey {
            text: text.to_owned(),
            reason,
        };
        let Some(hex) = text.strip_prefix(PREFIX) else {
            return Err(bad("a public key starts with `ed25519:`"));
        };
        if hex.len() != 64 {
            return Err(bad("an ed25519 key is 64 hex digits"));
        }
        let mut bytes = [0_u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let (Some(high), Some(low)) = (hex_digit(pair[0]), hex_digit(pair[1])) else {
                return Err(bad("an ed25519 key is 64 hex digits"));
            };
            *byte = high << 4 | low;
        }
        Ok(Self(bytes))
    }

    /// The key as a DER `SubjectPublicKeyInfo`, as TLS raw public keys carry it.
    pub fn spki_der(&self) -> Vec<u8> {
        let mut der = Vec::with_capacity(SPKI_PREFIX.len() + self.0.len());
        der.extend_from_slice(&SPKI_PREFIX);
        der.extend_from_slice(&self.0);
        der
    }

    /// The key in a DER `SubjectPublicKeyInfo`, if it holds an ed25519 key.
    pub fn from_spki_der(der: &[u8]) -> Option<Self> {
        let key = der.strip_prefix(&SPKI_PREFIX)?;
        let bytes: [u8; 32] = key.try_into().ok()?;
        Some(Self(bytes))
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(PREFIX)?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl std::str::FromStr for PublicKey {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Self::parse(text)
    }
}

/// Reads a secret file (a node key, an nkey seed): a regular file of at most
/// `KEY_FILE_BYTES_MAX` bytes that only its owner may read or write (`Error::Exposed`
/// otherwise, as ssh refuses a key others can read).
pub fn read_private(path: &Path) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    let shown = path.display().to_string();
    let file_error = |error: std::io::Error| Error::File {
        path: shown.clone(),
        source: exorun_common::Cause::new(error),
    };
    // Checked before opening: opening a FIFO waits for a writer, for ever.
    check_file(path, KEY_FILE_BYTES_MAX)?;
    let file = std::fs::File::open(path).map_err(file_error)?;
    let metadata = file.metadata().map_err(file_error)?;
    if !metadata.is_file() {
        return Err(Error::NotAFile { path: shown });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::Exposed { path: shown, mode });
    }
    let mut contents = Vec::new();
    file.take(KEY_FILE_BYTES_MAX + 1)
        .read_to_end(&mut contents)
        .map_err(file_error)?;
    let file_bytes = u64::try_from(contents.len()).unwrap_or(u64::MAX);
    if file_bytes > KEY_FILE_BYTES_MAX {
        return Err(Error::TooLarge {
            path: shown,
            file_bytes,
            max: KEY_FILE_BYTES_MAX,
        });
    }
    Ok(contents)
}

/// Checks, without opening it, that `path` is a regular file of at most `bytes_max` bytes (a
/// FIFO would block the open for ever, a device such as `/dev/zero` would never end); returns
/// its size. For files this crate hands to another library by path (a NATS CA bundle).
pub fn check_file(path: &Path, bytes_max: u64) -> Result<u64, Error> {
    let shown = || path.display().to_string();
    let metadata = std::fs::metadata(path).map_err(|error| Error::File {
        path: shown(),
        source: exorun_common::Cause::new(error),
    })?;
    if !metadata.is_file() {
        return Err(Error::NotAFile { path: shown() });
    }
    if metadata.len() > bytes_max {
        return Err(Error::TooLarge {
            path: shown(),
            file_bytes: metadata.len(),
            max: bytes_max,
        });
    }
    Ok(metadata.len())
}

fn hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// A node's private key (ed25519, PKCS#8) and its public key.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub struct NodeKey {
    pkcs8: Vec<u8>,
    public: PublicKey,
}

#[cfg(feature = "tls")]
impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private bytes.
        write!(f, "NodeKey({})", self.public)
    }
}

#[cfg(feature = "tls")]
impl NodeKey {
    /// A new key from the system's random source.
    pub fn generate() -> Result<Self, Error> {
        let random = ring::rand::SystemRandom::new();
        let document =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&random).map_err(|_| Error::Random)?;
        Self::from_pkcs8_der(document.as_ref())
    }

    /// The key in a PKCS#8 DER document (v1 or v2).
    pub(crate) fn from_pkcs8_der(der: &[u8]) -> Result<Self, Error> {
        Self::pair(der).map_err(|reason| Error::BadPrivateKey { reason })
    }

    fn pair(der: &[u8]) -> Result<Self, String> {
        use ring::signature::KeyPair;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|rejected| rejected.to_string())?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| "the public key is not 32 bytes".to_owned())?;
        Ok(Self {
            pkcs8: der.to_vec(),
            public: PublicKey(public),
        })
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Its ed25519 signature of `message` (for what a node key vouches for beyond a
    /// handshake, such as a capability it issues).
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], Error> {
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.pkcs8)
            .map_err(|rejected| Error::BadPrivateKey {
                reason: rejected.to_string(),
            })?;
        let signature = pair.sign(message);
        signature
            .as_ref()
            .try_into()
            .map_err(|_| Error::BadPrivateKey {
                reason: "the signature is not 64 bytes".to_owned(),
            })
    }

    /// Its PKCS#8 DER document (secret: handle with care).
    pub(crate) fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// Reads a PEM key file, refusing one that others may read or write.
    pub fn read(path: &Path) -> Result<Self, Error> {
        use rustls::pki_types::PrivatePkcs8KeyDer;
        use rustls::pki_types::pem::PemObject;

        let pem = read_private(path)?;
        let not_a_key = |reason: String| Error::NotAKey {
            path: path.display().to_string(),
            reason,
        };
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem)
            .map_err(|error| not_a_key(format!("no PKCS#8 PEM block ({error})")))?;
        Self::pair(der.secret_pkcs8_der()).map_err(not_a_key)
    }

    /// Writes the key as a new PEM file of mode 0600; an existing file is left alone.
    pub fn write_new(&self, path: &Path) -> Result<(), Error> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;

        let file_error = |error: std::io::Error| Error::File {
            path: path.display().to_string(),
            source: exorun_common::Cause::new(error),
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(file_error)?;
        file.write_all(pem("PRIVATE KEY", &self.pkcs8).as_bytes())
            .map_err(file_error)?;
        file.sync_all().map_err(file_error)
    }
}

/// `der` as a PEM block labelled `label`: base64 in lines of 64 characters.
#[cfg(feature = "tls")]
fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let bytes = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let group = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
        for index in 0..4 {
            let sextet = usize::try_from(group >> (18 - 6 * index) & 0x3f).unwrap_or(0);
            // A chunk of n bytes fills n + 1 characters; the rest are padding.
            encoded.push(if index <= chunk.len() {
                ALPHABET[sextet]
            } else {
                b'='
            });
        }
    }
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in encoded.chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reads_back_from_its_text_and_its_spki() {
        let key = PublicKey::from_bytes([0xab; 32]);
        let text = key.to_string();
        assert_eq!(text, format!("ed25519:{}", "ab".repeat(32)));
        assert_eq!(PublicKey::parse(&text), Ok(key));
        assert_eq!(
            PublicKey::parse(&text.to_uppercase().replace("ED", "ed")),
            Ok(key)
        );
        assert_eq!(key.spki_der().len(), 44);
        assert_eq!(PublicKey::from_spki_der(&key.spki_der()), Some(key));
        assert_eq!(PublicKey::from_spki_der(&key.spki_der()[..43]), None);
    }

    #[test]
    fn malformed_key_text_names_the_reason() {
        let reason = |text: &str| match PublicKey::parse(text) {
            Err(Error::BadPublicKey { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason("rsa:00"), "a public key starts with `ed25519:`");
        assert_eq!(reason("ed25519:abcd"), "an ed25519 key is 64 hex digits");
        assert_eq!(
            reason(&format!("ed25519:{}", "zz".repeat(32))),
            "an ed25519 key is 64 hex digits"
        );
    }

    #[cfg(feature = "tls")]
    #[test]
    fn pem_matches_a_known_encoding() {
        // RFC 4648 test vectors, inside PEM armour.
        let body = |der: &[u8]| pem("X", der).lines().nth(1).unwrap_or_default().to_owned();
        assert_eq!(body(b"f"), "Zg==");
        assert_eq!(body(b"fo"), "Zm8=");
        assert_eq!(body(b"foo"), "Zm9v");
        assert_eq!(body(b"foobar"), "Zm9vYmFy");
        let long = pem("X", &[0_u8; 60]);
        assert_eq!(long.lines().nth(1).map(str::len), Some(64));
        assert_eq!(long.lines().nth(2).map(str::len), Some(16));
    }
}
