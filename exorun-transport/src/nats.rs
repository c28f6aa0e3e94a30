//! Exports by name across many hosts, on NATS (feature `nats`, the official `async-nats`
//! client).
//!
//! A **lattice** is a namespace of exports shared by every runtime attached to the same NATS
//! system under the same lattice name (`LATTICE_DEFAULT` when none is given). A serving
//! runtime subscribes each export to `subject(lattice, export)` in a queue group of the same
//! name, so NATS hands each call to one of the runtimes serving that export, wherever they
//! are; a caller sends each call as a NATS request to the subject of the call frame's target,
//! and the reply is the reply frame. The frame layout does not change: a request's payload is
//! exactly the neorpc call frame, a reply's exactly the reply frame.
//!
//! Subjects are `exorun.<lattice>.<export>`, each name escaped into one subject token: ASCII
//! letters, digits, `-` and `_` stand for themselves, every other byte of its UTF-8 is `~`
//! and two lowercase hex digits (so `.`, `*`, `>` and whitespace can never split a token or act
//! as a wildcard), and the empty name is `~`. Escaping is injective, so no export can capture
//! another's subject.
//!
//! Limits: a frame over the NATS server's `max_payload` (read at connect, 1 MiB by default)
//! is refused before it is sent (`transport::Error::MessageTooLarge`, both sizes); a reply
//! over it is answered `ReplyTooLarge`. A serving runtime runs at most `calls_in_flight_max`
//! calls at once and answers a call past that `Overloaded` at once; its connection buffers at
//! most `SUBSCRIPTION_CAPACITY` messages (only reached if the loop cannot keep up even with
//! refusing; past it NATS drops messages for it as a slow consumer, their callers time out and
//! `Served::lost` counts them). "No responders" (nothing in the lattice serves the target)
//! fails a call at once as `InstanceNotFound`, never as a timeout. Reconnection is the
//! client's own: calls in flight while the NATS connection is down time out, later ones go
//! through once it is back.
//!
//! A serving runtime that stops leaves its queue groups without losing a call NATS routed to
//! it: each subscription asks the server to stop after a count of calls a little past what was
//! routed so far (the server stops routing exactly there and the client keeps the subscription
//! until that many arrived), the other members take the new calls, and when no call has come
//! for `QUIET` the rest are unsubscribed at once; then it answers everything it received and
//! flushes. (The client's own drain forgets a subscription as soon as its unsubscribe is
//! written and so drops calls routed in that round trip; `Served::lost` counts any message
//! NATS delivered that the loop never saw.)
//!
//! Resource handles: each serving runtime also subscribes each export on a subject of its own
//! (`runtime_subject`, its random tag) and names the tag in every reply (`RUNTIME_HEADER`);
//! each caller names itself in every request (`CALLER_HEADER`), so the handles a runtime
//! hands it are its own. A call that names handles goes to the runtime that holds them, and
//! finds none there (`SessionEnded`, so `ResourceGone`) once it is gone. A caller silent on a
//! runtime for `CALLER_IDLE` is let go there, with its handles; at most `CALLERS_MAX` are kept.
//!
//! Credentials (user and password or a token in the URL, an nkey seed file, TLS) go to
//! `async-nats` and are never logged: an address shows only its host and port.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use neorpc::failure::Failure;
use neorpc::frame;
use tokio::sync::OnceCell;

use crate::client;
use crate::identity;
use crate::transport;
use exorun_common::BoxFuture;
use exorun_common::Cause;

mod responder;

pub use responder::CALLER_IDLE;
pub use responder::CALLERS_MAX;
pub use responder::QUIET;
pub use responder::REPLY_PREFIX;
pub use responder::Served;
pub use responder::Subscribed;

