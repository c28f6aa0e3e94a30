//! `wasi:http` as a system, on wasmtime's own implementation (wasmtime-wasi-http): the types
//! every HTTP guest uses (`wasi:http/types`, with `wasi:io` for its streams) and
//! `wasi:http/outgoing-handler`, allowed only to the hosts its settings name (none by default),
//! bounded in time and size.
//!
//! **The allow list.** Each entry is `HOST`, `HOST:PORT` or `HOST:*`. `HOST` is a name or an
//! address as the guest writes it in the request's authority, or `*.DOMAIN` for every name
//! under `DOMAIN`. `HOST` alone allows the scheme's default port (80 for http, 443 for https).
//! A request to anything else is refused before any connection with `HTTP-request-denied`.
//! Names are compared, not the addresses they resolve to.
//!
//! **Bounds.** Connecting takes at most [`CONNECT_TIMEOUT`], the first byte of the answer
//! [`FIRST_BYTE_TIMEOUT`], and each later chunk [`BETWEEN_BYTES_TIMEOUT`]. A guest may ask for
//! less, never more. The whole of sending, a TLS handshake included, is held to the first two
//! together (`connection-timeout` past it). An answer's body is cut at [`RESPONSE_BYTES_MAX`]
//! with `HTTP-response-body-size`. An instance has at most [`REQUESTS_MAX`] outgoing requests
//! open at once (each until its connection ends); one more is `connection-limit-reached`, so a
//! guest cannot spend the process's sockets.
//!
//! An incoming request's resources are made by the embedder that serves HTTP (`exorun-bind`'s
//! `http` module), in the same store, through [`view`].

use std::sync::Arc;
use std::time::Duration;

use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use http_body_util::BodyExt;
use wasmtime::component::Linker;
use wasmtime_wasi_http::WasiHttp;
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::WasiHttpCtxView;
use wasmtime_wasi_http::WasiHttpHooks;
use wasmtime_wasi_http::p2::bindings;

use crate::wasi;

/// The interfaces this system provides (`wasi:io` too: the HTTP types' streams are `wasi:io`'s).
pub const INTERFACES: &[&str] = &[
    "wasi:http/types@0.2.12",
    "wasi:http/outgoing-handler@0.2.12",
    "wasi:io/error@0.2.12",
    "wasi:io/poll@0.2.12",
    "wasi:io/streams@0.2.12",
];

/// The longest an outgoing request may take to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest an outgoing request may wait for the first byte of its answer.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest an answer's body may pause between two chunks.
pub const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer body an outgoing request reads.
pub const RESPONSE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// The most entries an allow list holds.
pub const ALLOW_MAX: usize = 256;
/// Refusals logged: at most one line a second, so a guest cannot flood the log.
static REFUSALS: exorun_common::Throttle = exorun_common::Throttle::new();

/// The most outgoing requests one instance has open at once.
pub const REQUESTS_MAX: usize = 64;

/// Why settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An allow-list entry is not `HOST`, `HOST:PORT` or `HOST:*`.
    #[error("allow entry `{entry}`: write HOST, HOST:PORT or HOST:* (HOST may start with `*.`)")]
    Entry {
        /// The entry.
        entry: String,
    },
    /// More than [`ALLOW_MAX`] entries.
    #[error("at most {ALLOW_MAX} allow entries")]
    TooMany,
}

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// This name or address, compared without case.
    Exact(String),
    /// Every name that ends with `.DOMAIN`.
    Under(String),
}

/// Which port an entry allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    /// The scheme's default port.
    Default,
    /// This one.
    Only(u16),
    /// Any.
    Any,
}

/// The HTTP system's settings: where outgoing requests may go.
#[derive(Debug, Clone, Default)]
pub struct Http {
    allow: Arc<Vec<(Host, Port)>>,
}

