//! OAuth2 client credentials (RFC 6749 §4.4) for the REST engine: fetch a token, cache it, refresh
//! it before it expires and after the API answers 401.
//!
//! In: the source's [`OAuth2`] settings and its HTTP client. Out: a bearer token.
//!
//! Invariants: one token request at a time per source (concurrent pages wait for the same
//! token); a token is refreshed [`REFRESH_EARLY`] before its `expires_in` runs out; the client
//! secret and the token never appear in an error; a token response is read to at most 1 MiB and an
//! error response only as far as it is quoted; a token endpoint's redirect is not followed.

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::SourceError;
use crate::config::{OAuth2, Secret};

/// A token is renewed this long before it would expire (or, for short-lived tokens, halfway
/// through its life).
pub const REFRESH_EARLY: Duration = Duration::from_secs(60);

/// Lifetime assumed when the token response gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// A token response larger than this is refused: tokens are a few kilobytes at most.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

/// A cached client-credentials token.
pub struct TokenCache {
    settings: OAuth2,
    /// The token and when to renew it.
    token: Mutex<Option<(Secret, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenCache {
    /// An empty cache for `settings`.
    pub fn new(settings: OAuth2) -> Self {
        Self {
            settings,
            token: Mutex::new(None),
        }
    }

    /// A valid token: the cached one, or a new one.
    pub async fn token(&self, client: &reqwest::Client) -> Result<Secret, SourceError> {
        let mut cached = self.token.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.request(client).await?;
        let early = REFRESH_EARLY.min(lifetime / 2);
        *cached = Some((token.clone(), Instant::now() + lifetime - early));
        Ok(token)
    }

    /// Forgets the cached token (the API refused it), unless it was already replaced.
    pub async fn invalidate(&self, refused: &Secret) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|(t, _)| t == refused) {
            *cached = None;
        }
    }

    async fn request(&self, client: &reqwest::Client) -> Result<(Secret, Duration), SourceError> {
        let s = &self.settings;
        let fail = |message: String| SourceError::Token {
            token_url: s.token_url.to_string(),
            message,
        };
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if let Some(scope) = &s.scope {
            form.push(("scope", scope.clone()));
        }
        if let Some(audience) = &s.audience {
            form.push(("audience", audience.clone()));
        }
        let mut request = client.post(s.token_url.clone());
        if s.basic {
            // RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding.
            let user = form_encode(&s.client_id);
            let pass = form_encode(s.client_secret.expose());
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            request = request.header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"));
        } else {
            form.push(("client_id", s.client_id.clone()));
            form.push(("client_secret", s.client_secret.expose().to_owned()));
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = request
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| fail(format!("cannot reach it: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            // The error body (RFC 6749 §5.2) names the problem (`invalid_client`, …) and holds no
            // secret of ours; only its start is read.
            let text = super::request::quote(response).await;
            return Err(fail(format!(
                "HTTP {status}: {text} (hint: check client_id, client_secret and scope)"
            )));
        }
        let bytes = super::request::read_capped(response, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| match e {
                super::request::BodyError::TooLarge => fail(format!(
                    "the response is larger than {MAX_TOKEN_RESPONSE} bytes, too large for a token response"
                )),
                super::request::BodyError::Transport(e) => fail(crate::http::error_text(&e)),
            })?;
        let parsed: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| fail(format!("the response is not a token response: {e}")))?;
        if let Some(kind) = &parsed.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(fail(format!("token_type is `{kind}`, not bearer")));
        }
        let lifetime = parsed
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Ok((Secret::new(parsed.access_token), lifetime))
    }
}

fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
