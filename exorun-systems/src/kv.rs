//! `exorun:host/kv`: `get`/`set` over a store that several instances may share (they see each
//! other's writes), on one of three backends, chosen per store:
//!
//! - **memory** (`Store::new`): a concurrent map that lives as long as the process;
//! - **durable** (`Store::open`, feature `durable`): one redb file per store; a value is on disk
//!   (fsynced) before `set` returns, so what a guest saw stored survives `kill -9`;
//! - **JetStream** (`Store::jetstream`, feature `jetstream`): a NATS JetStream key-value bucket,
//!   so runtimes on several hosts share one store.
//!
//! Keys, values and the number of entries are bounded the same on every backend. A write over a
//! bound, and a backend that fails (a full disk, an unreachable NATS server, an operation past
//! `OPERATION_TIMEOUT`), are a `Rejection` with a code: the guest's call fails with that code,
//! never with a trap of exorun's own, and never hangs.

use std::sync::Arc;

use exorun_common::BoxFuture;
use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::system;
use exorun_core::system::Rejection;
use exorun_core::system::SystemComponent;
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

#[cfg(feature = "durable")]
mod durable;
#[cfg(feature = "jetstream")]
mod jetstream;
mod memory;

/// The interface this system provides.
pub const INTERFACE: &str = "exorun:host/kv";
/// Longest key, in bytes.
pub const KEY_BYTES_MAX: usize = 1024;
/// Longest value, in bytes: small records, not blobs.
pub const VALUE_BYTES_MAX: usize = 64 * 1024;
/// Most entries in one store: with small values this bounds a store to tens of MiB.
pub const ENTRIES_MAX: usize = 100_000;
/// Longest one operation on a backend may take (a slow disk, an unreachable NATS server).
pub const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest opening a store may take: a redb file left by a crash is checked and repaired
/// while it opens, which for a full store takes longer than one operation.
pub const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Domain code of a key over `KEY_BYTES_MAX`.
pub const CODE_KEY_TOO_LARGE: u32 = 1001;
/// Domain code of a value over `VALUE_BYTES_MAX`.
pub const CODE_VALUE_TOO_LARGE: u32 = 1002;
/// Domain code of a new key in a full store.
pub const CODE_FULL: u32 = 1003;
/// Domain code of a backend that failed or did not answer in time.
pub const CODE_UNAVAILABLE: u32 = 1004;

/// Why an operation on a store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The key is over `KEY_BYTES_MAX`.
    #[error("key of {bytes} bytes exceeds {max}")]
    KeyTooLarge {
        /// The size, in bytes.
        bytes: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The value is over `VALUE_BYTES_MAX`.
    #[error("value of {bytes} bytes exceeds {max}")]
    ValueTooLarge {
        /// The size, in bytes.
        bytes: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The store holds its most entries already.
    #[error("store is full at {entries_max} entries")]
    Full {
        /// The limit.
        entries_max: usize,
    },
    /// The backend failed, or did not answer within `OPERATION_TIMEOUT`.
    #[error("{store}: {message}")]
    Unavailable {
        /// The store, as its backend describes itself (a file, a bucket).
        store: String,
        /// What happened, in words.
        message: String,
    },
    /// The store could not be opened (a corrupt or locked file, a bucket that cannot be made).
    #[error("cannot open {store}: {message}")]
    Open {
        /// The store, as its backend describes itself.
        store: String,
        /// What happened, in words.
        message: String,
    },
}

impl Error {
    /// The domain code a guest (and a remote caller) sees.
    pub fn code(&self) -> u32 {
        match self {
            Error::KeyTooLarge { .. } => CODE_KEY_TOO_LARGE,
            Error::ValueTooLarge { .. } => CODE_VALUE_TOO_LARGE,
            Error::Full { .. } => CODE_FULL,
            Error::Unavailable { .. } | Error::Open { .. } => CODE_UNAVAILABLE,
        }
    }
}

/// Where a store's entries live. Bounds are checked before a backend is asked (a key and value
/// that reach it fit); a backend checks the entry bound itself, since only it knows whether a
/// key is new.
pub trait Backend: Send + Sync + 'static {
    /// The value of `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, Error>>;
    /// Sets `key` to `value`; a new key in a store of `entries_max` entries is `Full`.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        entries_max: usize,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// The number of entries.
    fn entries(&self) -> BoxFuture<'_, Result<usize, Error>>;
    /// Removes `key` (nothing when it is absent).
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// The keys that start with `prefix` and come after `after` (all, for `None`), in byte
    /// order, at most `limit` of them.
    fn keys<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, Error>>;
    /// Sets `key` to what `change` makes of its value (`None`: absent), atomically: no other
    /// write to `key` comes between the read and the write. A new key in a store of
    /// `entries_max` entries is `Full`. Returns the value written.
    fn update<'a>(
        &'a self,
        key: &'a str,
        change: Change,
        entries_max: usize,
    ) -> BoxFuture<'a, Result<String, Error>>;
    /// What the store is, for errors and logs (`memory`, `redb file data/notes.redb`).
    fn describe(&self) -> String;
}

