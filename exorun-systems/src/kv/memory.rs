//! The memory backend: a concurrent map, as long as the process. Its entries are counted
//! apart from the map, a new key taking its place in the count while it holds the key's
//! entry, so writers at once never take the store past its bound. (A delete uncounts its key
//! just after removing it: for that instant a new key at the bound is refused `Full`.)

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use dashmap::DashMap;

use super::Backend;
use super::Change;
use super::Error;
use exorun_common::BoxFuture;

/// Entries in memory.
#[derive(Debug, Default)]
pub(super) struct Memory {
    entries: DashMap<String, String>,
    /// How many entries the map holds or is about to.
    count: AtomicUsize,
}

impl Memory {
    /// Takes a place for a new entry, unless `entries_max` are taken.
    fn reserve(&self, entries_max: usize) -> Result<(), Error> {
        let taken = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count < entries_max).then_some(count + 1)
            });
        taken.map(drop).map_err(|_| Error::Full { entries_max })
    }
}

impl Backend for Memory {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, Error>> {
        let value = self.entries.get(key).map(|value| value.clone());
        Box::pin(std::future::ready(Ok(value)))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        entries_max: usize,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let written = match self.entries.entry(key.to_owned()) {
            dashmap::Entry::Occupied(mut occupied) => {
                occupied.insert(value.to_owned());
                Ok(())
            }
            dashmap::Entry::Vacant(vacant) => self.reserve(entries_max).map(|()| {
                vacant.insert(value.to_owned());
            }),
        };
        Box::pin(std::future::ready(written))
    }

    fn entries(&self) -> BoxFuture<'_, Result<usize, Error>> {
        Box::pin(std::future::ready(Ok(self.count.load(Ordering::Acquire))))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        if self.entries.remove(key).is_some() {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn keys<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        let mut keys = super::FirstKeys::new(prefix, after, limit);
        for entry in &self.entries {
            keys.offer(entry.key());
        }
        Box::pin(std::future::ready(Ok(keys.sorted())))
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        change: Change,
        entries_max: usize,
    ) -> BoxFuture<'a, Result<String, Error>> {
        let updated = match self.entries.entry(key.to_owned()) {
            dashmap::Entry::Occupied(mut occupied) => {
                change(Some(occupied.get())).inspect(|value| {
                    occupied.insert(value.clone());
                })
            }
            dashmap::Entry::Vacant(vacant) => change(None).and_then(|value| {
                self.reserve(entries_max)?;
                vacant.insert(value.clone());
                Ok(value)
            }),
        };
        Box::pin(std::future::ready(updated))
    }

    fn describe(&self) -> String {
        "a store in memory".to_owned()
    }
}
