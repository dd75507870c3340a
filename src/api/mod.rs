//! The admin API: what the CLI can do, over HTTP and JSON, in the running process; plus `/livez`,
//! `/healthz`, `/readyz` and `/metrics`, also served alone on `[server] health_listen` if set.
//!
//! In: requests on `[server] listen` (and `health_listen`). Out: JSON; errors are
//! `{"error": {"code", "message"}}` (and `problems` naming each bad field) with the right status.
//!
//! Invariants: every `/api/v1` route needs `Authorization: Bearer <admin_token>` (compared in
//! constant time) or the dashboard's session cookie; with no token configured the API only
//! listens on loopback. The health listener serves the probe routes and nothing else, so it may
//! listen anywhere without a token. Every route but
//! the probes refuses what a web page could send: a foreign `Host` (DNS rebinding), a foreign
//! `Origin` or `Sec-Fetch-Site`, a body that is not JSON. Connections are capped, headers and
//! bodies have a deadline and bodies a size limit, so idle clients cannot starve `/livez`. Secrets are never
//! returned, except a newly generated one, once, in the response that created it. Input is
//! validated by the same code as the config file ([`crate::admin`] does the work; a handler only
//! turns HTTP into its arguments and its result into JSON). The routes are listed once, in the
//! table of [`router`], which also gives [`ROUTES`], the list a test checks against the OpenAPI
//! document served at `/api/v1/openapi.json`.
//!
//! By noun: `sources`, `endpoints`, `events`, `deliveries`, `health` (probes and metrics),
//! `openapi`; the request guard is in `guard`; the dashboard, `/ui/`, in `ui` (its pages are
//! HTML, outside the table and the OpenAPI document, behind the same guard; its session cookie
//! is accepted in place of the bearer token).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminError;
use crate::config::{Problem, ServerConfig};
use crate::{Pipeline, RunError};

mod deliveries;
mod endpoints;
mod events;
mod guard;
mod health;
mod openapi;
mod sources;
mod ui;

/// Who may call a route.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone, with any `Host`: the probes change nothing and reveal nothing secret (a kubelet
    /// sends the pod IP as `Host`).
    Probe,
    /// Behind the same-origin check of `guard`, without a token: the API's own description.
    Public,
    /// Behind the same-origin check, then the bearer token.
    Token,
}

/// The one route table: `access method "path" => handler;`. It gives [`ROUTES`] and the router,
/// so the two cannot drift.
macro_rules! route_table {
    ($($access:ident $method:ident $path:literal => $handler:path;)*) => {
        /// Every route: (method, path in OpenAPI form). The OpenAPI document must list exactly these.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn table() -> Vec<(Access, &'static str, MethodRouter<Shared>)> {
            vec![$((Access::$access, $path, axum::routing::$method($handler))),*]
        }
    };
}

route_table! {
    Probe get "/livez" => health::livez;
    Probe get "/healthz" => health::livez;
    Probe get "/readyz" => health::readyz;
    Probe get "/metrics" => health::metrics;
    Public get "/api/v1/openapi.json" => openapi::document;
    Token get "/api/v1/sources" => sources::list;
    Token post "/api/v1/sources/{source}/resources/{resource}/poll" => sources::poll_now;
    Token post "/api/v1/sources/{source}/resources/{resource}/accept-deletes" => sources::accept_deletes;
    Token get "/api/v1/endpoints" => endpoints::list;
    Token post "/api/v1/endpoints" => endpoints::add;
    Token get "/api/v1/endpoints/{name}" => endpoints::show;
    Token patch "/api/v1/endpoints/{name}" => endpoints::update;
    Token delete "/api/v1/endpoints/{name}" => endpoints::remove;
    Token post "/api/v1/endpoints/{name}/pause" => endpoints::pause;
    Token post "/api/v1/endpoints/{name}/resume" => endpoints::resume;
    Token post "/api/v1/endpoints/{name}/rotate-secret" => endpoints::rotate_secret;
    Token post "/api/v1/endpoints/{name}/backfill" => endpoints::backfill;
    Token post "/api/v1/endpoints/{name}/test" => endpoints::send_test;
    Token get "/api/v1/events" => events::list;
    Token get "/api/v1/events/{id}" => events::show;
    Token get "/api/v1/events/{id}/deliveries" => events::deliveries;
    Token post "/api/v1/events/{id}/replay" => events::replay;
    Token get "/api/v1/deliveries" => deliveries::list;
    Token get "/api/v1/deliveries/{id}/attempts" => deliveries::attempts;
    Token post "/api/v1/deliveries/{id}/retry" => deliveries::retry;
    Token post "/api/v1/deliveries/retry-failed" => deliveries::retry_failed;
}

