//! The outbox in SQLite: claiming due deliveries with a lease, recording outcomes in groups,
//! and the operator's retries.
//!
//! Invariants:
//! - A delivery is due only when no earlier pending delivery exists for the same endpoint and item,
//!   so per endpoint an item's events arrive in detection order (`deliveries_lane` makes it cheap).
//! - A claim is a lease (`locked_until`): work claimed by a process that died is claimed again
//!   once the lease runs out, and delivered again with the same event id. Nothing is lost. A
//!   starting `run` holds the database's run lock, so it ends every lease at once
//!   ([`Db::release_all_leases`]): they can only belong to a process that died.
//! - Outcomes are committed in groups, one transaction per group.

use chrono::Utc;
use rusqlite::{OptionalExtension, params};

use super::endpoints::load_endpoints;
use super::events::insert_events;
use super::{Db, json, rows, to_time, write_tx};
use crate::event::{self, Event};
use crate::retry::Next;
use crate::store::{
    AttemptCount, AttemptRow, DeliveryFilter, DeliveryRow, Due, Recorded, StoreError, now_ms,
};

impl Db {
    /// Claims up to `limit` due deliveries of one endpoint, leasing them for `lease_ms`.
    pub(in crate::store) fn claim(
        &self,
        endpoint_id: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Due>, StoreError> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let now = now_ms();
        let due: Vec<Due> = {
            rows(&tx, "SELECT d.id, d.attempts, e.id, e.type, e.source, e.resource, e.action, e.resource_id,
                        e.payload, e.detected_at
                 FROM deliveries d JOIN events e ON e.seq = d.event_seq
                 JOIN endpoints p ON p.id = d.endpoint_id
                 WHERE d.endpoint_id = ?1 AND d.status = 'pending' AND p.active = 1
                   AND d.next_attempt_at <= ?2 AND d.locked_until <= ?2
                   AND NOT EXISTS (
                       SELECT 1 FROM deliveries x
                       WHERE x.endpoint_id = d.endpoint_id AND x.item_key = d.item_key
                         AND x.status = 'pending' AND x.id < d.id)
                 ORDER BY d.id LIMIT ?3", params![endpoint_id, now, limit as i64], |r| {
                Ok(Due {
                    delivery_id: r.get(0)?,
                    attempts: r.get(1)?,
                    event_id: r.get(2)?,
                    event_type: r.get(3)?,
                    source: r.get(4)?,
                    resource: r.get(5)?,
                    action: r.get(6)?,
                    resource_id: r.get(7)?,
                    payload: r.get(8)?,
                    detected_at_ms: r.get(9)?,
                })
            })?
        };
        {
            let mut lease =
                tx.prepare_cached("UPDATE deliveries SET locked_until = ?2 WHERE id = ?1")?;
            for d in &due {
                lease.execute(params![d.delivery_id, now + lease_ms])?;
            }
        }
        tx.commit()?;
        Ok(due)
    }

    /// Hands claimed deliveries back before their lease ends (a lane stopping with a queue).
    pub(in crate::store) fn release(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        {
            let mut release = tx.prepare_cached(
                "UPDATE deliveries SET locked_until = 0 WHERE id = ?1 AND status = 'pending'",
            )?;
            for id in ids {
                release.execute(params![id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Ends every lease in the database; returns how many there were.
    pub(in crate::store) fn release_all_leases(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let released = tx.execute(
            "UPDATE deliveries SET locked_until = 0 WHERE status = 'pending' AND locked_until > 0",
            [],
        )?;
        tx.commit()?;
        Ok(released)
    }

    /// When the endpoint's next pending delivery is due (ms), if it has one.
    pub(in crate::store) fn next_due_at(
        &self,
        endpoint_id: i64,
    ) -> Result<Option<i64>, StoreError> {
        let conn = self.conn()?;
        Ok(conn.query_row(
            "SELECT min(max(next_attempt_at, locked_until)) FROM deliveries
             WHERE endpoint_id = ?1 AND status = 'pending'",
            params![endpoint_id],
            |r| r.get(0),
        )?)
    }

    /// Records a group of attempt outcomes in one transaction. Returns the endpoints it disabled,
    /// with the reason.
    pub(in crate::store) fn record_outcomes(
        &self,
        batch: &[Recorded],
        disable_after: std::time::Duration,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let mut disabled = Vec::new();
        {
            let mut attempt = tx.prepare_cached(
                "INSERT INTO attempts (delivery_id, at, status, latency_ms, error, response)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut done = tx.prepare_cached(
                "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, last_status = ?2,
                     last_error = NULL, finished_at = ?3, locked_until = 0 WHERE id = ?1",
            )?;
            let mut retry = tx.prepare_cached(
                "UPDATE deliveries SET attempts = attempts + 1, last_status = ?2, last_error = ?3,
                     next_attempt_at = ?4, locked_until = 0 WHERE id = ?1",
            )?;
            let mut failed = tx.prepare_cached(
                "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_status = ?2,
                     last_error = ?3, finished_at = ?4, locked_until = 0 WHERE id = ?1",
            )?;
            let mut healthy =
                tx.prepare_cached("UPDATE endpoints SET failing_since = NULL WHERE id = ?1")?;
            let mut failing = tx.prepare_cached(
                "UPDATE endpoints SET failing_since = coalesce(failing_since, ?2) WHERE id = ?1
                 RETURNING failing_since, active",
            )?;
            let mut disable = tx.prepare_cached(
                "UPDATE endpoints SET active = 0, disabled_reason = ?2, updated_at = ?3
                 WHERE id = ?1 AND active = 1",
            )?;
            for r in batch {
                attempt.execute(params![
                    r.delivery_id,
                    r.at,
                    r.status,
                    r.latency_ms,
                    r.error,
                    r.response
                ])?;
                let error = r
                    .error
                    .clone()
                    .or_else(|| r.status.map(|s| format!("HTTP {s}")));
                match &r.next {
                    Next::Done => {
                        done.execute(params![r.delivery_id, r.status, r.at])?;
                        healthy.execute(params![r.endpoint_id])?;
                        continue;
                    }
                    Next::RetryAt(at) => {
                        retry.execute(params![
                            r.delivery_id,
                            r.status,
                            error,
                            at.timestamp_millis()
                        ])?;
                    }
                    Next::Failed => {
                        failed.execute(params![r.delivery_id, r.status, error, r.at])?;
                    }
                    Next::DisableEndpoint => {
                        retry.execute(params![r.delivery_id, r.status, error, r.at])?;
                        let reason = format!(
                            "the endpoint answered {} Gone at {}; resume it once it accepts webhooks again",
                            r.status.unwrap_or(410),
                            event::timestamp(to_time(r.at))
                        );
                        if disable.execute(params![r.endpoint_id, reason, r.at])? > 0 {
                            disabled.push((r.endpoint_id, reason));
                        }
                        continue;
                    }
                }
                let (since, active): (i64, bool) = failing
                    .query_row(params![r.endpoint_id, r.at], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?;
                if active && r.at - since > disable_after.as_millis() as i64 {
                    let reason = format!(
                        "failing without a success since {} (longer than disable_after); resume it when fixed",
                        event::timestamp(to_time(since))
                    );
                    if disable.execute(params![r.endpoint_id, reason, r.at])? > 0 {
                        disabled.push((r.endpoint_id, reason));
                    }
                }
            }
        }
        if !disabled.is_empty() {
            let names = load_endpoints(&tx)?;
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
            insert_events(&tx, &alerts)?;
        }
        tx.commit()?;
        Ok(disabled)
    }

    /// Deliveries, newest first.
    pub(in crate::store) fn deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let conn = self.conn()?;
        rows(&conn, "SELECT d.id, e.id, e.type, e.resource_id, p.name, d.status, d.attempts, d.next_attempt_at,
                    d.last_status, d.last_error, d.created_at, d.finished_at
             FROM deliveries d JOIN events e ON e.seq = d.event_seq JOIN endpoints p ON p.id = d.endpoint_id
             WHERE (?1 IS NULL OR p.name = ?1) AND (?2 IS NULL OR d.status = ?2) AND (?3 IS NULL OR e.id = ?3)
               AND (?5 IS NULL OR d.attempts >= ?5) AND (?6 IS NULL OR d.last_status / 100 = ?6)
               AND (?7 IS NULL OR d.created_at >= ?7) AND (?8 IS NULL OR d.created_at < ?8)
             ORDER BY d.id DESC LIMIT ?4", params![
                filter.endpoint,
                filter.status,
                filter.event_id,
                filter.limit as i64,
                filter.min_attempts,
                filter.status_class,
                filter.since_ms,
                filter.until_ms,
            ], |r| {
                let status: String = r.get(5)?;
                Ok(DeliveryRow {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    event_type: r.get(2)?,
                    resource_id: r.get(3)?,
                    endpoint: r.get(4)?,
                    next_attempt_at: (status == "pending").then(|| to_time(r.get(7).unwrap_or(0))),
                    status,
                    attempts: r.get(6)?,
                    last_status: r.get(8)?,
                    last_error: r.get(9)?,
                    created_at: to_time(r.get(10)?),
                    finished_at: r.get::<_, Option<i64>>(11)?.map(to_time),
                })
            })
    }

    /// Attempts of a delivery (numeric id) or of every delivery of an event (`evt_…`), oldest first.
    pub(in crate::store) fn attempts(&self, id: &str) -> Result<Vec<AttemptRow>, StoreError> {
        let conn = self.conn()?;
        let delivery: Option<i64> = id.parse().ok();
        rows(
            &conn,
            "SELECT a.delivery_id, p.name, a.at, a.status, a.latency_ms, a.error, a.response
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             JOIN endpoints p ON p.id = d.endpoint_id JOIN events e ON e.seq = d.event_seq
             WHERE (?1 IS NOT NULL AND d.id = ?1) OR (?1 IS NULL AND e.id = ?2)
             ORDER BY a.id",
            params![delivery, id],
            attempt_row,
        )
    }

    /// The attempts of several deliveries, oldest first, in one statement.
    pub(in crate::store) fn attempts_of(
        &self,
        deliveries: &[i64],
    ) -> Result<Vec<AttemptRow>, StoreError> {
        let conn = self.conn()?;
        rows(
            &conn,
            "SELECT a.delivery_id, p.name, a.at, a.status, a.latency_ms, a.error, a.response
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             JOIN endpoints p ON p.id = d.endpoint_id
             WHERE a.delivery_id IN (SELECT value FROM json_each(?1))
             ORDER BY a.id",
            params![json(deliveries)],
            attempt_row,
        )
    }

    /// Puts a failed (or waiting) delivery back in line now, with a fresh retry schedule.
    pub(in crate::store) fn retry_delivery(&self, id: i64) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let n = conn.execute(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?2,
                 locked_until = 0, finished_at = NULL
             WHERE id = ?1 AND status IN ('failed', 'pending')",
            params![id, now_ms()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "no failed or pending delivery {id} (see `pollhook deliveries list`)"
            )));
        }
        Ok(())
    }

    /// Puts every failed delivery (of one endpoint, or all) back in line. Returns how many.
    pub(in crate::store) fn retry_failed(
        &self,
        endpoint: Option<&str>,
    ) -> Result<usize, StoreError> {
        let conn = self.conn()?;
        Ok(conn.execute(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?2,
                 locked_until = 0, finished_at = NULL
             WHERE status = 'failed'
               AND (?1 IS NULL OR endpoint_id = (SELECT id FROM endpoints WHERE name = ?1))",
            params![endpoint, now_ms()],
        )?)
    }

    /// Whether a delivery row exists.
    pub(in crate::store) fn delivery_exists(&self, id: i64) -> Result<bool, StoreError> {
        let conn = self.conn()?;
        Ok(conn
            .query_row(
                "SELECT 1 FROM deliveries WHERE id = ?1",
                params![id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Counts of deliveries by status, for `status`.
    pub(in crate::store) fn delivery_counts(
        &self,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let conn = self.conn()?;
        rows(&conn, "SELECT p.name, d.status, count(*) FROM deliveries d JOIN endpoints p ON p.id = d.endpoint_id
             GROUP BY p.name, d.status ORDER BY p.name, d.status", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    }

    pub(in crate::store) fn attempt_counts(
        &self,
        since_ms: i64,
    ) -> Result<Vec<AttemptCount>, StoreError> {
        let conn = self.conn()?;
        rows(&conn, "SELECT p.name, count(*), coalesce(sum(a.status BETWEEN 200 AND 299), 0)
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN endpoints p ON p.id = d.endpoint_id
             WHERE a.at >= ?1 GROUP BY p.name ORDER BY p.name", [since_ms], |r| {
            Ok(AttemptCount {
                endpoint: r.get(0)?,
                attempts: r.get(1)?,
                succeeded: r.get(2)?,
            })
        })
    }
}

/// An attempt as the attempts queries select it.
fn attempt_row(r: &rusqlite::Row<'_>) -> Result<AttemptRow, StoreError> {
    Ok(AttemptRow {
        delivery_id: r.get(0)?,
        endpoint: r.get(1)?,
        at: to_time(r.get(2)?),
        status: r.get(3)?,
        latency_ms: r.get(4)?,
        error: r.get(5)?,
        response: r.get(6)?,
    })
}
