//! One poll of one resource: fetch → normalize → diff → events → one committed transaction.
//!
//! In: the resource's settings, its source and the store. Out: a [`PollReport`] saying what changed
//! and what was written, or a [`PollError`].
//!
//! Invariants (DESIGN.md §4): a failed, timed-out or partial fetch writes nothing but the failure
//! itself and emits nothing; only a full listing can delete (an incremental one cannot see what
//! vanished); the first full listing is a silent baseline unless `initial = "emit"`; the snapshot,
//! the events and their deliveries are committed together. Pages are normalized and diffed as they
//! arrive, so only `(id, hash)` pairs are held in memory; the bodies of changed items wait for the
//! commit in [`Bodies`], which moves to a temporary file once they outgrow [`SPILL_AFTER`].
//! An item whose bytes are what they were last time is known unchanged without being parsed
//! ([`Normalizer::peek`], [`Differ::unchanged`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::{FieldPath, Incremental, Initial, ResourceConfig, SinceFormat};
use crate::diff::{Change, DeleteGuard, Differ, Held, Snapshot};
use crate::event::{Action, Event, Payload};
use crate::metrics;
use crate::normalize::{Normalizer, RawHash, Record, lookup};
use crate::source::{FetchPlan, Page, PageItems, Source, SourceError};
use crate::store::{PageRecord, PollCommit, ResourceState, Store, StoreError, Upsert};

/// Changed bodies beyond this many bytes wait for their commit in a temporary file.
pub const SPILL_AFTER: usize = 8 << 20;

/// Pages fetched ahead of the one being diffed.
const PAGES_AHEAD: usize = 2;

/// Snapshots up to this size are diffed on the poll's own task; larger ones on a blocking thread.
const INLINE_ITEMS: i64 = 10_000;

/// Whether a poll writes what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Commit the snapshot, events and deliveries.
    Commit,
    /// Report what would change; write nothing.
    DryRun,
}

/// What one poll found.
#[derive(Debug, Clone)]
pub struct PollReport {
    /// Distinct items listed.
    pub listed: usize,
    /// Pages fetched.
    pub pages: u32,
    /// A full listing (deletes can be found), not an incremental one.
    pub full: bool,
    /// The events (written unless dry run; empty for a baseline).
    pub events: Vec<Event>,
    /// This poll recorded the baseline: items were stored, nothing emitted.
    pub baseline: bool,
    /// Deletes held back by the guard.
    pub held: Option<Held>,
    /// Deliveries created.
    pub deliveries: usize,
    /// Wall time.
    pub elapsed: std::time::Duration,
}

