//! Login and logout: the admin token, typed once into a form, becomes a session cookie.
//!
//! In: `POST /ui/login` with `{"token": "…"}` as JSON (sent by `app.js`, so the guard's JSON
//! rule holds and no other site's form can log a browser in); `POST /ui/logout`. Out: 204 with
//! `Set-Cookie`, or 401 with a message for a wrong token.
//!
//! Invariant: the token is compared in constant time and never echoed, logged or put in a URL.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::layout::{self, Tab};
use super::{Page, render, session};
use crate::api::guard::constant_time_eq;
use crate::api::{ApiError, JsonBody, Shared};

/// `GET /ui/login`: the form, or the dashboard when no token is needed or the session holds.
pub(super) async fn page(State(p): State<Shared>, headers: HeaderMap) -> Response {
    match &p.config.server.admin_token {
        Some(token) if !session::has_session(token, &headers) => form().into_response(),
        _ => Redirect::to("/ui/").into_response(),
    }
}

fn form() -> Page {
    render(layout::frame(
        "Log in",
        Tab::None,
        false,
        html! {
            section.login {
                h1 { "Log in" }
                p { "Enter the admin token (" code { "[server] admin_token" } " or "
                    code { "POLLHOOK_ADMIN_TOKEN" } "). It is kept as a session cookie for 12 hours, never in a URL." }
                form #login data-login {
                    label for="token" { "Admin token" }
                    input #token name="token" type="password" autocomplete="current-password" required autofocus;
                    button type="submit" { "Log in" }
                    p.error #login-error role="alert" {}
                }
            }
        },
    ))
}

/// The body of `POST /ui/login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    token: String,
}

/// `POST /ui/login`: 204 and the session cookie, or 401.
pub(super) async fn login(
    State(p): State<Shared>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    let Some(token) = &p.config.server.admin_token else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    if !constant_time_eq(body.token.as_bytes(), token.expose().as_bytes()) {
        tracing::warn!("Dashboard login refused: wrong admin token.");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "that is not the admin token",
        ));
    }
    let cookie = session::login_cookie(token, &headers);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

/// `POST /ui/logout`: 204 and a cookie that has expired.
pub(super) async fn logout(headers: HeaderMap) -> Response {
    let cookie = session::logout_cookie(&headers);
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}
