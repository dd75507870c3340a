//! Schedule: when each resource is polled.
//!
//! In: every resource's `every` or cron `schedule` (+ `tz`, `jitter`), the poll concurrency bound
//! and a cancellation token. Out: calls to [`crate::poll::poll`], one resource at a time each.
//!
//! Invariants: one task per resource awaits its own poll before planning the next, so two polls
//! of the same resource never overlap, however slow one is; on a database shared by replicas
//! (PostgreSQL), a task polls only after winning the claim on the resource's due time, so each
//! due time is polled by one replica, whichever are alive (the others' timers only ask again); a poll that overran its interval is
//! followed by the next one right away, not by a burst of missed ones; at most
//! `[poll] concurrency` polls run at once; on cancellation no new poll starts and a running one is
//! dropped before its commit or finishes it (the commit is one transaction either way); a due poll
//! waits at most for the next tick of a 100 ms grid (a twentieth of a shorter interval), so polls
//! due close together share one wake-up ([`on_grid`]).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Pipeline;
use crate::cluster::RESOURCE_LEASE;
use crate::config::When;
use crate::poll::PollError;
use crate::store::ResourceClaim;

/// The longest a replica waits before asking again about a resource another replica is polling:
/// if that one dies, its lease is handed back within seconds.
const BUSY_RECHECK: Duration = Duration::from_secs(2);

/// When the poll after one that started at `started` is due, `now` being the moment it ended.
/// Never panics: a sum past what an `Instant` holds becomes about thirty years ahead (config
/// bounds `every` and `jitter`, so only a bug could get there).
pub fn next_due(when: &When, jitter: Duration, started: Instant, now: Instant) -> Instant {
    let jitter = random_jitter(jitter);
    let due = match when {
        When::Every(every) => started.checked_add(*every).map(|at| at.max(now)),
        When::Cron { cron, tz } => {
            let wall = Utc::now().with_timezone(tz);
            match cron.find_next_occurrence(&wall, false) {
                Ok(next) => {
                    let wait = (next.with_timezone(&Utc) - wall.with_timezone(&Utc))
                        .to_std()
                        .unwrap_or_default();
                    now.checked_add(wait)
                }
                // A pattern with no future occurrence never runs again (`check` refuses one
                // with none at all, but a pattern can run out of dates while running).
                Err(_) => None,
            }
        }
    };
    due.and_then(|at| at.checked_add(jitter))
        .unwrap_or_else(far_future)
}

/// The longest a due poll waits for the next tick of its grid ([`on_grid`]).
const GRID: Duration = Duration::from_millis(100);

/// The grid's origin: the first time a resource's task asks.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The tick of a grid of `grid` from `epoch` at or next after `at` (`at` itself for a zero
/// grid, or past what an `Instant` holds). Polls due within one tick of each other then wake
/// the process once, their requests go out together and their commits follow each other: at
/// 20 polls a second, half the CPU of each waking on its own (BENCHMARKS.md §10).
fn on_grid(at: Instant, epoch: Instant, grid: Duration) -> Instant {
    let step = grid.as_nanos();
    if step == 0 {
        return at;
    }
    let ticks = at
        .saturating_duration_since(epoch)
        .as_nanos()
        .div_ceil(step);
    u64::try_from(ticks * step)
        .ok()
        .and_then(|nanos| epoch.checked_add(Duration::from_nanos(nanos)))
        .unwrap_or(at)
}

/// About thirty years from now, as tokio's own "never" is: a wait that never ends in practice.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(30 * 365 * 24 * 3600)
}

fn random_jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..=max.as_millis() as u64))
}

/// Starts one task per resource into `tasks`; they stop when `cancel` fires.
pub fn spawn(tasks: &mut JoinSet<()>, pipeline: &Arc<Pipeline>, cancel: &CancellationToken) {
    let permits = Arc::new(Semaphore::new(pipeline.config.poll.concurrency));
    for (s, (config, _)) in pipeline.sources.iter().enumerate() {
        for r in 0..config.resources.len() {
            tasks.spawn(run_resource(
                pipeline.clone(),
                s,
                r,
                permits.clone(),
                cancel.clone(),
            ));
        }
    }
}

