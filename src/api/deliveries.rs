//! `/api/v1/deliveries`: deliveries newest first with filters, one's attempts, a retry of one or
//! of every failed one.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiResult, OptionalJsonBody, Shared, data, ok, present, query_problem};
use crate::admin::{Admin, DeliveryQuery};

/// A delivery id from the path: a number, else no such delivery.
fn delivery_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no delivery {id}: delivery ids are numbers"),
        )
    })
}

/// `GET /deliveries`: the query string is a [`DeliveryQuery`].
pub(super) async fn list(
    State(p): State<Shared>,
    query: Result<Query<DeliveryQuery>, QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(query_problem)?;
    data(Admin::of(&p).deliveries(query).await?)
}

/// `GET /deliveries/{id}/attempts`.
pub(super) async fn attempts(State(p): State<Shared>, Path(id): Path<String>) -> ApiResult {
    data(Admin::of(&p).attempts(delivery_id(&id)?).await?)
}

/// `POST /deliveries/{id}/retry`.
pub(super) async fn retry(State(p): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let n = delivery_id(&id)?;
    Admin::of(&p).retry(n).await?;
    ok(json!({ "queued": n }))
}

/// The body of `POST /deliveries/retry-failed`, optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryFailedBody {
    #[serde(default, deserialize_with = "present")]
    endpoint: Option<String>,
}

/// `POST /deliveries/retry-failed`.
pub(super) async fn retry_failed(
    State(p): State<Shared>,
    OptionalJsonBody(body): OptionalJsonBody<RetryFailedBody>,
) -> ApiResult {
    let n = Admin::of(&p).retry_failed(body.endpoint.as_deref()).await?;
    ok(json!({ "queued": n }))
}
