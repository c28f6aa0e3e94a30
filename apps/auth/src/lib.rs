//! auth: keys, signatures, sealed messages and capabilities, and the guard a runtime asks
//! before a guarded call. Policy lives here, not in the host: the trusted roots and the
//! revoked links come from this instance's configuration (`wasi:config`: `roots`, `revoked`,
//! each a comma-separated list), randomness from `wasi:random`, the capability format from
//! `exorun-cap`, and the cryptography from audited crates (ed25519-dalek, sha2, x25519-dalek,
//! chacha20poly1305).
use std::cell::RefCell;

wit_bindgen::generate!({ path: "../wit", world: "exorun:auth/auth", generate_all });

use chacha20poly1305::KeyInit;
use chacha20poly1305::aead::Aead;
use ed25519_dalek::Signer;
use exorun_cap::Capability;
use exorun_cap::Link;
use exorun_cap::Right;
use exports::exorun::auth::capabilities;
use exports::exorun::auth::crypto::KeyPair;
use exports::exorun::auth::guard;
use sha2::Digest;

struct App;

thread_local! {
    /// Links revoked while this instance lives (by id).
    static REVOKED: RefCell<Vec<[u8; 32]>> = const { RefCell::new(Vec::new()) };
}

fn random<const N: usize>() -> [u8; N] {
    let bytes = wasip2::random::random::get_random_bytes(N as u64);
    let mut out = [0; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

fn array<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], String> {
    bytes
        .try_into()
        .map_err(|_| format!("{what} is {} bytes, not {N}", bytes.len()))
}

fn signing_key(secret: &[u8]) -> Result<ed25519_dalek::SigningKey, String> {
    Ok(ed25519_dalek::SigningKey::from_bytes(&array(secret, "the secret key")?))
}

/// `ed25519:<64 hex digits>` as its 32 bytes.
fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let hex = text
        .strip_prefix("ed25519:")
        .ok_or_else(|| format!("`{text}` is not `ed25519:<64 hex digits>`"))?;
    let bytes = parse_hex(hex).ok_or_else(|| format!("`{text}` is not `ed25519:<64 hex digits>`"))?;
    array(&bytes, "a key")
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A comma-separated list from this instance's configuration (empty when unset).
fn configured(key: &str) -> Result<Vec<String>, String> {
    let value = wasi::config::store::get(key).map_err(|error| format!("config {key}: {error:?}"))?;
    let list = value.unwrap_or_default();
    let items = list.split(',').map(str::trim).filter(|item| !item.is_empty());
    Ok(items.map(str::to_owned).collect())
}

fn roots() -> Result<Vec<[u8; 32]>, String> {
    configured("roots")?.iter().map(|key| parse_key(key)).collect()
}

fn revoked() -> Result<Vec<[u8; 32]>, String> {
    let mut ids: Vec<[u8; 32]> = Vec::new();
    for id in configured("revoked")? {
        let bytes = parse_hex(&id).ok_or_else(|| format!("revoked id `{id}` is not hex"))?;
        ids.push(array(&bytes, "a revoked id")?);
    }
    REVOKED.with(|revoked| ids.extend(revoked.borrow().iter().copied()));
    Ok(ids)
}

fn rights(texts: &[String]) -> Result<Vec<Right>, String> {
    texts
        .iter()
        .map(|text| Right::parse(text).map_err(|error| format!("right `{text}`: {error}")))
        .collect()
}

fn sign_link(link: &mut Link, key: &ed25519_dalek::SigningKey) -> Result<(), String> {
    exorun_cap::verify::sign_with(link, |bytes| key.sign(bytes).to_bytes())
        .map_err(|error| error.to_string())
}

fn verify_for(
    capability: &[u8],
    caller: [u8; 32],
    call: (&str, &str, &str),
    now: u64,
) -> Result<exorun_cap::Grant, String> {
    let capability = Capability::decode(capability).map_err(|error| error.to_string())?;
    let request = exorun_cap::Request {
        caller,
        export: call.0,
        interface: call.1,
        function: call.2,
        now,
    };
    exorun_cap::verify::verify(&capability, &roots()?, &revoked()?, &request)
        .map_err(|denial| denial.to_string())
}

impl exports::exorun::auth::crypto::Guest for App {
    fn generate() -> KeyPair {
        let key = ed25519_dalek::SigningKey::from_bytes(&random::<32>());
        KeyPair {
            secret: key.to_bytes().to_vec(),
            public: key.verifying_key().to_bytes().to_vec(),
        }
    }

    fn sign(secret: Vec<u8>, message: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(signing_key(&secret)?.sign(&message).to_bytes().to_vec())
    }

    fn verify(public: Vec<u8>, message: Vec<u8>, signature: Vec<u8>) -> bool {
        let (Ok(public), Ok(signature)) = (array::<32>(&public, "key"), array::<64>(&signature, "signature")) else {
            return false;
        };
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&public) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&signature);
        key.verify_strict(&message, &signature).is_ok()
    }

    fn hash(data: Vec<u8>) -> Vec<u8> {
        sha2::Sha256::digest(&data).to_vec()
    }

    fn generate_exchange() -> KeyPair {
        let secret = x25519_dalek::StaticSecret::from(random::<32>());
        let public = x25519_dalek::PublicKey::from(&secret);
        KeyPair {
            secret: secret.to_bytes().to_vec(),
            public: public.to_bytes().to_vec(),
        }
    }

    fn seal(recipient: Vec<u8>, message: Vec<u8>) -> Result<Vec<u8>, String> {
        let recipient = x25519_dalek::PublicKey::from(array::<32>(&recipient, "the recipient key")?);
        let ephemeral = x25519_dalek::StaticSecret::from(random::<32>());
        let ephemeral_public = x25519_dalek::PublicKey::from(&ephemeral);
        let shared = ephemeral.diffie_hellman(&recipient);
        let key = seal_key(shared.as_bytes(), ephemeral_public.as_bytes(), recipient.as_bytes());
        let nonce = random::<24>();
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(&key.into());
        let sealed = cipher
            .encrypt(&nonce.into(), message.as_slice())
            .map_err(|_| "cannot seal the message".to_owned())?;
        let mut out = ephemeral_public.to_bytes().to_vec();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(secret: Vec<u8>, sealed: Vec<u8>) -> Result<Vec<u8>, String> {
        if sealed.len() < 32 + 24 + 16 {
            return Err("too short to be a sealed message".to_owned());
        }
        let secret = x25519_dalek::StaticSecret::from(array::<32>(&secret, "the secret key")?);
        let public = x25519_dalek::PublicKey::from(&secret);
        let ephemeral = x25519_dalek::PublicKey::from(array::<32>(&sealed[..32], "the ephemeral key")?);
        let nonce: [u8; 24] = array(&sealed[32..56], "the nonce")?;
        let shared = secret.diffie_hellman(&ephemeral);
        let key = seal_key(shared.as_bytes(), ephemeral.as_bytes(), public.as_bytes());
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(&key.into());
        cipher
            .decrypt(&nonce.into(), &sealed[56..])
            .map_err(|_| "the message was tampered with, or sealed to another key".to_owned())
    }
}

