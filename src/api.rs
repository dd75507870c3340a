//! The admin API: what the CLI can do, over HTTP and JSON, in the running process; plus `/livez`,
//! `/healthz`, `/readyz` and `/metrics`.
//!
//! In: requests on `[server] listen`. Out: JSON; errors are `{"error": {"code", "message"}}` (and
//! `problems` naming each bad field) with the right status.
//!
//! Invariants: every `/api/v1` route needs `Authorization: Bearer <admin_token>` (compared in
//! constant time); with no token configured the API only listens on loopback. Every route but
//! the probes refuses what a web page could send: a foreign `Host` (DNS rebinding), a foreign
//! `Origin` or `Sec-Fetch-Site`, a body that is not JSON. Connections are capped, headers and
//! bodies have a deadline and bodies a size limit, so idle clients cannot starve `/livez`. Secrets are never
//! returned, except a newly generated one, once, in the response that created it. Input is
//! validated by the same code as the config file. The routes are listed once, in [`ROUTES`], which
//! a test checks against the OpenAPI document served at `/api/v1/openapi.json`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{EndpointInput, Problem, ServerConfig, validate_endpoint};
use crate::store::{DeliveryFilter, EndpointPatch, EventFilter, StoreError, StoredEndpoint};
use crate::{Pipeline, RunError, sign};

/// Every route: (method, path in OpenAPI form). The OpenAPI document must list exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/livez"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/sources"),
    ("post", "/api/v1/sources/{source}/resources/{resource}/poll"),
    (
        "post",
        "/api/v1/sources/{source}/resources/{resource}/accept-deletes",
    ),
    ("get", "/api/v1/endpoints"),
    ("post", "/api/v1/endpoints"),
    ("get", "/api/v1/endpoints/{name}"),
    ("patch", "/api/v1/endpoints/{name}"),
    ("delete", "/api/v1/endpoints/{name}"),
    ("post", "/api/v1/endpoints/{name}/pause"),
    ("post", "/api/v1/endpoints/{name}/resume"),
    ("post", "/api/v1/endpoints/{name}/rotate-secret"),
    ("post", "/api/v1/endpoints/{name}/backfill"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/events/{id}"),
    ("get", "/api/v1/events/{id}/deliveries"),
    ("post", "/api/v1/events/{id}/replay"),
    ("get", "/api/v1/deliveries"),
    ("get", "/api/v1/deliveries/{id}/attempts"),
    ("post", "/api/v1/deliveries/{id}/retry"),
];

/// The OpenAPI 3 document describing [`ROUTES`].
pub const OPENAPI: &str = include_str!("openapi.json");

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
    let server = &pipeline.config.server;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    let places = Arc::new(Semaphore::new(server.max_connections));
    let service = TowerToHyperService::new(router(pipeline.clone()));
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

