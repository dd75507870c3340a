//! Snapshot rows and poll state in PostgreSQL: what a poll reads before it fetches, and the one
//! transaction that commits what it found.
//!
//! Invariant: a commit locks its resource's row (`FOR UPDATE`) before anything else, then checks
//! the version its poll read. So two replicas' commits of one resource run one after the other,
//! the second finds the version moved and writes nothing ([`StoreError::VersionConflict`]), and
//! the ids of an item's events and deliveries grow in commit order, which the delivery claim's
//! head-of-line rule relies on.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::GenericClient;
use futures_util::{StreamExt, pin_mut};

use super::events::insert_events;
use super::{Db, NOTIFY_CHANNEL, json, to_time};
use crate::diff::{Known, Snapshot};
use crate::event::{Event, Payload};
use crate::normalize::{Hash, RawHash};
use crate::store::{
    CommitSummary, NoUpserts, PageRecord, PollCommit, PollFailure, Prior, ResourceState,
    ResourceStatus, StoreError, Upsert, Upserts,
};

/// Snapshot rows written per statement.
const UPSERT_CHUNK: usize = 1000;

/// One snapshot row, owned, on its way from the poll's spill file to the database.
struct OwnedUpsert {
    id: String,
    hash: Vec<u8>,
    raw: Option<Vec<u8>>,
    body: String,
}

impl Db {
    /// What a poll needs before it fetches, on one connection.
    pub(in crate::store) async fn prior(
        &self,
        source: &str,
        resource: &str,
        pages: bool,
        snapshot_up_to: i64,
    ) -> Result<Prior, StoreError> {
        let conn = self.conn().await?;
        let state = resource_state(&conn, source, resource).await?;
        let pages = if pages {
            load_pages(&conn, source, resource).await?
        } else {
            HashMap::new()
        };
        let pages = Arc::new(pages);
        let snapshot = if state.has_baseline && state.item_count <= snapshot_up_to {
            Some(snapshot_state(&conn, source, resource, state.item_count).await?)
        } else {
            None
        };
        Ok(Prior {
            state,
            pages,
            snapshot,
            remembered: false,
        })
    }

    /// What the store knows of a resource before polling it.
    pub(in crate::store) async fn resource_state(
        &self,
        source: &str,
        resource: &str,
    ) -> Result<ResourceState, StoreError> {
        let conn = self.conn().await?;
        resource_state(&conn, source, resource).await
    }

    /// The snapshot of a resource: `id → what is known of it`.
    pub(in crate::store) async fn snapshot_state(
        &self,
        source: &str,
        resource: &str,
        expected: i64,
    ) -> Result<Snapshot, StoreError> {
        let conn = self.conn().await?;
        snapshot_state(&conn, source, resource, expected).await
    }

    /// What the snapshot holds of the items `ids`: those of them it holds.
    pub(in crate::store) async fn snapshot_of(
        &self,
        source: &str,
        resource: &str,
        ids: &[String],
    ) -> Result<Snapshot, StoreError> {
        let conn = self.conn().await?;
        snapshot_of(&conn, source, resource, ids).await
    }

