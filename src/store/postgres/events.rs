//! Events in PostgreSQL: the outbox rows, and the deliveries written with them.
//!
//! Invariant: an item's events and deliveries get their ids while its resource's row is locked
//! (a poll's commit, a replay), so per endpoint and item, a later id is a later detection.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::GenericClient;

use super::Db;
use super::endpoints::load_endpoints;
use super::snapshot::notify;
use crate::event::Event;
use crate::store::{CommitSummary, EventFilter, StoreError, StoredEndpoint, now_ms};

impl Db {
    /// Events, newest first, with their sequence numbers.
    pub(in crate::store) async fn events(
        &self,
        filter: &EventFilter,
    ) -> Result<Vec<(i64, Event)>, StoreError> {
        let conn = self.conn().await?;
        let (source, resource) = match filter.resource.as_deref().map(|r| r.split_once('.')) {
            Some(Some((s, r))) => (Some(s.to_owned()), Some(r.to_owned())),
            Some(None) => (filter.source.clone(), filter.resource.clone()),
            None => (filter.source.clone(), None),
        };
        let stmt = conn
            .prepare_cached(
                "SELECT seq, payload FROM events
                 WHERE ($1::text IS NULL OR source = $1) AND ($2::text IS NULL OR resource = $2)
                   AND ($3::text IS NULL OR action = $3) AND ($4::text IS NULL OR resource_id = $4)
                   AND ($5::bigint IS NULL OR seq < $5)
                   AND ($7::bigint IS NULL OR detected_at >= $7)
                   AND ($8::bigint IS NULL OR detected_at < $8)
                 ORDER BY seq DESC LIMIT $6",
            )
            .await?;
        let rows = conn
            .query(
                &stmt,
                &[
                    &source,
                    &resource,
                    &filter.action,
                    &filter.resource_id,
                    &filter.before_seq,
                    &(filter.limit as i64),
                    &filter.since_ms,
                    &filter.until_ms,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.get(0);
                let event = serde_json::from_str(r.get(1))
                    .map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?;
                Ok((seq, event))
            })
            .collect()
    }

    /// One event by id.
    pub(in crate::store) async fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt("SELECT payload FROM events WHERE id = $1", &[&id])
            .await?;
        row.map(|r| {
            serde_json::from_str(r.get(0))
                .map_err(|e| StoreError::Corrupt(format!("event {id}: {e}")))
        })
        .transpose()
    }

    /// Sends an event again (same event id) to one endpoint, or to every active endpoint that
    /// wants it. Returns the endpoints it was queued for.
    pub(in crate::store) async fn replay(
        &self,
        event_id: &str,
        endpoint: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT seq, source, resource, resource_id FROM events WHERE id = $1",
                &[&event_id],
            )
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("no event {event_id}")));
        };
        let (seq, source, resource, resource_id): (i64, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        // Ordered after any commit of the same resource in flight (see the module's invariant).
        tx.execute(
            "SELECT 1 FROM resources WHERE source = $1 AND resource = $2 FOR UPDATE",
            &[&source, &resource],
        )
        .await?;
        let endpoints = load_endpoints(&tx).await?;
        let targets: Vec<_> = match endpoint {
            Some(name) => {
                let e = endpoints
                    .into_iter()
                    .find(|e| e.spec.name == name)
                    .ok_or_else(|| StoreError::NotFound(format!("no endpoint {name}")))?;
                vec![e]
            }
            // Every endpoint that had a delivery of it: one added since did not exist when the
            // change happened.
            None => {
                let had: HashSet<i64> = tx
                    .query(
                        "SELECT DISTINCT endpoint_id FROM deliveries WHERE event_seq = $1",
                        &[&seq],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
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
                 VALUES ($1, $2, $3, $4, $4)",
                &[&seq, &e.id, &item_key, &now],
            )
            .await?;
        }
        if !targets.is_empty() {
            notify(&tx).await?;
        }
        tx.commit().await?;
        Ok(targets.into_iter().map(|e| e.spec.name).collect())
    }
}

/// Inserts events and a delivery per matching endpoint, inside the caller's transaction: two
/// statements however many events.
pub(super) async fn insert_events(
    tx: &impl GenericClient,
    events: &[Event],
) -> Result<CommitSummary, StoreError> {
    if events.is_empty() {
        return Ok(CommitSummary::default());
    }
    // Paused and disabled endpoints get their deliveries too; they wait until it is resumed.
    let endpoints = load_endpoints(tx).await?;
    insert_events_for(tx, events, &endpoints, now_ms()).await
}

/// [`insert_events`] for the given endpoints.
pub(super) async fn insert_events_for(
    tx: &impl GenericClient,
    events: &[Event],
    endpoints: &[StoredEndpoint],
    now: i64,
) -> Result<CommitSummary, StoreError> {
    let mut summary = CommitSummary::default();
    if events.is_empty() {
        return Ok(summary);
    }
    let column = |f: fn(&Event) -> &str| events.iter().map(f).collect::<Vec<&str>>();
    let payloads: Vec<String> = events.iter().map(Event::to_json).collect();
    // `ORDER BY n` hands the rows to the insert in the order given, so their identities grow in
    // that order: the order the events were detected in.
    let stmt = tx
        .prepare_cached(
            "INSERT INTO events (id, type, source, resource, action, resource_id, detected_at, payload)
             SELECT u.id, u.type, u.source, u.resource, u.action, u.resource_id, $7, u.payload
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $8::text[])
                  WITH ORDINALITY AS u(id, type, source, resource, action, resource_id, payload, n)
             ORDER BY u.n
             RETURNING id, seq",
        )
        .await?;
    let rows = tx
        .query(
            &stmt,
            &[
                &column(|e| &e.id),
                &column(|e| &e.kind),
                &column(|e| &e.source),
                &column(|e| &e.resource),
                &column(|e| &e.action),
                &column(|e| &e.resource_id),
                &now,
                &payloads,
            ],
        )
        .await?;
    let seqs: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    summary.events = events.len();
    let (mut event_seqs, mut endpoint_ids, mut item_keys) = (Vec::new(), Vec::new(), Vec::new());
    for event in events {
        let Some(&seq) = seqs.get(&event.id) else {
            return Err(StoreError::Corrupt(format!(
                "event {} was not returned by its insert",
                event.id
            )));
        };
        let item_key = format!("{}/{}/{}", event.source, event.resource, event.resource_id);
        for endpoint in endpoints {
            if endpoint
                .spec
                .wants(&event.source, &event.resource, &event.action)
            {
                event_seqs.push(seq);
                endpoint_ids.push(endpoint.id);
                item_keys.push(item_key.clone());
            }
        }
    }
    if !event_seqs.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO deliveries (event_seq, endpoint_id, item_key, next_attempt_at, created_at)
                 SELECT u.seq, u.endpoint, u.key, $4, $4
                 FROM unnest($1::bigint[], $2::bigint[], $3::text[]) WITH ORDINALITY
                      AS u(seq, endpoint, key, n)
                 ORDER BY u.n",
            )
            .await?;
        summary.deliveries = tx
            .execute(&stmt, &[&event_seqs, &endpoint_ids, &item_keys, &now])
            .await? as usize;
    }
    Ok(summary)
}