/// Why a poll did not complete.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The listing could not be fetched completely; nothing was written.
    #[error("fetch failed; snapshot kept: {0}")]
    Fetch(#[from] SourceError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Polls `resource` of `source_name` once.
pub async fn poll(
    store: &Store,
    source_name: &str,
    source: &dyn Source,
    resource: &ResourceConfig,
    mode: Mode,
) -> Result<PollReport, PollError> {
    let started_at = Utc::now();
    let started = Instant::now();
    let conditional = resource.conditional;
    let (src, res) = (source_name.to_owned(), resource.name.clone());
    let (state, known_pages, snapshot) = store
        .blocking(move |s| {
            let state = s.resource_state(&src, &res)?;
            let pages = Arc::new(if conditional {
                s.pages(&src, &res)?
            } else {
                HashMap::new()
            });
            // A small snapshot comes along now; a large one (or an unknown one: a first poll)
            // is loaded on the worker thread while the first page is fetched.
            let small = state.has_baseline && state.item_count <= INLINE_ITEMS;
            let snapshot = if small {
                Some(s.snapshot_state(&src, &res, state.item_count)?)
            } else {
                None
            };
            Ok::<_, StoreError>((state, pages, snapshot))
        })
        .await?;
    let load_done = started.elapsed();

    let since = resource
        .incremental
        .as_ref()
        .and_then(|inc| incremental_since(inc, &state, started_at));
    let full = since.is_none();
    let plan = FetchPlan {
        query: match (&resource.incremental, &since) {
            (Some(inc), Some(since)) => vec![(inc.since_param.clone(), since.clone())],
            _ => Vec::new(),
        },
        // Incremental URLs change every poll; only full listings are worth validating.
        pages: (conditional && full).then_some(&*known_pages),
    };

    // Fetch and diff run side by side: pages flow through a short queue, and each is normalized
    // and diffed while the next is fetched.
    let (page_tx, page_rx) = tokio::sync::mpsc::channel::<Page>(PAGES_AHEAD);
    let fetch = async move {
        let fetched = source.fetch(resource, &plan, &page_tx).await;
        drop(page_tx);
        fetched
    };
    let mut intake = Intake::new(resource, store);
    let (fetched, taken) = match snapshot {
        // A small resource: on this task, a few microseconds a page.
        Some(snapshot) => {
            intake.start(snapshot, known_pages.clone());
            tokio::join!(fetch, intake.take_all(page_rx))
        }
        // A large one: on a blocking thread, which loads the snapshot first.
        None => {
            let (store, src, res) = (store.clone(), source_name.to_owned(), resource.name.clone());
            let (pages, expected) = (known_pages.clone(), state.item_count);
            let worker = tokio::task::spawn_blocking(move || {
                intake.start(store.snapshot_state(&src, &res, expected)?, pages);
                intake.take_all_blocking(page_rx)
            });
            let fetched = fetch.await;
            let taken = match worker.await {
                Ok(taken) => taken,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            (fetched, taken)
        }
    };
    // An error taking a page (an item without its id, a replayed page gone stale) comes first:
    // the fetch only stopped because of it.
    let (fetched, intake) = match (fetched, taken) {
        (Ok(fetched), Ok(intake)) => (fetched, intake),
        (_, Err(PollError::Fetch(error))) | (Err(error), Ok(_)) => {
            if mode == Mode::Commit {
                record_failure(store, source_name, resource, &error, started_at, started).await?;
            }
            return Err(error.into());
        }
        (_, Err(error)) => return Err(error),
    };
    let Intake {
        differ,
        newest,
        bodies,
        records,
        ..
    } = intake;

    let fetch_done = started.elapsed();
    let diff = differ.finish(
        full && fetched.complete,
        DeleteGuard {
            max_ratio: resource.max_delete_ratio,
            accepted: state.accept_deletes,
            after: resource.deleted_after,
        },
    );
    let baseline = !state.has_baseline && resource.initial == Initial::Baseline;

    let events: Vec<Event> = if baseline {
        Vec::new()
    } else {
        let needs_previous: Vec<String> = diff
            .changes
            .iter()
            .filter(|c| !matches!(c, Change::Created(_)))
            .map(|c| c.id().to_owned())
            .collect();
        let (src, res) = (source_name.to_owned(), resource.name.clone());
        let mut previous = if needs_previous.is_empty() {
            HashMap::new()
        } else {
            store
                .blocking(move |s| {
                    let ids: Vec<&str> = needs_previous.iter().map(String::as_str).collect();
                    s.snapshot_bodies(&src, &res, &ids)
                })
                .await?
        };
        let mut events = Vec::with_capacity(diff.changes.len());
        for change in &diff.changes {
            let (action, data) = match change {
                Change::Created(r) => (Action::Created, bodies.payload(r.body)?),
                Change::Updated(r) => (Action::Updated, bodies.payload(r.body)?),
                Change::Deleted { .. } => (Action::Deleted, Payload::null()),
            };
            events.push(Event::new(
                source_name,
                &resource.name,
                action,
                change.id(),
                data,
                previous.remove(change.id()),
                started_at,
            ));
        }
        events
    };

    let mut report = PollReport {
        listed: diff.listed,
        pages: fetched.pages,
        full,
        events,
        baseline,
        held: diff.held,
        deliveries: 0,
        elapsed: started.elapsed(),
    };
    if mode == Mode::DryRun {
        return Ok(report);
    }

    let events_done = started.elapsed();
    let (src, res) = (source_name.to_owned(), resource.name.clone());
    let events = std::mem::take(&mut report.events);
    let held = diff.held.map(|h| h.deletes);
    let elapsed = report.elapsed;
    let alert_after = resource.alert_after;
    let since_cursor = newest.cursor(state.since_cursor.as_deref());
    let pages = (conditional && full).then_some(records);
    let version = state.version;
    let (summary, events, spilled) = store
        .blocking(move |s| {
            let mut written: Vec<&Record<BodyRef>> = Vec::new();
            let mut deletes = Vec::new();
            for change in &diff.changes {
                match change {
                    Change::Created(r) | Change::Updated(r) => written.push(r),
                    Change::Deleted { id } => deletes.push(id.as_str()),
                }
            }
            // In the table's order: a baseline of a million rows appends to the B-tree rather
            // than splitting pages all over it.
            written.sort_unstable_by(|a, b| a.id.cmp(&b.id));
            let spilled = bodies.flushed;
            let bodies = &bodies;
            let upserts = written.into_iter().map(move |r| {
                Ok(Upsert {
                    id: &r.id,
                    hash: &r.hash,
                    raw: r.raw.as_ref(),
                    body: bodies.text(r.body)?,
                })
            });
            let summary = s.commit_poll(PollCommit {
                source: &src,
                resource: &res,
                upserts: Box::new(upserts),
                rehashed: &diff.rehashed,
                deletes,
                events: &events,
                listed: diff.listed,
                held,
                complete: full,
                duration: elapsed,
                at: started_at,
                alert_after,
                missing: diff.missing.iter().map(String::as_str).collect(),
                found: diff.found.iter().map(String::as_str).collect(),
                since_cursor,
                pages,
                version,
            })?;
            Ok::<_, StoreError>((summary, events, spilled))
        })
        .await?;
    report.events = events;
    report.deliveries = summary.deliveries;
    report.elapsed = started.elapsed();
    tracing::debug!(
        source = source_name, resource = %resource.name, listed = report.listed,
        pages = report.pages, changes = report.events.len(), spilled_bytes = spilled,
        load_ms = load_done.as_millis() as u64,
        fetch_ms = (fetch_done - load_done).as_millis() as u64,
        events_ms = (events_done - fetch_done).as_millis() as u64,
        commit_ms = (report.elapsed - events_done).as_millis() as u64,
        "Poll committed."
    );
    let count = |action: &str| report.events.iter().filter(|e| e.action == action).count();
    metrics::poll(source_name, &resource.name, summary.outcome, report.elapsed);
    metrics::listing(
        source_name,
        &resource.name,
        report.listed,
        held.unwrap_or(0),
        &[
            ("created", count("created")),
            ("updated", count("updated")),
            ("deleted", count("deleted")),
        ],
    );
    Ok(report)
}

/// The diff end of a poll: takes the pages in order on a blocking thread.
struct Intake {
    differ: Differ<BodyRef>,
    normalizer: Normalizer,
    newest: Newest,
    bodies: Bodies,
    /// Page records for conditional requests.
    records: Vec<PageRecord>,
    /// The page records of the last poll, for pages that answer 304.
    known_pages: Arc<HashMap<String, PageRecord>>,
    conditional: bool,
}

impl Intake {
    fn new(resource: &ResourceConfig, store: &Store) -> Self {
        let mut normalizer = Normalizer::new(resource.id.clone(), resource.ignore.clone());
        if let Some(inc) = &resource.incremental {
            normalizer.also_peek(&inc.field);
        }
        Self {
            differ: Differ::new([]),
            normalizer,
            newest: Newest::new(resource.incremental.as_ref()),
            bodies: Bodies::beside(store.path(), SPILL_AFTER),
            records: Vec::new(),
            known_pages: Arc::default(),
            conditional: resource.conditional,
        }
    }

    /// Sets the snapshot to diff against and the last poll's page records.
    fn start(&mut self, snapshot: Snapshot, known_pages: Arc<HashMap<String, PageRecord>>) {
        self.differ = Differ::with_known(snapshot);
        self.known_pages = known_pages;
    }

    /// Takes every page the fetch sends, on the poll's task.
    async fn take_all(
        mut self,
        mut pages: tokio::sync::mpsc::Receiver<Page>,
    ) -> Result<Self, PollError> {
        while let Some(page) = pages.recv().await {
            self.take_page(page)?;
        }
        Ok(self)
    }

    /// Takes every page the fetch sends, on a blocking thread.
    fn take_all_blocking(
        mut self,
        mut pages: tokio::sync::mpsc::Receiver<Page>,
    ) -> Result<Self, PollError> {
        while let Some(page) = pages.blocking_recv() {
            self.take_page(page)?;
        }
        Ok(self)
    }

    /// Normalizes and diffs one page.
    fn take_page(&mut self, page: Page) -> Result<(), PollError> {
        let mut ids = Vec::new();
        match page.items {
            PageItems::Fresh(items) => {
                for text in items.iter() {
                    let id = match take(text, &self.normalizer, &mut self.differ, &mut self.newest)
                    {
                        Taken::Unchanged(id) => id,
                        Taken::Changed(value, raw) => {
                            let (id, hash) = self
                                .normalizer
                                .identify_raw(text, &value)
                                .map_err(SourceError::from)?;
                            let body = self
                                .bodies
                                .put(text)
                                .map_err(|e| StoreError::Spill(e.to_string()))?;
                            let copy = self.conditional.then(|| id.clone());
                            self.differ.push(Record {
                                id,
                                body,
                                hash,
                                raw: Some(raw),
                            });
                            copy.unwrap_or_default()
                        }
                        Taken::Invalid(e) => {
                            return Err(SourceError::Shape {
                                url: page.url,
                                message: format!("an item is not valid JSON: {e}"),
                            }
                            .into());
                        }
                    };
                    if self.conditional {
                        ids.push(id);
                    }
                }
            }
            PageItems::NotModified => {
                let known = self.known_pages.get(&page.url);
                for id in known.map(|k| k.ids.as_slice()).unwrap_or_default() {
                    if !self.differ.keep(id) {
                        return Err(SourceError::StalePage { url: page.url }.into());
                    }
                }
                ids = known.map(|k| k.ids.clone()).unwrap_or_default();
            }
        }
        if self.conditional && (page.etag.is_some() || page.last_modified.is_some()) {
            self.records.push(PageRecord {
                url: page.url,
                etag: page.etag,
                last_modified: page.last_modified,
                next_url: page.next_url,
                ids,
            });
        }
        Ok(())
    }
}

/// What became of one item of a page.
enum Taken {
    /// Its bytes are what they were: listed and unchanged. Its id.
    Unchanged(String),
    /// New or changed bytes, parsed, and their hash: for [`Normalizer::identify`] and
    /// [`Differ::push`].
    Changed(Value, RawHash),
    /// Not JSON (a source handed on something it should not have).
    Invalid(serde_json::Error),
}

/// The fast path first: the item's id and bytes' hash, and the snapshot's word that those bytes
/// are what it holds; otherwise the item parsed.
fn take(
    text: &str,
    normalizer: &Normalizer,
    differ: &mut Differ<BodyRef>,
    newest: &mut Newest,
) -> Taken {
    let raw = normalizer.raw_hash(text);
    // Nothing to be unchanged against on a first listing: straight to the parse.
    if differ.snapshot_len() > 0
        && let Some((id, fields)) = normalizer.peek(text)
    {
        newest.see(&fields);
        if differ.unchanged(&id, &raw) {
            return Taken::Unchanged(id);
        }
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value) => {
            newest.see(&value);
            Taken::Changed(value, raw)
        }
        Err(e) => Taken::Invalid(e),
    }
}

/// Where a changed item's body is kept until the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRef {
    at: u64,
    len: u64,
}

