//! `exorun:host/kv`: `get`/`set` over a shared concurrent map. One `Store` can be installed into
//! several instances (they see each other's writes). Keys, values and the number of entries are
//! bounded; a write over a limit is rejected with a `Rejection` (a trap in the guest).

use std::sync::Arc;

use dashmap::DashMap;
use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::system;
use exorun_core::system::Rejection;
use exorun_core::system::SystemComponent;
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

/// The interface this system provides.
pub const INTERFACE: &str = "exorun:host/kv";
/// Longest key, in bytes.
pub const KEY_BYTES_MAX: usize = 1024;
/// Longest value, in bytes: small records, not blobs.
pub const VALUE_BYTES_MAX: usize = 64 * 1024;
/// Most entries in one store: with small values this bounds a store to tens of MiB.
pub const ENTRIES_MAX: usize = 100_000;
/// Domain code of a key over `KEY_BYTES_MAX`.
pub const CODE_KEY_TOO_LARGE: u32 = 1001;
/// Domain code of a value over `VALUE_BYTES_MAX`.
pub const CODE_VALUE_TOO_LARGE: u32 = 1002;
/// Domain code of a new key in a full store.
pub const CODE_FULL: u32 = 1003;

/// Why a write was refused.
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
    /// The store holds `ENTRIES_MAX` entries already.
    #[error("store is full at {entries_max} entries")]
    Full {
        /// The limit.
        entries_max: usize,
    },
}

impl Error {
    /// The domain code a remote caller sees.
    pub fn code(&self) -> u32 {
        match self {
            Error::KeyTooLarge { .. } => CODE_KEY_TOO_LARGE,
            Error::ValueTooLarge { .. } => CODE_VALUE_TOO_LARGE,
            Error::Full { .. } => CODE_FULL,
        }
    }
}

/// A shared key-value map; clones share the same entries.
#[derive(Debug, Clone, Default)]
pub struct Store(Arc<DashMap<String, String>>);

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).map(|value| value.clone())
    }

    /// Sets `key` to `value`, within the limits.
    pub fn set(&self, key: String, value: String) -> Result<(), Error> {
        if key.len() > KEY_BYTES_MAX {
            return Err(Error::KeyTooLarge {
                bytes: key.len(),
                max: KEY_BYTES_MAX,
            });
        }
        if value.len() > VALUE_BYTES_MAX {
            return Err(Error::ValueTooLarge {
                bytes: value.len(),
                max: VALUE_BYTES_MAX,
            });
        }
        let is_new = !self.0.contains_key(&key);
        if is_new && self.0.len() >= ENTRIES_MAX {
            return Err(Error::Full {
                entries_max: ENTRIES_MAX,
            });
        }
        self.0.insert(key, value);
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
        let define = |e: wasmtime::Error| system::define_error(INTERFACE, &e);
        let mut instance = linker.instance(INTERFACE).map_err(define)?;
        instance.func_wrap("get", get).map_err(define)?;
        instance.func_wrap("set", set).map_err(define)
    }

    fn configure(&self, builder: &mut ContextBuilder) -> Result<(), system::Error> {
        builder.insert(self.store.clone());
        Ok(())
    }
}

fn store_of<'a>(ctx: &'a StoreContextMut<'_, ExorunCtx>) -> wasmtime::Result<&'a Store> {
    ctx.data()
        .user::<Store>()
        .ok_or_else(|| wasmtime::format_err!("kv store not configured for this instance"))
}

fn get(
    ctx: StoreContextMut<'_, ExorunCtx>,
    (key,): (String,),
) -> wasmtime::Result<(Option<String>,)> {
    Ok((store_of(&ctx)?.get(&key),))
}

fn set(
    ctx: StoreContextMut<'_, ExorunCtx>,
    (key, value): (String, String),
) -> wasmtime::Result<()> {
    let stored = store_of(&ctx)?.set(key, value);
    stored.map_err(|error| {
        wasmtime::Error::new(Rejection {
            code: error.code(),
            message: error.to_string(),
        })
    })
}
