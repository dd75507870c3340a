//! One poll of one resource against the fake API: pages, auth, baseline, change detection, the
//! failure and mass-delete guards, restarts and the exec adapter (DESIGN.md §3–5).

use pollhook::diff::Held;
use pollhook::poll::PollError;
use pollhook::source::SourceError;
use serde_json::{Value, json};

use crate::support::{FakeApi, Harness, RequiredAuth, Style, orders, sorted_ids, stable};

/// The `pagination = …` line (and `items`, where the style wraps the list) for a style.
fn paging(style: Style) -> &'static str {
    match style {
        Style::None => r#"pagination = { style = "none" }"#,
        Style::LinkHeader => r#"pagination = { style = "link-header" }"#,
        Style::Page => {
            r#"pagination = { style = "page", page_param = "page", size_param = "per_page", size = 3, first = 1 }"#
        }
        Style::Offset => {
            r#"pagination = { style = "offset", offset_param = "offset", limit_param = "limit", size = 3 }"#
        }
        Style::Cursor => {
            "items = \"$.data\"\n    pagination = { style = \"cursor\", cursor_param = \"cursor\", next_cursor = \"$.meta.next_cursor\" }"
        }
        Style::NextUrl => {
            "items = \"$.data\"\n    pagination = { style = \"next-url\", next_url = \"$.links.next\" }"
        }
    }
}

/// A `shop` source with one `orders` resource at `/orders` on `api`, paged as `api` serves.
/// `source_extra` goes into the source table, `resource_extra` into the resource table.
fn shop(api: &FakeApi, source_extra: &str, resource_extra: &str) -> Harness {
    let style = api.state().style;
    Harness::new(&format!(
        r#"
[[sources]]
name = "shop"
base_url = "{url}"
retries = 1
{source_extra}

  [[sources.resources]]
  name = "orders"
  path = "/orders"
  every = "30s"
  {paging}
  {resource_extra}
"#,
        url = api.url,
        paging = paging(style),
    ))
}

fn ids_of(events: &[pollhook::event::Event]) -> Vec<String> {
    events.iter().map(|e| e.resource_id.clone()).collect()
}