/// What an update makes of a value (`None`: the key is absent); an error leaves it unchanged.
pub type Change = Arc<dyn Fn(Option<&str>) -> Result<String, Error> + Send + Sync>;

/// The most keys one `keys` call returns.
pub const KEYS_MAX: usize = 10_000;

/// A key-value store; clones share the same entries.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    entries_max: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.describe())
            .field("entries_max", &self.entries_max)
            .finish()
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store in memory.
    pub fn new() -> Self {
        Self::on(Arc::new(memory::Memory::default()))
    }

    /// The store kept in the redb file at `path` (made if missing). A file another process
    /// holds open, or one that is not a redb file, is `Error::Open` naming it.
    #[cfg(feature = "durable")]
    #[cfg_attr(docsrs, doc(cfg(feature = "durable")))]
    pub async fn open(path: &std::path::Path) -> Result<Self, Error> {
        Ok(Self::on(Arc::new(durable::Durable::open(path).await?)))
    }

    /// The store kept in the JetStream key-value bucket `bucket` of the NATS system `client`
    /// is connected to (made if missing, with one value per key and values bounded like every
    /// store's).
    #[cfg(feature = "jetstream")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jetstream")))]
    pub async fn jetstream(client: async_nats::Client, bucket: &str) -> Result<Self, Error> {
        Ok(Self::on(Arc::new(
            jetstream::Bucket::open(client, bucket).await?,
        )))
    }

    /// A store on `backend`.
    pub fn on(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            entries_max: ENTRIES_MAX,
        }
    }

    /// This store, holding at most `entries_max` entries (`ENTRIES_MAX` by default).
    pub fn entries_max(self, entries_max: usize) -> Self {
        Self {
            entries_max,
            ..self
        }
    }

    /// What the store is (its backend, its file or bucket).
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// The value of `key`.
    pub async fn get(&self, key: &str) -> Result<Option<String>, Error> {
        check_key(key)?;
        self.backend.get(key).await
    }

    /// Sets `key` to `value`, within the bounds; once this returns, every clone (and, for a
    /// durable or JetStream store, every later process) reads it.
    pub async fn set(&self, key: &str, value: &str) -> Result<(), Error> {
        check_key(key)?;
        if value.len() > VALUE_BYTES_MAX {
            return Err(Error::ValueTooLarge {
                bytes: value.len(),
                max: VALUE_BYTES_MAX,
            });
        }
        self.backend.set(key, value, self.entries_max).await
    }

    /// The number of entries.
    pub async fn entries(&self) -> Result<usize, Error> {
        self.backend.entries().await
    }

    /// Removes `key`; once this returns, no clone reads it.
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        check_key(key)?;
        self.backend.delete(key).await
    }

    /// The keys that start with `prefix` and come after `after` (all, for `None`), in byte
    /// order, at most `limit` (and `KEYS_MAX`): a listing goes on from the last key of the one
    /// before.
    pub async fn keys(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        check_key(prefix)?;
        self.backend.keys(prefix, after, limit.min(KEYS_MAX)).await
    }

    /// Sets `key` to what `change` makes of its value, atomically (see `Backend::update`),
    /// within the bounds; returns the value written.
    pub async fn update(&self, key: &str, change: Change) -> Result<String, Error> {
        check_key(key)?;
        let bounded: Change = Arc::new(move |value| {
            let changed = change(value)?;
            if changed.len() > VALUE_BYTES_MAX {
                return Err(Error::ValueTooLarge {
                    bytes: changed.len(),
                    max: VALUE_BYTES_MAX,
                });
            }
            Ok(changed)
        });
        self.backend.update(key, bounded, self.entries_max).await
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.len() > KEY_BYTES_MAX {
        return Err(Error::KeyTooLarge {
            bytes: key.len(),
            max: KEY_BYTES_MAX,
        });
    }
    Ok(())
}

