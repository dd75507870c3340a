//! Retention: removing what is no longer needed, a small batch at a time, and how big the
//! database is.
//!
//! In: cut-off times. Out: how many events a batch removed; the database's size and its oldest
//! kept event.
//!
//! Invariant: an event goes only with all its deliveries and their attempts, and only when none
//! of its deliveries is pending; one with a dead-lettered delivery stays until that is resolved
//! (retried and delivered) or the separate, longer `failed_before` cut-off passes. Each batch is
//! one short transaction, so polls and deliveries never wait long behind it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Store, StoreError};

/// The database's size and age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StorageStats {
    /// Bytes on disk: SQLite's file and its write-ahead log; on PostgreSQL, pollhook's tables
    /// with their indexes and TOAST (the database may hold others).
    pub bytes: u64,
    /// When the oldest kept event was detected, if any is kept.
    pub oldest_event_at: Option<DateTime<Utc>>,
    /// Events kept.
    pub events: i64,
}

impl Store {
    /// Removes up to `batch` events detected before `before` (ms) whose deliveries are all
    /// delivered (or that had none), with their deliveries and attempts; events with a
    /// dead-lettered delivery go only once detected before `failed_before` (ms). Returns how many
    /// events it removed: fewer than `batch` means nothing more is due.
    pub async fn prune_events(
        &self,
        before: i64,
        failed_before: i64,
        batch: usize,
    ) -> Result<usize, StoreError> {
        on_backend!(self, |db| db.prune_events(before, failed_before, batch))
    }
    /// The database's size on disk and its oldest kept event.
    pub async fn storage_stats(&self) -> Result<StorageStats, StoreError> {
        on_backend!(self, |db| db.storage_stats())
    }
}
