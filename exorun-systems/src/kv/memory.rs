//! The memory backend: a concurrent map, as long as the process.

use dashmap::DashMap;

use super::Backend;
use super::BoxFuture;
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

    fn describe(&self) -> String {
        "a store in memory".to_owned()
    }
}
