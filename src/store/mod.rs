//! Store: the only SQL in pollhook. Snapshot, poll state, events, endpoints, deliveries, attempts.
//!
//! In: what the poll, delivery and operator stages decide. Out: rows they can rely on.
//!
//! Invariants:
//! - [`Store::commit_poll`] writes a poll's snapshot changes, its events and one delivery per
//!   matching active endpoint in ONE transaction: a crash leaves all of it or none of it.
//! - SQLite in WAL mode with `synchronous = FULL`: a committed change survives a machine crash.
//!   Only a poll's bookkeeping when it found nothing to write commits without the fsync
//!   ([`Store::commit_poll`]); a crash may forget it, never a change.
//! - Migrations are an append-only list tracked by `PRAGMA user_version`, applied in one
//!   transaction; a database from a newer pollhook is refused rather than misread.
//! - One process runs the pipeline per database file, whatever name or link reaches it
//!   ([`RunLock`]); the CLI may read and write alongside it (WAL readers never block the writer;
//!   writers wait on `busy_timeout`).
//! - The database holds endpoint secrets in plain text, so it is created readable by its owner
//!   only (0600; SQLite gives `-wal` and `-shm` the same mode), and a looser one is tightened.

mod outbox;

pub use outbox::{AttemptRow, DeliveryFilter, DeliveryRow, Due, EndpointPatch, Recorded};

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::config::Secret;
use crate::diff::{Known, Snapshot};
use crate::endpoint::{ActionFilter, EndpointSpec};
use crate::event::{Event, Payload};
use crate::normalize::{Hash, RawHash};
use crate::sign::Scheme;

/// Schema versions, oldest first. Append only: never edit a released step.
const MIGRATIONS: &[&str] = &[
    // 1: the whole first schema.
    r#"
    CREATE TABLE snapshot (
        source      TEXT NOT NULL,
        resource    TEXT NOT NULL,
        item_id     TEXT NOT NULL,
        hash        BLOB NOT NULL,
        body        TEXT NOT NULL,
        changed_at  INTEGER NOT NULL,
        PRIMARY KEY (source, resource, item_id)
    ) WITHOUT ROWID;

    CREATE TABLE resources (
        source              TEXT NOT NULL,
        resource            TEXT NOT NULL,
        baseline_at         INTEGER,
        last_poll_at        INTEGER,
        last_duration_ms    INTEGER,
        last_outcome        TEXT,
        last_error          TEXT,
        item_count          INTEGER NOT NULL DEFAULT 0,
        consecutive_errors  INTEGER NOT NULL DEFAULT 0,
        held_deletes        INTEGER NOT NULL DEFAULT 0,
        held_at             INTEGER,
        accept_deletes      INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (source, resource)
    );

    CREATE TABLE events (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        type         TEXT NOT NULL,
        source       TEXT NOT NULL,
        resource     TEXT NOT NULL,
        action       TEXT NOT NULL,
        resource_id  TEXT NOT NULL,
        detected_at  INTEGER NOT NULL,
        payload      TEXT NOT NULL
    );
    CREATE INDEX events_by_resource ON events (source, resource, seq);

    CREATE TABLE endpoints (
        id                INTEGER PRIMARY KEY,
        name              TEXT NOT NULL UNIQUE,
        url               TEXT NOT NULL,
        secret            TEXT NOT NULL,
        old_secret        TEXT,
        old_secret_until  INTEGER,
        signing           TEXT NOT NULL,
        resources         TEXT NOT NULL,
        actions           TEXT NOT NULL,
        active            INTEGER NOT NULL,
        headers           TEXT NOT NULL DEFAULT '[]',
        timeout_ms        INTEGER,
        origin            TEXT NOT NULL,
        disabled_reason   TEXT,
        failing_since     INTEGER,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    );

    CREATE TABLE deliveries (
        id               INTEGER PRIMARY KEY,
        event_seq        INTEGER NOT NULL REFERENCES events (seq),
        endpoint_id      INTEGER NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
        item_key         TEXT NOT NULL,
        status           TEXT NOT NULL DEFAULT 'pending',
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        locked_until     INTEGER NOT NULL DEFAULT 0,
        last_status      INTEGER,
        last_error       TEXT,
        created_at       INTEGER NOT NULL,
        finished_at      INTEGER
    );
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
    CREATE INDEX deliveries_lane ON deliveries (endpoint_id, item_key, id) WHERE status = 'pending';
    CREATE INDEX deliveries_by_event ON deliveries (event_seq);

    CREATE TABLE attempts (
        id           INTEGER PRIMARY KEY,
        delivery_id  INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        at           INTEGER NOT NULL,
        status       INTEGER,
        latency_ms   INTEGER NOT NULL,
        error        TEXT,
        response     TEXT
    );
    CREATE INDEX attempts_by_delivery ON attempts (delivery_id);
    "#,
    // 2: deleted_after, incremental polling, conditional requests.
    r#"
    ALTER TABLE snapshot ADD COLUMN missing INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE resources ADD COLUMN since_cursor TEXT;
    ALTER TABLE resources ADD COLUMN full_sync_at INTEGER;
    ALTER TABLE resources ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE pages (
        source         TEXT NOT NULL,
        resource       TEXT NOT NULL,
        url            TEXT NOT NULL,
        etag           TEXT,
        last_modified  TEXT,
        next_url       TEXT,
        ids            TEXT NOT NULL,
        PRIMARY KEY (source, resource, url)
    ) WITHOUT ROWID;
    "#,
    // 3: claims walk one endpoint's pending deliveries in order, without a sort.
    r#"
    CREATE INDEX deliveries_pending ON deliveries (endpoint_id, id) WHERE status = 'pending';
    "#,
    // 4: the fast path for unchanged items: the hash of their bytes as last served.
    r#"
    ALTER TABLE snapshot ADD COLUMN raw_hash BLOB;
    "#,
];

