//! Endpoints: list, show, add (scheme → secret → validate → add → optional backfill), update,
//! rotate the secret with an overlap, pause, resume, remove, backfill, send a test event; each
//! one's attempts over the last day.
//!
//! In: names and settings from the CLI, the API or the dashboard. Out: [`EndpointView`]s;
//! [`CreatedEndpoint`] and [`RotatedSecret`], the only values that carry a real secret, once.
//!
//! Invariant: settings are checked by [`validate_endpoint`] as the endpoint would be after the
//! change, whichever edge they came from; problems name the field (`url`), not the config path.
//! A URL sent back with its password masked as pollhook shows it is refused, never stored.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::{Admin, AdminError};
use crate::config::{EndpointInput, Problem, Secret, parse_duration, validate_endpoint};
use crate::endpoint::{MASKED_PASSWORD, is_masked_url, shown_url_text};
use crate::event::{Action, Event};
use crate::sign::{self, Scheme};
use crate::store::{EndpointPatch, Origin, StoredEndpoint};

/// Whether deliveries go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    /// They do.
    Active,
    /// An operator paused it; its deliveries wait.
    Paused,
    /// pollhook disabled it after failing too long; its deliveries wait.
    Disabled,
}

impl EndpointState {
    /// The state of a stored endpoint.
    pub fn of(e: &StoredEndpoint) -> EndpointState {
        match (e.spec.active, &e.disabled_reason) {
            (true, _) => EndpointState::Active,
            (false, Some(_)) => EndpointState::Disabled,
            (false, None) => EndpointState::Paused,
        }
    }

    /// `active`, `paused` or `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Active => "active",
            EndpointState::Paused => "paused",
            EndpointState::Disabled => "disabled",
        }
    }
}

/// An endpoint as operators see it: the secret only as a hint, a URL's password masked, the
/// names of the extra headers but not their values (they often carry credentials).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointView {
    /// Unique name.
    pub name: String,
    /// Where events are POSTed, any password masked.
    pub url: String,
    /// `jwt` or `standard-webhooks`.
    pub signing: &'static str,
    /// The secret's prefix and last characters.
    pub secret_hint: String,
    /// `source.resource` patterns.
    pub resources: Vec<String>,
    /// Actions wanted; empty: all.
    pub actions: Vec<String>,
    /// Deliveries go out.
    pub active: bool,
    /// `active`, `paused` or `disabled`.
    pub state: EndpointState,
    /// Why pollhook disabled it, if it did.
    pub disabled_reason: Option<String>,
    /// Who registered it: `config` (the file), `cli` or `api`.
    pub origin: String,
    /// Names of the extra headers.
    pub headers: Vec<String>,
    /// Request timeout, if not the default.
    pub timeout_ms: Option<u64>,
    /// Body format: `json` or `xml`.
    pub format: &'static str,
}

impl From<&StoredEndpoint> for EndpointView {
    fn from(e: &StoredEndpoint) -> Self {
        EndpointView {
            name: e.spec.name.clone(),
            url: shown_url_text(&e.spec.url),
            signing: e.spec.signing.as_str(),
            secret_hint: e.spec.secret.hint(),
            resources: e.spec.resources.clone(),
            actions: e.spec.actions.as_slice().to_vec(),
            active: e.spec.active,
            state: EndpointState::of(e),
            disabled_reason: e.disabled_reason.clone(),
            origin: e.origin.clone(),
            headers: e.spec.headers.iter().map(|(k, _)| k.clone()).collect(),
            timeout_ms: e
                .spec
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            format: e.spec.format.as_str(),
        }
    }
}

