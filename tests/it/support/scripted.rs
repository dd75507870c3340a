//! A scripted fake API: every request goes to a closure that sees its method, path, query,
//! headers and body, and answers any status, headers and body. For provider fakes (GitHub's
//! `Link`, Stripe's cursors, an OAuth2 token endpoint) and conditional requests (`ETag`, 304).
//!
//! In: the handler. Out: its replies, and the log of every request with the status it got.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::listen;

/// One request a [`ScriptedApi`] received, with the status it answered.
#[derive(Debug, Clone)]
pub struct Req {
    /// `GET`, `POST`…
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The decoded query, in order.
    pub query: Vec<(String, String)>,
    /// Every request header.
    pub headers: HeaderMap,
    /// The body, as text.
    pub body: String,
    /// `http://127.0.0.1:PORT`, for absolute next links.
    pub base: String,
    /// When it arrived.
    pub at: Instant,
    /// What the fake answered (set after the handler ran).
    pub status: u16,
}

impl Req {
    /// A query parameter.
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A request header, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Authorization: Bearer` token.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }

    /// The body as `application/x-www-form-urlencoded` pairs.
    pub fn form(&self) -> BTreeMap<String, String> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }

    /// Path and query as sent, e.g. `/v1/customers?limit=100`.
    pub fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, query_string(&self.query))
        }
    }
}

/// What a fake answers.
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Reply {
    /// A 200 with a JSON body.
    pub fn json(body: &Value) -> Reply {
        Reply::status(200, body.to_string()).with("content-type", "application/json")
    }

    /// An error status with a JSON body.
    pub fn error(status: u16, body: &Value) -> Reply {
        Reply::status(status, body.to_string()).with("content-type", "application/json")
    }

    /// A status with a text body.
    pub fn status(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a response header.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

struct FakeState {
    handler: Box<Handler>,
    base: String,
    log: Mutex<Vec<Req>>,
}

/// An HTTP server on `127.0.0.1:0` that answers every request with a handler and logs it.
#[derive(Clone)]
pub struct ScriptedApi {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<FakeState>,
}

impl ScriptedApi {
    /// Starts the server on a free loopback port.
    pub async fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> ScriptedApi {
        let (listener, url) = listen().await;
        let state = Arc::new(FakeState {
            handler: Box::new(handler),
            base: url.clone(),
            log: Mutex::default(),
        });
        super::serve(
            listener,
            Router::new().fallback(serve).with_state(state.clone()),
        );
        ScriptedApi { url, state }
    }

    /// Every request so far, in arrival order.
    pub fn log(&self) -> MutexGuard<'_, Vec<Req>> {
        self.state.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of [`ScriptedApi::log`].
    pub fn requests(&self) -> Vec<Req> {
        self.log().clone()
    }

    /// Path and query of every request so far.
    pub fn targets(&self) -> Vec<String> {
        self.log().iter().map(Req::target).collect()
    }

    /// Forgets the requests seen so far.
    pub fn clear(&self) {
        self.log().clear();
    }
}

async fn serve(
    State(fake): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut req = Req {
        method,
        path: uri.path().to_owned(),
        query: url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        base: fake.base.clone(),
        at: Instant::now(),
        status: 0,
    };
    let reply = (fake.handler)(&req);
    req.status = reply.status;
    fake.log.lock().unwrap_or_else(|e| e.into_inner()).push(req);
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().append(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

/// Pairs as a URL query string.
pub fn query_string(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The request's query with `name` set to `value` (replaced, or appended).
pub fn with_param(req: &Req, name: &str, value: &str) -> String {
    let mut pairs: Vec<(String, String)> = req
        .query
        .iter()
        .filter(|(k, _)| k != name)
        .cloned()
        .collect();
    pairs.push((name.to_owned(), value.to_owned()));
    query_string(&pairs)
}
