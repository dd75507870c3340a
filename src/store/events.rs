//! Events: the outbox of everything detected, newest first, and replays of one.

use super::{Store, StoreError};
use crate::event::Event;

/// Filters for listing events.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Source name.
    pub source: Option<String>,
    /// `source.resource` or a bare resource name.
    pub resource: Option<String>,
    /// Action.
    pub action: Option<String>,
    /// Item id.
    pub resource_id: Option<String>,
    /// Only events with `seq` below this (cursor paging, newest first).
    pub before_seq: Option<i64>,
    /// Only events detected at or after this time (ms).
    pub since_ms: Option<i64>,
    /// Only events detected before this time (ms).
    pub until_ms: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

impl Store {
    /// Events, newest first, with their sequence numbers.
    pub async fn events(&self, filter: EventFilter) -> Result<Vec<(i64, Event)>, StoreError> {
        on_backend!(self, |db| db.events(&filter))
    }
    /// One event by id.
    pub async fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let id = id.to_owned();
        on_backend!(self, |db| db.event(&id))
    }
    /// Sends an event again (same event id) to one endpoint, or to every endpoint that had a
    /// delivery of it. Returns the endpoints it was queued for.
    pub async fn replay(
        &self,
        event_id: &str,
        endpoint: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let event_id = event_id.to_owned();
        let endpoint = endpoint.map(str::to_owned);
        on_backend!(self, |db| db.replay(&event_id, endpoint.as_deref()))
    }
}
