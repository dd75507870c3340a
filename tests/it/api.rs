//! The admin API over real HTTP, against the real pipeline started in-process (DESIGN.md §8):
//! bearer auth, endpoint CRUD and its persistence, poll-now, events and their cursor pagination,
//! replay / retry / backfill reaching a receiver, validation errors, the OpenAPI document against
//! the router and against real responses, and `/metrics`.
//!
//! Every test runs its own pipeline on a free loopback port over its own database, a
//! [`FakeShop`] polled every hour (so polls happen when a test asks for them, after the one right
//! after start) and, where deliveries matter, a [`Receiver`]. The metrics recorder is one per test
//! binary, so metric assertions are "contains" and "increases", never totals.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pollhook::api::{OPENAPI, ROUTES};
use pollhook::config::Config;
use pollhook::demo::{FakeShop, Receiver};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{
    ConfigBuilder, EVENT_KEYS, Resource, Run, Source, eventually, object_keys, start_on_free_port,
};

const TOKEN: &str = "test-token";
/// How long any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);

// ───────────────────────────── harness ─────────────────────────────

/// One response, read whole.
#[derive(Debug)]
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    /// Asserts the status and returns the JSON body.
    fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        if self.text.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts an error response: status, `error.code`, and the shape of `error`.
    fn error(&self, status: u16, code: &str) -> Value {
        let body = self.expect(status);
        let error = &body["error"];
        assert_eq!(error["code"], code, "{body}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        let keys: BTreeSet<&str> = error
            .as_object()
            .unwrap_or_else(|| panic!("error is not an object: {body}"))
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            keys.is_subset(&BTreeSet::from(["code", "message", "problems"])),
            "{body}"
        );
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
        body
    }

    /// Asserts a 422 whose first problem names `field`, and returns that problem.
    fn invalid(&self, field: &str) -> Value {
        let body = self.error(422, "invalid");
        let problem = body["error"]["problems"][0].clone();
        assert_eq!(problem["field"], field, "{body}");
        assert!(
            problem["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(problem.get("hint").is_some(), "{body}");
        body
    }
}

/// A client for one running API; remembers every response body (to check secrets never leak).
#[derive(Clone)]
struct Http {
    base: String,
    client: reqwest::Client,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Http {
    fn new(base: String, bodies: Arc<Mutex<Vec<String>>>) -> Http {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(WAIT)
            .build()
            .unwrap();
        Http {
            base,
            client,
            bodies,
        }
    }

    /// A request with this `Authorization` header (none if `None`) and a raw JSON body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<&str>,
    ) -> Resp {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        self.bodies.lock().unwrap().push(text.clone());
        Resp {
            status,
            headers,
            text,
        }
    }

    async fn authed(&self, method: Method, path: &str, body: Option<&str>) -> Resp {
        self.send(method, path, Some(&format!("Bearer {TOKEN}")), body)
            .await
    }

    async fn get(&self, path: &str) -> Resp {
        self.authed(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Resp {
        self.authed(Method::POST, path, Some(&body.to_string()))
            .await
    }

    async fn post_empty(&self, path: &str) -> Resp {
        self.authed(Method::POST, path, None).await
    }

    async fn patch(&self, path: &str, body: Value) -> Resp {
        self.authed(Method::PATCH, path, Some(&body.to_string()))
            .await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.authed(Method::DELETE, path, None).await
    }

    /// Polls `shop.orders` now; returns the report.
    async fn poll(&self) -> Value {
        self.post_empty("/api/v1/sources/shop/resources/orders/poll")
            .await
            .expect(200)
    }

    /// Changes the shop once and polls: exactly one change, so exactly one event. Returns it
    /// as the poll reported it (`id`, `type`, `resource_id`).
    async fn churn_and_poll(&self, shop: &FakeShop) -> Value {
        let what = shop.churn();
        let report = self.poll().await;
        let events = report["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "after `{what}`: {report}");
        events[0].clone()
    }

    /// The delivery of `event_id` to `endpoint` (the newest, if several).
    async fn delivery(&self, event_id: &str, endpoint: &str) -> Option<Value> {
        let body = self
            .get(&format!(
                "/api/v1/deliveries?event_id={event_id}&endpoint={endpoint}"
            ))
            .await
            .expect(200);
        body["data"].as_array().unwrap().first().cloned()
    }

    /// Waits until the delivery of `event_id` to `endpoint` has `status`; returns it.
    async fn delivery_with_status(&self, event_id: &str, endpoint: &str, status: &str) -> Value {
        eventually(
            &format!("the delivery of {event_id} to {endpoint} to be {status}"),
            WAIT,
            async move || {
                self.delivery(event_id, endpoint)
                    .await
                    .filter(|d| d["status"] == status)
            },
        )
        .await
    }
}

/// A pollhook running in this process.
struct Running {
    http: Http,
    run: Run,
}

/// Every response body any client of the test got, shared across restarts.
type Bodies = Arc<Mutex<Vec<String>>>;

/// The config of one pipeline. `every` is an hour plus `tag` seconds: the scheduler polls once
/// right after start and then not again during a test, and `tag` tells this pipeline's API from
/// another one that got the same port (see [`Running::start`]).
fn config(dir: &Path, port: u16, shop: &FakeShop, tag: u64) -> Config {
    let orders = Resource::new("orders", &format!("{}s", 3600 + tag));
    ConfigBuilder::new(dir)
        .set("server.listen", format!("127.0.0.1:{port}"))
        .set("server.admin_token", TOKEN)
        .source(Source::json_server("shop", &shop.url).resource(orders))
        .loopback_delivery()
        .set("delivery.retries", vec!["100ms"])
        .parse()
}

/// What `GET /api/v1/sources` says about `shop.orders`, if it answers 200.
async fn orders_status(http: &Http) -> Option<Value> {
    let response = http
        .client
        .get(format!("{}/api/v1/sources", http.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    Some(body["data"][0]["resources"][0].clone())
}

impl Running {
    /// Starts the pipeline over the database in `dir`, and waits until its API answers and the
    /// poll made right after start (the baseline, or an unchanged poll after a restart) is done.
    ///
    /// Each start has its own poll interval, which `/api/v1/sources` shows, to tell ours from
    /// another pipeline that got the same port (see [`start_on_free_port`]).
    async fn start(dir: &TempDir, shop: &FakeShop, bodies: &Bodies) -> Running {
        let tag = u64::from(rand::random::<u32>() % 100_000);
        let every = Duration::from_secs(3600 + tag);
        let http_on = |port: u16| Http::new(format!("http://127.0.0.1:{port}"), bodies.clone());
        let (port, run) = start_on_free_port(
            |port| config(dir.path(), port, shop, tag),
            async |port| {
                let orders = orders_status(&http_on(port)).await?;
                let schedule = orders["schedule"].as_str()?.strip_prefix("every ")?;
                if pollhook::config::parse_duration(schedule).ok()? != every {
                    // Another pipeline's: ours is about to fail to listen.
                    return Some(false);
                }
                (!orders["last_poll_at"].is_null()).then_some(true)
            },
        )
        .await;
        Running {
            http: http_on(port),
            run,
        }
    }

    /// Stops the pipeline and waits for `run` to return cleanly.
    async fn stop(self) {
        self.run.stop().await;
    }
}

/// A shop with `n` orders, a fresh database and a running pipeline.
async fn setup(n: u64) -> (FakeShop, TempDir, Bodies, Running) {
    let shop = FakeShop::start(n).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bodies = Bodies::default();
    let running = Running::start(&dir, &shop, &bodies).await;
    (shop, dir, bodies, running)
}

/// Registers a standard-webhooks endpoint `name` posting to `receiver`.
async fn add_endpoint(http: &Http, name: &str, receiver: &Receiver) -> Value {
    http.post(
        "/api/v1/endpoints",
        json!({
            "name": name,
            "url": format!("{}/hooks/{name}", receiver.url),
            "signing": "standard-webhooks",
        }),
    )
    .await
    .expect(201)
}

/// The events a receiver got, in arrival order (standard-webhooks bodies are the event).
fn received_events(receiver: &Receiver) -> Vec<Value> {
    receiver
        .received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

fn times_received(receiver: &Receiver, event_id: &str) -> usize {
    received_events(receiver)
        .iter()
        .filter(|e| e["id"] == event_id)
        .count()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A JSON id (number or string) as the text events carry in `resource_id`.
fn id_text(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ───────────────────────────── auth and health ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_the_bearer_token_and_health_does_not() {
    let (shop, _dir, _bodies, pipe) = setup(20).await;
    let http = &pipe.http;
    let endpoint = json!({"name": "sneaky", "url": "http://127.0.0.1:9/hooks", "signing": "standard-webhooks"})
        .to_string();

    let wrong = [
        None,
        Some("Bearer wrong-token".to_owned()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(TOKEN.to_owned()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("bearer{TOKEN}")),
    ];
    for authorization in &wrong {
        let r = http
            .send(
                Method::POST,
                "/api/v1/endpoints",
                authorization.as_deref(),
                Some(&endpoint),
            )
            .await;
        r.error(401, "unauthorized");
        assert_eq!(
            r.headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{authorization:?}"
        );
    }
    // Nothing was created.
    http.get("/api/v1/endpoints/sneaky")
        .await
        .error(404, "not_found");
    assert_eq!(
        http.get("/api/v1/endpoints").await.expect(200)["data"],
        json!([])
    );

    // Nor polled: a change followed by an unauthorized poll-now leaves no event.
    shop.churn();
    http.send(
        Method::POST,
        "/api/v1/sources/shop/resources/orders/poll",
        Some("Bearer nope"),
        None,
    )
    .await
    .error(401, "unauthorized");
    assert_eq!(
        http.get("/api/v1/events").await.expect(200)["data"],
        json!([])
    );

    // Every /api/v1 route but the document refuses a request without the token.
    for (method, path) in ROUTES {
        let url = fill_params(path);
        let method: Method = method.to_uppercase().parse().unwrap();
        let r = http.send(method.clone(), &url, None, Some("{}")).await;
        if path.starts_with("/api/v1/") && *path != "/api/v1/openapi.json" {
            r.error(401, "unauthorized");
            assert!(
                r.headers.contains_key("www-authenticate"),
                "{method} {path}"
            );
        } else {
            assert_eq!(r.status, StatusCode::OK, "{method} {path}: {}", r.text);
        }
    }

    // Health, readiness, metrics and the document are open.
    for path in ["/livez", "/healthz"] {
        let r = http.send(Method::GET, path, None, None).await;
        assert_eq!(r.expect(200), json!({"status": "ok"}), "{path}");
    }
    let ready = http
        .send(Method::GET, "/readyz", None, None)
        .await
        .expect(200);
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["database"], "writable", "{ready}");
    assert_eq!(ready["scheduler"], true, "{ready}");
    assert_eq!(ready["dispatcher"], true, "{ready}");
    let metrics = http.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        metrics.headers
    );
    // The database's size and its oldest kept event (retention).
    for gauge in [
        "pollhook_database_bytes ",
        "pollhook_oldest_event_timestamp_seconds ",
    ] {
        assert!(metrics.text.contains(gauge), "{gauge}: {}", metrics.text);
    }
    let doc = http
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(
        doc.expect(200),
        serde_json::from_str::<Value>(OPENAPI).unwrap()
    );
    pipe.stop().await;
}

// ───────────────────────────── endpoints ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_crud_never_shows_a_secret_twice_and_survives_a_restart() {
    let (shop, dir, bodies, pipe) = setup(20).await;
    let receiver = Receiver::start().await.unwrap();
    let http = pipe.http.clone();
    let mut secrets = Vec::new();

    // Created with a generated standard-webhooks secret: shown once, in the 201.
    let app = add_endpoint(&http, "app", &receiver).await;
    let secret = app["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{app}");
    assert_eq!(app["name"], "app");
    assert_eq!(app["url"], format!("{}/hooks/app", receiver.url));
    assert_eq!(app["signing"], "standard-webhooks");
    assert_eq!(app["active"], true);
    assert_eq!(app["origin"], "api");
    assert_eq!(app["resources"], json!(["*"]));
    assert_eq!(app["actions"], json!([]));
    // The last four characters at most: a key's first ones are often a fixed header.
    let tail: String = secret.chars().skip(secret.chars().count() - 4).collect();
    assert_eq!(app["secret_hint"], format!("whsec_…{tail}"));
    assert!(app.get("backfilled").is_none(), "{app}");
    secrets.push(secret.clone());

    // A jwt endpoint with its own secret: not echoed back.
    let jwt_secret = "a-jwt-secret-that-is-long-enough-0123456789";
    let erp = http
        .post(
            "/api/v1/endpoints",
            json!({
                "name": "erp",
                "url": format!("{}/hooks/erp", receiver.url),
                "secret": jwt_secret,
                "actions": ["created"],
                "headers": {"X-Tenant": "t-1"},
                "timeout": "3s",
            }),
        )
        .await
        .expect(201);
    assert!(erp.get("secret").is_none(), "{erp}");
    assert_eq!(erp["signing"], "jwt");
    assert_eq!(erp["actions"], json!(["created"]));
    assert_eq!(erp["headers"], json!(["X-Tenant"]));
    assert_eq!(erp["timeout_ms"], 3000);
    secrets.push(jwt_secret.to_owned());

    // Listed and shown, without secrets.
    let list = http.get("/api/v1/endpoints").await.expect(200);
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "erp"]);
    let shown = http.get("/api/v1/endpoints/app").await.expect(200);
    let mut without_secret = app.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    assert_eq!(shown, without_secret);

    // Patched: url, resources, actions.
    let new_url = format!("{}/hooks/app-v2", receiver.url);
    let patched = http
        .patch(
            "/api/v1/endpoints/app",
            json!({"url": new_url, "resources": ["shop.orders"], "actions": ["created", "deleted"]}),
        )
        .await
        .expect(200);
    assert_eq!(patched["url"], new_url);
    assert_eq!(patched["resources"], json!(["shop.orders"]));
    assert_eq!(patched["actions"], json!(["created", "deleted"]));
    assert_eq!(patched["signing"], "standard-webhooks");
    assert_eq!(http.get("/api/v1/endpoints/app").await.expect(200), patched);
    // `active` through PATCH too.
    let off = http
        .patch("/api/v1/endpoints/app", json!({"active": false}))
        .await
        .expect(200);
    assert_eq!(off["active"], false);
    assert_eq!(off["url"], new_url);

    // Pause and resume.
    let resumed = http
        .post_empty("/api/v1/endpoints/app/resume")
        .await
        .expect(200);
    assert_eq!(resumed["active"], true);
    let paused = http
        .post_empty("/api/v1/endpoints/app/pause")
        .await
        .expect(200);
    assert_eq!(paused["active"], false);
    assert_eq!(
        http.get("/api/v1/endpoints/app").await.expect(200)["active"],
        false
    );
    let resumed = http
        .post_empty("/api/v1/endpoints/app/resume")
        .await
        .expect(200);
    assert_eq!(resumed["active"], true);
    assert!(resumed["disabled_reason"].is_null());

    // Rotation: a new secret, shown once; the default overlap is a day.
    let rotated = http
        .post_empty("/api/v1/endpoints/app/rotate-secret")
        .await
        .expect(200);
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new_secret.starts_with("whsec_"), "{rotated}");
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["previous_secret_valid_for_secs"], 86_400);
    let new_tail: String = new_secret
        .chars()
        .skip(new_secret.chars().count() - 4)
        .collect();
    secrets.push(new_secret);
    let rotated = http
        .post(
            "/api/v1/endpoints/erp/rotate-secret",
            json!({"overlap": "1h"}),
        )
        .await
        .expect(200);
    assert_eq!(rotated["previous_secret_valid_for_secs"], 3600);
    let erp_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert!(erp_secret.len() >= 32 && !erp_secret.starts_with("whsec_"));
    secrets.push(erp_secret);

    // A created endpoint can start from the current state.
    let with_backfill = http
        .post(
            "/api/v1/endpoints",
            json!({"name": "late", "url": format!("{}/hooks/late", receiver.url), "backfill": true}),
        )
        .await
        .expect(201);
    assert_eq!(with_backfill["backfilled"], 20, "{with_backfill}");
    secrets.push(with_backfill["secret"].as_str().unwrap().to_owned());

    // Deleted: 204 with no body, then 404.
    let gone = http.delete("/api/v1/endpoints/erp").await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert!(gone.text.is_empty(), "{}", gone.text);
    http.get("/api/v1/endpoints/erp")
        .await
        .error(404, "not_found");
    http.delete("/api/v1/endpoints/erp")
        .await
        .error(404, "not_found");

    // Restart on the same database: the API-made endpoint is still there, as patched.
    pipe.stop().await;
    let pipe = Running::start(&dir, &shop, &bodies).await;
    let http = pipe.http.clone();
    let mut after = http.get("/api/v1/endpoints/app").await.expect(200);
    // The hint follows the secret, which was rotated after `resumed` was read.
    assert_eq!(after["secret_hint"], format!("whsec_…{new_tail}"));
    let mut resumed = resumed;
    for view in [&mut after, &mut resumed] {
        view.as_object_mut().unwrap().remove("secret_hint");
    }
    assert_eq!(after, resumed);
    assert_eq!(after["origin"], "api");
    let names: Vec<String> = http.get("/api/v1/endpoints").await.expect(200)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["app", "late"]);

    // Each secret appeared in exactly one response: the one that returned it.
    let bodies = bodies.lock().unwrap().clone();
    for secret in &secrets {
        let n = bodies
            .iter()
            .filter(|b| b.contains(secret.as_str()))
            .count();
        let expected = usize::from(secret != jwt_secret);
        assert_eq!(
            n, expected,
            "a secret appeared in {n} response bodies (expected {expected})"
        );
    }
    pipe.stop().await;
}

// ───────────────────────────── poll-now and events ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_now_records_events_listed_newest_first_with_cursors_and_filters() {
    let (shop, _dir, _bodies, pipe) = setup(20).await;
    let http = &pipe.http;

    let sources = http.get("/api/v1/sources").await.expect(200);
    let orders = &sources["data"][0]["resources"][0];
    assert_eq!(sources["data"][0]["name"], "shop");
    assert_eq!(sources["data"][0]["engine"], "rest");
    assert_eq!(orders["key"], "shop.orders");
    assert_eq!(orders["last_outcome"], "baseline", "{sources}");
    assert_eq!(orders["item_count"], 20);
    // A baseline emits nothing: no change yet.
    assert_eq!(orders["last_change_at"], Value::Null, "{sources}");

    // No change, no event.
    let quiet = http.poll().await;
    assert_eq!(quiet["events"], json!([]), "{quiet}");
    assert_eq!(quiet["baseline"], false);
    assert_eq!(quiet["listed"], 20);
    assert_eq!(quiet["resource"], "shop.orders");

    // Three changes, one poll each.
    let mut polled = Vec::new();
    for _ in 0..3 {
        polled.push(http.churn_and_poll(&shop).await);
    }
    let newest_first: Vec<String> = polled
        .iter()
        .rev()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();

    let all = http.get("/api/v1/events").await.expect(200);
    assert_eq!(ids(&all["data"]), newest_first);
    assert_eq!(all["next_cursor"], Value::Null);
    for (event, reported) in all["data"]
        .as_array()
        .unwrap()
        .iter()
        .zip(polled.iter().rev())
    {
        let keys = object_keys(event);
        assert_eq!(keys, BTreeSet::from(EVENT_KEYS), "{event}");
        assert!(event["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(event["source"], "shop");
        assert_eq!(event["resource"], "orders");
        let action = event["action"].as_str().unwrap();
        assert!(
            ["created", "updated", "deleted"].contains(&action),
            "{event}"
        );
        assert_eq!(event["type"], format!("shop.orders.{action}"));
        assert_eq!(event["type"], reported["type"]);
        assert_eq!(event["resource_id"], reported["resource_id"]);
        assert!(
            chrono::DateTime::parse_from_rfc3339(event["detected_at"].as_str().unwrap()).is_ok()
        );
        assert_eq!(event["data"].is_null(), action == "deleted", "{event}");
        assert_eq!(event["previous"].is_null(), action == "created", "{event}");
        assert_eq!(event["changes"].is_array(), action == "updated", "{event}");
        // And one by one.
        let id = event["id"].as_str().unwrap();
        assert_eq!(
            &http.get(&format!("/api/v1/events/{id}")).await.expect(200),
            event
        );
    }

    // Cursor pagination, one a page, until the cursor runs out.
    let mut seen = Vec::new();
    let mut cursor: Option<i64> = None;
    for _ in 0..10 {
        let path = match cursor {
            Some(c) => format!("/api/v1/events?limit=1&cursor={c}"),
            None => "/api/v1/events?limit=1".to_owned(),
        };
        let page = http.get(&path).await.expect(200);
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 1, "{page}");
        seen.extend(ids(&page["data"]));
        match page["next_cursor"].as_i64() {
            Some(next) => {
                assert_eq!(data.len(), 1, "a cursor after an empty page: {page}");
                cursor = Some(next);
            }
            None => {
                assert!(page["next_cursor"].is_null(), "{page}");
                break;
            }
        }
    }
    assert_eq!(seen, newest_first, "pages walked newest to oldest");
    // The first page of two points at the third event.
    let two = http.get("/api/v1/events?limit=2").await.expect(200);
    assert_eq!(ids(&two["data"]), newest_first[..2]);
    let next = two["next_cursor"]
        .as_i64()
        .expect("a cursor after a full page");
    let rest = http
        .get(&format!("/api/v1/events?limit=2&cursor={next}"))
        .await
        .expect(200);
    assert_eq!(ids(&rest["data"]), newest_first[2..]);
    assert!(rest["next_cursor"].is_null(), "{rest}");

    // Filters.
    let first = &all["data"][2];
    let action = first["action"].as_str().unwrap();
    let by_action = http
        .get(&format!("/api/v1/events?action={action}"))
        .await
        .expect(200);
    let want: Vec<String> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids(&by_action["data"]), want);
    let other = ["created", "updated", "deleted"].into_iter().find(|a| {
        all["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] != *a)
    });
    if let Some(other) = other {
        let none = http
            .get(&format!("/api/v1/events?action={other}"))
            .await
            .expect(200);
        assert_eq!(none["data"], json!([]), "{other}");
    }
    let item = first["resource_id"].as_str().unwrap();
    let by_item = http
        .get(&format!("/api/v1/events?resource_id={item}"))
        .await
        .expect(200);
    let want: Vec<String> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource_id"] == item)
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(ids(&by_item["data"]), want);
    let none = http
        .get("/api/v1/events?resource_id=no-such-item")
        .await
        .expect(200);
    assert_eq!(none["data"], json!([]));
    for query in ["resource=shop.orders", "source=shop", "resource=orders"] {
        let same = http
            .get(&format!("/api/v1/events?{query}"))
            .await
            .expect(200);
        assert_eq!(ids(&same["data"]), newest_first, "{query}");
    }
    let elsewhere = http
        .get("/api/v1/events?source=elsewhere")
        .await
        .expect(200);
    assert_eq!(elsewhere["data"], json!([]));
    let future = http
        .get("/api/v1/events?since=2999-01-01T00:00:00Z")
        .await
        .expect(200);
    assert_eq!(future["data"], json!([]));
    let past = http
        .get("/api/v1/events?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z")
        .await
        .expect(200);
    assert_eq!(ids(&past["data"]), newest_first);

    // The source view shows the last poll, and when the newest event was recorded: committed
    // after its poll detected it, before this request.
    let sources = http.get("/api/v1/sources").await.expect(200);
    let orders = &sources["data"][0]["resources"][0];
    assert_ne!(orders["last_outcome"], "baseline", "{sources}");
    assert_eq!(orders["consecutive_errors"], 0);
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    let recorded = at(&orders["last_change_at"]);
    assert!(recorded >= at(&all["data"][0]["detected_at"]), "{sources}");
    assert!(recorded <= chrono::Utc::now(), "{sources}");
    pipe.stop().await;
}

// ───────────────────────────── replay, retry, backfill ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_retry_and_backfill_reach_the_receiver() {
    let (shop, _dir, _bodies, pipe) = setup(20).await;
    let http = &pipe.http;
    let receiver = Receiver::start().await.unwrap();
    add_endpoint(http, "app", &receiver).await;

    // A change is delivered.
    let receiver = &receiver;
    let first = http.churn_and_poll(&shop).await;
    let first_id = first["id"].as_str().unwrap();
    http.delivery_with_status(first_id, "app", "delivered")
        .await;
    assert_eq!(times_received(receiver, first_id), 1);

    // Replayed: the same event id arrives again.
    let replayed = http
        .post_empty(&format!("/api/v1/events/{first_id}/replay"))
        .await
        .expect(200);
    assert_eq!(replayed["queued_for"], json!(["app"]));
    eventually("the replay to arrive", WAIT, async move || {
        (times_received(receiver, first_id) == 2).then_some(())
    })
    .await;
    // To one endpoint by name, too.
    let replayed = http
        .post(
            &format!("/api/v1/events/{first_id}/replay"),
            json!({"endpoint": "app"}),
        )
        .await
        .expect(200);
    assert_eq!(replayed["queued_for"], json!(["app"]));
    eventually("the second replay to arrive", WAIT, async move || {
        (times_received(receiver, first_id) == 3).then_some(())
    })
    .await;
    let deliveries = eventually("three delivered deliveries", WAIT, async move || {
        let body = http
            .get(&format!("/api/v1/events/{first_id}/deliveries"))
            .await
            .expect(200);
        let data = body["data"].as_array().unwrap().clone();
        (data.len() == 3 && data.iter().all(|d| d["status"] == "delivered")).then_some(data)
    })
    .await;
    for d in &deliveries {
        assert_eq!(d["event_id"], first_id);
        assert_eq!(d["endpoint"], "app");
        assert_eq!(d["attempts"], 1);
        let log = d["attempt_log"].as_array().unwrap();
        assert_eq!(log.len(), 1, "{d}");
        assert_eq!(log[0]["status"], 204);
        assert_eq!(log[0]["delivery_id"], d["id"]);
        assert!(log[0]["error"].is_null(), "{d}");
    }

    // A receiver failing: two attempts (retries = ["100ms"]), then a dead letter.
    receiver.answer(500);
    let second = http.churn_and_poll(&shop).await;
    let second_id = second["id"].as_str().unwrap();
    let failed = http.delivery_with_status(second_id, "app", "failed").await;
    assert_eq!(failed["attempts"], 2, "{failed}");
    assert_eq!(failed["last_status"], 500);
    assert!(!failed["finished_at"].is_null());
    let delivery_id = failed["id"].as_i64().unwrap();
    let attempts = http
        .get(&format!("/api/v1/deliveries/{delivery_id}/attempts"))
        .await
        .expect(200);
    let statuses: Vec<&Value> = attempts["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses, [&json!(500), &json!(500)], "{attempts}");
    let failed_list = http
        .get("/api/v1/deliveries?status=failed&endpoint=app")
        .await
        .expect(200);
    assert_eq!(
        failed_list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [delivery_id]
    );

    // Retried once the receiver is back.
    receiver.answer(204);
    let retried = http
        .post_empty(&format!("/api/v1/deliveries/{delivery_id}/retry"))
        .await
        .expect(200);
    assert_eq!(retried["queued"], delivery_id);
    let delivered = http
        .delivery_with_status(second_id, "app", "delivered")
        .await;
    assert_eq!(delivered["id"], delivery_id);
    assert_eq!(delivered["last_status"], 204);
    assert_eq!(times_received(receiver, second_id), 3);
    let attempts = http
        .get(&format!("/api/v1/deliveries/{delivery_id}/attempts"))
        .await
        .expect(200);
    assert_eq!(attempts["data"].as_array().unwrap().len(), 3, "{attempts}");
    // A delivered delivery is not retried.
    http.post_empty(&format!("/api/v1/deliveries/{delivery_id}/retry"))
        .await
        .error(404, "not_found");

    // Backfill: one `created` per item the shop lists now, each a new event.
    let listing: Vec<Value> = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/orders", shop.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items: BTreeSet<String> = listing.iter().map(|o| id_text(&o["id"])).collect();
    let before = receiver.received().len();
    let backfill = http
        .post_empty("/api/v1/endpoints/app/backfill")
        .await
        .expect(200);
    assert_eq!(backfill["queued"], items.len(), "{backfill}");
    let want = items.len();
    let got = eventually("the backfill to arrive", WAIT, async move || {
        let events = received_events(receiver);
        (events.len() >= before + want).then(|| events[before..].to_vec())
    })
    .await;
    assert_eq!(got.len(), items.len());
    let got_items: BTreeSet<String> = got.iter().map(|e| id_text(&e["resource_id"])).collect();
    assert_eq!(got_items, items);
    for event in &got {
        assert_eq!(event["action"], "created", "{event}");
        assert_eq!(event["type"], "shop.orders.created");
        assert!(event["previous"].is_null());
        let id = event["id"].as_str().unwrap();
        assert!(id != first_id && id != second_id);
    }
    let distinct: BTreeSet<&str> = got.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        distinct.len(),
        got.len(),
        "every backfilled event has its own id"
    );
    pipe.stop().await;
}

// ───────────────────────────── validation ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_status_and_the_field() {
    let (shop, _dir, _bodies, pipe) = setup(5).await;
    let http = &pipe.http;
    let receiver = Receiver::start().await.unwrap();
    let url = format!("{}/hooks/app", receiver.url);
    add_endpoint(http, "app", &receiver).await;

    // Not JSON: 400 bad_json, wherever a body is read.
    for (method, path) in [
        (Method::POST, "/api/v1/endpoints"),
        (Method::PATCH, "/api/v1/endpoints/app"),
        (Method::POST, "/api/v1/endpoints/app/rotate-secret"),
        (Method::POST, "/api/v1/events/evt_x/replay"),
    ] {
        for text in ["{not json", "nul", "{,}", "{\""] {
            http.authed(method.clone(), path, Some(text))
                .await
                .error(400, "bad_json");
        }
    }

    // The wrong shape: 422 naming the field.
    let unknown = http
        .post(
            "/api/v1/endpoints",
            json!({"name": "x", "url": url, "colour": "red"}),
        )
        .await
        .invalid("colour");
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{unknown}"
    );
    assert!(
        unknown["error"]["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{unknown}"
    );
    let missing = http
        .post("/api/v1/endpoints", json!({"name": "x"}))
        .await
        .error(422, "invalid");
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("url"),
        "{missing}"
    );
    http.post("/api/v1/endpoints", json!({"name": "x", "url": 7}))
        .await
        .invalid("url");
    http.post(
        "/api/v1/endpoints",
        json!({"name": "x", "url": url, "active": "yes"}),
    )
    .await
    .invalid("active");
    let unknown = http
        .patch("/api/v1/endpoints/app", json!({"colour": "red"}))
        .await
        .invalid("colour");
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    let unknown = http
        .post(
            "/api/v1/endpoints/app/rotate-secret",
            json!({"overlap": "1h", "now": true}),
        )
        .await
        .invalid("now");
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("now")
    );

    // Validated as the config file is.
    http.post("/api/v1/endpoints", json!({"name": "x", "url": "ftp://x"}))
        .await
        .invalid("url");
    http.post(
        "/api/v1/endpoints",
        json!({"name": "x", "url": "not a url"}),
    )
    .await
    .invalid("url");
    http.post(
        "/api/v1/endpoints",
        json!({"name": "x", "url": url, "secret": "too-short"}),
    )
    .await
    .invalid("secret");
    http.post(
        "/api/v1/endpoints",
        json!({"name": "x", "url": url, "signing": "standard-webhooks", "secret": "not-whsec"}),
    )
    .await
    .invalid("secret");
    http.post(
        "/api/v1/endpoints",
        json!({"name": "x", "url": url, "signing": "rsa"}),
    )
    .await
    .invalid("signing");
    http.post(
        "/api/v1/endpoints",
        json!({"name": "x", "url": url, "resources": ["nowhere.nothing"]}),
    )
    .await
    .invalid("resources[0]");
    http.post(
        "/api/v1/endpoints",
        json!({"name": "x", "url": url, "actions": ["exploded"]}),
    )
    .await
    .invalid("actions");
    http.post(
        "/api/v1/endpoints",
        json!({"name": "x", "url": url, "timeout": "soon"}),
    )
    .await
    .invalid("timeout");
    http.patch("/api/v1/endpoints/app", json!({"url": "ftp://x"}))
        .await
        .invalid("url");
    http.patch("/api/v1/endpoints/app", json!({"secret": "short"}))
        .await
        .invalid("secret");
    http.post(
        "/api/v1/endpoints/app/rotate-secret",
        json!({"overlap": "forever"}),
    )
    .await
    .invalid("overlap");
    // None of that changed anything.
    let list = http.get("/api/v1/endpoints").await.expect(200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["data"][0]["url"], url);

    // A name is taken once.
    http.post("/api/v1/endpoints", json!({"name": "app", "url": url}))
        .await
        .error(409, "conflict");

    // Query parameters.
    http.get("/api/v1/events?limit=0").await.invalid("limit");
    http.get("/api/v1/events?limit=1001").await.invalid("limit");
    http.get("/api/v1/deliveries?limit=0")
        .await
        .invalid("limit");
    let since = http
        .get("/api/v1/events?since=yesterday")
        .await
        .invalid("since");
    assert!(since["error"]["problems"][0]["hint"].is_string(), "{since}");
    http.get("/api/v1/events?until=2026-13-01")
        .await
        .invalid("until");
    http.get("/api/v1/events?action=exploded")
        .await
        .invalid("action");
    http.get("/api/v1/deliveries?status=lost")
        .await
        .invalid("status");
    http.get("/api/v1/events?limit=many")
        .await
        .invalid("(query)");
    http.get("/api/v1/events?cursor=abc")
        .await
        .invalid("(query)");
    http.get("/api/v1/events?colour=red")
        .await
        .invalid("(query)");
    http.get("/api/v1/deliveries?colour=red")
        .await
        .invalid("(query)");

    // Unknown things: 404 from the handler, not from the router's fallback.
    let not_found = [
        (Method::GET, "/api/v1/endpoints/nope", None),
        (Method::PATCH, "/api/v1/endpoints/nope", Some("{}")),
        (Method::DELETE, "/api/v1/endpoints/nope", None),
        (Method::POST, "/api/v1/endpoints/nope/pause", None),
        (Method::POST, "/api/v1/endpoints/nope/resume", None),
        (Method::POST, "/api/v1/endpoints/nope/rotate-secret", None),
        (Method::POST, "/api/v1/endpoints/nope/backfill", None),
        (Method::GET, "/api/v1/events/evt_nope", None),
        (Method::GET, "/api/v1/events/evt_nope/deliveries", None),
        (Method::POST, "/api/v1/events/evt_nope/replay", None),
        (Method::GET, "/api/v1/deliveries/999999/attempts", None),
        (Method::GET, "/api/v1/deliveries/abc/attempts", None),
        (Method::POST, "/api/v1/deliveries/999999/retry", None),
        (Method::POST, "/api/v1/deliveries/abc/retry", None),
        (
            Method::POST,
            "/api/v1/sources/nope/resources/orders/poll",
            None,
        ),
        (
            Method::POST,
            "/api/v1/sources/shop/resources/nope/poll",
            None,
        ),
        (
            Method::POST,
            "/api/v1/sources/nope/resources/orders/accept-deletes",
            None,
        ),
        // A resource with no held-back deletes.
        (
            Method::POST,
            "/api/v1/sources/shop/resources/orders/accept-deletes",
            None,
        ),
    ];
    for (method, path, body) in not_found {
        let r = http.authed(method.clone(), path, body).await;
        let body = r.error(404, "not_found");
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no such route"),
            "{method} {path}: {body}"
        );
    }
    // A replay to an unknown endpoint of a real event.
    let shop_event = {
        // Make one event to replay.
        shop.churn();
        let report = http.poll().await;
        report["events"][0]["id"].as_str().unwrap().to_owned()
    };
    http.post(
        &format!("/api/v1/events/{shop_event}/replay"),
        json!({"endpoint": "nope"}),
    )
    .await
    .error(404, "not_found");
    // And the fallback itself.
    let r = http.get("/api/v1/nothing-here").await;
    let body = r.error(404, "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no such route")
    );
    pipe.stop().await;
}

