//! The generic REST engine: auth, pagination, items extraction, retries, rate limits.
//!
//! In: a source's [`RestConfig`] and a resource's path, query and paging style. Out: the listing,
//! page by page, to the poll.
//!
//! Invariants: a page that fails after its retries fails the whole fetch; a `429` is waited out
//! (`Retry-After`, capped by `max_retry_after`); requests are spaced by the source's `rate_limit`
//! and by its host's `host_rate_limit`, shared by every source on that host; an OAuth2 token is
//! renewed once on a 401; a page whose validators match answers 304 and is replayed from the
//! snapshot; no system proxy is used; secrets never appear in an error (credential-like query
//! values are shown as `***`).
//!
//! Trust boundary (DESIGN.md §3): every request, first page, next page or redirect hop (at most 5,
//! followed here rather than by reqwest so each hop is checked), goes to the source's own origin
//! (`base_url`'s scheme, host and port) or to one it lists in `follow_origins`; anything else fails
//! the fetch before a byte is sent. Credentials (auth, `headers`, the query key, the OAuth2 token)
//! go only to the own origin and to listed origins marked `credentials = true`. A body is read as
//! it arrives and never past `max_page_bytes` (decompressed); an error body only as far as quoted.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use reqwest::StatusCode;
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderMap, HeaderName,
    HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LINK, LOCATION, RANGE,
    RETRY_AFTER,
};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::Presence;
use super::auth::TokenCache;
use super::paginate::{Pager, RangeAnswer, extract_items, extract_xml_items, request_for};
use super::{FetchPlan, Fetched, Items, Page, PageItems, PageSender, Source, SourceError};
use crate::config::{Auth, Format, KeyPlace, Pagination, ResourceConfig, RestConfig, Secret};
use crate::decode;
use crate::store::PageRecord;

/// How much of an error response body is read and quoted in the error.
const BODY_QUOTE: usize = 300;

/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;