/// A page of a listing: the `limit` smallest keys offered that start with `prefix` and come
/// after `after`, kept in a heap of at most `limit` while a backend walks its keys (a page
/// costs memory in proportion to the page, not to the store).
struct FirstKeys<'a> {
    heap: std::collections::BinaryHeap<String>,
    prefix: &'a str,
    after: Option<&'a str>,
    limit: usize,
}

impl<'a> FirstKeys<'a> {
    fn new(prefix: &'a str, after: Option<&'a str>, limit: usize) -> Self {
        let heap = std::collections::BinaryHeap::with_capacity(limit.saturating_add(1));
        Self {
            heap,
            prefix,
            after,
            limit,
        }
    }

    /// Whether `key` belongs on the page at all (its prefix, and after the cursor).
    fn wants(&self, key: &str) -> bool {
        key.starts_with(self.prefix) && self.after.is_none_or(|after| key > after)
    }

    /// Keeps `key` (copied only then) if it belongs on the page and is among the smallest so
    /// far.
    fn offer(&mut self, key: &str) {
        if !self.wants(key) {
            return;
        }
        if self.heap.len() < self.limit {
            self.heap.push(key.to_owned());
            return;
        }
        let Some(mut largest) = self.heap.peek_mut() else {
            return;
        };
        if key < largest.as_str() {
            *largest = key.to_owned();
        }
    }

    fn sorted(self) -> Vec<String> {
        self.heap.into_sorted_vec()
    }
}

/// `operation`, failed `Unavailable` past `OPERATION_TIMEOUT`.
#[cfg(any(feature = "durable", feature = "jetstream"))]
pub(crate) async fn bounded<T>(
    store: &str,
    operation: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    bounded_by(OPERATION_TIMEOUT, store, operation).await
}

/// `operation`, or `Unavailable` once `timeout` has passed.
#[cfg(any(feature = "durable", feature = "jetstream"))]
pub(crate) async fn bounded_by<T>(
    timeout: std::time::Duration,
    store: &str,
    operation: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(timeout, operation).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::Unavailable {
            store: store.to_owned(),
            message: format!("no answer within {} ms", timeout.as_millis()),
        }),
    }
}

/// The kv system component, serving one `Store`.
#[derive(Debug, Clone, Default)]
pub struct Kv {
    store: Store,
}

impl Kv {
    /// Serves `store` (clone the same store into several `Kv`s to share it).
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl SystemComponent for Kv {
    fn interfaces(&self) -> Vec<String> {
        vec![INTERFACE.to_owned()]
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        let define = |e: wasmtime::Error| system::define_error(INTERFACE, e);
        let mut instance = linker.instance(INTERFACE).map_err(define)?;
        instance
            .func_wrap_async("get", |ctx, (key,): (String,)| {
                Box::new(async move {
                    let store = store_of(&ctx)?;
                    let value = store.get(&key).await.map_err(rejection)?;
                    Ok((value,))
                })
            })
            .map_err(define)?;
        instance
            .func_wrap_async("set", |ctx, (key, value): (String, String)| {
                Box::new(async move {
                    let store = store_of(&ctx)?;
                    store.set(&key, &value).await.map_err(rejection)
                })
            })
            .map_err(define)
    }

    fn configure(&self, builder: &mut ContextBuilder) -> Result<(), system::Error> {
        builder.insert(self.store.clone());
        Ok(())
    }
}

fn store_of(ctx: &StoreContextMut<'_, ExorunCtx>) -> wasmtime::Result<Store> {
    let store = ctx.data().user::<Store>().cloned();
    store.ok_or_else(|| wasmtime::format_err!("kv store not configured for this instance"))
}

fn rejection(error: Error) -> wasmtime::Error {
    wasmtime::Error::new(Rejection {
        code: error.code(),
        message: error.to_string(),
    })
}
