//! The SQLite backend: one file in WAL mode, one connection behind a mutex (one writer), every
//! statement of the hot paths prepared once.
//!
//! In: the facade's calls, on a blocking thread; a small read or a bookkeeping-only commit
//! may run on the async runtime's thread instead, never waiting ([`NoWait`]). Out: rows.
//!
//! Invariants:
//! - `synchronous = FULL`: a committed change survives a machine crash. Only a poll's
//!   bookkeeping when it found nothing to write commits without the fsync ([`Held::relaxed`]);
//!   the connection is set back before anything else is done with it ([`Db::conn`]).
//! - Every write transaction takes the write lock up front (`BEGIN IMMEDIATE`), so a CLI writing
//!   beside `pollhook run` waits on `busy_timeout` instead of failing to upgrade a read lock.
//! - The async runtime never waits on SQLite: work run there takes the connection only if it
//!   is free, answers busy at once rather than wait for another process's lock, and never
//!   checkpoints the WAL ([`Checkpoints`]).
//! - One process runs the pipeline per database ([`RunLock`]); the CLI may read and write
//!   alongside it (WAL readers never block the writer).
//! - An idle poll of a small resource starts from what this process's own last commit of it
//!   left, without a read ([`Kept`]); another process's write since is found by the commit's
//!   version check, which then writes nothing.

mod copy;
mod endpoints;
mod events;
mod kept;
mod lock;
mod migrate;
mod outbox;
mod retention;
mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, Transaction};
use serde::Serialize;

pub use lock::RunLock;

use self::kept::Kept;
use super::StoreError;

/// Prepared statements kept per connection: more than the distinct statements pollhook runs.
const STATEMENT_CACHE: usize = 64;

/// WAL frames after which a commit checkpoints the log into the database file: SQLite's
/// `wal_autocheckpoint` default, which [`Checkpoints`] takes over.
const CHECKPOINT_FRAMES: i32 = 1000;

/// How long SQLite waits for a lock another process holds before answering busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An open SQLite database.
pub(super) struct Db {
    conn: Mutex<Held>,
    path: PathBuf,
    checkpoints: Arc<Checkpoints>,
}

/// SQLite's automatic checkpoint, with a way to put it off: after a commit leaves at least
/// [`CHECKPOINT_FRAMES`] frames in the WAL, the committing thread copies them into the database
/// file (a passive checkpoint, with fsyncs), unless that thread is the async runtime's, which
/// must not wait on the disk. A commit made there ([`Db::try_commit_now`]) is only tried while
/// the log is short, so the next commit on a blocking thread checkpoints instead.
#[derive(Debug)]
struct Checkpoints {
    /// Frames in the WAL after our last commit; [`CHECKPOINT_FRAMES`] until the first one says.
    frames: AtomicI32,
    /// The commit under way runs on the async runtime: no checkpoint now.
    put_off: AtomicBool,
}

impl Checkpoints {
    /// Installs the hook on `conn`, replacing SQLite's own (the two share one slot).
    fn install(conn: &mut Connection) -> rusqlite::Result<Arc<Checkpoints>> {
        let checkpoints = Arc::new(Checkpoints {
            frames: AtomicI32::new(CHECKPOINT_FRAMES),
            put_off: AtomicBool::new(false),
        });
        let hook = checkpoints.clone();
        conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, frames| {
            hook.frames.store(frames, Ordering::Relaxed);
            if frames >= CHECKPOINT_FRAMES && !hook.put_off.load(Ordering::Relaxed) {
                // As SQLite's own hook: a checkpoint that cannot finish now (a reader holds old
                // frames) is tried again after the next commit; an error here would report
                // this commit, which has happened, as failed.
                let _ = wal.checkpoint();
            }
            Ok(())
        }))?;
        Ok(checkpoints)
    }

    /// Whether a commit now leaves the log short enough that putting off its checkpoint is fine.
    fn short(&self) -> bool {
        self.frames.load(Ordering::Relaxed) < CHECKPOINT_FRAMES
    }
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
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
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
        let checkpoints = Checkpoints::install(&mut conn).map_err(open_err)?;
        Ok(Db {
            conn: Mutex::new(Held {
                conn,
                relaxed: false,
                kept: Kept::default(),
            }),
            path: path.to_owned(),
            checkpoints,
        })
    }

    /// The database file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, waiting for it, with `synchronous = FULL`: for any read or write.
    fn conn(&self) -> Result<MutexGuard<'_, Held>, StoreError> {
        let mut held = self.lock();
        held.durable()?;
        Ok(held)
    }

    /// The connection as it was left: `synchronous` may be `NORMAL` ([`Held::relaxed`]).
    fn lock(&self) -> MutexGuard<'_, Held> {
        // A panic while holding the lock cannot leave a half-done transaction behind (rusqlite
        // rolls back on drop), so a poisoned lock is safe to reuse; a connection a panic left
        // relaxed is set back by the next `conn`.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection if no other thread holds it, set to answer busy at once ([`NoWait`]), for
    /// work on the async runtime's threads; `None` if it is in use. As it was left: for reads
    /// and relaxed commits only ([`Held::relaxed`]).
    fn conn_now(&self) -> Option<NoWait<'_>> {
        let guard = match self.conn.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(NoWait::enter(guard))
    }

    /// The schema version (`PRAGMA user_version`).
    pub(super) fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()?
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Checks that a write transaction can be taken: the disk is not read-only and no other
    /// writer holds the database past `busy_timeout`.
    pub(super) fn check_writable(&self) -> Result<(), StoreError> {
        self.conn()?.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        Ok(())
    }
}