/// The router, for `serve` and for tests.
///
/// The probes answer any `Host` (a kubelet sends the pod IP): they change nothing and reveal
/// nothing secret. Everything else is behind [`same_origin`], then the token.
pub fn router(pipeline: Shared) -> Router {
    let api = Router::new()
        .route("/api/v1/sources", get(sources))
        .route(
            "/api/v1/sources/{source}/resources/{resource}/poll",
            post(poll_now),
        )
        .route(
            "/api/v1/sources/{source}/resources/{resource}/accept-deletes",
            post(accept_deletes),
        )
        .route("/api/v1/endpoints", get(list_endpoints).post(add_endpoint))
        .route(
            "/api/v1/endpoints/{name}",
            get(show_endpoint)
                .patch(update_endpoint)
                .delete(remove_endpoint),
        )
        .route("/api/v1/endpoints/{name}/pause", post(pause_endpoint))
        .route("/api/v1/endpoints/{name}/resume", post(resume_endpoint))
        .route(
            "/api/v1/endpoints/{name}/rotate-secret",
            post(rotate_secret),
        )
        .route("/api/v1/endpoints/{name}/backfill", post(backfill))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/events/{id}", get(show_event))
        .route("/api/v1/events/{id}/deliveries", get(event_deliveries))
        .route("/api/v1/events/{id}/replay", post(replay))
        .route("/api/v1/deliveries", get(list_deliveries))
        .route("/api/v1/deliveries/{id}/attempts", get(attempts))
        .route("/api/v1/deliveries/{id}/retry", post(retry_delivery))
        .route_layer(middleware::from_fn_with_state(
            pipeline.clone(),
            require_token,
        ));
    let guarded = Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .merge(api)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route (see /api/v1/openapi.json)",
            )
        })
        .layer(middleware::from_fn_with_state(
            pipeline.clone(),
            same_origin,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new()
        .route("/livez", get(livez))
        .route("/healthz", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(guarded)
        .with_state(pipeline)
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

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            StoreError::Duplicate(m) | StoreError::VersionConflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", m)
            }
            other => {
                tracing::error!(error = %other, "Admin API request failed in the database.");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    other.to_string(),
                )
            }
        }
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(value: Value) -> ApiResult {
    Ok(axum::Json(value).into_response())
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

// ───────────────────────────── same origin ─────────────────────────────

/// Refuses what a web page in a browser could send to this API, before the token is looked at:
/// a `Host` that is not this API's (DNS rebinding: 421), an `Origin` that is not this API's or a
/// `Sec-Fetch-Site` that is not same-origin (403), and a body that is not `application/json`,
/// the one type a page cannot send cross-origin without a CORS preflight, which gets no CORS
/// headers here (415).
async fn same_origin(State(p): State<Shared>, request: Request, next: Next) -> Response {
    match check_same_origin(&p.config.server, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

fn check_same_origin(server: &ServerConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    // HTTP/1.1 requires Host (RFC 9112 §3.2); hyper refuses a request without one.
    let host = text(header::HOST).unwrap_or_default().to_ascii_lowercase();
    if !host_allowed(server, &host) {
        return Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "wrong_host",
            format!(
                "this API does not answer for Host `{host}`: use localhost, 127.0.0.1, [::1] or the listen address, or add the name to [server] allowed_hosts"
            ),
        ));
    }
    if let Some(origin) = text(header::ORIGIN) {
        let own = ["http://", "https://"].iter().any(|scheme| {
            origin
                .strip_prefix(scheme)
                .is_some_and(|rest| rest.eq_ignore_ascii_case(&host))
        });
        if !own {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!(
                    "requests from web pages of another origin are refused (Origin `{origin}`)"
                ),
            ));
        }
    }
    if let Some(site) = text(HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            format!(
                "requests from web pages of another origin are refused (Sec-Fetch-Site `{site}`)"
            ),
        ));
    }
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || text(header::CONTENT_LENGTH).is_some_and(|n| n != "0");
    if has_body && !is_json(text(header::CONTENT_TYPE)) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send request bodies as Content-Type: application/json",
        ));
    }
    Ok(())
}

/// `application/json`, with parameters or not (RFC 8259 §11 defines none, but `charset` is common).
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|t| t.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Loopback names and the listen address on any port (a port-forward or a local proxy changes
/// the port, and DNS rebinding needs a name it controls, never one of these), plus
/// `[server] allowed_hosts` as written. With a token and no `allowed_hosts`, any Host: a page
/// that rebinds a name to this API has no token to send.
fn host_allowed(server: &ServerConfig, host: &str) -> bool {
    if server.allowed_hosts.iter().any(|h| h == host) {
        return true;
    }
    if server.admin_token.is_some() && server.allowed_hosts.is_empty() {
        return true;
    }
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(ip, _)| ip),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost"
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip == server.listen.ip())
}

// ───────────────────────────── auth ─────────────────────────────

async fn require_token(State(p): State<Shared>, request: Request, next: Next) -> Response {
    let Some(token) = &p.config.server.admin_token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) => {
            next.run(request).await
        }
        _ => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <admin_token>",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ───────────────────────────── health and metrics ─────────────────────────────

