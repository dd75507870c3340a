//! What a new user tripped on (the new-user issue): one test per behaviour that changed. Real
//! servers on loopback only; every wait bounded by `eventually`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use pollhook::poll::Mode;

use crate::support::{
    ConfigBuilder, Endpoint, FakeApi, Harness, Hook, PATIENCE, Pipeline, Resource, Source, Style,
    eventually, parse, start,
};

/// A jwt key: at least 32 bytes (HS256).
const JWT_KEY: &str = "a-jwt-key-that-is-at-least-32-bytes-long";

/// A REST source `name` at `url` with `resource`, and nothing else.
fn rest(name: &str, url: &str, resource: Resource) -> ConfigBuilder {
    ConfigBuilder::without_storage().source(Source::new(name, url).resource(resource))
}

/// The REST source `shop` at `url` with `orders` (see [`orders`]).
fn shop(url: &str, orders: Resource) -> ConfigBuilder {
    rest("shop", url, orders)
}

/// `orders` at `/orders`, polled every 200 ms without jitter.
fn orders() -> Resource {
    Resource::new("orders", "200ms").set("path", "/orders")
}

/// [`orders`] whose first poll emits every item as `created`.
fn emitting() -> Resource {
    orders().set("initial", "emit")
}

// ───────────────────────── 7. changes list only what counts ─────────────────────────

