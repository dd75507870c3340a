//! Shared helpers: a fake source API on `127.0.0.1:0`, config from TOML text, and a poll harness.
//!
//! The fake API serves one listing (whatever path is asked) in any pagination style pollhook
//! supports, checks one kind of credential, and can be told to fail a page or to throttle once.
//! Items are kept as JSON *text*, so a test controls key order and whitespace on the wire
//! (`serde_json::Value` would sort the keys).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use pollhook::config::{Config, ConfigError, ResourceConfig};
use pollhook::event::Event;
use pollhook::normalize::Hash;
use pollhook::poll::{Mode, PollError, PollReport, poll};
use pollhook::source::Source;
use pollhook::store::{EventFilter, ResourceStatus, Store};
use serde_json::Value;
use tempfile::TempDir;

// ───────────────────────────── the fake source API ─────────────────────────────

/// How the fake API pages its listing (mirrors `pollhook::config::Pagination`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// The whole array in one response.
    None,
    /// `?page=N`, RFC 8288 `Link: <absolute url>; rel="next"` while more remain; the link
    /// repeats the request's other query parameters.
    LinkHeader,
    /// `?page=N&per_page=S`, first page 1; no hint of the end but an empty page.
    Page,
    /// `?offset=N&limit=S`; no hint of the end but an empty page.
    Offset,
    /// `?cursor=cN`; body `{"data":[…],"meta":{"next_cursor":"cN"|null}}`.
    Cursor,
    /// `?page=N`; body `{"data":[…],"links":{"next":"<absolute url>"|null}}`, the URL built as
    /// for `LinkHeader`.
    NextUrl,
}

/// The one credential the fake API accepts, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequiredAuth {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic base64(user:password)`.
    Basic(String, String),
    /// `<header>: <key>`.
    HeaderKey(String, String),
    /// `?<param>=<key>`.
    QueryKey(String, String),
}

/// One request the fake API received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, normally.
    pub method: Method,
    /// Path and query, e.g. `/orders?page=2`.
    pub path_and_query: String,
    /// Every request header.
    pub headers: HeaderMap,
}

/// What the fake API serves and how; tests change it between polls.
#[derive(Debug)]
pub struct ApiState {
    /// `http://127.0.0.1:PORT`, for absolute next links.
    pub base_url: String,
    /// The listing, one JSON text per item.
    pub items: Vec<String>,
    /// The pagination style served.
    pub style: Style,
    /// Items per page when the request does not say (`per_page`/`limit` win when given).
    pub page_size: usize,
    /// The credential required; `None`: open.
    pub auth: Option<RequiredAuth>,
    /// Answer this status (every time) for this 1-based page.
    pub fail_page: Option<(usize, u16)>,
    /// Answer the next request with 429 and this `Retry-After` (seconds), once.
    pub throttle_once: Option<u64>,
    /// Every request, in arrival order.
    pub requests: Vec<Seen>,
}

/// A running fake API. The server task ends with the test's runtime.
#[derive(Clone)]
pub struct FakeApi {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<Mutex<ApiState>>,
}

