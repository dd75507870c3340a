//! The outbox half of the store: claiming due deliveries, recording attempts and outcomes, and
//! the operator's actions on endpoints and deliveries.
//!
//! Invariants:
//! - A delivery is due only when no earlier pending delivery exists for the same endpoint and item,
//!   so per endpoint an item's events arrive in detection order (`deliveries_lane` makes it cheap).
//! - A claim is a lease (`locked_until`): work claimed by a process that died is claimed again
//!   once the lease runs out, and delivered again with the same event id. Nothing is lost.
//! - Outcomes are committed in groups, one transaction per group.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, StoredEndpoint, json, now_ms, to_time, write_tx};
use crate::config::Secret;
use crate::endpoint::EndpointSpec;
use crate::event::{self, Event};
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
    /// At most this many, newest first.
    pub limit: usize,
}

/// A change to an endpoint's settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    /// New URL.
    pub url: Option<String>,
    /// New secret (the old one keeps signing until `old_secret_until`).
    pub secret: Option<Secret>,
    /// How long the old secret stays valid after a rotation.
    pub rotation_overlap: Option<std::time::Duration>,
    /// New resource patterns.
    pub resources: Option<Vec<String>>,
    /// New action filter.
    pub actions: Option<crate::endpoint::ActionFilter>,
    /// New signing scheme.
    pub signing: Option<crate::sign::Scheme>,
}

