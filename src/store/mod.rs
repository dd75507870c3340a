//! Store: everything pollhook keeps, behind one async facade named by noun. Snapshot and poll
//! state ([`snapshot`]), events ([`events`]), endpoints ([`endpoints`]), deliveries and attempts
//! ([`outbox`]), and what is removed when ([`retention`]).
//!
//! In: what the poll, delivery and operator stages decide. Out: rows they can rely on, as
//! backend-neutral types, and a [`StoreError`] that says what went wrong in the caller's terms.
//!
//! Callers never see a connection or a transaction: each method is one unit of work, run by the
//! backend where it belongs (SQLite's on the blocking pool, so the async runtime never stalls;
//! PostgreSQL's awaited on a pooled connection). Two exceptions make an idle poll cheap: the read
//! of a small resource's prior state ([`Store::prior`]) and a commit of nothing but a poll's
//! bookkeeping ([`Store::commit_poll`]) run on the caller's thread when SQLite's connection is
//! free and neither a lock nor a checkpoint would be waited on; they take microseconds, less
//! than the trip to the blocking pool and back. The SQL lives in `sqlite/` and `postgres/`
//! alone, one file per noun in each; a method here is one call made on either (`on_backend!`),
//! or a `match` where the two differ.
//!
//! Invariants:
//! - [`Store::commit_poll`] writes a poll's snapshot changes, its events and one delivery per
//!   matching endpoint in ONE transaction, and only if no other poll of the resource committed
//!   since this one read its state ([`StoreError::VersionConflict`]): a crash leaves all of it
//!   or none of it.
//! - A committed change survives a machine crash; only a poll's bookkeeping when it found nothing
//!   to write may be forgotten by one, never a change.
//! - Per endpoint, an item's deliveries are offered in detection order ([`Store::claim`]), on
//!   PostgreSQL across every replica sharing the database.

/// Makes one call on whichever backend holds the rows: SQLite's on the blocking pool (what the
/// call uses is moved into the closure), PostgreSQL's awaited. `$db` names the backend in `$call`,
/// which both implement with the same name and arguments.
macro_rules! on_backend {
    ($store:expr, |$db:ident| $call:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite(db) => $crate::store::run(db, move |$db| $call).await,
            $crate::store::Backend::Postgres($db) => $call.await,
        }
    };
}

pub mod copy;
pub mod endpoints;
pub mod events;
pub mod outbox;
mod postgres;
pub mod replicas;
pub mod retention;
pub mod snapshot;
mod sqlite;

pub use copy::{Copied, copy};
pub use endpoints::{EndpointPatch, Origin, StoredEndpoint};
pub use events::EventFilter;
pub use outbox::{AttemptCount, AttemptRow, DeliveryFilter, DeliveryRow, Due, Recorded};
pub use replicas::{Maintenance, ResourceClaim};
pub use retention::StorageStats;
pub use snapshot::{
    CommitSummary, NoUpserts, PageRecord, PollCommit, PollFailure, Prior, ResourceState,
    ResourceStatus, SnapshotRow, Upsert, Upserts,
};
pub use sqlite::RunLock;

/// The PostgreSQL delivery claim statement, for the benchmark and tests that explain its plan.
#[doc(hidden)]
pub use postgres::CLAIM as POSTGRES_DELIVERY_CLAIM;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;

use crate::config::StorageConfig;

/// A boxed error from a backend or from the rows a caller hands in.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A storage failure, whatever the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
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
    /// PostgreSQL could not be reached or refused the login.
    #[error("cannot connect to PostgreSQL at {target}: {reason} (hint: {hint})")]
    Connect {
        /// `host:port/database`, never the user or password.
        target: String,
        /// Why, in words.
        reason: String,
        /// What to do.
        hint: &'static str,
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
    /// Something that must exist does not.
    #[error("{0}")]
    NotFound(String),
    /// Something that must be unique already exists (an endpoint name).
    #[error("{0}")]
    Duplicate(String),
    /// Another poll of the resource committed since this one read its state; nothing was written.
    #[error("{0}")]
    VersionConflict(String),
    /// A stored value could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database is there but cannot take the work now (locked, busy, connection lost).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The rows handed in to be written could not be read (a poll's spill file, say).
    #[error(transparent)]
    Input(BoxError),
    /// The backend failed.
    #[error("database error: {0}")]
    Backend(BoxError),
}

/// Milliseconds since the Unix epoch, the unit of every time column.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The database. Cheap to clone: clones share one backend.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

/// Where the rows live.
#[derive(Clone)]
enum Backend {
    /// One file, one writer process.
    Sqlite(Arc<sqlite::Db>),
    /// A server that any number of replicas share.
    Postgres(postgres::Db),
}

impl Store {
    /// Opens (creating if needed) and migrates the SQLite database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(Arc::new(sqlite::Db::open(path)?)),
        })
    }

    /// Opens the database `[storage]` names: PostgreSQL if it has a `url`, else the SQLite file
    /// at `path`; migrated either way.
    pub async fn connect(storage: &StorageConfig) -> Result<Store, StoreError> {
        match &storage.url {
            Some(url) => Store::connect_postgres(url.expose(), storage.pool_size).await,
            None => {
                let path = storage.path.clone();
                let open = tokio::task::spawn_blocking(move || Store::open(&path));
                match open.await {
                    Ok(result) => result,
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
        }
    }

    /// Connects to PostgreSQL at `url` with at most `pool_size` connections, and migrates it.
    pub async fn connect_postgres(url: &str, pool_size: usize) -> Result<Store, StoreError> {
        let db = postgres::Db::connect(url, pool_size).await?;
        db.migrate().await?;
        Ok(Store {
            backend: Backend::Postgres(db),
        })
    }

    /// Whether several processes may run the pipeline on this database at once (PostgreSQL),
    /// or only one ([`RunLock`], SQLite).
    pub fn shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// What the database is, for a log line: the SQLite file, or PostgreSQL's
    /// `host:port/database` (never a password).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(db) => db.path().display().to_string(),
            Backend::Postgres(pg) => format!("postgres://{}", pg.target()),
        }
    }

    /// Where a large poll keeps its changed bodies until its commit: beside the SQLite file, or
    /// in the temporary directory for PostgreSQL.
    pub fn path(&self) -> PathBuf {
        match &self.backend {
            Backend::Sqlite(db) => db.path().to_owned(),
            Backend::Postgres(_) => std::env::temp_dir().join("pollhook-spill"),
        }
    }

    /// Checks that a write transaction can be taken (for `/readyz`): the disk is not read-only
    /// and no other writer holds the database too long; on PostgreSQL, that the server answers
    /// and is not a read-only standby.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        on_backend!(self, |db| db.check_writable())
    }
}

/// Runs one unit of SQLite work on the blocking pool.
async fn run<R: Send + 'static>(
    db: &Arc<sqlite::Db>,
    work: impl FnOnce(&sqlite::Db) -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || work(&db)).await {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
