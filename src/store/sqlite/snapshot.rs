//! Snapshot rows and poll state in SQLite: what a poll reads before it fetches, and the one
//! transaction that commits what it found.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, params};

use super::events::insert_events;
use super::{CachedTx, Db, Held, json, rows, to_time, write_tx};
use crate::diff::{Known, Snapshot};
use crate::event::{Event, Payload};
use crate::normalize::{Hash, RawHash};
use crate::store::{
    CommitSummary, NoUpserts, PageRecord, PollCommit, PollFailure, Prior, ResourceState,
    ResourceStatus, StoreError, Upsert, Upserts,
};

/// The columns of a resource's row that make its [`ResourceState`], as [`state_of`] reads them.
macro_rules! state_columns {
    () => {
        "baseline_at IS NOT NULL, accept_deletes, since_cursor, full_sync_at, version, item_count"
    };
}

impl Db {
    /// What a poll needs before it fetches: the resource's state, its page records if `pages`,
    /// and its snapshot if it has a baseline of at most `snapshot_up_to` items.
    pub(in crate::store) fn prior(
        &self,
        source: &str,
        resource: &str,
        pages: bool,
        snapshot_up_to: i64,
    ) -> Result<Prior, StoreError> {
        let mut held = self.conn()?;
        let prior = read_prior(&mut held, source, resource, pages, snapshot_up_to, i64::MAX)?;
        Ok(prior.unwrap_or_default())
    }

