//! `wasi:keyvalue` (`store`, `atomics`, `batch`, version 0.2.0-draft, what wasmtime's own
//! implementation serves) over exorun's stores, so components written for the standard
//! interface run unchanged on a store in memory, in a redb file, or in a JetStream bucket.
//!
//! **Buckets.** `open(NAME)` gives the bucket `NAME`: 0 to 64 characters of
//! `[A-Za-z0-9_.-]` (anything else is `other`). A bucket's key `K` is the store's key
//! `wasi:keyvalue/NAME/K`, so instances that link one store share its buckets, and an
//! `exorun:host/kv` guest on the same store sees them too. The store's bounds hold (a key of at
//! most 1 KiB with its prefix, 64 KiB values, the entry count), each refusal an `other` with
//! the store's words.
//!
//! **Values.** A value is bytes. It is kept as text: `t` and the value when it is UTF-8, else
//! `x` and its bytes in hex (so binary values have half the room).
//!
//! **Atomics.** `increment` reads the value as a decimal number (absent: 0), adds, and writes
//! the sum as decimal text, atomically on every backend (a compare and set on JetStream). A
//! value that is not a number, or a sum past `u64`, is `other`.
//!
//! **Listing and batches.** `list-keys` gives at most [`PAGE`] keys a call, in byte order. Its
//! cursor names the last key of the page before, kept with the bucket (at most
//! [`CURSORS_MAX`] a bucket; past that the oldest are forgotten, and theirs is `other`), so a
//! listing goes on after that key however the bucket changed, and every key of a bucket of
//! any size is reached. A batch holds at most [`BATCH_MAX`] keys.

use std::sync::Arc;

use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::system;
use exorun_core::system::SystemComponent;
use wasmtime::StoreContextMut;
use wasmtime::component::ComponentType;
use wasmtime::component::Lift;
use wasmtime::component::Linker;
use wasmtime::component::Lower;
use wasmtime::component::Resource;
use wasmtime::component::ResourceType;

use crate::kv;

/// The interfaces this system provides.
pub const INTERFACES: &[&str] = &[
    STORE,
    "wasi:keyvalue/atomics@0.2.0-draft",
    "wasi:keyvalue/batch@0.2.0-draft",
];
const STORE: &str = "wasi:keyvalue/store@0.2.0-draft";

/// The most keys one `list-keys` call gives.
pub const PAGE: usize = 1000;
/// The most listing cursors one bucket keeps.
pub const CURSORS_MAX: usize = 256;
/// The most keys one batch operation takes.
pub const BATCH_MAX: usize = 1000;
/// The longest bucket name.
pub const BUCKET_NAME_MAX: usize = 64;

/// `wasi:keyvalue/store.error`.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq, Eq)]
#[component(variant)]
pub enum Error {
    /// The store named does not exist.
    #[component(name = "no-such-store")]
    NoSuchStore,
    /// The caller may not use the store.
    #[component(name = "access-denied")]
    AccessDenied,
    /// Anything else, in words.
    #[component(name = "other")]
    Other(String),
}

/// `wasi:keyvalue/store.key-response`.
#[derive(ComponentType, Lift, Lower, Debug, Clone)]
#[component(record)]
struct KeyResponse {
    keys: Vec<String>,
    cursor: Option<u64>,
}

/// A bucket a guest opened: its name (the host resource behind `bucket`).
pub struct Bucket {
    name: String,
    /// The last key of each page handed out with a cursor: cursor `n` goes on after
    /// `cursors[n - 1 - forgotten]`.
    cursors: Vec<String>,
    /// Cursors forgotten to keep `cursors` within `CURSORS_MAX`.
    forgotten: u64,
}

/// The keyvalue system, serving one store.
#[derive(Debug, Clone, Default)]
pub struct KeyValue {
    store: kv::Store,
}

impl KeyValue {
    /// Serves `store` (clones of one store in several systems share it).
    pub fn new(store: kv::Store) -> Self {
        Self { store }
    }
}

/// The store in a store context's user data.
struct Served(kv::Store);

fn store_of(ctx: &StoreContextMut<'_, ExorunCtx>) -> wasmtime::Result<kv::Store> {
    let served = ctx.data().user::<Served>().map(|served| served.0.clone());
    served.ok_or_else(|| wasmtime::format_err!("wasi:keyvalue not configured for this instance"))
}

fn other(error: &kv::Error) -> Error {
    Error::Other(error.to_string())
}

/// The store's key of `key` in bucket `bucket`.
fn full_key(bucket: &str, key: &str) -> String {
    format!("wasi:keyvalue/{bucket}/{key}")
}