    /// The snapshot of a resource as `(id, hash)` pairs.
    pub(in crate::store) async fn snapshot_hashes(
        &self,
        source: &str,
        resource: &str,
    ) -> Result<Vec<(String, Hash)>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT item_id, hash FROM snapshot WHERE source = $1 AND resource = $2
                 ORDER BY item_id",
                &[&source, &resource],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.get(0);
                let hash: Hash = r.get::<_, &[u8]>(1).try_into().map_err(|_| {
                    StoreError::Corrupt(format!("snapshot hash of {source}.{resource}/{id}"))
                })?;
                Ok((id, hash))
            })
            .collect()
    }

    /// The stored bodies of some items, for `previous` and `changes`.
    pub(in crate::store) async fn snapshot_bodies(
        &self,
        source: &str,
        resource: &str,
        ids: &[String],
    ) -> Result<HashMap<String, Payload>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "SELECT item_id, body FROM snapshot
                 WHERE source = $1 AND resource = $2 AND item_id = ANY($3::text[])",
            )
            .await?;
        let rows = conn.query(&stmt, &[&source, &resource, &ids]).await?;
        rows.iter()
            .map(|r| {
                let id: String = r.get(0);
                let payload = Payload::from_json(r.get(1))
                    .map_err(|e| StoreError::Corrupt(format!("snapshot body of {id}: {e}")))?;
                Ok((id, payload))
            })
            .collect()
    }

    /// Up to `limit` items of a resource's snapshot with ids after `after`, in id order, with
    /// their bodies. Ids compare byte by byte (`COLLATE "C"`), as SQLite compares them, whatever
    /// the database's collation.
    pub(in crate::store) async fn snapshot_items(
        &self,
        source: &str,
        resource: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Payload)>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                r#"SELECT item_id, body FROM snapshot
                   WHERE source = $1 AND resource = $2
                     AND ($3::text IS NULL OR item_id COLLATE "C" > $3::text COLLATE "C")
                   ORDER BY item_id COLLATE "C" LIMIT $4"#,
            )
            .await?;
        let rows = conn
            .query(&stmt, &[&source, &resource, &after, &(limit as i64)])
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.get(0);
                let payload = Payload::from_json(r.get(1)).map_err(|e| {
                    StoreError::Corrupt(format!("snapshot body of {source}.{resource}/{id}: {e}"))
                })?;
                Ok((id, payload))
            })
            .collect()
    }

    /// Writes a poll's snapshot changes, events and deliveries, and the poll's outcome, in one
    /// transaction.
    ///
    /// A poll that wrote nothing but its own bookkeeping commits with `synchronous_commit = off`,
    /// SQLite's relaxed commit: a server crash may forget the last few such commits, all or none
    /// of each, never a change.
    pub(in crate::store) async fn commit_poll(
        &self,
        commit: &mut PollCommit,
    ) -> Result<CommitSummary, StoreError> {
        // `commit` stays a `&mut`: a shared `&PollCommit` held across an await is not `Send`
        // (its upserts are `Send` but not `Sync`).
        let upserts = std::mem::replace(&mut commit.upserts, Box::new(NoUpserts));
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let now = commit.at.timestamp_millis();
        let insert = tx
            .prepare_cached(
                "INSERT INTO resources (source, resource) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .await?;
        tx.execute(&insert, &[&commit.source, &commit.resource])
            .await?;
        let lock = tx
            .prepare_cached(
                "SELECT version, consecutive_errors, held_deletes, baseline_at IS NOT NULL
                 FROM resources WHERE source = $1 AND resource = $2 FOR UPDATE",
            )
            .await?;
        let row = tx
            .query_one(&lock, &[&commit.source, &commit.resource])
            .await?;
        let (version, failures, was_held, had_baseline): (i64, i64, i64, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if version != commit.version {
            // Dropping `tx` rolls back: nothing of this poll is written.
            return Err(StoreError::VersionConflict(format!(
                "another poll of {}.{} committed while this one ran; this one wrote nothing",
                commit.source, commit.resource
            )));
        }
        let upserted = write_upserts(&tx, &commit.source, &commit.resource, upserts, now).await?;
        let s = &commit.source;
        let r = &commit.resource;
        if !commit.rehashed.is_empty() {
            let (ids, raws): (Vec<&str>, Vec<&[u8]>) = commit
                .rehashed
                .iter()
                .map(|(id, raw)| (id.as_str(), &raw[..]))
                .unzip();
            let stmt = tx
                .prepare_cached(
                    "UPDATE snapshot s SET raw_hash = u.raw
                     FROM unnest($3::text[], $4::bytea[]) AS u(id, raw)
                     WHERE s.source = $1 AND s.resource = $2 AND s.item_id = u.id",
                )
                .await?;
            tx.execute(&stmt, &[s, r, &ids, &raws]).await?;
        }
        for (ids, sql) in [
            (
                &commit.deletes,
                "DELETE FROM snapshot WHERE source = $1 AND resource = $2 AND item_id = ANY($3::text[])",
            ),
            (
                &commit.missing,
                "UPDATE snapshot SET missing = missing + 1
                 WHERE source = $1 AND resource = $2 AND item_id = ANY($3::text[])",
            ),
            (
                &commit.found,
                "UPDATE snapshot SET missing = 0
                 WHERE source = $1 AND resource = $2 AND item_id = ANY($3::text[])",
            ),
        ] {
            if !ids.is_empty() {
                let stmt = tx.prepare_cached(sql).await?;
                tx.execute(&stmt, &[s, r, ids]).await?;
            }
        }
        if let Some(pages) = &commit.pages {
            let stmt = tx
                .prepare_cached("DELETE FROM pages WHERE source = $1 AND resource = $2")
                .await?;
            tx.execute(&stmt, &[s, r]).await?;
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO pages (source, resource, url, etag, last_modified, next_url, ids)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (source, resource, url) DO UPDATE SET etag = excluded.etag,
                         last_modified = excluded.last_modified, next_url = excluded.next_url,
                         ids = excluded.ids",
                )
                .await?;
            for p in pages {
                tx.execute(
                    &stmt,
                    &[
                        s,
                        r,
                        &p.url,
                        &p.etag,
                        &p.last_modified,
                        &p.next_url,
                        &json(&p.ids),
                    ],
                )
                .await?;
            }
        }
        let outcome = match (commit.held, commit.events.is_empty()) {
            (Some(_), _) => "held",
            (None, true) if commit.complete && !had_baseline => "baseline",
            (None, true) => "unchanged",
            (None, false) => "changed",
        };
        let alerts = crate::store::snapshot::alerts(&*commit, failures, was_held);
        let relaxed = upserted == 0 && bookkeeping_only(&*commit) && alerts.is_empty();
        let mut summary = insert_events(&tx, &commit.events).await?;
        let ops = insert_events(&tx, &alerts).await?;
        summary.events += ops.events;
        summary.deliveries += ops.deliveries;
        summary.outcome = outcome;
        let stmt = tx
            .prepare_cached(
                "UPDATE resources SET
                     baseline_at = CASE WHEN $3::boolean AND baseline_at IS NULL THEN $4::bigint
                         ELSE baseline_at END,
                     full_sync_at = CASE WHEN $3 THEN $4 ELSE full_sync_at END,
                     version = version + 1,
                     since_cursor = coalesce($8, since_cursor),
                     last_poll_at = $4, last_duration_ms = $5, last_outcome = $6, last_error = NULL,
                     item_count = CASE WHEN $9
                         THEN (SELECT count(*) FROM snapshot WHERE source = $1 AND resource = $2)
                         ELSE item_count END,
                     consecutive_errors = 0,
                     held_deletes = $7::bigint,
                     held_at = CASE WHEN $7::bigint > 0 THEN coalesce(held_at, $4) END,
                     accept_deletes = CASE WHEN $7::bigint > 0 THEN accept_deletes ELSE false END
                 WHERE source = $1 AND resource = $2",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                s,
                r,
                &commit.complete,
                &now,
                &(commit.duration.as_millis() as i64),
                &outcome,
                &(commit.held.unwrap_or(0) as i64),
                &commit.since_cursor,
                // Only upserts and deletes change how many rows the snapshot has.
                &(upserted > 0 || !commit.deletes.is_empty()),
            ],
        )
        .await?;
        if relaxed {
            tx.batch_execute("SET LOCAL synchronous_commit = off")
                .await?;
        }
        if summary.deliveries > 0 {
            notify(&tx).await?;
        }
        tx.commit().await?;
        Ok(summary)
    }

    /// Records a failed poll (and forgets its page records if asked); the snapshot is
    /// untouched. Returns the failures in a row.
    pub(in crate::store) async fn record_poll_failure(
        &self,
        failure: &PollFailure,
    ) -> Result<i64, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let (s, r) = (&failure.source, &failure.resource);
        if failure.forget_pages {
            tx.execute(
                "DELETE FROM pages WHERE source = $1 AND resource = $2",
                &[s, r],
            )
            .await?;
        }
        let stmt = tx
            .prepare_cached(
                "INSERT INTO resources (source, resource, last_poll_at, last_duration_ms,
                                        last_outcome, last_error, consecutive_errors)
                 VALUES ($1, $2, $3, $4, 'failed', $5, 1)
                 ON CONFLICT (source, resource) DO UPDATE SET
                     last_poll_at = $3, last_duration_ms = $4, last_outcome = 'failed',
                     last_error = $5, consecutive_errors = resources.consecutive_errors + 1
                 RETURNING consecutive_errors",
            )
            .await?;
        let failures: i64 = tx
            .query_one(
                &stmt,
                &[
                    s,
                    r,
                    &failure.at.timestamp_millis(),
                    &(failure.duration.as_millis() as i64),
                    &failure.error,
                ],
            )
            .await?
            .get(0);
        if failure.alert_after > 0 && failures == i64::from(failure.alert_after) {
            let key = format!("{s}.{r}");
            let alert = Event::operational(
                "resource",
                "failing",
                &key,
                serde_json::json!({ "resource": key, "failed_polls": failures, "error": failure.error }),
                failure.at,
            );
            if insert_events(&tx, &[alert]).await?.deliveries > 0 {
                notify(&tx).await?;
            }
        }
        tx.commit().await?;
        Ok(failures)
    }

    /// Lets the next complete listing of a resource apply deletes it would otherwise hold back.
    pub(in crate::store) async fn accept_deletes(
        &self,
        source: &str,
        resource: &str,
    ) -> Result<i64, StoreError> {
        let conn = self.conn().await?;
        let held: Option<i64> = conn
            .query_opt(
                "UPDATE resources SET accept_deletes = true
                 WHERE source = $1 AND resource = $2 AND held_deletes > 0
                 RETURNING held_deletes",
                &[&source, &resource],
            )
            .await?
            .map(|r| r.get(0));
        held.ok_or_else(|| {
            StoreError::NotFound(format!("{source}.{resource} has no held-back deletes"))
        })
    }

    /// Every resource's last poll, for `pollhook status`.
    pub(in crate::store) async fn status(&self) -> Result<Vec<ResourceStatus>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                // The newest event of each resource by its index (`events_by_resource`), in
                // the same statement: one round trip for the whole overview.
                "SELECT source, resource, last_poll_at, last_duration_ms, last_outcome, last_error,
                        item_count, consecutive_errors, held_deletes,
                        (SELECT e.detected_at FROM events e
                          WHERE e.source = r.source AND e.resource = r.resource
                          ORDER BY e.seq DESC LIMIT 1)
                 FROM resources r ORDER BY source, resource",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ResourceStatus {
                source: r.get(0),
                resource: r.get(1),
                last_poll_at: r.get::<_, Option<i64>>(2).map(to_time),
                last_duration_ms: r.get(3),
                last_outcome: r.get(4),
                last_error: r.get(5),
                item_count: r.get(6),
                consecutive_errors: r.get(7),
                held_deletes: r.get(8),
                last_change_at: r.get::<_, Option<i64>>(9).map(to_time),
            })
            .collect())
    }
}

