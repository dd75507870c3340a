//! Admin: every operator operation, once, for the CLI, the admin API and the dashboard. Sources
//! and their status ([`sources`]), endpoints ([`endpoints`]), events ([`events`]), deliveries
//! and replays ([`deliveries`]).
//!
//! In: what an operator asks for, as plain values (names, filters, the settings of an endpoint),
//! with the validated [`Config`] and the [`Store`]. Out: one `Serialize` view per noun
//! ([`EndpointView`], [`EventView`], [`DeliveryView`], [`SourceView`]), which the CLI's `--json`
//! and the API print alike, or an [`AdminError`] that each edge maps to its own form (an error
//! JSON with a status; `error: …` and an exit code).
//!
//! Invariants: endpoint settings from any edge pass the one [`crate::config::validate_endpoint`];
//! a secret is returned only by the operation that creates or rotates it, never by a view; every
//! change that may queue or release deliveries wakes the dispatcher. Admin never runs SQL: it
//! decides, the store stores.

pub mod deliveries;
pub mod endpoints;
pub mod events;
pub mod sources;

pub use deliveries::{DeliveryQuery, DeliveryView};
pub use endpoints::{
    CreatedEndpoint, EndpointActivity, EndpointChange, EndpointState, EndpointView, NewEndpoint,
    RotatedSecret,
};
pub use events::{EventPage, EventQuery, EventView};
pub use sources::{EndpointTotals, PollView, ResourceView, SourceView, Status};

use crate::Pipeline;
use crate::config::{Config, Problem};
use crate::deliver::Wake;
use crate::poll::PollError;
use crate::source::SourceError;
use crate::store::{Store, StoreError};

/// Why an operator operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// What was named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The input is wrong; each problem names its field.
    #[error("{}", join(.0))]
    Invalid(Vec<Problem>),
    /// It clashes with what exists (a name taken, a concurrent poll).
    #[error("{0}")]
    Conflict(String),
    /// A poll could not fetch its listing; nothing was written.
    #[error("fetch failed; snapshot kept: {0}")]
    Fetch(SourceError),
    /// A poll could not keep its changed bodies until the commit; nothing was written.
    #[error(transparent)]
    Poll(PollError),
    /// The database failed.
    #[error(transparent)]
    Store(StoreError),
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl AdminError {
    /// One bad field.
    pub(crate) fn invalid(
        at: impl Into<String>,
        message: impl Into<String>,
        hint: Option<&str>,
    ) -> AdminError {
        AdminError::Invalid(vec![Problem {
            at: at.into(),
            message: message.into(),
            hint: hint.map(str::to_owned),
        }])
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => AdminError::NotFound(m),
            StoreError::Duplicate(m) | StoreError::VersionConflict(m) => AdminError::Conflict(m),
            other => AdminError::Store(other),
        }
    }
}

impl From<PollError> for AdminError {
    fn from(e: PollError) -> Self {
        match e {
            PollError::Fetch(e) => AdminError::Fetch(e),
            PollError::Store(e) => e.into(),
            spill @ PollError::Spill(_) => AdminError::Poll(spill),
        }
    }
}

/// The operations' handle: the config they check against, the store they act on, and the
/// dispatcher's wake-up (a CLI process has nobody listening; the running one notices the change
/// at its next look at the queue).
#[derive(Clone, Copy)]
pub struct Admin<'a> {
    store: &'a Store,
    config: &'a Config,
    wake: &'a Wake,
}

impl<'a> Admin<'a> {
    /// A handle over `store`, checking input against `config`, waking `wake`.
    pub fn new(store: &'a Store, config: &'a Config, wake: &'a Wake) -> Admin<'a> {
        Admin {
            store,
            config,
            wake,
        }
    }

    /// The handle of a running pipeline.
    pub fn of(pipeline: &'a Pipeline) -> Admin<'a> {
        Admin::new(&pipeline.store, &pipeline.config, &pipeline.wake)
    }
}

/// The most rows a list returns at once, and the default.
pub const MAX_LIMIT: usize = 1000;

/// `limit`, or the default, within 1..=[`MAX_LIMIT`].
pub(crate) fn limit(value: Option<usize>, default: usize) -> Result<usize, AdminError> {
    match value.unwrap_or(default) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(AdminError::invalid(
            "limit",
            format!("{n} is not between 1 and {MAX_LIMIT}"),
            None,
        )),
    }
}