/// Prepared statements kept per connection: more than the distinct statements pollhook runs.
const STATEMENT_CACHE: usize = 64;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open database {path}: {reason} (hint: {hint})")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
        /// What to do.
        hint: &'static str,
    },
    /// The database was written by a newer pollhook.
    #[error(
        "database {path} has schema version {found}, newer than this pollhook knows ({known}); upgrade pollhook"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// Ours.
        known: usize,
    },
    /// Another `pollhook run` holds the database.
    #[error(
        "another `pollhook run` is already using {path} (the same file, perhaps under another name through a link); stop it first, or point this one at another [storage] path"
    )]
    Locked {
        /// The database.
        path: PathBuf,
    },
    /// The database file could not be opened or created to lock it.
    #[error("cannot open database file {path} to lock it: {reason} (hint: check [storage] path)")]
    LockFile {
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// A query failed.
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    /// Something that must exist does not.
    #[error("{0}")]
    NotFound(String),
    /// Something that must be unique already exists.
    #[error("{0}")]
    Conflict(String),
    /// A stored value could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The file a large poll keeps its changed items in until its commit failed.
    #[error(
        "cannot use the temporary file beside the database: {0} (hint: check free space and permissions in the [storage] path's directory)"
    )]
    Spill(String),
}

/// Held while `pollhook run` owns a database; released when dropped or when the process dies.
///
/// The lock is a `flock(2)` on the database file itself, so a second run reaching the same file
/// through a symlink or a hard link finds it taken. On Linux `flock` locks are independent of
/// the POSIX `fcntl` locks SQLite takes on the same file, so neither disturbs the other. The
/// descriptor is never closed: closing *any* descriptor of a file drops every POSIX lock the
/// process holds on it, SQLite's own included (sqlite.org/howtocorrupt.html §2.2). It stays in
/// `HELD` for the life of the process, one per database, and dropping the lock unlocks it.
#[derive(Debug)]
pub struct RunLock {
    key: FileKey,
}

/// A file's identity whatever its name: device and inode.
type FileKey = (u64, u64);

/// An open descriptor of each database this process has locked, and whether a [`RunLock`]
/// holds it now (a second `flock` on the same descriptor would succeed, so the flag refuses it).
static HELD: Mutex<BTreeMap<FileKey, (File, bool)>> = Mutex::new(BTreeMap::new());

fn held() -> MutexGuard<'static, BTreeMap<FileKey, (File, bool)>> {
    // Nothing is left half-done under this lock: a poisoned map is fine to reuse.
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

impl RunLock {
    /// Takes the exclusive run lock on the database file at `db`, creating it (mode 0600, see
    /// [`Store::open`]) if it does not exist yet.
    pub fn acquire(db: &Path) -> Result<RunLock, StoreError> {
        let lock_error = |e: std::io::Error| StoreError::LockFile {
            path: db.to_owned(),
            reason: match db.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(parent) if parent.exists() && !parent.is_dir() => {
                    format!("{} is not a directory", parent.display())
                }
                _ => e.to_string(),
            },
        };
        let mut held = held();
        // Looked up by the name first, so that a database already held here is not opened (and
        // so later closed) again.
        let by_name = std::fs::metadata(db).ok().map(|m| (m.dev(), m.ino()));
        let key = match by_name {
            Some(key) if held.contains_key(&key) => key,
            _ => {
                create_private(db).map_err(lock_error)?;
                let file = File::options().read(true).open(db).map_err(lock_error)?;
                let meta = file.metadata().map_err(lock_error)?;
                let key = (meta.dev(), meta.ino());
                match held.entry(key) {
                    Entry::Vacant(slot) => {
                        slot.insert((file, false));
                    }
                    // The name was pointed at a file held here between the two looks: keep this
                    // descriptor open too rather than close it (see above).
                    Entry::Occupied(_) => std::mem::forget(file),
                }
                key
            }
        };
        let (file, taken) = held
            .get_mut(&key)
            .expect("the key was found or inserted above, under the same lock");
        if *taken {
            return Err(StoreError::Locked {
                path: db.to_owned(),
            });
        }
        match file.try_lock() {
            Ok(()) => {
                *taken = true;
                Ok(RunLock { key })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: db.to_owned(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(lock_error(e)),
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if let Some((file, taken)) = held().get_mut(&self.key) {
            // An unlock cannot fail on a descriptor that holds the lock; if it did, the lock
            // would end with the process anyway.
            let _ = file.unlock();
            *taken = false;
        }
    }
}

/// The database holds endpoint secrets: it, and the `-wal` and `-shm` files SQLite creates with
/// its permissions, are readable by their owner only. Creates an empty file with mode 0600 if
/// none exists; an existing one with group or other access is tightened, with a warning.
fn create_private(db: &Path) -> std::io::Result<()> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Best effort: a missing directory is reported by the open below.
        let _ = std::fs::create_dir_all(dir);
    }
    match File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(db)
    {
        // A new file: no other descriptor of it exists, so closing this one is harmless.
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for file in [db.to_owned(), sibling(db, "-wal"), sibling(db, "-shm")] {
        let Some(meta) = std::fs::metadata(&file)
            .ok()
            .filter(std::fs::Metadata::is_file)
        else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700)) {
                Ok(()) => tracing::warn!(
                    file = %file.display(), was = %format!("{mode:o}"), now = %format!("{:o}", mode & 0o700),
                    "The database holds endpoint secrets; access for group and others removed."
                ),
                Err(error) => tracing::warn!(
                    file = %file.display(), mode = %format!("{mode:o}"), %error,
                    "The database holds endpoint secrets but is readable by others, and its mode cannot be changed; chmod 600 it."
                ),
            }
        }
    }
    Ok(())
}

