//! The request guard: what a web page in a browser could send is refused before the token is
//! looked at, then the bearer token.
//!
//! In: a request's headers and `[server]`. Out: the request, passed on, or a refusal in the
//! API's error shape (421 foreign `Host`, 403 foreign `Origin`/`Sec-Fetch-Site`, 415 a body that
//! is not JSON, 401 no or a wrong token).
//!
//! Invariant: a browser page of another origin can neither read nor change anything here: it
//! cannot send JSON without a preflight (which gets no CORS headers), and a rebound name is not
//! an allowed `Host`.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Shared};
use crate::config::ServerConfig;

/// Refuses what a web page in a browser could send to this API, before the token is looked at:
/// a `Host` that is not this API's (DNS rebinding: 421), an `Origin` that is not this API's or a
/// `Sec-Fetch-Site` that is not same-origin (403), and a body that is not `application/json`,
/// the one type a page cannot send cross-origin without a CORS preflight, which gets no CORS
/// headers here (415).
pub(super) async fn same_origin(State(p): State<Shared>, request: Request, next: Next) -> Response {
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

/// Lets a request through with `Authorization: Bearer <admin_token>` (compared in constant
/// time) or the dashboard's session cookie, or with any when no token is configured (the API
/// then listens on loopback only). The cookie is `SameSite=Strict` and [`same_origin`] runs
/// first, so another site's page can neither send it nor ride on it.
pub(super) async fn require_token(
    State(p): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
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
        None if super::ui::session::has_session(token, request.headers()) => {
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

/// Whether two byte strings are equal, in time that depends only on their lengths.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
