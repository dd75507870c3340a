//! The outbox in PostgreSQL: claiming due deliveries with `FOR UPDATE SKIP LOCKED` and a lease,
//! recording outcomes in groups, and the operator's retries.
//!
//! Invariants:
//! - A claim is one autocommitted statement: no transaction is held while a webhook is sent.
//!   It locks its rows `FOR NO KEY UPDATE` (it changes no key), which leaves the foreign-key
//!   checks of outcome commits (`attempts` → `deliveries`) free to run beside it: a claim
//!   passing over another replica's rows does not hold up that replica's inserts of attempts.
//! - A delivery is due only when no earlier pending delivery exists for the same endpoint and
//!   item, whichever replica holds that one: per endpoint, an item's events arrive in detection
//!   order across replicas (`deliveries_lane` makes it cheap).
//! - A claim is a lease (`locked_until`, `locked_by`): a replica that died loses it when the
//!   leader sweeps its leases (its heartbeat stopped), or when the lease runs out.
//! - Outcomes are committed in groups, one transaction per group, consecutive successes in one
//!   statement.

use chrono::Utc;

use super::endpoints::load_endpoints;
use super::events::insert_events;
use super::replicas::DB_NOW;
use super::snapshot::notify;
use super::{Db, to_time};
use crate::event::{self, Event};
use crate::retry::Next;
use crate::store::{
    AttemptCount, AttemptRow, DeliveryFilter, DeliveryRow, Due, Recorded, StoreError, now_ms,
};

/// The delivery claim: `$1` endpoint, `$2` now (ms), `$3` how many, `$4` lease (ms), `$5` this
/// replica. Public (hidden) so the benchmark and the tests explain the very statement run here.
pub const CLAIM: &str = "WITH due AS (
        SELECT d.id FROM deliveries d
        WHERE d.endpoint_id = $1 AND d.status = 'pending'
          AND d.next_attempt_at <= $2 AND d.locked_until <= $2
          AND EXISTS (SELECT 1 FROM endpoints p WHERE p.id = $1 AND p.active)
          AND NOT EXISTS (
              SELECT 1 FROM deliveries x
              WHERE x.endpoint_id = d.endpoint_id AND x.item_key = d.item_key
                -- pending, in `deliveries_lane`'s words: only that index serves it
                AND x.status NOT IN ('delivered', 'failed') AND x.id < d.id)
        -- (endpoint_id, id) walks `deliveries_pending`, which holds pending rows only,
        -- rather than the primary key past every delivered one (statistics that say
        -- nearly every row is pending pick the primary key, which then costs the same).
        ORDER BY d.endpoint_id, d.id LIMIT $3
        FOR NO KEY UPDATE OF d SKIP LOCKED)
    UPDATE deliveries d SET locked_until = $2 + $4, locked_by = $5
    FROM due, events e
    WHERE d.id = due.id AND e.seq = d.event_seq
    RETURNING d.id, d.attempts, e.id, e.type, e.source, e.resource, e.action,
              e.resource_id, e.payload, e.detected_at";

impl Db {
    /// Claims up to `limit` due deliveries of one endpoint, leasing them for `lease_ms`.
    pub(in crate::store) async fn claim(
        &self,
        endpoint_id: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Due>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(CLAIM).await?;
        let rows = conn
            .query(
                &stmt,
                &[
                    &endpoint_id,
                    &now_ms(),
                    &(limit as i64),
                    &lease_ms,
                    &self.replica(),
                ],
            )
            .await?;
        let mut due: Vec<Due> = rows
            .iter()
            .map(|r| Due {
                delivery_id: r.get(0),
                attempts: u32::try_from(r.get::<_, i32>(1)).unwrap_or(0),
                event_id: r.get(2),
                event_type: r.get(3),
                source: r.get(4),
                resource: r.get(5),
                action: r.get(6),
                resource_id: r.get(7),
                payload: r.get(8),
                detected_at_ms: r.get(9),
            })
            .collect();
        // RETURNING keeps no order.
        due.sort_unstable_by_key(|d| d.delivery_id);
        Ok(due)
    }