/// `db` with `suffix` appended to its file name (`pollhook.db-wal`).
fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The database. Cheap to clone; one connection shared behind a mutex (one writer).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

/// Milliseconds since the Unix epoch, the unit of every time column.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// What the first poll of a resource found, and what the store knows of it.
#[derive(Debug, Clone, Default)]
pub struct ResourceState {
    /// A complete listing has been recorded before: changes are now events.
    pub has_baseline: bool,
    /// The operator accepted the held-back deletes.
    pub accept_deletes: bool,
    /// The newest `updated_at`-style value seen (incremental polling).
    pub since_cursor: Option<String>,
    /// When the last complete (full) listing was committed, ms.
    pub full_sync_at: Option<i64>,
    /// Bumped by every commit: a poll commits only if no other poll committed since it read the
    /// snapshot (another process polling the same resource, say).
    pub version: i64,
    /// Items in the snapshot.
    pub item_count: i64,
}

/// What a page looked like when last fetched, for a conditional request (`If-None-Match`,
/// `If-Modified-Since`) and for replaying it from the snapshot when the API answers 304.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageRecord {
    /// The page's URL (without credentials).
    pub url: String,
    /// Its `ETag`.
    pub etag: Option<String>,
    /// Its `Last-Modified`.
    pub last_modified: Option<String>,
    /// The next page's URL, as computed from this page.
    pub next_url: Option<String>,
    /// The ids of its items, in order.
    pub ids: Vec<String>,
}

/// One snapshot row to write.
#[derive(Debug, Clone)]
pub struct Upsert<'a> {
    /// The item's id.
    pub id: &'a str,
    /// Its canonical hash.
    pub hash: &'a Hash,
    /// The hash of its bytes as served, if it came as bytes.
    pub raw: Option<&'a RawHash>,
    /// Its JSON text.
    pub body: std::borrow::Cow<'a, str>,
}

/// Snapshot rows, made one at a time as they are written.
pub type Upserts<'a> = Box<dyn Iterator<Item = Result<Upsert<'a>, StoreError>> + 'a>;

/// A poll's result, ready to commit in one transaction.
pub struct PollCommit<'a> {
    /// Source name.
    pub source: &'a str,
    /// Resource name.
    pub resource: &'a str,
    /// Snapshot rows to write, best in id order (the table's): a body is read when its row is
    /// written, so a large change set is never all in memory.
    pub upserts: Upserts<'a>,
    /// Unchanged items whose bytes' hash changed: `(id, raw hash)`.
    pub rehashed: &'a [(String, RawHash)],
    /// Snapshot rows to remove.
    pub deletes: Vec<&'a str>,
    /// Events to add to the outbox (empty for a baseline).
    pub events: &'a [Event],
    /// Items in the listing.
    pub listed: usize,
    /// Deletes held back, if any.
    pub held: Option<usize>,
    /// Whether the listing was complete (a baseline only counts if it was).
    pub complete: bool,
    /// How long the poll took.
    pub duration: Duration,
    /// When it started.
    pub at: DateTime<Utc>,
    /// Failed polls in a row after which a `pollhook.resource.failing` event is emitted.
    pub alert_after: u32,
    /// Items missing from this complete listing but kept (`deleted_after` not reached yet).
    pub missing: Vec<&'a str>,
    /// Items listed again after having been missing.
    pub found: Vec<&'a str>,
    /// The new incremental cursor, if it moved.
    pub since_cursor: Option<String>,
    /// The page records to keep for conditional requests (`None`: leave them as they are).
    pub pages: Option<Vec<PageRecord>>,
    /// The resource's [`ResourceState::version`] when the poll read the snapshot.
    pub version: i64,
}

/// What a commit wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitSummary {
    /// Events added (operational ones included).
    pub events: usize,
    /// Delivery rows added.
    pub deliveries: usize,
    /// `changed`, `unchanged`, `baseline` or `held`.
    pub outcome: &'static str,
}

