//! The dashboard at `/ui/`: four pages (Sources, Events, Deliveries, Endpoints) rendered on the
//! server with `maud`, one stylesheet and one script embedded in the binary, and the login that
//! turns the admin token into a session cookie.
//!
//! In: browser requests on the admin address, behind the same guard as the API (Host, Origin,
//! `Sec-Fetch-Site`, JSON bodies). Out: HTML pages whose data comes from [`crate::admin`], the
//! same operations as the CLI and the API; every button calls the JSON API (`/api/v1/…`) with
//! `fetch`, so each action has one implementation.
//!
//! Invariants: with `admin_token` set, a page needs a session ([`session`]) and the token never
//! travels in a URL; without one the admin address is loopback only, like the API. Every
//! response carries a strict `Content-Security-Policy` (`default-src 'self'`, no inline script or
//! style): behaviour lives in `app.js`, data in `data-*` attributes. Secrets are never rendered;
//! a new one is shown once by the script from the API's answer.
//!
//! One file per page: `sources`, `events`, `deliveries`, `endpoints`, `login`; `layout` holds the
//! frame and the small pieces every page shares.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;
use sha2::{Digest, Sha256};

use super::Shared;
use crate::admin::AdminError;

mod deliveries;
mod endpoints;
mod events;
mod layout;
mod login;
pub(super) mod session;
mod sources;

/// The dashboard's routes; [`super::router`] puts them behind the same-origin guard.
pub(super) fn router(pipeline: Shared) -> Router<Shared> {
    let pages = Router::new()
        .route("/ui/", get(sources::page))
        .route("/ui/events", get(events::list))
        .route("/ui/events/{id}", get(events::show))
        .route("/ui/deliveries", get(deliveries::page))
        .route("/ui/endpoints", get(endpoints::page))
        .route_layer(middleware::from_fn_with_state(pipeline, require_session));
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/login", get(login::page).post(login::login))
        .route("/ui/logout", post(login::logout))
        .route("/ui/assets/{name}", get(asset))
        .merge(pages)
        .layer(middleware::from_fn(security_headers))
}

/// A page with the admin token configured needs a session; without one, the login form.
async fn require_session(State(p): State<Shared>, request: Request, next: Next) -> Response {
    match &p.config.server.admin_token {
        Some(token) if !session::has_session(token, request.headers()) => {
            Redirect::to("/ui/login").into_response()
        }
        _ => next.run(request).await,
    }
}

/// The policy every dashboard response carries: only this origin's script, style and forms;
/// never framed (clickjacking).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// An embedded file: its bytes, its type, and a hash of its content for the URL, so a new
/// binary's assets are fetched anew while an unchanged one is cached for good.
struct Asset {
    name: &'static str,
    body: &'static str,
    content_type: &'static str,
    version: LazyLock<String>,
}

fn version_of(body: &str) -> String {
    hex::encode(&Sha256::digest(body.as_bytes())[..6])
}

static CSS: Asset = Asset {
    name: "app.css",
    body: include_str!("assets/app.css"),
    content_type: "text/css; charset=utf-8",
    version: LazyLock::new(|| version_of(include_str!("assets/app.css"))),
};

static JS: Asset = Asset {
    name: "app.js",
    body: include_str!("assets/app.js"),
    content_type: "text/javascript; charset=utf-8",
    version: LazyLock::new(|| version_of(include_str!("assets/app.js"))),
};

impl Asset {
    /// Its URL, with the content hash as the query.
    fn href(&self) -> String {
        format!("/ui/assets/{}?v={}", self.name, *self.version)
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    let Some(asset) = [&CSS, &JS].into_iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        asset.body,
    )
        .into_response()
}

/// Whether pages offer **Log out**: only a configured token makes a session.
fn logout(p: &Shared) -> bool {
    p.config.server.admin_token.is_some()
}

/// What a page handler returns: the page, or the error rendered as a page.
type Page = Result<Html<String>, PageError>;

fn render(markup: Markup) -> Page {
    Ok(Html(markup.into_string()))
}

/// A filtered listing, or none and why when a filter is refused: a bad filter is shown beside the
/// form that has it ([`layout::filtered`]), not as an error page.
fn unless_refused<T: Default>(
    listed: Result<T, AdminError>,
) -> Result<(T, Option<String>), PageError> {
    match listed {
        Ok(list) => Ok((list, None)),
        Err(e @ AdminError::Invalid(_)) => Ok((T::default(), Some(e.to_string()))),
        Err(e) => Err(e.into()),
    }
}

/// An operation that failed, shown as a page with the status the API would answer.
struct PageError(AdminError);

impl From<AdminError> for PageError {
    fn from(e: AdminError) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let api = super::ApiError::from(self.0);
        let body = layout::error_page(api.status, &api.message);
        (api.status, Html(body.into_string())).into_response()
    }
}
