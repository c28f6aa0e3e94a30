//! The JetStream backend: a NATS JetStream key-value bucket, shared by every runtime connected
//! to the same NATS system. One value per key is kept (history 1); values are bounded like every
//! store's. A `set` returns once JetStream acknowledged the write (stored by the server, so it
//! survives the runtime and, with file storage, a restart of the server).
//!
//! NATS keys allow only some characters, so a key is written escaped: ASCII letters, digits,
//! `-` and `_` as they are, every other byte `=` and two lowercase hex digits, the empty key
//! `=` (injective, so two keys never share an entry).

use async_nats::jetstream::kv;

use super::Backend;
use super::Change;
use super::Error;
use super::KEY_BYTES_MAX;
use super::VALUE_BYTES_MAX;
use super::bounded;
use exorun_common::BoxFuture;

/// A store in a JetStream bucket.
pub(super) struct Bucket {
    bucket: kv::Store,
    /// The bucket's stream, asked for its count of values (the bucket's own status is the
    /// count when it was opened).
    stream: async_nats::jetstream::stream::Stream,
    name: String,
    /// `describe(name)`, for errors.
    label: String,
}

impl Bucket {
    /// Opens bucket `name` (made if missing).
    pub(super) async fn open(client: async_nats::Client, name: &str) -> Result<Self, Error> {
        let store = describe(name);
        let jetstream = async_nats::jetstream::new(client);
        // The bucket's stream, made as NATS's own key-value buckets are (one value per key,
        // rollups allowed, deletes denied), directly: the client's `create_key_value` first
        // asks for account details that the nats-server 2.9 of Debian answers in a shape the
        // client no longer reads.
        let stream = async_nats::jetstream::stream::Config {
            name: format!("KV_{name}"),
            description: Some("an exorun kv store".to_owned()),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_message_size: i32::try_from(VALUE_BYTES_MAX + KEY_BYTES_MAX * 3 + 1024)
                .unwrap_or(i32::MAX),
            storage: async_nats::jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: 1,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            ..async_nats::jetstream::stream::Config::default()
        };
        let opened = bounded(&store, async {
            let open_error = |error: &dyn std::fmt::Display| Error::Open {
                store: store.clone(),
                message: error.to_string(),
            };
            let made = jetstream.get_or_create_stream(stream).await;
            let made = made.map_err(|error| open_error(&error))?;
            // A bucket made elsewhere may be one deletes cannot work on: a mirror (written
            // under another bucket's subjects) or a stream that denies purges.
            let config = &made.cached_info().config;
            if config.mirror.is_some() || config.deny_purge {
                return Err(open_error(&"a mirror, or a stream that denies purges"));
            }
            let bucket = jetstream.get_key_value(name).await;
            Ok((bucket.map_err(|error| open_error(&error))?, made))
        })
        .await?;
        let (opened, stream) = opened;
        Ok(Self {
            bucket: opened,
            stream,
            name: name.to_owned(),
            label: store,
        })
    }

    fn unavailable(&self, error: &dyn std::fmt::Display) -> Error {
        Error::Unavailable {
            store: self.describe(),
            message: error.to_string(),
        }
    }

    /// Values in the bucket now (one per key).
    async fn entries(&self) -> Result<usize, Error> {
        let info = self.stream.get_info().await;
        let messages = info
            .map_err(|error| self.unavailable(&error))?
            .state
            .messages;
        Ok(usize::try_from(messages).unwrap_or(usize::MAX))
    }

    async fn value(&self, key: &str) -> Result<Option<String>, Error> {
        let stored = self.bucket.get(escape(key)).await;
        let Some(bytes) = stored.map_err(|error| self.unavailable(&error))? else {
            return Ok(None);
        };
        let value = String::from_utf8(bytes.to_vec());
        value
            .map(Some)
            .map_err(|_| self.unavailable(&"a value that is not UTF-8 text"))
    }
}

impl Bucket {
    /// Every key of the bucket written by exorun that starts with `prefix`, sorted.
    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let listed = self.bucket.keys().await;
        let mut listed = listed.map_err(|error| self.unavailable(&error))?;
        let mut keys = super::FirstKeys::new(prefix, after, limit);
        while let Some(key) = futures_util::StreamExt::next(&mut listed).await {
            let nats_key = key.map_err(|error| self.unavailable(&error))?;
            // A NATS key that `escape` cannot have made (with a `.`, say) is left out.
            let Some(key) = unescape(&nats_key).filter(|key| escape(key) == nats_key) else {
                continue;
            };
            keys.offer(&key);
        }
        Ok(keys.sorted())
    }

    /// One read and conditional write of `key`: the value written, or (inner `Err`) what
    /// the write met when another writer came between. Any other failure is the outer `Err`,
    /// not tried again: a write whose fate is unknown must not be made twice.
    async fn try_update(
        &self,
        key: &str,
        change: &Change,
        entries_max: usize,
    ) -> Result<Result<String, String>, Error> {
        let nats_key = escape(key);
        let entry = self.bucket.entry(nats_key.clone()).await;
        let entry = entry.map_err(|error| self.unavailable(&error))?;
        // The revision the write expects: the key's last message (a value, or a marker an
        // older delete left), or 0 when it has none.
        let revision = entry.as_ref().map_or(0, |entry| entry.revision);
        let live = entry.filter(|entry| entry.operation == kv::Operation::Put);
        let current = match &live {
            Some(entry) => Some(
                String::from_utf8(entry.value.to_vec())
                    .map_err(|_| self.unavailable(&"a value that is not UTF-8 text"))?,
            ),
            None => None,
        };
        let value = change(current.as_deref())?;
        let bytes = bytes::Bytes::from(value.clone());
        if live.is_none() && self.entries().await? >= entries_max {
            return Err(Error::Full { entries_max });
        }
        // Never the client's `create`: after any failed write it reads the key again and
        // reports a value there (possibly its own, when only the acknowledgement was lost) as
        // a conflict, which would add the change twice.
        let updated = self.bucket.update(&nats_key, bytes, revision).await;
        match updated {
            Ok(_) => Ok(Ok(value)),
            Err(lost) if lost.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Ok(Err(lost.to_string()))
            }
            Err(error) => Err(self.unavailable(&error)),
        }
    }
}