/// Wakes the dispatchers of every replica once this transaction commits (PostgreSQL delivers a
/// notification only on commit, and drops it on rollback).
pub(super) async fn notify(tx: &impl GenericClient) -> Result<(), StoreError> {
    let stmt = tx.prepare_cached("SELECT pg_notify($1, '')").await?;
    tx.execute(&stmt, &[&NOTIFY_CHANNEL]).await?;
    Ok(())
}

async fn resource_state(
    conn: &impl GenericClient,
    source: &str,
    resource: &str,
) -> Result<ResourceState, StoreError> {
    let stmt = conn
        .prepare_cached(
            "SELECT baseline_at IS NOT NULL, accept_deletes, since_cursor, full_sync_at, version,
                    item_count
             FROM resources WHERE source = $1 AND resource = $2",
        )
        .await?;
    Ok(conn
        .query_opt(&stmt, &[&source, &resource])
        .await?
        .map(|r| ResourceState {
            has_baseline: r.get(0),
            accept_deletes: r.get(1),
            since_cursor: r.get(2),
            full_sync_at: r.get(3),
            version: r.get(4),
            item_count: r.get(5),
        })
        .unwrap_or_default())
}

async fn load_pages(
    conn: &impl GenericClient,
    source: &str,
    resource: &str,
) -> Result<HashMap<String, PageRecord>, StoreError> {
    let stmt = conn
        .prepare_cached(
            "SELECT url, etag, last_modified, next_url, ids FROM pages
             WHERE source = $1 AND resource = $2",
        )
        .await?;
    let rows = conn.query(&stmt, &[&source, &resource]).await?;
    rows.iter()
        .map(|r| {
            let url: String = r.get(0);
            let ids = serde_json::from_str(r.get(4))
                .map_err(|e| StoreError::Corrupt(format!("page record {url}: {e}")))?;
            Ok((
                url.clone(),
                PageRecord {
                    url,
                    etag: r.get(1),
                    last_modified: r.get(2),
                    next_url: r.get(3),
                    ids,
                },
            ))
        })
        .collect()
}

