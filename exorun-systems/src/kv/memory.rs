//! The memory backend: a concurrent map, as long as the process.

use dashmap::DashMap;

use super::Backend;
use super::BoxFuture;
use super::Change;
use super::Error;

/// Entries in memory.
#[derive(Debug, Default)]
pub(super) struct Memory(DashMap<String, String>);

impl Backend for Memory {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, Error>> {
        let value = self.0.get(key).map(|value| value.clone());
        Box::pin(std::future::ready(Ok(value)))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        entries_max: usize,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let is_new = !self.0.contains_key(key);
        if is_new && self.0.len() >= entries_max {
            return Box::pin(std::future::ready(Err(Error::Full { entries_max })));
        }
        self.0.insert(key.to_owned(), value.to_owned());
        Box::pin(std::future::ready(Ok(())))
    }

    fn entries(&self) -> BoxFuture<'_, Result<usize, Error>> {
        Box::pin(std::future::ready(Ok(self.0.len())))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        self.0.remove(key);
        Box::pin(std::future::ready(Ok(())))
    }

    fn keys<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        let later = |key: &str| after.is_none_or(|after| key > after);
        let mut keys: Vec<String> = self
            .0
            .iter()
            .filter(|entry| entry.key().starts_with(prefix) && later(entry.key()))
            .map(|entry| entry.key().clone())
            .collect();
        keys.sort();
        keys.truncate(limit);
        Box::pin(std::future::ready(Ok(keys)))
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        change: Change,
        entries_max: usize,
    ) -> BoxFuture<'a, Result<String, Error>> {
        // Counted before the entry is locked: `len` locks every shard.
        let full = self.0.len() >= entries_max;
        let updated = match self.0.entry(key.to_owned()) {
            dashmap::Entry::Occupied(mut occupied) => {
                change(Some(occupied.get())).inspect(|value| {
                    occupied.insert(value.clone());
                })
            }
            dashmap::Entry::Vacant(_) if full => Err(Error::Full { entries_max }),
            dashmap::Entry::Vacant(vacant) => change(None).inspect(|value| {
                vacant.insert(value.clone());
            }),
        };
        Box::pin(std::future::ready(updated))
    }

    fn describe(&self) -> String {
        "a store in memory".to_owned()
    }
}