/// "400 if it is not JSON, 422 naming the field if it is the wrong shape" (src/api.rs `body`):
/// a body that breaks off after a value of the wrong type, or has text after the object, is not
/// JSON either; and such a body must not change anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_400_even_after_a_wrong_type_or_with_trailing_text() {
    let (_shop, _dir, _bodies, pipe) = setup(5).await;
    let http = &pipe.http;
    let receiver = Receiver::start().await.unwrap();
    add_endpoint(http, "app", &receiver).await;
    let mut wrong = Vec::new();
    for (method, path, text) in [
        (Method::POST, "/api/v1/endpoints", r#"{"name": 5,"#),
        (Method::POST, "/api/v1/endpoints", "[1, 2"),
        (
            Method::POST,
            "/api/v1/endpoints",
            r#"{"name": "x", "url": 7 oops"#,
        ),
        (
            Method::PATCH,
            "/api/v1/endpoints/app",
            r#"{"active": false} trailing"#,
        ),
        (
            Method::PATCH,
            "/api/v1/endpoints/app",
            r#"{"active": false}{"#,
        ),
    ] {
        let r = http.authed(method.clone(), path, Some(text)).await;
        if r.status != StatusCode::BAD_REQUEST {
            wrong.push(format!(
                "{method} {path} {text:?} → {} {}",
                r.status, r.text
            ));
        }
    }
    let app = http.get("/api/v1/endpoints/app").await.expect(200);
    assert!(
        wrong.is_empty() && app["active"] == true,
        "not answered 400 bad_json:\n{}\nthe endpoint is now: {app}",
        wrong.join("\n")
    );
    pipe.stop().await;
}