#[tokio::test]
async fn changes_leave_out_ignored_fields_and_previous_is_the_last_data() {
    let api = FakeApi::start(Style::None).await;
    api.set_raw_items(&[r#"{"id":1,"status":"open","updatedAt":"t1"}"#]);
    let h = Harness::new(&shop(&api.url, orders().set("ignore", vec!["updatedAt"])).toml());
    h.poll().await.unwrap();

    api.set_raw_items(&[r#"{"id":1,"status":"open","updatedAt":"t2"}"#]);
    let only_ignored = h.poll().await.unwrap();
    assert!(only_ignored.events.is_empty(), "{:?}", only_ignored.events);

    api.set_raw_items(&[r#"{"id":1,"status":"shipped","updatedAt":"t3"}"#]);
    let report = h.poll().await.unwrap();
    let [event] = &report.events[..] else {
        panic!("one event: {:?}", report.events)
    };
    assert_eq!(
        event.changes,
        json!([{"op": "replace", "path": "/status", "value": "shipped"}]),
        "no `/updatedAt` in changes"
    );
    assert_eq!(
        event.previous.get(),
        r#"{"id":1,"status":"open","updatedAt":"t1"}"#,
        "previous is the data of the last event about the item"
    );
    assert_eq!(
        event.data.value()["updatedAt"],
        "t3",
        "data is the item in full"
    );
}

// ───────────────────────── 13. one form for the event type ─────────────────────────

#[tokio::test]
async fn event_type_names_the_source_and_two_sources_never_collide() {
    let api = FakeApi::start(Style::None).await;
    api.set_items([json!({"id": 1})]);
    let shop_h = Harness::new(&rest("shop", &api.url, emitting()).toml());
    let pg_h = Harness::new(&rest("pg", &api.url, emitting()).toml());
    let shop_event = &shop_h.poll().await.unwrap().events[0];
    let pg_event = &pg_h.poll().await.unwrap().events[0];
    assert_eq!(shop_event.kind, "shop.orders.created");
    assert_eq!(pg_event.kind, "pg.orders.created");
    assert_eq!(
        pg_h.events()[0].kind,
        "pg.orders.created",
        "stored the same"
    );
    let json: Value = serde_json::from_str(&pg_event.to_json()).unwrap();
    assert_eq!(json["type"], "pg.orders.created", "and sent the same");
}

// ───────────────────────── 14. one key-order rule for every event ─────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_jwt_and_backfilled_events_keep_the_api_key_order() {
    const ITEM: &str = r#"{"zeta":1,"id":7,"alpha":{"y":2,"b":3}}"#;
    let api = FakeApi::start(Style::None).await;
    api.set_raw_items(&[ITEM]);
    let hook = Hook::start(|_| 200).await;
    let secret = pollhook::sign::generate_secret(pollhook::sign::Scheme::StandardWebhooks);
    let mut p = Pipeline::start(
        shop(&api.url, emitting())
            .loopback_delivery()
            .endpoint(Endpoint::new(
                "sw",
                &format!("{}/sw", hook.url),
                "standard-webhooks",
                &secret,
            ))
            .endpoint(Endpoint::new(
                "jwt",
                &format!("{}/jwt", hook.url),
                "jwt",
                JWT_KEY,
            )),
    );
    let bodies = |path: &str| -> Option<Vec<String>> {
        let got: Vec<String> = (hook.log().iter())
            .filter(|x| x.request.path == path)
            .map(|x| String::from_utf8_lossy(&x.request.body).into_owned())
            .collect();
        (!got.is_empty()).then_some(got)
    };
    let sw = eventually("the live event at sw", PATIENCE, async || bodies("/sw")).await;
    assert!(sw[0].contains(&format!(r#""data":{ITEM},"#)), "{}", sw[0]);
    assert!(sw[0].ends_with(r#""backfill":false}"#), "{}", sw[0]);

    let jwt = eventually("the live event at jwt", PATIENCE, async || bodies("/jwt")).await;
    let envelope: Value = serde_json::from_str(&jwt[0]).unwrap();
    let token = envelope["data"].as_str().unwrap();
    let claims = URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    let claims = String::from_utf8(claims).unwrap();
    assert!(
        claims.contains(&format!(r#""data":{ITEM},"#)),
        "the JWT's data claim keeps the order too: {claims}"
    );

    // Backfill is an operation of `Admin` now; the running dispatcher notices the queued
    // delivery at its next look at the queue, not by this handle's wake-up.
    let wake = pollhook::deliver::Wake::default();
    let admin = pollhook::admin::Admin::new(&p.store, &p.config, &wake);
    assert_eq!(admin.backfill("sw").await.unwrap(), 1);
    let backfilled = eventually("the backfilled event at sw", PATIENCE, async || {
        let got = bodies("/sw")?;
        (got.len() >= 2).then(|| got[1].clone())
    })
    .await;
    assert!(
        backfilled.contains(&format!(r#""data":{ITEM},"#)),
        "{backfilled}"
    );
    assert!(backfilled.ends_with(r#""backfill":true}"#), "{backfilled}");
    p.stop().await;
}

// ───────────────────────── 5. a crashed process's leases end at start ─────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_run_releases_the_leases_of_a_dead_process() {
    let api = FakeApi::start(Style::None).await;
    api.set_items([json!({"id": 1})]);
    let hook = Hook::start(|_| 200).await;
    let mut p = Pipeline::new(shop(&api.url, emitting()).loopback_delivery().endpoint(
        Endpoint::new("hook", &format!("{}/h", hook.url), "jwt", JWT_KEY),
    ));
    p.store
        .reconcile_endpoints(&p.config.endpoints)
        .await
        .unwrap();
    let source = pollhook::source::build(&p.config.sources[0]).unwrap();
    let resource = &p.config.sources[0].resources[0];
    let report = pollhook::poll::poll(&p.store, "shop", source.as_ref(), resource, Mode::Commit)
        .await
        .unwrap();
    assert_eq!(report.deliveries, 1);
    // A process that claims the delivery for an hour and dies before sending it.
    let id = p.store.endpoint_named("hook").await.unwrap().id;
    let claimed = p.store.claim(id, 10, 3_600_000).await.unwrap();
    assert_eq!(claimed.len(), 1);

    p.run();
    let got = eventually(
        "the leased delivery sent by the next run",
        PATIENCE,
        async || {
            let log = hook.log();
            (!log.is_empty()).then(|| log.len())
        },
    )
    .await;
    assert_eq!(got, 1);
    assert_eq!(
        hook.log()[0].request.header("pollhook-event-id"),
        Some(claimed[0].event_id.as_str()),
        "the same event id"
    );
    p.stop().await;
}

// ───────────────────────── 16. runtime state of config endpoints survives restarts ─────────────────────────

#[tokio::test]
async fn pausing_or_removing_a_config_endpoint_lasts_until_the_file_changes_it() {
    let config = |url: &str| {
        ConfigBuilder::without_storage()
            .loopback_delivery()
            .endpoint(Endpoint::new(
                "paused",
                "http://127.0.0.1:9/p",
                "jwt",
                JWT_KEY,
            ))
            .endpoint(Endpoint::new("removed", url, "jwt", JWT_KEY))
    };
    let p = Pipeline::new(config("http://127.0.0.1:9/r"));
    let store = &p.store;
    let specs = &p.config.endpoints;
    store.reconcile_endpoints(specs).await.unwrap();
    store.set_endpoint_active("paused", false).await.unwrap();
    store.remove_endpoint("removed").await.unwrap();

    // A restart with the same file.
    store.reconcile_endpoints(specs).await.unwrap();
    let list = store.endpoints().await.unwrap();
    let names: Vec<&str> = list.iter().map(|e| e.spec.name.as_str()).collect();
    assert_eq!(names, ["paused"], "the removed one stays removed");
    assert!(!list[0].spec.active, "the paused one stays paused");
    assert_eq!(list[0].origin, "config", "and is marked as the file's");

    // The file's definition of `removed` changes: the file wins again, `paused` is untouched.
    let changed = Pipeline::new(config("http://127.0.0.1:9/r2"));
    store
        .reconcile_endpoints(&changed.config.endpoints)
        .await
        .unwrap();
    let list = store.endpoints().await.unwrap();
    let names: Vec<&str> = list.iter().map(|e| e.spec.name.as_str()).collect();
    assert_eq!(names, ["paused", "removed"]);
    assert!(!list[0].spec.active);
    assert!(list[1].spec.active && list[1].spec.url.ends_with("/r2"));
}

// ───────────────────────── 1. deletes confirmed at the item's own URL ─────────────────────────

/// A page-style API: `GET /orders?page=N&per_page=S` lists `listed`, `GET /orders/{id}` answers
/// 200 for the ids in `exists` and 404 for the rest, and every item request is counted.
#[derive(Clone, Default)]
struct Orders {
    listed: Arc<Mutex<Vec<u64>>>,
    exists: Arc<Mutex<BTreeSet<u64>>>,
    item_requests: Arc<Mutex<Vec<u64>>>,
}

impl Orders {
    async fn start(ids: impl IntoIterator<Item = u64> + Clone) -> (Orders, String) {
        let orders = Orders::default();
        orders.set(ids.clone(), ids);
        let app = Router::new()
            .route("/orders", get(Orders::list))
            .route("/orders/{id}", get(Orders::item))
            .with_state(orders.clone());
        (orders, start(app).await)
    }

    /// What the listing shows and what really exists.
    fn set(&self, listed: impl IntoIterator<Item = u64>, exists: impl IntoIterator<Item = u64>) {
        *self.listed.lock().unwrap() = listed.into_iter().collect();
        *self.exists.lock().unwrap() = exists.into_iter().collect();
    }

    async fn list(
        State(o): State<Orders>,
        Query(q): Query<std::collections::HashMap<String, usize>>,
    ) -> axum::Json<Vec<Value>> {
        let (page, size) = (
            q.get("page").copied().unwrap_or(1),
            q.get("per_page").copied().unwrap_or(2),
        );
        let listed = o.listed.lock().unwrap();
        let start = (page.max(1) - 1) * size;
        let items = listed.iter().skip(start).take(size);
        axum::Json(items.map(|id| json!({"id": id})).collect())
    }

    async fn item(State(o): State<Orders>, Path(id): Path<u64>) -> (StatusCode, axum::Json<Value>) {
        o.item_requests.lock().unwrap().push(id);
        match o.exists.lock().unwrap().contains(&id) {
            true => (StatusCode::OK, axum::Json(json!({"id": id}))),
            false => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": "not found"})),
            ),
        }
    }
}

/// [`orders`] paged `?page=N&per_page=size`.
fn paged_orders(size: i64) -> Resource {
    orders()
        .set("pagination.style", "page")
        .set("pagination.size", size)
}

#[tokio::test]
async fn a_missing_item_is_fetched_alone_404_deletes_now_200_keeps_it() {
    let (api, url) = Orders::start(1..=6).await;
    let h = Harness::new(&shop(&url, paged_orders(2).set("item_path", "/orders/{id}")).toml());
    assert_eq!(
        h.resource.deleted_after, 1,
        "with confirmation, one listing is enough"
    );
    h.poll().await.unwrap();

    // 2 is really gone; 5 is only skipped by shifting pages.
    api.set([1, 3, 4, 6], [1, 3, 4, 5, 6]);
    let report = h.poll().await.unwrap();
    let actions: Vec<(&str, &str)> = (report.events.iter())
        .map(|e| (e.action.as_str(), e.resource_id.as_str()))
        .collect();
    assert_eq!(
        actions,
        [("deleted", "2")],
        "deleted in this very poll, and only 2"
    );
    assert_eq!(h.snapshot_ids(), ["1", "3", "4", "5", "6"], "5 stays");
    let mut asked = api.item_requests.lock().unwrap().clone();
    asked.sort();
    assert_eq!(asked, [2, 5], "only the missing items are fetched alone");

    // Listed again: nothing happens to 5.
    api.set([1, 3, 4, 5, 6], [1, 3, 4, 5, 6]);
    assert!(h.poll().await.unwrap().events.is_empty());
}

#[tokio::test]
async fn without_item_path_page_listings_wait_for_a_second_listing() {
    let (api, url) = Orders::start(1..=4).await;
    let h = Harness::new(&shop(&url, paged_orders(2)).toml());
    assert_eq!(h.resource.deleted_after, 2);
    h.poll().await.unwrap();
    api.set([1, 3, 4], [1, 3, 4]);
    assert!(
        h.poll().await.unwrap().events.is_empty(),
        "one listing is not enough"
    );
    let report = h.poll().await.unwrap();
    assert_eq!(report.events.len(), 1);
    assert_eq!(report.events[0].action, "deleted");
    assert!(api.item_requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn confirmations_are_bounded_per_poll_and_the_rest_wait() {
    let max = pollhook::confirm::MAX_CONFIRMATIONS as u64;
    let total = max + 20;
    let (api, url) = Orders::start(1..=total).await;
    let resource = paged_orders(500)
        .set("item_path", "/orders/{id}")
        .set("max_delete_ratio", 1.0);
    let h = Harness::new(&shop(&url, resource).toml());
    h.poll().await.unwrap();
    api.set([], []);
    // An empty listing deleting everything is what the guard is for; here it is allowed.
    let first = h.poll().await.unwrap();
    assert_eq!(
        first.events.len() as u64,
        max,
        "at most {max} confirmations a poll"
    );
    assert_eq!(api.item_requests.lock().unwrap().len() as u64, max);
    let second = h.poll().await.unwrap();
    assert_eq!(second.events.len(), 20, "the rest in the next poll");
    assert!(h.snapshot_ids().is_empty());
}

#[test]
fn item_path_needs_an_id_placeholder_and_a_rest_resource() {
    let text = shop(
        "http://127.0.0.1:9",
        orders().set("item_path", "/orders/one"),
    )
    .toml();
    let error = parse(&text, &Default::default()).unwrap_err().to_string();
    assert!(
        error.contains("sources[shop].resources[orders].item_path") && error.contains("{id}"),
        "{error}"
    );
}

// ───────────────────────── 2. retention ─────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_settled_events_and_keeps_pending_and_dead_letters_longer() {
    let api = FakeApi::start(Style::None).await;
    api.set_items([json!({"id": 1}), json!({"id": 2})]);
    // Item 1 is delivered, item 2 dead-lettered at its first failure (no retries).
    let hook = Hook::start(|r| match r.header("pollhook-resource-id") {
        Some("1") => 200,
        _ => 500,
    })
    .await;
    let notes = Resource::new("notes", "1h")
        .set("path", "/notes")
        .set("initial", "emit");
    let mut p = Pipeline::start(
        ConfigBuilder::without_storage()
            .source(
                Source::new("shop", &api.url)
                    .resource(emitting())
                    .resource(notes),
            )
            .loopback_delivery()
            .set("delivery.retries", toml::Value::Array(Vec::new()))
            .endpoint(
                Endpoint::default_signing("hook", &format!("{}/h", hook.url), JWT_KEY)
                    .set("resources", vec!["shop.orders"]),
            )
            .endpoint(
                Endpoint::default_signing("later", &format!("{}/later", hook.url), JWT_KEY)
                    .set("resources", vec!["shop.notes"])
                    .set("active", false),
            ),
    );
    assert_eq!(
        p.config.storage.retain,
        std::time::Duration::from_secs(30 * 86_400)
    );
    assert_eq!(
        p.config.storage.retain_failed,
        std::time::Duration::from_secs(90 * 86_400)
    );
    eventually(
        "one delivered and one dead letter at hook",
        PATIENCE,
        async || {
            let rows = p.deliveries("hook");
            let settled = rows.iter().filter(|d| d.status != "pending").count();
            (settled == 2).then_some(())
        },
    )
    .await;
    eventually(
        "the paused endpoint's two deliveries queued",
        PATIENCE,
        async || (p.deliveries("later").len() == 2).then_some(()),
    )
    .await;
    p.stop().await;
    let before = p.store.storage_stats().await.unwrap();
    assert_eq!(before.events, 4);
    assert!(before.bytes > 0 && before.oldest_event_at.is_some());

    // Past `retain`, not past `retain_failed`: only the delivered event goes.
    let later = pollhook::store::now_ms() + 60_000;
    let removed = p.store.prune_events(later, 0, 1).await.unwrap();
    assert_eq!(removed, 1, "a batch holds at most `batch` events");
    assert_eq!(p.store.prune_events(later, 0, 10).await.unwrap(), 0);
    let hook_rows = p.deliveries("hook");
    assert_eq!(hook_rows.len(), 1);
    assert_eq!(hook_rows[0].status, "failed", "the dead letter stays");
    let dead = hook_rows[0].event_id.clone();
    assert_eq!(
        p.store.attempts(&dead).await.unwrap().len(),
        1,
        "with its attempt"
    );

    // A pass with both limits at zero: the dead letter goes too; pending ones never.
    let storage = pollhook::config::StorageConfig {
        retain: std::time::Duration::ZERO,
        retain_failed: std::time::Duration::ZERO,
        ..p.config.storage.clone()
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let removed = pollhook::retention::pass(&p.store, &storage, &cancel)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(p.deliveries("hook").is_empty());
    assert!(
        p.store.attempts(&dead).await.unwrap().is_empty(),
        "attempts go too"
    );
    let left: Vec<String> = p.events().into_iter().map(|e| e.kind).collect();
    assert_eq!(
        left,
        ["shop.notes.created", "shop.notes.created"],
        "pending ones stay"
    );
    assert_eq!(p.store.storage_stats().await.unwrap().events, 2);
}

#[test]
fn retain_is_bounded_and_retain_failed_is_not_shorter() {
    let text = "[storage]\nretain = \"1m\"\n";
    let error = parse(text, &Default::default()).unwrap_err().to_string();
    assert!(error.contains("storage.retain"), "{error}");
    let text = "[storage]\nretain = \"10d\"\nretain_failed = \"2d\"\n";
    let error = parse(text, &Default::default()).unwrap_err().to_string();
    assert!(error.contains("storage.retain_failed"), "{error}");
    let ok = parse("[storage]\nretain = \"100d\"\n", &Default::default()).unwrap();
    assert_eq!(
        ok.storage.retain_failed,
        std::time::Duration::from_secs(100 * 86_400)
    );
}

// ───────────────────────── 4. each endpoint's concurrency grows from low ─────────────────────────

/// A receiver that takes at most `room` requests at once: one more is answered 503 at once,
/// unprocessed (a full listen backlog, in HTTP terms). Taken requests are answered 200 after a
/// short wait. It records the most requests it ever had in flight and each event id it took.
#[derive(Clone, Default)]
struct Narrow {
    room: usize,
    inflight: Arc<Mutex<usize>>,
    peak: Arc<Mutex<usize>>,
    rejected: Arc<Mutex<usize>>,
    taken: Arc<Mutex<Vec<String>>>,
}

impl Narrow {
    async fn start(room: usize) -> (Narrow, String) {
        let narrow = Narrow {
            room,
            ..Narrow::default()
        };
        let app = Router::new()
            .route("/h", axum::routing::post(Narrow::receive))
            .with_state(narrow.clone());
        (narrow, format!("{}/h", start(app).await))
    }

    async fn receive(State(n): State<Narrow>, headers: axum::http::HeaderMap) -> StatusCode {
        let now = {
            let mut inflight = n.inflight.lock().unwrap();
            *inflight += 1;
            *inflight
        };
        {
            let mut peak = n.peak.lock().unwrap();
            *peak = (*peak).max(now);
        }
        let status = if now > n.room {
            *n.rejected.lock().unwrap() += 1;
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let id = headers
                .get("pollhook-event-id")
                .and_then(|v| v.to_str().ok());
            n.taken
                .lock()
                .unwrap()
                .push(id.unwrap_or_default().to_owned());
            StatusCode::OK
        };
        *n.inflight.lock().unwrap() -= 1;
        status
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrow_receiver_gets_few_requests_at_once_and_each_event_once() {
    const EVENTS: usize = 30;
    let api = FakeApi::start(Style::None).await;
    api.set_items((1..=EVENTS).map(|i| json!({"id": i})));
    let (narrow, url) = Narrow::start(2).await;
    let mut p = Pipeline::start(
        shop(&api.url, emitting())
            .loopback_delivery()
            .set("delivery.endpoint_concurrency", 16)
            .set("delivery.retries", vec!["50ms"; 60])
            .endpoint(Endpoint::new("narrow", &url, "jwt", JWT_KEY)),
    );
    eventually(
        "every event taken by the narrow receiver",
        PATIENCE,
        async || (narrow.taken.lock().unwrap().len() >= EVENTS).then_some(()),
    )
    .await;
    p.stop().await;

    let mut taken = narrow.taken.lock().unwrap().clone();
    taken.sort();
    let before = taken.len();
    taken.dedup();
    assert_eq!(before, EVENTS, "nothing taken twice");
    assert_eq!(taken.len(), EVENTS);
    // The limit starts at 2 and grows by one per window of fast answers: 30 answers can take it
    // to 8 at most (2+3+4+5+6+7 = 27), whatever the timing, against 16 at once before.
    let peak = *narrow.peak.lock().unwrap();
    assert!(peak <= 8, "{peak} requests at once");
    assert!(
        p.deliveries("narrow")
            .iter()
            .all(|d| d.status == "delivered")
    );
}

// ───────────────────────── 3. an outbound proxy ─────────────────────────

/// A forward HTTP proxy on `127.0.0.2` (loopback): it records each absolute-form request it gets
/// and forwards it directly.
#[derive(Clone, Default)]
struct ForwardProxy {
    seen: Arc<Mutex<Vec<String>>>,
}

impl ForwardProxy {
    async fn start() -> (ForwardProxy, String) {
        let proxy = ForwardProxy::default();
        let app = Router::new()
            .fallback(ForwardProxy::forward)
            .with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (proxy, url)
    }

    async fn forward(
        State(proxy): State<ForwardProxy>,
        request: axum::extract::Request,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let target = request.uri().to_string();
        proxy.seen.lock().unwrap().push(target.clone());
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut headers = parts.headers.clone();
        headers.remove(axum::http::header::HOST);
        let answer = client
            .request(parts.method, &target)
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let headers = answer.headers().clone();
        let bytes = answer.bytes().await.unwrap();
        let mut response = (status, bytes).into_response();
        *response.headers_mut() = headers;
        response
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn sources_go_through_the_configured_proxy_and_no_proxy_skips_it() {
    let api = FakeApi::start(Style::None).await;
    api.set_items([json!({"id": 1})]);
    let (proxy, proxy_url) = ForwardProxy::start().await;
    let with = || shop(&api.url, emitting()).set("http.proxy", proxy_url.as_str());
    let h = Harness::new(&with().toml());
    assert_eq!(h.poll().await.unwrap().events.len(), 1);
    assert_eq!(proxy.seen(), [format!("{}/orders", api.url)]);

    let direct = Harness::new(&with().set("http.no_proxy", vec!["127.0.0.1"]).toml());
    assert_eq!(direct.poll().await.unwrap().events.len(), 1);
    assert_eq!(proxy.seen().len(), 1, "no_proxy goes direct");

    let endpoints_only = Harness::new(&with().set("http.proxy_for", vec!["endpoints"]).toml());
    endpoints_only.poll().await.unwrap();
    assert_eq!(proxy.seen().len(), 1, "proxy_for leaves sources direct");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_go_through_the_proxy_and_the_policy_judges_the_target_not_the_proxy() {
    let api = FakeApi::start(Style::None).await;
    api.set_items([json!({"id": 1})]);
    let hook = Hook::start(|_| 200).await;
    let (proxy, proxy_url) = ForwardProxy::start().await;
    // 127.0.0.1 (the receiver) is allowed; 127.0.0.2 (the proxy) is not, and need not be.
    let through_proxy = || {
        shop(&api.url, emitting())
            .set("http.proxy", proxy_url.as_str())
            .set("http.proxy_for", vec!["endpoints"])
            .set("delivery.allow_http", true)
    };
    let mut p = Pipeline::start(
        through_proxy()
            .set("delivery.allow_networks", vec!["127.0.0.1/32"])
            .endpoint(Endpoint::new(
                "hook",
                &format!("{}/h", hook.url),
                "jwt",
                JWT_KEY,
            )),
    );
    eventually("the delivery through the proxy", PATIENCE, async || {
        (!hook.log().is_empty()).then_some(())
    })
    .await;
    assert_eq!(proxy.seen(), [format!("{}/h", hook.url)]);
    p.stop().await;

    // A name whose addresses the policy refuses is refused before anything reaches the proxy.
    let port = hook.url.rsplit(':').next().unwrap().to_owned();
    let mut refused = Pipeline::start(
        through_proxy()
            .set("delivery.retries", vec!["1h"])
            .endpoint(Endpoint::new(
                "named",
                &format!("http://localhost:{port}/n"),
                "jwt",
                JWT_KEY,
            )),
    );
    let error = eventually("the attempt refused", PATIENCE, async || {
        (refused.deliveries("named").into_iter())
            .find_map(|d| d.last_error.filter(|_| d.attempts > 0))
    })
    .await;
    assert!(error.contains("refused to connect to localhost"), "{error}");
    assert_eq!(proxy.seen().len(), 1, "nothing more reached the proxy");
    refused.stop().await;
}

#[test]
fn a_bad_proxy_setting_names_its_key() {
    let text =
        "[http]\nproxy = \"proxy:3128\"\nno_proxy = [\"a b\"]\nproxy_for = [\"everything\"]\n";
    let error = parse(text, &Default::default()).unwrap_err().to_string();
    for key in ["http.proxy", "http.no_proxy[0]", "http.proxy_for[0]"] {
        assert!(error.contains(key), "{key}: {error}");
    }
}

// ───────────────────────── 20. PostgREST-style range pagination ─────────────────────────

/// PostgREST's paging: `Range-Unit: items` and `Range: 0-99` in; `206` with
/// `Content-Range: 0-99/250` out for part of the listing, `200` for all of it.
async fn postgrest(total: usize) -> (Arc<Mutex<Vec<String>>>, String) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/orders",
        get(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
                let log = log.clone();
                async move {
                    use axum::response::IntoResponse;
                    let header = |name| {
                        (headers.get(name).and_then(|v| v.to_str().ok()))
                            .unwrap_or_default()
                            .to_owned()
                    };
                    log.lock().unwrap().push(format!(
                        "{uri} {} {}",
                        header("range-unit"),
                        header("range")
                    ));
                    let (from, to) = header("range")
                        .split_once('-')
                        .map(|(a, b)| (a.parse().unwrap_or(0), b.parse().unwrap_or(usize::MAX)))
                        .unwrap_or((0, usize::MAX));
                    let to = to.min(total.saturating_sub(1));
                    let items: Vec<Value> = (from..=to).map(|i| json!({"id": i + 1})).collect();
                    let status = match from == 0 && to + 1 >= total {
                        true => StatusCode::OK,
                        false => StatusCode::PARTIAL_CONTENT,
                    };
                    let range = [("content-range", format!("{from}-{to}/{total}"))];
                    (status, range, axum::Json(items)).into_response()
                }
            },
        ),
    );
    (seen, start(app).await)
}

#[tokio::test]
async fn range_pagination_walks_a_postgrest_listing_by_headers() {
    let (seen, url) = postgrest(250).await;
    let ranged = emitting()
        .set("pagination.style", "range")
        .set("pagination.size", 100);
    let h = Harness::new(&shop(&url, ranged).toml());
    assert_eq!(h.resource.deleted_after, 2, "ranges shift like pages");
    let report = h.poll().await.unwrap();
    assert_eq!((report.pages, report.listed), (3, 250));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "/orders items 0-99",
            "/orders items 100-199",
            "/orders items 200-299"
        ],
        "the range travels in headers, never in the URL"
    );

    let (seen, url) = postgrest(40).await;
    let h = Harness::new(&shop(&url, orders().set("pagination.style", "range")).toml());
    assert_eq!(
        h.poll().await.unwrap().listed,
        40,
        "a 200 is the whole listing"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}