/// The bodies of a poll's changed items: in memory up to a limit, then in an unnamed temporary
/// file beside the database (not in `/tmp`, often a small tmpfs in containers). A baseline of a
/// million items so costs a few megabytes of memory rather than gigabytes.
#[derive(Debug)]
pub struct Bodies {
    dir: PathBuf,
    limit: usize,
    memory: Vec<u8>,
    file: Option<File>,
    /// Bytes in `file`; `memory` holds the ones after.
    flushed: u64,
}

impl Bodies {
    /// Bodies kept in memory up to `limit` bytes, then in a file in the directory of `db`.
    pub fn beside(db: &Path, limit: usize) -> Self {
        let dir = match db.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        Self {
            dir,
            limit,
            memory: Vec::new(),
            file: None,
            flushed: 0,
        }
    }

    /// Keeps one body.
    pub fn put(&mut self, text: &str) -> std::io::Result<BodyRef> {
        let at = self.flushed + self.memory.len() as u64;
        self.memory.extend_from_slice(text.as_bytes());
        if self.memory.len() >= self.limit {
            let file = match &mut self.file {
                Some(file) => file,
                None => self.file.insert(tempfile::tempfile_in(&self.dir)?),
            };
            file.write_all(&self.memory)?;
            self.flushed += self.memory.len() as u64;
            self.memory.clear();
        }
        Ok(BodyRef {
            at,
            len: text.len() as u64,
        })
    }

