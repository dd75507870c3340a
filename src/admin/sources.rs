//! Sources: each resource's last poll and outcome, the deletes its guard holds, polls on demand.
//!
//! In: the config's sources and the store's per-resource state. Out: [`SourceView`]s in config
//! order, then the resources the database knows but the config no longer names
//! (`configured: false`), so nothing polled before is hidden; per-endpoint delivery totals.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Admin, AdminError, EndpointState};
use crate::Pipeline;
use crate::config::When;
use crate::store::ResourceStatus;

/// A source with its resources.
#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    /// Source name.
    pub name: String,
    /// `rest`, `exec` or `graphql`; `null` for a source no longer in the config.
    pub engine: Option<&'static str>,
    /// Named in the config (else only its history remains in the database).
    pub configured: bool,
    /// Its resources.
    pub resources: Vec<ResourceView>,
}

/// A resource and its last poll.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceView {
    /// Resource name.
    pub name: String,
    /// `source.resource`.
    pub key: String,
    /// `every <duration>` or `<cron> (<tz>)`; `null` when no longer configured.
    pub schedule: Option<String>,
    /// Named in the config.
    pub configured: bool,
    /// Start of the last poll.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// Its duration.
    pub last_duration_ms: Option<i64>,
    /// `baseline`, `changed`, `unchanged`, `held`, `failed`, …
    pub last_outcome: Option<String>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Items in the snapshot.
    pub item_count: i64,
    /// Deletes held back by the guard.
    pub held_deletes: i64,
    /// Polls failed in a row.
    pub consecutive_errors: i64,
    /// When its newest event was recorded (committed, a few milliseconds after its poll
    /// detected it); `None` before the first.
    pub last_change_at: Option<DateTime<Utc>>,
}

impl ResourceView {
    fn new(
        source: &str,
        name: &str,
        schedule: Option<String>,
        row: Option<&ResourceStatus>,
    ) -> Self {
        ResourceView {
            name: name.to_owned(),
            key: format!("{source}.{name}"),
            schedule,
            configured: true,
            last_poll_at: row.and_then(|r| r.last_poll_at),
            last_duration_ms: row.and_then(|r| r.last_duration_ms),
            last_outcome: row.and_then(|r| r.last_outcome.clone()),
            last_error: row.and_then(|r| r.last_error.clone()),
            item_count: row.map_or(0, |r| r.item_count),
            held_deletes: row.map_or(0, |r| r.held_deletes),
            consecutive_errors: row.map_or(0, |r| r.consecutive_errors),
            last_change_at: row.and_then(|r| r.last_change_at),
        }
    }
}

/// An endpoint's deliveries by status.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointTotals {
    /// Endpoint name.
    pub name: String,
    /// Waiting or being retried.
    pub pending: i64,
    /// Delivered.
    pub delivered: i64,
    /// Given up.
    pub failed: i64,
    /// `active`, `paused` or `disabled`.
    pub state: EndpointState,
    /// Why pollhook disabled it, if it did.
    pub disabled_reason: Option<String>,
}

/// Everything `pollhook status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Every source.
    pub sources: Vec<SourceView>,
    /// Every endpoint's deliveries.
    pub endpoints: Vec<EndpointTotals>,
}