impl FakeApi {
    /// Starts a fake API serving `style`, three items a page, no items yet.
    pub async fn start(style: Style) -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ApiState {
            base_url: url.clone(),
            items: Vec::new(),
            style,
            page_size: 3,
            auth: None,
            fail_page: None,
            throttle_once: None,
            requests: Vec::new(),
        }));
        let app = Router::new().fallback(serve).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeApi { url, state }
    }

    /// The state, to change knobs or read the request log.
    pub fn state(&self) -> MutexGuard<'_, ApiState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the listing with these items.
    pub fn set_items(&self, items: impl IntoIterator<Item = Value>) {
        self.state().items = items.into_iter().map(|v| v.to_string()).collect();
    }

    /// Replaces the listing with items given as exact JSON text.
    pub fn set_raw_items(&self, items: &[&str]) {
        self.state().items = items.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Path and query of every request so far.
    pub fn paths(&self) -> Vec<String> {
        self.state()
            .requests
            .iter()
            .map(|r| r.path_and_query.clone())
            .collect()
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn number(uri: &Uri, name: &str) -> Option<usize> {
    query_param(uri, name).and_then(|v| v.parse().ok())
}

fn authorized(auth: &Option<RequiredAuth>, headers: &HeaderMap, uri: &Uri) -> bool {
    let header_is = |name: &str, want: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == want)
    };
    match auth {
        None => true,
        Some(RequiredAuth::Bearer(token)) => header_is("authorization", &format!("Bearer {token}")),
        Some(RequiredAuth::Basic(user, password)) => {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            header_is("authorization", &format!("Basic {encoded}"))
        }
        Some(RequiredAuth::HeaderKey(name, key)) => header_is(name, key),
        Some(RequiredAuth::QueryKey(param, key)) => {
            query_param(uri, param).as_deref() == Some(key.as_str())
        }
    }
}

/// The one handler: log, check the credential, apply the failure knobs, slice the listing.
async fn serve(
    State(state): State<Arc<Mutex<ApiState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let path_and_query = uri.path_and_query().map_or("/".into(), |p| p.to_string());
    s.requests.push(Seen {
        method,
        path_and_query,
        headers: headers.clone(),
    });
    if !authorized(&s.auth, &headers, &uri) {
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    if let Some(wait) = s.throttle_once.take() {
        let retry_after = [(header::RETRY_AFTER, wait.to_string())];
        return (StatusCode::TOO_MANY_REQUESTS, retry_after, "slow down").into_response();
    }

    let size = match s.style {
        Style::Page => number(&uri, "per_page"),
        Style::Offset => number(&uri, "limit"),
        _ => None,
    }
    .unwrap_or(s.page_size)
    .max(1);
    let start = match s.style {
        Style::None => 0,
        Style::LinkHeader | Style::Page | Style::NextUrl => {
            (number(&uri, "page").unwrap_or(1).max(1) - 1) * size
        }
        Style::Offset => number(&uri, "offset").unwrap_or(0),
        Style::Cursor => query_param(&uri, "cursor")
            .and_then(|c| c.strip_prefix('c')?.parse().ok())
            .unwrap_or(0),
    };
    let total = s.items.len();
    let end = if s.style == Style::None {
        total
    } else {
        (start + size).min(total)
    };
    let start = start.min(total);
    let page = start / size + 1;
    if let Some((fail, status)) = s.fail_page
        && fail == page
    {
        let status = StatusCode::from_u16(status).unwrap();
        return (status, format!("page {page} failed")).into_response();
    }

    let list = format!("[{}]", s.items[start..end].join(","));
    let more = end < total;
    // Like most APIs, the next link repeats the request's query with the page replaced.
    let mut next_query = url::form_urlencoded::Serializer::new(String::new());
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k != "page")
        .for_each(|(k, v)| {
            next_query.append_pair(&k, &v);
        });
    next_query.append_pair("page", &(page + 1).to_string());
    let next_page_url = format!("{}{}?{}", s.base_url, uri.path(), next_query.finish());
    let json = [(header::CONTENT_TYPE, "application/json")];
    match s.style {
        Style::None | Style::Page | Style::Offset => (json, list).into_response(),
        Style::LinkHeader => {
            let mut response = (json, list).into_response();
            if more {
                let link = format!("<{next_page_url}>; rel=\"next\"");
                response
                    .headers_mut()
                    .insert(header::LINK, link.parse().unwrap());
            }
            response
        }
        Style::Cursor => {
            let next = if more {
                format!("\"c{end}\"")
            } else {
                "null".into()
            };
            let body = format!(r#"{{"data":{list},"meta":{{"next_cursor":{next}}}}}"#);
            (json, body).into_response()
        }
        Style::NextUrl => {
            let next = if more {
                format!("\"{next_page_url}\"")
            } else {
                "null".into()
            };
            let body = format!(r#"{{"data":{list},"links":{{"next":{next}}}}}"#);
            (json, body).into_response()
        }
    }
}

// ───────────────────────────── config ─────────────────────────────

/// An environment with these variables.
pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Parses config text as if read from `test.toml`.
pub fn parse(text: &str, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), text, env)
}

