//! Metrics: every metric pollhook exports, in one list, and the functions that record them.
//!
//! In: what the poll and delivery stages report. Out: Prometheus text at `/metrics`.
//!
//! Invariant: names follow Prometheus conventions (`_total` counters, base units in the name:
//! `_seconds`), and labels are bounded sets (source, resource, endpoint, outcome, action): never an
//! event or item id. Gauges that describe the database (outbox depth, endpoint state) are set from
//! it at scrape time, so they are right even after a restart or a change made by the CLI.
//!
//! A resource's poll metrics are registered once and their handles kept ([`ResourceMetrics`]):
//! an idle pollhook records them twenty times a second, and building each key anew (its label
//! strings, its hash, the registry's lookup) was a few percent of its CPU.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Polls by outcome (`changed`, `unchanged`, `baseline`, `held`, `failed`).
pub const POLLS: &str = "pollhook_polls_total";
/// Poll duration.
pub const POLL_DURATION: &str = "pollhook_poll_duration_seconds";
/// Items in the last complete listing.
pub const ITEMS: &str = "pollhook_items";
/// Changes detected, by action.
pub const CHANGES: &str = "pollhook_changes_total";
/// Deletes currently held back by the guard.
pub const HELD_DELETES: &str = "pollhook_held_deletes";
/// Consecutive failed polls.
pub const POLL_FAILURES: &str = "pollhook_poll_consecutive_failures";
/// Pending deliveries (the outbox depth), by endpoint.
pub const OUTBOX_PENDING: &str = "pollhook_outbox_pending";
/// Failed (dead-lettered) deliveries, by endpoint.
pub const OUTBOX_FAILED: &str = "pollhook_outbox_failed";
/// Delivery attempts by endpoint and outcome (`delivered`, `retry`, `failed`, `disabled`).
pub const ATTEMPTS: &str = "pollhook_delivery_attempts_total";
/// Duration of one POST.
pub const ATTEMPT_DURATION: &str = "pollhook_delivery_attempt_duration_seconds";
/// From detection to the receiver's 2xx.
pub const DELIVERY_LATENCY: &str = "pollhook_delivery_latency_seconds";
/// 1 when an endpoint is active, 0 when paused or disabled.
pub const ENDPOINT_ACTIVE: &str = "pollhook_endpoint_active";
/// The database's size on disk (SQLite: file and write-ahead log; PostgreSQL: pollhook's
/// tables with their indexes).
pub const DATABASE_BYTES: &str = "pollhook_database_bytes";
/// When the oldest kept event was detected (Unix seconds; 0 when none is kept).
pub const OLDEST_EVENT: &str = "pollhook_oldest_event_timestamp_seconds";

/// 1 on the replica holding the maintenance leader lease (PostgreSQL), 0 on the others.
pub const LEADER: &str = "pollhook_replica_leader";
/// Dead tuples in the deliveries table (PostgreSQL), as the leader last read them.
pub const QUEUE_DEAD_TUPLES: &str = "pollhook_deliveries_dead_tuples";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns the handle that renders it.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder was installed first (a test harness); then that one
            // records and this handle renders nothing, which is harmless.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// How often [`upkeep`] drains the histograms: the exporter's own default.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Drains the histograms' recorded samples into their buckets every [`UPKEEP_EVERY`] until
/// `cancel`. The recorder keeps every sample until then (a scrape of `/metrics` drains them too):
/// without it, a pollhook nobody scrapes held each poll's and each delivery's duration for good,
/// its memory growing by the hour.
pub async fn upkeep(cancel: tokio_util::sync::CancellationToken) {
    let handle = handle();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(UPKEEP_EVERY) => handle.run_upkeep(),
        }
    }
}

fn describe() {
    describe_counter!(POLLS, "Polls of a resource, by outcome.");
    describe_histogram!(
        POLL_DURATION,
        Unit::Seconds,
        "Duration of one poll, fetch to commit."
    );
    describe_gauge!(ITEMS, "Items in the resource's last complete listing.");
    describe_counter!(CHANGES, "Changes detected, by action.");
    describe_gauge!(
        HELD_DELETES,
        "Deletes held back by the max_delete_ratio guard."
    );
    describe_gauge!(POLL_FAILURES, "Polls of the resource failed in a row.");
    describe_gauge!(OUTBOX_PENDING, "Deliveries waiting to be sent or retried.");
    describe_gauge!(
        OUTBOX_FAILED,
        "Deliveries that exhausted their retries (dead letters)."
    );
    describe_counter!(ATTEMPTS, "Delivery attempts, by outcome.");
    describe_histogram!(
        ATTEMPT_DURATION,
        Unit::Seconds,
        "Duration of one webhook POST."
    );
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "Time from detecting a change to its successful delivery."
    );
    describe_gauge!(
        ENDPOINT_ACTIVE,
        "1 if the endpoint is active, 0 if paused or disabled."
    );
    describe_gauge!(
        DATABASE_BYTES,
        Unit::Bytes,
        "Size of the database on disk: SQLite's file and write-ahead log, or PostgreSQL's pollhook tables with their indexes."
    );
    describe_gauge!(
        OLDEST_EVENT,
        "Detection time of the oldest kept event, Unix seconds (0: none kept)."
    );
    describe_gauge!(
        LEADER,
        "1 if this replica holds the maintenance leader lease (PostgreSQL)."
    );
    describe_gauge!(
        QUEUE_DEAD_TUPLES,
        "Dead tuples in the deliveries table: autovacuum falling behind shows here first."
    );
}