// ───────────────────────────── the OpenAPI document ─────────────────────────────

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn openapi() -> Value {
    serde_json::from_str(OPENAPI).expect("src/openapi.json is JSON")
}

/// A route's path with dummy values for its parameters.
fn fill_params(path: &str) -> String {
    path.replace("{source}", "nosuchsource")
        .replace("{resource}", "nosuchresource")
        .replace("{name}", "nosuchendpoint")
        .replace("{id}", "123456789")
}

/// Follows a local `$ref`.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {reference}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"));
            resolve(doc, target)
        }
        None => value,
    }
}

/// Checks `value` against an OpenAPI 3.0 schema, strictly: objects with `properties` may have no
/// other keys (so an undocumented response key fails), `nullable` is required for null.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        let parts: Vec<&Value> = all.iter().map(|p| resolve(doc, p)).collect();
        if !parts.iter().all(|p| p.get("properties").is_some()) {
            // A wrapped scalar such as `allOf: [Signing]`: each part must hold.
            return parts
                .iter()
                .try_for_each(|part| conforms(doc, part, value, at));
        }
        // Objects: merged, so that the union of their keys is the closed set.
        let mut properties = serde_json::Map::new();
        let mut required = Vec::new();
        for part in parts {
            properties.extend(part["properties"].as_object().unwrap().clone());
            if let Some(r) = part.get("required").and_then(Value::as_array) {
                required.extend(r.clone());
            }
        }
        let merged = json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "nullable": schema.get("nullable") == Some(&Value::Bool(true)),
        });
        return conforms(doc, &merged, value, at);
    }
    if value.is_null() {
        let untyped = schema.get("type").is_none() && schema.get("properties").is_none();
        return if schema["nullable"] == true || (untyped && schema.get("enum").is_none()) {
            Ok(())
        } else {
            Err(format!("{at}: null where the schema is not nullable"))
        };
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {options:?}"));
    }
    let kind = schema.get("type").and_then(Value::as_str);
    let ok = match kind {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => return Err(format!("{at}: unknown schema type {other}")),
    };
    if !ok {
        return Err(format!(
            "{at}: {value} is not of type {}",
            kind.unwrap_or("?")
        ));
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && let Some(text) = value.as_str()
        && chrono::DateTime::parse_from_rfc3339(text).is_err()
    {
        return Err(format!("{at}: {text} is not an RFC 3339 date-time"));
    }
    if let Some(items) = value.as_array()
        && let Some(schema) = schema.get("items")
    {
        for (i, item) in items.iter().enumerate() {
            conforms(doc, schema, item, &format!("{at}[{i}]"))?;
        }
    }
    if let Some(object) = value.as_object() {
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = key.as_str().unwrap();
            if !object.contains_key(key) {
                return Err(format!("{at}: required key `{key}` is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, item) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(s) => conforms(doc, s, item, &format!("{at}.{key}"))?,
                None if properties.is_some() => {
                    return Err(format!("{at}: key `{key}` is not in the schema"));
                }
                None => {
                    if let Some(extra) = schema.get("additionalProperties")
                        && extra.is_object()
                    {
                        conforms(doc, extra, item, &format!("{at}.{key}"))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Checks a real response against what the document says `method path` answers with its status.
fn documented(doc: &Value, method: &str, path: &str, response: &Resp) {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    let status = response.status.as_u16().to_string();
    let documented = operation["responses"].get(&status).unwrap_or_else(|| {
        panic!(
            "{method} {path} answered {status}, which is not documented: {}",
            response.text
        )
    });
    let documented = resolve(doc, documented);
    let content = documented.get("content").and_then(Value::as_object);
    match content {
        None => assert!(
            response.text.is_empty(),
            "{method} {path} {status}: documented without a body, got {}",
            response.text
        ),
        Some(content) if content.contains_key("application/json") => {
            let schema = &content["application/json"]["schema"];
            let body = response.json();
            if let Err(e) = conforms(doc, schema, &body, "body") {
                panic!("{method} {path} {status} does not match its schema: {e}\n{body}");
            }
        }
        Some(content) => {
            let ct = response
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert!(
                content.keys().any(|k| ct.starts_with(k.as_str())),
                "{method} {path}: content-type {ct} is not documented"
            );
        }
    }
}

#[test]
fn the_document_lists_exactly_the_routes_with_their_parameters_and_security() {
    let doc = openapi();
    assert_eq!(doc["openapi"], "3.0.3");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            documented.insert((method.clone(), path.clone()));

            // Every `{param}` of the path is declared as a required path parameter, and nothing else.
            let in_path: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_owned)
                .collect();
            let declared: BTreeSet<String> = item
                .get("parameters")
                .into_iter()
                .chain(operation.get("parameters"))
                .flat_map(|list| list.as_array().unwrap())
                .map(|p| resolve(&doc, p))
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{method} {path}: {p}");
                    p["name"].as_str().unwrap().to_owned()
                })
                .collect();
            assert_eq!(declared, in_path, "{method} {path}");

            // The bearer scheme on /api/v1, except the document itself.
            let protected = path.starts_with("/api/v1/") && path != "/api/v1/openapi.json";
            let security = operation
                .get("security")
                .or_else(|| doc.get("security"))
                .cloned()
                .unwrap_or(json!([]));
            if protected {
                assert_eq!(security, json!([{"bearer": []}]), "{method} {path}");
                assert!(
                    operation["responses"].get("401").is_some(),
                    "{method} {path} does not document 401"
                );
            } else {
                assert_eq!(security, json!([]), "{method} {path}");
            }
            assert!(
                operation["operationId"].is_string(),
                "{method} {path} has no operationId"
            );
            for (status, response) in operation["responses"].as_object().unwrap() {
                let response = resolve(&doc, response);
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {status}"
                );
                if let Ok(code) = status.parse::<u16>()
                    && code >= 400
                    && path != "/readyz"
                {
                    let schema = &response["content"]["application/json"]["schema"];
                    assert_eq!(
                        resolve(&doc, schema),
                        resolve(&doc, &json!({"$ref": "#/components/schemas/Error"})),
                        "{method} {path} {status} is not the Error shape"
                    );
                }
            }
        }
    }
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(routes.len(), ROUTES.len(), "ROUTES has a duplicate");
    let missing: Vec<_> = routes.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routes).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "in ROUTES but not documented: {missing:?}; documented but not in ROUTES: {extra:?}"
    );
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (&bearer["type"], &bearer["scheme"]),
        (&json!("http"), &json!("bearer"))
    );

    // Every $ref resolves.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(list) => list.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        assert!(
            r.strip_prefix('#').and_then(|p| doc.pointer(p)).is_some(),
            "dangling $ref {r}"
        );
    }

    // The request bodies and error shape of src/api.rs, by key.
    let keys = |name: &str| -> BTreeSet<String> {
        doc["components"]["schemas"][name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name}"))
            .keys()
            .cloned()
            .collect()
    };
    let set = |list: &[&str]| {
        list.iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        keys("NewEndpoint"),
        set(&[
            "name",
            "url",
            "secret",
            "signing",
            "resources",
            "actions",
            "active",
            "headers",
            "timeout",
            "format",
            "backfill"
        ])
    );
    assert_eq!(
        keys("EndpointChange"),
        set(&[
            "url",
            "resources",
            "actions",
            "signing",
            "secret",
            "active",
            "format"
        ])
    );
    assert_eq!(keys("Rotation"), set(&["overlap"]));
    assert_eq!(keys("ReplayBody"), set(&["endpoint"]));
    assert_eq!(keys("Event"), set(&EVENT_KEYS));
    let query = |path: &str| -> BTreeSet<String> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| resolve(&doc, p))
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        query("/api/v1/events"),
        set(&[
            "source",
            "resource",
            "action",
            "resource_id",
            "since",
            "until",
            "cursor",
            "limit"
        ])
    );
    assert_eq!(
        query("/api/v1/deliveries"),
        set(&[
            "endpoint", "status", "event_id", "code", "since", "until", "limit"
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_every_documented_route_as_documented() {
    let (shop, _dir, _bodies, pipe) = setup(20).await;
    let http = &pipe.http;
    let doc = openapi();

    // With dummy parameters: never 405, never the fallback's 404; the status is documented.
    for (method, path) in ROUTES {
        let url = fill_params(path);
        let m: Method = method.to_uppercase().parse().unwrap();
        let body = matches!(*method, "post" | "patch").then_some("{}");
        let r = http.authed(m, &url, body).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if r.status == StatusCode::NOT_FOUND {
            let body = r.json();
            assert!(
                !body["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("no such route"),
                "{method} {path}: the router does not serve it: {body}"
            );
        }
        documented(&doc, method, path, &r);
    }

    // With real data: every response matches its documented schema, keys included.
    let receiver = Receiver::start().await.unwrap();
    receiver.answer(500);
    let created = http
        .post(
            "/api/v1/endpoints",
            json!({"name": "app", "url": format!("{}/hooks/app", receiver.url), "signing": "standard-webhooks", "headers": {"X-A": "b"}, "timeout": "2s"}),
        )
        .await;
    documented(&doc, "post", "/api/v1/endpoints", &created);
    let created = http
        .post(
            "/api/v1/endpoints",
            json!({"name": "late", "url": format!("{}/hooks/late", receiver.url), "backfill": true}),
        )
        .await;
    documented(&doc, "post", "/api/v1/endpoints", &created);
    let conflict = http
        .post(
            "/api/v1/endpoints",
            json!({"name": "late", "url": format!("{}/hooks/late", receiver.url)}),
        )
        .await;
    documented(&doc, "post", "/api/v1/endpoints", &conflict);
    let invalid = http
        .post("/api/v1/endpoints", json!({"name": "x", "url": "ftp://x"}))
        .await;
    documented(&doc, "post", "/api/v1/endpoints", &invalid);
    let bad = http
        .authed(Method::POST, "/api/v1/endpoints", Some("{"))
        .await;
    documented(&doc, "post", "/api/v1/endpoints", &bad);

    let first = http.churn_and_poll(&shop).await;
    let event_id = first["id"].as_str().unwrap().to_owned();
    let failed = http.delivery_with_status(&event_id, "app", "failed").await;
    let delivery_id = failed["id"].as_i64().unwrap();
    receiver.answer(204);
    let pending = http.churn_and_poll(&shop).await;

    let real = |path: &str| {
        path.replace("{source}", "shop")
            .replace("{resource}", "orders")
            .replace("{name}", "app")
    };
    let checks: Vec<(&str, &str, String)> = vec![
        ("get", "/livez", "/livez".into()),
        ("get", "/healthz", "/healthz".into()),
        ("get", "/readyz", "/readyz".into()),
        ("get", "/metrics", "/metrics".into()),
        ("get", "/api/v1/openapi.json", "/api/v1/openapi.json".into()),
        ("get", "/api/v1/sources", "/api/v1/sources".into()),
        (
            "post",
            "/api/v1/sources/{source}/resources/{resource}/poll",
            real("/api/v1/sources/{source}/resources/{resource}/poll"),
        ),
        ("get", "/api/v1/endpoints", "/api/v1/endpoints".into()),
        (
            "get",
            "/api/v1/endpoints/{name}",
            real("/api/v1/endpoints/{name}"),
        ),
        (
            "post",
            "/api/v1/endpoints/{name}/pause",
            real("/api/v1/endpoints/{name}/pause"),
        ),
        (
            "post",
            "/api/v1/endpoints/{name}/resume",
            real("/api/v1/endpoints/{name}/resume"),
        ),
        (
            "post",
            "/api/v1/endpoints/{name}/rotate-secret",
            real("/api/v1/endpoints/{name}/rotate-secret"),
        ),
        ("get", "/api/v1/events", "/api/v1/events?limit=1".into()),
        ("get", "/api/v1/events", "/api/v1/events".into()),
        ("get", "/api/v1/events", "/api/v1/events?limit=0".into()),
        (
            "get",
            "/api/v1/events/{id}",
            format!("/api/v1/events/{event_id}"),
        ),
        (
            "get",
            "/api/v1/events/{id}/deliveries",
            format!("/api/v1/events/{event_id}/deliveries"),
        ),
        ("get", "/api/v1/deliveries", "/api/v1/deliveries".into()),
        (
            "get",
            "/api/v1/deliveries/{id}/attempts",
            format!("/api/v1/deliveries/{delivery_id}/attempts"),
        ),
        (
            "post",
            "/api/v1/deliveries/{id}/retry",
            format!("/api/v1/deliveries/{delivery_id}/retry"),
        ),
        (
            "post",
            "/api/v1/events/{id}/replay",
            format!("/api/v1/events/{}/replay", pending["id"].as_str().unwrap()),
        ),
        (
            "post",
            "/api/v1/endpoints/{name}/backfill",
            real("/api/v1/endpoints/{name}/backfill"),
        ),
        (
            "patch",
            "/api/v1/endpoints/{name}",
            real("/api/v1/endpoints/{name}"),
        ),
        (
            "delete",
            "/api/v1/endpoints/{name}",
            "/api/v1/endpoints/late".into(),
        ),
    ];
    for (method, template, url) in checks {
        let m: Method = method.to_uppercase().parse().unwrap();
        let body = (method == "patch").then_some(r#"{"actions": ["created"]}"#);
        let r = http.authed(m, &url, body).await;
        assert!(r.status.as_u16() < 500, "{method} {url}: {}", r.text);
        documented(&doc, method, template, &r);
    }
    // The delivery that failed has attempts with their statuses; its retried form is listed.
    let delivered = http
        .delivery_with_status(&event_id, "app", "delivered")
        .await;
    assert_eq!(delivered["id"], delivery_id);
    let listed = http.get("/api/v1/deliveries").await;
    documented(&doc, "get", "/api/v1/deliveries", &listed);
    let with_log = http
        .get(&format!("/api/v1/events/{event_id}/deliveries"))
        .await;
    documented(&doc, "get", "/api/v1/events/{id}/deliveries", &with_log);
    assert!(
        with_log.json()["data"][0]["attempt_log"]
            .as_array()
            .is_some_and(|log| log.len() == 3),
        "{}",
        with_log.text
    );
    let unauthorized = http.send(Method::GET, "/api/v1/events", None, None).await;
    documented(&doc, "get", "/api/v1/events", &unauthorized);
    pipe.stop().await;
}

// ───────────────────────────── metrics ─────────────────────────────

/// One sample line: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the sample lines of a Prometheus text exposition.
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = line[..name_end].to_owned();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices();
            let mut key = String::new();
            let mut end = inner.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '}' => {
                        end = i + 1;
                        break;
                    }
                    ',' | ' ' => {}
                    '=' => {
                        // A quoted value with `\` escapes.
                        let mut value = String::new();
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        while let Some((_, c)) = chars.next() {
                            match c {
                                '\\' => {
                                    if let Some((_, c)) = chars.next() {
                                        value.push(match c {
                                            'n' => '\n',
                                            other => other,
                                        });
                                    }
                                }
                                '"' => break,
                                other => value.push(other),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    other => key.push(other),
                }
            }
            rest = &inner[end..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        out.push((name, labels, value));
    }
    out
}

/// The total of `pollhook_polls_total` for shop.orders, over outcomes.
fn polls_of_shop_orders(text: &str) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(name, labels, _)| {
            name == "pollhook_polls_total"
                && labels.get("source").map(String::as_str) == Some("shop")
                && labels.get("resource").map(String::as_str) == Some("orders")
        })
        .map(|(_, _, v)| v)
        .sum()
}

fn on_path(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_prometheus_text_and_counters_move() {
    let (shop, _dir, _bodies, pipe) = setup(20).await;
    let http = &pipe.http;
    let receiver = Receiver::start().await.unwrap();
    add_endpoint(http, "app", &receiver).await;
    let event = http.churn_and_poll(&shop).await;
    http.delivery_with_status(event["id"].as_str().unwrap(), "app", "delivered")
        .await;

    let scrape = async move || {
        let r = http.send(Method::GET, "/metrics", None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        r.text
    };
    let text = scrape().await;
    for (name, labels, _) in samples(&text) {
        for value in labels.values() {
            assert!(
                !value.starts_with("evt_"),
                "{name} is labelled by an event id: {labels:?}"
            );
        }
    }

    // Every sample's metric has a TYPE line (the basics, with or without promtool).
    let mut typed = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                "two TYPE lines for {name}"
            );
        }
    }
    for (name, _, _) in samples(&text) {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                matches!(
                    typed.get(base).map(String::as_str),
                    Some("histogram" | "summary")
                )
                .then_some(base)
            })
            .unwrap_or(&name);
        assert!(typed.contains_key(base), "sample {name} has no # TYPE line");
        assert!(
            base.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{name}"
        );
    }
    if typed.get("pollhook_polls_total").map(String::as_str) != Some("counter") {
        panic!("pollhook_polls_total is not a counter:\n{text}");
    }

    match on_path("promtool") {
        Some(promtool) => {
            use std::io::Write;
            let mut child = std::process::Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "promtool check metrics failed:\n{}{}\n---\n{text}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        None => eprintln!(
            "note: promtool is not on PATH; checked the text format basics only (CI installs it)"
        ),
    }

    // Counters move.
    let before = polls_of_shop_orders(&text);
    assert!(before >= 2.0, "the first poll and one poll-now: {before}");
    http.poll().await;
    let after = polls_of_shop_orders(&scrape().await);
    assert!(
        after > before,
        "pollhook_polls_total went from {before} to {after}"
    );

    // What a poll and a delivery record.
    for name in [
        "pollhook_polls_total",
        "pollhook_delivery_attempts_total",
        "pollhook_outbox_pending",
        "pollhook_poll_duration_seconds",
        "pollhook_endpoint_active",
    ] {
        assert!(
            samples(&text).iter().any(|(n, _, _)| n.starts_with(name)),
            "no {name} sample in:\n{text}"
        );
    }
    let attempts = samples(&text)
        .into_iter()
        .filter(|(n, l, _)| {
            n == "pollhook_delivery_attempts_total"
                && l.get("endpoint").map(String::as_str) == Some("app")
                && l.get("outcome").map(String::as_str) == Some("delivered")
        })
        .map(|(_, _, v)| v)
        .sum::<f64>();
    assert!(attempts >= 1.0, "{text}");
    pipe.stop().await;
}