    /// A body's text.
    pub fn text(&self, body: BodyRef) -> Result<Cow<'_, str>, StoreError> {
        let bad = |what: &str| StoreError::Spill(format!("{what} at byte {}", body.at));
        if body.at >= self.flushed {
            let start = usize::try_from(body.at - self.flushed).map_err(|_| bad("no body"))?;
            let bytes = self
                .memory
                .get(start..start + body.len as usize)
                .ok_or_else(|| bad("no body"))?;
            return std::str::from_utf8(bytes)
                .map(Cow::Borrowed)
                .map_err(|_| bad("a body that is not UTF-8"));
        }
        let file = self.file.as_ref().ok_or_else(|| bad("no file"))?;
        let mut bytes = vec![0; body.len as usize];
        file.read_exact_at(&mut bytes, body.at)
            .map_err(|e| StoreError::Spill(e.to_string()))?;
        String::from_utf8(bytes)
            .map(Cow::Owned)
            .map_err(|_| bad("a body that is not UTF-8"))
    }

    /// A body as an event carries it.
    pub fn payload(&self, body: BodyRef) -> Result<Payload, StoreError> {
        Payload::from_json(&self.text(body)?)
            .map_err(|e| StoreError::Spill(format!("a kept body is not JSON: {e}")))
    }
}

