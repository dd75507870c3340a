//! Requests: one request of the REST engine, from its slot to its body. Paces it (the source's
//! `rate_limit` and its host's `host_rate_limit`), sends it with credentials where they may go,
//! follows its redirects hop by hop, retries what is worth retrying, and reads the body capped.
//!
//! In: a [`RestSource`], a URL, an optional body ([`Outgoing`]) and the page's validators. Out:
//! [`Got`] (a fresh body with its headers, or 304), or a [`SourceError`] a user can act on.
//!
//! Invariants: every hop (at most [`MAX_REDIRECTS`]) is checked against the source's origins
//! before a byte is sent, and gets credentials only where they may go; a `429` is waited out up to
//! `max_retry_after`; an OAuth2 token is renewed once on a 401; a body is never read past
//! `max_page_bytes`, an error body only as far as quoted; a URL is shown only [`redact`]ed.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderName, HeaderValue,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LINK, LOCATION, RANGE, RETRY_AFTER,
};
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::rest::RestSource;
use super::{SourceError, shown};
use crate::config::Secret;
use crate::decode;
use crate::store::PageRecord;

/// How much of an error response body is read and quoted in the error.
const BODY_QUOTE: usize = 300;

/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;

/// Spaces requests: at most one per `interval`.
#[derive(Debug)]
pub(super) struct Pacer {
    interval: std::sync::Mutex<Duration>,
    next: Mutex<Instant>,
}

impl Pacer {
    pub(super) fn new(rate: f64) -> Arc<Pacer> {
        Arc::new(Pacer {
            interval: std::sync::Mutex::new(Duration::from_secs_f64(1.0 / rate)),
            next: Mutex::new(Instant::now()),
        })
    }

    async fn wait(&self) {
        let interval = *self.interval.lock().unwrap_or_else(|e| e.into_inner());
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// One pacer per host (and port), shared by every source of this process that polls it: an API's limit is
/// usually per account or per host, not per pollhook source. Where sources disagree, the
/// strictest limit wins.
pub(super) fn host_pacer(host: &str, rate: f64) -> Arc<Pacer> {
    static HOSTS: OnceLock<std::sync::Mutex<HashMap<String, Arc<Pacer>>>> = OnceLock::new();
    let mut hosts = HOSTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let pacer = hosts
        .entry(host.to_owned())
        .or_insert_with(|| Pacer::new(rate));
    let mut interval = pacer.interval.lock().unwrap_or_else(|e| e.into_inner());
    *interval = (*interval).max(Duration::from_secs_f64(1.0 / rate));
    drop(interval);
    pacer.clone()
}

/// A request body: what a POST carries.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    /// The bytes sent.
    pub(super) bytes: Vec<u8>,
    /// Their media type.
    pub(super) content_type: String,
}

/// What one request brought back.
pub(super) enum Got {
    /// A 2xx with a body (UTF-8; whether it is JSON or XML is for the caller to find out).
    Fresh {
        text: String,
        /// Its `Content-Type`: how to read it, when the resource does not say.
        content_type: Option<String>,
        link: Option<String>,
        /// `Content-Range` and whether the status was 206 (`range` pagination).
        content_range: Option<String>,
        partial: bool,
        /// The header a `page` or `offset` listing reads its length from (`total_header`).
        total: Option<String>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// 304: the page is as it was.
    NotModified,
}

impl RestSource {
    /// Waits for this source's and this host's next request slot.
    pub(super) async fn pace(&self) {
        if let Some(pacer) = &self.pacer {
            pacer.wait().await;
        }
        if let Some(pacer) = &self.host_pacer {
            pacer.wait().await;
        }
    }