fn describe(name: &str) -> String {
    format!("JetStream bucket {name}")
}

/// The NATS key of `key` (see the module doc).
fn escape(key: &str) -> String {
    if key.is_empty() {
        return "=".to_owned();
    }
    let mut escaped = String::with_capacity(key.len().min(KEY_BYTES_MAX) * 3);
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("={byte:02x}"));
        }
    }
    escaped
}

impl Backend for Bucket {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, Error>> {
        Box::pin(bounded(&self.label, self.value(key)))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        entries_max: usize,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(bounded(&self.label, async move {
            if self.value(key).await?.is_none() && self.entries().await? >= entries_max {
                return Err(Error::Full { entries_max });
            }
            let put = self.bucket.put(escape(key), value.to_owned().into()).await;
            put.map(drop).map_err(|error| self.unavailable(&error))
        }))
    }

    fn entries(&self) -> BoxFuture<'_, Result<usize, Error>> {
        Box::pin(bounded(&self.label, self.entries()))
    }

    /// Purges the key's subject rather than writing a delete marker: a marker is a message
    /// kept for good and counted against the bucket's entries, so deleting keys that were
    /// never set would fill the bucket for every runtime that shares it.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(bounded(&self.label, async move {
            let subject = format!("$KV.{}.{}", self.name, escape(key));
            let purged = self.stream.purge().filter(subject).await;
            purged.map(drop).map_err(|error| self.unavailable(&error))
        }))
    }

    fn keys<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        Box::pin(bounded(&self.label, self.list(prefix, after, limit)))
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        change: Change,
        entries_max: usize,
    ) -> BoxFuture<'a, Result<String, Error>> {
        // Compare and set on the key's revision, again while another writer comes between.
        Box::pin(bounded(&self.label, async move {
            let mut last = String::new();
            for tried in 0..UPDATE_TRIES {
                match self.try_update(key, &change, entries_max).await? {
                    Ok(value) => return Ok(value),
                    Err(conflict) => last = conflict,
                }
                tokio::time::sleep(backoff(tried)).await;
            }
            Err(self.unavailable(&format!("{UPDATE_TRIES} writers came between: {last}")))
        }))
    }

    fn describe(&self) -> String {
        describe(&self.name)
    }
}

/// How many times an update reads and tries to write before it gives up.
const UPDATE_TRIES: u32 = 32;

/// How long a writer that lost a compare-and-set waits before it reads again: a random share
/// of 1 ms doubled per loss up to 64 ms, so writers that met once do not meet again in step
/// (at most about 2 s over every try, within `OPERATION_TIMEOUT`).
fn backoff(tried: u32) -> std::time::Duration {
    use std::hash::BuildHasher;
    let ceiling_us = 1000_u64 << tried.min(6);
    // A new randomly keyed hash each time: unpredictable, and no random crate for it.
    let draw = std::collections::hash_map::RandomState::new().hash_one(tried);
    std::time::Duration::from_micros(draw % ceiling_us)
}

/// The key `escape` made `escaped` from; `None` if it was not made by `escape`.
fn unescape(escaped: &str) -> Option<String> {
    if escaped == "=" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut rest = escaped.as_bytes();
    while let Some((&first, after)) = rest.split_first() {
        if first != b'=' {
            bytes.push(first);
            rest = after;
            continue;
        }
        let hex = after.get(..2)?;
        let byte = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        bytes.push(byte);
        rest = &after[2..];
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_escape_into_nats_keys_without_collisions() {
        assert_eq!(escape("foo"), "foo");
        assert_eq!(escape("a.b"), "a=2eb");
        assert_eq!(escape("="), "=3d");
        assert_eq!(escape(""), "=");
        assert_eq!(escape("é"), "=c3=a9");
        assert_ne!(escape("a.b"), escape("a=2eb"));
        for key in ["foo", "a.b", "=", "", "é", "wasi:keyvalue/b/k"] {
            assert_eq!(unescape(&escape(key)).as_deref(), Some(key));
        }
        assert_eq!(unescape("=zz"), None);
    }
}