    /// [`Db::prior`] on the caller's thread, for a caller that must not wait: `None` unless the
    /// connection is free, SQLite answers without waiting on a lock, and the resource has at
    /// most `up_to` snapshot items, which bounds the work (the caller then asks [`Db::prior`]
    /// on a blocking thread). A small resource's rows are a few pages in SQLite's cache: reading
    /// them costs less than handing the work to another thread and back.
    pub(in crate::store) fn try_prior_now(
        &self,
        source: &str,
        resource: &str,
        pages: bool,
        snapshot_up_to: i64,
        up_to: i64,
    ) -> Option<Result<Prior, StoreError>> {
        let mut conn = self.conn_now()?;
        match read_prior(conn.held(), source, resource, pages, snapshot_up_to, up_to) {
            Ok(Some(prior)) => Some(Ok(prior)),
            // Too large, or SQLite would have waited on a lock.
            Ok(None) | Err(StoreError::Unavailable(_)) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// The snapshot of a resource: `id → what is known of it`. `expected` (its `item_count`, or 0)
    /// sizes the map once: growing a million-entry map doubles it in memory.
    pub(in crate::store) fn snapshot_state(
        &self,
        source: &str,
        resource: &str,
        expected: i64,
    ) -> Result<Snapshot, StoreError> {
        let conn = self.conn()?;
        snapshot_state(&conn, source, resource, expected)
    }

    /// What the snapshot holds of the items `ids`: those of them it holds.
    pub(in crate::store) fn snapshot_of(
        &self,
        source: &str,
        resource: &str,
        ids: &[String],
    ) -> Result<Snapshot, StoreError> {
        let conn = self.conn()?;
        snapshot_of(&conn, source, resource, ids)
    }

    /// What the store knows of a resource before polling it.
    pub(in crate::store) fn resource_state(
        &self,
        source: &str,
        resource: &str,
    ) -> Result<ResourceState, StoreError> {
        let conn = self.conn()?;
        resource_state(&conn, source, resource)
    }

    /// Forgets a resource's page records, so its next poll fetches every page in full.
    pub(in crate::store) fn clear_pages(
        &self,
        source: &str,
        resource: &str,
    ) -> Result<(), StoreError> {
        let mut held = self.conn()?;
        held.kept.forget(source, resource);
        let tx = write_tx(&mut held)?;
        tx.execute(
            "DELETE FROM pages WHERE source = ?1 AND resource = ?2",
            params![source, resource],
        )?;
        bump_version(&tx, source, resource)?;
        tx.commit()?;
        Ok(())
    }

    /// The snapshot of a resource as `(id, hash)` pairs.
    pub(in crate::store) fn snapshot_hashes(
        &self,
        source: &str,
        resource: &str,
    ) -> Result<Vec<(String, Hash)>, StoreError> {
        let conn = self.conn()?;
        rows(
            &conn,
            "SELECT item_id, hash FROM snapshot WHERE source = ?1 AND resource = ?2",
            params![source, resource],
            |row| {
                let id: String = row.get(0)?;
                let hash: Vec<u8> = row.get(1)?;
                let hash: Hash = hash.try_into().map_err(|_| {
                    StoreError::Corrupt(format!("snapshot hash of {source}.{resource}/{id}"))
                })?;
                Ok((id, hash))
            },
        )
    }

    /// The stored bodies of some items, for `previous` and `changes`.
    pub(in crate::store) fn snapshot_bodies(
        &self,
        source: &str,
        resource: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, Payload>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT body FROM snapshot WHERE source = ?1 AND resource = ?2 AND item_id = ?3",
        )?;
        let mut out = HashMap::with_capacity(ids.len());
        for id in ids {
            let body: Option<String> = stmt
                .query_row(params![source, resource, id], |r| r.get(0))
                .optional()?;
            if let Some(body) = body {
                let payload = Payload::from_json(&body)
                    .map_err(|e| StoreError::Corrupt(format!("snapshot body of {id}: {e}")))?;
                out.insert((*id).to_owned(), payload);
            }
        }
        Ok(out)
    }

    /// Up to `limit` items of a resource's snapshot with ids after `after`, in id order, with
    /// their bodies.
    pub(in crate::store) fn snapshot_items(
        &self,
        source: &str,
        resource: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Payload)>, StoreError> {
        let conn = self.conn()?;
        rows(
            &conn,
            "SELECT item_id, body FROM snapshot
             WHERE source = ?1 AND resource = ?2 AND (?3 IS NULL OR item_id > ?3)
             ORDER BY item_id LIMIT ?4",
            params![source, resource, after, limit as i64],
            |r| {
                let id: String = r.get(0)?;
                let body: String = r.get(1)?;
                let payload = Payload::from_json(&body).map_err(|e| {
                    StoreError::Corrupt(format!("snapshot body of {source}.{resource}/{id}: {e}"))
                })?;
                Ok((id, payload))
            },
        )
    }

    /// Writes a poll's snapshot changes, events and deliveries, and the poll's outcome, in one
    /// transaction.
    ///
    /// A poll that found nothing to write but its own bookkeeping (last poll time, outcome,
    /// version, page validators) commits without the fsync (`synchronous = NORMAL`): on a machine
    /// crash SQLite may forget the last few such commits, all or none of each, but never one
    /// committed before them, so the database only ever goes back to an earlier consistent state
    /// and a snapshot change or event is never lost. Most polls change nothing; at 20 polls a
    /// second the fsyncs were most of the cost of an idle pollhook.
    pub(in crate::store) fn commit_poll(
        &self,
        commit: &mut PollCommit,
    ) -> Result<CommitSummary, StoreError> {
        let mut upserts = std::mem::replace(&mut commit.upserts, Box::new(NoUpserts));
        let commit = &*commit;
        let mut held = self.lock();
        if upserts.is_empty()
            && bookkeeping_only(commit)
            && let Some(summary) = write_relaxed(&mut held, commit, upserts.as_mut())?
        {
            return Ok(summary);
        }
        // A change, or bookkeeping that would emit an operational event after all (a recovery):
        // committed durably, which never declines. What is kept of the resource falls behind.
        held.kept.forget(&commit.source, &commit.resource);
        let conn = held.durable()?;
        let written = write_poll(conn, commit, upserts.as_mut(), true)?;
        Ok(written.map(|(summary, _)| summary).unwrap_or_default())
    }

    /// [`Db::commit_poll`] of a poll that found nothing to write but its bookkeeping, on the
    /// caller's thread, for a caller that must not wait: `None` (nothing written) unless the
    /// connection is free, the write lock is taken without waiting, the WAL is short enough that
    /// the commit need not checkpoint it ([`Checkpoints`](super::Checkpoints)), and the commit
    /// would add no event; the caller then asks [`Db::commit_poll`] on a blocking thread. Such a
    /// commit writes a page or two to the WAL without an fsync: microseconds.
    pub(in crate::store) fn try_commit_now(
        &self,
        commit: &PollCommit,
    ) -> Option<Result<CommitSummary, StoreError>> {
        if !(commit.upserts.is_empty() && bookkeeping_only(commit) && self.checkpoints.short()) {
            return None;
        }
        let mut conn = self.conn_now()?;
        self.checkpoints.put_off.store(true, Ordering::Relaxed);
        let written = write_relaxed(conn.held(), commit, &mut NoUpserts);
        self.checkpoints.put_off.store(false, Ordering::Relaxed);
        match written {
            Ok(Some(summary)) => Some(Ok(summary)),
            // It would emit an event (a recovery), or SQLite would have waited on a lock.
            Ok(None) | Err(StoreError::Unavailable(_)) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// [`write_poll`] of a commit that writes nothing but the poll's bookkeeping, relaxed
/// ([`Held::relaxed`]); declines if it would add an event. Where it wrote no snapshot row (no
/// refreshed raw hash either), what is kept of the resource moves on to the state it left
/// ([`Kept::moved_on`](super::kept::Kept::moved_on)); where it found another process's commit,
/// what is kept is forgotten.
fn write_relaxed(
    held: &mut Held,
    commit: &PollCommit,
    upserts: &mut dyn Upserts,
) -> Result<Option<CommitSummary>, StoreError> {
    let (source, resource) = (&commit.source, &commit.resource);
    match write_poll(held.relaxed()?, commit, upserts, false) {
        Ok(Some((summary, state))) => {
            if commit.rehashed.is_empty() {
                let pages = commit.pages.as_deref();
                (held.kept).moved_on(source, resource, commit.version, state, pages);
            } else {
                // A refreshed raw hash is a snapshot row written: what is kept is behind.
                held.kept.forget(source, resource);
            }
            Ok(Some(summary))
        }
        Ok(None) => Ok(None),
        Err(e @ StoreError::VersionConflict(_)) => {
            held.kept.forget(source, resource);
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// [`Db::commit_poll`]'s transaction, and the resource's state as it left it. Without
/// `durable`, declines (writes nothing, returns `None`) if it would add an event.
fn write_poll(
    conn: &mut Connection,
    commit: &PollCommit,
    upserts: &mut dyn Upserts,
    durable: bool,
) -> Result<Option<(CommitSummary, ResourceState)>, StoreError> {
    let tx = CachedTx::write(conn)?;
    let now = commit.at.timestamp_millis();
    // The resource's row as this transaction found it, read once: nothing below changes these
    // columns before the closing UPDATE. A resource never polled has no row yet.
    let row: Option<(ResourceState, i64, i64)> = tx
        .prepare_cached(concat!(
            "SELECT ",
            state_columns!(),
            ", consecutive_errors, held_deletes FROM resources WHERE source = ?1 AND resource = ?2"
        ))?
        .query_row(params![commit.source, commit.resource], |r| {
            Ok((state_of(r)?, r.get(6)?, r.get(7)?))
        })
        .optional()?;
    let exists = row.is_some();
    let (found, failures, was_held) = row.unwrap_or_default();
    if found.version != commit.version {
        // Dropping `tx` rolls back: nothing of this poll is written.
        return Err(StoreError::VersionConflict(format!(
            "another poll of {}.{} committed while this one ran; this one wrote nothing",
            commit.source, commit.resource
        )));
    }
    // Rows the snapshot gains and loses, so `item_count` follows without a count of the
    // resource's rows (a scan of every page of a million-item snapshot, bodies included).
    let (mut added, mut removed) = (0_i64, 0_i64);
    {
        // Statements are looked up only for the lists that hold something: an idle poll's
        // commit has nothing in any of them. An upsert is an insert that, for a row already
        // there, falls back to an update: unlike `ON CONFLICT DO UPDATE`, it tells the two apart.
        let mut insert = tx.prepare_cached(
            "INSERT INTO snapshot (source, resource, item_id, hash, body, changed_at, raw_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (source, resource, item_id) DO NOTHING",
        )?;
        let mut update = None;
        upserts.each(&mut |row: Upsert<'_>| {
            let values = params![
                commit.source,
                commit.resource,
                row.id,
                &row.hash[..],
                row.body,
                now,
                row.raw.map(|r| &r[..]),
            ];
            if insert.execute(values)? == 1 {
                added += 1;
                return Ok(());
            }
            let update = match &mut update {
                Some(update) => update,
                None => update.insert(tx.prepare_cached(
                    "UPDATE snapshot SET hash = ?4, body = ?5, changed_at = ?6, missing = 0,
                                         raw_hash = ?7
                         WHERE source = ?1 AND resource = ?2 AND item_id = ?3",
                )?),
            };
            update.execute(values)?;
            Ok(())
        })?;
        if !commit.rehashed.is_empty() {
            let mut rehash = tx.prepare_cached(
                "UPDATE snapshot SET raw_hash = ?4 WHERE source = ?1 AND resource = ?2 AND item_id = ?3",
            )?;
            for (id, raw) in &commit.rehashed {
                rehash.execute(params![commit.source, commit.resource, id, &raw[..]])?;
            }
        }
        if !commit.deletes.is_empty() {
            let mut delete = tx.prepare_cached(
                "DELETE FROM snapshot WHERE source = ?1 AND resource = ?2 AND item_id = ?3",
            )?;
            for id in &commit.deletes {
                removed += delete.execute(params![commit.source, commit.resource, id])? as i64;
            }
        }
        // One statement per item, for each list that holds any (an idle poll's hold none).
        let per_item = [
            (
                "UPDATE snapshot SET missing = missing + 1
                     WHERE source = ?1 AND resource = ?2 AND item_id = ?3",
                &commit.missing,
            ),
            (
                "UPDATE snapshot SET missing = 0 WHERE source = ?1 AND resource = ?2 AND item_id = ?3",
                &commit.found,
            ),
        ];
        for (sql, ids) in per_item.into_iter().filter(|(_, ids)| !ids.is_empty()) {
            let mut stmt = tx.prepare_cached(sql)?;
            for id in ids {
                stmt.execute(params![commit.source, commit.resource, id])?;
            }
        }
        if let Some(pages) = &commit.pages {
            tx.prepare_cached("DELETE FROM pages WHERE source = ?1 AND resource = ?2")?
                .execute(params![commit.source, commit.resource])?;
            let mut page = tx.prepare_cached(
                    "INSERT OR REPLACE INTO pages (source, resource, url, etag, last_modified, next_url, ids)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
            for p in pages {
                page.execute(params![
                    commit.source,
                    commit.resource,
                    p.url,
                    p.etag,
                    p.last_modified,
                    p.next_url,
                    json(&p.ids)
                ])?;
            }
        }
    }
    let mut summary = insert_events(&tx, &commit.events)?;
    let outcome = match (commit.held, commit.events.is_empty()) {
        (Some(_), _) => "held",
        (None, true) if commit.complete && !found.has_baseline => "baseline",
        (None, true) => "unchanged",
        (None, false) => "changed",
    };
    if !exists {
        tx.prepare_cached("INSERT INTO resources (source, resource) VALUES (?1, ?2)")?
            .execute(params![commit.source, commit.resource])?;
    }
    let alerts = crate::store::snapshot::alerts(commit, failures, was_held);
    if !durable && !alerts.is_empty() {
        // Dropping `tx` rolls back.
        return Ok(None);
    }
    let ops = insert_events(&tx, &alerts)?;
    summary.events += ops.events;
    summary.deliveries += ops.deliveries;
    summary.outcome = outcome;
    tx.prepare_cached(
        "UPDATE resources SET
                 baseline_at = CASE WHEN ?3 AND baseline_at IS NULL THEN ?4 ELSE baseline_at END,
                 full_sync_at = CASE WHEN ?3 THEN ?4 ELSE full_sync_at END,
                 version = version + 1,
                 since_cursor = coalesce(?8, since_cursor),
                 last_poll_at = ?4, last_duration_ms = ?5, last_outcome = ?6, last_error = NULL,
                 item_count = item_count + ?9,
                 consecutive_errors = 0,
                 held_deletes = ?7,
                 held_at = CASE WHEN ?7 > 0 THEN coalesce(held_at, ?4) END,
                 accept_deletes = CASE WHEN ?7 > 0 THEN accept_deletes ELSE 0 END
             WHERE source = ?1 AND resource = ?2",
    )?
    .execute(params![
        commit.source,
        commit.resource,
        commit.complete,
        now,
        commit.duration.as_millis() as i64,
        outcome,
        commit.held.unwrap_or(0) as i64,
        commit.since_cursor,
        added - removed,
    ])?;
    tx.commit()?;
    Ok(Some((
        summary,
        state_after(found, commit, now, added - removed),
    )))
}

/// The state [`write_poll`]'s closing `UPDATE` leaves, from the state its transaction found:
/// the same rules, column by column. (Returned by the statement itself, `RETURNING` would open
/// an ephemeral table at every commit: about a tenth of an idle poll's commit, in `perf`.)
fn state_after(found: ResourceState, commit: &PollCommit, now: i64, gained: i64) -> ResourceState {
    ResourceState {
        has_baseline: found.has_baseline || commit.complete,
        accept_deletes: found.accept_deletes && commit.held.is_some_and(|held| held > 0),
        since_cursor: commit.since_cursor.clone().or(found.since_cursor),
        full_sync_at: if commit.complete {
            Some(now)
        } else {
            found.full_sync_at
        },
        version: found.version + 1,
        item_count: found.item_count + gained,
    }
}

impl Db {
    /// Records a failed poll; the snapshot is untouched. When the failures in a row reach
    /// `alert_after`, a `pollhook.resource.failing` event is emitted (once per streak). Returns the
    /// failures in a row.
    pub(in crate::store) fn record_poll_failure(
        &self,
        failure: &PollFailure,
    ) -> Result<i64, StoreError> {
        let PollFailure {
            source,
            resource,
            error,
            at,
            duration,
            alert_after,
            ..
        } = failure;
        let alert_after = *alert_after;
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        tx.prepare_cached(
            "INSERT INTO resources (source, resource, last_poll_at, last_duration_ms, last_outcome,
                                    last_error, consecutive_errors)
             VALUES (?1, ?2, ?3, ?4, 'failed', ?5, 1)
             ON CONFLICT (source, resource) DO UPDATE SET
                 last_poll_at = ?3, last_duration_ms = ?4, last_outcome = 'failed', last_error = ?5,
                 consecutive_errors = consecutive_errors + 1",
        )?
        .execute(params![
            source,
            resource,
            at.timestamp_millis(),
            duration.as_millis() as i64,
            error
        ])?;
        let failures: i64 = tx
            .prepare_cached(
                "SELECT consecutive_errors FROM resources WHERE source = ?1 AND resource = ?2",
            )?
            .query_row(params![source, resource], |r| r.get(0))?;
        if alert_after > 0 && failures == i64::from(alert_after) {
            let key = format!("{source}.{resource}");
            let alert = Event::operational(
                "resource",
                "failing",
                &key,
                serde_json::json!({ "resource": key, "failed_polls": failures, "error": error }),
                *at,
            );
            insert_events(&tx, &[alert])?;
        }
        tx.commit()?;
        Ok(failures)
    }

    /// Lets the next complete listing of a resource apply deletes it would otherwise hold back.
    pub(in crate::store) fn accept_deletes(
        &self,
        source: &str,
        resource: &str,
    ) -> Result<i64, StoreError> {
        let mut conn = self.conn()?;
        conn.kept.forget(source, resource);
        let tx = write_tx(&mut conn)?;
        let held: Option<i64> = tx
            .query_row(
                "SELECT held_deletes FROM resources WHERE source = ?1 AND resource = ?2",
                params![source, resource],
                |r| r.get(0),
            )
            .optional()?;
        match held {
            Some(n) if n > 0 => {
                tx.execute(
                    "UPDATE resources SET accept_deletes = 1 WHERE source = ?1 AND resource = ?2",
                    params![source, resource],
                )?;
                bump_version(&tx, source, resource)?;
                tx.commit()?;
                Ok(n)
            }
            _ => Err(StoreError::NotFound(format!(
                "{source}.{resource} has no held-back deletes"
            ))),
        }
    }

    /// Every resource's last poll, for `pollhook status`.
    pub(in crate::store) fn status(&self) -> Result<Vec<ResourceStatus>, StoreError> {
        let conn = self.conn()?;
        rows(
            &conn,
            // The newest event of each resource by its index (`events_by_resource`), in the
            // same statement: one round trip for the whole overview.
            "SELECT source, resource, last_poll_at, last_duration_ms, last_outcome, last_error,
                    item_count, consecutive_errors, held_deletes,
                    (SELECT e.detected_at FROM events e
                      WHERE e.source = r.source AND e.resource = r.resource
                      ORDER BY e.seq DESC LIMIT 1)
             FROM resources r ORDER BY source, resource",
            [],
            |r| {
                Ok(ResourceStatus {
                    source: r.get(0)?,
                    resource: r.get(1)?,
                    last_poll_at: r.get::<_, Option<i64>>(2)?.map(to_time),
                    last_duration_ms: r.get(3)?,
                    last_outcome: r.get(4)?,
                    last_error: r.get(5)?,
                    item_count: r.get(6)?,
                    consecutive_errors: r.get(7)?,
                    held_deletes: r.get(8)?,
                    last_change_at: r.get::<_, Option<i64>>(9)?.map(to_time),
                })
            },
        )
    }
}

/// Moves a resource's `version` on after a write of what a poll reads first other than the
/// poll's own commit (which moves it itself): a poll made from what was there before, in another
/// process or from what it remembered ([`Prior::remembered`]), then writes nothing.
fn bump_version(conn: &Connection, source: &str, resource: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE resources SET version = version + 1 WHERE source = ?1 AND resource = ?2",
    )?
    .execute(params![source, resource])
}

/// Whether a commit writes nothing but the poll's bookkeeping: no snapshot row, no event (so no
/// delivery), no held deletes.
/// (Its upserts are checked by the caller: they are an iterator.) Refreshed raw hashes count as
/// bookkeeping: forgetting one only means the slow path for that item next time.
fn bookkeeping_only(commit: &PollCommit) -> bool {
    commit.deletes.is_empty()
        && commit.missing.is_empty()
        && commit.found.is_empty()
        && commit.events.is_empty()
        && commit.held.is_none()
}

/// The snapshot of a resource: `id → what is known of it`. `expected` (its `item_count`, or 0)
/// sizes the map once: growing a million-entry map doubles it in memory.
fn snapshot_state(
    conn: &Connection,
    source: &str,
    resource: &str,
    expected: i64,
) -> Result<Snapshot, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT item_id, hash, missing, raw_hash FROM snapshot WHERE source = ?1 AND resource = ?2",
    )?;
    let rows = stmt.query(params![source, resource])?;
    known_rows(rows, source, resource, expected)
}

/// What the snapshot holds of the items `ids` (those it holds).
fn snapshot_of(
    conn: &Connection,
    source: &str,
    resource: &str,
    ids: &[String],
) -> Result<Snapshot, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT item_id, hash, missing, raw_hash FROM snapshot
         WHERE source = ?1 AND resource = ?2 AND item_id IN (SELECT value FROM json_each(?3))",
    )?;
    let rows = stmt.query(params![source, resource, json(ids)])?;
    known_rows(rows, source, resource, ids.len() as i64)
}

/// Snapshot rows (`item_id, hash, missing, raw_hash`) as the differ takes them.
fn known_rows(
    mut rows: rusqlite::Rows<'_>,
    source: &str,
    resource: &str,
    expected: i64,
) -> Result<Snapshot, StoreError> {
    let mut out = Snapshot::with_capacity_and_hasher(
        usize::try_from(expected).unwrap_or(0),
        Default::default(),
    );
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let hash: Option<Hash> = row
            .get_ref(1)?
            .as_blob()
            .ok()
            .and_then(|b| b.try_into().ok());
        let Some(hash) = hash else {
            return Err(StoreError::Corrupt(format!(
                "snapshot hash of {source}.{resource}/{id}"
            )));
        };
        // A missing or odd raw hash only means the slow path.
        let raw: Option<RawHash> = row
            .get_ref(3)?
            .as_blob()
            .ok()
            .and_then(|b| b.try_into().ok());
        out.insert(id, Known::new(hash, raw, row.get(2)?));
    }
    Ok(out)
}

