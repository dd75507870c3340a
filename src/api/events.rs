//! `/api/v1/events`: events newest first with filters and a cursor, one event, its deliveries
//! with their attempts, and replays.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::json;

use super::{ApiResult, OptionalJsonBody, Shared, data, ok, present, query_problem};
use crate::admin::{Admin, EventQuery};

/// The body of `POST /events/{id}/replay`, optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayBody {
    #[serde(default, deserialize_with = "present")]
    endpoint: Option<String>,
}

/// `GET /events`: the query string is an [`EventQuery`].
pub(super) async fn list(
    State(p): State<Shared>,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(query_problem)?;
    ok(Admin::of(&p).events(query).await?)
}

/// `GET /events/{id}`.
pub(super) async fn show(State(p): State<Shared>, Path(id): Path<String>) -> ApiResult {
    ok(Admin::of(&p).event(&id).await?)
}

/// `GET /events/{id}/deliveries`, each with its `attempt_log`.
pub(super) async fn deliveries(State(p): State<Shared>, Path(id): Path<String>) -> ApiResult {
    data(Admin::of(&p).event_deliveries(&id).await?)
}

/// `POST /events/{id}/replay`.
pub(super) async fn replay(
    State(p): State<Shared>,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<ReplayBody>,
) -> ApiResult {
    let queued = Admin::of(&p).replay(&id, body.endpoint.as_deref()).await?;
    ok(json!({ "queued_for": queued }))
}
