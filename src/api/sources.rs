//! `/api/v1/sources`: every source with its resources' last poll; poll one now; accept the
//! deletes a resource's guard held back.

use axum::extract::{Path, State};
use serde_json::json;

use super::{ApiResult, Shared, data, ok};
use crate::admin::{self, Admin};

/// `GET /sources`.
pub(super) async fn list(State(p): State<Shared>) -> ApiResult {
    data(Admin::of(&p).sources().await?)
}

/// `POST /sources/{source}/resources/{resource}/poll`: 502 if the listing cannot be fetched.
pub(super) async fn poll_now(
    State(p): State<Shared>,
    Path((source, resource)): Path<(String, String)>,
) -> ApiResult {
    ok(admin::sources::poll_now(&p, &source, &resource).await?)
}

/// `POST /sources/{source}/resources/{resource}/accept-deletes`.
pub(super) async fn accept_deletes(
    State(p): State<Shared>,
    Path((source, resource)): Path<(String, String)>,
) -> ApiResult {
    let n = Admin::of(&p).accept_deletes(&source, &resource).await?;
    ok(json!({ "accepted_deletes": n, "applied": "at the next poll" }))
}