    /// GETs one page (or POSTs `body`), retrying what is worth retrying; conditional when `known`
    /// has validators. `total_header` names a header to hand back as [`Got::Fresh`]'s `total`.
    pub(super) async fn send(
        &self,
        url: &Url,
        body: Option<&Outgoing>,
        known: Option<&PageRecord>,
        total_header: Option<&HeaderName>,
        requests: &mut u32,
    ) -> Result<Got, SourceError> {
        // The request as errors show it, made only for an error.
        let show = || shown(body.is_some(), self.redact(url));
        let mut attempt = 0;
        let mut renewed_token = false;
        loop {
            self.pace().await;
            let (sent, token) = self.exchange(url, body, known, requests).await?;
            let failure = match sent {
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::NOT_MODIFIED && known.is_some() {
                        return Ok(Got::NotModified);
                    }
                    if status == StatusCode::UNAUTHORIZED
                        && let (Some(cache), Some(token), false) =
                            (&self.token, &token, renewed_token)
                    {
                        // The token was revoked or expired early: fetch a new one, once.
                        cache.invalidate(token).await;
                        renewed_token = true;
                        continue;
                    }
                    if status.is_success() {
                        let header = |name| {
                            resp.headers()
                                .get(name)
                                .and_then(|v: &HeaderValue| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        let (link, etag, last_modified) =
                            (header(LINK), header(ETAG), header(LAST_MODIFIED));
                        let content_range = header(CONTENT_RANGE);
                        let total = total_header.and_then(|name| header(name.clone()));
                        let partial = status == StatusCode::PARTIAL_CONTENT;
                        let (content_type, encoding) =
                            (header(CONTENT_TYPE), header(CONTENT_ENCODING));
                        match read_capped(resp, self.config.max_page_bytes).await {
                            Ok(body) => {
                                let text =
                                    utf8_text(body, encoding.as_deref()).map_err(|message| {
                                        SourceError::Shape {
                                            request: show(),
                                            message,
                                        }
                                    })?;
                                return Ok(Got::Fresh {
                                    text,
                                    content_type,
                                    link,
                                    content_range,
                                    partial,
                                    total,
                                    etag,
                                    last_modified,
                                });
                            }
                            Err(BodyError::TooLarge) => {
                                return Err(SourceError::TooLarge {
                                    request: show(),
                                    limit: self.config.max_page_bytes,
                                });
                            }
                            Err(BodyError::Transport(e)) => {
                                Failure::Retry(self.transport_error(&show(), &e))
                            }
                        }
                    } else if status.as_u16() == 429 {
                        let wait = resp
                            .headers()
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| crate::retry::parse_retry_after(v, chrono::Utc::now()));
                        match wait {
                            Some(wait) if wait > self.config.max_retry_after => {
                                return Err(SourceError::RetryAfterTooLong {
                                    request: show(),
                                    wait_secs: wait.as_secs(),
                                    max_secs: self.config.max_retry_after.as_secs(),
                                });
                            }
                            _ => Failure::Wait(
                                wait,
                                SourceError::Status {
                                    request: show(),
                                    status: 429,
                                    body: quote(resp).await,
                                },
                            ),
                        }
                    } else if status.is_server_error() || status.as_u16() == 408 {
                        Failure::Retry(SourceError::Status {
                            request: show(),
                            status: status.as_u16(),
                            body: quote(resp).await,
                        })
                    } else {
                        return Err(SourceError::Status {
                            request: show(),
                            status: status.as_u16(),
                            body: quote(resp).await,
                        });
                    }
                }
                Err(e) => Failure::Retry(self.transport_error(&show(), &e)),
            };
            attempt += 1;
            let (wait, error) = match failure {
                Failure::Retry(error) => (None, error),
                Failure::Wait(wait, error) => (wait, error),
            };
            if attempt > self.config.retries {
                return Err(error);
            }
            let wait = wait.unwrap_or_else(|| backoff(attempt));
            tracing::debug!(source = %self.name, request = %show(), attempt, wait_ms = wait.as_millis() as u64, %error, "Request failed; retrying.");
            tokio::time::sleep(wait).await;
        }
    }