/// The page records of a resource, by URL.
fn pages(
    conn: &Connection,
    source: &str,
    resource: &str,
) -> Result<HashMap<String, PageRecord>, StoreError> {
    rows(
        conn,
        "SELECT url, etag, last_modified, next_url, ids FROM pages WHERE source = ?1 AND resource = ?2",
        params![source, resource],
        |r| {
            let url: String = r.get(0)?;
            let ids: String = r.get(4)?;
            let ids = serde_json::from_str(&ids)
                .map_err(|e| StoreError::Corrupt(format!("page record {url}: {e}")))?;
            let record = PageRecord {
                url: url.clone(),
                etag: r.get(1)?,
                last_modified: r.get(2)?,
                next_url: r.get(3)?,
                ids,
            };
            Ok((url, record))
        },
    )
}

/// What the store knows of a resource before polling it.
fn resource_state(
    conn: &Connection,
    source: &str,
    resource: &str,
) -> Result<ResourceState, StoreError> {
    let row = conn
        .prepare_cached(concat!(
            "SELECT ",
            state_columns!(),
            " FROM resources WHERE source = ?1 AND resource = ?2"
        ))?
        .query_row(params![source, resource], state_of)
        .optional()?;
    Ok(row.unwrap_or_default())
}

/// A [`ResourceState`] from a row that starts with `state_columns!`.
fn state_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<ResourceState> {
    Ok(ResourceState {
        has_baseline: r.get(0)?,
        accept_deletes: r.get(1)?,
        since_cursor: r.get(2)?,
        full_sync_at: r.get(3)?,
        version: r.get(4)?,
        item_count: r.get(5)?,
    })
}