/// Parses config text with its `[storage] path` inside `dir`; panics on a bad config.
pub fn config_in(dir: &TempDir, text: &str) -> Config {
    let db = dir.path().join("pollhook.db");
    let text = format!("[storage]\npath = '{}'\n\n{text}", db.display());
    parse(&text, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"))
}

// ───────────────────────────── a poll harness ─────────────────────────────

/// One resource of one source over a fresh database: poll it and look at what was written.
pub struct Harness {
    /// Holds the database.
    pub dir: TempDir,
    /// The parsed config.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// The first source's name.
    pub source_name: String,
    /// The first source.
    pub source: Arc<dyn Source>,
    /// The first source's first resource.
    pub resource: ResourceConfig,
}

impl Harness {
    /// Parses `text` (a config without `[storage]`) and opens a fresh database for it.
    pub fn new(text: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(&dir, text);
        let store = Store::open(&config.storage.path).unwrap();
        let source_config = config.sources[0].clone();
        let source = pollhook::source::build(&source_config).unwrap();
        Harness {
            dir,
            store,
            source_name: source_config.name.clone(),
            source,
            resource: source_config.resources[0].clone(),
            config,
        }
    }

    /// One committed poll.
    pub async fn poll(&self) -> Result<PollReport, PollError> {
        poll(
            &self.store,
            &self.source_name,
            self.source.as_ref(),
            &self.resource,
            Mode::Commit,
        )
        .await
    }

    /// Every stored event, oldest first.
    pub fn events(&self) -> Vec<Event> {
        let filter = EventFilter {
            limit: 10_000,
            ..Default::default()
        };
        let mut events: Vec<Event> = block_on(self.store.events(filter))
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        events.reverse();
        events
    }

    /// The resource's status row.
    pub fn status(&self) -> ResourceStatus {
        block_on(self.store.status())
            .unwrap()
            .into_iter()
            .find(|s| s.source == self.source_name && s.resource == self.resource.name)
            .expect("the resource has a status row")
    }

    /// The snapshot, sorted by id.
    pub fn snapshot(&self) -> Vec<(String, Hash)> {
        let mut rows = block_on(
            self.store
                .snapshot_hashes(&self.source_name, &self.resource.name),
        )
        .unwrap();
        rows.sort();
        rows
    }

    /// The snapshot's ids, sorted as numbers where they are numbers.
    pub fn snapshot_ids(&self) -> Vec<String> {
        sorted_ids(self.snapshot().into_iter().map(|(id, _)| id))
    }
}

/// Ids sorted numerically when they all are numbers, else as text.
pub fn sorted_ids(ids: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().collect();
    ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), id.clone()));
    ids
}

/// An event as JSON with its minted `id` and `detected_at` blanked, after checking their form.
pub fn stable(event: &Event) -> Value {
    assert!(
        event.id.starts_with("evt_") && event.id.len() == 36,
        "{}",
        event.id
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(&event.detected_at).is_ok(),
        "{}",
        event.detected_at
    );
    let mut v = serde_json::to_value(event).unwrap();
    v["id"] = Value::from("evt_");
    v["detected_at"] = Value::from("");
    v
}

/// `n` items `{"id": i, "status": "open"}`, ids 1..=n.
pub fn orders(n: u64) -> Vec<Value> {
    (1..=n)
        .map(|i| serde_json::json!({"id": i, "status": "open"}))
        .collect()
}

/// Runs a store call to completion from synchronous test code (an `eventually` check, a helper
/// that reads the database), inside an async test or not: on a thread of its own with its own
/// runtime, since a runtime cannot block on itself.
pub fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for a store call")
                .block_on(future)
        })
        .join()
        .expect("the store call did not panic")
    })
}
