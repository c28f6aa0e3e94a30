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
//! cursor names the last key of the page before, kept by the instance (at most
//! [`CURSORS_MAX`] an instance, over all its buckets, so at most 256 KiB of keys; past that
//! the oldest are forgotten, and theirs is `other`, as is a cursor given to another bucket;
//! numbers are drawn over the process, so another replica's cursor is unknown here),
//! so a listing goes on after that key however the bucket changed, and every key of a bucket
//! of any size is reached. A batch holds at most [`BATCH_MAX`] keys, and the values one
//! `get-many` answers at most [`GET_MANY_BYTES_MAX`] bytes.
//!
//! **Sizes first.** A key or value past the store's bounds is refused before anything is
//! built from it, so a guest's 60 MiB value costs a comparison, not its hex copy.

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
/// The most listing cursors one instance keeps (over all its buckets).
pub const CURSORS_MAX: usize = 256;
/// The most value bytes one `get-many` answers (past it: `other`, nothing answered).
pub const GET_MANY_BYTES_MAX: usize = 16 * 1024 * 1024;
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
#[derive(ComponentType, Lift, Lower, Debug, Clone, Default)]
#[component(record)]
struct KeyResponse {
    keys: Vec<String>,
    cursor: Option<u64>,
}

/// A bucket a guest opened: its name (the host resource behind `bucket`).
#[derive(Debug)]
pub struct Bucket {
    name: String,
}

/// An instance's listing cursors, oldest first: each cursor's number, and the bucket and last
/// store key of the page it was handed out with. Numbers are drawn from one counter for the
/// whole process, so a cursor that reaches another replica (or instance) is unknown there,
/// never another listing's place.
#[derive(Debug, Default)]
struct Cursors {
    kept: std::collections::VecDeque<(u64, String, String)>,
}

/// The next cursor number, over the process (0 is never handed out).
static NEXT_CURSOR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

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

/// The store and the instance's cursors, in a store context's user data.
struct Served {
    store: kv::Store,
    cursors: Cursors,
}

fn not_configured() -> wasmtime::Error {
    wasmtime::format_err!("wasi:keyvalue not configured for this instance")
}

fn store_of(ctx: &StoreContextMut<'_, ExorunCtx>) -> wasmtime::Result<kv::Store> {
    let served = ctx
        .data()
        .user::<Served>()
        .map(|served| served.store.clone());
    served.ok_or_else(not_configured)
}

fn cursors_of<'a>(
    ctx: &'a mut StoreContextMut<'_, ExorunCtx>,
) -> wasmtime::Result<&'a mut Cursors> {
    let served = ctx.data_mut().user_mut::<Served>();
    served
        .map(|served| &mut served.cursors)
        .ok_or_else(not_configured)
}

fn other(error: &kv::Error) -> Error {
    Error::Other(error.to_string())
}

const KEY_PREFIX: &str = "wasi:keyvalue/";

/// The store's key of `key` in bucket `bucket`; refused before it is built when it would be
/// longer than the store's keys.
fn full_key(bucket: &str, key: &str) -> Result<String, Error> {
    let bytes = KEY_PREFIX.len() + bucket.len() + 1 + key.len();
    if bytes > kv::KEY_BYTES_MAX {
        let max = kv::KEY_BYTES_MAX;
        return Err(other(&kv::Error::KeyTooLarge { bytes, max }));
    }
    Ok(format!("{KEY_PREFIX}{bucket}/{key}"))
}

/// A value as the store keeps it (see the module doc).
pub fn encode(value: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    match std::str::from_utf8(value) {
        Ok(text) => format!("t{text}"),
        Err(_) => {
            let mut hex = String::with_capacity(1 + value.len() * 2);
            hex.push('x');
            for byte in value {
                hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
                hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
            }
            hex
        }
    }
}