async fn livez() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(p): State<Shared>) -> Response {
    let writable = p.store.check_writable().await;
    let scheduler = p.health.scheduler.load(Ordering::Relaxed);
    let dispatcher = p.health.dispatcher.load(Ordering::Relaxed);
    let ready = writable.is_ok() && scheduler && dispatcher;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": writable.as_ref().map(|_| "writable".to_owned()).unwrap_or_else(|e| e.to_string()),
        "scheduler": scheduler,
        "dispatcher": dispatcher,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(p): State<Shared>) -> Response {
    let handle = crate::metrics::handle();
    if let Ok(stats) = p.store.storage_stats().await {
        crate::metrics::storage(&stats);
    }
    if let (Ok(endpoints), Ok(counts)) =
        (p.store.endpoints().await, p.store.delivery_counts().await)
    {
        for e in endpoints {
            let count = |status: &str| {
                counts
                    .iter()
                    .find(|(n, s, _)| *n == e.spec.name && s == status)
                    .map_or(0, |c| c.2)
            };
            crate::metrics::endpoint_state(
                &e.spec.name,
                e.spec.active,
                count("pending"),
                count("failed"),
            );
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

// ───────────────────────────── sources ─────────────────────────────

async fn sources(State(p): State<Shared>) -> ApiResult {
    let status = p.store.status().await?;
    let list: Vec<Value> = p
        .sources
        .iter()
        .map(|(source, _)| {
            let resources: Vec<Value> = source
                .resources
                .iter()
                .map(|r| {
                    let row = status.iter().find(|s| s.source == source.name && s.resource == r.name);
                    json!({
                        "name": r.name,
                        "key": r.key(&source.name),
                        "schedule": match &r.when {
                            crate::config::When::Every(d) => format!("every {}", humantime::format_duration(*d)),
                            crate::config::When::Cron { cron, tz } => format!("{} ({tz})", cron.as_str()),
                        },
                        "last_poll_at": row.and_then(|r| r.last_poll_at),
                        "last_duration_ms": row.and_then(|r| r.last_duration_ms),
                        "last_outcome": row.and_then(|r| r.last_outcome.clone()),
                        "last_error": row.and_then(|r| r.last_error.clone()),
                        "item_count": row.map_or(0, |r| r.item_count),
                        "held_deletes": row.map_or(0, |r| r.held_deletes),
                        "consecutive_errors": row.map_or(0, |r| r.consecutive_errors),
                    })
                })
                .collect();
            json!({
                "name": source.name,
                "engine": source.kind.engine(),
                "resources": resources,
            })
        })
        .collect();
    ok(json!({ "data": list }))
}

async fn poll_now(
    State(p): State<Shared>,
    Path((source, resource)): Path<(String, String)>,
) -> ApiResult {
    let Some((config, built, res)) = p.resource(&source, &resource) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no resource {source}.{resource}"),
        ));
    };
    match p.poll(config, built, res).await {
        Ok(report) => ok(json!({
            "resource": res.key(&source),
            "listed": report.listed,
            "pages": report.pages,
            "baseline": report.baseline,
            "events": report.events.iter().map(|e| json!({"id": e.id, "type": e.kind, "resource_id": e.resource_id})).collect::<Vec<_>>(),
            "deliveries": report.deliveries,
            "held_deletes": report.held.map_or(0, |h| h.deletes),
            "elapsed_ms": report.elapsed.as_millis() as u64,
        })),
        Err(crate::poll::PollError::Fetch(e)) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "fetch_failed",
            e.to_string(),
        )),
        Err(crate::poll::PollError::Store(e)) => Err(e.into()),
        Err(e @ crate::poll::PollError::Spill(_)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            e.to_string(),
        )),
    }
}

async fn accept_deletes(
    State(p): State<Shared>,
    Path((source, resource)): Path<(String, String)>,
) -> ApiResult {
    if p.resource(&source, &resource).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no resource {source}.{resource}"),
        ));
    }
    let n = p.store.accept_deletes(&source, &resource).await?;
    ok(json!({ "accepted_deletes": n, "applied": "at the next poll" }))
}

// ───────────────────────────── endpoints ─────────────────────────────

fn endpoint_json(e: &StoredEndpoint) -> Value {
    json!({
        "name": e.spec.name,
        "url": crate::endpoint::shown_url_text(&e.spec.url),
        "signing": e.spec.signing.as_str(),
        "secret_hint": e.spec.secret.hint(),
        "resources": e.spec.resources,
        "actions": e.spec.actions.as_slice(),
        "active": e.spec.active,
        "disabled_reason": e.disabled_reason,
        "origin": e.origin,
        "headers": e.spec.headers.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        "timeout_ms": e.spec.timeout.map(|t| t.as_millis() as u64),
    })
}