/// One resource as `pollhook status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceStatus {
    /// Source name.
    pub source: String,
    /// Resource name.
    pub resource: String,
    /// Start of the last poll.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// Its duration.
    pub last_duration_ms: Option<i64>,
    /// `ok`, `baseline`, `unchanged`, `held` or `failed`.
    pub last_outcome: Option<String>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Items in the snapshot.
    pub item_count: i64,
    /// Polls failed in a row.
    pub consecutive_errors: i64,
    /// Deletes held back, awaiting `pollhook accept`.
    pub held_deletes: i64,
}

/// An endpoint as stored.
#[derive(Debug, Clone)]
pub struct StoredEndpoint {
    /// Row id.
    pub id: i64,
    /// Settings.
    pub spec: EndpointSpec,
    /// The previous secret, still signed with until the given time (rotation).
    pub old_secret: Option<(Secret, DateTime<Utc>)>,
    /// `config` or `api`.
    pub origin: String,
    /// Why it was disabled, if it was.
    pub disabled_reason: Option<String>,
    /// Failing without a success since then.
    pub failing_since: Option<DateTime<Utc>>,
}

/// Filters for listing events.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Source name.
    pub source: Option<String>,
    /// `source.resource` or a bare resource name.
    pub resource: Option<String>,
    /// Action.
    pub action: Option<String>,
    /// Item id.
    pub resource_id: Option<String>,
    /// Only events with `seq` below this (cursor paging, newest first).
    pub before_seq: Option<i64>,
    /// Only events detected at or after this time (ms).
    pub since_ms: Option<i64>,
    /// Only events detected before this time (ms).
    pub until_ms: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

