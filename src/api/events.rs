//! `/api/v1/events`: events newest first with filters and a cursor, one event, its deliveries
//! with their attempts, and replays.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::json;

use super::{ApiResult, OptionalJsonBody, Shared, data, ok, present, query_problem};
use crate::admin::{Admin, EventQuery};

/// The query string of `GET /events`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    source: Option<String>,
    resource: Option<String>,
    action: Option<String>,
    resource_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<i64>,
    limit: Option<usize>,
}

/// The body of `POST /events/{id}/replay`, optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayBody {
    #[serde(default, deserialize_with = "present")]
    endpoint: Option<String>,
}

/// `GET /events`.
pub(super) async fn list(
    State(p): State<Shared>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(query_problem)?;
    let query = EventQuery {
        source: q.source,
        resource: q.resource,
        action: q.action,
        resource_id: q.resource_id,
        since: q.since,
        until: q.until,
        cursor: q.cursor,
        limit: q.limit,
    };
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
