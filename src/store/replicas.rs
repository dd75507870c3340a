//! Replicas: what lets several `pollhook run` processes share one database (PostgreSQL), and
//! what the single SQLite process needs none of.
//!
//! In: a replica's wish to poll a resource, its heartbeat, its wish to send a webhook. Out: who
//! polls ([`ResourceClaim`]), what maintenance did ([`Maintenance`]), whether it may send.
//!
//! Invariants:
//! - Each due time of a resource is polled by one replica; the others wait for the next one.
//!   On SQLite, one process runs (`RunLock`), so every claim is won.
//! - A replica sends only while its heartbeat is fresh, so when the leader hands a silent
//!   replica's deliveries to others, none of its requests is still on the wire.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Backend, Store, StoreError};

/// The answer to a claim on a resource's next poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceClaim {
    /// This replica polls it now, then calls [`Store::finish_resource`].
    Won,
    /// It is not due for this long; ask again then.
    NotYet(Duration),
    /// Another replica is polling it; its lease has this long to run.
    Busy(Duration),
}

/// What one heartbeat did.
#[derive(Debug, Clone, Default)]
pub struct Maintenance {
    /// This replica holds the leader lease and ran the maintenance.
    pub leader: bool,
    /// Replicas found dead and removed.
    pub dead_replicas: Vec<String>,
    /// Their delivery leases handed back.
    pub released_deliveries: u64,
    /// Their resource leases handed back.
    pub released_resources: u64,
    /// Dead tuples in the deliveries table, as PostgreSQL counts them (leader only).
    pub dead_tuples: Option<i64>,
}

impl Store {
    /// Claims the next poll of a resource for this replica, leased for `lease` (renewed by every
    /// heartbeat while the poll runs).
    pub async fn claim_resource(
        &self,
        source: &str,
        resource: &str,
        lease: Duration,
    ) -> Result<ResourceClaim, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(ResourceClaim::Won),
            Backend::Postgres(pg) => pg.claim_resource(source, resource, lease).await,
        }
    }

    /// Ends a won claim: the resource's next poll is due `next_in` from now, for whichever
    /// replica claims it then.
    pub async fn finish_resource(
        &self,
        source: &str,
        resource: &str,
        next_in: Duration,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(pg) => pg.finish_resource(source, resource, next_in).await,
        }
    }

    /// Whether this process may start a webhook request that takes up to `timeout` now.
    pub fn may_send(&self, timeout: Duration) -> bool {
        match &self.backend {
            Backend::Sqlite(_) => true,
            Backend::Postgres(pg) => pg.may_send(timeout),
        }
    }

    /// One heartbeat, with the maintenance that must run once (done by the leader); nothing on
    /// SQLite. `resource_lease` is how long the resource claims in progress are extended.
    pub async fn heartbeat(&self, resource_lease: Duration) -> Result<Maintenance, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Maintenance::default()),
            Backend::Postgres(pg) => pg.heartbeat(resource_lease).await,
        }
    }

    /// Whether maintenance that must run once (retention) is this process's to run: always on
    /// SQLite (one process), on PostgreSQL only on the replica holding the leader lease.
    pub fn leads_maintenance(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(_) => true,
            Backend::Postgres(pg) => pg.leads(),
        }
    }

    /// Hands this replica's claims back at a clean shutdown.
    pub async fn leave(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(pg) => pg.leave().await,
        }
    }

    /// Calls `wake` whenever another replica's commit queued deliveries, until `cancel` fires
    /// (PostgreSQL's LISTEN/NOTIFY). On SQLite, one process commits everything and wakes its
    /// own dispatcher, so this only waits for `cancel`.
    pub async fn listen(&self, wake: impl Fn() + Send + Sync, cancel: CancellationToken) {
        match &self.backend {
            Backend::Sqlite(_) => cancel.cancelled().await,
            Backend::Postgres(pg) => pg.listen(&wake, &cancel).await,
        }
    }

    /// Applies pending migrations and returns the schema version (`pollhook migrate`). Opening a
    /// store already migrates; this says what it found.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => super::run(db, |db| db.schema_version()).await,
            Backend::Postgres(pg) => pg.schema_version().await,
        }
    }
}
