//! Snapshot rows and poll state: what a poll reads before it fetches ([`Store::prior`],
//! [`Store::snapshot`]), the one transaction that commits what it found ([`Store::commit_poll`]),
//! and what `status` shows of each resource.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Backend, Store, StoreError, run};
use crate::diff::Snapshot;
use crate::event::{Event, Payload};
use crate::normalize::{Hash, RawHash};

/// What the first poll of a resource found, and what the store knows of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceState {
    /// A complete listing has been recorded before: changes are now events.
    pub has_baseline: bool,
    /// The operator accepted the held-back deletes.
    pub accept_deletes: bool,
    /// The newest `updated_at`-style value seen (incremental polling).
    pub since_cursor: Option<String>,
    /// When the last complete (full) listing was committed, ms.
    pub full_sync_at: Option<i64>,
    /// Bumped by every commit, and on SQLite by every other write of what a poll starts from
    /// (accepting held deletes, forgetting page records): a poll commits only if nothing it
    /// started from changed meanwhile (another process polling the same resource, say).
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
#[derive(Debug, Clone, Copy)]
pub struct Upsert<'a> {
    /// The item's id.
    pub id: &'a str,
    /// Its canonical hash.
    pub hash: &'a Hash,
    /// The hash of its bytes as served, if it came as bytes.
    pub raw: Option<&'a RawHash>,
    /// Its JSON text.
    pub body: &'a str,
}

