//! One poll of one resource, the spine: prior state → plan → take the listing → diff → events →
//! one committed transaction.
//!
//! In: the resource's settings, its source and the store. Out: a [`PollReport`] saying what changed
//! and what was written, or a [`PollError`].
//!
//! Invariants (DESIGN.md §4): a failed, timed-out or partial fetch writes nothing but the failure
//! itself and emits nothing; only a full listing can delete (an incremental one cannot see what
//! vanished), and where the resource names its item URL only a delete that URL confirms
//! ([`confirm`](crate::confirm)); the first full listing is a silent baseline unless
//! `initial = "emit"`; the snapshot, the events and their deliveries are committed together, and
//! only if no other poll of the resource committed meanwhile. The listing is taken page by page as it arrives ([`intake`]);
//! the changed bodies wait for the commit in [`Bodies`] ([`spill`]).
//!
//! [`intake`]: crate::intake
//! [`spill`]: crate::spill

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::config::{Initial, ResourceConfig};
use crate::confirm::{Confirmed, confirm_deletes};
use crate::diff::{Change, DeleteGuard, Diff, Held};
use crate::event::{Action, Event, Payload};
use crate::incremental::incremental_since;
use crate::intake::{Against, TakeError, take_listing};
use crate::metrics;
use crate::source::{FetchPlan, Source, SourceError};
use crate::spill::{Bodies, BodyRef, ChangedRows, SpillError};
use crate::store::{PageRecord, PollCommit, PollFailure, Prior, ResourceState, Store, StoreError};

/// Snapshots up to this size are read with the prior state, before the first request, and diffed
/// on the poll's own task: about a millisecond of SQLite work. A larger one is read while the
/// first pages are fetched, and diffed on a blocking thread ([`Against::Load`]): read first, a
/// 10,000-item snapshot held the first request back 9–12 ms.
const INLINE_ITEMS: i64 = 1_000;

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
    pub elapsed: Duration,
}

/// Why a poll did not complete.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The listing could not be fetched completely; nothing was written.
    #[error("fetch failed; snapshot kept: {0}")]
    Fetch(#[from] SourceError),
    /// The changed bodies could not be kept until the commit; nothing was written.
    #[error(transparent)]
    Spill(#[from] SpillError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TakeError> for PollError {
    fn from(e: TakeError) -> Self {
        match e {
            TakeError::Fetch(e) => PollError::Fetch(e),
            TakeError::Spill(e) => PollError::Spill(e),
            TakeError::Store(e) => PollError::Store(e),
        }
    }
}

/// Polls `resource` of `source_name` once.
///
/// A poll made from what the store remembered of its own last commit ([`Prior::remembered`])
/// that finds another process committed since wrote nothing; it is made again at once, from
/// what the store holds now.
pub async fn poll(
    store: &Store,
    source_name: &str,
    source: &dyn Source,
    resource: &ResourceConfig,
    mode: Mode,
) -> Result<PollReport, PollError> {
    let attempt = match poll_once(store, source_name, source, resource, mode).await {
        Err(Attempt::Remembered) => {
            tracing::debug!(
                source = source_name, resource = %resource.name,
                "Another process committed since this process's last poll; polling again from what it wrote."
            );
            poll_once(store, source_name, source, resource, mode).await
        }
        attempt => attempt,
    };
    attempt.map_err(|attempt| match attempt {
        Attempt::Failed(error) => error,
        // The store forgets what it remembered on a conflict, so the second prior was read.
        Attempt::Remembered => PollError::Store(StoreError::VersionConflict(format!(
            "{source_name}.{} was committed by another process twice while it was polled",
            resource.name
        ))),
    })
}

/// Why one attempt at a poll did not complete.
enum Attempt {
    /// Made from a remembered prior that another process's commit overtook: nothing written.
    Remembered,
    Failed(PollError),
}

impl<E: Into<PollError>> From<E> for Attempt {
    fn from(e: E) -> Self {
        Attempt::Failed(e.into())
    }
}

async fn poll_once(
    store: &Store,
    source_name: &str,
    source: &dyn Source,
    resource: &ResourceConfig,
    mode: Mode,
) -> Result<PollReport, Attempt> {
    let mut p = Poll::start(store, source_name, resource);
    let prior = p.prior().await?;
    let since =
        (resource.incremental.as_ref()).and_then(|inc| incremental_since(inc, &prior.state, p.at));
    let full = since.is_none();
    let known_pages = prior.pages;
    let plan = p.plan(since, full, &known_pages);
    let against = match prior.snapshot {
        Some(snapshot) => Against::Loaded(snapshot),
        None => Against::Load {
            source: source_name.to_owned(),
            expected: prior.state.item_count,
        },
    };
    p.lap();
    let taken = take_listing(store, source, resource, &plan, against, known_pages.clone()).await;
    let listing = match taken {
        Ok(listing) => listing,
        Err(TakeError::Fetch(error)) if mode == Mode::Commit => {
            return Err(p.failed(error).await.into());
        }
        Err(error) => return Err(error.into()),
    };
    p.lap();
    let state = &prior.state;
    // A window (a feed) shows only the newest items: one missing from it is not gone.
    let deletes = full && listing.fetched.complete && !resource.window;
    let mut diff = (listing.differ).finish(deletes, p.guard(state));
    p.confirmed(confirm_deletes(source, resource, &mut diff).await);
    let baseline = !state.has_baseline && resource.initial == Initial::Baseline;
    let events = match baseline {
        true => Vec::new(),
        false => p.events(&diff.changes, &listing.bodies).await?,
    };
    let mut report = PollReport {
        listed: diff.listed,
        pages: listing.fetched.pages,
        full,
        events,
        baseline,
        held: diff.held,
        deliveries: 0,
        elapsed: p.started.elapsed(),
    };
    if mode == Mode::DryRun {
        return Ok(report);
    }
    p.lap();
    let kept = Kept {
        since_cursor: listing.newest.cursor(state.since_cursor.as_deref()),
        pages: listing.pages.filter(|_| resource.conditional && full),
        version: state.version,
        complete: full,
        duration: report.elapsed,
    };
    let events = std::mem::take(&mut report.events);
    let commit = p.commit(diff, listing.bodies, events, kept);
    let (summary, events) = match store.commit_poll(commit).await {
        Ok(committed) => committed,
        Err(StoreError::VersionConflict(_)) if prior.remembered => return Err(Attempt::Remembered),
        Err(e) => return Err(e.into()),
    };
    report.events = events;
    report.deliveries = summary.deliveries;
    report.elapsed = p.started.elapsed();
    p.committed(&report, summary.outcome);
    Ok(report)
}

/// One poll under way: what it is of, when it started, and its stage times for the debug log.
struct Poll<'a> {
    store: &'a Store,
    source: &'a str,
    resource: &'a ResourceConfig,
    /// When it started, as events and the store record it.
    at: DateTime<Utc>,
    started: Instant,
    /// When each stage ended: loading the prior state, the listing, the events.
    laps: Vec<Duration>,
    /// What the commit writes, for the log and the metrics.
    counts: Counts,
    spilled: u64,
}