impl Http {
    /// Allows outgoing requests to `entries` only (none: no outgoing request is sent).
    pub fn new(entries: &[String]) -> Result<Self, Error> {
        if entries.len() > ALLOW_MAX {
            return Err(Error::TooMany);
        }
        let allow = entries
            .iter()
            .map(|entry| parse_entry(entry))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self {
            allow: Arc::new(allow),
        })
    }

    /// Whether a request to `host` on `port` (`None`: the scheme's default, `default_port`)
    /// is allowed.
    pub fn allows(&self, host: &str, port: Option<u16>, default_port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let port = port.unwrap_or(default_port);
        self.allow.iter().any(|(allowed, allowed_port)| {
            let host_matches = match allowed {
                Host::Exact(name) => *name == host,
                Host::Under(domain) => host
                    .strip_suffix(domain.as_str())
                    .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            };
            let port_matches = match allowed_port {
                Port::Default => port == default_port,
                Port::Only(only) => port == *only,
                Port::Any => true,
            };
            host_matches && port_matches
        })
    }
}

fn parse_entry(entry: &str) -> Result<(Host, Port), Error> {
    let invalid = || Error::Entry {
        entry: entry.to_owned(),
    };
    // An IPv6 address is written in brackets: `[::1]:8080`.
    let (host, port) = match entry.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (entry, None),
    };
    let port = match port {
        None => Port::Default,
        Some("*") => Port::Any,
        Some(number) => Port::Only(number.parse().map_err(|_| invalid())?),
    };
    let host = host.to_ascii_lowercase();
    let valid = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
    };
    let host = match host.strip_prefix("*.") {
        Some(domain) if valid(domain) => Host::Under(domain.to_owned()),
        None if valid(&host) => Host::Exact(host),
        Some(_) | None => return Err(invalid()),
    };
    Ok((host, port))
}

/// A store's HTTP state, in its user data.
struct State {
    ctx: WasiHttpCtx,
    hooks: Hooks,
}

impl State {
    /// A store this system was linked into but never configured for: nothing allowed.
    fn closed() -> Self {
        Self {
            ctx: WasiHttpCtx::new(),
            hooks: Hooks::new(Http::default()),
        }
    }
}

/// How outgoing requests are sent: the allow list, then wasmtime-wasi-http's own client with
/// the time bounds, the answer's body cut at its bound.
struct Hooks {
    http: Http,
    /// The instance's open outgoing requests (`REQUESTS_MAX`).
    open: Arc<tokio::sync::Semaphore>,
}

type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl Hooks {
    fn new(http: Http) -> Self {
        let open = Arc::new(tokio::sync::Semaphore::new(REQUESTS_MAX));
        Self { http, open }
    }
}

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Sent {
        drop(fut);
        let allowed = allowed(&self.http, request.uri());
        let open = Arc::clone(&self.open).try_acquire_owned();
        if !allowed {
            REFUSALS.note(|skipped| {
                tracing::warn!(uri = %request.uri(), skipped, "an outgoing request not allowed was refused");
            });
        }
        Box::new(async move {
            if !allowed {
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }
            let Ok(open) = open else {
                return Err(wasmtime_wasi_http::Error::ConnectionLimitReached);
            };
            let options = bounded(options);
            // The guest's own (smaller) times where it gave them.
            let connect = options.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
            let first_byte = options.first_byte_timeout.unwrap_or(FIRST_BYTE_TIMEOUT);
            let most = connect.saturating_add(first_byte);
            let sending = wasmtime_wasi_http::default_send_request(request, Some(options));
            let sent = tokio::time::timeout(most, sending).await;
            let sent = sent.map_err(|_| wasmtime_wasi_http::Error::ConnectionTimeout)?;
            let (response, io) = sent?;
            let io = async move {
                let ended = io.await;
                drop(open);
                ended
            };
            let limited = response.map(|body| {
                http_body_util::Limited::new(
                    body,
                    usize::try_from(RESPONSE_BYTES_MAX).unwrap_or(usize::MAX),
                )
                .map_err(too_large)
                .boxed_unsync()
            });
            let io: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send> =
                Box::new(io);
            Ok((limited, io))
        })
    }
}

/// Whether `uri`'s authority is on the allow list.
fn allowed(http: &Http, uri: &http::Uri) -> bool {
    let Some(authority) = uri.authority() else {
        return false;
    };
    // The client connects to the authority as written; with userinfo in it (`a%23@b`) that is
    // not the host checked here. Checked and connected on the same value: none is allowed.
    if authority.as_str().contains('@') {
        return false;
    }
    let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
        443
    } else {
        80
    };
    http.allows(authority.host(), authority.port_u16(), default_port)
}