impl Store {
    /// Claims up to `limit` due deliveries of one endpoint, leasing them for `lease_ms`.
    pub fn claim(
        &self,
        endpoint_id: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Due>, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let now = now_ms();
        let due: Vec<Due> = {
            let mut stmt = tx.prepare_cached(
                "SELECT d.id, d.attempts, e.id, e.type, e.source, e.resource, e.action, e.resource_id,
                        e.payload, e.detected_at
                 FROM deliveries d JOIN events e ON e.seq = d.event_seq
                 JOIN endpoints p ON p.id = d.endpoint_id
                 WHERE d.endpoint_id = ?1 AND d.status = 'pending' AND p.active = 1
                   AND d.next_attempt_at <= ?2 AND d.locked_until <= ?2
                   AND NOT EXISTS (
                       SELECT 1 FROM deliveries x
                       WHERE x.endpoint_id = d.endpoint_id AND x.item_key = d.item_key
                         AND x.status = 'pending' AND x.id < d.id)
                 ORDER BY d.id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![endpoint_id, now, limit as i64], |r| {
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
            })?;
            rows.collect::<Result<_, _>>()?
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
    pub fn release(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut conn = self.conn();
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

    /// When the endpoint's next pending delivery is due (ms), if it has one.
    pub fn next_due_at(&self, endpoint_id: i64) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        Ok(conn.query_row(
            "SELECT min(max(next_attempt_at, locked_until)) FROM deliveries
             WHERE endpoint_id = ?1 AND status = 'pending'",
            params![endpoint_id],
            |r| r.get(0),
        )?)
    }

    /// Records a group of attempt outcomes in one transaction. Returns the endpoints it disabled,
    /// with the reason.
    pub fn record_outcomes(
        &self,
        batch: &[Recorded],
        disable_after: std::time::Duration,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let mut conn = self.conn();
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
            let names = super::load_endpoints(&tx)?;
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
            super::insert_events(&tx, &alerts)?;
        }
        tx.commit()?;
        Ok(disabled)
    }

    /// Deliveries, newest first.
    pub fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT d.id, e.id, e.type, e.resource_id, p.name, d.status, d.attempts, d.next_attempt_at,
                    d.last_status, d.last_error, d.created_at, d.finished_at
             FROM deliveries d JOIN events e ON e.seq = d.event_seq JOIN endpoints p ON p.id = d.endpoint_id
             WHERE (?1 IS NULL OR p.name = ?1) AND (?2 IS NULL OR d.status = ?2) AND (?3 IS NULL OR e.id = ?3)
             ORDER BY d.id DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![
                filter.endpoint,
                filter.status,
                filter.event_id,
                filter.limit as i64
            ],
            |r| {
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
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Attempts of a delivery (numeric id) or of every delivery of an event (`evt_…`), oldest first.
    pub fn attempts(&self, id: &str) -> Result<Vec<AttemptRow>, StoreError> {
        let conn = self.conn();
        let delivery: Option<i64> = id.parse().ok();
        let mut stmt = conn.prepare_cached(
            "SELECT a.delivery_id, p.name, a.at, a.status, a.latency_ms, a.error, a.response
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             JOIN endpoints p ON p.id = d.endpoint_id JOIN events e ON e.seq = d.event_seq
             WHERE (?1 IS NOT NULL AND d.id = ?1) OR (?1 IS NULL AND e.id = ?2)
             ORDER BY a.id",
        )?;
        let rows = stmt.query_map(params![delivery, id], |r| {
            Ok(AttemptRow {
                delivery_id: r.get(0)?,
                endpoint: r.get(1)?,
                at: to_time(r.get(2)?),
                status: r.get(3)?,
                latency_ms: r.get(4)?,
                error: r.get(5)?,
                response: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Puts a failed (or waiting) delivery back in line now, with a fresh retry schedule.
    pub fn retry_delivery(&self, id: i64) -> Result<(), StoreError> {
        let conn = self.conn();
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
    pub fn retry_failed(&self, endpoint: Option<&str>) -> Result<usize, StoreError> {
        let conn = self.conn();
        Ok(conn.execute(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?2,
                 locked_until = 0, finished_at = NULL
             WHERE status = 'failed'
               AND (?1 IS NULL OR endpoint_id = (SELECT id FROM endpoints WHERE name = ?1))",
            params![endpoint, now_ms()],
        )?)
    }

    /// Sends an event again (same event id) to one endpoint, or to every active endpoint that
    /// wants it. Returns the endpoints it was queued for.
    pub fn replay(
        &self,
        event_id: &str,
        endpoint: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let event: Option<(i64, String, String, String, String)> = tx
            .query_row(
                "SELECT seq, source, resource, action, resource_id FROM events WHERE id = ?1",
                params![event_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((seq, source, resource, action, resource_id)) = event else {
            return Err(StoreError::NotFound(format!("no event {event_id}")));
        };
        let endpoints = super::load_endpoints(&tx)?;
        let targets: Vec<_> = match endpoint {
            Some(name) => {
                let e = endpoints
                    .into_iter()
                    .find(|e| e.spec.name == name)
                    .ok_or_else(|| StoreError::NotFound(format!("no endpoint {name}")))?;
                vec![e]
            }
            None => endpoints
                .into_iter()
                .filter(|e| e.spec.wants(&source, &resource, &action))
                .collect(),
        };
        let now = now_ms();
        let item_key = format!("{source}/{resource}/{resource_id}");
        for e in &targets {
            tx.execute(
                "INSERT INTO deliveries (event_seq, endpoint_id, item_key, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![seq, e.id, item_key, now],
            )?;
        }
        tx.commit()?;
        Ok(targets.into_iter().map(|e| e.spec.name).collect())
    }

    /// Registers an endpoint at run time.
    pub fn add_endpoint(&self, spec: &EndpointSpec) -> Result<i64, StoreError> {
        let conn = self.conn();
        let now = now_ms();
        conn.execute(
            "INSERT INTO endpoints (name, url, secret, signing, resources, actions, active, headers,
                                    timeout_ms, origin, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'api', ?10, ?10)",
            params![
                spec.name,
                spec.url,
                spec.secret.expose(),
                spec.signing.as_str(),
                json(&spec.resources),
                json(&spec.actions),
                spec.active,
                json(&spec.headers),
                spec.timeout.map(|t| t.as_millis() as i64),
                now
            ],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                StoreError::Conflict(format!("an endpoint named {} already exists", spec.name))
            }
            e => e.into(),
        })?;
        Ok(conn.last_insert_rowid())
    }

    /// Changes an endpoint's settings.
    pub fn update_endpoint(&self, name: &str, patch: &EndpointPatch) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let now = now_ms();
        let exists: Option<String> = tx
            .query_row(
                "SELECT secret FROM endpoints WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(current_secret) = exists else {
            return Err(StoreError::NotFound(format!("no endpoint {name}")));
        };
        if let Some(url) = &patch.url {
            tx.execute(
                "UPDATE endpoints SET url = ?2 WHERE name = ?1",
                params![name, url],
            )?;
        }
        if let Some(secret) = &patch.secret {
            let until = now + patch.rotation_overlap.unwrap_or_default().as_millis() as i64;
            tx.execute(
                "UPDATE endpoints SET secret = ?2, old_secret = ?3, old_secret_until = ?4 WHERE name = ?1",
                params![name, secret.expose(), current_secret, until],
            )?;
        }
        if let Some(resources) = &patch.resources {
            tx.execute(
                "UPDATE endpoints SET resources = ?2 WHERE name = ?1",
                params![name, json(resources)],
            )?;
        }
        if let Some(actions) = &patch.actions {
            tx.execute(
                "UPDATE endpoints SET actions = ?2 WHERE name = ?1",
                params![name, json(actions)],
            )?;
        }
        if let Some(signing) = patch.signing {
            tx.execute(
                "UPDATE endpoints SET signing = ?2 WHERE name = ?1",
                params![name, signing.as_str()],
            )?;
        }
        tx.execute(
            "UPDATE endpoints SET updated_at = ?2 WHERE name = ?1",
            params![name, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Removes an endpoint with its deliveries and attempts.
    pub fn remove_endpoint(&self, name: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        if conn.execute("DELETE FROM endpoints WHERE name = ?1", params![name])? == 0 {
            return Err(StoreError::NotFound(format!("no endpoint {name}")));
        }
        Ok(())
    }

    /// Pauses (`false`) or resumes (`true`) an endpoint; resuming clears a disabled state.
    pub fn set_endpoint_active(&self, name: &str, active: bool) -> Result<(), StoreError> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE endpoints SET active = ?2, updated_at = ?3,
                 disabled_reason = CASE WHEN ?2 THEN NULL ELSE disabled_reason END,
                 failing_since = CASE WHEN ?2 THEN NULL ELSE failing_since END
             WHERE name = ?1",
            params![name, active, now_ms()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("no endpoint {name}")));
        }
        Ok(())
    }

    /// Queues the current snapshot of every resource an endpoint wants, as `created` events for
    /// that endpoint alone, so a new consumer starts from full state. Returns how many.
    pub fn backfill(&self, name: &str) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = write_tx(&mut conn)?;
        let endpoint = super::load_endpoints(&tx)?
            .into_iter()
            .find(|e| e.spec.name == name)
            .ok_or_else(|| StoreError::NotFound(format!("no endpoint {name}")))?;
        let now = Utc::now();
        let mut count = 0;
        {
            let mut items = tx.prepare(
                "SELECT source, resource, item_id, body FROM snapshot ORDER BY source, resource, item_id",
            )?;
            let mut insert_event = tx.prepare_cached(
                "INSERT INTO events (id, type, source, resource, action, resource_id, detected_at, payload)
                 VALUES (?1, ?2, ?3, ?4, 'created', ?5, ?6, ?7)",
            )?;
            let mut insert_delivery = tx.prepare_cached(
                "INSERT INTO deliveries (event_seq, endpoint_id, item_key, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )?;
            let mut rows = items.query([])?;
            while let Some(row) = rows.next()? {
                let (source, resource, id, body): (String, String, String, String) =
                    (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                if !endpoint.spec.wants(&source, &resource, "created") {
                    continue;
                }
                let data = serde_json::from_str(&body)
                    .map_err(|e| StoreError::Corrupt(format!("snapshot body of {id}: {e}")))?;
                let event = Event::from_change(
                    &source,
                    &resource,
                    &crate::diff::Change::Created(crate::normalize::Record {
                        id: id.clone(),
                        body: data,
                        hash: [0; 32],
                        raw: None,
                    }),
                    None,
                    now,
                );
                insert_event.execute(params![
                    event.id,
                    event.kind,
                    source,
                    resource,
                    id,
                    now.timestamp_millis(),
                    event.to_json()
                ])?;
                let seq = tx.last_insert_rowid();
                insert_delivery.execute(params![
                    seq,
                    endpoint.id,
                    format!("{source}/{resource}/{id}"),
                    now.timestamp_millis()
                ])?;
                count += 1;
            }
        }
        tx.commit()?;
        Ok(count)
    }

    /// One endpoint by row id.
    pub fn endpoint(&self, id: i64) -> Result<Option<StoredEndpoint>, StoreError> {
        let conn = self.conn();
        Ok(super::load_endpoints(&conn)?
            .into_iter()
            .find(|e| e.id == id))
    }

    /// One endpoint by name.
    pub fn endpoint_named(&self, name: &str) -> Result<StoredEndpoint, StoreError> {
        let conn = self.conn();
        super::load_endpoints(&conn)?
            .into_iter()
            .find(|e| e.spec.name == name)
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "no endpoint {name} (see `pollhook endpoints list`)"
                ))
            })
    }

    /// Whether a delivery row exists.
    pub fn delivery_exists(&self, id: i64) -> Result<bool, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT 1 FROM deliveries WHERE id = ?1",
                params![id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// One event by id.
    pub fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let conn = self.conn();
        let payload: Option<String> = conn
            .query_row(
                "SELECT payload FROM events WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        payload
            .map(|p| {
                serde_json::from_str(&p)
                    .map_err(|e| StoreError::Corrupt(format!("event {id}: {e}")))
            })
            .transpose()
    }

    /// Counts of deliveries by status, for `status`.
    pub fn delivery_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT p.name, d.status, count(*) FROM deliveries d JOIN endpoints p ON p.id = d.endpoint_id
             GROUP BY p.name, d.status ORDER BY p.name, d.status",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
