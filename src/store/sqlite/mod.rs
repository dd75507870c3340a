//! The SQLite backend: one file in WAL mode, one connection behind a mutex (one writer), every
//! statement of the hot paths prepared once.
//!
//! In: the facade's calls, on a blocking thread. Out: rows.
//!
//! Invariants:
//! - `synchronous = FULL`: a committed change survives a machine crash. Only a poll's
//!   bookkeeping when it found nothing to write commits without the fsync ([`Relaxed`]).
//! - Every write transaction takes the write lock up front (`BEGIN IMMEDIATE`), so a CLI writing
//!   beside `pollhook run` waits on `busy_timeout` instead of failing to upgrade a read lock.
//! - One process runs the pipeline per database ([`RunLock`]); the CLI may read and write
//!   alongside it (WAL readers never block the writer).

mod copy;
mod endpoints;
mod events;
mod lock;
mod migrate;
mod outbox;
mod retention;
mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, Transaction};
use serde::Serialize;

pub use lock::RunLock;

use super::StoreError;

/// Prepared statements kept per connection: more than the distinct statements pollhook runs.
const STATEMENT_CACHE: usize = 64;

/// An open SQLite database.
pub(super) struct Db {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(format!(
                    "the database stayed locked by another writer: {e}"
                ))
            }
            _ => StoreError::Backend(Box::new(e)),
        }
    }
}

impl Db {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub(super) fn open(path: &Path) -> Result<Db, StoreError> {
        let open_err = |e: rusqlite::Error| open_error(path, &e);
        // Created readable by its owner only; best effort: a path that cannot be created is
        // reported by SQLite's open below.
        if !path.is_dir() {
            let _ = lock::create_private(path);
        }
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(open_err)?;
        enable_wal(&conn).map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // The bundled SQLite has STAT4, which re-plans (re-prepares) a statement whenever a bound
        // value could change its plan; every statement here has one good plan, so keep it.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(open_err)?;
        // Every statement of the poll and delivery paths stays prepared (rusqlite's default is 16).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Fails fast, naming the file, on something that is not a database.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
            .map_err(open_err)?;
        migrate::migrate(&mut conn, path)?;
        Ok(Db {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done transaction behind (rusqlite
        // rolls back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The schema version (`PRAGMA user_version`).
    pub(super) fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Checks that a write transaction can be taken: the disk is not read-only and no other
    /// writer holds the database past `busy_timeout`.
    pub(super) fn check_writable(&self) -> Result<(), StoreError> {
        self.conn().execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        Ok(())
    }
}

/// The connection with `synchronous = NORMAL` (commits without an fsync) until [`Relaxed::leave`]
/// or drop (a panic included) puts `FULL` back. SQLite only changes this between transactions.
struct Relaxed<'a> {
    conn: &'a mut Connection,
    left: bool,
}

impl<'a> Relaxed<'a> {
    fn enter(conn: &'a mut Connection) -> Result<Self, StoreError> {
        conn.prepare_cached("PRAGMA synchronous = NORMAL")?
            .execute([])?;
        Ok(Self { conn, left: false })
    }

    fn leave(mut self) -> Result<(), StoreError> {
        self.left = true;
        full_sync(self.conn)
    }
}

impl Drop for Relaxed<'_> {
    fn drop(&mut self) {
        if !self.left {
            // Best effort on the way out of a panic; `leave` reports a failure.
            let _ = full_sync(self.conn);
        }
    }
}

fn full_sync(conn: &Connection) -> Result<(), StoreError> {
    conn.prepare_cached("PRAGMA synchronous = FULL")?
        .execute([])?;
    Ok(())
}

/// Says why a database could not be opened, in the user's terms rather than SQLite's.
fn open_error(path: &Path, e: &rusqlite::Error) -> StoreError {
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
    let (reason, hint) = if path.is_dir() {
        (
            "it is a directory".to_owned(),
            "[storage] path names the database file, e.g. /var/lib/pollhook/pollhook.db",
        )
    } else if let Some(parent) = parent.filter(|p| p.exists() && !p.is_dir()) {
        (
            format!("{} is not a directory", parent.display()),
            "point [storage] path (or POLLHOOK_STORAGE_PATH) into a directory",
        )
    } else if matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase)
    ) {
        (
            "the file is not a database (it is corrupt, or not a SQLite file)".to_owned(),
            "restore it from a backup, or move it aside to start with an empty database",
        )
    } else if matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::ReadOnly)) {
        (
            "the file or its directory is read-only".to_owned(),
            "pollhook needs to write its database and the -wal file beside it",
        )
    } else {
        (
            e.to_string(),
            "check [storage] path and that its directory exists and is writable",
        )
    };
    StoreError::Open {
        path: path.to_owned(),
        reason,
        hint,
    }
}

/// Switches the database to WAL. The setting is stored in the file, so only the very first opens
/// of a new file contend for it; SQLite answers that contention with an immediate BUSY rather than
/// waiting on `busy_timeout`, hence the retries.
fn enable_wal(conn: &Connection) -> rusqlite::Result<()> {
    let mut tries = 0;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 100 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// A write transaction that takes the write lock up front (`BEGIN IMMEDIATE`): with other
/// processes writing too (the CLI beside `pollhook run`), a deferred transaction could fail to
/// upgrade its read lock instead of waiting on `busy_timeout`.
fn write_tx(conn: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

/// Runs the cached statement `sql` with `params`, turning each row into a `T` with `map` (whose
/// own errors, a corrupt value say, end it as well as the database's).
fn rows<T, C: FromIterator<T>>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<C, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    stmt.query_and_then(params, map)?.collect()
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Db::open(&path).unwrap();
        Db::open(&path).unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let err = Db::open(&path).err().unwrap();
        assert!(err.to_string().contains("upgrade pollhook"), "{err}");
    }

    #[test]
    fn a_second_run_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let first = RunLock::acquire(&path).unwrap();
        let err = RunLock::acquire(&path).unwrap_err();
        assert!(err.to_string().contains("already using"), "{err}");
        drop(first);
        let _again = RunLock::acquire(&path).unwrap();
    }
}