/// Records what a heartbeat's maintenance saw.
pub fn maintenance(leader: bool, dead_tuples: Option<i64>) {
    gauge!(LEADER).set(if leader { 1.0 } else { 0.0 });
    if let Some(n) = dead_tuples {
        gauge!(QUEUE_DEAD_TUPLES).set(n as f64);
    }
}

/// Records a finished poll.
pub fn poll(source: &str, resource: &str, outcome: &'static str, elapsed: Duration) {
    let metrics = ResourceMetrics::of(source, resource);
    metrics.polls.get(outcome).increment(1);
    metrics.duration.record(elapsed.as_secs_f64());
}

/// Records what a successful poll found.
pub fn listing(
    source: &str,
    resource: &str,
    items: usize,
    held: usize,
    changes: &[(&'static str, usize)],
) {
    let metrics = ResourceMetrics::of(source, resource);
    metrics.items.set(items as f64);
    metrics.held.set(held as f64);
    metrics.failures.set(0.0);
    for &(action, n) in changes {
        metrics.changes.get(action).increment(n as u64);
    }
}

/// Records a failed poll.
pub fn poll_failed(source: &str, resource: &str, consecutive: i64) {
    ResourceMetrics::of(source, resource)
        .failures
        .set(consecutive as f64);
}

/// The handles of one resource's poll metrics, each registered on first use and then kept.
struct ResourceMetrics {
    /// [`POLLS`] by outcome.
    polls: ByLabel,
    duration: Histogram,
    items: Gauge,
    held: Gauge,
    failures: Gauge,
    /// [`CHANGES`] by action.
    changes: ByLabel,
}

/// The handles kept, by source and then resource (looked up by `&str`, without allocating).
type Kept = HashMap<String, HashMap<String, Arc<ResourceMetrics>>>;

impl ResourceMetrics {
    /// The handles of `source`'s `resource`. Kept only once the process-wide recorder is
    /// installed ([`handle`]): handles taken before would record nowhere for good.
    fn of(source: &str, resource: &str) -> Arc<ResourceMetrics> {
        static KEPT: OnceLock<Mutex<Kept>> = OnceLock::new();
        if HANDLE.get().is_none() {
            return Arc::new(Self::register(source, resource));
        }
        let mut kept = KEPT
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(found) = kept.get(source).and_then(|by| by.get(resource)) {
            return found.clone();
        }
        let made = Arc::new(Self::register(source, resource));
        (kept.entry(source.to_owned()).or_default()).insert(resource.to_owned(), made.clone());
        made
    }

    fn register(source: &str, resource: &str) -> Self {
        let labels = [
            ("source", source.to_owned()),
            ("resource", resource.to_owned()),
        ];
        ResourceMetrics {
            polls: ByLabel::new(POLLS, "outcome", &labels),
            duration: histogram!(POLL_DURATION, &labels),
            items: gauge!(ITEMS, &labels),
            held: gauge!(HELD_DELETES, &labels),
            failures: gauge!(POLL_FAILURES, &labels),
            changes: ByLabel::new(CHANGES, "action", &labels),
        }
    }
}

/// A counter with one label more than a resource's (`outcome`, `action`: small closed sets),
/// registered per value on first use.
struct ByLabel {
    name: &'static str,
    label: &'static str,
    labels: [(&'static str, String); 2],
    counters: Mutex<Vec<(&'static str, Counter)>>,
}

impl ByLabel {
    fn new(name: &'static str, label: &'static str, labels: &[(&'static str, String); 2]) -> Self {
        ByLabel {
            name,
            label,
            labels: labels.clone(),
            counters: Mutex::default(),
        }
    }

    /// The counter for `value`.
    fn get(&self, value: &'static str) -> Counter {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, counter)) = counters.iter().find(|(v, _)| *v == value) {
            return counter.clone();
        }
        let [source, resource] = self.labels.clone();
        let counter = counter!(
            self.name,
            &[source, resource, (self.label, value.to_owned())]
        );
        counters.push((value, counter.clone()));
        counter
    }
}

/// Records one delivery attempt.
pub fn attempt(
    endpoint: &str,
    outcome: &'static str,
    elapsed: Duration,
    since_detection: Option<Duration>,
) {
    counter!(
        ATTEMPTS,
        &[
            ("endpoint", endpoint.to_owned()),
            ("outcome", outcome.to_owned())
        ]
    )
    .increment(1);
    histogram!(ATTEMPT_DURATION, &[("endpoint", endpoint.to_owned())])
        .record(elapsed.as_secs_f64());
    if let Some(latency) = since_detection {
        histogram!(DELIVERY_LATENCY, &[("endpoint", endpoint.to_owned())])
            .record(latency.as_secs_f64());
    }
}

/// Sets an endpoint's database-derived gauges.
pub fn endpoint_state(endpoint: &str, active: bool, pending: i64, failed: i64) {
    let labels = [("endpoint", endpoint.to_owned())];
    gauge!(ENDPOINT_ACTIVE, &labels).set(if active { 1.0 } else { 0.0 });
    gauge!(OUTBOX_PENDING, &labels).set(pending as f64);
    gauge!(OUTBOX_FAILED, &labels).set(failed as f64);
}

/// Sets the database's size and age gauges.
pub fn storage(stats: &crate::store::StorageStats) {
    gauge!(DATABASE_BYTES).set(stats.bytes as f64);
    gauge!(OLDEST_EVENT).set(stats.oldest_event_at.map_or(0.0, |t| t.timestamp() as f64));
}