/// The connection, and whether it is left with `synchronous = NORMAL`. A poll that found nothing
/// to write but its bookkeeping commits that way, and most polls change nothing: the connection
/// stays relaxed from one such commit to the next rather than being set back and forth around
/// each (two statements a poll), and [`Db::conn`] sets it back to `FULL` before any other use.
pub(super) struct Held {
    conn: Connection,
    relaxed: bool,
    /// What is kept of small resources from one poll to the next.
    kept: Kept,
}

impl Held {
    /// The connection with `synchronous = FULL`: a commit survives a machine crash.
    fn durable(&mut self) -> Result<&mut Connection, StoreError> {
        if self.relaxed {
            self.conn
                .prepare_cached("PRAGMA synchronous = FULL")?
                .execute([])?;
            self.relaxed = false;
        }
        Ok(&mut self.conn)
    }

    /// The connection with `synchronous = NORMAL`, for a commit that writes nothing but a poll's
    /// bookkeeping: on a machine crash it may be forgotten, with those after it, never one
    /// before. SQLite only changes this between transactions, where every caller takes it.
    fn relaxed(&mut self) -> Result<&mut Connection, StoreError> {
        if !self.relaxed {
            self.conn
                .prepare_cached("PRAGMA synchronous = NORMAL")?
                .execute([])?;
            self.relaxed = true;
        }
        Ok(&mut self.conn)
    }
}

impl std::ops::Deref for Held {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// The connection, held, answering busy at once instead of waiting [`BUSY_TIMEOUT`] for a lock
/// another process holds, until drop: for work on the async runtime's own threads, which must
/// never wait. SQLite's busy answer becomes [`StoreError::Unavailable`]; the caller then hands
/// the work to a blocking thread.
struct NoWait<'a> {
    conn: MutexGuard<'a, Held>,
}

impl<'a> NoWait<'a> {
    fn enter(conn: MutexGuard<'a, Held>) -> Self {
        // Fails only on a closed connection, whose next statement says so.
        let _ = conn.busy_timeout(Duration::ZERO);
        Self { conn }
    }

    fn held(&mut self) -> &mut Held {
        &mut self.conn
    }
}

impl Drop for NoWait<'_> {
    fn drop(&mut self) {
        let _ = self.conn.busy_timeout(BUSY_TIMEOUT);
    }
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

/// A transaction begun and ended by cached statements: rusqlite's own parses `BEGIN` and
/// `COMMIT` anew each time, which was a tenth of an idle poll's cost. Rolled back on drop unless
/// committed.
struct CachedTx<'a> {
    conn: &'a Connection,
}

impl<'a> CachedTx<'a> {
    /// A write transaction like [`write_tx`]'s, taking the write lock up front.
    fn write(conn: &'a mut Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Self { conn })
    }

    /// A read transaction: its statements see one state of the database, and share one WAL read
    /// lock (each statement outside a transaction takes and drops its own, system calls each).
    fn read(conn: &'a Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN")?.execute([])?;
        Ok(Self { conn })
    }

    fn commit(self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }
}

impl std::ops::Deref for CachedTx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for CachedTx<'_> {
    fn drop(&mut self) {
        // Committed, or already rolled back by SQLite after an error: nothing to do.
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
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

    /// A poll's bookkeeping-only commit leaves the connection relaxed for the next one; anything
    /// else that takes the connection gets it durable again.
    #[test]
    fn a_relaxed_commit_is_followed_by_durable_ones() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let synchronous = |conn: &Connection| -> i64 {
            conn.pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap()
        };
        let (normal, full) = (1, 2);
        assert_eq!(synchronous(&db.conn().unwrap()), full);
        let mut commit = crate::store::PollCommit {
            source: "s".into(),
            resource: "r".into(),
            upserts: Box::new(crate::store::NoUpserts),
            rehashed: Vec::new(),
            deletes: Vec::new(),
            events: Vec::new(),
            listed: 0,
            held: None,
            complete: true,
            duration: Duration::ZERO,
            at: Utc::now(),
            alert_after: 3,
            missing: Vec::new(),
            found: Vec::new(),
            since_cursor: None,
            pages: None,
            version: 0,
        };
        for version in 0..2 {
            commit.version = version;
            let summary = db.commit_poll(&mut commit).unwrap();
            assert_eq!(summary.events, 0);
            let mut held = db.lock();
            assert!(held.relaxed);
            assert_eq!(synchronous(&held), normal);
            // The next bookkeeping commit finds it relaxed already.
            held.relaxed().unwrap();
        }
        // So does a commit made on the async runtime's thread.
        commit.version = 2;
        assert!(db.try_commit_now(&commit).unwrap().is_ok());
        assert_eq!(synchronous(&db.lock()), normal);
        // Any other use of the connection (a read, a write, another commit) sets it back.
        assert_eq!(synchronous(&db.conn().unwrap()), full);
        assert!(!db.lock().relaxed);
        db.lock().relaxed().unwrap();
        db.check_writable().unwrap();
        assert_eq!(synchronous(&db.lock()), full);
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
