//! Retention: the background task that keeps the database from growing without bound.
//!
//! In: the store and `[storage] retain` / `retain_failed`. Out: old, settled events removed with
//! their deliveries and attempts, and the database's size and oldest kept event as gauges.
//!
//! Invariants: with several replicas (PostgreSQL) it runs on one, the leader; any replica may
//! run a pass safely (each batch is its own transaction), so a leader that moves mid-pass breaks
//! nothing. It never blocks polls or deliveries for long: each batch is one short
//! transaction of at most [`BATCH`] events, with a pause between batches so other writers take
//! their turn. It never removes an event with a pending delivery, and one with a dead-lettered
//! delivery only after `retain_failed` (see [`Store::prune_events`]). The snapshot is never
//! touched, so a backfill still reaches every current item; `replay` reaches kept events only.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::StorageConfig;
use crate::store::Store;

/// Events removed per transaction at most.
pub const BATCH: usize = 2_000;
/// How often a pass runs.
pub const EVERY: Duration = Duration::from_secs(60);
/// The pause between two batches of one pass.
const BETWEEN_BATCHES: Duration = Duration::from_millis(50);

/// Runs a pass now and then every [`EVERY`] until `cancel`; with several replicas, only the one
/// holding the leader lease runs it ([`Store::leads_maintenance`]), whichever that is by then.
pub async fn run(store: Store, storage: StorageConfig, cancel: CancellationToken) {
    if store.shared() {
        // The first heartbeat decides who leads; a pass at start is not urgent.
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(crate::cluster::HEARTBEAT * 2) => {}
        }
    }
    loop {
        if !store.leads_maintenance() {
            tracing::debug!(
                "Retention runs on the replica holding the leader lease; not this one."
            );
        } else if let Err(error) = pass(&store, &storage, &cancel).await {
            tracing::warn!(%error, "Retention pass failed; trying again later.");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// One pass: batches until none is full, then the gauges. Returns how many events it removed.
pub async fn pass(
    store: &Store,
    storage: &StorageConfig,
    cancel: &CancellationToken,
) -> Result<usize, crate::store::StoreError> {
    let now = crate::store::now_ms();
    let before = now.saturating_sub(storage.retain.as_millis() as i64);
    let failed_before = now.saturating_sub(storage.retain_failed.as_millis() as i64);
    let mut removed = 0;
    loop {
        let n = store.prune_events(before, failed_before, BATCH).await?;
        removed += n;
        if n < BATCH || cancel.is_cancelled() {
            break;
        }
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
    if removed > 0 {
        tracing::info!(
            removed,
            "Removed events past [storage] retain, with their deliveries."
        );
    }
    crate::metrics::storage(&store.storage_stats().await?);
    Ok(removed)
}
