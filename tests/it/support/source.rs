//! The fake source API: one listing on `127.0.0.1:0` in any pagination style pollhook supports,
//! one kind of credential checked, a failing page or one throttle on demand, every request
//! recorded; and [`Shop`], a `GET /orders` whose items a test edits one by one.
//!
//! In: what the test scripts. Out: responses a real API could send, and the log of what it was
//! asked. Items are kept as JSON *text*, so a test controls key order and whitespace on the wire
//! (`serde_json::Value` would sort the keys).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};

use super::listen;

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
        let (listener, url) = listen().await;
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
        super::serve(
            listener,
            Router::new().fallback(serve).with_state(state.clone()),
        );
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
        Style::Cursor | Style::NextUrl => {
            let (section, key, next) = if s.style == Style::Cursor {
                ("meta", "next_cursor", format!("c{end}"))
            } else {
                ("links", "next", next_page_url)
            };
            let next = if more { json!(next) } else { Value::Null };
            let body = format!(r#"{{"data":{list},"{section}":{{"{key}":{next}}}}}"#);
            (json, body).into_response()
        }
    }
}

// ───────────────────────────── a shop the test edits ─────────────────────────────

/// A json-server-like `GET /orders` whose items the test sets one by one. It ignores paging
/// parameters and never sends a `Link` header, so any listing is one complete page.
#[derive(Clone)]
pub struct Shop {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    items: Arc<Mutex<BTreeMap<u64, Value>>>,
}

impl Shop {
    /// Starts the API with orders `ids`, all `open`.
    pub async fn start(ids: impl IntoIterator<Item = u64>) -> Shop {
        let items = Arc::<Mutex<BTreeMap<u64, Value>>>::default();
        let app = Router::new()
            .route("/orders", get(list))
            .with_state(items.clone());
        let shop = Shop {
            url: super::start(app).await,
            items,
        };
        for id in ids {
            shop.set(id, "open");
        }
        shop
    }

    /// Adds order `id`, or changes its status.
    pub fn set(&self, id: u64, status: &str) {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, json!({"id": id, "status": status}));
    }
}

async fn list(State(items): State<Arc<Mutex<BTreeMap<u64, Value>>>>) -> axum::Json<Vec<Value>> {
    let items = items.lock().unwrap_or_else(|e| e.into_inner());
    axum::Json(items.values().cloned().collect())
}
