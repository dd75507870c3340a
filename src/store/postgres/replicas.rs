//! What several replicas on one PostgreSQL database need from it: resource claims, heartbeats,
//! the leader lease for maintenance, self-fencing, and the notification that wakes dispatchers.
//!
//! Invariants:
//! - A resource's due time is polled by the one replica whose claim updates its row: the claim
//!   takes the row with `FOR UPDATE SKIP LOCKED` and only while no live lease is on it.
//! - A replica sends a webhook only while its heartbeat is fresh ([`Db::may_send`]), and only
//!   one that will end before the leader may declare the replica dead; so when the leader hands
//!   a dead replica's deliveries to others, none of its sends can still be on the wire, and an
//!   item's webhooks never arrive out of order because a replica was presumed dead too early.
//! - Every time compared across replicas is the database's clock, never a replica's.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::Db;
use crate::store::{Maintenance, ResourceClaim, StoreError};

/// The channel a commit that queued deliveries notifies.
pub(in crate::store) const NOTIFY_CHANNEL: &str = "pollhook_deliveries";

/// A replica that has not heartbeat for this long sends nothing more ([`Db::may_send`]).
pub(in crate::store) const FENCE: Duration = Duration::from_secs(3);

/// Allowance on top of [`FENCE`] and a request's timeout before a silent replica is presumed
/// dead (time to record an outcome, clock steps between ticks).
const MARGIN: Duration = Duration::from_secs(2);

/// The leader lease's length; it is renewed at every heartbeat.
const LEADER_LEASE: Duration = Duration::from_secs(5);

/// The leader sweeps leases whose replica has no row every this many of its heartbeats (and at
/// once when it finds a replica dead).
const ORPHAN_SWEEP_EVERY: u64 = 10;

/// The database's clock in ms.
pub(super) const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