/// The guest's timeouts, none longer than this system's.
fn bounded(
    options: Option<wasmtime_wasi_http::RequestOptions>,
) -> wasmtime_wasi_http::RequestOptions {
    let given = options.unwrap_or_default();
    let cap =
        |asked: Option<Duration>, most: Duration| Some(asked.map_or(most, |asked| asked.min(most)));
    wasmtime_wasi_http::RequestOptions {
        connect_timeout: cap(given.connect_timeout, CONNECT_TIMEOUT),
        first_byte_timeout: cap(given.first_byte_timeout, FIRST_BYTE_TIMEOUT),
        between_bytes_timeout: cap(given.between_bytes_timeout, BETWEEN_BYTES_TIMEOUT),
    }
}

/// An answer's body past its bound, or the body's own error.
fn too_large(error: Box<dyn std::error::Error + Send + Sync>) -> wasmtime_wasi_http::Error {
    match error.downcast::<wasmtime_wasi_http::Error>() {
        Ok(own) => *own,
        Err(_) => wasmtime_wasi_http::Error::HttpResponseBodySize(Some(RESPONSE_BYTES_MAX)),
    }
}

/// The `wasi:http` view of a store: its HTTP state (closed when it was never configured) and
/// its resource table. What an HTTP server uses to make a request's resources in the store.
pub fn view(ctx: &mut ExorunCtx) -> WasiHttpCtxView<'_> {
    let (state, table) = ctx.user_and_table(State::closed);
    WasiHttpCtxView {
        ctx: &mut state.ctx,
        table,
        hooks: &mut state.hooks,
    }
}

impl SystemComponent for Http {
    fn interfaces(&self) -> Vec<String> {
        INTERFACES.iter().map(|name| (*name).to_owned()).collect()
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        let linked = (|| -> wasmtime::Result<()> {
            wasi::link_io(linker)?;
            let options = bindings::LinkOptions::default();
            bindings::http::outgoing_handler::add_to_linker::<_, WasiHttp>(linker, view)?;
            bindings::http::types::add_to_linker::<_, WasiHttp>(linker, &options.into(), view)?;
            Ok(())
        })();
        linked.map_err(|error| system::define_error("wasi:http/*", error))
    }

    fn configure(&self, builder: &mut ContextBuilder) -> Result<(), system::Error> {
        builder.insert(State {
            ctx: WasiHttpCtx::new(),
            hooks: Hooks::new(self.clone()),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> Http {
        let owned: Vec<String> = entries.iter().map(|entry| (*entry).to_owned()).collect();
        Http::new(&owned).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn entries_allow_exactly_what_they_name() {
        let http = allow(&[
            "127.0.0.1:*",
            "api.example.com",
            "*.internal:8080",
            "[::1]:9000",
        ]);
        assert!(http.allows("127.0.0.1", Some(1), 80));
        assert!(http.allows("127.0.0.1", None, 443));
        assert!(http.allows("API.example.com", None, 443));
        assert!(!http.allows("api.example.com", Some(8443), 443));
        assert!(!http.allows("example.com", None, 443));
        assert!(!http.allows("evil-api.example.com", None, 443));
        assert!(http.allows("db.internal", Some(8080), 80));
        assert!(!http.allows("internal", Some(8080), 80));
        assert!(!http.allows("db.internal", Some(8081), 80));
        assert!(http.allows("[::1]", Some(9000), 80));
        assert!(
            !allow(&[]).allows("127.0.0.1", Some(80), 80),
            "none by default"
        );
    }

    #[test]
    fn malformed_entries_are_refused() {
        for entry in ["", "host:port", "a b", "*.", "x:99999", "http://x"] {
            let refused = Http::new(&[entry.to_owned()]);
            assert_eq!(
                refused.err(),
                Some(Error::Entry {
                    entry: entry.to_owned()
                }),
                "{entry}"
            );
        }
        let many = vec!["a".to_owned(); ALLOW_MAX + 1];
        assert_eq!(Http::new(&many).err(), Some(Error::TooMany));
    }
}
