//! The generic REST engine: auth, pagination, items extraction, retries, rate limits.
//!
//! In: a source's [`RestConfig`] and a resource's path, query and paging style. Out: the listing,
//! page by page, to the poll.
//!
//! This room is the engine: a source's setup, its origins and credentials, the fetch loop over a
//! listing's pages. With `page_concurrency` above 1 the loop asks for the pages the pager names
//! ahead ([`Pager::ahead`]), or else those the last poll walked (a conditional listing's page
//! records), while it reads the one before, and takes each only when the pager names its URL in
//! turn: what is listed is what one page after another would list. One request (pacing,
//! redirects, retries, the capped body) is [`super::request`]; a page's items are
//! [`super::items`].
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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use url::Url;

use super::Presence;
use super::auth::TokenCache;
use super::items::{count_items, extract_items, extract_xml_items, member_chain};
use super::paginate::{Answer, Pager, request_for};
use super::request::{Got, Outgoing, Pacer, host_pacer, redact};
use super::{FetchPlan, Fetched, Items, Page, PageItems, PageSender, Source, SourceError, shown};
use crate::config::{Auth, Format, KeyPlace, Pagination, ResourceConfig, RestConfig};
use crate::decode;
use crate::store::PageRecord;

/// A REST source: one HTTP client, its pacers and its OAuth2 token, shared by its resources.
pub struct RestSource {
    pub(super) name: String,
    pub(super) config: RestConfig,
    pub(super) client: reqwest::Client,
    /// `base_url`'s origin: where credentials go.
    pub(super) own: url::Origin,
    /// The auth header and the source's `headers`, sent only where credentials may go.
    pub(super) credentials: HeaderMap,
    pub(super) pacer: Option<Arc<Pacer>>,
    pub(super) host_pacer: Option<Arc<Pacer>>,
    pub(super) token: Option<TokenCache>,
    /// A client without the source's headers: they are meant for the API, not the token server.
    pub(super) token_client: reqwest::Client,
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
    pub(super) fn credentials_for(&self, url: &Url) -> Result<bool, SourceError> {
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
    pub(super) fn with_key(&self, url: &Url, credentials: bool) -> Url {
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

    pub(super) fn redact(&self, url: &Url) -> String {
        redact(url, self.key_param())
    }

    /// POSTs a JSON body (a GraphQL query) with this source's auth, pacing and retries, and
    /// returns the response's text and its `Content-Type`.
    pub(super) async fn post_json(
        &self,
        url: &Url,
        body: &Value,
        requests: &mut u32,
    ) -> Result<(String, Option<String>), SourceError> {
        let body = Outgoing {
            bytes: serde_json::to_vec(body).unwrap_or_default(),
            content_type: "application/json".into(),
        };
        match self.send(url, Some(&body), None, None, requests).await? {
            Got::Fresh {
                text, content_type, ..
            } => Ok((text, content_type)),
            // Only a request with validators can come back 304.
            Got::NotModified => Err(SourceError::Shape {
                request: shown(true, self.redact(url)),
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
        match self.send(url, None, None, None, requests).await? {
            Got::Fresh {
                text, content_type, ..
            } => Ok((text, content_type)),
            Got::NotModified => Err(SourceError::Shape {
                request: shown(false, self.redact(url)),
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

    /// Asks for the page the pager calls `url`: the request it stands for (with the resource's
    /// body, where the listing is fetched with one) and `known`'s validators. The requests it
    /// took (retries, redirect hops) and the answer.
    async fn ask(
        &self,
        resource: &ResourceConfig,
        known: Option<&PageRecord>,
        total_header: Option<&HeaderName>,
        url: Url,
    ) -> (u32, Result<Got, SourceError>) {
        // A listing fetched with a body carries the page's place in the body where the body
        // names it; the page is still known by the pager's URL.
        let (sent, body) = request_for(&resource.request, &resource.pagination, &url);
        let body = body.map(|bytes| Outgoing {
            bytes: bytes.into_bytes(),
            content_type: resource.request.content_type.clone(),
        });
        let mut requests = 0;
        let got = self
            .send(&sent, body.as_ref(), known, total_header, &mut requests)
            .await;
        (requests, got)
    }

    pub(super) fn url_of(&self, resource: &ResourceConfig) -> Result<Url, SourceError> {
        self.resource_url(resource)
    }
}

#[async_trait]
impl Source for RestSource {
    fn concurrency(&self) -> usize {
        self.config.page_concurrency as usize
    }

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
                let error = self.transport_error(&shown(false, self.redact(&url)), &error);
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
        // A 304 replays a page with the next URL recorded last time. Where the response says
        // where the listing ends (Link header, body, a stated total), a last page that answers
        // 304 could hide a page added after it, so the last page is always fetched in full.
        let known_for = |url: &Url| {
            plan.pages
                .and_then(|pages| pages.get(url.as_str()))
                .filter(|k| {
                    k.next_url.is_some()
                        || (resource.pagination.total().is_none()
                            && matches!(
                                resource.pagination,
                                Pagination::None
                                    | Pagination::Page { .. }
                                    | Pagination::Offset { .. }
                            ))
                })
        };
        let total_header = pager.total_header();
        let ask = |url: Url| self.ask(resource, known_for(&url), total_header, url);
        // Pages in flight, oldest first: the one to read next, then those asked for ahead
        // (`page_concurrency`), each taken only if the pager names its URL in its turn. A guess
        // the listing does not bear out ends the asking ahead for this listing: it costs at most
        // the requests in flight, once.
        let width = self.concurrency();
        let mut asked: VecDeque<Url> = VecDeque::new();
        let mut answers = FuturesOrdered::new();
        let mut guess = width > 1;
        let room = |fetched: &Fetched| {
            width.min(self.config.max_pages.saturating_sub(fetched.pages) as usize)
        };
        loop {
            if fetched.pages >= self.config.max_pages {
                return Err(SourceError::Shape {
                    request: shown(resource.request.post, self.redact(&url)),
                    message: format!(
                        "the listing is longer than max_pages = {} pages; raise it if that is expected",
                        self.config.max_pages
                    ),
                });
            }
            if asked.front() != Some(&url) {
                // Asked ahead for pages the listing did not lead to (or nothing in flight).
                guess &= asked.is_empty();
                asked.clear();
                answers = FuturesOrdered::new();
                asked.push_back(url.clone());
                answers.push_back(ask(url.clone()));
            }
            asked.pop_front();
            let Some((requests, got)) = answers.next().await else {
                unreachable!("a request for the page to read was just queued");
            };
            fetched.requests += requests;
            let got = match got {
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
                request: shown(resource.request.post, self.redact(&url)),
                message,
            };
            let (page, next, ahead) = match got {
                Got::Fresh {
                    text,
                    content_type,
                    link,
                    content_range,
                    partial,
                    total,
                    etag,
                    last_modified,
                } => {
                    // Where the page is JSON and `items` is a plain member path, the items are cut
                    // out of the text unparsed, and what the pager reads of the body (a cursor, a
                    // next URL) is read out of the text around them; otherwise the page is parsed
                    // (XML into the same tree, by the xmltodict convention).
                    let format = decode::format_of(resource.format, content_type.as_deref());
                    let body = match chain
                        .as_deref()
                        .filter(|_| format == Format::Json)
                        .and_then(|chain| pager.cut(&text, chain))
                    {
                        Some((spans, envelope)) => Body::Cut { spans, envelope },
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
                        Body::Cut { spans, envelope } => (spans.len(), envelope),
                        Body::Parsed(value) => match resource.items.as_ref() {
                            None => (value.as_array().map_or(0, Vec::len), value),
                            Some(path) => (count_items(value, path), value),
                        },
                    };
                    let answer = Answer {
                        link: link.as_deref(),
                        content_range: content_range.as_deref(),
                        partial,
                        total: total.as_deref(),
                    };
                    let next = pager
                        .next_with(&url, count, parsed, answer)
                        .map_err(shape)?;
                    let ahead = match &next {
                        Some(next) if guess => {
                            pager.ahead(&url, next, count, parsed, answer, room(&fetched))
                        }
                        _ => Vec::new(),
                    };
                    if count == 0 && next.is_some() {
                        tracing::warn!(
                            source = %self.name, resource = %resource.name, url = %self.redact(&url),
                            "An empty page names a next page; this listing will not count as complete (no deletes)."
                        );
                        fetched.complete = false;
                    }
                    let items = match body {
                        Body::Cut { spans, .. } => Items::from_spans(text, spans),
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
                    (page, next, ahead)
                }
                Got::NotModified => {
                    // `get` only answers NotModified when it sent validators from `known`. Its
                    // validators and next URL are taken; its ids stay in the record (the intake
                    // reads them there).
                    let known = known_for(&url);
                    let etag = known.and_then(|k| k.etag.clone());
                    let last_modified = known.and_then(|k| k.last_modified.clone());
                    let next_url = known.and_then(|k| k.next_url.clone());
                    let next = match &next_url {
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
                        etag,
                        last_modified,
                        next_url,
                        items: PageItems::NotModified,
                    };
                    (page, next, Vec::new())
                }
            };
            if guess && let Some(next) = &next {
                // Where the answer names no pages ahead, the pages the last poll walked after
                // this one are the guess (a conditional listing keeps them).
                let wanted = match ahead.is_empty() {
                    true => recorded_run(plan, next, room(&fetched)),
                    false => ahead,
                };
                let borne_out =
                    asked.len() <= wanted.len() && asked.iter().zip(&wanted).all(|(a, w)| a == w);
                if borne_out {
                    for url in wanted.into_iter().skip(asked.len()) {
                        asked.push_back(url.clone());
                        answers.push_back(ask(url));
                    }
                } else if !wanted.is_empty() {
                    guess = false;
                }
            }
            pages.send(page).await.map_err(|_| SourceError::Stopped)?;
            match next {
                Some(n) => url = n,
                None => return Ok(fetched),
            }
        }
    }
}

/// `next`, then the pages the last poll walked after it by its page records' next URLs, at most
/// `limit`; empty when that names no page beyond `next` (nothing to ask for ahead).
fn recorded_run(plan: &FetchPlan<'_>, next: &Url, limit: usize) -> Vec<Url> {
    let Some(records) = plan.pages else {
        return Vec::new();
    };
    let mut run = Vec::new();
    let mut at = Some(next.clone());
    while let Some(url) = at.filter(|_| run.len() < limit) {
        let Some(record) = records.get(url.as_str()) else {
            break;
        };
        at = record.next_url.as_deref().and_then(|n| Url::parse(n).ok());
        run.push(url);
    }
    if run.len() < 2 { Vec::new() } else { run }
}

/// A page's body as the fetch reads it.
enum Body {
    /// Where `items` is a plain member path and the pager's are plain paths: the items' spans, cut
    /// out of the text unparsed, and what the pager reads ([`Pager::envelope`]).
    Cut {
        spans: Vec<std::ops::Range<usize>>,
        envelope: Value,
    },
    /// Otherwise: parsed.
    Parsed(Value),
}

/// Parses a JSON page; a page that is not JSON gets an error naming what it is and what to do.
pub(super) fn parse_json(
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