/// Spaces requests: at most one per `interval`.
#[derive(Debug)]
struct Pacer {
    interval: std::sync::Mutex<Duration>,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(rate: f64) -> Arc<Pacer> {
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
fn host_pacer(host: &str, rate: f64) -> Arc<Pacer> {
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
enum Got {
    /// A 2xx with a body (UTF-8; whether it is JSON or XML is for the caller to find out).
    Fresh {
        text: String,
        /// Its `Content-Type`: how to read it, when the resource does not say.
        content_type: Option<String>,
        link: Option<String>,
        /// `Content-Range` and whether the status was 206 (`range` pagination).
        content_range: Option<String>,
        partial: bool,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// 304: the page is as it was.
    NotModified,
}

/// A REST source: one HTTP client, its pacers and its OAuth2 token, shared by its resources.
pub struct RestSource {
    name: String,
    config: RestConfig,
    client: reqwest::Client,
    /// `base_url`'s origin: where credentials go.
    own: url::Origin,
    /// The auth header and the source's `headers`, sent only where credentials may go.
    credentials: HeaderMap,
    pacer: Option<Arc<Pacer>>,
    host_pacer: Option<Arc<Pacer>>,
    token: Option<TokenCache>,
    /// A client without the source's headers: they are meant for the API, not the token server.
    token_client: reqwest::Client,
}

impl RestSource {
    /// Builds the client (timeouts, no proxy, no redirects of its own) and the credential headers.
    pub fn new(name: &str, config: &RestConfig) -> Result<Self, SourceError> {
        let mut headers = HeaderMap::new();
        for (key, value) in &config.headers {
            let name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
                SourceError::Setup(format!("source {name}: `{key}` is not a header name"))
            })?;
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
                SourceError::Setup(format!(
                    "source {name}: the value of header `{key}` is not valid in a header"
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let auth_header = match &config.auth {
            Auth::None => None,
            Auth::Bearer { token } => Some(format!("Bearer {}", token.expose())),
            Auth::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()))
            )),
            Auth::ApiKey {
                place: KeyPlace::Header(header),
                value,
            } => {
                let header_name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                    SourceError::Setup(format!("source {name}: `{header}` is not a header name"))
                })?;
                let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
                    SourceError::Setup(format!(
                        "source {name}: the API key is not valid in a header"
                    ))
                })?;
                v.set_sensitive(true);
                headers.insert(header_name, v);
                None
            }
            Auth::ApiKey {
                place: KeyPlace::Query(_),
                ..
            } => None,
            // Set per request, from the token cache.
            Auth::OAuth2(_) => None,
        };
        if let Some(auth) = auth_header {
            let mut v = HeaderValue::from_str(&auth).map_err(|_| {
                SourceError::Setup(format!(
                    "source {name}: the credentials are not valid in a header"
                ))
            })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        // No default headers: they would go to every origin a redirect reaches (reqwest strips
        // only `Authorization` across hosts). Redirects are followed in `exchange`, hop by hop.
        let client = crate::http::client_via(config.proxy.as_ref())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| {
                SourceError::Setup(format!("source {name}: cannot build HTTP client: {e}"))
            })?;
        Ok(Self {
            name: name.to_owned(),
            pacer: config.rate_limit.map(Pacer::new),
            host_pacer: config.host_rate_limit.zip(config.base_url.host_str()).map(
                |(rate, host)| {
                    let port = config.base_url.port_or_known_default().unwrap_or(0);
                    host_pacer(&format!("{host}:{port}"), rate)
                },
            ),
            token: match &config.auth {
                Auth::OAuth2(settings) => Some(TokenCache::new(settings.clone())),
                _ => None,
            },
            // A token endpoint that redirects is answered as an error: a redirect would carry the
            // client secret on to wherever it points.
            token_client: crate::http::client_via(config.proxy.as_ref())
                .timeout(config.timeout)
                .build()
                .map_err(|e| {
                    SourceError::Setup(format!("source {name}: cannot build HTTP client: {e}"))
                })?,
            own: config.base_url.origin(),
            credentials: headers,
            config: config.clone(),
            client,
        })
    }

    /// Whether a request to `url` may carry the source's credentials; an error if it may not be
    /// made at all (an origin neither the source's own nor listed in `follow_origins`).
    fn credentials_for(&self, url: &Url) -> Result<bool, SourceError> {
        let origin = url.origin();
        if origin == self.own {
            return Ok(true);
        }
        match self
            .config
            .follow_origins
            .iter()
            .find(|f| f.origin == origin)
        {
            Some(listed) => Ok(listed.credentials),
            None => Err(SourceError::Origin {
                url: self.redact(url),
                origin: origin.ascii_serialization(),
                own: self.own.ascii_serialization(),
            }),
        }
    }

    /// The resource's first URL: base URL + path + static query (+ an API key in the query).
    fn resource_url(&self, resource: &ResourceConfig) -> Result<Url, SourceError> {
        let mut base = self.config.base_url.clone();
        // `join` would drop the base's last path segment unless it ends in `/`.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let mut url = base
            .join(resource.path.trim_start_matches('/'))
            .map_err(|e| {
                SourceError::Setup(format!(
                    "source {}: resource {} path `{}` does not join onto base_url: {e}",
                    self.name, resource.name, resource.path
                ))
            })?;
        if !resource.query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &resource.query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// The query parameter carrying the API key, if that is the auth.
    fn key_param(&self) -> Option<&str> {
        match &self.config.auth {
            Auth::ApiKey {
                place: KeyPlace::Query(param),
                ..
            } => Some(param),
            _ => None,
        }
    }

    /// Sets the query API key, if that is the auth, just before sending (replacing a copy that a
    /// next link may have carried over); without `credentials`, removes any copy instead.
    fn with_key(&self, url: &Url, credentials: bool) -> Url {
        let mut url = url.clone();
        if let Auth::ApiKey {
            place: KeyPlace::Query(param),
            value,
        } = &self.config.auth
        {
            if credentials {
                super::paginate::set_param(&mut url, param, value.expose());
            } else if url.query_pairs().any(|(k, _)| k == param.as_str()) {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .filter(|(k, _)| k != param.as_str())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                url.set_query(None);
                if !pairs.is_empty() {
                    url.query_pairs_mut().extend_pairs(pairs);
                }
            }
        }
        url
    }

    fn redact(&self, url: &Url) -> String {
        redact(url, self.key_param())
    }

    /// Waits for this source's and this host's next request slot.
    async fn pace(&self) {
        if let Some(pacer) = &self.pacer {
            pacer.wait().await;
        }
        if let Some(pacer) = &self.host_pacer {
            pacer.wait().await;
        }
    }

    /// POSTs a JSON body (a GraphQL query) with this source's auth, pacing and retries, and
    /// returns the JSON response.
    pub(super) async fn post_json(
        &self,
        url: &Url,
        body: &Value,
        requests: &mut u32,
    ) -> Result<Value, SourceError> {
        let body = Outgoing {
            bytes: serde_json::to_vec(body).unwrap_or_default(),
            content_type: "application/json".into(),
        };
        match self.send(url, Some(&body), None, requests).await? {
            Got::Fresh {
                text, content_type, ..
            } => parse_json(&text, content_type.as_deref(), None).map_err(|message| {
                SourceError::Shape {
                    url: self.redact(url),
                    message,
                }
            }),
            // Only a request with validators can come back 304.
            Got::NotModified => Err(SourceError::Shape {
                url: self.redact(url),
                message: "answered 304 to a request without validators".into(),
            }),
        }
    }

    /// GETs `url` with this source's auth, pacing, retries and byte cap, and returns the body's
    /// text and its `Content-Type`, for engines that read documents other than listings.
    pub(super) async fn get_text(
        &self,
        url: &Url,
        requests: &mut u32,
    ) -> Result<(String, Option<String>), SourceError> {
        match self.send(url, None, None, requests).await? {
            Got::Fresh {
                text, content_type, ..
            } => Ok((text, content_type)),
            Got::NotModified => Err(SourceError::Shape {
                url: self.redact(url),
                message: "answered 304 to a request without validators".into(),
            }),
        }
    }

    /// The resource's first URL, for engines built on this one.
    /// The URL of item `id` alone: base URL + `item_path` with `{id}` filled in (as one
    /// percent-encoded path segment, so an id cannot change the path).
    fn item_url(&self, item_path: &str, id: &str) -> Result<Url, SourceError> {
        let mut base = self.config.base_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let encoded: String = url::form_urlencoded::byte_serialize(id.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        let path = item_path.replace("{id}", &encoded);
        base.join(path.trim_start_matches('/')).map_err(|e| {
            SourceError::Setup(format!(
                "source {}: item_path `{item_path}` does not join onto base_url: {e}",
                self.name
            ))
        })
    }

    pub(super) fn url_of(&self, resource: &ResourceConfig) -> Result<Url, SourceError> {
        self.resource_url(resource)
    }

    /// GETs one page (or POSTs `body`), retrying what is worth retrying; conditional when `known`
    /// has validators.
    async fn send(
        &self,
        url: &Url,
        body: Option<&Outgoing>,
        known: Option<&PageRecord>,
        requests: &mut u32,
    ) -> Result<Got, SourceError> {
        let shown = self.redact(url);
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
                        let partial = status == StatusCode::PARTIAL_CONTENT;
                        let (content_type, encoding) =
                            (header(CONTENT_TYPE), header(CONTENT_ENCODING));
                        match read_capped(resp, self.config.max_page_bytes).await {
                            Ok(body) => {
                                let text =
                                    utf8_text(body, encoding.as_deref()).map_err(|message| {
                                        SourceError::Shape {
                                            url: shown.clone(),
                                            message,
                                        }
                                    })?;
                                return Ok(Got::Fresh {
                                    text,
                                    content_type,
                                    link,
                                    content_range,
                                    partial,
                                    etag,
                                    last_modified,
                                });
                            }
                            Err(BodyError::TooLarge) => {
                                return Err(SourceError::TooLarge {
                                    url: shown,
                                    limit: self.config.max_page_bytes,
                                });
                            }
                            Err(BodyError::Transport(e)) => {
                                Failure::Retry(self.transport_error(&shown, &e))
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
                                    url: shown,
                                    wait_secs: wait.as_secs(),
                                    max_secs: self.config.max_retry_after.as_secs(),
                                });
                            }
                            _ => Failure::Wait(
                                wait,
                                SourceError::Status {
                                    url: shown.clone(),
                                    status: 429,
                                    body: quote(resp).await,
                                },
                            ),
                        }
                    } else if status.is_server_error() || status.as_u16() == 408 {
                        Failure::Retry(SourceError::Status {
                            url: shown.clone(),
                            status: status.as_u16(),
                            body: quote(resp).await,
                        })
                    } else {
                        return Err(SourceError::Status {
                            url: shown,
                            status: status.as_u16(),
                            body: quote(resp).await,
                        });
                    }
                }
                Err(e) => Failure::Retry(self.transport_error(&shown, &e)),
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
            tracing::debug!(source = %self.name, url = %shown, attempt, wait_ms = wait.as_millis() as u64, %error, "Request failed; retrying.");
            tokio::time::sleep(wait).await;
        }
    }

    /// Makes one request and follows its redirects (at most [`MAX_REDIRECTS`]), each hop checked
    /// with [`RestSource::credentials_for`] and given credentials only where they may go. Returns
    /// the final answer (or the transport error) and the OAuth2 token sent with it, if any.
    async fn exchange(
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
                url: self.redact(&target),
                message: format!("answered {status} with Location `{location}`, not a URL: {e}"),
            })?;
            // RFC 9110 §15.4: 303 turns the request into a GET; so do 301 and 302 in practice.
            if matches!(status.as_u16(), 301..=303) {
                body = None;
            }
        }
        Err(SourceError::Shape {
            url: self.redact(url),
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    fn transport_error(&self, shown: &str, e: &reqwest::Error) -> SourceError {
        if e.is_timeout() {
            SourceError::Timeout {
                url: shown.to_owned(),
                seconds: self.config.timeout.as_secs_f64(),
            }
        } else {
            SourceError::Network {
                url: shown.to_owned(),
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
fn redact(url: &Url, key_param: Option<&str>) -> String {
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

#[async_trait]
impl Source for RestSource {
    async fn presence(&self, resource: &ResourceConfig, id: &str) -> Presence {
        let Some(item_path) = &resource.item_path else {
            return Presence::Unknown;
        };
        let url = match self.item_url(item_path, id) {
            Ok(url) => url,
            Err(error) => {
                tracing::warn!(source = %self.name, resource = %resource.name, %error, "Cannot confirm a delete.");
                return Presence::Unknown;
            }
        };
        self.pace().await;
        let mut requests = 0;
        let answer = match self.exchange(&url, None, None, &mut requests).await {
            Ok((Ok(resp), _)) => resp.status(),
            Ok((Err(error), _)) => {
                let error = self.transport_error(&self.redact(&url), &error);
                tracing::warn!(source = %self.name, resource = %resource.name, %error, "Cannot confirm a delete; asking again next poll.");
                return Presence::Unknown;
            }
            Err(error) => {
                tracing::warn!(source = %self.name, resource = %resource.name, %error, "Cannot confirm a delete; asking again next poll.");
                return Presence::Unknown;
            }
        };
        match answer.as_u16() {
            404 | 410 => Presence::Gone,
            200..=299 => Presence::Present,
            status => {
                tracing::warn!(source = %self.name, resource = %resource.name, url = %self.redact(&url), status, "A delete's confirmation answered neither 2xx nor 404/410; asking again next poll.");
                Presence::Unknown
            }
        }
    }

    async fn fetch(
        &self,
        resource: &ResourceConfig,
        plan: &FetchPlan<'_>,
        pages: &PageSender,
    ) -> Result<Fetched, SourceError> {
        let mut base = self.resource_url(resource)?;
        if !plan.query.is_empty() {
            base.query_pairs_mut().extend_pairs(&plan.query);
        }
        let mut pager = Pager::new(&resource.pagination, base);
        let pager_reads_body = matches!(
            resource.pagination,
            Pagination::Cursor { .. } | Pagination::NextUrl { .. }
        );
        let chain = match resource.items_text.as_deref() {
            None => Some(Vec::new()),
            Some(text) => member_chain(text),
        };
        let mut url = pager.first_url();
        let mut fetched = Fetched {
            pages: 0,
            requests: 0,
            complete: true,
        };
        loop {
            if fetched.pages >= self.config.max_pages {
                return Err(SourceError::Shape {
                    url: self.redact(&url),
                    message: format!(
                        "the listing is longer than max_pages = {} pages; raise it if that is expected",
                        self.config.max_pages
                    ),
                });
            }
            // A 304 replays a page with the next URL recorded last time. Where the next page is
            // named by the response (Link header, body), a last page that answers 304 could hide
            // a page added after it, so the last page is always fetched in full.
            let known = plan
                .pages
                .and_then(|pages| pages.get(url.as_str()))
                .filter(|k| {
                    k.next_url.is_some()
                        || matches!(
                            resource.pagination,
                            Pagination::None | Pagination::Page { .. } | Pagination::Offset { .. }
                        )
                });
            // A listing fetched with a body carries the page's place in the body where the body
            // names it; the page is still known by the pager's URL.
            let (sent, body) = request_for(&resource.request, &resource.pagination, &url);
            let body = body.map(|bytes| Outgoing {
                bytes: bytes.into_bytes(),
                content_type: resource.request.content_type.clone(),
            });
            let got = match self
                .send(&sent, body.as_ref(), known, &mut fetched.requests)
                .await
            {
                // Asked for a range past the end (a total the API did not give): the end.
                Err(SourceError::Status { status: 416, .. })
                    if fetched.pages > 0
                        && matches!(resource.pagination, Pagination::Range { .. }) =>
                {
                    return Ok(fetched);
                }
                got => got?,
            };
            fetched.pages += 1;
            let shape = |message| SourceError::Shape {
                url: self.redact(&url),
                message,
            };
            let (page, next) = match got {
                Got::Fresh {
                    text,
                    content_type,
                    link,
                    content_range,
                    partial,
                    etag,
                    last_modified,
                } => {
                    // Where the page is JSON, the pager does not read the body and `items` is a
                    // plain member path, the items are cut out of the text unparsed; otherwise
                    // the page is parsed (XML into the same tree, by the xmltodict convention).
                    let format = decode::format_of(resource.format, content_type.as_deref());
                    let body = match chain
                        .as_deref()
                        .filter(|_| !pager_reads_body && format == Format::Json)
                        .and_then(|chain| split_items(&text, chain))
                    {
                        Some(spans) => Body::Cut(spans),
                        None if format == Format::Xml => {
                            Body::Parsed(decode::xml(&text).map_err(shape)?)
                        }
                        None => Body::Parsed(
                            parse_json(&text, content_type.as_deref(), resource.format)
                                .map_err(shape)?,
                        ),
                    };
                    // The pager reads the body (cursors, next URLs) before the items are taken out.
                    let (count, parsed) = match &body {
                        Body::Cut(spans) => (spans.len(), &Value::Null),
                        Body::Parsed(value) => match resource.items.as_ref() {
                            None => (value.as_array().map_or(0, Vec::len), value),
                            Some(path) => (count_items(value, path), value),
                        },
                    };
                    let range = RangeAnswer {
                        content_range: content_range.as_deref(),
                        partial,
                    };
                    let next = pager
                        .next_with(&url, count, parsed, link.as_deref(), Some(range))
                        .map_err(shape)?;
                    if count == 0 && next.is_some() {
                        tracing::warn!(
                            source = %self.name, resource = %resource.name, url = %self.redact(&url),
                            "An empty page names a next page; this listing will not count as complete (no deletes)."
                        );
                        fetched.complete = false;
                    }
                    let items = match body {
                        Body::Cut(spans) => Items::from_spans(text, spans),
                        Body::Parsed(value) => {
                            let (items, text) =
                                (resource.items.as_ref(), resource.items_text.as_deref());
                            Items::from_values(
                                &match format {
                                    Format::Json => extract_items(value, items, text),
                                    Format::Xml => extract_xml_items(value, items, text),
                                }
                                .map_err(shape)?,
                            )
                        }
                    };
                    let page = Page {
                        url: url.to_string(),
                        etag,
                        last_modified,
                        next_url: next.as_ref().map(Url::to_string),
                        items: PageItems::Fresh(items),
                    };
                    (page, next)
                }
                Got::NotModified => {
                    // `get` only answers NotModified when it sent validators from `known`.
                    let known = known.cloned().unwrap_or_default();
                    let next = match &known.next_url {
                        Some(next) => Some(
                            Url::parse(next)
                                .map_err(|e| shape(format!("recorded next page `{next}`: {e}")))?,
                        ),
                        None => None,
                    };
                    if let Some(next) = &next {
                        pager.revisit(next);
                    }
                    let page = Page {
                        url: url.to_string(),
                        etag: known.etag,
                        last_modified: known.last_modified,
                        next_url: known.next_url,
                        items: PageItems::NotModified,
                    };
                    (page, next)
                }
            };
            pages.send(page).await.map_err(|_| SourceError::Stopped)?;
            match next {
                Some(n) => url = n,
                None => return Ok(fetched),
            }
        }
    }
}

/// A page's body as the fetch reads it.
enum Body {
    /// Where the pager does not read the body and `items` is a plain member path: the items' spans,
    /// cut out of the text unparsed.
    Cut(Vec<std::ops::Range<usize>>),
    /// Otherwise: parsed.
    Parsed(Value),
}

/// Parses a JSON page; a page that is not JSON gets an error naming what it is and what to do.
fn parse_json(
    text: &str,
    content_type: Option<&str>,
    configured: Option<Format>,
) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| not_json(text, content_type, configured, &e))
}

fn not_json(
    text: &str,
    content_type: Option<&str>,
    configured: Option<Format>,
    e: &serde_json::Error,
) -> String {
    let media = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    let shown = content_type.unwrap_or("none");
    let starts_with_tag = text.trim_start().starts_with('<');
    match media.as_deref() {
        Some("text/html" | "application/xhtml+xml") => format!(
            "the response is HTML (Content-Type: {shown}), not JSON: check base_url and the resource's path; an HTML page is often a login or error page"
        ),
        // Only reached when the resource says `format = "json"`: an XML Content-Type is read
        // as XML otherwise.
        Some(t) if t.ends_with("/xml") || t.ends_with("+xml") => format!(
            "the response is XML (Content-Type: {shown}), but the resource sets format = \"json\" (hint: set format = \"xml\", or leave format out to go by Content-Type)"
        ),
        _ if starts_with_tag && configured.is_none() => format!(
            "the response looks like HTML or XML (Content-Type: {shown}), not JSON: check base_url and the resource's path; if the API sends XML under that Content-Type, set format = \"xml\""
        ),
        _ if starts_with_tag => format!(
            "the response looks like HTML or XML (Content-Type: {shown}), but the resource sets format = \"json\": check base_url and the resource's path, or set format = \"xml\""
        ),
        Some(t) if !(t.ends_with("/json") || t.ends_with("+json")) => {
            format!("the response is not valid JSON (Content-Type: {shown}): {e}")
        }
        _ => format!("the response is not valid JSON: {e}"),
    }
}

/// The member names of a JSONPath that is only that (`$`, `$.data`, `$.a.b`, `$['odd key']`).
fn member_chain(path: &str) -> Option<Vec<String>> {
    let mut rest = path.trim().strip_prefix('$')?;
    let mut chain = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            chain.push(name.to_owned());
            rest = &after[end..];
        } else {
            let after = rest
                .strip_prefix("['")
                .or_else(|| rest.strip_prefix("[\""))?;
            let quote = if rest.starts_with("['") { "']" } else { "\"]" };
            let end = after.find(quote)?;
            let name = &after[..end];
            if name.contains(['\\', '\'', '"']) {
                return None;
            }
            chain.push(name.to_owned());
            rest = &after[end + 2..];
        }
    }
    Some(chain)
}

/// The spans of the items of a page whose list is at `chain` (member names from the root), found
/// without parsing the items. `None` when the page is not shaped so (then the page is parsed and
/// [`extract_items`] says what is wrong, or handles what is unusual).
fn split_items(text: &str, chain: &[String]) -> Option<Vec<std::ops::Range<usize>>> {
    let mut node: &str = text;
    for key in chain {
        let members: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
            serde_json::from_str(node).ok()?;
        node = members.get(key)?.get();
    }
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(node).ok()?;
    let base = text.as_ptr() as usize;
    Some(
        items
            .iter()
            .map(|item| {
                let start = item.get().as_ptr() as usize - base;
                start..start + item.get().len()
            })
            .collect(),
    )
}

fn count_items(body: &Value, path: &serde_json_path::JsonPath) -> usize {
    let nodes = path.query(body).all();
    match nodes.as_slice() {
        [Value::Array(list)] => list.len(),
        nodes => nodes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_chains_are_recognised_and_anything_else_is_not() {
        let chain = |p: &str| member_chain(p);
        assert_eq!(chain("$"), Some(vec![]));
        assert_eq!(chain("$.data"), Some(vec!["data".to_owned()]));
        assert_eq!(
            chain("$.a.b_2"),
            Some(vec!["a".to_owned(), "b_2".to_owned()])
        );
        assert_eq!(
            chain("$['odd key'][\"x\"]"),
            Some(vec!["odd key".to_owned(), "x".to_owned()])
        );
        for other in ["$.data[*]", "$..id", "$.data[0]", "$.a-b", "data", "$.1"] {
            assert_eq!(chain(other), None, "{other}");
        }
    }

    #[test]
    fn items_are_cut_out_of_the_text_as_sent() {
        let text = r#"{"meta": {"n": 2}, "data": [ {"id": 1, "a": [1, 2]},{"id":"x\"y"} ], "data": [{"id": 3}]}"#;
        let spans = split_items(text, &["data".to_owned()]).unwrap();
        let items: Vec<&str> = spans.iter().map(|s| &text[s.clone()]).collect();
        assert_eq!(
            items,
            [r#"{"id": 3}"#],
            "a repeated key: the last copy wins"
        );
        let text = r#"[ {"id": 1, "a": [1, 2]},{"id":"x\"y"} ]"#;
        let spans = split_items(text, &[]).unwrap();
        let items: Vec<&str> = spans.iter().map(|s| &text[s.clone()]).collect();
        assert_eq!(items, [r#"{"id": 1, "a": [1, 2]}"#, r#"{"id":"x\"y"}"#]);
        assert_eq!(
            split_items(r#"{"data": {"id": 1}}"#, &["data".to_owned()]),
            None
        );
        assert_eq!(
            split_items(r#"{"data": [1]} x"#, &["data".to_owned()]),
            None
        );
        assert_eq!(split_items(r#"{"other": []}"#, &["data".to_owned()]), None);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(40), Duration::from_secs(16));
    }
}