/// How long `encode(value)` is, without making it.
fn encoded_len(value: &[u8]) -> usize {
    match std::str::from_utf8(value) {
        Ok(_) => value.len().saturating_add(1),
        Err(_) => value.len().saturating_mul(2).saturating_add(1),
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
        .get(&full_key(bucket, key)?)
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
    let full_key = full_key(bucket, key)?;
    let bytes = encoded_len(value);
    if bytes > kv::VALUE_BYTES_MAX {
        let max = kv::VALUE_BYTES_MAX;
        return Err(other(&kv::Error::ValueTooLarge { bytes, max }));
    }
    let kept = encode(value);
    store
        .set(&full_key, &kept)
        .await
        .map_err(|error| other(&error))
}

async fn delete(store: &kv::Store, bucket: &str, key: &str) -> Result<(), Error> {
    let deleted = store.delete(&full_key(bucket, key)?).await;
    deleted.map_err(|error| other(&error))
}

async fn exists(store: &kv::Store, bucket: &str, key: &str) -> Result<bool, Error> {
    let found = store.get(&full_key(bucket, key)?).await;
    found
        .map(|value| value.is_some())
        .map_err(|error| other(&error))
}

async fn increment(store: &kv::Store, bucket: &str, key: &str, delta: u64) -> Result<u64, Error> {
    let updated = store.update(&full_key(bucket, key)?, add(delta)).await;
    let kept = updated.map_err(|error| other(&error))?;
    let text = decode(&kept).and_then(|bytes| String::from_utf8(bytes).ok());
    let sum = text.and_then(|text| text.parse::<u64>().ok());
    sum.ok_or_else(|| Error::Other("the sum was not written".to_owned()))
}

/// The store key a listing of `bucket` with `cursor` goes on after (`None`: from the start).
fn resume(cursors: &Cursors, bucket: &str, cursor: Option<u64>) -> Result<Option<String>, Error> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let mut kept = cursors.kept.iter();
    let found = kept.find(|(number, of, _)| *number == cursor && of == bucket);
    let after = found.map(|(_, _, after)| after.clone());
    after
        .map(Some)
        .ok_or_else(|| Error::Other(format!("cursor {cursor} is not known")))
}

/// One page of `bucket`'s keys, after the store key `after`; its last store key, when more
/// follow.
async fn list(
    store: &kv::Store,
    bucket: &str,
    after: Option<&str>,
) -> Result<(Vec<String>, Option<String>), Error> {
    let prefix = full_key(bucket, "")?;
    let listed = store.keys(&prefix, after, PAGE + 1).await;
    let mut keys = listed.map_err(|error| other(&error))?;
    let more = keys.len() > PAGE;
    keys.truncate(PAGE);
    let last = more.then(|| keys.last().cloned()).flatten();
    let page = keys.into_iter().map(|key| key[prefix.len()..].to_owned());
    Ok((page.collect(), last))
}