async fn run_resource(
    pipeline: Arc<Pipeline>,
    source_index: usize,
    resource_index: usize,
    permits: Arc<Semaphore>,
    cancel: CancellationToken,
) {
    let (source, built) = &pipeline.sources[source_index];
    let resource = &source.resources[resource_index];
    let source_name = &source.name;
    let key = resource.key(source_name);
    // The first poll of an interval resource comes soon after start; a cron one waits its turn.
    let mut due = match &resource.when {
        When::Every(_) => Instant::now()
            .checked_add(random_jitter(resource.jitter.min(Duration::from_secs(1))))
            .unwrap_or_else(far_future),
        cron => next_due(cron, resource.jitter, Instant::now(), Instant::now()),
    };
    // A short interval's polls keep to it within a twentieth.
    let grid = match &resource.when {
        When::Every(every) => (*every / 20).min(GRID),
        When::Cron { .. } => GRID,
    };
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(on_grid(due, *EPOCH, grid)) => {}
        }
        let _permit = tokio::select! {
            () = cancel.cancelled() => return,
            permit = permits.acquire() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let claim = tokio::select! {
            () = cancel.cancelled() => return,
            claim = pipeline.store.claim_resource(source_name, &resource.name, RESOURCE_LEASE) => claim,
        };
        match claim {
            Ok(ResourceClaim::Won) => {}
            Ok(ResourceClaim::NotYet(wait)) => {
                // Another replica polled it; its next due time is the shared one. A little
                // jitter keeps the replicas from all asking in the same millisecond.
                due = Instant::now() + wait + random_jitter(Duration::from_millis(20));
                continue;
            }
            Ok(ResourceClaim::Busy(wait)) => {
                due = Instant::now() + wait.min(BUSY_RECHECK);
                continue;
            }
            Err(error) => {
                tracing::warn!(source = %source_name, resource = %resource.name, %error, "Cannot claim the next poll; trying again shortly.");
                due = Instant::now() + BUSY_RECHECK;
                continue;
            }
        }
        let started = Instant::now();
        let outcome = tokio::select! {
            () = cancel.cancelled() => return,
            outcome = pipeline.poll(source, built, resource) => outcome,
        };
        match outcome {
            Ok(report) if report.baseline => tracing::info!(
                source = %source_name, resource = %resource.name, items = report.listed,
                "Baseline recorded; changes from now on become events."
            ),
            Ok(report) => {
                if let Some(held) = report.held {
                    tracing::warn!(
                        source = %source_name, resource = %resource.name,
                        deletes = held.deletes, snapshot = held.snapshot,
                        "Listing would delete more than max_delete_ratio of the snapshot; deletes held back. Run `pollhook accept {key}` if they are real."
                    );
                }
                if report.events.is_empty() {
                    tracing::debug!(source = %source_name, resource = %resource.name, items = report.listed, "No changes.");
                } else {
                    tracing::info!(
                        source = %source_name, resource = %resource.name, items = report.listed,
                        events = report.events.len(), deliveries = report.deliveries,
                        elapsed_ms = report.elapsed.as_millis() as u64,
                        "Changes detected."
                    );
                }
            }
            Err(PollError::Fetch(error)) => tracing::warn!(
                source = %source_name, resource = %resource.name, %error,
                "Fetch failed; snapshot kept."
            ),
            Err(error) => tracing::error!(
                source = %source_name, resource = %resource.name, %error,
                "Poll could not be recorded."
            ),
        }
        due = next_due(&resource.when, resource.jitter, started, Instant::now());
        let next_in = due.saturating_duration_since(Instant::now());
        if let Err(error) = pipeline
            .store
            .finish_resource(source_name, &resource.name, next_in)
            .await
        {
            // The lease stays this replica's (its heartbeat renews it) until its next claim
            // takes it again; no other replica polls it meanwhile, and nothing is lost.
            tracing::warn!(source = %source_name, resource = %resource.name, %error, "Cannot record when the next poll is due.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overrunning_poll_is_followed_at_once_not_by_a_burst() {
        let start = Instant::now();
        let every = When::Every(Duration::from_secs(10));
        assert_eq!(
            next_due(
                &every,
                Duration::ZERO,
                start,
                start + Duration::from_secs(1)
            ),
            start + Duration::from_secs(10)
        );
        let late = start + Duration::from_secs(25);
        assert_eq!(next_due(&every, Duration::ZERO, start, late), late);
        let jittered = next_due(&every, Duration::from_secs(2), start, start);
        assert!(
            jittered >= start + Duration::from_secs(10)
                && jittered <= start + Duration::from_secs(12)
        );
    }

    #[test]
    fn a_due_time_waits_for_the_next_tick_of_its_grid() {
        let epoch = Instant::now();
        let grid = Duration::from_millis(100);
        let at = |ms: u64| epoch + Duration::from_millis(ms);
        assert_eq!(on_grid(at(0), epoch, grid), at(0));
        assert_eq!(on_grid(at(1), epoch, grid), at(100));
        assert_eq!(on_grid(at(250), epoch, grid), at(300));
        assert_eq!(on_grid(at(300), epoch, grid), at(300));
        // Polls due within one tick wake together.
        assert_eq!(
            on_grid(at(5_201), epoch, grid),
            on_grid(at(5_299), epoch, grid)
        );
        assert_eq!(on_grid(at(5_201), epoch, grid), at(5_300));
        // Before the grid's origin: its first tick; no grid: the time itself.
        assert_eq!(
            on_grid(epoch - Duration::from_millis(50), epoch, grid),
            epoch
        );
        assert_eq!(on_grid(at(250), epoch, Duration::ZERO), at(250));
        // Thirty years out still lands on a tick (or, past an `Instant`, stays put).
        let far = far_future();
        assert!(on_grid(far, epoch, grid) >= far);
        assert!(on_grid(far, epoch, grid) - far < grid);
    }

    #[test]
    fn an_interval_past_what_an_instant_holds_never_panics() {
        let start = Instant::now();
        let every = When::Every(Duration::from_secs(u64::MAX));
        let due = next_due(&every, Duration::from_secs(u64::MAX / 2), start, start);
        assert!(due > start + Duration::from_secs(365 * 24 * 3600));
    }
}