/// The OpenAPI 3 document describing [`ROUTES`].
pub use openapi::OPENAPI;

type Shared = Arc<Pipeline>;

/// Binds the admin API's address; without a token, only on loopback.
pub async fn bind(server: &ServerConfig) -> Result<TcpListener, RunError> {
    let mut addr = server.listen;
    if server.admin_token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            requested = %addr,
            "No admin_token configured: the admin API listens on loopback only. Set POLLHOOK_ADMIN_TOKEN to expose it."
        );
        addr = SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()));
    } else if server.admin_token.is_none() {
        tracing::info!(%addr, "No admin_token configured: the admin API is open to local processes only.");
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen { addr, source })
}

/// Binds `[server] health_listen`, if set: on the address as given, token or not, since only
/// the probes are served there.
pub async fn bind_health(server: &ServerConfig) -> Result<Option<TcpListener>, RunError> {
    let Some(addr) = server.health_listen else {
        return Ok(None);
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| RunError::HealthListen { addr, source })
}

/// Serves the admin API until `cancel` fires.
///
/// HTTP/1.1 only, with the limits an exposed port needs: at most `[server] max_connections`
/// connections at once (the rest wait in the kernel's accept queue, so no file descriptor is
/// spent on them), and `[server] header_timeout` to send the headers of each request, the
/// first or the next on a kept-alive connection (hyper applies one timer to both), so a
/// half-sent or idle connection gives its place back within that time and `/livez` gets in.
pub async fn serve(listener: TcpListener, pipeline: Shared, cancel: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "Admin API listening.");
    }
    serve_router(listener, router(pipeline.clone()), &pipeline, cancel).await;
}

/// Serves the probes and `/metrics` alone, with the admin API's connection limits, until
/// `cancel` fires.
pub async fn serve_health(listener: TcpListener, pipeline: Shared, cancel: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "Health listener listening: /livez, /healthz, /readyz, /metrics.");
    }
    let probes = probe_routes()
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "this listener serves /livez, /healthz, /readyz and /metrics only",
            )
        })
        .with_state(pipeline.clone());
    serve_router(listener, probes, &pipeline, cancel).await;
}