    /// Hands claimed deliveries back before their lease ends.
    pub(in crate::store) async fn release(&self, ids: &[i64]) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        // Only this replica's own leases: one the leader already handed to another replica
        // stays with that one.
        conn.execute(
            "UPDATE deliveries SET locked_until = 0, locked_by = NULL
             WHERE id = ANY($1::bigint[]) AND status = 'pending' AND locked_by = $2",
            &[&ids, &self.replica()],
        )
        .await?;
        Ok(())
    }

    /// Ends the leases of replicas that are gone: those with no `replicas` row, or whose
    /// heartbeat is older than they said their sends may last. Unlike SQLite's (one process per
    /// file, so every lease at start is a dead one's), live replicas share this database and
    /// their leases stay; the leader's heartbeat sweep does the same again later. Returns how
    /// many leases it ended.
    pub(in crate::store) async fn release_all_leases(&self) -> Result<usize, StoreError> {
        let conn = self.conn().await?;
        let released = conn
            .execute(
                &format!(
                    "UPDATE deliveries SET locked_until = 0, locked_by = NULL
                     WHERE status = 'pending' AND locked_until > 0
                       AND (locked_by IS NULL OR locked_by NOT IN (
                           SELECT id FROM replicas WHERE heartbeat_at + dead_after >= {DB_NOW}))"
                ),
                &[],
            )
            .await?;
        Ok(released as usize)
    }

    /// When the endpoint's next pending delivery is due (ms), if it has one.
    pub(in crate::store) async fn next_due_at(
        &self,
        endpoint_id: i64,
    ) -> Result<Option<i64>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "SELECT min(greatest(next_attempt_at, locked_until)) FROM deliveries
                 WHERE endpoint_id = $1 AND status = 'pending'",
            )
            .await?;
        Ok(conn.query_one(&stmt, &[&endpoint_id]).await?.get(0))
    }

    /// Records a group of attempt outcomes in one transaction. Returns the endpoints it disabled,
    /// with the reason.
    pub(in crate::store) async fn record_outcomes(
        &self,
        batch: &[Recorded],
        disable_after: std::time::Duration,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let mut disabled = Vec::new();
        let attempt = tx
            .prepare_cached(
                "INSERT INTO attempts (delivery_id, at, status, latency_ms, error, response)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::bigint[],
                                      $5::text[], $6::text[])",
            )
            .await?;
        tx.execute(
            &attempt,
            &[
                &batch.iter().map(|r| r.delivery_id).collect::<Vec<_>>(),
                &batch.iter().map(|r| r.at).collect::<Vec<_>>(),
                &batch
                    .iter()
                    .map(|r| r.status.map(i32::from))
                    .collect::<Vec<_>>(),
                &batch.iter().map(|r| r.latency_ms).collect::<Vec<_>>(),
                &batch.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>(),
                &batch
                    .iter()
                    .map(|r| r.response.as_deref())
                    .collect::<Vec<_>>(),
            ],
        )
        .await?;
        let done = tx
            .prepare_cached(
                "UPDATE deliveries d SET status = 'delivered', attempts = d.attempts + 1,
                     last_status = u.status, last_error = NULL, finished_at = u.at,
                     locked_until = 0, locked_by = NULL
                 FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS u(id, status, at)
                 WHERE d.id = u.id",
            )
            .await?;
        let healthy = tx
            .prepare_cached(
                "UPDATE endpoints SET failing_since = NULL
                 WHERE id = ANY($1::bigint[]) AND failing_since IS NOT NULL",
            )
            .await?;
        let retry = tx
            .prepare_cached(
                "UPDATE deliveries SET attempts = attempts + 1, last_status = $2, last_error = $3,
                     next_attempt_at = $4, locked_until = 0, locked_by = NULL WHERE id = $1",
            )
            .await?;
        let failed = tx
            .prepare_cached(
                "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_status = $2,
                     last_error = $3, finished_at = $4, locked_until = 0, locked_by = NULL
                 WHERE id = $1",
            )
            .await?;
        let failing = tx
            .prepare_cached(
                "UPDATE endpoints SET failing_since = coalesce(failing_since, $2) WHERE id = $1
                 RETURNING failing_since, active",
            )
            .await?;
        let disable = tx
            .prepare_cached(
                "UPDATE endpoints SET active = false, disabled_reason = $2, updated_at = $3
                 WHERE id = $1 AND active",
            )
            .await?;
        // Outcomes apply in order (a failure after a success marks the endpoint failing; a
        // success after a failure clears it); a run of successes is one statement.
        let mut run: Vec<&Recorded> = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            let status = r.status.map(i32::from);
            let error = r
                .error
                .clone()
                .or_else(|| r.status.map(|s| format!("HTTP {s}")));
            match &r.next {
                Next::Done => {
                    run.push(r);
                    if batch
                        .get(i + 1)
                        .is_some_and(|n| matches!(n.next, Next::Done))
                    {
                        continue;
                    }
                    let ids: Vec<i64> = run.iter().map(|r| r.delivery_id).collect();
                    let statuses: Vec<Option<i32>> =
                        run.iter().map(|r| r.status.map(i32::from)).collect();
                    let ats: Vec<i64> = run.iter().map(|r| r.at).collect();
                    tx.execute(&done, &[&ids, &statuses, &ats]).await?;
                    let mut endpoints: Vec<i64> = run.iter().map(|r| r.endpoint_id).collect();
                    endpoints.sort_unstable();
                    endpoints.dedup();
                    tx.execute(&healthy, &[&endpoints]).await?;
                    run.clear();
                    continue;
                }
                Next::RetryAt(at) => {
                    tx.execute(
                        &retry,
                        &[&r.delivery_id, &status, &error, &at.timestamp_millis()],
                    )
                    .await?;
                }
                Next::Failed => {
                    tx.execute(&failed, &[&r.delivery_id, &status, &error, &r.at])
                        .await?;
                }
                Next::DisableEndpoint => {
                    tx.execute(&retry, &[&r.delivery_id, &status, &error, &r.at])
                        .await?;
                    let reason = format!(
                        "the endpoint answered {} Gone at {}; resume it once it accepts webhooks again",
                        r.status.unwrap_or(410),
                        event::timestamp(to_time(r.at))
                    );
                    if tx
                        .execute(&disable, &[&r.endpoint_id, &reason, &r.at])
                        .await?
                        > 0
                    {
                        disabled.push((r.endpoint_id, reason));
                    }
                    continue;
                }
            }
            let row = tx.query_one(&failing, &[&r.endpoint_id, &r.at]).await?;
            let (since, active): (i64, bool) = (row.get(0), row.get(1));
            if active && r.at - since > disable_after.as_millis() as i64 {
                let reason = format!(
                    "failing without a success since {} (longer than disable_after); resume it when fixed",
                    event::timestamp(to_time(since))
                );
                if tx
                    .execute(&disable, &[&r.endpoint_id, &reason, &r.at])
                    .await?
                    > 0
                {
                    disabled.push((r.endpoint_id, reason));
                }
            }
        }
        if !disabled.is_empty() {
            let names = load_endpoints(&tx).await?;
            let alerts: Vec<Event> = disabled
                .iter()
                .filter_map(|(id, reason)| {
                    let name = &names.iter().find(|e| e.id == *id)?.spec.name;
                    Some(Event::operational(
                        "endpoint",
                        "disabled",
                        name,
                        serde_json::json!({ "endpoint": name, "reason": reason }),
                        Utc::now(),
                    ))
                })
                .collect();
            if insert_events(&tx, &alerts).await?.deliveries > 0 {
                notify(&tx).await?;
            }
        }
        tx.commit().await?;
        Ok(disabled)
    }

    /// Deliveries, newest first.
    pub(in crate::store) async fn deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT d.id, e.id, e.type, e.resource_id, p.name, d.status, d.attempts,
                        d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.finished_at
                 FROM deliveries d JOIN events e ON e.seq = d.event_seq
                 JOIN endpoints p ON p.id = d.endpoint_id
                 WHERE ($1::text IS NULL OR p.name = $1) AND ($2::text IS NULL OR d.status = $2)
                   AND ($3::text IS NULL OR e.id = $3)
                   AND ($5::int IS NULL OR d.attempts >= $5)
                   AND ($6::int IS NULL OR d.last_status / 100 = $6)
                   AND ($7::bigint IS NULL OR d.created_at >= $7)
                   AND ($8::bigint IS NULL OR d.created_at < $8)
                 ORDER BY d.id DESC LIMIT $4",
                &[
                    &filter.endpoint,
                    &filter.status,
                    &filter.event_id,
                    &(filter.limit as i64),
                    &filter
                        .min_attempts
                        .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
                    &filter.status_class.map(i32::from),
                    &filter.since_ms,
                    &filter.until_ms,
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let status: String = r.get(5);
                DeliveryRow {
                    id: r.get(0),
                    event_id: r.get(1),
                    event_type: r.get(2),
                    resource_id: r.get(3),
                    endpoint: r.get(4),
                    next_attempt_at: (status == "pending").then(|| to_time(r.get(7))),
                    status,
                    attempts: u32::try_from(r.get::<_, i32>(6)).unwrap_or(0),
                    last_status: r
                        .get::<_, Option<i32>>(8)
                        .and_then(|s| u16::try_from(s).ok()),
                    last_error: r.get(9),
                    created_at: to_time(r.get(10)),
                    finished_at: r.get::<_, Option<i64>>(11).map(to_time),
                }
            })
            .collect())
    }

    /// Attempts of a delivery (numeric id) or of every delivery of an event, oldest first.
    pub(in crate::store) async fn attempts(&self, id: &str) -> Result<Vec<AttemptRow>, StoreError> {
        let conn = self.conn().await?;
        let delivery: Option<i64> = id.parse().ok();
        let rows = conn
            .query(
                "SELECT a.delivery_id, p.name, a.at, a.status, a.latency_ms, a.error, a.response
                 FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                 JOIN endpoints p ON p.id = d.endpoint_id JOIN events e ON e.seq = d.event_seq
                 WHERE ($1::bigint IS NOT NULL AND d.id = $1) OR ($1::bigint IS NULL AND e.id = $2)
                 ORDER BY a.id",
                &[&delivery, &id],
            )
            .await?;
        Ok(rows.iter().map(attempt_row).collect())
    }

    /// The attempts of several deliveries, oldest first, in one statement.
    pub(in crate::store) async fn attempts_of(
        &self,
        deliveries: &[i64],
    ) -> Result<Vec<AttemptRow>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT a.delivery_id, p.name, a.at, a.status, a.latency_ms, a.error, a.response
                 FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                 JOIN endpoints p ON p.id = d.endpoint_id
                 WHERE a.delivery_id = ANY($1)
                 ORDER BY a.id",
                &[&deliveries],
            )
            .await?;
        Ok(rows.iter().map(attempt_row).collect())
    }

    /// Puts a failed (or waiting) delivery back in line now, with a fresh retry schedule.
    pub(in crate::store) async fn retry_delivery(&self, id: i64) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let n = tx
            .execute(
                "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $2,
                     locked_until = 0, locked_by = NULL, finished_at = NULL
                 WHERE id = $1 AND status IN ('failed', 'pending')",
                &[&id, &now_ms()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "no failed or pending delivery {id} (see `pollhook deliveries list`)"
            )));
        }
        notify(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Puts every failed delivery (of one endpoint, or all) back in line. Returns how many.
    pub(in crate::store) async fn retry_failed(
        &self,
        endpoint: Option<&str>,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let n = tx
            .execute(
                "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $2,
                     locked_until = 0, locked_by = NULL, finished_at = NULL
                 WHERE status = 'failed'
                   AND ($1::text IS NULL
                        OR endpoint_id = (SELECT id FROM endpoints WHERE name = $1))",
                &[&endpoint, &now_ms()],
            )
            .await?;
        if n > 0 {
            notify(&tx).await?;
        }
        tx.commit().await?;
        Ok(n as usize)
    }

    /// Whether a delivery row exists.
    pub(in crate::store) async fn delivery_exists(&self, id: i64) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        Ok(conn
            .query_opt("SELECT 1 FROM deliveries WHERE id = $1", &[&id])
            .await?
            .is_some())
    }

    /// Counts of deliveries by endpoint and status, for `status`.
    pub(in crate::store) async fn delivery_counts(
        &self,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT p.name, d.status, count(*) FROM deliveries d
                 JOIN endpoints p ON p.id = d.endpoint_id
                 GROUP BY p.name, d.status ORDER BY p.name, d.status",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Per endpoint, the attempts made at or after `since_ms` and how many got a 2xx.
    pub(in crate::store) async fn attempt_counts(
        &self,
        since_ms: i64,
    ) -> Result<Vec<AttemptCount>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "SELECT p.name, count(*),
                        count(*) FILTER (WHERE a.status BETWEEN 200 AND 299)
                 FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                 JOIN endpoints p ON p.id = d.endpoint_id
                 WHERE a.at >= $1 GROUP BY p.name ORDER BY p.name",
            )
            .await?;
        Ok(conn
            .query(&stmt, &[&since_ms])
            .await?
            .iter()
            .map(|r| AttemptCount {
                endpoint: r.get(0),
                attempts: r.get(1),
                succeeded: r.get(2),
            })
            .collect())
    }
}

/// An attempt as the attempts queries select it.
fn attempt_row(r: &tokio_postgres::Row) -> AttemptRow {
    AttemptRow {
        delivery_id: r.get(0),
        endpoint: r.get(1),
        at: to_time(r.get(2)),
        status: r
            .get::<_, Option<i32>>(3)
            .and_then(|s| u16::try_from(s).ok()),
        latency_ms: r.get(4),
        error: r.get(5),
        response: r.get(6),
    }
}