async fn record_failure(
    store: &Store,
    source_name: &str,
    resource: &ResourceConfig,
    error: &SourceError,
    at: DateTime<Utc>,
    started: Instant,
) -> Result<(), StoreError> {
    let (src, res, msg) = (
        source_name.to_owned(),
        resource.name.clone(),
        error.to_string(),
    );
    let elapsed = started.elapsed();
    let alert_after = resource.alert_after;
    let stale = matches!(error, SourceError::StalePage { .. });
    let failures = store
        .blocking(move |s| {
            if stale {
                s.clear_pages(&src, &res)?;
            }
            s.record_poll_failure(&src, &res, &msg, at, elapsed, alert_after)
        })
        .await?;
    metrics::poll(source_name, &resource.name, "failed", elapsed);
    metrics::poll_failed(source_name, &resource.name, failures);
    Ok(())
}

/// The `since` value of an incremental poll, or `None` when this poll must be a full listing: no
/// cursor yet, or the last full sync is `full_sync` old.
pub fn incremental_since(
    inc: &Incremental,
    state: &ResourceState,
    now: DateTime<Utc>,
) -> Option<String> {
    let cursor = state.since_cursor.as_deref()?;
    let last_full = DateTime::from_timestamp_millis(state.full_sync_at?)?;
    let full_sync = chrono::Duration::from_std(inc.full_sync).ok()?;
    if now - last_full >= full_sync {
        return None;
    }
    let cursor = DateTime::parse_from_rfc3339(cursor)
        .ok()?
        .with_timezone(&Utc);
    let since = cursor - chrono::Duration::from_std(inc.overlap).unwrap_or_default();
    Some(match inc.format {
        SinceFormat::Rfc3339 => since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        SinceFormat::Unix => since.timestamp().to_string(),
        SinceFormat::UnixMs => since.timestamp_millis().to_string(),
    })
}

/// The newest modification time among the items of a listing.
struct Newest {
    field: Option<(FieldPath, SinceFormat)>,
    max: Option<DateTime<Utc>>,
}

impl Newest {
    fn new(inc: Option<&Incremental>) -> Self {
        Self {
            field: inc.map(|i| (i.field.clone(), i.format)),
            max: None,
        }
    }

    fn see(&mut self, item: &Value) {
        let Some((field, format)) = &self.field else {
            return;
        };
        let at = match (lookup(item, field.segments()), format) {
            (Some(Value::String(s)), _) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
                .or_else(|| s.parse::<i64>().ok().and_then(|n| from_number(n, *format))),
            (Some(Value::Number(n)), _) => n.as_i64().and_then(|n| from_number(n, *format)),
            _ => None,
        };
        if let Some(at) = at {
            self.max = Some(self.max.map_or(at, |m| m.max(at)));
        }
    }