/// The snapshot rows of a commit, handed to the store one at a time as it writes them, so a
/// large change set (a baseline of a million items) is never all in memory: a body is read when
/// its row is written.
pub trait Upserts: Send {
    /// Whether there is no row at all.
    fn is_empty(&self) -> bool;
    /// Calls `row` with each row, best in id order (the table's). An error from `row` is returned
    /// as it is; an error reading a row is a [`StoreError::Input`].
    fn each(
        &mut self,
        row: &mut dyn FnMut(Upsert<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}

/// No rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUpserts;

impl Upserts for NoUpserts {
    fn is_empty(&self) -> bool {
        true
    }
    fn each(
        &mut self,
        _row: &mut dyn FnMut(Upsert<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A snapshot row held in memory (tests, benches, tools; a poll streams its rows from
/// the spill file instead).
#[derive(Debug, Clone)]
pub struct SnapshotRow {
    /// The item's id.
    pub id: String,
    /// Its canonical hash.
    pub hash: Hash,
    /// The hash of its bytes as served.
    pub raw: Option<RawHash>,
    /// Its JSON text.
    pub body: String,
}

impl Upserts for Vec<SnapshotRow> {
    fn is_empty(&self) -> bool {
        <[SnapshotRow]>::is_empty(self)
    }
    fn each(
        &mut self,
        row: &mut dyn FnMut(Upsert<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for r in self.iter() {
            row(Upsert {
                id: &r.id,
                hash: &r.hash,
                raw: r.raw.as_ref(),
                body: &r.body,
            })?;
        }
        Ok(())
    }
}

/// The operational events a poll's commit adds: `resource.recovered` when it ends a failing
/// streak that had alerted (`failures` polls failed before it), and `resource.deletes_held` when
/// its guard starts holding deletes (`was_held` is what the guard held before). One rule for
/// every backend.
pub(in crate::store) fn alerts(commit: &PollCommit, failures: i64, was_held: i64) -> Vec<Event> {
    let recovered = commit.alert_after > 0 && failures >= i64::from(commit.alert_after);
    let newly_held = commit.held.filter(|_| was_held == 0);
    if !recovered && newly_held.is_none() {
        // Most commits: nothing to say.
        return Vec::new();
    }
    let key = format!("{}.{}", commit.source, commit.resource);
    let mut alerts = Vec::new();
    if recovered {
        alerts.push(Event::operational(
            "resource",
            "recovered",
            &key,
            serde_json::json!({ "resource": key, "failed_polls": failures }),
            commit.at,
        ));
    }
    if let Some(held) = newly_held {
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
    alerts
}

/// A poll's result, ready to commit in one transaction.
pub struct PollCommit {
    /// Source name.
    pub source: String,
    /// Resource name.
    pub resource: String,
    /// Snapshot rows to write.
    pub upserts: Box<dyn Upserts>,
    /// Unchanged items whose bytes' hash changed: `(id, raw hash)`.
    pub rehashed: Vec<(String, RawHash)>,
    /// Snapshot rows to remove.
    pub deletes: Vec<String>,
    /// Events to add to the outbox (empty for a baseline).
    pub events: Vec<Event>,
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
    pub missing: Vec<String>,
    /// Items listed again after having been missing.
    pub found: Vec<String>,
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

/// What a poll reads before it fetches.
#[derive(Debug, Default)]
pub struct Prior {
    /// What the store knows of the resource.
    pub state: ResourceState,
    /// The last poll's page records, by URL (empty unless asked for).
    pub pages: Arc<HashMap<String, PageRecord>>,
    /// The snapshot, if it was asked for and is no larger than asked.
    pub snapshot: Option<Snapshot>,
    /// Not read but remembered: what this process's own last commit of the resource left (SQLite,
    /// small resources). Another process may have committed since; if so, the commit of a poll
    /// made from it finds the version moved ([`StoreError::VersionConflict`]) and writes
    /// nothing, the store forgets what it remembered, and the poll is worth repeating at once.
    pub remembered: bool,
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
    /// When its newest event was recorded (committed, a few milliseconds after its poll
    /// detected it); `None` before the first.
    pub last_change_at: Option<DateTime<Utc>>,
}

/// A poll that failed, to record.
#[derive(Debug, Clone)]
pub struct PollFailure {
    /// Source name.
    pub source: String,
    /// Resource name.
    pub resource: String,
    /// What went wrong, as the operator reads it.
    pub error: String,
    /// When the poll started.
    pub at: DateTime<Utc>,
    /// How long it took.
    pub duration: Duration,
    /// Failed polls in a row after which a `pollhook.resource.failing` event is emitted.
    pub alert_after: u32,
    /// Forget the page records (a replayed page turned out stale).
    pub forget_pages: bool,
}

/// Snapshot items up to which [`Store::prior`] may read on the async runtime's thread: ~0.1 ms
/// of SQLite work, less than the hand-off to the blocking pool and back that it saves.
pub const READ_NOW: i64 = 256;

impl Store {
    /// What a poll needs before it fetches, in one round trip: the resource's state, its page
    /// records if `pages`, and its snapshot if it has a baseline of at most `snapshot_up_to`
    /// items (a larger one is loaded with [`Store::snapshot`] while the first page is fetched).
    ///
    /// On SQLite, a resource of at most [`READ_NOW`] items is read on the calling task's thread
    /// when the connection is free and no lock would be waited on (most idle polls); otherwise,
    /// and for larger ones, on the blocking pool.
    pub async fn prior(
        &self,
        source: &str,
        resource: &str,
        pages: bool,
        snapshot_up_to: i64,
    ) -> Result<Prior, StoreError> {
        let db = match &self.backend {
            Backend::Sqlite(db) => db,
            Backend::Postgres(pg) => {
                return pg.prior(source, resource, pages, snapshot_up_to).await;
            }
        };
        if let Some(prior) = db.try_prior_now(source, resource, pages, snapshot_up_to, READ_NOW) {
            return prior;
        }
        let (source, resource) = (source.to_owned(), resource.to_owned());
        run(db, move |db| {
            db.prior(&source, &resource, pages, snapshot_up_to)
        })
        .await
    }

    /// What the store knows of a resource before polling it.
    pub async fn resource_state(
        &self,
        source: &str,
        resource: &str,
    ) -> Result<ResourceState, StoreError> {
        let (source, resource) = (source.to_owned(), resource.to_owned());
        on_backend!(self, |db| db.resource_state(&source, &resource))
    }

    /// The snapshot of a resource: `id → what is known of it`. `expected` (its `item_count`, or 0)
    /// sizes the map once: growing a million-entry map doubles it in memory.
    pub async fn snapshot(
        &self,
        source: &str,
        resource: &str,
        expected: i64,
    ) -> Result<Snapshot, StoreError> {
        let (source, resource) = (source.to_owned(), resource.to_owned());
        on_backend!(self, |db| db.snapshot_state(&source, &resource, expected))
    }

    /// What the snapshot of a resource holds of the items `ids`: those of them it holds. For a
    /// page whose items may all be as they were, without reading the whole snapshot.
    pub async fn snapshot_of(
        &self,
        source: &str,
        resource: &str,
        ids: Vec<String>,
    ) -> Result<Snapshot, StoreError> {
        let (source, resource) = (source.to_owned(), resource.to_owned());
        on_backend!(self, |db| db.snapshot_of(&source, &resource, &ids))
    }

    /// The snapshot of a resource as `(id, hash)` pairs, for inspection.
    pub async fn snapshot_hashes(
        &self,
        source: &str,
        resource: &str,
    ) -> Result<Vec<(String, Hash)>, StoreError> {
        let (source, resource) = (source.to_owned(), resource.to_owned());
        on_backend!(self, |db| db.snapshot_hashes(&source, &resource))
    }

    /// The stored bodies of some items, for `previous` and `changes`.
    pub async fn snapshot_bodies(
        &self,
        source: &str,
        resource: &str,
        ids: Vec<String>,
    ) -> Result<HashMap<String, Payload>, StoreError> {
        let (source, resource) = (source.to_owned(), resource.to_owned());
        match &self.backend {
            Backend::Sqlite(db) => {
                run(db, move |db| {
                    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                    db.snapshot_bodies(&source, &resource, &ids)
                })
                .await
            }
            Backend::Postgres(pg) => pg.snapshot_bodies(&source, &resource, &ids).await,
        }
    }

    /// Up to `limit` items of a resource's snapshot with ids after `after` (all from the first
    /// with `None`), in id order, with their bodies: a whole snapshot read in bounded batches.
    pub async fn snapshot_items(
        &self,
        source: &str,
        resource: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<(String, Payload)>, StoreError> {
        let (source, resource) = (source.to_owned(), resource.to_owned());
        on_backend!(self, |db| db.snapshot_items(
            &source,
            &resource,
            after.as_deref(),
            limit
        ))
    }

    /// Writes a poll's snapshot changes, events and deliveries, and the poll's outcome, in one
    /// transaction; hands the events back.
    ///
    /// A poll that found nothing to write but its own bookkeeping (last poll time, outcome,
    /// version, page validators) may commit without the fsync: a machine crash can forget the
    /// last few such commits, never a change. On SQLite such a commit is made on the calling
    /// task's thread when the connection is free and neither a lock nor a checkpoint would be
    /// waited on (most idle polls); any other on the blocking pool.
    pub async fn commit_poll(
        &self,
        mut commit: PollCommit,
    ) -> Result<(CommitSummary, Vec<Event>), StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                if let Some(summary) = db.try_commit_now(&commit) {
                    return Ok((summary?, std::mem::take(&mut commit.events)));
                }
                run(db, move |db| {
                    let summary = db.commit_poll(&mut commit)?;
                    Ok((summary, std::mem::take(&mut commit.events)))
                })
                .await
            }
            Backend::Postgres(pg) => {
                let summary = pg.commit_poll(&mut commit).await?;
                Ok((summary, std::mem::take(&mut commit.events)))
            }
        }
    }

    /// Records a failed poll; the snapshot is untouched. When the failures in a row reach
    /// `alert_after`, a `pollhook.resource.failing` event is emitted (once per streak). With
    /// `forget_pages`, the resource's page records go too, so its next poll fetches every page
    /// in full. Returns the failures in a row.
    pub async fn record_poll_failure(&self, failure: PollFailure) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                run(db, move |db| {
                    if failure.forget_pages {
                        db.clear_pages(&failure.source, &failure.resource)?;
                    }
                    db.record_poll_failure(&failure)
                })
                .await
            }
            Backend::Postgres(pg) => pg.record_poll_failure(&failure).await,
        }
    }

    /// Lets the next complete listing of a resource apply deletes it would otherwise hold back.
    /// Returns how many are held.
    pub async fn accept_deletes(&self, source: &str, resource: &str) -> Result<i64, StoreError> {
        let (source, resource) = (source.to_owned(), resource.to_owned());
        on_backend!(self, |db| db.accept_deletes(&source, &resource))
    }

    /// Every resource's last poll, for `pollhook status`.
    pub async fn status(&self) -> Result<Vec<ResourceStatus>, StoreError> {
        on_backend!(self, |db| db.status())
    }
}