impl Db {
    /// Claims the next poll of a resource, leasing it for `lease`.
    ///
    /// A lease this replica already holds is claimable: a replica asks only from the one task
    /// that polls the resource, so such a lease is left over from a poll whose finish could not
    /// be written (a database restart), and the heartbeat would otherwise renew it forever.
    pub(in crate::store) async fn claim_resource(
        &self,
        source: &str,
        resource: &str,
        lease: Duration,
    ) -> Result<ResourceClaim, StoreError> {
        let conn = self.conn().await?;
        let claim = conn
            .prepare_cached(&format!(
                "WITH c AS (
                     SELECT source, resource FROM resources
                     WHERE source = $1 AND resource = $2 AND next_due_at <= {DB_NOW}
                       AND (lease_until <= {DB_NOW} OR leased_by IS NULL OR leased_by = $3)
                     FOR UPDATE SKIP LOCKED)
                 UPDATE resources r SET leased_by = $3, lease_until = {DB_NOW} + $4
                 FROM c WHERE r.source = c.source AND r.resource = c.resource
                 RETURNING 1"
            ))
            .await?;
        let lease_ms = lease.as_millis() as i64;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&source, &resource, &self.replica(), &lease_ms];
        if conn.query_opt(&claim, &params).await?.is_some() {
            return Ok(ResourceClaim::Won);
        }
        let state = conn
            .prepare_cached(&format!(
                "SELECT next_due_at - {DB_NOW}, CASE WHEN leased_by IS NOT NULL
                        THEN lease_until - {DB_NOW} ELSE 0 END
                 FROM resources WHERE source = $1 AND resource = $2"
            ))
            .await?;
        match conn.query_opt(&state, &[&source, &resource]).await? {
            None => {
                // Its first poll ever, by any replica: make the row, then claim it as usual.
                conn.execute(
                    "INSERT INTO resources (source, resource) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                    &[&source, &resource],
                )
                .await?;
                Ok(ResourceClaim::Busy(Duration::ZERO))
            }
            Some(row) => {
                let (due_in, leased_for): (i64, i64) = (row.get(0), row.get(1));
                let wait = |ms: i64| Duration::from_millis(ms.max(0) as u64);
                Ok(if leased_for > 0 {
                    ResourceClaim::Busy(wait(leased_for))
                } else {
                    ResourceClaim::NotYet(wait(due_in))
                })
            }
        }
    }

    /// Ends this replica's claim on a resource, its next poll due `next_in` from now.
    pub(in crate::store) async fn finish_resource(
        &self,
        source: &str,
        resource: &str,
        next_in: Duration,
    ) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(&format!(
                "UPDATE resources SET next_due_at = {DB_NOW} + $3, leased_by = NULL, lease_until = 0
                 WHERE source = $1 AND resource = $2 AND leased_by = $4"
            ))
            .await?;
        let next_ms = i64::try_from(next_in.as_millis()).unwrap_or(i64::MAX / 4);
        conn.execute(&stmt, &[&source, &resource, &next_ms, &self.replica()])
            .await?;
        Ok(())
    }

    /// Whether this replica may start a webhook that takes up to `timeout` now: its heartbeat
    /// is fresh and announced a timeout at least this long. A `false` asks the next heartbeat to
    /// announce it.
    pub(in crate::store) fn may_send(&self, timeout: Duration) -> bool {
        let timeout_ms = timeout.as_millis() as i64;
        let shared = &self.shared;
        shared.wanted_ms.fetch_max(timeout_ms, Ordering::Relaxed);
        let fresh = shared
            .beat
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < FENCE);
        fresh && timeout_ms <= shared.announced_ms.load(Ordering::Relaxed)
    }

    /// Whether this replica holds the leader lease: its last heartbeat took or renewed it, and
    /// that heartbeat is fresh (the lease outlives [`FENCE`], so no other replica holds it yet).
    pub(in crate::store) fn leads(&self) -> bool {
        let fresh = self
            .shared
            .beat
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < FENCE);
        fresh && self.shared.leading.load(Ordering::Relaxed)
    }

    /// One heartbeat: refreshes this replica's row and its resource leases, takes or renews the
    /// leader lease, and if it leads, hands the work of dead replicas back.
    pub(in crate::store) async fn heartbeat(
        &self,
        resource_lease: Duration,
    ) -> Result<Maintenance, StoreError> {
        let sent = Instant::now();
        let announce = self.shared.wanted_ms.load(Ordering::Relaxed);
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO replicas (id, host, started_at, heartbeat_at, dead_after)
                 VALUES ($1, $2, {DB_NOW}, {DB_NOW}, $3)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                     dead_after = excluded.dead_after"
            ))
            .await?;
        let dead_after = (FENCE + MARGIN).as_millis() as i64 + announce;
        tx.execute(&stmt, &[&self.replica(), &hostname(), &dead_after])
            .await?;
        let stmt = tx
            .prepare_cached(&format!(
                "UPDATE resources SET lease_until = {DB_NOW} + $2 WHERE leased_by = $1"
            ))
            .await?;
        tx.execute(
            &stmt,
            &[&self.replica(), &(resource_lease.as_millis() as i64)],
        )
        .await?;
        let stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO leader (role, holder, until) VALUES ('maintenance', $1, {DB_NOW} + $2)
                 ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE leader.until <= {DB_NOW} OR leader.holder = excluded.holder
                 RETURNING 1"
            ))
            .await?;
        let leader = tx
            .query_opt(
                &stmt,
                &[&self.replica(), &(LEADER_LEASE.as_millis() as i64)],
            )
            .await?
            .is_some();
        let mut report = Maintenance {
            leader,
            ..Maintenance::default()
        };
        if leader {
            let stmt = tx
                .prepare_cached(&format!(
                    "DELETE FROM replicas WHERE heartbeat_at + dead_after < {DB_NOW} RETURNING id"
                ))
                .await?;
            let dead: Vec<String> = tx
                .query(&stmt, &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            // Leases held by a replica with no row at all go too: a claim that committed just
            // after its replica was swept. No index covers the lease columns (a claim's update
            // then stays HOT), so this walks the pending queue: at once when a replica died,
            // otherwise every few beats for those stragglers.
            let beats = self.shared.led.fetch_add(1, Ordering::Relaxed);
            if !dead.is_empty() || beats.is_multiple_of(ORPHAN_SWEEP_EVERY) {
                let stmt = tx
                    .prepare_cached(
                        "UPDATE deliveries SET locked_until = 0, locked_by = NULL
                         WHERE status = 'pending' AND locked_by IS NOT NULL
                           AND (locked_by = ANY($1::text[])
                                OR locked_by NOT IN (SELECT id FROM replicas))",
                    )
                    .await?;
                report.released_deliveries = tx.execute(&stmt, &[&dead]).await?;
            }
            let stmt = tx
                .prepare_cached(
                    "UPDATE resources SET lease_until = 0, leased_by = NULL
                     WHERE leased_by IS NOT NULL
                       AND (leased_by = ANY($1::text[])
                            OR leased_by NOT IN (SELECT id FROM replicas))",
                )
                .await?;
            report.released_resources = tx.execute(&stmt, &[&dead]).await?;
            report.dead_replicas = dead;
            let stmt = tx
                .prepare_cached(
                    "SELECT n_dead_tup FROM pg_stat_user_tables
                     WHERE relid = 'deliveries'::regclass",
                )
                .await?;
            report.dead_tuples = tx.query_opt(&stmt, &[]).await?.map(|r| r.get(0));
        }
        tx.commit().await?;
        *self.shared.beat.lock().unwrap_or_else(|e| e.into_inner()) = Some(sent);
        self.shared.announced_ms.store(announce, Ordering::Relaxed);
        self.shared.leading.store(leader, Ordering::Relaxed);
        Ok(report)
    }

    /// Leaves cleanly: this replica's row, resource leases and leader lease go at once, so the
    /// others take over without waiting for them to run out.
    pub(in crate::store) async fn leave(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let me = self.replica();
        tx.execute(
            "UPDATE resources SET lease_until = 0, leased_by = NULL WHERE leased_by = $1",
            &[&me],
        )
        .await?;
        tx.execute("DELETE FROM leader WHERE holder = $1", &[&me])
            .await?;
        tx.execute("DELETE FROM replicas WHERE id = $1", &[&me])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Calls `wake` whenever a commit on any replica queued deliveries, until `cancel`; a lost
    /// listening connection is opened again (and `wake` called, for what it may have missed).
    pub(in crate::store) async fn listen(
        &self,
        wake: &(dyn Fn() + Send + Sync),
        cancel: &CancellationToken,
    ) {
        let mut retry = Duration::from_millis(100);
        loop {
            let connected = async {
                let dedicated = self.dedicated().await?;
                let driver = tokio::spawn(dedicated.driven.map(drop));
                let listening = dedicated
                    .client
                    .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
                    .await;
                Ok::<_, StoreError>((dedicated.client, dedicated.messages, driver, listening))
            };
            let (client, mut messages, driver) = tokio::select! {
                () = cancel.cancelled() => return,
                connected = connected => match connected {
                    Ok((client, messages, driver, Ok(()))) => (client, messages, driver),
                    Ok((_, _, driver, Err(e))) => {
                        driver.abort();
                        self.listen_failed(&e.into(), &mut retry, cancel).await;
                        continue;
                    }
                    Err(e) => {
                        self.listen_failed(&e, &mut retry, cancel).await;
                        continue;
                    }
                },
            };
            retry = Duration::from_millis(100);
            wake();
            loop {
                tokio::select! {
                    () = cancel.cancelled() => {
                        driver.abort();
                        return;
                    }
                    message = messages.recv() => match message {
                        Some(_) => wake(),
                        // The connection ended: open another.
                        None => break,
                    },
                }
            }
            drop(client);
            tracing::warn!(database = %self.target(), "Lost the notification connection; reconnecting.");
        }
    }

    async fn listen_failed(
        &self,
        error: &StoreError,
        retry: &mut Duration,
        cancel: &CancellationToken,
    ) {
        tracing::warn!(%error, "Cannot listen for commits of other replicas; retrying (the periodic check still finds their work).");
        tokio::select! {
            () = cancel.cancelled() => {}
            () = tokio::time::sleep(*retry) => {}
        }
        *retry = (*retry * 2).min(Duration::from_secs(5));
    }
}

/// This machine's name, for the operator reading `replicas` (a pod's name in Kubernetes).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
