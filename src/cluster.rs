//! Cluster: this replica's part in sharing a PostgreSQL database with others.
//!
//! In: the store and the dispatcher's [`Wake`]. Out: a heartbeat every [`HEARTBEAT`] (with the
//! maintenance that runs once, on whichever replica holds the leader lease), and wake-ups of the
//! dispatcher when another replica's commit queued deliveries.
//!
//! Invariant: nothing here is needed for correctness. A missed notification is caught by the
//! dispatcher's periodic check; a missed heartbeat only makes this replica stop sending (it is
//! fenced) and, after long enough, lets the others take its work. On SQLite, both loops are idle.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::deliver::Wake;
use crate::metrics;
use crate::store::{Store, StoreError};

/// How often a replica proves it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a resource claim lasts without a heartbeat renewing it: a replica that died
/// mid-poll holds its resource at most this long (less once the leader finds it dead).
pub const RESOURCE_LEASE: Duration = Duration::from_secs(15);

/// Heartbeats and listens until `cancel`, then hands this replica's claims back.
pub async fn run(store: Store, wake: Wake, cancel: CancellationToken) {
    let listen = store.listen(move || wake.notify(), cancel.clone());
    let beat = heartbeat(&store, &cancel);
    tokio::join!(listen, beat);
    if let Err(error) = store.leave().await {
        tracing::warn!(%error, "Cannot hand this replica's claims back; the others take them once its heartbeat is missed.");
    }
}

/// One heartbeat now (so the dispatcher may send at once), reporting what maintenance did.
pub async fn beat(store: &Store) {
    // A call stuck on a stalled network must not hold the loop: the next tick tries again, and
    // meanwhile this replica is fenced.
    let done = tokio::time::timeout(HEARTBEAT * 2, store.heartbeat(RESOURCE_LEASE)).await;
    match done.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(
            "the heartbeat took longer than two heartbeats".to_owned(),
        ))
    }) {
        Ok(done) => {
            metrics::maintenance(done.leader, done.dead_tuples);
            if !done.dead_replicas.is_empty() {
                tracing::warn!(
                    replicas = ?done.dead_replicas,
                    deliveries = done.released_deliveries,
                    resources = done.released_resources,
                    "Replicas stopped heartbeating; their claims were handed back."
                );
            }
        }
        Err(error) => {
            tracing::warn!(%error, "Heartbeat failed; this replica stops sending webhooks until one succeeds.")
        }
    }
}

async fn heartbeat(store: &Store, cancel: &CancellationToken) {
    if !store.shared() {
        return;
    }
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = beat(store) => {}
        }
    }
}