/// What a poll on demand did.
#[derive(Debug, Clone, Serialize)]
pub struct PollView {
    /// `source.resource`.
    pub resource: String,
    /// Distinct items listed.
    pub listed: usize,
    /// Pages fetched.
    pub pages: u32,
    /// It recorded the baseline: nothing emitted.
    pub baseline: bool,
    /// The events found.
    pub events: Vec<PolledEvent>,
    /// Deliveries queued.
    pub deliveries: usize,
    /// Deletes held back by the guard.
    pub held_deletes: usize,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// One event a poll found, in brief.
#[derive(Debug, Clone, Serialize)]
pub struct PolledEvent {
    /// Event id.
    pub id: String,
    /// `<resource>.<action>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Item id.
    pub resource_id: String,
}

fn schedule(when: &When) -> String {
    match when {
        When::Every(d) => format!("every {}", humantime::format_duration(*d)),
        When::Cron { cron, tz } => format!("{} ({tz})", cron.as_str()),
    }
}

impl Admin<'_> {
    /// Every source and resource, configured ones first in config order.
    pub async fn sources(&self) -> Result<Vec<SourceView>, AdminError> {
        let mut rows = self.store.status().await?;
        let mut out: Vec<SourceView> = self
            .config
            .sources
            .iter()
            .map(|source| SourceView {
                name: source.name.clone(),
                engine: Some(source.kind.engine()),
                configured: true,
                resources: source
                    .resources
                    .iter()
                    .map(|r| {
                        let row = rows
                            .iter()
                            .find(|s| s.source == source.name && s.resource == r.name);
                        ResourceView::new(&source.name, &r.name, Some(schedule(&r.when)), row)
                    })
                    .collect(),
            })
            .collect();
        rows.retain(|row| {
            !out.iter()
                .any(|s| s.name == row.source && s.resources.iter().any(|r| r.name == row.resource))
        });
        rows.sort_by(|a, b| (&a.source, &a.resource).cmp(&(&b.source, &b.resource)));
        for row in &rows {
            let mut resource = ResourceView::new(&row.source, &row.resource, None, Some(row));
            resource.configured = false;
            match out.iter_mut().find(|s| s.name == row.source) {
                Some(source) => source.resources.push(resource),
                None => out.push(SourceView {
                    name: row.source.clone(),
                    engine: None,
                    configured: false,
                    resources: vec![resource],
                }),
            }
        }
        Ok(out)
    }

    /// Every endpoint's deliveries by status.
    pub async fn endpoint_totals(&self) -> Result<Vec<EndpointTotals>, AdminError> {
        let endpoints = self.store.endpoints().await?;
        let counts = self.store.delivery_counts().await?;
        let count = |name: &str, status: &str| {
            counts
                .iter()
                .find(|(n, s, _)| n == name && s == status)
                .map_or(0, |c| c.2)
        };
        Ok(endpoints
            .into_iter()
            .map(|e| EndpointTotals {
                pending: count(&e.spec.name, "pending"),
                delivered: count(&e.spec.name, "delivered"),
                failed: count(&e.spec.name, "failed"),
                state: EndpointState::of(&e),
                disabled_reason: e.disabled_reason,
                name: e.spec.name,
            })
            .collect())
    }

    /// Sources and endpoints together, for `pollhook status`.
    pub async fn status(&self) -> Result<Status, AdminError> {
        Ok(Status {
            sources: self.sources().await?,
            endpoints: self.endpoint_totals().await?,
        })
    }

    /// Lets the next complete listing of a configured resource apply the deletes its guard held
    /// back. Returns how many are held.
    pub async fn accept_deletes(&self, source: &str, resource: &str) -> Result<i64, AdminError> {
        let configured = self
            .config
            .sources
            .iter()
            .filter(|s| s.name == source)
            .any(|s| s.resources.iter().any(|r| r.name == resource));
        if !configured {
            return Err(AdminError::NotFound(format!(
                "no resource {source}.{resource} in the config"
            )));
        }
        Ok(self.store.accept_deletes(source, resource).await?)
    }
}

/// Polls one resource of a running pipeline now (waiting for a poll of it already running).
pub async fn poll_now(
    pipeline: &Pipeline,
    source: &str,
    resource: &str,
) -> Result<PollView, AdminError> {
    let Some((config, built, res)) = pipeline.resource(source, resource) else {
        return Err(AdminError::NotFound(format!(
            "no resource {source}.{resource}"
        )));
    };
    let report = pipeline.poll(config, built, res).await?;
    Ok(PollView {
        resource: res.key(source),
        listed: report.listed,
        pages: report.pages,
        baseline: report.baseline,
        events: report
            .events
            .iter()
            .map(|e| PolledEvent {
                id: e.id.clone(),
                kind: e.kind.clone(),
                resource_id: e.resource_id.clone(),
            })
            .collect(),
        deliveries: report.deliveries,
        held_deletes: report.held.map_or(0, |h| h.deletes),
        elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
    })
}