/// Keeps `last` as a new cursor of `bucket` (forgetting the oldest past `CURSORS_MAX`).
fn remember(cursors: &mut Cursors, bucket: &str, last: String) -> u64 {
    if cursors.kept.len() >= CURSORS_MAX {
        cursors.kept.pop_front();
    }
    let number = NEXT_CURSOR.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cursors.kept.push_back((number, bucket.to_owned(), last));
    number
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
            .map_err(|error| system::define_error("wasi:keyvalue/*", error))
    }

    fn configure(&self, builder: &mut ContextBuilder) -> Result<(), system::Error> {
        builder.insert(Served {
            store: self.store.clone(),
            cursors: Cursors::default(),
        });
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
    let bucket = ctx.data_mut().table().push(Bucket { name })?;
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
                Ok((delete(&store, &name, &key).await,))
            })
        },
    )?;
    instance.func_wrap_async(
        "[method]bucket.exists",
        |mut ctx, (bucket, key): (Resource<Bucket>, String)| {
            Box::new(async move {
                let (store, name) = (store_of(&ctx)?, bucket_name(&mut ctx, &bucket)?);
                Ok((exists(&store, &name, &key).await,))
            })
        },
    )?;
    instance.func_wrap_async(
        "[method]bucket.list-keys",
        |mut ctx, (bucket, cursor): (Resource<Bucket>, Option<u64>)| {
            Box::new(async move {
                let (store, name) = (store_of(&ctx)?, bucket_name(&mut ctx, &bucket)?);
                let after = match resume(cursors_of(&mut ctx)?, &name, cursor) {
                    Ok(after) => after,
                    Err(error) => return Ok((Err(error),)),
                };
                let listed = list(&store, &name, after.as_deref()).await;
                let Ok((keys, last)) = listed else {
                    return Ok((listed.map(|_| KeyResponse::default()),));
                };
                let cursors = cursors_of(&mut ctx)?;
                let cursor = last.map(|last| remember(cursors, &name, last));
                Ok((Ok(KeyResponse { keys, cursor }),))
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
                Ok((increment(&store, &name, &key, delta).await,))
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
    let mut bytes = 0_usize;
    for key in keys {
        let value = get(store, bucket, &key).await?;
        bytes = bytes.saturating_add(value.as_ref().map_or(0, Vec::len));
        if bytes > GET_MANY_BYTES_MAX {
            return Err(Error::Other(format!(
                "the values of this batch are more than {GET_MANY_BYTES_MAX} bytes"
            )));
        }
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
        delete(store, bucket, key).await?;
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
        let mut cursors = Cursors::default();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let after = resume(&cursors, "b", cursor).unwrap_or_else(|error| panic!("{error:?}"));
            let listed = tokio.block_on(list(&store, "b", after.as_deref()));
            let (page, last) = listed.unwrap_or_else(|error| panic!("{error:?}"));
            assert!(page.len() <= PAGE);
            seen.extend(page);
            let Some(last) = last else { break };
            cursor = Some(remember(&mut cursors, "b", last));
        }
        assert_eq!(seen, keys);
        let never = u64::MAX;
        assert_eq!(
            resume(&cursors, "b", Some(never)),
            Err(Error::Other(format!("cursor {never} is not known")))
        );
        let last = cursor.unwrap_or_default();
        assert_eq!(
            resume(&cursors, "other", cursor),
            Err(Error::Other(format!("cursor {last} is not known"))),
            "a cursor goes with the bucket it was handed out for"
        );
        assert!(
            resume(&Cursors::default(), "b", cursor).is_err(),
            "another replica's cursors do not know it"
        );
    }

    /// An instance keeps its latest `CURSORS_MAX` cursors over all its buckets, however many
    /// buckets it opened.
    #[test]
    fn an_instance_keeps_its_latest_cursors() {
        let mut cursors = Cursors::default();
        let mut handed = Vec::new();
        for n in 0..CURSORS_MAX * 4 + 3 {
            let bucket = format!("b{}", n % 7);
            handed.push((
                bucket.clone(),
                remember(&mut cursors, &bucket, format!("key{n}")),
            ));
        }
        assert_eq!(cursors.kept.len(), CURSORS_MAX);
        let (bucket, first) = handed.first().cloned().unwrap_or_default();
        assert!(
            resume(&cursors, &bucket, Some(first)).is_err(),
            "the oldest is forgotten"
        );
        let (bucket, newest) = handed.last().cloned().unwrap_or_default();
        let expected = Some(format!("key{}", CURSORS_MAX * 4 + 2));
        assert_eq!(resume(&cursors, &bucket, Some(newest)), Ok(expected));
    }

    /// Keys and values past the store's bounds are refused by their size, with the store's
    /// words; a binary value is counted at its hex length, and hex is what `encode` makes.
    #[test]
    fn sizes_are_refused_before_anything_is_built() {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        let store = kv::Store::new();
        let long_key = "k".repeat(kv::KEY_BYTES_MAX);
        let refused = tokio.block_on(set(&store, "b", &long_key, b"v"));
        let bytes = kv::KEY_BYTES_MAX + "wasi:keyvalue/b/".len();
        let words = format!("key of {bytes} bytes exceeds {}", kv::KEY_BYTES_MAX);
        assert_eq!(refused, Err(Error::Other(words)));
        let binary = vec![0xff_u8; kv::VALUE_BYTES_MAX / 2];
        assert_eq!(encoded_len(&binary), kv::VALUE_BYTES_MAX + 1);
        let refused = tokio.block_on(set(&store, "b", "k", &binary));
        let words = format!(
            "value of {} bytes exceeds {}",
            kv::VALUE_BYTES_MAX + 1,
            kv::VALUE_BYTES_MAX
        );
        assert_eq!(refused, Err(Error::Other(words)));
        assert_eq!(tokio.block_on(store.entries()), Ok(0));
        assert_eq!(encode(&[0x00, 0xab, 0xff]), "x00abff");
        assert_eq!(
            encoded_len(&[0x00, 0xab, 0xff]),
            encode(&[0x00, 0xab, 0xff]).len()
        );
        assert_eq!(decode("x00abff"), Some(vec![0x00, 0xab, 0xff]));
    }

    /// `get-many` answers at most `GET_MANY_BYTES_MAX` bytes of values.
    #[test]
    fn a_get_many_past_its_bytes_is_refused() {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        let store = kv::Store::new();
        let value = vec![b'v'; kv::VALUE_BYTES_MAX - 1];
        let count = GET_MANY_BYTES_MAX / value.len() + 1;
        let keys: Vec<String> = (0..count).map(|n| format!("k{n}")).collect();
        tokio.block_on(async {
            for key in &keys {
                set(&store, "b", key, &value)
                    .await
                    .unwrap_or_else(|error| panic!("{error:?}"));
            }
        });
        let all = tokio.block_on(get_many(&store, "b", keys.clone()));
        let words = format!("the values of this batch are more than {GET_MANY_BYTES_MAX} bytes");
        assert_eq!(all.map(|found| found.len()), Err(Error::Other(words)));
        let fewer = keys[1..].to_vec();
        let found = tokio.block_on(get_many(&store, "b", fewer));
        assert_eq!(found.map(|found| found.len()), Ok(count - 1));
    }
}