impl Store {
    /// Opens (creating if needed, mode 0600) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |e: rusqlite::Error| open_error(path, &e);
        // Best effort: a path that cannot be created is reported by SQLite's open below.
        if !path.is_dir() {
            let _ = create_private(path);
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
        migrate(&mut conn, path)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// Checks that a write transaction can be taken (for `/readyz`): the disk is not read-only
    /// and no other writer holds the database past `busy_timeout`.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done transaction behind (rusqlite
        // rolls back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on a blocking thread, so SQLite work never stalls the async runtime.
    pub async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> R + Send + 'static,
    ) -> R {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    // ─────────────────────────── snapshot and polls ───────────────────────────

    /// The snapshot of a resource: `id → what is known of it`. `expected` (its `item_count`, or 0)
    /// sizes the map once: growing a million-entry map doubles it in memory.
    pub fn snapshot_state(
        &self,
        source: &str,
        resource: &str,
        expected: i64,
    ) -> Result<Snapshot, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT item_id, hash, missing, raw_hash FROM snapshot WHERE source = ?1 AND resource = ?2",
        )?;
        let mut rows = stmt.query(params![source, resource])?;
        let mut out = Snapshot::with_capacity_and_hasher(
            usize::try_from(expected).unwrap_or(0),
            Default::default(),
        );
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let hash: Option<Hash> = row
                .get_ref(1)?
                .as_blob()
                .ok()
                .and_then(|b| b.try_into().ok());
            let Some(hash) = hash else {
                return Err(StoreError::Corrupt(format!(
                    "snapshot hash of {source}.{resource}/{id}"
                )));
            };
            // A missing or odd raw hash only means the slow path.
            let raw: Option<RawHash> = row
                .get_ref(3)?
                .as_blob()
                .ok()
                .and_then(|b| b.try_into().ok());
            out.insert(id, Known::new(hash, raw, row.get(2)?));
        }
        Ok(out)
    }

    /// The page records of a resource, by URL.
    pub fn pages(
        &self,
        source: &str,
        resource: &str,
    ) -> Result<HashMap<String, PageRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT url, etag, last_modified, next_url, ids FROM pages WHERE source = ?1 AND resource = ?2",
        )?;
        let rows = stmt.query_map(params![source, resource], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        rows.map(|row| {
            let (url, etag, last_modified, next_url, ids) = row?;
            let ids = serde_json::from_str(&ids)
                .map_err(|e| StoreError::Corrupt(format!("page record {url}: {e}")))?;
            Ok((
                url.clone(),
                PageRecord {
                    url,
                    etag,
                    last_modified,
                    next_url,
                    ids,
                },
            ))
        })
        .collect()
    }

    /// Forgets a resource's page records, so its next poll fetches every page in full.
    pub fn clear_pages(&self, source: &str, resource: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM pages WHERE source = ?1 AND resource = ?2",
            params![source, resource],
        )?;
        Ok(())
    }

    /// The snapshot of a resource as `(id, hash)` pairs.
    pub fn snapshot_hashes(
        &self,
        source: &str,
        resource: &str,
    ) -> Result<Vec<(String, Hash)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT item_id, hash FROM snapshot WHERE source = ?1 AND resource = ?2",
        )?;
        let rows = stmt.query_map(params![source, resource], |row| {
            let hash: Vec<u8> = row.get(1)?;
            Ok((row.get::<_, String>(0)?, hash))
        })?;
        rows.map(|r| {
            let (id, hash) = r?;
            let hash: Hash = hash.try_into().map_err(|_| {
                StoreError::Corrupt(format!("snapshot hash of {source}.{resource}/{id}"))
            })?;
            Ok((id, hash))
        })
        .collect()
    }

    /// The stored bodies of some items, for `previous` and `changes`.
    pub fn snapshot_bodies(
        &self,
        source: &str,
        resource: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, Payload>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT body FROM snapshot WHERE source = ?1 AND resource = ?2 AND item_id = ?3",
        )?;
        let mut out = HashMap::with_capacity(ids.len());
        for id in ids {
            let body: Option<String> = stmt
                .query_row(params![source, resource, id], |r| r.get(0))
                .optional()?;
            if let Some(body) = body {
                let payload = Payload::from_json(&body)
                    .map_err(|e| StoreError::Corrupt(format!("snapshot body of {id}: {e}")))?;
                out.insert((*id).to_owned(), payload);
            }
        }
        Ok(out)
    }

    /// What the store knows of a resource before polling it.
    pub fn resource_state(
        &self,
        source: &str,
        resource: &str,
    ) -> Result<ResourceState, StoreError> {
        let conn = self.conn();
        let row = conn
            .prepare_cached(
                "SELECT baseline_at IS NOT NULL, accept_deletes, since_cursor, full_sync_at, version,
                        item_count
                 FROM resources WHERE source = ?1 AND resource = ?2",
            )?
            .query_row(
                params![source, resource],
                |r| {
                    Ok(ResourceState {
                        has_baseline: r.get(0)?,
                        accept_deletes: r.get(1)?,
                        since_cursor: r.get(2)?,
                        full_sync_at: r.get(3)?,
                        version: r.get(4)?,
                        item_count: r.get(5)?,
                    })
                },
            )
            .optional()?;
        Ok(row.unwrap_or_default())
    }

    /// Writes a poll's snapshot changes, events and deliveries, and the poll's outcome, in one
    /// transaction.
    ///
    /// A poll that found nothing to write but its own bookkeeping (last poll time, outcome,
    /// version, page validators) commits without the fsync (`synchronous = NORMAL`): on a machine
    /// crash SQLite may forget the last few such commits, all or none of each, but never one
    /// committed before them, so the database only ever goes back to an earlier consistent state
    /// and a snapshot change or event is never lost. Most polls change nothing; at 20 polls a
    /// second the fsyncs were most of the cost of an idle pollhook.
    pub fn commit_poll(&self, mut commit: PollCommit<'_>) -> Result<CommitSummary, StoreError> {
        let mut upserts =
            std::mem::replace(&mut commit.upserts, Box::new(std::iter::empty())).peekable();
        let commit = &commit;
        let mut conn = self.conn();
        if upserts.peek().is_none() && bookkeeping_only(commit) {
            let relaxed = Relaxed::enter(&mut conn)?;
            let written = self.write_poll(relaxed.conn, commit, &mut upserts, false);
            relaxed.leave()?;
            if let Some(summary) = written? {
                return Ok(summary);
            }
            // It would emit an operational event after all (a recovery): commit it durably.
        }
        // A durable commit never declines.
        Ok(self
            .write_poll(&mut conn, commit, &mut upserts, true)?
            .unwrap_or_default())
    }

    /// [`Store::commit_poll`]'s transaction. Without `durable`, declines (writes nothing, returns
    /// `None`) if it would add an event.
    fn write_poll<'a>(
        &self,
        conn: &mut Connection,
        commit: &PollCommit<'a>,
        upserts: &mut dyn Iterator<Item = Result<Upsert<'a>, StoreError>>,
        durable: bool,
    ) -> Result<Option<CommitSummary>, StoreError> {
        let tx = write_tx(conn)?;
        let now = commit.at.timestamp_millis();
        let version: i64 = tx
            .prepare_cached("SELECT version FROM resources WHERE source = ?1 AND resource = ?2")?
            .query_row(params![commit.source, commit.resource], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        if version != commit.version {
            // Dropping `tx` rolls back: nothing of this poll is written.
            return Err(StoreError::Conflict(format!(
                "another poll of {}.{} committed while this one ran; this one wrote nothing",
                commit.source, commit.resource
            )));
        }
        let mut upserted = 0_usize;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO snapshot (source, resource, item_id, hash, body, changed_at, raw_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (source, resource, item_id)
                 DO UPDATE SET hash = excluded.hash, body = excluded.body,
                               changed_at = excluded.changed_at, missing = 0,
                               raw_hash = excluded.raw_hash",
            )?;
            for row in upserts {
                let row = row?;
                upserted += 1;
                upsert.execute(params![
                    commit.source,
                    commit.resource,
                    row.id,
                    &row.hash[..],
                    row.body.as_ref(),
                    now,
                    row.raw.map(|r| &r[..]),
                ])?;
            }
            let mut rehash = tx.prepare_cached(
                "UPDATE snapshot SET raw_hash = ?4 WHERE source = ?1 AND resource = ?2 AND item_id = ?3",
            )?;
            for (id, raw) in commit.rehashed {
                rehash.execute(params![commit.source, commit.resource, id, &raw[..]])?;
            }
            let mut delete = tx.prepare_cached(
                "DELETE FROM snapshot WHERE source = ?1 AND resource = ?2 AND item_id = ?3",
            )?;
            for id in &commit.deletes {
                delete.execute(params![commit.source, commit.resource, id])?;
            }
            let mut missing = tx.prepare_cached(
                "UPDATE snapshot SET missing = missing + 1
                 WHERE source = ?1 AND resource = ?2 AND item_id = ?3",
            )?;
            for id in &commit.missing {
                missing.execute(params![commit.source, commit.resource, id])?;
            }
            let mut found = tx.prepare_cached(
                "UPDATE snapshot SET missing = 0 WHERE source = ?1 AND resource = ?2 AND item_id = ?3",
            )?;
            for id in &commit.found {
                found.execute(params![commit.source, commit.resource, id])?;
            }
            if let Some(pages) = &commit.pages {
                tx.prepare_cached("DELETE FROM pages WHERE source = ?1 AND resource = ?2")?
                    .execute(params![commit.source, commit.resource])?;
                let mut page = tx.prepare_cached(
                    "INSERT OR REPLACE INTO pages (source, resource, url, etag, last_modified, next_url, ids)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for p in pages {
                    page.execute(params![
                        commit.source,
                        commit.resource,
                        p.url,
                        p.etag,
                        p.last_modified,
                        p.next_url,
                        json(&p.ids)
                    ])?;
                }
            }
        }
        let mut summary = insert_events(&tx, commit.events)?;
        let outcome = match (commit.held, commit.events.is_empty()) {
            (Some(_), _) => "held",
            (None, true) if commit.complete && !resource_has_baseline(&tx, commit)? => "baseline",
            (None, true) => "unchanged",
            (None, false) => "changed",
        };
        tx.prepare_cached(
            "INSERT INTO resources (source, resource) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?
        .execute(params![commit.source, commit.resource])?;
        let (failures, was_held): (i64, i64) = tx
            .prepare_cached(
                "SELECT consecutive_errors, held_deletes FROM resources
                 WHERE source = ?1 AND resource = ?2",
            )?
            .query_row(params![commit.source, commit.resource], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let key = format!("{}.{}", commit.source, commit.resource);
        let mut alerts = Vec::new();
        if commit.alert_after > 0 && failures >= i64::from(commit.alert_after) {
            alerts.push(Event::operational(
                "resource",
                "recovered",
                &key,
                serde_json::json!({ "resource": key, "failed_polls": failures }),
                commit.at,
            ));
        }
        if let Some(held) = commit.held
            && was_held == 0
        {
            alerts.push(Event::operational(
                "resource",
                "deletes_held",
                &key,
                serde_json::json!({
                    "resource": key, "deletes": held, "listed": commit.listed,
                    "hint": format!("run `pollhook accept {key}` if the deletions are real"),
                }),
                commit.at,
            ));
        }
        if !durable && !alerts.is_empty() {
            // Dropping `tx` rolls back.
            return Ok(None);
        }
        let ops = insert_events(&tx, &alerts)?;
        summary.events += ops.events;
        summary.deliveries += ops.deliveries;
        summary.outcome = outcome;
        tx.prepare_cached(
            "UPDATE resources SET
                 baseline_at = CASE WHEN ?3 AND baseline_at IS NULL THEN ?4 ELSE baseline_at END,
                 full_sync_at = CASE WHEN ?3 THEN ?4 ELSE full_sync_at END,
                 version = version + 1,
                 since_cursor = coalesce(?8, since_cursor),
                 last_poll_at = ?4, last_duration_ms = ?5, last_outcome = ?6, last_error = NULL,
                 item_count = CASE WHEN ?9
                     THEN (SELECT count(*) FROM snapshot WHERE source = ?1 AND resource = ?2)
                     ELSE item_count END,
                 consecutive_errors = 0,
                 held_deletes = ?7,
                 held_at = CASE WHEN ?7 > 0 THEN coalesce(held_at, ?4) END,
                 accept_deletes = CASE WHEN ?7 > 0 THEN accept_deletes ELSE 0 END
             WHERE source = ?1 AND resource = ?2",
        )?
        .execute(params![
            commit.source,
            commit.resource,
            commit.complete,
            now,
            commit.duration.as_millis() as i64,
            outcome,
            commit.held.unwrap_or(0) as i64,
            commit.since_cursor,
            // Only upserts and deletes change how many rows the snapshot has.
            upserted > 0 || !commit.deletes.is_empty(),
        ])?;
        tx.commit()?;
        Ok(Some(summary))
    }

    /// Records a failed poll; the snapshot is untouched. When the failures in a row reach
    /// `alert_after`, a `pollhook.resource.failing` event is emitted (once per streak). Returns the
    /// failures in a row.
    pub fn record_poll_failure(
        &self,
        source: &str,
        resource: &str,
        error: &str,
        at: DateTime<Utc>,
        duration: Duration,
        alert_after: u32,
    ) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        tx.prepare_cached(
            "INSERT INTO resources (source, resource, last_poll_at, last_duration_ms, last_outcome,
                                    last_error, consecutive_errors)
             VALUES (?1, ?2, ?3, ?4, 'failed', ?5, 1)
             ON CONFLICT (source, resource) DO UPDATE SET
                 last_poll_at = ?3, last_duration_ms = ?4, last_outcome = 'failed', last_error = ?5,
                 consecutive_errors = consecutive_errors + 1",
        )?
        .execute(params![
            source,
            resource,
            at.timestamp_millis(),
            duration.as_millis() as i64,
            error
        ])?;
        let failures: i64 = tx
            .prepare_cached(
                "SELECT consecutive_errors FROM resources WHERE source = ?1 AND resource = ?2",
            )?
            .query_row(params![source, resource], |r| r.get(0))?;
        if alert_after > 0 && failures == i64::from(alert_after) {
            let key = format!("{source}.{resource}");
            let alert = Event::operational(
                "resource",
                "failing",
                &key,
                serde_json::json!({ "resource": key, "failed_polls": failures, "error": error }),
                at,
            );
            insert_events(&tx, &[alert])?;
        }
        tx.commit()?;
        Ok(failures)
    }

    /// Lets the next complete listing of a resource apply deletes it would otherwise hold back.
    pub fn accept_deletes(&self, source: &str, resource: &str) -> Result<i64, StoreError> {
        let conn = self.conn();
        let held: Option<i64> = conn
            .query_row(
                "SELECT held_deletes FROM resources WHERE source = ?1 AND resource = ?2",
                params![source, resource],
                |r| r.get(0),
            )
            .optional()?;
        match held {
            Some(n) if n > 0 => {
                conn.execute(
                    "UPDATE resources SET accept_deletes = 1 WHERE source = ?1 AND resource = ?2",
                    params![source, resource],
                )?;
                Ok(n)
            }
            _ => Err(StoreError::NotFound(format!(
                "{source}.{resource} has no held-back deletes"
            ))),
        }
    }

    /// Every resource's last poll, for `pollhook status`.
    pub fn status(&self) -> Result<Vec<ResourceStatus>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT source, resource, last_poll_at, last_duration_ms, last_outcome, last_error,
                    item_count, consecutive_errors, held_deletes
             FROM resources ORDER BY source, resource",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ResourceStatus {
                source: r.get(0)?,
                resource: r.get(1)?,
                last_poll_at: r.get::<_, Option<i64>>(2)?.map(to_time),
                last_duration_ms: r.get(3)?,
                last_outcome: r.get(4)?,
                last_error: r.get(5)?,
                item_count: r.get(6)?,
                consecutive_errors: r.get(7)?,
                held_deletes: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ─────────────────────────── events ───────────────────────────

    /// Events, newest first, with their sequence numbers.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<(i64, Event)>, StoreError> {
        let conn = self.conn();
        let (source, resource) = match filter.resource.as_deref().map(|r| r.split_once('.')) {
            Some(Some((s, r))) => (Some(s.to_owned()), Some(r.to_owned())),
            Some(None) => (filter.source.clone(), filter.resource.clone()),
            None => (filter.source.clone(), None),
        };
        let mut stmt = conn.prepare_cached(
            "SELECT seq, payload FROM events
             WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR resource = ?2)
               AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR resource_id = ?4)
               AND (?5 IS NULL OR seq < ?5)
               AND (?7 IS NULL OR detected_at >= ?7) AND (?8 IS NULL OR detected_at < ?8)
             ORDER BY seq DESC LIMIT ?6",
        )?;
        let rows = stmt.query_map(
            params![
                source,
                resource,
                filter.action,
                filter.resource_id,
                filter.before_seq,
                filter.limit as i64,
                filter.since_ms,
                filter.until_ms
            ],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )?;
        rows.map(|row| {
            let (seq, payload) = row?;
            let event = serde_json::from_str(&payload)
                .map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?;
            Ok((seq, event))
        })
        .collect()
    }

    // ─────────────────────────── endpoints ───────────────────────────

    /// Makes the database's config-origin endpoints match `specs`: adds new ones, updates changed
    /// ones, and removes config endpoints no longer in the file (with their deliveries).
    pub fn reconcile_endpoints(&self, specs: &[EndpointSpec]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let now = now_ms();
        for spec in specs {
            tx.execute(
                "INSERT INTO endpoints (name, url, secret, signing, resources, actions, active,
                                        headers, timeout_ms, origin, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'config', ?10, ?10)
                 ON CONFLICT (name) DO UPDATE SET
                     url = excluded.url, secret = excluded.secret, signing = excluded.signing,
                     resources = excluded.resources, actions = excluded.actions,
                     active = excluded.active, headers = excluded.headers,
                     timeout_ms = excluded.timeout_ms, origin = 'config',
                     updated_at = excluded.updated_at
                 WHERE url IS NOT excluded.url OR secret IS NOT excluded.secret
                    OR signing IS NOT excluded.signing OR resources IS NOT excluded.resources
                    OR actions IS NOT excluded.actions OR active IS NOT excluded.active
                    OR headers IS NOT excluded.headers OR timeout_ms IS NOT excluded.timeout_ms",
                params![
                    spec.name,
                    spec.url,
                    spec.secret.expose(),
                    spec.signing.as_str(),
                    json(&spec.resources),
                    json(&spec.actions),
                    spec.active,
                    json(&spec.headers),
                    spec.timeout.map(|t| t.as_millis() as i64),
                    now
                ],
            )?;
        }
        // A config endpoint removed from the file is removed here too, with its queue: kept
        // inactive, it would collect deliveries nobody will ever send.
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        tx.execute(
            "DELETE FROM endpoints
             WHERE origin = 'config' AND name NOT IN (SELECT value FROM json_each(?1))",
            params![json(&names)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every endpoint, by name.
    pub fn endpoints(&self) -> Result<Vec<StoredEndpoint>, StoreError> {
        let conn = self.conn();
        load_endpoints(&conn)
    }
}

/// Whether a commit writes nothing but the poll's bookkeeping: no snapshot row, no event (so no
/// delivery), no held deletes.
/// (Its upserts are checked by the caller: they are an iterator.) Refreshed raw hashes count as
/// bookkeeping: forgetting one only means the slow path for that item next time.
fn bookkeeping_only(commit: &PollCommit<'_>) -> bool {
    commit.deletes.is_empty()
        && commit.missing.is_empty()
        && commit.found.is_empty()
        && commit.events.is_empty()
        && commit.held.is_none()
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

fn resource_has_baseline(
    tx: &Transaction<'_>,
    commit: &PollCommit<'_>,
) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(
            "SELECT baseline_at IS NOT NULL FROM resources WHERE source = ?1 AND resource = ?2",
        )?
        .query_row(params![commit.source, commit.resource], |r| r.get(0))
        .optional()?
        .unwrap_or(false))
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

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Inserts events and a delivery per matching active endpoint, inside the caller's transaction.
fn insert_events(tx: &Transaction<'_>, events: &[Event]) -> Result<CommitSummary, StoreError> {
    if events.is_empty() {
        return Ok(CommitSummary::default());
    }
    // Paused and disabled endpoints get their deliveries too; they wait until it is resumed.
    let endpoints: Vec<StoredEndpoint> = load_endpoints(tx)?;
    let now = now_ms();
    let mut summary = CommitSummary::default();
    let mut insert_event = tx.prepare_cached(
        "INSERT INTO events (id, type, source, resource, action, resource_id, detected_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut insert_delivery = tx.prepare_cached(
        "INSERT INTO deliveries (event_seq, endpoint_id, item_key, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )?;
    for event in events {
        insert_event.execute(params![
            event.id,
            event.kind,
            event.source,
            event.resource,
            event.action,
            event.resource_id,
            now,
            event.to_json()
        ])?;
        let seq = tx.last_insert_rowid();
        summary.events += 1;
        let item_key = format!("{}/{}/{}", event.source, event.resource, event.resource_id);
        for endpoint in &endpoints {
            if endpoint
                .spec
                .wants(&event.source, &event.resource, &event.action)
            {
                insert_delivery.execute(params![seq, endpoint.id, item_key, now])?;
                summary.deliveries += 1;
            }
        }
    }
    Ok(summary)
}

fn load_endpoints(conn: &Connection) -> Result<Vec<StoredEndpoint>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, url, secret, signing, resources, actions, active, headers, timeout_ms,
                old_secret, old_secret_until, origin, disabled_reason, failing_since
         FROM endpoints ORDER BY name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, bool>(7)?,
            r.get::<_, String>(8)?,
            r.get::<_, Option<i64>>(9)?,
            (
                r.get::<_, Option<String>>(10)?,
                r.get::<_, Option<i64>>(11)?,
                r.get::<_, String>(12)?,
                r.get::<_, Option<String>>(13)?,
                r.get::<_, Option<i64>>(14)?,
            ),
        ))
    })?;
    rows.map(|row| {
        let (id, name, url, secret, signing, resources, actions, active, headers, timeout, rest) =
            row?;
        let (old_secret, old_until, origin, disabled_reason, failing_since) = rest;
        let corrupt = |what: &str| StoreError::Corrupt(format!("endpoint {name}: {what}"));
        let signing: Scheme = signing.parse().map_err(|_| corrupt("signing"))?;
        Ok(StoredEndpoint {
            id,
            spec: EndpointSpec {
                url,
                secret: Secret::new(secret),
                signing,
                resources: serde_json::from_str(&resources).map_err(|_| corrupt("resources"))?,
                actions: serde_json::from_str::<ActionFilter>(&actions)
                    .map_err(|_| corrupt("actions"))?,
                active,
                headers: serde_json::from_str(&headers).map_err(|_| corrupt("headers"))?,
                timeout: timeout.map(|ms| Duration::from_millis(ms.max(0) as u64)),
                name: name.clone(),
            },
            old_secret: match (old_secret, old_until) {
                (Some(s), Some(until)) => Some((Secret::new(s), to_time(until))),
                _ => None,
            },
            origin,
            disabled_reason,
            failing_since: failing_since.map(to_time),
        })
    })
    .collect()
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let too_new = |found: i64| StoreError::TooNew {
        path: path.to_owned(),
        found,
        known: MIGRATIONS.len(),
    };
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() as i64 {
        return Err(too_new(version));
    }
    if version == MIGRATIONS.len() as i64 {
        return Ok(());
    }
    let tx = write_tx(conn)?;
    // Read again under the write lock: another process may have migrated in between.
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() as i64 {
        return Err(too_new(version));
    }
    for step in &MIGRATIONS[version as usize..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Store::open(&path).unwrap();
        Store::open(&path).unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let err = Store::open(&path).err().unwrap();
        assert!(err.to_string().contains("upgrade pollhook"), "{err}");
    }

    #[test]
    fn a_second_run_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let _first = RunLock::acquire(&path).unwrap();
        let err = RunLock::acquire(&path).unwrap_err();
        assert!(err.to_string().contains("already using"), "{err}");
        drop(_first);
        let _again = RunLock::acquire(&path).unwrap();
    }
}