fn actions_of(events: &[pollhook::event::Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{} {}", e.action, e.resource_id))
        .collect()
}

fn fetch_error(result: Result<pollhook::poll::PollReport, PollError>) -> SourceError {
    match result {
        Err(PollError::Fetch(e)) => e,
        Err(other) => panic!("expected a fetch error, got {other}"),
        Ok(report) => panic!("expected a fetch error, got a report: {report:?}"),
    }
}

// ───────────────────────────── 1. pagination ─────────────────────────────

/// Polls 7 items at 3 a page with `initial = "emit"`; checks ids, pages and the URLs asked.
async fn full_listing(style: Style, pages: u32, paths: &[&str]) {
    let api = FakeApi::start(style).await;
    api.set_items(orders(7));
    let h = shop(&api, "", r#"initial = "emit""#);

    let report = h.poll().await.unwrap();

    assert_eq!(report.pages, pages);
    assert_eq!(report.listed, 7);
    let ids: Vec<String> = (1..=7).map(|i| i.to_string()).collect();
    assert_eq!(ids_of(&report.events), ids);
    assert!(report.events.iter().all(|e| e.action == "created"));
    assert_eq!(h.snapshot_ids(), ids);
    assert_eq!(api.paths(), paths);
}

#[tokio::test]
async fn pagination_none_is_one_request() {
    full_listing(Style::None, 1, &["/orders"]).await;
}

#[tokio::test]
async fn pagination_link_header_follows_rel_next() {
    full_listing(
        Style::LinkHeader,
        3,
        &["/orders", "/orders?page=2", "/orders?page=3"],
    )
    .await;
}

#[tokio::test]
async fn pagination_page_stops_at_the_empty_page() {
    full_listing(
        Style::Page,
        4,
        &[
            "/orders?page=1&per_page=3",
            "/orders?page=2&per_page=3",
            "/orders?page=3&per_page=3",
            "/orders?page=4&per_page=3",
        ],
    )
    .await;
}

#[tokio::test]
async fn pagination_page_keeps_the_static_query() {
    let api = FakeApi::start(Style::Page).await;
    api.set_items(orders(4));
    let h = shop(&api, "", r#"query = { status = "any" }"#);
    let report = h.poll().await.unwrap();
    assert_eq!((report.pages, report.listed), (3, 4));
    assert_eq!(
        api.paths(),
        [
            "/orders?status=any&page=1&per_page=3",
            "/orders?status=any&page=2&per_page=3",
            "/orders?status=any&page=3&per_page=3",
        ]
    );
}

#[tokio::test]
async fn pagination_offset_stops_at_the_empty_page() {
    full_listing(
        Style::Offset,
        4,
        &[
            "/orders?offset=0&limit=3",
            "/orders?offset=3&limit=3",
            "/orders?offset=6&limit=3",
            "/orders?offset=7&limit=3",
        ],
    )
    .await;
}

#[tokio::test]
async fn pagination_cursor_follows_next_cursor() {
    full_listing(
        Style::Cursor,
        3,
        &["/orders", "/orders?cursor=c3", "/orders?cursor=c6"],
    )
    .await;
}

#[tokio::test]
async fn pagination_next_url_follows_links_next() {
    full_listing(
        Style::NextUrl,
        3,
        &["/orders", "/orders?page=2", "/orders?page=3"],
    )
    .await;
}

// ───────────────────────────── 2. auth ─────────────────────────────

/// With `good` the poll lists all 4 items; with `bad` it fails on 401 and writes nothing.
async fn auth_case(required: RequiredAuth, good: &str, bad: &str, secret: &str) {
    let api = FakeApi::start(Style::LinkHeader).await;
    api.set_items(orders(4));
    api.state().auth = Some(required);

    let h = shop(&api, good, "");
    let report = h.poll().await.unwrap();
    assert_eq!((report.listed, report.pages), (4, 2));
    assert_eq!(h.status().item_count, 4);

    let wrong = shop(&api, bad, "");
    let error = fetch_error(wrong.poll().await);
    assert!(
        matches!(error, SourceError::Status { status: 401, .. }),
        "{error:?}"
    );
    let message = PollError::Fetch(error).to_string();
    assert!(message.contains("401"), "{message}");
    assert!(
        !message.contains(secret),
        "the credential leaks into: {message}"
    );
    assert!(wrong.events().is_empty() && wrong.snapshot().is_empty());
    let status = wrong.status();
    assert_eq!(status.last_outcome.as_deref(), Some("failed"));
    assert!(status.last_error.unwrap().contains("401"));
}

#[tokio::test]
async fn auth_bearer() {
    auth_case(
        RequiredAuth::Bearer("t0ken-good".into()),
        r#"auth = { type = "bearer", token = "t0ken-good" }"#,
        r#"auth = { type = "bearer", token = "t0ken-wrong" }"#,
        "t0ken-wrong",
    )
    .await;
}

#[tokio::test]
async fn auth_basic() {
    auth_case(
        RequiredAuth::Basic("ann".into(), "pa55-good".into()),
        r#"auth = { type = "basic", username = "ann", password = "pa55-good" }"#,
        r#"auth = { type = "basic", username = "ann", password = "pa55-wrong" }"#,
        "pa55-wrong",
    )
    .await;
}

#[tokio::test]
async fn auth_api_key_header() {
    auth_case(
        RequiredAuth::HeaderKey("x-api-key".into(), "k3y-good".into()),
        r#"auth = { type = "api-key", header = "X-API-Key", value = "k3y-good" }"#,
        r#"auth = { type = "api-key", header = "X-API-Key", value = "k3y-wrong" }"#,
        "k3y-wrong",
    )
    .await;
}

#[tokio::test]
async fn auth_api_key_query() {
    auth_case(
        RequiredAuth::QueryKey("api_key".into(), "k3y-good".into()),
        r#"auth = { type = "api-key", query = "api_key", value = "k3y-good" }"#,
        r#"auth = { type = "api-key", query = "api_key", value = "k3y-wrong" }"#,
        "k3y-wrong",
    )
    .await;
}

#[tokio::test]
async fn auth_is_sent_on_every_page() {
    let api = FakeApi::start(Style::Page).await;
    api.set_items(orders(4));
    let h = shop(&api, r#"auth = { type = "bearer", token = "t0ken" }"#, "");
    h.poll().await.unwrap();
    let state = api.state();
    assert_eq!(state.requests.len(), 3);
    for request in &state.requests {
        assert_eq!(request.method, axum::http::Method::GET);
        assert_eq!(request.headers["authorization"], "Bearer t0ken");
        let agent = request.headers["user-agent"].to_str().unwrap();
        assert!(agent.starts_with("pollhook/"), "{agent}");
    }
}

/// A next link that repeats the query (as most APIs write it) carries a query API key; errors
/// about that page must still not show it (src/source/rest.rs: "secrets never appear in an error").
#[tokio::test]
async fn a_query_api_key_never_appears_in_an_error() {
    let api = FakeApi::start(Style::LinkHeader).await;
    api.set_items(orders(4));
    api.state().auth = Some(RequiredAuth::QueryKey(
        "api_key".into(),
        "k3y-s3cret".into(),
    ));
    api.state().fail_page = Some((2, 500));
    let h = shop(
        &api,
        r#"auth = { type = "api-key", query = "api_key", value = "k3y-s3cret" }"#,
        "",
    );

    let error = fetch_error(h.poll().await);
    let message = error.to_string();
    assert!(
        matches!(error, SourceError::Status { status: 500, .. }),
        "{error:?}"
    );
    assert!(message.contains("page=2"), "{message}");
    assert!(
        !message.contains("k3y-s3cret"),
        "the API key leaks into: {message}"
    );
    let stored = h.status().last_error.unwrap();
    assert!(
        !stored.contains("k3y-s3cret"),
        "the API key leaks into the database: {stored}"
    );
}

/// The query API key is added once per request, even when the next link already carries it.
#[tokio::test]
async fn a_query_api_key_is_sent_once_per_request() {
    let api = FakeApi::start(Style::LinkHeader).await;
    api.set_items(orders(4));
    let h = shop(
        &api,
        r#"auth = { type = "api-key", query = "api_key", value = "k3y" }"#,
        "",
    );
    h.poll().await.unwrap();
    assert_eq!(
        api.paths(),
        ["/orders?api_key=k3y", "/orders?api_key=k3y&page=2"]
    );
}

// ───────────────────────────── 3. baseline ─────────────────────────────

#[tokio::test]
async fn first_poll_is_a_silent_baseline() {
    let api = FakeApi::start(Style::None).await;
    api.set_items(orders(3));
    let h = shop(&api, "", "");

    let report = h.poll().await.unwrap();
    assert!(report.baseline);
    assert!(report.events.is_empty());
    assert_eq!(report.listed, 3);
    assert!(h.events().is_empty());
    assert_eq!(h.snapshot_ids(), ["1", "2", "3"]);
    let status = h.status();
    assert_eq!(status.item_count, 3);
    assert_eq!(status.last_outcome.as_deref(), Some("baseline"));

    let again = h.poll().await.unwrap();
    assert!(!again.baseline);
    assert!(again.events.is_empty());
    assert_eq!(h.status().last_outcome.as_deref(), Some("unchanged"));
}

#[tokio::test]
async fn initial_emit_creates_one_event_per_item() {
    let api = FakeApi::start(Style::None).await;
    api.set_items(orders(3));
    let h = shop(&api, "", r#"initial = "emit""#);

    let report = h.poll().await.unwrap();
    assert!(!report.baseline);
    let events = h.events();
    assert_eq!(events, report.events);
    let shapes: Vec<Value> = events.iter().map(stable).collect();
    let expected: Vec<Value> = (1..=3)
        .map(|i| {
            json!({
                "id": "evt_", "type": "shop.orders.created", "source": "shop", "resource": "orders",
                "action": "created", "resource_id": i.to_string(), "detected_at": "",
                "data": {"id": i, "status": "open"}, "previous": null, "changes": null, "backfill": false
            })
        })
        .collect();
    assert_eq!(shapes, expected);
    assert_eq!(h.status().item_count, 3);
}

// ───────────────────────────── 4. changes ─────────────────────────────

#[tokio::test]
async fn created_updated_deleted_events_have_the_design_shape() {
    let api = FakeApi::start(Style::None).await;
    api.set_items(orders(3));
    let h = shop(&api, "", "");
    h.poll().await.unwrap();

    api.set_items([
        json!({"id": 1, "status": "shipped"}),
        json!({"id": 3, "status": "open"}),
        json!({"id": 4, "status": "open"}),
    ]);
    let report = h.poll().await.unwrap();

    let events = h.events();
    assert_eq!(events, report.events);
    let shapes: Vec<Value> = events.iter().map(stable).collect();
    assert_eq!(
        shapes,
        [
            json!({
                "id": "evt_", "type": "shop.orders.updated", "source": "shop", "resource": "orders",
                "action": "updated", "resource_id": "1", "detected_at": "",
                "data": {"id": 1, "status": "shipped"},
                "previous": {"id": 1, "status": "open"},
                "changes": [{"op": "replace", "path": "/status", "value": "shipped"}],
                "backfill": false
            }),
            json!({
                "id": "evt_", "type": "shop.orders.created", "source": "shop", "resource": "orders",
                "action": "created", "resource_id": "4", "detected_at": "",
                "data": {"id": 4, "status": "open"}, "previous": null, "changes": null, "backfill": false
            }),
            json!({
                "id": "evt_", "type": "shop.orders.deleted", "source": "shop", "resource": "orders",
                "action": "deleted", "resource_id": "2", "detected_at": "",
                "data": null, "previous": {"id": 2, "status": "open"}, "changes": null, "backfill": false
            }),
        ]
    );
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    assert_eq!(h.snapshot_ids(), ["1", "3", "4"]);
    let status = h.status();
    assert_eq!(status.item_count, 3);
    assert_eq!(status.last_outcome.as_deref(), Some("changed"));

    // The next update's `previous` is the body stored by the last poll.
    api.set_items([
        json!({"id": 1, "status": "delivered"}),
        json!({"id": 3, "status": "open"}),
        json!({"id": 4, "status": "open"}),
    ]);
    let report = h.poll().await.unwrap();
    assert_eq!(report.events.len(), 1);
    assert_eq!(
        report.events[0].previous,
        json!({"id": 1, "status": "shipped"})
    );
    assert_eq!(
        report.events[0].changes,
        json!([{"op": "replace", "path": "/status", "value": "delivered"}])
    );
}

#[tokio::test]
async fn a_dry_run_reports_changes_and_writes_nothing() {
    let api = FakeApi::start(Style::None).await;
    api.set_items(orders(3));
    let h = shop(&api, "", "");
    h.poll().await.unwrap();
    let before = h.snapshot();
    let status_before = h.status();

    api.set_items(orders(4));
    let report = pollhook::poll::poll(
        &h.store,
        "shop",
        h.source.as_ref(),
        &h.resource,
        pollhook::poll::Mode::DryRun,
    )
    .await
    .unwrap();
    assert_eq!(actions_of(&report.events), ["created 4"]);
    assert_eq!(report.deliveries, 0);
    assert!(h.events().is_empty());
    assert_eq!(h.snapshot(), before);
    assert_eq!(h.status().last_poll_at, status_before.last_poll_at);

    assert_eq!(actions_of(&h.poll().await.unwrap().events), ["created 4"]);
}

/// `pollhook run` polls a small resource from what its own last unchanged poll committed,
/// without reading it again. A change another process (the CLI's `pollhook poll`) committed
/// meanwhile is neither emitted twice nor lost, and no poll fails for it.
#[tokio::test]
async fn a_poll_after_another_process_committed_starts_from_what_that_one_wrote() {
    let api = FakeApi::start(Style::None).await;
    api.set_items(orders(3));
    let h = shop(&api, "", "");
    // The baseline, then unchanged polls: the second of them starts from memory.
    for _ in 0..3 {
        assert!(h.poll().await.unwrap().events.is_empty());
    }
    let cli = pollhook::store::Store::open(&h.config.storage.path).unwrap();
    let poll_cli = async || {
        pollhook::poll::poll(
            &cli,
            "shop",
            h.source.as_ref(),
            &h.resource,
            pollhook::poll::Mode::Commit,
        )
        .await
        .unwrap()
    };
    api.set_items(orders(4));
    assert_eq!(actions_of(&poll_cli().await.events), ["created 4"]);
    // What `run` remembered is behind: its poll finds nothing the other process did not emit.
    let report = h.poll().await.unwrap();
    assert!(report.events.is_empty(), "{:?}", report.events);
    assert_eq!(actions_of(&h.events()), ["created 4"]);
    assert_eq!(h.status().item_count, 4);
    // The other process's unchanged poll, then a change only `run` sees.
    assert!(poll_cli().await.events.is_empty());
    api.set_items(orders(5));
    assert_eq!(actions_of(&h.poll().await.unwrap().events), ["created 5"]);
    assert!(h.poll().await.unwrap().events.is_empty());
    // An update and a delete the other process emits, then one `run` emits.
    let mut items: Vec<Value> = orders(5).into_iter().skip(1).collect();
    items[0]["status"] = json!("shipped");
    api.set_items(items.clone());
    assert_eq!(
        actions_of(&poll_cli().await.events),
        ["updated 2", "deleted 1"]
    );
    assert!(h.poll().await.unwrap().events.is_empty());
    items.pop();
    api.set_items(items);
    assert_eq!(actions_of(&h.poll().await.unwrap().events), ["deleted 5"]);
    assert_eq!(
        actions_of(&h.events()),
        [
            "created 4",
            "created 5",
            "updated 2",
            "deleted 1",
            "deleted 5"
        ]
    );
    assert_eq!(sorted_ids(h.snapshot_ids()), ["2", "3", "4"]);
}

// ───────────────────────────── 5. normalization ─────────────────────────────

#[tokio::test]
async fn key_order_and_ignored_fields_are_not_changes() {
    let api = FakeApi::start(Style::None).await;
    api.set_raw_items(&[
        r#"{"id":1,"status":"open","updated_at":"t1","meta":{"etag":"a","v":1}}"#,
        r#"{"id":2,"status":"open","updated_at":"t1","meta":{"etag":"b","v":1}}"#,
    ]);
    let h = shop(&api, "", r#"ignore = ["updated_at", "meta.etag"]"#);
    h.poll().await.unwrap();
    let before = h.snapshot();

    api.set_raw_items(&[
        r#"{ "meta": { "v": 1, "etag": "zz" }, "updated_at": "t2", "status": "open", "id": 1 }"#,
        r#"{"updated_at":"t9","id":2,"meta":{"etag":"c","v":1},"status":"open"}"#,
    ]);
    let report = h.poll().await.unwrap();
    assert!(report.events.is_empty(), "{:?}", report.events);
    assert!(h.events().is_empty());
    assert_eq!(h.snapshot(), before);
    assert_eq!(h.status().last_outcome.as_deref(), Some("unchanged"));

    // A field that is not ignored, nested beside an ignored one, still counts.
    api.set_raw_items(&[
        r#"{"id":1,"status":"open","updated_at":"t3","meta":{"etag":"d","v":2}}"#,
        r#"{"updated_at":"t9","id":2,"meta":{"etag":"c","v":1},"status":"open"}"#,
    ]);
    let report = h.poll().await.unwrap();
    assert_eq!(actions_of(&report.events), ["updated 1"]);
    let changes = report.events[0].changes.value();
    let changes = changes.as_array().unwrap();
    assert!(
        changes.contains(&json!({"op": "replace", "path": "/meta/v", "value": 2})),
        "{changes:?}"
    );
}

/// The raw hash of each item, by id.
fn raw_hashes(h: &crate::support::Harness) -> std::collections::BTreeMap<String, Option<[u8; 16]>> {
    crate::support::block_on(h.store.snapshot(&h.source_name, &h.resource.name, 0))
        .unwrap()
        .into_iter()
        .map(|(id, known)| (id, known.raw))
        .collect()
}

/// Same bytes are unchanged without a parse; new bytes are judged by their content, whichever
/// way the page was read (split unparsed for page style, parsed for cursor style).
async fn fast_path_case(style: Style) {
    let api = FakeApi::start(style).await;
    let first = [
        r#"{"id":1,"status":"open"}"#,
        r#"{"id":2,"status":"open"}"#,
        r#"{"id":3,"status":"open"}"#,
    ];
    api.set_raw_items(&first);
    let h = shop(&api, "", "");
    h.poll().await.unwrap();
    let baseline = raw_hashes(&h);
    assert!(baseline.values().all(Option::is_some), "{baseline:?}");
    let report = h.poll().await.unwrap();
    assert!(report.events.is_empty());
    assert_eq!(raw_hashes(&h), baseline);

    // 1: other key order and spacing, same content. 2: pretty-printed and changed. 3: as before.
    api.set_raw_items(&[
        r#"{ "status": "open", "id": 1 }"#,
        "{\n  \"id\": 2,\n  \"status\": \"paid\"\n}",
        r#"{"id":3,"status":"open"}"#,
    ]);
    let hashes_before = h.snapshot();
    let report = h.poll().await.unwrap();
    assert_eq!(actions_of(&report.events), ["updated 2"]);
    assert_eq!(report.events[0].data, json!({"id": 2, "status": "paid"}));
    assert!(!report.events[0].data.get().contains('\n'), "compact data");
    let after = raw_hashes(&h);
    assert_eq!(after["3"], baseline["3"]);
    assert_ne!(after["2"], baseline["2"]);
    if style == Style::Page {
        assert_ne!(
            after["1"], baseline["1"],
            "new bytes: the raw hash follows them"
        );
    }
    assert_eq!(
        h.snapshot()[0],
        hashes_before[0],
        "the canonical hash of 1 stands"
    );
    assert!(h.poll().await.unwrap().events.is_empty());

    // Back to the first bytes: still no event for 1; 2 changes back.
    api.set_raw_items(&first);
    let report = h.poll().await.unwrap();
    assert_eq!(actions_of(&report.events), ["updated 2"]);
    assert_eq!(h.events().len(), 2);
}

#[tokio::test]
async fn unchanged_bytes_take_the_fast_path_new_bytes_are_judged_by_content() {
    fast_path_case(Style::Page).await;
}

#[tokio::test]
async fn parsed_pages_judge_items_the_same_way() {
    fast_path_case(Style::Cursor).await;
}

// ───────────────────────────── 6. a failed page ─────────────────────────────

#[tokio::test]
async fn a_failed_page_writes_nothing_and_the_next_poll_recovers() {
    let api = FakeApi::start(Style::Page).await;
    api.set_items(orders(15));
    // Page listings delete after two complete listings by default; this test is about the
    // failed page, so one is enough.
    let h = shop(&api, "", "deleted_after = 1");
    let first = h.poll().await.unwrap();
    assert_eq!((first.pages, first.listed), (6, 15));
    let before = h.snapshot();

    // Item 2 changes, 15 goes away, 16 appears; page 3 of 5 answers 500 on every attempt.
    let mut next = orders(14);
    next[1] = json!({"id": 2, "status": "shipped"});
    next.push(json!({"id": 16, "status": "open"}));
    api.set_items(next);
    api.state().fail_page = Some((3, 500));
    api.clear_requests();

    let error = fetch_error(h.poll().await);
    assert!(
        matches!(error, SourceError::Status { status: 500, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("500"), "{message}");
    // Pages 1 and 2, then page 3 and its one retry; never page 4.
    assert_eq!(
        api.paths(),
        [
            "/orders?page=1&per_page=3",
            "/orders?page=2&per_page=3",
            "/orders?page=3&per_page=3",
            "/orders?page=3&per_page=3",
        ]
    );
    assert!(h.events().is_empty());
    assert_eq!(h.snapshot(), before);
    let status = h.status();
    assert_eq!(status.last_outcome.as_deref(), Some("failed"));
    assert_eq!(status.last_error.as_deref(), Some(message.as_str()));
    assert_eq!(status.consecutive_errors, 1);
    assert_eq!(status.item_count, 15);

    api.state().fail_page = None;
    let report = h.poll().await.unwrap();
    assert_eq!(
        actions_of(&report.events),
        ["updated 2", "created 16", "deleted 15"]
    );
    assert_eq!(actions_of(&h.events()), actions_of(&report.events));
    let status = h.status();
    assert_eq!(status.last_outcome.as_deref(), Some("changed"));
    assert_eq!((status.last_error, status.consecutive_errors), (None, 0));
    assert_eq!(status.item_count, 15);
}

// ───────────────────────────── 7. 429 ─────────────────────────────

#[tokio::test]
async fn too_many_requests_is_waited_out() {
    let api = FakeApi::start(Style::None).await;
    api.set_items(orders(2));
    api.state().throttle_once = Some(1);
    let h = shop(&api, "", "");

    let report = h.poll().await.unwrap();
    assert_eq!(report.listed, 2);
    assert_eq!(api.paths(), ["/orders", "/orders"]);
    assert_eq!(h.status().last_outcome.as_deref(), Some("baseline"));
}

// ───────────────────────────── 8. the mass-delete guard ─────────────────────────────

#[tokio::test]
async fn an_empty_listing_over_a_full_snapshot_is_held_until_accepted() {
    let api = FakeApi::start(Style::None).await;
    api.set_items(orders(100));
    let h = shop(&api, "", "");
    h.poll().await.unwrap();
    assert_eq!(h.snapshot().len(), 100);

    api.set_items([]);
    let report = h.poll().await.unwrap();
    assert_eq!(
        report.held,
        Some(Held {
            deletes: 100,
            snapshot: 100
        })
    );
    assert!(report.events.is_empty());
    // The only event is the operators' alert, `pollhook.resource.deletes_held`.
    let alerts = h.events();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, "pollhook.resource.deletes_held");
    assert_eq!(alerts[0].resource_id, "shop.orders");
    assert_eq!(alerts[0].data.value()["deletes"], 100);
    assert_eq!(h.snapshot().len(), 100);
    let status = h.status();
    assert_eq!(status.held_deletes, 100);
    assert_eq!(status.item_count, 100);
    assert_eq!(status.last_outcome.as_deref(), Some("held"));

    // Still held on the next poll: holding is not a one-off; the alert is not repeated.
    assert!(h.poll().await.unwrap().held.is_some());
    assert_eq!(h.events().len(), 1);

    assert_eq!(h.store.accept_deletes("shop", "orders").await.unwrap(), 100);
    let report = h.poll().await.unwrap();
    assert_eq!(report.held, None);
    assert_eq!(report.events.len(), 100);
    assert!(report.events.iter().all(|e| e.action == "deleted"));
    assert_eq!(
        sorted_ids(ids_of(&report.events)),
        (1..=100).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(h.events().len(), 101);
    assert!(h.snapshot().is_empty());
    let status = h.status();
    assert_eq!((status.held_deletes, status.item_count), (0, 0));

    // The acceptance was used up: a new full snapshot is guarded again.
    api.set_items(orders(100));
    h.poll().await.unwrap();
    api.set_items([]);
    assert!(h.poll().await.unwrap().held.is_some());
    assert_eq!(h.snapshot().len(), 100);
}

// ───────────────────────────── 9. composite ids ─────────────────────────────

#[tokio::test]
async fn composite_ids_are_joined_with_colons() {
    let api = FakeApi::start(Style::None).await;
    api.set_items([
        json!({"order_id": 7, "line": 1, "qty": 1}),
        json!({"order_id": 7, "line": 2, "qty": 1}),
    ]);
    let h = shop(&api, "", r#"id = ["order_id", "line"]"#);
    h.poll().await.unwrap();
    assert_eq!(h.snapshot_ids(), ["7:1", "7:2"]);

    api.set_items([
        json!({"order_id": 7, "line": 1, "qty": 1}),
        json!({"order_id": 7, "line": 2, "qty": 5}),
    ]);
    let report = h.poll().await.unwrap();
    assert_eq!(actions_of(&report.events), ["updated 7:2"]);
    assert_eq!(
        report.events[0].changes,
        json!([{"op": "replace", "path": "/qty", "value": 5}])
    );
}

#[tokio::test]
async fn an_item_without_its_id_fails_the_poll() {
    let api = FakeApi::start(Style::Page).await;
    api.set_items(orders(3));
    let h = shop(&api, "", "");
    h.poll().await.unwrap();
    let before = h.snapshot();

    let mut items = orders(5);
    items[4] = json!({"status": "open"});
    api.set_items(items);
    let error = fetch_error(h.poll().await);
    assert!(matches!(error, SourceError::Item(_)), "{error:?}");
    assert!(error.to_string().contains("has no `id`"), "{error}");
    assert!(h.events().is_empty());
    assert_eq!(h.snapshot(), before);
    assert_eq!(h.status().last_outcome.as_deref(), Some("failed"));
}

// ───────────────────────────── 10. restart ─────────────────────────────

#[tokio::test]
async fn a_restart_re_emits_nothing() {
    let api = FakeApi::start(Style::LinkHeader).await;
    api.set_items(orders(5));
    let h = shop(&api, "", r#"initial = "emit""#);
    assert_eq!(h.poll().await.unwrap().events.len(), 5);
    let path = h.config.storage.path.clone();
    let Harness {
        dir,
        store,
        source_name,
        source,
        resource,
        config,
    } = h;
    drop(store);

    let h = Harness {
        store: pollhook::store::Store::open(&path).unwrap(),
        dir,
        source_name,
        source,
        resource,
        config,
    };
    let report = h.poll().await.unwrap();
    assert!(!report.baseline);
    assert!(report.events.is_empty(), "{:?}", report.events);
    assert_eq!(h.events().len(), 5);
    assert_eq!(h.status().item_count, 5);
}

// ───────────────────────────── 11. duplicates ─────────────────────────────

#[tokio::test]
async fn an_item_listed_on_two_pages_counts_once() {
    let api = FakeApi::start(Style::Page).await;
    // Item 3 ends page 1 and starts page 2, as when an item is inserted while paging.
    let mut items = orders(5);
    items.insert(3, json!({"id": 3, "status": "open"}));
    api.set_items(items);
    let h = shop(&api, "", r#"initial = "emit""#);

    let report = h.poll().await.unwrap();
    assert_eq!(report.listed, 5);
    assert_eq!(ids_of(&report.events), ["1", "2", "3", "4", "5"]);
    assert_eq!(h.events().len(), 5);
    assert_eq!(h.status().item_count, 5);

    let again = h.poll().await.unwrap();
    assert_eq!(again.listed, 5);
    assert!(again.events.is_empty(), "{:?}", again.events);
}

// ───────────────────────────── 12. exec ─────────────────────────────

fn exec(script: &str) -> Harness {
    exec_initial(script, "emit")
}

fn exec_initial(script: &str, initial: &str) -> Harness {
    let script = toml::Value::String(script.into());
    Harness::new(&format!(
        r#"
[[sources]]
name = "tool"
adapter = "exec"
command = ["sh", "-c", {script}]

  [[sources.resources]]
  name = "things"
  every = "1m"
  initial = "{initial}"
"#
    ))
}

/// A shell command printing items 1 to `n` as one JSON array, or as JSON lines: about 120 bytes
/// an item, its strings holding commas, brackets, quotes and backslashes.
fn many_items(n: u32, lines: bool) -> String {
    let (open, between, close) = if lines {
        ("", "\\n", "")
    } else {
        ("[", ",\\n", "]")
    };
    let item = r#"{\"id\": %d, \"note\": \"a, b ] [ \\\" c \\\\\", \"pad\": \"%s\"}"#;
    let pad = "x".repeat(60);
    format!(
        r#"awk 'BEGIN {{ printf "{open}"; for (i = 1; i <= {n}; i++) printf "%s{item}", (i > 1 ? "{between}" : ""), i, "{pad}"; print "{close}" }}'"#
    )
}

#[tokio::test]
async fn exec_output_of_several_pages_lists_every_item() {
    const N: u32 = 30_000;
    for lines in [false, true] {
        let h = exec_initial(&many_items(N, lines), "baseline");
        let report = h.poll().await.unwrap();
        assert_eq!(report.listed, N as usize, "lines: {lines}");
        // About 3.5 MB, sent on as it is printed, in pages of 1 MiB.
        assert!(report.pages > 2, "lines: {lines}, {} pages", report.pages);
        let expected: Vec<String> = (1..=N).map(|n| n.to_string()).collect();
        assert_eq!(h.snapshot_ids(), expected);
        assert!(report.baseline && h.events().is_empty());
        let again = h.poll().await.unwrap();
        assert_eq!((again.listed, again.events.len()), (N as usize, 0));
    }
}

#[tokio::test]
async fn exec_failing_after_pages_were_sent_writes_nothing() {
    for lines in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let polled = dir.path().join("polled");
        let script = format!(
            r#"if [ -e '{polled}' ]; then {many}; echo boom >&2; exit 3; fi; touch '{polled}'; echo '[{{"id": 1}}, {{"id": 2}}]'"#,
            polled = polled.display(),
            many = many_items(30_000, lines),
        );
        let h = exec(&script);
        assert_eq!(h.poll().await.unwrap().events.len(), 2);
        let snapshot = h.snapshot();
        // Items 1 and 2 changed and 29,998 new, in pages the intake took: all dropped.
        let error = fetch_error(h.poll().await);
        let message = error.to_string();
        assert!(
            message.contains("exit status: 3") && message.contains("boom"),
            "{message}"
        );
        assert_eq!(h.events().len(), 2, "lines: {lines}");
        assert_eq!(h.snapshot(), snapshot, "lines: {lines}");
        assert_eq!(h.status().last_outcome.as_deref(), Some("failed"));
    }
}

#[tokio::test]
async fn exec_reads_the_json_array_a_program_prints() {
    let h = exec(
        r#"printf '[{"id":1,"r":"%s","p":"%s"},{"id":2}]' "$POLLHOOK_RESOURCE" "$POLLHOOK_SOURCE""#,
    );
    let report = h.poll().await.unwrap();
    assert_eq!((report.pages, report.listed), (1, 2));
    assert_eq!(ids_of(&report.events), ["1", "2"]);
    assert_eq!(
        report.events[0].data,
        json!({"id": 1, "r": "things", "p": "tool"})
    );
    assert_eq!(report.events[0].kind, "tool.things.created");
    assert_eq!(h.events().len(), 2);
}

#[tokio::test]
async fn exec_failure_quotes_stderr_and_emits_nothing() {
    let h = exec(r#"echo '[{"id":1}]'; echo boom >&2; exit 1"#);
    let error = fetch_error(h.poll().await);
    let message = error.to_string();
    assert!(matches!(error, SourceError::Exec(_)), "{error:?}");
    assert!(message.contains("boom"), "{message}");
    assert!(message.contains("exit status: 1"), "{message}");
    assert!(h.events().is_empty() && h.snapshot().is_empty());
    let status = h.status();
    assert_eq!(status.last_outcome.as_deref(), Some("failed"));
    assert!(status.last_error.unwrap().contains("boom"));
}

#[tokio::test]
async fn exec_invalid_json_fails() {
    let h = exec(r#"echo '[{"id":1},'"#);
    let error = fetch_error(h.poll().await);
    let message = error.to_string();
    assert!(message.contains("invalid JSON"), "{message}");
    assert!(h.events().is_empty() && h.snapshot().is_empty());
    assert_eq!(h.status().last_outcome.as_deref(), Some("failed"));
}