/// A value as the store keeps it (see the module doc).
pub fn encode(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => format!("t{text}"),
        Err(_) => {
            let mut hex = String::with_capacity(1 + value.len() * 2);
            hex.push('x');
            for byte in value {
                hex.push_str(&format!("{byte:02x}"));
            }
            hex
        }
    }
}

/// The bytes `encode` made `kept` from; `None` for text not written by `encode`.
pub fn decode(kept: &str) -> Option<Vec<u8>> {
    if let Some(text) = kept.strip_prefix('t') {
        return Some(text.as_bytes().to_vec());
    }
    let hex = kept.strip_prefix('x')?;
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let pairs = hex.as_bytes().chunks(2);
    pairs
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

fn bucket_name(
    ctx: &mut StoreContextMut<'_, ExorunCtx>,
    bucket: &Resource<Bucket>,
) -> wasmtime::Result<String> {
    Ok(ctx.data_mut().table().get(bucket)?.name.clone())
}

async fn get(store: &kv::Store, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
    let kept = store
        .get(&full_key(bucket, key))
        .await
        .map_err(|error| other(&error))?;
    let Some(kept) = kept else {
        return Ok(None);
    };
    decode(&kept).map(Some).ok_or_else(|| {
        Error::Other(format!(
            "the value of `{key}` was not written by wasi:keyvalue"
        ))
    })
}

async fn set(store: &kv::Store, bucket: &str, key: &str, value: &[u8]) -> Result<(), Error> {
    let kept = encode(value);
    store
        .set(&full_key(bucket, key), &kept)
        .await
        .map_err(|error| other(&error))
}

/// The store key a listing with `cursor` goes on after (`None`: from the start).
fn resume(bucket: &Bucket, cursor: Option<u64>) -> Result<Option<String>, Error> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let kept = cursor.checked_sub(1 + bucket.forgotten);
    let index = kept.and_then(|kept| usize::try_from(kept).ok());
    let after = index.and_then(|index| bucket.cursors.get(index));
    let after = after.ok_or_else(|| Error::Other(format!("cursor {cursor} is not known")))?;
    Ok(Some(after.clone()))
}

/// One page of `bucket`'s keys, after the store key `after`; its last store key, when more
/// follow.
async fn list(
    store: &kv::Store,
    bucket: &str,
    after: Option<&str>,
) -> Result<(Vec<String>, Option<String>), Error> {
    let prefix = full_key(bucket, "");
    let listed = store.keys(&prefix, after, PAGE + 1).await;
    let mut keys = listed.map_err(|error| other(&error))?;
    let more = keys.len() > PAGE;
    keys.truncate(PAGE);
    let last = more.then(|| keys.last().cloned()).flatten();
    let page = keys.into_iter().map(|key| key[prefix.len()..].to_owned());
    Ok((page.collect(), last))
}

/// Keeps `last` as a new cursor of `bucket` (forgetting the oldest past `CURSORS_MAX`).
fn remember(bucket: &mut Bucket, last: String) -> u64 {
    if bucket.cursors.len() >= CURSORS_MAX {
        bucket.cursors.remove(0);
        bucket.forgotten += 1;
    }
    bucket.cursors.push(last);
    let kept = u64::try_from(bucket.cursors.len()).unwrap_or(u64::MAX);
    bucket.forgotten + kept
}

/// `increment`'s change: the value as a decimal number (absent: 0) plus `delta`.
fn add(delta: u64) -> kv::Change {
    Arc::new(move |kept: Option<&str>| {
        let not_a_number = || kv::Error::Unavailable {
            store: "wasi:keyvalue".to_owned(),
            message: "the value is not a decimal number".to_owned(),
        };
        let now = match kept {
            None => 0,
            Some(kept) => {
                let bytes = decode(kept).ok_or_else(not_a_number)?;
                let text = String::from_utf8(bytes).map_err(|_| not_a_number())?;
                text.parse::<u64>().map_err(|_| not_a_number())?
            }
        };
        let sum = now
            .checked_add(delta)
            .ok_or_else(|| kv::Error::Unavailable {
                store: "wasi:keyvalue".to_owned(),
                message: format!("{now} + {delta} is past u64"),
            })?;
        Ok(encode(sum.to_string().as_bytes()))
    })
}

fn check_batch(count: usize) -> Result<(), Error> {
    if count > BATCH_MAX {
        return Err(Error::Other(format!(
            "a batch of {count} keys is more than {BATCH_MAX}"
        )));
    }
    Ok(())
}

type Answer<T> = wasmtime::Result<(Result<T, Error>,)>;