/// Serves `app` on `listener` until `cancel` fires (see [`serve`] for the limits).
async fn serve_router(
    listener: TcpListener,
    app: Router,
    pipeline: &Shared,
    cancel: CancellationToken,
) {
    let server = &pipeline.config.server;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    let places = Arc::new(Semaphore::new(server.max_connections));
    let service = TowerToHyperService::new(app);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = accept(&listener, &places) => accepted,
        };
        let (place, stream) = accepted;
        let connection = http.serve_connection(TokioIo::new(stream), service.clone());
        let cancel = cancel.clone();
        connections.spawn(async move {
            let _place = place;
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = cancel.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, "Admin API connection closed with an error.");
            }
        });
        // Reap finished connections so the set holds only live ones.
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// The headers of one request may take at most this many bytes (hyper answers 431 beyond).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Waits for a free place, then for a connection. Accept errors (out of file descriptors, a
/// connection reset before it was accepted) are logged and retried after a pause, as a busy
/// loop would only spin.
async fn accept(
    listener: &TcpListener,
    places: &Arc<Semaphore>,
) -> (OwnedSemaphorePermit, TcpStream) {
    let Ok(place) = places.clone().acquire_owned().await else {
        unreachable!("the semaphore is never closed")
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return (place, stream),
            Err(error) => {
                tracing::warn!(%error, "Admin API cannot accept a connection; retrying in 100 ms.");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The router, for `serve` and for tests: [`ROUTES`]' table, each route behind what its
/// access says (probe, public, token).
pub fn router(pipeline: Shared) -> Router {
    let (mut public, mut token) = (Router::new(), Router::new());
    for (access, path, handler) in table() {
        let part = match access {
            Access::Probe => continue,
            Access::Public => &mut public,
            Access::Token => &mut token,
        };
        // A path listed again with another method joins its first listing.
        *part = std::mem::take(part).route(path, handler);
    }
    let token = token.route_layer(middleware::from_fn_with_state(
        pipeline.clone(),
        guard::require_token,
    ));
    let guarded = public
        .merge(token)
        .merge(ui::router(pipeline.clone()))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route (see /api/v1/openapi.json)",
            )
        })
        .layer(middleware::from_fn_with_state(
            pipeline.clone(),
            guard::same_origin,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    probe_routes().merge(guarded).with_state(pipeline)
}

/// The table's probe routes, unguarded: what the health listener serves.
fn probe_routes() -> Router<Shared> {
    table()
        .into_iter()
        .filter(|(access, _, _)| *access == Access::Probe)
        .fold(Router::new(), |probes, (_, path, handler)| {
            probes.route(path, handler)
        })
}

/// A request body may take at most this many bytes (413 beyond); an endpoint is well under 1 KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

// ───────────────────────────── errors ─────────────────────────────

/// An API error: status, a stable code, a message, and the problems for validation errors.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    problems: Vec<Problem>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    fn invalid(problems: Vec<Problem>) -> Self {
        let message = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid",
            message,
            problems,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if !self.problems.is_empty() {
            error["problems"] = self
                .problems
                .iter()
                .map(|p| json!({ "field": p.at, "message": p.message, "hint": p.hint }))
                .collect();
        }
        (self.status, axum::Json(json!({ "error": error }))).into_response()
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            AdminError::Invalid(problems) => ApiError::invalid(problems),
            AdminError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            e @ AdminError::Fetch(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "fetch_failed", e.to_string())
            }
            e @ AdminError::Poll(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
            }
            AdminError::Store(e) => {
                tracing::error!(error = %e, "Admin API request failed in the database.");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// 200 with `value` as JSON.
fn ok(value: impl serde::Serialize) -> ApiResult {
    Ok(axum::Json(value).into_response())
}

/// `{"data": list}`, the shape of every list.
fn data(list: impl serde::Serialize) -> ApiResult {
    ok(json!({ "data": list }))
}

/// A query string that does not fit its struct (unknown key, wrong type): 422.
fn query_problem(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::invalid(vec![Problem {
        at: "(query)".into(),
        message: e.body_text(),
        hint: None,
    }])
}

/// A JSON request body, required: 400 if it is missing or not JSON (all of it), 422 naming the
/// field if it is the wrong shape, 413 over [`MAX_BODY_BYTES`], 408 if it is not all sent within
/// `[server] header_timeout`.
struct JsonBody<T>(T);

/// The same for routes whose body is optional: an empty body is `T::default()`.
struct OptionalJsonBody<T>(T);

impl<T: DeserializeOwned> FromRequest<Shared> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Shared) -> Result<Self, ApiError> {
        let bytes = read_body(request, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_json",
                "this route needs a JSON body (see /api/v1/openapi.json)",
            ));
        }
        parse(&bytes).map(JsonBody)
    }
}

impl<T: DeserializeOwned + Default> FromRequest<Shared> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Shared) -> Result<Self, ApiError> {
        let bytes = read_body(request, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse(&bytes).map(OptionalJsonBody)
    }
}

/// The whole body, within the size limit and the time limit.
async fn read_body(request: Request, state: &Shared) -> Result<Bytes, ApiError> {
    let timeout = state.config.server.header_timeout;
    match tokio::time::timeout(timeout, Bytes::from_request(request, state)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is over {MAX_BODY_BYTES} bytes"),
            ))
        }
        Ok(Err(rejection)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            rejection.body_text(),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the body was not sent within {}",
                humantime::format_duration(timeout)
            ),
        )),
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        ApiError::invalid(vec![Problem {
            at: if field == "." { "(body)".into() } else { field },
            message: e.into_inner().to_string(),
            hint: None,
        }])
    })
}

/// For an optional field that, when present, must hold a value: `null` is refused (422) as the
/// OpenAPI document says, instead of meaning "absent".
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}
