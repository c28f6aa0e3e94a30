//! The durable backend: one redb file per store. Every `set` is its own write transaction,
//! committed with redb's default durability (fsynced before it returns), so a value a guest saw
//! stored survives `kill -9`. redb's calls block, so each runs on tokio's blocking pool; redb
//! holds a lock on the file, so a second process opening it is refused at once.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use redb::ReadableDatabase;
use redb::ReadableTable;
use redb::ReadableTableMetadata;

use super::Backend;
use super::Change;
use super::Error;
use super::bounded;
use super::bounded_by;
use exorun_common::BoxFuture;

/// The one table of a store file.
const ENTRIES: redb::TableDefinition<'static, &str, &str> = redb::TableDefinition::new("entries");

/// A store in a redb file.
pub(super) struct Durable {
    database: Arc<redb::Database>,
    path: PathBuf,
}

impl Durable {
    /// Opens (or makes) the store file at `path`.
    pub(super) async fn open(path: &Path) -> Result<Self, Error> {
        let store = describe(path);
        let opening = path.to_owned();
        let opened = tokio::task::spawn_blocking(move || {
            let database = redb::Database::create(&opening).map_err(|error| error.to_string())?;
            // The table exists from the start, so a read never meets a missing one.
            let transaction = database.begin_write().map_err(|error| error.to_string())?;
            transaction
                .open_table(ENTRIES)
                .map_err(|error| error.to_string())?;
            transaction.commit().map_err(|error| error.to_string())?;
            Ok::<_, String>(database)
        });
        let database = bounded_by(super::OPEN_TIMEOUT, &store, async {
            let joined = opened.await.map_err(|error| error.to_string());
            joined
                .and_then(|opened| opened)
                .map_err(|message| Error::Open {
                    store: store.clone(),
                    message,
                })
        })
        .await?;
        Ok(Self {
            database: Arc::new(database),
            path: path.to_owned(),
        })
    }

    /// Runs `operation` on the database on the blocking pool, within `OPERATION_TIMEOUT`.
    async fn blocking<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&redb::Database) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let database = Arc::clone(&self.database);
        let store = self.describe();
        let running = tokio::task::spawn_blocking(move || operation(&database));
        bounded(&store, async {
            running.await.map_err(|error| Error::Unavailable {
                store: store.clone(),
                message: error.to_string(),
            })?
        })
        .await
    }
}

fn describe(path: &Path) -> String {
    format!("redb file {}", path.display())
}

/// Writes `key` in `table`, unless it is new and the table holds `entries_max` entries.
fn insert(
    mut table: redb::Table<'_, &'static str, &'static str>,
    key: &str,
    value: &str,
    entries_max: usize,
    failed: &dyn Fn(&dyn std::fmt::Display) -> Error,
) -> Result<(), Error> {
    let is_new = table.get(key).map_err(|error| failed(&error))?.is_none();
    let entries = table.len().map_err(|error| failed(&error))?;
    let full = usize::try_from(entries).unwrap_or(usize::MAX) >= entries_max;
    if is_new && full {
        return Err(Error::Full { entries_max });
    }
    table.insert(key, value).map_err(|error| failed(&error))?;
    Ok(())
}

fn unavailable(store: &str, error: &dyn std::fmt::Display) -> Error {
    Error::Unavailable {
        store: store.to_owned(),
        message: error.to_string(),
    }
}

/// What turns a redb error into the store's `Unavailable`.
type Failed<'a> = &'a dyn Fn(&dyn std::fmt::Display) -> Error;

/// The entries table, read-only.
type Reading = redb::ReadOnlyTable<&'static str, &'static str>;

/// The entries table, in a write transaction.
type Writing<'t> = redb::Table<'t, &'static str, &'static str>;

impl Durable {
    /// Runs `operation` on the entries table in a read transaction (on the blocking pool).
    async fn reading<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&Reading, Failed<'_>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let store = self.describe();
        self.blocking(move |database| {
            let failed = |error: &dyn std::fmt::Display| unavailable(&store, error);
            let transaction = database.begin_read().map_err(|error| failed(&error))?;
            let table = transaction
                .open_table(ENTRIES)
                .map_err(|error| failed(&error))?;
            operation(&table, &failed)
        })
        .await
    }

    /// Runs `operation` on the entries table in a write transaction, committed (fsynced) when
    /// it succeeds; one write transaction runs at a time (redb's own lock).
    async fn writing<T: Send + 'static>(
        &self,
        operation: impl FnOnce(Writing<'_>, Failed<'_>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let store = self.describe();
        self.blocking(move |database| {
            let failed = |error: &dyn std::fmt::Display| unavailable(&store, error);
            let transaction = database.begin_write().map_err(|error| failed(&error))?;
            let table = transaction
                .open_table(ENTRIES)
                .map_err(|error| failed(&error))?;
            let done = operation(table, &failed)?;
            transaction.commit().map_err(|error| failed(&error))?;
            Ok(done)
        })
        .await
    }
}

impl Backend for Durable {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, Error>> {
        let key = key.to_owned();
        Box::pin(self.reading(move |table, failed| {
            let value = table.get(key.as_str()).map_err(|error| failed(&error))?;
            Ok(value.map(|value| value.value().to_owned()))
        }))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        entries_max: usize,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let (key, value) = (key.to_owned(), value.to_owned());
        Box::pin(
            self.writing(move |table, failed| insert(table, &key, &value, entries_max, failed)),
        )
    }

    fn entries(&self) -> BoxFuture<'_, Result<usize, Error>> {
        Box::pin(self.reading(|table, failed| {
            let entries = table.len().map_err(|error| failed(&error))?;
            Ok(usize::try_from(entries).unwrap_or(usize::MAX))
        }))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        let key = key.to_owned();
        Box::pin(self.writing(move |mut table, failed| {
            table.remove(key.as_str()).map_err(|error| failed(&error))?;
            Ok(())
        }))
    }

    fn keys<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        let (prefix, after) = (prefix.to_owned(), after.map(str::to_owned));
        Box::pin(self.reading(move |table, failed| {
            use std::ops::Bound;
            let start = match after.as_deref() {
                Some(after) if after >= prefix.as_str() => Bound::Excluded(after),
                Some(_) | None => Bound::Included(prefix.as_str()),
            };
            let range = table
                .range::<&str>((start, Bound::Unbounded))
                .map_err(|error| failed(&error))?;
            let keys = range.map(|entry| {
                let (key, _) = entry.map_err(|error| failed(&error))?;
                Ok(key.value().to_owned())
            });
            // In byte order from the prefix on: the first key without it ends the run.
            let under = keys.take_while(|key| {
                key.as_ref()
                    .map_or(true, |key: &String| key.starts_with(prefix.as_str()))
            });
            under.take(limit).collect()
        }))
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        change: Change,
        entries_max: usize,
    ) -> BoxFuture<'a, Result<String, Error>> {
        let key = key.to_owned();
        // In one write transaction: the read and the write are one.
        Box::pin(self.writing(move |table, failed| {
            let current = table.get(key.as_str()).map_err(|error| failed(&error))?;
            let current = current.map(|value| value.value().to_owned());
            let value = change(current.as_deref())?;
            insert(table, &key, &value, entries_max, failed)?;
            Ok(value)
        }))
    }

    fn describe(&self) -> String {
        describe(&self.path)
    }
}