    /// The cursor to keep: the newest time seen, never moving backwards.
    fn cursor(&self, previous: Option<&str>) -> Option<String> {
        let previous = previous
            .and_then(|p| DateTime::parse_from_rfc3339(p).ok())
            .map(|t| t.with_timezone(&Utc));
        let newest = match (self.max, previous) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b)?,
        };
        Some(newest.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }
}

fn from_number(n: i64, format: SinceFormat) -> Option<DateTime<Utc>> {
    match format {
        SinceFormat::UnixMs => DateTime::from_timestamp_millis(n),
        _ => DateTime::from_timestamp(n, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    #[test]
    fn bodies_move_to_a_file_past_the_limit_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut bodies = Bodies::beside(&dir.path().join("x.db"), 20);
        let texts = [
            r#"{"id":1}"#,
            r#"{"id":2,"é":"ü"}"#,
            "[]",
            r#"{"id":"four"}"#,
            "7",
        ];
        let refs: Vec<BodyRef> = texts.iter().map(|t| bodies.put(t).unwrap()).collect();
        assert!(bodies.file.is_some() && bodies.flushed > 0, "spilled");
        assert!(!bodies.memory.is_empty(), "the tail stays in memory");
        for (text, body) in texts.iter().zip(&refs) {
            assert_eq!(bodies.text(*body).unwrap(), *text);
        }
        assert_eq!(
            bodies.payload(refs[1]).unwrap(),
            serde_json::json!({"id": 2, "é": "ü"})
        );
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the file has no name: nothing to clean up after a crash"
        );
        let small = Bodies::beside(Path::new("x.db"), 1 << 20);
        assert_eq!(small.dir, Path::new("."));
    }

    fn inc(format: SinceFormat) -> Incremental {
        Incremental {
            since_param: "updated_since".into(),
            field: "updated_at".parse().unwrap(),
            overlap: Duration::from_secs(60),
            full_sync: Duration::from_secs(3600),
            format,
        }
    }

    #[test]
    fn incremental_needs_a_cursor_and_a_recent_full_sync() {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let mut state = ResourceState::default();
        assert_eq!(
            incremental_since(&inc(SinceFormat::Rfc3339), &state, now),
            None
        );
        state.since_cursor = Some("2026-11-27T11:50:00.000Z".into());
        state.full_sync_at = Some((now - chrono::Duration::minutes(30)).timestamp_millis());
        assert_eq!(
            incremental_since(&inc(SinceFormat::Rfc3339), &state, now).as_deref(),
            Some("2026-11-27T11:49:00Z")
        );
        assert_eq!(
            incremental_since(&inc(SinceFormat::Unix), &state, now).as_deref(),
            Some("1795780140")
        );
        state.full_sync_at = Some((now - chrono::Duration::minutes(60)).timestamp_millis());
        assert_eq!(
            incremental_since(&inc(SinceFormat::Rfc3339), &state, now),
            None
        );
    }

    #[test]
    fn the_cursor_is_the_newest_time_and_never_goes_back() {
        let i = inc(SinceFormat::Rfc3339);
        let mut n = Newest::new(Some(&i));
        n.see(&serde_json::json!({"updated_at": "2026-11-27T10:00:00Z"}));
        n.see(&serde_json::json!({"updated_at": "2026-11-27T11:00:00+01:00"}));
        n.see(&serde_json::json!({"updated_at": "garbage"}));
        assert_eq!(n.cursor(None).as_deref(), Some("2026-11-27T10:00:00.000Z"));
        assert_eq!(
            n.cursor(Some("2026-11-28T00:00:00.000Z")).as_deref(),
            Some("2026-11-28T00:00:00.000Z")
        );
        let unix = inc(SinceFormat::Unix);
        let mut n = Newest::new(Some(&unix));
        n.see(&serde_json::json!({"updated_at": 1795780140}));
        assert_eq!(n.cursor(None).as_deref(), Some("2026-11-27T11:49:00.000Z"));
    }
}