impl SystemComponent for KeyValue {
    fn interfaces(&self) -> Vec<String> {
        INTERFACES.iter().map(|name| (*name).to_owned()).collect()
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        let defined = install_store(linker).and_then(|()| install_atomics(linker));
        defined
            .and_then(|()| install_batch(linker))
            .map_err(|error| system::define_error("wasi:keyvalue/*", &error))
    }

    fn configure(&self, builder: &mut ContextBuilder) -> Result<(), system::Error> {
        builder.insert(Served(self.store.clone()));
        Ok(())
    }
}

/// `store.open`: a bucket of this name.
fn open(mut ctx: StoreContextMut<'_, ExorunCtx>, (name,): (String,)) -> Answer<Resource<Bucket>> {
    let valid = name.len() <= BUCKET_NAME_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        let refused = format!("a bucket name is 0 to {BUCKET_NAME_MAX} of [A-Za-z0-9_.-]");
        return Ok((Err(Error::Other(refused)),));
    }
    let bucket = ctx.data_mut().table().push(Bucket {
        name,
        cursors: Vec::new(),
        forgotten: 0,
    })?;
    Ok((Ok(bucket),))
}

fn install_store(linker: &mut Linker<ExorunCtx>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(STORE)?;
    instance.resource("bucket", ResourceType::host::<Bucket>(), |mut ctx, rep| {
        ctx.data_mut()
            .table()
            .delete(Resource::<Bucket>::new_own(rep))?;
        Ok(())
    })?;
    instance.func_wrap("open", open)?;
    instance.func_wrap_async(
        "[method]bucket.get",
        |mut ctx, (bucket, key): (Resource<Bucket>, String)| {
            Box::new(async move {
                let (store, name) = (store_of(&ctx)?, bucket_name(&mut ctx, &bucket)?);
                Ok((get(&store, &name, &key).await,))
            })
        },
    )?;
    instance.func_wrap_async(
        "[method]bucket.set",
        |mut ctx, (bucket, key, value): (Resource<Bucket>, String, Vec<u8>)| {
            Box::new(async move {
                let (store, name) = (store_of(&ctx)?, bucket_name(&mut ctx, &bucket)?);
                Ok((set(&store, &name, &key, &value).await,))
            })
        },
    )?;
    instance.func_wrap_async(
        "[method]bucket.delete",
        |mut ctx, (bucket, key): (Resource<Bucket>, String)| {
            Box::new(async move {
                let (store, name) = (store_of(&ctx)?, bucket_name(&mut ctx, &bucket)?);
                let deleted = store.delete(&full_key(&name, &key)).await;
                Ok((deleted.map_err(|error| other(&error)),))
            })
        },
    )?;
    instance.func_wrap_async(
        "[method]bucket.exists",
        |mut ctx, (bucket, key): (Resource<Bucket>, String)| {
            Box::new(async move {
                let (store, name) = (store_of(&ctx)?, bucket_name(&mut ctx, &bucket)?);
                let found = store.get(&full_key(&name, &key)).await;
                Ok((found
                    .map(|value| value.is_some())
                    .map_err(|error| other(&error)),))
            })
        },
    )?;
    instance.func_wrap_async(
        "[method]bucket.list-keys",
        |mut ctx, (bucket, cursor): (Resource<Bucket>, Option<u64>)| {
            Box::new(async move {
                let store = store_of(&ctx)?;
                let held = ctx.data_mut().table().get(&bucket)?;
                let (name, after) = (held.name.clone(), resume(held, cursor));
                let after = match after {
                    Ok(after) => after,
                    Err(error) => return Ok((Err(error),)),
                };
                let listed = list(&store, &name, after.as_deref()).await;
                let listed = listed.map(|(keys, last)| {
                    let held = ctx.data_mut().table().get_mut(&bucket);
                    let cursor = last.zip(held.ok()).map(|(last, held)| remember(held, last));
                    KeyResponse { keys, cursor }
                });
                Ok((listed,))
            })
        },
    )?;
    Ok(())
}

fn install_atomics(linker: &mut Linker<ExorunCtx>) -> wasmtime::Result<()> {
    let mut instance = linker.instance("wasi:keyvalue/atomics@0.2.0-draft")?;
    instance.func_wrap_async(
        "increment",
        |mut ctx, (bucket, key, delta): (Resource<Bucket>, String, u64)| {
            Box::new(async move {
                let (store, name) = (store_of(&ctx)?, bucket_name(&mut ctx, &bucket)?);
                let updated = store.update(&full_key(&name, &key), add(delta)).await;
                let sum = updated.map_err(|error| other(&error)).and_then(|kept| {
                    let text = decode(&kept).and_then(|bytes| String::from_utf8(bytes).ok());
                    let sum = text.and_then(|text| text.parse::<u64>().ok());
                    sum.ok_or_else(|| Error::Other("the sum was not written".to_owned()))
                });
                Ok((sum,))
            })
        },
    )?;
    Ok(())
}