/// [`Db::prior`]'s reads; `None` (nothing read) when the resource has more than `up_to`
/// snapshot items. What this process's own last commit left, if it is all kept (no read at
/// all: [`Prior::remembered`]); otherwise one read transaction, begun and ended by cached
/// statements: the reads see one state of the database and take the WAL's read lock once
/// rather than once each.
fn read_prior(
    held: &mut Held,
    source: &str,
    resource: &str,
    pages: bool,
    snapshot_up_to: i64,
    up_to: i64,
) -> Result<Option<Prior>, StoreError> {
    if let Some(prior) = held.kept.recall(source, resource, pages, snapshot_up_to) {
        return Ok(Some(prior));
    }
    let tx = CachedTx::read(&held.conn)?;
    let state = resource_state(&tx, source, resource)?;
    if state.item_count > up_to {
        tx.commit()?;
        return Ok(None);
    }
    let pages = match pages {
        true => Some(Arc::new(self::pages(&tx, source, resource)?)),
        false => None,
    };
    let kept = &mut held.kept;
    let snapshot = (state.has_baseline && state.item_count <= snapshot_up_to)
        .then(|| match kept.snapshot(source, resource, state.version) {
            Some(kept) => Ok(kept.clone()),
            None => {
                let read = snapshot_state(&tx, source, resource, state.item_count)?;
                kept.put(source, resource, state.version, &read);
                Ok::<_, StoreError>(read)
            }
        })
        .transpose()?;
    tx.commit()?;
    if let Some(pages) = &pages {
        kept.pages_read(source, resource, state.version, pages);
    }
    Ok(Some(Prior {
        state,
        pages: pages.unwrap_or_default(),
        snapshot,
        remembered: false,
    }))
}
