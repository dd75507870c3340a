//! Deliveries: list with filters, an event's deliveries with their attempts, the attempts of
//! one, retry one or every failed one, replay an event.
//!
//! In: filters and ids. Out: [`DeliveryView`]s (with `attempt_log` where attempts are shown),
//! attempt rows, and what was queued again; the dispatcher is woken for each retry or replay.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Admin, AdminError, MAX_LIMIT, limit};
use crate::store::{AttemptRow, DeliveryFilter, DeliveryRow};

/// The statuses a delivery can have.
pub const STATUSES: [&str; 3] = ["pending", "delivered", "failed"];

/// The statuses a list can be filtered by: [`STATUSES`] and `retrying`, a pending delivery that
/// has been tried and waits for its next attempt.
pub const STATUS_FILTERS: [&str; 4] = ["pending", "retrying", "delivered", "failed"];

/// The response classes a list can be filtered by.
pub const CODE_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// A delivery as operators see it; `attempt_log` (oldest first) where attempts are shown.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: DeliveryRow,
    /// Its attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptRow>>,
}

/// Filters for listing deliveries; every one optional. Also the query string of
/// `GET /deliveries`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// Endpoint name.
    pub endpoint: Option<String>,
    /// `pending`, `retrying`, `delivered` or `failed`.
    pub status: Option<String>,
    /// Event id.
    pub event_id: Option<String>,
    /// The last response's class: `2xx`, `3xx`, `4xx` or `5xx`.
    pub code: Option<String>,
    /// Created at or after (RFC 3339).
    pub since: Option<String>,
    /// Created before (RFC 3339).
    pub until: Option<String>,
    /// How many, 1 to 1000; default 50.
    pub limit: Option<usize>,
}

impl Admin<'_> {
    /// Deliveries matching `query`, newest first.
    pub async fn deliveries(&self, query: DeliveryQuery) -> Result<Vec<DeliveryView>, AdminError> {
        if let Some(s) = &query.status
            && !STATUS_FILTERS.contains(&s.as_str())
        {
            return Err(AdminError::invalid(
                "status",
                format!("`{s}` is not a delivery status"),
                Some("pending, retrying, delivered or failed"),
            ));
        }
        let status_class = match query.code.as_deref() {
            None => None,
            Some(code) if CODE_CLASSES.contains(&code) => code[..1].parse().ok(),
            Some(code) => {
                return Err(AdminError::invalid(
                    "code",
                    format!("`{code}` is not a response class"),
                    Some("2xx, 3xx, 4xx or 5xx"),
                ));
            }
        };
        let retrying = query.status.as_deref() == Some("retrying");
        let filter = DeliveryFilter {
            limit: limit(query.limit, 50)?,
            endpoint: query.endpoint,
            status: if retrying {
                Some("pending".into())
            } else {
                query.status
            },
            event_id: query.event_id,
            min_attempts: retrying.then_some(1),
            status_class,
            since_ms: super::events::time("since", query.since.as_deref())?,
            until_ms: super::events::time("until", query.until.as_deref())?,
        };
        let rows = self.store.deliveries(filter).await?;
        Ok(rows
            .into_iter()
            .map(|delivery| DeliveryView {
                delivery,
                attempt_log: None,
            })
            .collect())
    }

    /// An event's deliveries, each with its attempts.
    pub async fn event_deliveries(&self, event_id: &str) -> Result<Vec<DeliveryView>, AdminError> {
        self.event(event_id).await?;
        let filter = DeliveryFilter {
            event_id: Some(event_id.to_owned()),
            limit: MAX_LIMIT,
            ..DeliveryFilter::default()
        };
        let mut views: Vec<DeliveryView> = (self.store.deliveries(filter).await?)
            .into_iter()
            .map(|delivery| DeliveryView {
                delivery,
                attempt_log: None,
            })
            .collect();
        attach(&mut views, self.store.attempts(event_id).await?);
        Ok(views)
    }

    /// The attempts of one delivery, oldest first.
    pub async fn attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRow>, AdminError> {
        if !self.store.delivery_exists(delivery_id).await? {
            return Err(AdminError::NotFound(format!("no delivery {delivery_id}")));
        }
        Ok(self.store.attempts(&delivery_id.to_string()).await?)
    }

    /// Fills in each delivery's `attempt_log` (oldest first), with one query for them all.
    pub async fn with_attempts(&self, deliveries: &mut [DeliveryView]) -> Result<(), AdminError> {
        let ids: Vec<i64> = deliveries.iter().map(|d| d.delivery.id).collect();
        attach(deliveries, self.store.attempts_of(&ids).await?);
        Ok(())
    }

    /// The attempts of every delivery of an event, oldest first.
    pub async fn event_attempts(&self, event_id: &str) -> Result<Vec<AttemptRow>, AdminError> {
        self.event(event_id).await?;
        Ok(self.store.attempts(event_id).await?)
    }

    /// Puts one delivery back in line with a fresh retry schedule.
    pub async fn retry(&self, delivery_id: i64) -> Result<(), AdminError> {
        self.store.retry_delivery(delivery_id).await?;
        self.wake.notify();
        Ok(())
    }

    /// Puts every failed delivery (of one endpoint, if named) back in line. Returns how many.
    pub async fn retry_failed(&self, endpoint: Option<&str>) -> Result<usize, AdminError> {
        if let Some(name) = endpoint {
            self.store.endpoint_named(name).await?;
        }
        let n = self.store.retry_failed(endpoint).await?;
        self.wake.notify();
        Ok(n)
    }

    /// Sends an event again, with the same event id, to one endpoint or to every one that had a
    /// delivery of it (not to endpoints added since). Returns the endpoints it was queued for.
    pub async fn replay(
        &self,
        event_id: &str,
        endpoint: Option<&str>,
    ) -> Result<Vec<String>, AdminError> {
        let queued = self.store.replay(event_id, endpoint).await?;
        self.wake.notify();
        Ok(queued)
    }
}

/// Gives each delivery its `attempt_log`: its attempts among `attempts`, in their order.
fn attach(deliveries: &mut [DeliveryView], attempts: Vec<AttemptRow>) {
    let mut by_delivery: HashMap<i64, Vec<AttemptRow>> = HashMap::new();
    for attempt in attempts {
        by_delivery
            .entry(attempt.delivery_id)
            .or_default()
            .push(attempt);
    }
    for view in deliveries {
        view.attempt_log = Some(by_delivery.remove(&view.delivery.id).unwrap_or_default());
    }
}