/// The lattice used when none is named.
pub const LATTICE_DEFAULT: &str = "default";
/// Messages a serving connection buffers before NATS counts it a slow consumer and drops
/// messages for it: with the 1 MiB default payload limit, at most 1 GiB in the worst case,
/// far less for real calls, while a burst of small calls waits instead of being dropped.
pub const SUBSCRIPTION_CAPACITY: usize = 1024;
/// Longest a connect to the NATS server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The subject token of `name`: see the module doc.
pub(crate) fn token(name: &str) -> String {
    if name.is_empty() {
        return "~".to_owned();
    }
    let mut token = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            token.push(char::from(byte));
        } else {
            token.push_str(&format!("~{byte:02x}"));
        }
    }
    token
}

/// The subject (and queue group) of `export` in `lattice`.
pub fn subject(lattice: &str, export: &str) -> String {
    format!("exorun.{}.{}", token(lattice), token(export))
}

/// The subject of `export` on one serving runtime of `lattice` (its `runtime` tag), where the
/// calls and releases that name its resource handles go: a token more than `subject`, so it
/// never meets a queue group's subject.
pub fn runtime_subject(lattice: &str, export: &str, runtime: u64) -> String {
    format!("{}.{runtime:016x}", subject(lattice, export))
}

/// The request header a caller names itself in (16 hex digits, random per `Lattice`): the
/// handles a serving runtime hands it are its own, as a connection's are.
pub const CALLER_HEADER: &str = "Exorun-Caller";
/// The reply header a serving runtime names itself in (its tag, 16 hex digits): where the
/// handles a reply carries live.
pub const RUNTIME_HEADER: &str = "Exorun-Runtime";

/// A tag from the operating system's randomness (never 0).
pub(crate) fn random_tag() -> Result<u64, transport::Error> {
    let mut bytes = [0_u8; 8];
    getrandom::fill(&mut bytes).map_err(|error| transport::Error::Io {
        kind: std::io::ErrorKind::Other,
        source: Cause::with_context("no randomness for a lattice tag", error),
    })?;
    Ok(u64::from_le_bytes(bytes).max(1))
}

/// A tag as a header carries it, if it is one.
pub(crate) fn parse_tag(text: &str) -> Option<u64> {
    if text.len() != 16 {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// Largest CA bundle file read for NATS TLS: a bundle of every public root is about 200 KiB.
pub const CA_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// The environment variable that may hold NATS credentials (`user:password` or a token), for
/// URLs that carry none: unlike a URL on the command line, the environment of a process is not
/// readable by other users.
pub const CREDENTIALS_ENV: &str = "EXORUN_NATS_CREDENTIALS";

/// How to reach and authenticate to a NATS system. Secrets are kept out of `Debug`.
#[derive(Clone, Default)]
pub struct Settings {
    /// Server URLs, tried by the client in turn (`nats://[user:pass@|token@]host:port`).
    pub urls: Vec<String>,
    /// Credentials for URLs that carry none: `user:password` or a token (from a file or the
    /// environment rather than the command line, which other users can read).
    pub credentials: Option<String>,
    /// An nkey seed (the contents of a seed file), if the server wants one.
    pub nkey_seed: Option<String>,
    /// Whether TLS is required towards the NATS server (with the system's roots).
    pub require_tls: bool,
    /// A root certificate file (PEM) to trust for the NATS server's TLS, besides the system's.
    pub root_certificates: Option<std::path::PathBuf>,
    /// The connection's name, as the NATS server shows it.
    pub name: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<String> = self.urls.iter().map(|url| shown(url)).collect();
        f.debug_struct("Settings")
            .field("urls", &hosts)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "(secret)"),
            )
            .field("nkey_seed", &self.nkey_seed.as_ref().map(|_| "(secret)"))
            .field("require_tls", &self.require_tls)
            .field("root_certificates", &self.root_certificates)
            .field("name", &self.name)
            .finish()
    }
}

/// `url` without its credentials: `nats://host:port`.
pub fn shown(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("nats", url));
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{host}")
}

