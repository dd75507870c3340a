//! Events in SQLite: the outbox rows, and the deliveries written with them.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::endpoints::load_endpoints;
use super::{Db, rows, write_tx};
use crate::event::Event;
use crate::store::StoredEndpoint;
use crate::store::{CommitSummary, EventFilter, StoreError, now_ms};

impl Db {
    /// Events, newest first, with their sequence numbers.
    pub(in crate::store) fn events(
        &self,
        filter: &EventFilter,
    ) -> Result<Vec<(i64, Event)>, StoreError> {
        let conn = self.conn()?;
        let (source, resource) = match filter.resource.as_deref().map(|r| r.split_once('.')) {
            Some(Some((s, r))) => (Some(s.to_owned()), Some(r.to_owned())),
            Some(None) => (filter.source.clone(), filter.resource.clone()),
            None => (filter.source.clone(), None),
        };
        rows(
            &conn,
            "SELECT seq, payload FROM events
             WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR resource = ?2)
               AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR resource_id = ?4)
               AND (?5 IS NULL OR seq < ?5)
               AND (?7 IS NULL OR detected_at >= ?7) AND (?8 IS NULL OR detected_at < ?8)
             ORDER BY seq DESC LIMIT ?6",
            params![
                source,
                resource,
                filter.action,
                filter.resource_id,
                filter.before_seq,
                filter.limit as i64,
                filter.since_ms,
                filter.until_ms
            ],
            |r| {
                let seq: i64 = r.get(0)?;
                let payload: String = r.get(1)?;
                let event = serde_json::from_str(&payload)
                    .map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?;
                Ok((seq, event))
            },
        )
    }

    /// One event by id.
    pub(in crate::store) fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let conn = self.conn()?;
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

    /// Sends an event again (same event id) to one endpoint, or to every endpoint that had a
    /// delivery of it: one added since did not exist when the change happened. Returns the
    /// endpoints it was queued for.
    pub(in crate::store) fn replay(
        &self,
        event_id: &str,
        endpoint: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let event: Option<(i64, String, String, String)> = tx
            .query_row(
                "SELECT seq, source, resource, resource_id FROM events WHERE id = ?1",
                params![event_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((seq, source, resource, resource_id)) = event else {
            return Err(StoreError::NotFound(format!("no event {event_id}")));
        };
        let endpoints = load_endpoints(&tx)?;
        let targets: Vec<_> = match endpoint {
            Some(name) => {
                let e = endpoints
                    .into_iter()
                    .find(|e| e.spec.name == name)
                    .ok_or_else(|| StoreError::NotFound(format!("no endpoint {name}")))?;
                vec![e]
            }
            None => {
                let had: HashSet<i64> = rows(
                    &tx,
                    "SELECT DISTINCT endpoint_id FROM deliveries WHERE event_seq = ?1",
                    params![seq],
                    |r| Ok(r.get(0)?),
                )?;
                endpoints
                    .into_iter()
                    .filter(|e| had.contains(&e.id))
                    .collect()
            }
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
    /// Writes `events` with one delivery each, for the endpoint with row id `endpoint_id` alone,
    /// in one transaction. Returns how many.
    pub(in crate::store) fn queue_for_endpoint(
        &self,
        endpoint_id: i64,
        events: &[Event],
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT id FROM endpoints WHERE id = ?1",
                params![endpoint_id],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!(
                "no endpoint with id {endpoint_id} (removed meanwhile?)"
            )));
        }
        write_events(&tx, events, |_| vec![endpoint_id])?;
        tx.commit()?;
        Ok(events.len())
    }
}

/// Inserts events and a delivery per matching endpoint, inside the caller's transaction.
pub(super) fn insert_events(
    tx: &Connection,
    events: &[Event],
) -> Result<CommitSummary, StoreError> {
    if events.is_empty() {
        return Ok(CommitSummary::default());
    }
    // Paused and disabled endpoints get their deliveries too; they wait until it is resumed.
    let endpoints: Vec<StoredEndpoint> = load_endpoints(tx)?;
    write_events(tx, events, |event| {
        (endpoints.iter())
            .filter(|e| e.spec.wants(&event.source, &event.resource, &event.action))
            .map(|e| e.id)
            .collect()
    })
}

/// Inserts `events`, each with a delivery for every endpoint id `endpoints_for` names, inside
/// the caller's transaction.
fn write_events(
    tx: &Connection,
    events: &[Event],
    mut endpoints_for: impl FnMut(&Event) -> Vec<i64>,
) -> Result<CommitSummary, StoreError> {
    let now = now_ms();
    let mut summary = CommitSummary::default();
    let mut insert_event = tx.prepare_cached(
        "INSERT INTO events (id, type, source, resource, action, resource_id, detected_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut insert_delivery = tx.prepare_cached(
        "INSERT INTO deliveries (event_seq, endpoint_id, item_key, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )?;
    for event in events {
        insert_event.execute(params![
            event.id,
            event.kind,
            event.source,
            event.resource,
            event.action,
            event.resource_id,
            now,
            event.to_json()
        ])?;
        let seq = tx.last_insert_rowid();
        summary.events += 1;
        let item_key = format!("{}/{}/{}", event.source, event.resource, event.resource_id);
        for endpoint_id in endpoints_for(event) {
            insert_delivery.execute(params![seq, endpoint_id, item_key, now])?;
            summary.deliveries += 1;
        }
    }
    Ok(summary)
}