/// Streams the snapshot in, so a million rows are never all held as rows and as a map at once.
async fn snapshot_state(
    conn: &impl GenericClient,
    source: &str,
    resource: &str,
    expected: i64,
) -> Result<Snapshot, StoreError> {
    let stmt = conn
        .prepare_cached(
            "SELECT item_id, hash, missing, raw_hash FROM snapshot
             WHERE source = $1 AND resource = $2",
        )
        .await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&source, &resource];
    let rows = conn.query_raw(&stmt, params).await?;
    known_rows(rows, source, resource, expected).await
}

/// What the snapshot holds of the items `ids` (those it holds).
async fn snapshot_of(
    conn: &impl GenericClient,
    source: &str,
    resource: &str,
    ids: &[String],
) -> Result<Snapshot, StoreError> {
    let stmt = conn
        .prepare_cached(
            "SELECT item_id, hash, missing, raw_hash FROM snapshot
             WHERE source = $1 AND resource = $2 AND item_id = ANY($3::text[])",
        )
        .await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&source, &resource, &ids];
    let rows = conn.query_raw(&stmt, params).await?;
    known_rows(rows, source, resource, ids.len() as i64).await
}

/// Snapshot rows (`item_id, hash, missing, raw_hash`) as the differ takes them.
async fn known_rows(
    rows: tokio_postgres::RowStream,
    source: &str,
    resource: &str,
    expected: i64,
) -> Result<Snapshot, StoreError> {
    pin_mut!(rows);
    let mut out = Snapshot::with_capacity_and_hasher(
        usize::try_from(expected).unwrap_or(0),
        Default::default(),
    );
    while let Some(row) = rows.next().await {
        let row = row?;
        let id: String = row.get(0);
        let Ok(hash) = Hash::try_from(row.get::<_, &[u8]>(1)) else {
            return Err(StoreError::Corrupt(format!(
                "snapshot hash of {source}.{resource}/{id}"
            )));
        };
        // A missing or odd raw hash only means the slow path.
        let raw: Option<RawHash> = row
            .get::<_, Option<&[u8]>>(3)
            .and_then(|b| b.try_into().ok());
        let missing = u32::try_from(row.get::<_, i32>(2)).unwrap_or(0);
        out.insert(id, Known::new(hash, raw, missing));
    }
    Ok(out)
}