async fn list_endpoints(State(p): State<Shared>) -> ApiResult {
    let list = p.store.endpoints().await?;
    ok(json!({ "data": list.iter().map(endpoint_json).collect::<Vec<_>>() }))
}

async fn show_endpoint(State(p): State<Shared>, Path(name): Path<String>) -> ApiResult {
    let e = p.store.endpoint_named(&name).await?;
    ok(endpoint_json(&e))
}

/// `POST /endpoints`: the config's endpoint keys; `secret` optional (generated and returned once).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEndpoint {
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
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default, deserialize_with = "present")]
    timeout: Option<String>,
    #[serde(default)]
    backfill: bool,
}

fn default_signing() -> String {
    "jwt".into()
}

fn yes() -> bool {
    true
}

async fn add_endpoint(State(p): State<Shared>, JsonBody(new): JsonBody<NewEndpoint>) -> ApiResult {
    let scheme: sign::Scheme = new.signing.parse().map_err(|e: sign::SignError| {
        ApiError::invalid(vec![Problem {
            at: "signing".into(),
            message: e.to_string(),
            hint: None,
        }])
    })?;
    let generated = new.secret.is_none();
    let secret = new.secret.unwrap_or_else(|| sign::generate_secret(scheme));
    let spec = validate_endpoint(
        EndpointInput {
            name: new.name,
            url: new.url,
            secret: secret.clone(),
            signing: new.signing,
            resources: new.resources,
            actions: new.actions,
            active: new.active,
            headers: new.headers,
            timeout: new.timeout,
        },
        &p.config,
    )
    .map_err(|problems| ApiError::invalid(strip_prefix(problems)))?;
    let name = spec.name.clone();
    let backfilled = {
        let spec = spec.clone();
        p.store.add_endpoint(&spec).await?;
        if new.backfill {
            Some(p.store.backfill(&spec.name).await?)
        } else {
            None
        }
    };
    p.wake.notify();
    let e = p.store.endpoint_named(&name).await?;
    let mut out = endpoint_json(&e);
    if generated {
        out["secret"] = json!(secret);
    }
    if let Some(n) = backfilled {
        out["backfilled"] = json!(n);
    }
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

/// Problems from endpoint validation name `endpoints[x].url`; over the API the field is `url`.
fn strip_prefix(problems: Vec<Problem>) -> Vec<Problem> {
    problems
        .into_iter()
        .map(|mut p| {
            if let Some(rest) =
                p.at.strip_prefix("endpoints[")
                    .and_then(|r| r.split_once("]."))
            {
                p.at = rest.1.to_owned();
            }
            p
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointChange {
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
}

async fn update_endpoint(
    State(p): State<Shared>,
    Path(name): Path<String>,
    JsonBody(change): JsonBody<EndpointChange>,
) -> ApiResult {
    let current = {
        let name = name.clone();
        p.store.endpoint_named(&name).await?
    };
    let spec = validate_endpoint(
        EndpointInput {
            name: name.clone(),
            url: change
                .url
                .clone()
                .unwrap_or_else(|| current.spec.url.clone()),
            secret: change
                .secret
                .clone()
                .unwrap_or_else(|| current.spec.secret.expose().to_owned()),
            signing: change
                .signing
                .clone()
                .unwrap_or_else(|| current.spec.signing.as_str().to_owned()),
            resources: Some(
                change
                    .resources
                    .clone()
                    .unwrap_or_else(|| current.spec.resources.clone()),
            ),
            actions: Some(
                change
                    .actions
                    .clone()
                    .unwrap_or_else(|| current.spec.actions.as_slice().to_vec()),
            ),
            active: current.spec.active,
            headers: current.spec.headers.iter().cloned().collect(),
            timeout: None,
        },
        &p.config,
    )
    .map_err(|problems| ApiError::invalid(strip_prefix(problems)))?;
    let patch = EndpointPatch {
        url: change.url.map(|_| spec.url.clone()),
        secret: change.secret.map(|_| spec.secret.clone()),
        rotation_overlap: None,
        resources: change.resources.map(|_| spec.resources.clone()),
        actions: change.actions.map(|_| spec.actions.clone()),
        signing: change.signing.map(|_| spec.signing),
    };
    let name2 = name.clone();
    p.store.update_endpoint(&name2, patch).await?;
    if let Some(active) = change.active {
        p.store.set_endpoint_active(&name2, active).await?;
    }
    p.wake.notify();
    let e = p.store.endpoint_named(&name).await?;
    ok(endpoint_json(&e))
}

async fn remove_endpoint(State(p): State<Shared>, Path(name): Path<String>) -> ApiResult {
    p.store.remove_endpoint(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_active(p: Shared, name: String, active: bool) -> ApiResult {
    let n = name.clone();
    p.store.set_endpoint_active(&n, active).await?;
    p.wake.notify();
    let e = p.store.endpoint_named(&name).await?;
    ok(endpoint_json(&e))
}

async fn pause_endpoint(State(p): State<Shared>, Path(name): Path<String>) -> ApiResult {
    set_active(p, name, false).await
}

async fn resume_endpoint(State(p): State<Shared>, Path(name): Path<String>) -> ApiResult {
    set_active(p, name, true).await
}

/// The OpenAPI document's `maxLength` of `Rotation.overlap`.
const MAX_OVERLAP_CHARS: usize = 32;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotation {
    /// How long the old secret keeps signing too.
    #[serde(default, deserialize_with = "present")]
    overlap: Option<String>,
}

async fn rotate_secret(
    State(p): State<Shared>,
    Path(name): Path<String>,
    OptionalJsonBody(rotation): OptionalJsonBody<Rotation>,
) -> ApiResult {
    let overlap_text = rotation.overlap.as_deref().unwrap_or("24h");
    // As the document says: it also keeps the overlap's milliseconds far from overflowing.
    if overlap_text.len() > MAX_OVERLAP_CHARS {
        return Err(ApiError::invalid(vec![Problem {
            at: "overlap".into(),
            message: format!("is over {MAX_OVERLAP_CHARS} characters"),
            hint: Some("e.g. 24h or 7d".into()),
        }]));
    }
    let overlap = crate::config::parse_duration(overlap_text).map_err(|m| {
        ApiError::invalid(vec![Problem {
            at: "overlap".into(),
            message: m,
            hint: None,
        }])
    })?;
    let current = {
        let name = name.clone();
        p.store.endpoint_named(&name).await?
    };
    let secret = sign::generate_secret(current.spec.signing);
    let patch = EndpointPatch {
        secret: Some(crate::config::Secret::new(secret.clone())),
        rotation_overlap: Some(overlap),
        ..EndpointPatch::default()
    };
    p.store.update_endpoint(&name, patch).await?;
    ok(json!({
        "secret": secret,
        "previous_secret_valid_for_secs": overlap.as_secs(),
    }))
}

async fn backfill(State(p): State<Shared>, Path(name): Path<String>) -> ApiResult {
    let n = p.store.backfill(&name).await?;
    p.wake.notify();
    ok(json!({ "queued": n }))
}

// ───────────────────────────── events and deliveries ─────────────────────────────

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    source: Option<String>,
    resource: Option<String>,
    action: Option<String>,
    resource_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<i64>,
    limit: Option<usize>,
}

fn time_param(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.timestamp_millis())
                .map_err(|e| {
                    ApiError::invalid(vec![Problem {
                        at: name.into(),
                        message: format!("`{v}` is not an RFC 3339 time: {e}"),
                        hint: Some("e.g. 2026-11-22T23:40:00Z".into()),
                    }])
                })
        })
        .transpose()
}

fn limit(value: Option<usize>) -> Result<usize, ApiError> {
    match value.unwrap_or(50) {
        n @ 1..=1000 => Ok(n),
        n => Err(ApiError::invalid(vec![Problem {
            at: "limit".into(),
            message: format!("{n} is not between 1 and 1000"),
            hint: None,
        }])),
    }
}

async fn list_events(
    State(p): State<Shared>,
    query: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(query_problem)?;
    if let Some(action) = &q.action
        && action.parse::<crate::event::Action>().is_err()
        && !crate::event::OPERATIONAL_ACTIONS.contains(&action.as_str())
    {
        return Err(ApiError::invalid(vec![Problem {
            at: "action".into(),
            message: format!("`{action}` is not an action"),
            hint: Some("created, updated or deleted".into()),
        }]));
    }
    let filter = EventFilter {
        source: q.source,
        resource: q.resource,
        action: q.action,
        resource_id: q.resource_id,
        before_seq: q.cursor,
        since_ms: time_param("since", q.since.as_deref())?,
        until_ms: time_param("until", q.until.as_deref())?,
        limit: limit(q.limit)?,
    };
    let want = filter.limit;
    let events = p.store.events(filter).await?;
    let next = (events.len() == want)
        .then(|| events.last().map(|(seq, _)| *seq))
        .flatten();
    ok(json!({
        "data": events.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        "next_cursor": next,
    }))
}

async fn show_event(State(p): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let i = id.clone();
    match p.store.event(&i).await? {
        Some(e) => ok(serde_json::to_value(e).unwrap_or_default()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no event {id}"),
        )),
    }
}

async fn event_deliveries(State(p): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let event = p.store.event(&id).await?;
    let filter = DeliveryFilter {
        event_id: Some(id.clone()),
        limit: 1000,
        ..Default::default()
    };
    let deliveries = p.store.deliveries(filter).await?;
    let attempts = p.store.attempts(&id).await?;
    if event.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no event {id}"),
        ));
    }
    let data: Vec<Value> = deliveries
        .into_iter()
        .map(|d| {
            let tries: Vec<_> = attempts.iter().filter(|a| a.delivery_id == d.id).collect();
            let mut v = serde_json::to_value(&d).unwrap_or_default();
            v["attempt_log"] = serde_json::to_value(tries).unwrap_or_default();
            v
        })
        .collect();
    ok(json!({ "data": data }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    #[serde(default, deserialize_with = "present")]
    endpoint: Option<String>,
}

async fn replay(
    State(p): State<Shared>,
    Path(id): Path<String>,
    OptionalJsonBody(r): OptionalJsonBody<ReplayBody>,
) -> ApiResult {
    let queued = p.store.replay(&id, r.endpoint.as_deref()).await?;
    p.wake.notify();
    ok(json!({ "queued_for": queued }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    endpoint: Option<String>,
    status: Option<String>,
    event_id: Option<String>,
    limit: Option<usize>,
}

async fn list_deliveries(
    State(p): State<Shared>,
    query: Result<Query<DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(query_problem)?;
    if let Some(s) = &q.status
        && !["pending", "delivered", "failed"].contains(&s.as_str())
    {
        return Err(ApiError::invalid(vec![Problem {
            at: "status".into(),
            message: format!("`{s}` is not a delivery status"),
            hint: Some("pending, delivered or failed".into()),
        }]));
    }
    let filter = DeliveryFilter {
        endpoint: q.endpoint,
        status: q.status,
        event_id: q.event_id,
        limit: limit(q.limit)?,
    };
    let rows = p.store.deliveries(filter).await?;
    ok(json!({ "data": rows }))
}

/// A query string that does not fit its struct (unknown key, wrong type): 422.
fn query_problem(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::invalid(vec![Problem {
        at: "(query)".into(),
        message: e.body_text(),
        hint: None,
    }])
}

fn delivery_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no delivery {id}: delivery ids are numbers"),
        )
    })
}

async fn attempts(State(p): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let n = delivery_id(&id)?;
    let (rows, exists) = (
        p.store.attempts(&n.to_string()).await?,
        p.store.delivery_exists(n).await?,
    );
    if !exists {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no delivery {id}"),
        ));
    }
    ok(json!({ "data": rows }))
}

async fn retry_delivery(
    State(p): State<Shared>,
    Path(id): Path<String>,
    _headers: HeaderMap,
) -> ApiResult {
    let n = delivery_id(&id)?;
    p.store.retry_delivery(n).await?;
    p.wake.notify();
    ok(json!({ "queued": n }))
}
