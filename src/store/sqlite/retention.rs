//! Retention in SQLite: old, settled events removed a batch per transaction; the file's size.

use rusqlite::params;

use super::{Db, rows, to_time, write_tx};
use crate::store::StoreError;
use crate::store::retention::StorageStats;

impl Db {
    /// See [`Store::prune_events`](crate::store::Store::prune_events).
    pub(in crate::store) fn prune_events(
        &self,
        before: i64,
        failed_before: i64,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        // Oldest first by `seq` (detection order), so the scan stops early; `deliveries_by_event`
        // makes each NOT EXISTS one index probe.
        let seqs: Vec<i64> = rows(
            &tx,
            "SELECT e.seq FROM events e
                 WHERE e.detected_at < ?1
                   AND NOT EXISTS (
                       SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq
                          AND (d.status = 'pending' OR (d.status = 'failed' AND e.detected_at >= ?2)))
                 ORDER BY e.seq LIMIT ?3",
            params![before, failed_before, batch as i64],
            |r| Ok(r.get(0)?),
        )?;
        {
            // Attempts go with their deliveries (ON DELETE CASCADE).
            let mut deliveries =
                tx.prepare_cached("DELETE FROM deliveries WHERE event_seq = ?1")?;
            let mut events = tx.prepare_cached("DELETE FROM events WHERE seq = ?1")?;
            for seq in &seqs {
                deliveries.execute(params![seq])?;
                events.execute(params![seq])?;
            }
        }
        tx.commit()?;
        Ok(seqs.len())
    }

    /// See [`Store::storage_stats`](crate::store::Store::storage_stats).
    pub(in crate::store) fn storage_stats(&self) -> Result<StorageStats, StoreError> {
        let conn = self.conn()?;
        let (oldest, events): (Option<i64>, i64) = conn.query_row(
            "SELECT (SELECT detected_at FROM events ORDER BY seq LIMIT 1), count(*) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        drop(conn);
        let size = |suffix: &str| {
            let mut path = self.path().as_os_str().to_owned();
            path.push(suffix);
            std::fs::metadata(path).map_or(0, |m| m.len())
        };
        Ok(StorageStats {
            bytes: size("") + size("-wal"),
            oldest_event_at: oldest.map(to_time),
            events,
        })
    }
}
