//! The OpenAPI 3 document of the admin API, hand-written in `src/openapi.json` and served at
//! `/api/v1/openapi.json`.
//!
//! Invariant: it lists exactly [`super::ROUTES`], and each route's documented responses match
//! what the route answers (both checked by the integration tests).

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The OpenAPI 3 document describing [`super::ROUTES`].
pub const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /api/v1/openapi.json`.
pub(super) async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
