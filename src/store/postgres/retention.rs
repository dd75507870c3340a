//! Retention in PostgreSQL: old, settled events removed a batch per statement; the size of
//! pollhook's tables.

use super::{Db, to_time};
use crate::store::StoreError;
use crate::store::retention::StorageStats;

/// pollhook's tables, whose sizes [`Db::storage_stats`] adds up (the database may hold others).
const TABLES: &[&str] = &[
    "snapshot",
    "resources",
    "events",
    "endpoints",
    "removed_endpoints",
    "deliveries",
    "attempts",
    "pages",
    "replicas",
    "leader",
    "pollhook_schema",
];

impl Db {
    /// See [`Store::prune_events`](crate::store::Store::prune_events).
    pub(in crate::store) async fn prune_events(
        &self,
        before: i64,
        failed_before: i64,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let conn = self.conn().await?;
        // Oldest first by `seq` (detection order), so the scan stops early; `deliveries_by_event`
        // makes each NOT EXISTS one index probe. The events are locked (a replay of one waits,
        // then finds it gone), and another replica's pass skips them. Deliveries and events go
        // in one statement, so the foreign key is checked once both are gone; attempts go with
        // their deliveries (ON DELETE CASCADE).
        let stmt = conn
            .prepare_cached(
                "WITH old AS (
                     SELECT e.seq FROM events e
                     WHERE e.detected_at < $1
                       AND NOT EXISTS (
                           SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq
                              AND (d.status = 'pending'
                                   OR (d.status = 'failed' AND e.detected_at >= $2)))
                     ORDER BY e.seq LIMIT $3
                     FOR UPDATE OF e SKIP LOCKED),
                 gone AS (DELETE FROM deliveries d USING old WHERE d.event_seq = old.seq)
                 DELETE FROM events e USING old WHERE e.seq = old.seq",
            )
            .await?;
        let removed = conn
            .execute(&stmt, &[&before, &failed_before, &(batch as i64)])
            .await?;
        Ok(removed as usize)
    }

    /// See [`Store::storage_stats`](crate::store::Store::storage_stats): on PostgreSQL, the
    /// bytes of pollhook's tables with their indexes and TOAST, not the whole database's.
    pub(in crate::store) async fn storage_stats(&self) -> Result<StorageStats, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                "SELECT (SELECT detected_at FROM events ORDER BY seq LIMIT 1),
                        (SELECT count(*) FROM events),
                        (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                         FROM pg_class c
                         WHERE c.relkind = 'r' AND c.relname = ANY($1::text[])
                           AND c.relnamespace = current_schema()::regnamespace)",
                &[&TABLES],
            )
            .await?;
        let bytes: i64 = row.get(2);
        Ok(StorageStats {
            bytes: u64::try_from(bytes).unwrap_or(0),
            oldest_event_at: row.get::<_, Option<i64>>(0).map(to_time),
            events: row.get(1),
        })
    }
}