/// Writes the snapshot rows of a commit in chunks. The rows are read (from the poll's spill
/// file) on a blocking thread and handed over a short channel, so reading and writing overlap
/// and only a few chunks are ever in memory. Returns how many rows were written.
async fn write_upserts(
    tx: &deadpool_postgres::Transaction<'_>,
    source: &str,
    resource: &str,
    mut upserts: Box<dyn Upserts>,
    now: i64,
) -> Result<usize, StoreError> {
    if upserts.is_empty() {
        return Ok(0);
    }
    let (send, mut chunks) = tokio::sync::mpsc::channel::<Vec<OwnedUpsert>>(2);
    let reader = tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(UPSERT_CHUNK);
        upserts.each(&mut |row: Upsert<'_>| {
            chunk.push(OwnedUpsert {
                id: row.id.to_owned(),
                hash: row.hash.to_vec(),
                raw: row.raw.map(|r| r.to_vec()),
                body: row.body.to_owned(),
            });
            if chunk.len() == UPSERT_CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(UPSERT_CHUNK));
                send.blocking_send(full).map_err(|_| abandoned())?;
            }
            Ok(())
        })?;
        if !chunk.is_empty() {
            send.blocking_send(chunk).map_err(|_| abandoned())?;
        }
        Ok::<_, StoreError>(())
    });
    let stmt = tx
        .prepare_cached(
            "INSERT INTO snapshot (source, resource, item_id, hash, body, changed_at, raw_hash)
             SELECT $1, $2, u.id, u.hash, u.body, $3, u.raw
             FROM unnest($4::text[], $5::bytea[], $6::text[], $7::bytea[]) AS u(id, hash, body, raw)
             ON CONFLICT (source, resource, item_id)
             DO UPDATE SET hash = excluded.hash, body = excluded.body,
                           changed_at = excluded.changed_at, missing = 0,
                           raw_hash = excluded.raw_hash",
        )
        .await?;
    let mut written = 0;
    let mut failed = None;
    while let Some(chunk) = chunks.recv().await {
        let ids: Vec<&str> = chunk.iter().map(|u| u.id.as_str()).collect();
        let hashes: Vec<&[u8]> = chunk.iter().map(|u| u.hash.as_slice()).collect();
        let bodies: Vec<&str> = chunk.iter().map(|u| u.body.as_str()).collect();
        let raws: Vec<Option<&[u8]>> = chunk.iter().map(|u| u.raw.as_deref()).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&source, &resource, &now, &ids, &hashes, &bodies, &raws];
        if let Err(e) = tx.execute(&stmt, &params).await {
            failed = Some(e);
            break;
        }
        written += chunk.len();
    }
    // Closing the channel stops a reader still going after a failed write.
    drop(chunks);
    let read = match reader.await {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    if let Some(e) = failed {
        return Err(e.into());
    }
    read?;
    Ok(written)
}

fn abandoned() -> StoreError {
    StoreError::Unavailable("the commit was abandoned while its rows were being read".to_owned())
}

/// Whether a commit writes nothing but the poll's bookkeeping (upserts are checked by the
/// caller).
fn bookkeeping_only(commit: &PollCommit) -> bool {
    commit.deletes.is_empty()
        && commit.missing.is_empty()
        && commit.found.is_empty()
        && commit.events.is_empty()
        && commit.held.is_none()
}