/// What a URL's userinfo carries: `user:password@` or `token@`.
enum Credentials {
    UserPassword(String, String),
    Token(String),
}

fn credentials(url: &str) -> Option<Credentials> {
    let (_, rest) = url.split_once("://")?;
    let (userinfo, _) = rest.rsplit_once('@')?;
    Some(parse_credentials(userinfo))
}

/// `user:password`, or a token.
fn parse_credentials(userinfo: &str) -> Credentials {
    match userinfo.split_once(':') {
        Some((user, password)) => Credentials::UserPassword(user.to_owned(), password.to_owned()),
        None => Credentials::Token(userinfo.to_owned()),
    }
}

fn nats_error(
    settings: &Settings,
    what: &str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> transport::Error {
    let hosts: Vec<String> = settings.urls.iter().map(|url| shown(url)).collect();
    let context = format!("NATS {what} ({})", hosts.join(", "));
    transport::Error::Io {
        kind: std::io::ErrorKind::ConnectionRefused,
        source: Cause::with_context(context, error),
    }
}

/// Connects to the NATS system `settings` names and subscribes `exports` of `lattice`, each in
/// its queue group (see `Subscribed::serve`, or give it to `server::Server::lattice`): when
/// this returns the NATS server has them, so calls reach them.
pub async fn join(
    settings: &Settings,
    lattice: &str,
    exports: &[String],
) -> Result<Subscribed, transport::Error> {
    let connection = connect(settings, SUBSCRIPTION_CAPACITY).await?;
    responder::subscribe(connection, lattice, exports).await
}

/// A client of the NATS system `settings` names (its credentials, nkey and TLS as for a
/// lattice), for what else a runtime keeps there, such as JetStream key-value stores.
pub async fn client(settings: &Settings) -> Result<async_nats::Client, transport::Error> {
    connect(settings, SUBSCRIPTION_CAPACITY).await
}

/// Connects to the NATS system `settings` names.
pub(crate) async fn connect(
    settings: &Settings,
    subscription_capacity: usize,
) -> Result<async_nats::Client, transport::Error> {
    let mut options = async_nats::ConnectOptions::new()
        .name(&settings.name)
        .connection_timeout(CONNECT_TIMEOUT)
        .subscription_capacity(subscription_capacity)
        .require_tls(settings.require_tls);
    if let Some(seed) = &settings.nkey_seed {
        options = options.nkey(seed.clone());
    }
    if let Some(roots) = &settings.root_certificates {
        // Checked before async-nats opens it: a FIFO or a device would hang or flood it.
        identity::check_file(roots, CA_FILE_BYTES_MAX)
            .map_err(|error| nats_error(settings, "CA file", error))?;
        options = options.add_root_certificates(roots.clone());
    }
    // Credentials in a URL come first, then the settings' own (async-nats reads them only
    // from its options).
    let given = settings.credentials.as_deref().map(parse_credentials);
    match settings
        .urls
        .iter()
        .find_map(|url| credentials(url))
        .or(given)
    {
        Some(Credentials::UserPassword(user, password)) => {
            options = options.user_and_password(user, password);
        }
        Some(Credentials::Token(token)) => options = options.token(token),
        None => {}
    }
    let urls: Vec<async_nats::ServerAddr> = settings
        .urls
        .iter()
        .map(|url| shown(url).parse::<async_nats::ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|error| nats_error(settings, "address", error))?;
    options
        .connect(urls)
        .await
        .map_err(|error| nats_error(settings, "connect", error))
}

/// Calls exports by name anywhere in a lattice (`client::Channel`): connects on the first
/// call, and again after a failed attempt.
pub struct Lattice {
    settings: Settings,
    lattice: String,
    timeout: Duration,
    connection: OnceCell<Connected>,
    seq: AtomicU64,
    /// This caller's tag (`CALLER_HEADER`), drawn at its first call.
    caller: OnceCell<u64>,
}

/// A caller's NATS connection, and the payload limit its server announced at connect.
struct Connected {
    client: async_nats::Client,
    max_payload: usize,
}

impl std::fmt::Debug for Lattice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lattice")
            .field("settings", &self.settings)
            .field("lattice", &self.lattice)
            .finish_non_exhaustive()
    }
}

