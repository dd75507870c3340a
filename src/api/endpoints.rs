//! `/api/v1/endpoints`: the endpoint settings page over HTTP. Bodies are the config file's
//! endpoint keys; a secret appears only in the response that generated it.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::{ApiResult, JsonBody, OptionalJsonBody, Shared, data, ok, present};
use crate::admin::endpoints::{DEFAULT_OVERLAP, parse_overlap};
use crate::admin::{Admin, EndpointChange, NewEndpoint};
use crate::store::Origin;

/// `POST /endpoints`: the config's endpoint keys; `secret` optional (generated and returned once).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewBody {
    name: String,
    url: String,
    #[serde(default, deserialize_with = "present")]
    secret: Option<String>,
    #[serde(default = "default_signing")]
    signing: String,
    #[serde(default, deserialize_with = "present")]
    resources: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    actions: Option<Vec<String>>,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "present")]
    timeout: Option<String>,
    #[serde(default, deserialize_with = "present")]
    format: Option<String>,
    #[serde(default)]
    backfill: bool,
}

fn default_signing() -> String {
    "jwt".into()
}

fn yes() -> bool {
    true
}

/// `PATCH /endpoints/{name}`: each key present replaces that setting.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangeBody {
    #[serde(default, deserialize_with = "present")]
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    resources: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    actions: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    signing: Option<String>,
    #[serde(default, deserialize_with = "present")]
    secret: Option<String>,
    #[serde(default, deserialize_with = "present")]
    active: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    format: Option<String>,
}

/// `POST /endpoints/{name}/rotate-secret`, body optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RotationBody {
    /// How long the old secret keeps signing too.
    #[serde(default, deserialize_with = "present")]
    overlap: Option<String>,
}

/// `GET /endpoints`.
pub(super) async fn list(State(p): State<Shared>) -> ApiResult {
    data(Admin::of(&p).endpoints().await?)
}

/// `GET /endpoints/{name}`.
pub(super) async fn show(State(p): State<Shared>, Path(name): Path<String>) -> ApiResult {
    ok(Admin::of(&p).endpoint(&name).await?)
}

/// `POST /endpoints`: 201 with the endpoint.
pub(super) async fn add(State(p): State<Shared>, JsonBody(body): JsonBody<NewBody>) -> ApiResult {
    let new = NewEndpoint {
        name: body.name,
        url: body.url,
        secret: body.secret,
        signing: body.signing,
        resources: body.resources,
        actions: body.actions,
        active: body.active,
        headers: body.headers,
        timeout: body.timeout,
        format: body.format,
        backfill: body.backfill,
        origin: Origin::Api,
    };
    let created = Admin::of(&p).add_endpoint(new).await?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// `PATCH /endpoints/{name}`.
pub(super) async fn update(
    State(p): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ChangeBody>,
) -> ApiResult {
    let change = EndpointChange {
        url: body.url,
        secret: body.secret,
        overlap: None,
        signing: body.signing,
        resources: body.resources,
        actions: body.actions,
        active: body.active,
        format: body.format,
    };
    ok(Admin::of(&p).update_endpoint(&name, change).await?)
}

/// `DELETE /endpoints/{name}`: 204.
pub(super) async fn remove(State(p): State<Shared>, Path(name): Path<String>) -> ApiResult {
    Admin::of(&p).remove_endpoint(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /endpoints/{name}/pause`.
pub(super) async fn pause(State(p): State<Shared>, Path(name): Path<String>) -> ApiResult {
    ok(Admin::of(&p).set_active(&name, false).await?)
}

/// `POST /endpoints/{name}/resume`.
pub(super) async fn resume(State(p): State<Shared>, Path(name): Path<String>) -> ApiResult {
    ok(Admin::of(&p).set_active(&name, true).await?)
}

/// `POST /endpoints/{name}/rotate-secret`: the new secret, once.
pub(super) async fn rotate_secret(
    State(p): State<Shared>,
    Path(name): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<RotationBody>,
) -> ApiResult {
    let overlap = parse_overlap(body.overlap.as_deref().unwrap_or(DEFAULT_OVERLAP))?;
    ok(Admin::of(&p).rotate_secret(&name, overlap).await?)
}

/// `POST /endpoints/{name}/test`: the test event queued for it.
pub(super) async fn send_test(State(p): State<Shared>, Path(name): Path<String>) -> ApiResult {
    let event = Admin::of(&p).send_test(&name).await?;
    ok(json!({ "event_id": event.id, "type": event.kind }))
}

/// `POST /endpoints/{name}/backfill`.
pub(super) async fn backfill(State(p): State<Shared>, Path(name): Path<String>) -> ApiResult {
    let n = Admin::of(&p).backfill(&name).await?;
    ok(json!({ "queued": n }))
}
