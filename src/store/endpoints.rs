//! Endpoints: those the config file names, reconciled at every start, and those added at run
//! time through the CLI, the API or the dashboard.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::endpoint::{ActionFilter, EndpointSpec};
use crate::event::Event;
use crate::secret::Secret;

/// An endpoint as stored.
#[derive(Debug, Clone)]
pub struct StoredEndpoint {
    /// Row id.
    pub id: i64,
    /// Settings.
    pub spec: EndpointSpec,
    /// The previous secret, still signed with until the given time (rotation).
    pub old_secret: Option<(Secret, DateTime<Utc>)>,
    /// Who registered it: [`Origin::as_str`] (`config`, `cli` or `api`).
    pub origin: String,
    /// Why it was disabled, if it was.
    pub disabled_reason: Option<String>,
    /// Failing without a success since then.
    pub failing_since: Option<DateTime<Utc>>,
}

/// Who registered an endpoint, as `endpoints list` shows it. Only `config` endpoints are
/// reconciled with the file at start; the others live in the database alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The config file's `[[endpoints]]`.
    Config,
    /// `pollhook endpoints add`.
    Cli,
    /// `POST /api/v1/endpoints`.
    Api,
}

impl Origin {
    /// The name stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Cli => "cli",
            Self::Api => "api",
        }
    }
}

/// A change to an endpoint's settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    /// New URL.
    pub url: Option<String>,
    /// New secret (the old one keeps signing until `old_secret_until`).
    pub secret: Option<Secret>,
    /// How long the old secret stays valid after a rotation.
    pub rotation_overlap: Option<std::time::Duration>,
    /// New resource patterns.
    pub resources: Option<Vec<String>>,
    /// New action filter.
    pub actions: Option<ActionFilter>,
    /// New signing scheme.
    pub signing: Option<crate::sign::Scheme>,
    /// New body format.
    pub format: Option<crate::encode::Format>,
}

impl Store {
    /// Makes the database's config-origin endpoints match `specs`: adds new ones, applies a
    /// definition that changed in the file (resetting runtime state), leaves one whose
    /// definition is unchanged as the operator left it (paused, disabled, edited or removed:
    /// [`EndpointSpec::fingerprint`] tells), and removes config endpoints no longer in the file
    /// (with their deliveries).
    pub async fn reconcile_endpoints(&self, specs: &[EndpointSpec]) -> Result<(), StoreError> {
        let specs = specs.to_vec();
        on_backend!(self, |db| db.reconcile_endpoints(&specs))
    }
    /// Every endpoint, by name.
    pub async fn endpoints(&self) -> Result<Vec<StoredEndpoint>, StoreError> {
        on_backend!(self, |db| db.endpoints())
    }
    /// One endpoint by row id.
    pub async fn endpoint(&self, id: i64) -> Result<Option<StoredEndpoint>, StoreError> {
        on_backend!(self, |db| db.endpoint(id))
    }
    /// One endpoint by name.
    pub async fn endpoint_named(&self, name: &str) -> Result<StoredEndpoint, StoreError> {
        let name = name.to_owned();
        on_backend!(self, |db| db.endpoint_named(&name))
    }
    /// Registers an endpoint at run time as the API does; [`StoreError::Duplicate`] if the name
    /// is taken.
    pub async fn add_endpoint(&self, spec: &EndpointSpec) -> Result<i64, StoreError> {
        self.add_endpoint_from(spec, Origin::Api).await
    }
    /// Registers an endpoint at run time, recording who did; [`StoreError::Duplicate`] if the
    /// name is taken.
    pub async fn add_endpoint_from(
        &self,
        spec: &EndpointSpec,
        origin: Origin,
    ) -> Result<i64, StoreError> {
        let spec = spec.clone();
        on_backend!(self, |db| db.add_endpoint(&spec, origin))
    }
    /// Changes an endpoint's settings.
    pub async fn update_endpoint(
        &self,
        name: &str,
        patch: EndpointPatch,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        on_backend!(self, |db| db.update_endpoint(&name, &patch))
    }
    /// Removes an endpoint with its deliveries and attempts; a config endpoint stays removed
    /// across restarts until the file's definition of it changes.
    pub async fn remove_endpoint(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        on_backend!(self, |db| db.remove_endpoint(&name))
    }
    /// Pauses (`false`) or resumes (`true`) an endpoint; resuming clears a disabled state.
    pub async fn set_endpoint_active(&self, name: &str, active: bool) -> Result<(), StoreError> {
        let name = name.to_owned();
        on_backend!(self, |db| db.set_endpoint_active(&name, active))
    }
    /// Writes `events` with one delivery each, for endpoint `endpoint_id` alone, in one
    /// transaction ([`StoreError::NotFound`] if it is gone). Returns how many.
    pub async fn queue_for_endpoint(
        &self,
        endpoint_id: i64,
        events: Vec<Event>,
    ) -> Result<usize, StoreError> {
        on_backend!(self, |db| db.queue_for_endpoint(endpoint_id, &events))
    }
}