/// What a commit keeps of the poll beyond its diff.
struct Kept {
    since_cursor: Option<String>,
    pages: Option<Vec<PageRecord>>,
    version: i64,
    complete: bool,
    duration: Duration,
}

impl<'a> Poll<'a> {
    fn start(store: &'a Store, source: &'a str, resource: &'a ResourceConfig) -> Self {
        Self {
            store,
            source,
            resource,
            at: Utc::now(),
            started: Instant::now(),
            laps: Vec::with_capacity(3),
            counts: Counts([0; 3]),
            spilled: 0,
        }
    }

    /// The resource's state, page records and (if small) snapshot.
    async fn prior(&self) -> Result<Prior, StoreError> {
        let conditional = self.resource.conditional;
        (self.store)
            .prior(self.source, &self.resource.name, conditional, INLINE_ITEMS)
            .await
    }

    /// What to ask the source for beyond the resource's own settings.
    fn plan<'k>(
        &self,
        since: Option<String>,
        full: bool,
        known_pages: &'k HashMap<String, PageRecord>,
    ) -> FetchPlan<'k> {
        FetchPlan {
            query: (self.resource.incremental.iter().zip(since))
                .map(|(inc, since)| (inc.since_param.clone(), since))
                .collect(),
            // Incremental URLs change every poll; only full listings are worth validating.
            pages: (self.resource.conditional && full).then_some(known_pages),
        }
    }

    fn lap(&mut self) {
        self.laps.push(self.started.elapsed());
    }

    fn guard(&self, state: &ResourceState) -> DeleteGuard {
        DeleteGuard {
            max_ratio: self.resource.max_delete_ratio,
            accepted: state.accept_deletes,
            after: self.resource.deleted_after,
        }
    }

    /// The event of each change; `previous` from the snapshot for updates and deletes.
    async fn events(
        &self,
        changes: &[Change<BodyRef>],
        bodies: &Bodies,
    ) -> Result<Vec<Event>, PollError> {
        let needs_previous: Vec<String> = changes
            .iter()
            .filter(|c| !matches!(c, Change::Created(_)))
            .map(|c| c.id().to_owned())
            .collect();
        let mut previous = if needs_previous.is_empty() {
            HashMap::new()
        } else {
            (self.store)
                .snapshot_bodies(self.source, &self.resource.name, needs_previous)
                .await?
        };
        changes
            .iter()
            .map(|change| {
                let (action, data) = match change {
                    Change::Created(r) => (Action::Created, bodies.payload(r.body)?),
                    Change::Updated(r) => (Action::Updated, bodies.payload(r.body)?),
                    Change::Deleted { .. } => (Action::Deleted, Payload::null()),
                };
                let before = previous.remove(change.id());
                Ok(Event::new(
                    self.source,
                    &self.resource.name,
                    action,
                    change.id(),
                    data,
                    before,
                    &self.resource.ignore,
                    self.at,
                ))
            })
            .collect()
    }

    /// The poll's commit: the diff's snapshot rows and what the poll keeps.
    fn commit(
        &mut self,
        diff: Diff<BodyRef>,
        bodies: Bodies,
        events: Vec<Event>,
        kept: Kept,
    ) -> PollCommit {
        if !events.is_empty() {
            self.counts = Counts::of(&diff.changes);
        }
        self.spilled = bodies.spilled();
        let mut written = Vec::new();
        let mut deletes = Vec::new();
        for change in diff.changes {
            match change {
                Change::Created(r) | Change::Updated(r) => written.push(r),
                Change::Deleted { id } => deletes.push(id),
            }
        }
        PollCommit {
            source: self.source.to_owned(),
            resource: self.resource.name.clone(),
            upserts: Box::new(ChangedRows::new(written, bodies)),
            rehashed: diff.rehashed,
            deletes,
            events,
            listed: diff.listed,
            held: diff.held.map(|h| h.deletes),
            complete: kept.complete,
            duration: kept.duration,
            at: self.at,
            alert_after: self.resource.alert_after,
            missing: diff.missing,
            found: diff.found,
            since_cursor: kept.since_cursor,
            pages: kept.pages,
            version: kept.version,
        }
    }

    /// Logs what the items' own URLs said of the deletes the listing suggested.
    fn confirmed(&self, confirmed: Confirmed) {
        if confirmed != Confirmed::default() {
            tracing::debug!(
                source = self.source, resource = %self.resource.name, gone = confirmed.gone,
                present = confirmed.present, deferred = confirmed.deferred,
                "Deletes confirmed at the items' own URLs."
            );
        }
    }

    /// Records a failed fetch, and hands back the error to return.
    async fn failed(&self, error: SourceError) -> PollError {
        let elapsed = self.started.elapsed();
        let failure = PollFailure {
            source: self.source.to_owned(),
            resource: self.resource.name.clone(),
            error: error.to_string(),
            at: self.at,
            duration: elapsed,
            alert_after: self.resource.alert_after,
            forget_pages: matches!(error, SourceError::StalePage { .. }),
        };
        match self.store.record_poll_failure(failure).await {
            Ok(failures) => {
                metrics::poll(self.source, &self.resource.name, "failed", elapsed);
                metrics::poll_failed(self.source, &self.resource.name, failures);
                error.into()
            }
            Err(store) => store.into(),
        }
    }

    /// Logs and counts a committed poll.
    fn committed(&self, report: &PollReport, outcome: &'static str) {
        let lap = |i: usize| self.laps.get(i).copied().unwrap_or_default();
        tracing::debug!(
            source = self.source, resource = %self.resource.name, listed = report.listed,
            pages = report.pages, changes = report.events.len(), spilled_bytes = self.spilled,
            load_ms = lap(0).as_millis() as u64,
            fetch_ms = (lap(1) - lap(0)).as_millis() as u64,
            events_ms = (lap(2) - lap(1)).as_millis() as u64,
            commit_ms = (report.elapsed - lap(2)).as_millis() as u64,
            "Poll committed."
        );
        metrics::poll(self.source, &self.resource.name, outcome, report.elapsed);
        let held = report.held.map_or(0, |h| h.deletes);
        metrics::listing(
            self.source,
            &self.resource.name,
            report.listed,
            held,
            &self.counts.labelled(),
        );
    }
}

/// Changes by action, for the metrics.
struct Counts([usize; 3]);

impl Counts {
    fn of(changes: &[Change<BodyRef>]) -> Self {
        let mut n = [0; 3];
        for change in changes {
            n[match change {
                Change::Created(_) => 0,
                Change::Updated(_) => 1,
                Change::Deleted { .. } => 2,
            }] += 1;
        }
        Counts(n)
    }

    fn labelled(&self) -> [(&'static str, usize); 3] {
        [
            (Action::Created.as_str(), self.0[0]),
            (Action::Updated.as_str(), self.0[1]),
            (Action::Deleted.as_str(), self.0[2]),
        ]
    }
}