/// A new endpoint's settings, as the config file has them; no `secret` means one is generated.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// Unique name.
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// Signing secret; `None`: generate one and return it once.
    pub secret: Option<String>,
    /// `jwt` or `standard-webhooks`.
    pub signing: String,
    /// `source.resource` patterns; `None`: all.
    pub resources: Option<Vec<String>>,
    /// Actions; `None`: all.
    pub actions: Option<Vec<String>>,
    /// Deliver at once (else registered paused).
    pub active: bool,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// Request timeout, e.g. `10s`.
    pub timeout: Option<String>,
    /// Body format, `json` (default) or `xml`.
    pub format: Option<String>,
    /// Also queue the current state of its resources as `created` events.
    pub backfill: bool,
    /// Who adds it (`cli`, `api`), shown as its origin.
    pub origin: Origin,
}

/// A created endpoint, with its secret if pollhook generated it.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedEndpoint {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// The generated secret, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// With backfill: how many `created` events were queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfilled: Option<usize>,
}

/// A change to an endpoint; `None` keeps a setting.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    /// New URL.
    pub url: Option<String>,
    /// New secret.
    pub secret: Option<String>,
    /// How long the previous secret keeps signing too after `secret` replaces it.
    pub overlap: Option<Duration>,
    /// New signing scheme.
    pub signing: Option<String>,
    /// New resource patterns.
    pub resources: Option<Vec<String>>,
    /// New action filter.
    pub actions: Option<Vec<String>>,
    /// Resume (`true`) or pause (`false`).
    pub active: Option<bool>,
    /// New body format, `json` or `xml`.
    pub format: Option<String>,
}

/// An endpoint's attempts over the last [`ACTIVITY_WINDOW`], for its success rate.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointActivity {
    /// Endpoint name.
    pub name: String,
    /// Attempts made.
    pub attempts: i64,
    /// Of which answered 2xx.
    pub succeeded: i64,
}

/// How far back [`Admin::endpoint_activity`] looks.
pub const ACTIVITY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// A rotated secret, shown once, and how long the previous one stays valid.
#[derive(Debug, Clone, Serialize)]
pub struct RotatedSecret {
    /// The new secret.
    pub secret: String,
    /// How long the previous secret keeps signing too.
    pub previous_secret_valid_for_secs: u64,
}

/// The longest overlap text accepted (the OpenAPI document's `maxLength`); it also keeps the
/// overlap's milliseconds far from overflowing.
pub const MAX_OVERLAP_CHARS: usize = 32;

/// The overlap when none is given.
pub const DEFAULT_OVERLAP: &str = "24h";

/// Parses a rotation overlap (`24h`, `7d`).
pub fn parse_overlap(text: &str) -> Result<Duration, AdminError> {
    if text.len() > MAX_OVERLAP_CHARS {
        return Err(AdminError::invalid(
            "overlap",
            format!("is over {MAX_OVERLAP_CHARS} characters"),
            Some("e.g. 24h or 7d"),
        ));
    }
    parse_duration(text).map_err(|m| AdminError::invalid("overlap", m, Some("e.g. 24h or 7d")))
}

/// Snapshot items read and queued per transaction by a backfill.
const BACKFILL_BATCH: usize = 1000;

/// Problems from endpoint validation name `endpoints[x].url`; outside the file the field is `url`.
fn fields(problems: Vec<Problem>) -> AdminError {
    AdminError::Invalid(
        problems
            .into_iter()
            .map(|mut p| {
                if let Some((_, field)) =
                    p.at.strip_prefix("endpoints[")
                        .and_then(|r| r.split_once("]."))
                {
                    p.at = field.to_owned();
                }
                p
            })
            .collect(),
    )
}

fn scheme(signing: &str) -> Result<Scheme, AdminError> {
    signing
        .parse()
        .map_err(|e: sign::SignError| AdminError::invalid("signing", e.to_string(), None))
}

