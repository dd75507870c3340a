//! One poll of one resource: fetch → normalize → diff → events → one committed transaction.
//!
//! In: the resource's settings, its source and the store. Out: a [`PollReport`] saying what changed
//! and what was written, or a [`PollError`].
//!
//! Invariants (DESIGN.md §4): a failed, timed-out or partial fetch writes nothing but the failure
//! itself and emits nothing; the first complete listing is a silent baseline unless
//! `initial = "emit"`; the snapshot, the events and their deliveries are committed together.

use std::time::Instant;

use chrono::Utc;

use crate::config::{Initial, ResourceConfig};
use crate::diff::{Change, DeleteGuard, Differ, Held};
use crate::event::Event;
use crate::metrics;
use crate::normalize::Normalizer;
use crate::source::{Source, SourceError};
use crate::store::{PollCommit, Store, StoreError};

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
    let (src, res) = (source_name.to_owned(), resource.name.clone());
    let (state, snapshot) = store
        .blocking(move |s| {
            Ok::<_, StoreError>((
                s.resource_state(&src, &res)?,
                s.snapshot_hashes(&src, &res)?,
            ))
        })
        .await?;

    let mut differ = Differ::new(snapshot);
    let mut normalizer = Normalizer::new(resource.id.clone(), resource.ignore.clone());
    let fetched = source
        .fetch(resource, &mut |items| {
            for item in items {
                differ.push(normalizer.record(item)?);
            }
            Ok(())
        })
        .await;
    let fetched = match fetched {
        Ok(f) => f,
        Err(error) => {
            if mode == Mode::Commit {
                let (src, res, msg) = (
                    source_name.to_owned(),
                    resource.name.clone(),
                    error.to_string(),
                );
                let elapsed = started.elapsed();
                let alert_after = resource.alert_after;
                let failures = store
                    .blocking(move |s| {
                        s.record_poll_failure(&src, &res, &msg, started_at, elapsed, alert_after)
                    })
                    .await?;
                metrics::poll(source_name, &resource.name, "failed", elapsed);
                metrics::poll_failed(source_name, &resource.name, failures);
            }
            return Err(error.into());
        }
    };

    let diff = differ.finish(
        true,
        DeleteGuard {
            max_ratio: resource.max_delete_ratio,
            accepted: state.accept_deletes,
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
        let mut previous = store
            .blocking(move |s| {
                let ids: Vec<&str> = needs_previous.iter().map(String::as_str).collect();
                s.snapshot_bodies(&src, &res, &ids)
            })
            .await?;
        diff.changes
            .iter()
            .map(|c| {
                Event::from_change(
                    source_name,
                    &resource.name,
                    c,
                    previous.remove(c.id()),
                    started_at,
                )
            })
            .collect()
    };

    let mut report = PollReport {
        listed: diff.listed,
        pages: fetched.pages,
        events,
        baseline,
        held: diff.held,
        deliveries: 0,
        elapsed: started.elapsed(),
    };
    if mode == Mode::DryRun {
        return Ok(report);
    }

    let (src, res) = (source_name.to_owned(), resource.name.clone());
    let events = std::mem::take(&mut report.events);
    let held = diff.held.map(|h| h.deletes);
    let listed = diff.listed;
    let elapsed = report.elapsed;
    let alert_after = resource.alert_after;
    let (summary, events) = store
        .blocking(move |s| {
            let mut upserts = Vec::new();
            let mut deletes = Vec::new();
            for change in &diff.changes {
                match change {
                    Change::Created(r) | Change::Updated(r) => {
                        upserts.push((r.id.as_str(), &r.hash, r.body.to_string()))
                    }
                    Change::Deleted { id } => deletes.push(id.as_str()),
                }
            }
            let summary = s.commit_poll(&PollCommit {
                source: &src,
                resource: &res,
                upserts,
                deletes,
                events: &events,
                listed,
                held,
                complete: true,
                alert_after,
                duration: elapsed,
                at: started_at,
            })?;
            Ok::<_, StoreError>((summary, events))
        })
        .await?;
    report.events = events;
    report.deliveries = summary.deliveries;
    report.elapsed = started.elapsed();
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