fn install_batch(linker: &mut Linker<ExorunCtx>) -> wasmtime::Result<()> {
    let mut instance = linker.instance("wasi:keyvalue/batch@0.2.0-draft")?;
    instance.func_wrap_async(
        "get-many",
        |mut ctx, (bucket, keys): (Resource<Bucket>, Vec<String>)| {
            Box::new(async move {
                let (store, name) = (store_of(&ctx)?, bucket_name(&mut ctx, &bucket)?);
                Ok((get_many(&store, &name, keys).await,))
            })
        },
    )?;
    instance.func_wrap_async(
        "set-many",
        |mut ctx, (bucket, pairs): (Resource<Bucket>, Vec<(String, Vec<u8>)>)| {
            Box::new(async move {
                let (store, name) = (store_of(&ctx)?, bucket_name(&mut ctx, &bucket)?);
                Ok((set_many(&store, &name, &pairs).await,))
            })
        },
    )?;
    instance.func_wrap_async(
        "delete-many",
        |mut ctx, (bucket, keys): (Resource<Bucket>, Vec<String>)| {
            Box::new(async move {
                let (store, name) = (store_of(&ctx)?, bucket_name(&mut ctx, &bucket)?);
                Ok((delete_many(&store, &name, &keys).await,))
            })
        },
    )?;
    Ok(())
}

async fn get_many(
    store: &kv::Store,
    bucket: &str,
    keys: Vec<String>,
) -> Result<Vec<Option<(String, Vec<u8>)>>, Error> {
    check_batch(keys.len())?;
    let mut found = Vec::with_capacity(keys.len());
    for key in keys {
        let value = get(store, bucket, &key).await?;
        found.push(value.map(|value| (key, value)));
    }
    Ok(found)
}

async fn set_many(
    store: &kv::Store,
    bucket: &str,
    pairs: &[(String, Vec<u8>)],
) -> Result<(), Error> {
    check_batch(pairs.len())?;
    for (key, value) in pairs {
        set(store, bucket, key, value).await?;
    }
    Ok(())
}

async fn delete_many(store: &kv::Store, bucket: &str, keys: &[String]) -> Result<(), Error> {
    check_batch(keys.len())?;
    for key in keys {
        let deleted = store.delete(&full_key(bucket, key)).await;
        deleted.map_err(|error| other(&error))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of a bucket larger than one page, reached page by page through the cursors,
    /// each once, in order, and none of another bucket. A cursor not handed out is `other`.
    #[test]
    fn a_listing_reaches_every_key_page_by_page() {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        let store = kv::Store::new();
        let keys: Vec<String> = (0..2_500).map(|n| format!("k{n:05}")).collect();
        tokio.block_on(async {
            for key in &keys {
                set(&store, "b", key, b"v")
                    .await
                    .unwrap_or_else(|error| panic!("{error:?}"));
            }
            set(&store, "other", "k0", b"v")
                .await
                .unwrap_or_else(|error| panic!("{error:?}"));
        });
        let mut bucket = Bucket {
            name: "b".to_owned(),
            cursors: Vec::new(),
            forgotten: 0,
        };
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let after = resume(&bucket, cursor).unwrap_or_else(|error| panic!("{error:?}"));
            let listed = tokio.block_on(list(&store, &bucket.name, after.as_deref()));
            let (page, last) = listed.unwrap_or_else(|error| panic!("{error:?}"));
            assert!(page.len() <= PAGE);
            seen.extend(page);
            let Some(last) = last else { break };
            cursor = Some(remember(&mut bucket, last));
        }
        assert_eq!(seen, keys);
        assert_eq!(
            resume(&bucket, Some(99)),
            Err(Error::Other("cursor 99 is not known".to_owned()))
        );
    }

    #[test]
    fn a_bucket_keeps_its_latest_cursors() {
        let mut bucket = Bucket {
            name: "b".to_owned(),
            cursors: Vec::new(),
            forgotten: 0,
        };
        let mut handed = Vec::new();
        for n in 0..CURSORS_MAX + 3 {
            handed.push(remember(&mut bucket, format!("key{n}")));
        }
        assert_eq!(bucket.cursors.len(), CURSORS_MAX);
        let first = handed.first().copied();
        assert!(resume(&bucket, first).is_err(), "the oldest is forgotten");
        let newest = handed.last().copied();
        let expected = Some(format!("key{}", CURSORS_MAX + 2));
        assert_eq!(resume(&bucket, newest), Ok(expected));
    }
}