impl Admin<'_> {
    /// Every endpoint, by name.
    pub async fn endpoints(&self) -> Result<Vec<EndpointView>, AdminError> {
        let list = self.store.endpoints().await?;
        Ok(list.iter().map(EndpointView::from).collect())
    }

    /// One endpoint.
    pub async fn endpoint(&self, name: &str) -> Result<EndpointView, AdminError> {
        Ok(EndpointView::from(&self.store.endpoint_named(name).await?))
    }

    /// Whether the config file defines `name`: its settings return at the next start.
    pub fn from_config(&self, name: &str) -> bool {
        self.config.endpoints.iter().any(|e| e.name == name)
    }

    /// Registers an endpoint: the scheme, a secret generated if none was given, the one
    /// validation, the row, then the backfill if asked.
    pub async fn add_endpoint(&self, new: NewEndpoint) -> Result<CreatedEndpoint, AdminError> {
        let scheme = scheme(&new.signing)?;
        let (secret, generated) = match new.secret {
            Some(given) => (given, None),
            None => {
                let made = sign::generate_secret(scheme);
                (made.clone(), Some(made))
            }
        };
        let input = EndpointInput {
            name: new.name,
            url: new.url,
            secret,
            signing: new.signing,
            resources: new.resources,
            actions: new.actions,
            active: new.active,
            headers: new.headers,
            timeout: new.timeout,
            format: new.format,
        };
        let spec = validate_endpoint(input, self.config).map_err(fields)?;
        self.store.add_endpoint_from(&spec, new.origin).await?;
        let backfilled = if new.backfill {
            Some(self.backfill(&spec.name).await?)
        } else {
            None
        };
        self.wake.notify();
        Ok(CreatedEndpoint {
            endpoint: self.endpoint(&spec.name).await?,
            secret: generated,
            backfilled,
        })
    }

    /// Changes an endpoint, validated as it will be after the change.
    pub async fn update_endpoint(
        &self,
        name: &str,
        change: EndpointChange,
    ) -> Result<EndpointView, AdminError> {
        if change.url.as_deref().is_some_and(is_masked_url) {
            return Err(AdminError::invalid(
                "url",
                format!(
                    "has its password masked as `{MASKED_PASSWORD}`, as pollhook shows it; storing it would replace the real password"
                ),
                Some(
                    "send the real URL with its password, or leave `url` out to keep the current one",
                ),
            ));
        }
        let current = self.store.endpoint_named(name).await?;
        let spec = &current.spec;
        let input = EndpointInput {
            name: name.to_owned(),
            url: change.url.clone().unwrap_or_else(|| spec.url.clone()),
            secret: change
                .secret
                .clone()
                .unwrap_or_else(|| spec.secret.expose().to_owned()),
            signing: change
                .signing
                .clone()
                .unwrap_or_else(|| spec.signing.as_str().to_owned()),
            resources: Some(
                change
                    .resources
                    .clone()
                    .unwrap_or_else(|| spec.resources.clone()),
            ),
            actions: Some(
                change
                    .actions
                    .clone()
                    .unwrap_or_else(|| spec.actions.as_slice().to_vec()),
            ),
            active: spec.active,
            headers: spec.headers.iter().cloned().collect(),
            timeout: None,
            format: Some(
                change
                    .format
                    .clone()
                    .unwrap_or_else(|| spec.format.as_str().to_owned()),
            ),
        };
        let valid = validate_endpoint(input, self.config).map_err(fields)?;
        let patch = EndpointPatch {
            url: change.url.map(|_| valid.url.clone()),
            secret: change.secret.map(|_| valid.secret.clone()),
            rotation_overlap: change.overlap,
            resources: change.resources.map(|_| valid.resources.clone()),
            actions: change.actions.map(|_| valid.actions.clone()),
            signing: change.signing.map(|_| valid.signing),
            format: change.format.map(|_| valid.format),
        };
        self.store.update_endpoint(name, patch).await?;
        if let Some(active) = change.active {
            self.store.set_endpoint_active(name, active).await?;
        }
        self.wake.notify();
        self.endpoint(name).await
    }

    /// Generates a new secret for an endpoint's scheme; the previous one keeps signing too for
    /// `overlap` (standard-webhooks requests carry both signatures meanwhile).
    pub async fn rotate_secret(
        &self,
        name: &str,
        overlap: Duration,
    ) -> Result<RotatedSecret, AdminError> {
        let current = self.store.endpoint_named(name).await?;
        let secret = sign::generate_secret(current.spec.signing);
        let patch = EndpointPatch {
            secret: Some(Secret::new(secret.clone())),
            rotation_overlap: Some(overlap),
            ..EndpointPatch::default()
        };
        self.store.update_endpoint(name, patch).await?;
        Ok(RotatedSecret {
            secret,
            previous_secret_valid_for_secs: overlap.as_secs(),
        })
    }

    /// Pauses (`false`) or resumes (`true`) an endpoint; resuming clears a disabled state.
    pub async fn set_active(&self, name: &str, active: bool) -> Result<EndpointView, AdminError> {
        self.store.set_endpoint_active(name, active).await?;
        self.wake.notify();
        self.endpoint(name).await
    }

    /// Removes an endpoint with its deliveries and attempts.
    pub async fn remove_endpoint(&self, name: &str) -> Result<(), AdminError> {
        Ok(self.store.remove_endpoint(name).await?)
    }

    /// Every endpoint's attempts over the last [`ACTIVITY_WINDOW`]; an endpoint without any is
    /// left out.
    pub async fn endpoint_activity(&self) -> Result<Vec<EndpointActivity>, AdminError> {
        let window = i64::try_from(ACTIVITY_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let since = Utc::now().timestamp_millis().saturating_sub(window);
        let counts = self.store.attempt_counts(since).await?;
        Ok(counts
            .into_iter()
            .map(|c| EndpointActivity {
                name: c.endpoint,
                attempts: c.attempts,
                succeeded: c.succeeded,
            })
            .collect())
    }

    /// Queues a `pollhook.endpoint.test` event for this endpoint alone, whatever its filters, so
    /// an operator sees a signed webhook arrive (or why not). Returns the event.
    pub async fn send_test(&self, name: &str) -> Result<Event, AdminError> {
        let endpoint = self.store.endpoint_named(name).await?;
        let data = serde_json::json!({
            "endpoint": name,
            "message": "A test event from pollhook: this endpoint receives signed webhooks.",
        });
        let event = Event::operational("endpoint", "test", name, data, Utc::now());
        self.store
            .queue_for_endpoint(endpoint.id, vec![event.clone()])
            .await?;
        self.wake.notify();
        Ok(event)
    }

    /// Queues the current snapshot of every resource the endpoint wants `created` events of,
    /// as `created` events for that endpoint alone, so a new consumer starts from full state.
    /// Returns how many. Read and queued in batches, so memory stays bounded by a batch.
    pub async fn backfill(&self, name: &str) -> Result<usize, AdminError> {
        let endpoint = self.store.endpoint_named(name).await?;
        let mut resources: Vec<(String, String)> = self
            .store
            .status()
            .await?
            .into_iter()
            .filter(|r| endpoint.spec.wants(&r.source, &r.resource, "created"))
            .map(|r| (r.source, r.resource))
            .collect();
        resources.sort();
        let now = Utc::now();
        let mut queued = 0;
        for (source, resource) in &resources {
            let mut after = None;
            loop {
                let batch = self
                    .store
                    .snapshot_items(source, resource, after.take(), BACKFILL_BATCH)
                    .await?;
                let full = batch.len() == BACKFILL_BATCH;
                after = batch.last().map(|(id, _)| id.clone());
                let events: Vec<Event> = batch
                    .into_iter()
                    .map(|(id, body)| {
                        // The snapshot's bytes as the API sent them: the key order of a live
                        // event; marked so a receiver can tell a bootstrap from a change.
                        Event::new(source, resource, Action::Created, &id, body, None, &[], now)
                            .backfilled()
                    })
                    .collect();
                if !events.is_empty() {
                    queued += self.store.queue_for_endpoint(endpoint.id, events).await?;
                }
                if !full {
                    break;
                }
            }
        }
        self.wake.notify();
        Ok(queued)
    }
}