impl Lattice {
    /// Calls into `lattice` through the NATS system `settings` names, each within `timeout`.
    pub fn new(settings: Settings, lattice: &str, timeout: Duration) -> Self {
        Self {
            settings,
            lattice: lattice.to_owned(),
            timeout,
            connection: OnceCell::new(),
            seq: AtomicU64::new(1),
            caller: OnceCell::new(),
        }
    }

    async fn connection(&self) -> Result<&Connected, client::Error> {
        let connected = self
            .connection
            .get_or_try_init(|| async {
                let client = connect(&self.settings, SUBSCRIPTION_CAPACITY).await?;
                let max_payload = client.server_info().max_payload;
                Ok(Connected {
                    client,
                    max_payload,
                })
            })
            .await;
        connected.map_err(client::Error::Transport)
    }

    /// Sends `frame` to its target's subject and waits at most `timeout` for the reply.
    pub async fn call_within(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
    ) -> Result<client::Reply, client::Error> {
        let (payload, _) = self.send(frame, None, timeout, None).await?;
        payload.map_or_else(|failure| Ok(Err(failure)), reply_of)
    }

    /// Sends `frame` (a call, or a release for `target`) as a request: to the queue group of
    /// its target, or to runtime `on` alone (a call that names handles, which live there);
    /// the reply's payload (or, when no runtime serves the target, `InstanceNotFound`) and the
    /// runtime that answered (0 if it did not say).
    async fn send(
        &self,
        mut frame: frame::OutboundCall,
        target: Option<&str>,
        timeout: Duration,
        on: Option<u64>,
    ) -> Result<(Result<Bytes, Failure>, u64), client::Error> {
        let connection = self.connection().await?;
        let caller = self
            .caller
            .get_or_try_init(|| async { random_tag() })
            .await
            .map_err(client::Error::Transport)?;
        frame.set_seq(frame::Seq(self.seq.fetch_add(1, Ordering::Relaxed)));
        let bytes = Bytes::from(frame.into_bytes());
        let target = match target {
            Some(target) => target.to_owned(),
            None => frame::decode_target(&bytes)
                .map_err(client::Error::Frame)?
                .to_owned(),
        };
        let max = connection.max_payload;
        if bytes.len() > max {
            return Err(client::Error::Transport(
                transport::Error::MessageTooLarge {
                    message_bytes: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                    max: u64::try_from(max).unwrap_or(u64::MAX),
                },
            ));
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(CALLER_HEADER, format!("{caller:016x}").as_str());
        let request = async_nats::Request::new()
            .payload(bytes)
            .headers(headers)
            .timeout(Some(timeout));
        let subject = match on {
            Some(runtime) => runtime_subject(&self.lattice, &target, runtime),
            None => subject(&self.lattice, &target),
        };
        let answered = connection.client.send_request(subject, request).await;
        let reply = match answered {
            Ok(reply) => reply,
            // The runtime that held the handles is gone, and they with it.
            Err(error)
                if on.is_some() && error.kind() == async_nats::RequestErrorKind::NoResponders =>
            {
                return Err(client::Error::SessionEnded);
            }
            Err(error) if error.kind() == async_nats::RequestErrorKind::NoResponders => {
                let instance_not_found = Failure::InstanceNotFound { instance: target };
                return Ok((Err(instance_not_found), 0));
            }
            Err(error) => return Err(request_error(&error, timeout)),
        };
        let runtime = reply
            .headers
            .as_ref()
            .and_then(|headers| headers.get(RUNTIME_HEADER))
            .and_then(|tag| parse_tag(tag.as_str()))
            .unwrap_or(0);
        Ok((Ok(reply.payload), runtime))
    }
}

/// A frame that decoded as another kind than `expected`.
fn not_a(bytes: &[u8], expected: &str) -> client::Error {
    let kind = format!("expected a {expected} frame of {} bytes", bytes.len());
    client::Error::Frame(frame::Error::UnknownKind { kind })
}

/// Why a request got no answer (no responders is an answer: `InstanceNotFound`).
fn request_error(error: &async_nats::RequestError, timeout: Duration) -> client::Error {
    match error.kind() {
        async_nats::RequestErrorKind::TimedOut => client::Error::Timeout {
            timeout_ms: exorun_common::millis(timeout),
        },
        async_nats::RequestErrorKind::NoResponders | async_nats::RequestErrorKind::Other => {
            client::Error::Transport(transport::Error::Io {
                kind: std::io::ErrorKind::BrokenPipe,
                source: Cause::new(format!("NATS request: {error}")),
            })
        }
    }
}

/// The reply a reply frame carries: its result slab, or its failure.
fn reply_of(payload: Bytes) -> Result<client::Reply, client::Error> {
    let message = frame::decode(&payload).map_err(client::Error::Frame)?;
    let frame::Message::Reply(reply) = message else {
        return Err(not_a(&payload, "reply"));
    };
    Ok(reply.outcome.map(|slab| payload.slice_ref(slab)))
}

impl client::Channel for Lattice {
    fn call_within(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<client::Reply, client::Error>> {
        Box::pin(Lattice::call_within(self, frame, timeout))
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn carries_handles(&self) -> bool {
        true
    }

    fn call_session(
        &self,
        frame: frame::OutboundCall,
        timeout: Duration,
        on: Option<u64>,
    ) -> BoxFuture<'_, Result<(client::Reply, u64), client::Error>> {
        Box::pin(async move {
            let (payload, runtime) = self.send(frame, None, timeout, on).await?;
            let reply = payload.map_or_else(|failure| Ok(Err(failure)), reply_of)?;
            Ok((reply, runtime))
        })
    }

    fn release<'a>(
        &'a self,
        handle: u64,
        session: u64,
        target: &'a str,
    ) -> BoxFuture<'a, Result<Result<(), Failure>, client::Error>> {
        Box::pin(async move {
            let frame = frame::encode_release(handle).map_err(client::Error::Frame)?;
            let sent = self
                .send(frame, Some(target), self.timeout, Some(session))
                .await;
            match sent {
                Ok((Ok(payload), _)) => Ok(reply_of(payload)?.map(drop)),
                Ok((Err(failure), _)) => Ok(Err(failure)),
                // That runtime is gone, and the handle with it.
                Err(client::Error::SessionEnded) => Ok(Ok(())),
                Err(error) => Err(error),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_into_single_tokens_that_never_collide() {
        assert_eq!(token("math"), "math");
        assert_eq!(token("a.b"), "a~2eb");
        assert_eq!(token("*"), "~2a");
        assert_eq!(token(">"), "~3e");
        assert_eq!(token("~2e"), "~7e2e");
        assert_eq!(token(""), "~");
        assert_eq!(token("é"), "~c3~a9");
        assert_eq!(subject("prod", "math"), "exorun.prod.math");
        assert_ne!(subject("a.b", "c"), subject("a", "b.c"));
    }

    #[test]
    fn credentials_never_show() {
        assert_eq!(shown("nats://user:secret@host:4222"), "nats://host:4222");
        assert_eq!(shown("nats://s3cr3t@host:4222"), "nats://host:4222");
        assert_eq!(shown("nats://host:4222"), "nats://host:4222");
        let settings = Settings {
            urls: vec!["nats://u:p@h:1".to_owned()],
            nkey_seed: Some("SUSECRET".to_owned()),
            ..Settings::default()
        };
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains("SUSECRET") && !debug.contains("u:p"),
            "{debug}"
        );
    }
}
