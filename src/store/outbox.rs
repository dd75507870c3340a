//! The outbox: deliveries (event × endpoint) claimed with a lease, their attempts and
//! outcomes, and the operator's retries.
//!
//! Invariants:
//! - A delivery is due only when no earlier pending delivery exists for the same endpoint and
//!   item, so per endpoint an item's events arrive in detection order.
//! - A claim is a lease: work claimed by a process that died is claimed again once the lease runs
//!   out, or at once when the next `run` starts ([`Store::release_all_leases`]), and delivered
//!   again with the same event id. Nothing is lost.
//! - Outcomes are committed in groups, one transaction per group.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Store, StoreError};
use crate::retry::Next;

/// A claimed delivery with what is needed to send it.
#[derive(Debug, Clone)]
pub struct Due {
    /// Delivery row id.
    pub delivery_id: i64,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The event's id (`evt_…`).
    pub event_id: String,
    /// `<resource>.<action>`.
    pub event_type: String,
    /// Source name.
    pub source: String,
    /// Resource name.
    pub resource: String,
    /// Action.
    pub action: String,
    /// Item id.
    pub resource_id: String,
    /// The event JSON, byte for byte as stored.
    pub payload: String,
    /// When the event was detected (ms).
    pub detected_at_ms: i64,
}

/// The result of one attempt, ready to record.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Delivery row id.
    pub delivery_id: i64,
    /// Endpoint row id.
    pub endpoint_id: i64,
    /// When the attempt started (ms).
    pub at: i64,
    /// HTTP status, if a response came.
    pub status: Option<u16>,
    /// Time to the response or the failure.
    pub latency_ms: i64,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// The start of the response body.
    pub response: Option<String>,
    /// What happens next.
    pub next: Next,
}

/// A delivery as the operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    /// Row id.
    pub id: i64,
    /// Event id.
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// Item id.
    pub resource_id: String,
    /// Endpoint name.
    pub endpoint: String,
    /// pending, delivered or failed.
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last response status.
    pub last_status: Option<u16>,
    /// The last error.
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was delivered or given up.
    pub finished_at: Option<DateTime<Utc>>,
}

/// One attempt as the operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRow {
    /// Delivery row id.
    pub delivery_id: i64,
    /// Endpoint name.
    pub endpoint: String,
    /// When it started.
    pub at: DateTime<Utc>,
    /// Response status, if any.
    pub status: Option<u16>,
    /// Latency.
    pub latency_ms: i64,
    /// What went wrong.
    pub error: Option<String>,
    /// The start of the response body.
    pub response: Option<String>,
}

/// Filters for listing deliveries.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Endpoint name.
    pub endpoint: Option<String>,
    /// pending, delivered or failed.
    pub status: Option<String>,
    /// Event id.
    pub event_id: Option<String>,
    /// At least this many attempts made (`pending` with 1: retrying).
    pub min_attempts: Option<u32>,
    /// The last response's status class: 2 for 2xx … 5 for 5xx.
    pub status_class: Option<u16>,
    /// Created at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Created before (Unix ms).
    pub until_ms: Option<i64>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl Store {
    /// Claims up to `limit` due deliveries of one endpoint, leasing them for `lease_ms`.
    pub async fn claim(
        &self,
        endpoint_id: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Due>, StoreError> {
        on_backend!(self, |db| db.claim(endpoint_id, limit, lease_ms))
    }
    /// Hands claimed deliveries back before their lease ends (a lane stopping with a queue).
    pub async fn release(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        on_backend!(self, |db| db.release(&ids))
    }
    /// Ends the leases of processes that died, so their work is due at once (and sent again
    /// with the same event id: at least once); for a starting `run`. On SQLite that is every
    /// lease: the `run` holds the [`RunLock`](crate::store::RunLock), so no other process can
    /// hold one. On PostgreSQL, only those of replicas that are gone (no heartbeat row, or one
    /// older than its sends may last): live replicas keep theirs, as the leader's sweep would.
    /// Returns how many leases it ended.
    pub async fn release_all_leases(&self) -> Result<usize, StoreError> {
        on_backend!(self, |db| db.release_all_leases())
    }
    /// When the endpoint's next pending delivery is due (ms), if it has one.
    pub async fn next_due_at(&self, endpoint_id: i64) -> Result<Option<i64>, StoreError> {
        on_backend!(self, |db| db.next_due_at(endpoint_id))
    }
    /// Records a group of attempt outcomes in one transaction. Returns the endpoints it disabled,
    /// with the reason.
    pub async fn record_outcomes(
        &self,
        batch: Vec<Recorded>,
        disable_after: std::time::Duration,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        on_backend!(self, |db| db.record_outcomes(&batch, disable_after))
    }
    /// Deliveries, newest first.
    pub async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        on_backend!(self, |db| db.deliveries(&filter))
    }
    /// Attempts of a delivery (numeric id) or of every delivery of an event (`evt_…`), oldest first.
    pub async fn attempts(&self, id: &str) -> Result<Vec<AttemptRow>, StoreError> {
        let id = id.to_owned();
        on_backend!(self, |db| db.attempts(&id))
    }
    /// The attempts of several deliveries, oldest first, in one query.
    pub async fn attempts_of(&self, deliveries: &[i64]) -> Result<Vec<AttemptRow>, StoreError> {
        let deliveries = deliveries.to_vec();
        on_backend!(self, |db| db.attempts_of(&deliveries))
    }
    /// Puts a failed (or waiting) delivery back in line now, with a fresh retry schedule.
    pub async fn retry_delivery(&self, id: i64) -> Result<(), StoreError> {
        on_backend!(self, |db| db.retry_delivery(id))
    }
    /// Puts every failed delivery (of one endpoint, or all) back in line. Returns how many.
    pub async fn retry_failed(&self, endpoint: Option<&str>) -> Result<usize, StoreError> {
        let endpoint = endpoint.map(str::to_owned);
        on_backend!(self, |db| db.retry_failed(endpoint.as_deref()))
    }
    /// Whether a delivery row exists.
    pub async fn delivery_exists(&self, id: i64) -> Result<bool, StoreError> {
        on_backend!(self, |db| db.delivery_exists(id))
    }
    /// Counts of deliveries by endpoint and status, for `status`.
    pub async fn delivery_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        on_backend!(self, |db| db.delivery_counts())
    }
    /// Per endpoint, the attempts made at or after `since_ms` and how many got a 2xx.
    pub async fn attempt_counts(&self, since_ms: i64) -> Result<Vec<AttemptCount>, StoreError> {
        on_backend!(self, |db| db.attempt_counts(since_ms))
    }
}

/// One endpoint's attempts over a window, for its success rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptCount {
    /// Endpoint name.
    pub endpoint: String,
    /// Attempts made.
    pub attempts: i64,
    /// Of which answered 2xx.
    pub succeeded: i64,
}