    /// Makes one request and follows its redirects (at most [`MAX_REDIRECTS`]), each hop checked
    /// with [`RestSource::credentials_for`] and given credentials only where they may go. Returns
    /// the final answer (or the transport error) and the OAuth2 token sent with it, if any.
    pub(super) async fn exchange(
        &self,
        url: &Url,
        body: Option<&Outgoing>,
        known: Option<&PageRecord>,
        requests: &mut u32,
    ) -> Result<(Result<reqwest::Response, reqwest::Error>, Option<Secret>), SourceError> {
        let mut target = url.clone();
        let mut body = body;
        for _ in 0..=MAX_REDIRECTS {
            let credentials = self.credentials_for(&target)?;
            *requests += 1;
            let mut address = self.with_key(&target, credentials);
            // A `range` page's fragment is its `Range` header, never part of the request.
            let range = super::paginate::range_of(&target)
                .map(|(unit, range)| (unit.to_owned(), range.to_owned()));
            address.set_fragment(None);
            let mut request = match body {
                Some(body) => self
                    .client
                    .post(address)
                    .header(CONTENT_TYPE, &body.content_type)
                    .body(body.bytes.clone()),
                None => self.client.get(address),
            };
            if let Some((unit, range)) = range {
                request = request.header("range-unit", unit).header(RANGE, range);
            }
            if let Some(known) = known {
                if let Some(etag) = &known.etag {
                    request = request.header(IF_NONE_MATCH, etag);
                }
                if let Some(date) = &known.last_modified {
                    request = request.header(IF_MODIFIED_SINCE, date);
                }
            }
            let mut token = None;
            if credentials {
                request = request.headers(self.credentials.clone());
                if let Some(cache) = &self.token {
                    let sent = cache.token(&self.token_client).await?;
                    let mut value = HeaderValue::from_str(&format!("Bearer {}", sent.expose()))
                        .map_err(|_| {
                            SourceError::Setup("the OAuth2 token is not valid in a header".into())
                        })?;
                    value.set_sensitive(true);
                    request = request.header(AUTHORIZATION, value);
                    token = Some(sent);
                }
            }
            let resp = match request.send().await {
                Ok(resp) => resp,
                Err(e) => return Ok((Err(e), token)),
            };
            let status = resp.status();
            let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok());
            let (true, Some(location)) = (
                status.is_redirection() && status != StatusCode::NOT_MODIFIED,
                location,
            ) else {
                return Ok((Ok(resp), token));
            };
            target = target.join(location).map_err(|e| SourceError::Shape {
                request: shown(body.is_some(), self.redact(&target)),
                message: format!("answered {status} with Location `{location}`, not a URL: {e}"),
            })?;
            // RFC 9110 §15.4: 303 turns the request into a GET; so do 301 and 302 in practice.
            if matches!(status.as_u16(), 301..=303) {
                body = None;
            }
        }
        Err(SourceError::Shape {
            request: shown(body.is_some(), self.redact(url)),
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// The error of a request that did not complete; `shown` is the request as [`shown`] shows it.
    pub(super) fn transport_error(&self, shown: &str, e: &reqwest::Error) -> SourceError {
        if e.is_timeout() {
            SourceError::Timeout {
                request: shown.to_owned(),
                seconds: self.config.timeout.as_secs_f64(),
            }
        } else {
            SourceError::Network {
                request: shown.to_owned(),
                message: crate::http::error_text(e),
            }
        }
    }
}

enum Failure {
    /// Retry after the usual backoff.
    Retry(SourceError),
    /// Retry after the server's `Retry-After`, if it gave one.
    Wait(Option<Duration>, SourceError),
}

/// 0.5 s, 1 s, 2 s, … capped at 30 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(6).saturating_sub(1)))
        .min(Duration::from_secs(30))
}

/// Why a body was not read to its end.
pub(super) enum BodyError {
    /// It is larger than the cap.
    TooLarge,
    /// The transfer failed.
    Transport(reqwest::Error),
}

/// A response's body, read chunk by chunk and never past `limit` bytes: a body declared or found
/// to be larger fails as soon as that is known, and the rest is not read.
pub(super) async fn read_capped(
    mut resp: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, BodyError> {
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A body as text: UTF-8 without its byte order mark (RFC 8259 §8.1 lets a parser ignore one).
fn utf8_text(body: Vec<u8>, encoding: Option<&str>) -> Result<String, String> {
    match encoding {
        // Decoded encodings (gzip, deflate, br) are gone from the headers by now.
        Some(encoding) if std::str::from_utf8(&body).is_err() => Err(format!(
            "the response is compressed with Content-Encoding `{encoding}`, which pollhook cannot decode (hint: ask the API for gzip, deflate or br, e.g. headers = {{ Accept-Encoding = \"gzip\" }})"
        )),
        _ => decode::text(body),
    }
}

/// The start of an error response's body, for the error message; only that much is read.
pub(super) async fn quote(mut resp: reqwest::Response) -> String {
    let mut bytes = Vec::with_capacity(BODY_QUOTE);
    while bytes.len() < BODY_QUOTE {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                bytes.extend_from_slice(&chunk[..chunk.len().min(BODY_QUOTE - bytes.len())])
            }
            _ => break,
        }
    }
    // Dropping the response closes the connection rather than reading the rest.
    drop(resp);
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text.to_owned()
    }
}

/// Query parameters whose values are treated as credentials wherever a URL is shown.
const SECRET_PARAMS: [&str; 9] = [
    "api_key",
    "apikey",
    "key",
    "token",
    "access_token",
    "secret",
    "client_secret",
    "signature",
    "password",
];

/// The URL as errors and logs may show it: no password, and every query value that is or could be
/// a credential (the configured query key, common credential names) replaced by `***`.
pub(super) fn redact(url: &Url, key_param: Option<&str>) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    let secret = |name: &str| {
        key_param == Some(name) || SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p))
    };
    if url.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(40), Duration::from_secs(16));
    }
}