/// The sealing key: SHA-256 over a domain, the shared secret and both public keys.
fn seal_key(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32]) -> [u8; 32] {
    let mut hash = sha2::Sha256::new();
    hash.update(b"exorun-seal-v1\0");
    hash.update(shared);
    hash.update(ephemeral);
    hash.update(recipient);
    hash.finalize().into()
}

impl exports::exorun::auth::capabilities::Guest for App {
    fn issue(
        secret: Vec<u8>,
        subject: String,
        rights: Vec<String>,
        not_before: u64,
        not_after: u64,
        caveats: Vec<String>,
    ) -> Result<Vec<u8>, String> {
        let key = signing_key(&secret)?;
        let mut link = Link {
            issuer: key.verifying_key().to_bytes(),
            subject: parse_key(&subject)?,
            parent: [0; 32],
            not_before,
            not_after,
            rights: self::rights(&rights)?,
            caveats,
            signature: [0; 64],
        };
        sign_link(&mut link, &key)?;
        let capability = Capability { links: vec![link] };
        capability.encode().map_err(|error| error.to_string())
    }

    fn delegate(
        capability: Vec<u8>,
        secret: Vec<u8>,
        subject: String,
        rights: Vec<String>,
        not_after: u64,
        caveats: Vec<String>,
    ) -> Result<Vec<u8>, String> {
        let mut chain = Capability::decode(&capability).map_err(|error| error.to_string())?;
        let key = signing_key(&secret)?;
        let parent = chain.links.last().cloned().ok_or("an empty capability")?;
        if parent.subject != key.verifying_key().to_bytes() {
            return Err("the key does not hold this capability".to_owned());
        }
        let rights = if rights.is_empty() { parent.rights.clone() } else { self::rights(&rights)? };
        // A delegation only narrows; verification would refuse a wider one anyway.
        let held = |right: &Right| parent.rights.iter().any(|granted| granted.covers(right));
        if let Some(wider) = rights.iter().find(|right| !held(right)) {
            return Err(format!("a delegation only narrows: {wider} is not granted to the holder"));
        }
        let mut link = Link {
            issuer: parent.subject,
            subject: parse_key(&subject)?,
            parent: parent.id(),
            not_before: parent.not_before,
            not_after: not_after.min(parent.not_after),
            rights,
            caveats,
            signature: [0; 64],
        };
        sign_link(&mut link, &key)?;
        chain.links.push(link);
        chain.encode().map_err(|error| error.to_string())
    }

    fn verify(
        capability: Vec<u8>,
        caller: String,
        export: String,
        iface: String,
        function: String,
        now: u64,
    ) -> Result<capabilities::Grant, String> {
        let caller = parse_key(&caller)?;
        let grant = verify_for(&capability, caller, (&export, &iface, &function), now)?;
        Ok(capabilities::Grant {
            caveats: grant.caveats,
            not_after: grant.not_after,
        })
    }

    fn link_ids(capability: Vec<u8>) -> Result<Vec<String>, String> {
        let capability = Capability::decode(&capability).map_err(|error| error.to_string())?;
        Ok(capability.links.iter().map(|link| hex(&link.id())).collect())
    }

    fn revoke(id: String) -> Result<(), String> {
        let bytes = parse_hex(&id).ok_or_else(|| format!("`{id}` is not hex"))?;
        let id = array::<32>(&bytes, "an id")?;
        REVOKED.with(|revoked| revoked.borrow_mut().push(id));
        Ok(())
    }
}

impl exports::exorun::auth::guard::Guest for App {
    fn check(request: guard::Request) -> Result<guard::Grant, String> {
        let Some(caller) = request.caller else {
            return Err("an anonymous caller holds no capability".to_owned());
        };
        let caller = parse_key(&caller)?;
        let roots = roots()?;
        // A root key itself needs no capability.
        if roots.contains(&caller) {
            return Ok(guard::Grant {
                caveats: Vec::new(),
                not_after: u64::MAX,
            });
        }
        let Some(capability) = request.capability else {
            return Err("no capability was presented".to_owned());
        };
        let call = (request.export.as_str(), request.iface.as_str(), request.function.as_str());
        let grant = verify_for(&capability, caller, call, request.now)?;
        Ok(guard::Grant {
            caveats: grant.caveats,
            not_after: grant.not_after,
        })
    }
}

export!(App);
