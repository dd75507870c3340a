//! Events: list with filters and a cursor, newest first; show one.
//!
//! In: filters as an operator writes them (RFC 3339 times, an action name). Out: [`EventView`]s,
//! which are the webhook payload itself (DESIGN.md §5), and a cursor for the next page.

use serde::{Deserialize, Serialize};

use super::{Admin, AdminError, limit};
use crate::event::{Action, Event, OPERATIONAL_ACTIONS};
use crate::store::EventFilter;

/// An event as operators see it: exactly what receivers get.
pub type EventView = Event;

/// Filters for listing events; every one optional. Also the query string of `GET /events`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Source name.
    pub source: Option<String>,
    /// `source.resource` or a bare resource name.
    pub resource: Option<String>,
    /// `created`, `updated`, `deleted`, or an operational action.
    pub action: Option<String>,
    /// Item id.
    pub resource_id: Option<String>,
    /// Detected at or after (RFC 3339).
    pub since: Option<String>,
    /// Detected before (RFC 3339).
    pub until: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<i64>,
    /// How many, 1 to 1000; default 50.
    pub limit: Option<usize>,
}

/// A page of events, newest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventPage {
    /// The events.
    pub data: Vec<EventView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<i64>,
}

/// An RFC 3339 filter as Unix ms; the problem names `name`.
pub(super) fn time(name: &str, value: Option<&str>) -> Result<Option<i64>, AdminError> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.timestamp_millis())
                .map_err(|e| {
                    AdminError::invalid(
                        name,
                        format!("`{v}` is not an RFC 3339 time: {e}"),
                        Some("e.g. 2026-11-22T23:40:00Z"),
                    )
                })
        })
        .transpose()
}

impl Admin<'_> {
    /// Events matching `query`, newest first.
    pub async fn events(&self, query: EventQuery) -> Result<EventPage, AdminError> {
        if let Some(action) = &query.action
            && action.parse::<Action>().is_err()
            && !OPERATIONAL_ACTIONS.contains(&action.as_str())
        {
            return Err(AdminError::invalid(
                "action",
                format!("`{action}` is not an action"),
                Some("created, updated or deleted"),
            ));
        }
        let filter = EventFilter {
            since_ms: time("since", query.since.as_deref())?,
            until_ms: time("until", query.until.as_deref())?,
            limit: limit(query.limit, 50)?,
            source: query.source,
            resource: query.resource,
            action: query.action,
            resource_id: query.resource_id,
            before_seq: query.cursor,
        };
        let want = filter.limit;
        let events = self.store.events(filter).await?;
        let next_cursor = (events.len() == want)
            .then(|| events.last().map(|(seq, _)| *seq))
            .flatten();
        Ok(EventPage {
            data: events.into_iter().map(|(_, e)| e).collect(),
            next_cursor,
        })
    }

    /// One event.
    pub async fn event(&self, id: &str) -> Result<EventView, AdminError> {
        self.store
            .event(id)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no event {id}")))
    }
}
