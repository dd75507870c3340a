//! Fault injection: a source that fails in every way an HTTP API can, endpoints that fail in every
//! way a receiver can, and a database that cannot be used.
//!
//! Source faults: each must fail the poll with a clear error in `pollhook status` (`last_error`),
//! write nothing and emit nothing; once the fault clears, the next poll finds exactly the change
//! made meanwhile. Listing anomalies (an empty page mid-listing, pages shifting under the poller,
//! an id changing type) must not invent changes.
//!
//! Endpoint faults: each attempt is recorded with a clear error, the delivery is retried on the
//! schedule and dead-lettered after it, and a healthy endpoint is not held up.
//!
//! Storage faults: a database path that cannot be a file, a corrupt database, and a second
//! `pollhook run` on a database in use each give a clear message and the documented exit code.

use crate::support::block_on;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pollhook::store::{AttemptRow, DeliveryFilter, DeliveryRow, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    Answer, ConfigBuilder, Endpoint, Harness, Pipeline, RawServer, Resource, Source, eventually,
    listen, lock, orders, spawn_run, std_command, target,
};

/// How long any wait in this file may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

// ───────────────────────────── a listing with faults ─────────────────────────────

/// A change made to the listing while a fetch is under way.
type Edit = Box<dyn FnOnce(&mut Vec<Value>) + Send>;

/// Pages `?page=N` (1-based) or `?offset=N&limit=M` of `size` items, with a `Link` to the next
/// page while more remain.
struct ListingState {
    items: Vec<Value>,
    size: usize,
    /// Every request for this page gets this answer instead.
    fault: Option<(usize, Answer)>,
    /// Applied to the items once, right after this page has been served.
    after_page: Option<(usize, Edit)>,
}

#[derive(Clone)]
struct Listing {
    url: String,
    state: Arc<Mutex<ListingState>>,
    server: RawServer,
}

fn param(target: &str, name: &str) -> Option<usize> {
    let query = target.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
}

impl Listing {
    async fn start(items: Vec<Value>) -> Listing {
        let state = Arc::new(Mutex::new(ListingState {
            items,
            size: 3,
            fault: None,
            after_page: None,
        }));
        let url = Arc::new(Mutex::new(String::new()));
        let server = {
            let (state, url) = (state.clone(), url.clone());
            RawServer::start(move |head| {
                let target = target(head);
                let mut s = lock(&state);
                let size = s.size;
                let (start, page) = match param(target, "offset") {
                    Some(offset) => (offset, offset / size + 1),
                    None => {
                        let page = param(target, "page").unwrap_or(1).max(1);
                        ((page - 1) * size, page)
                    }
                };
                if let Some((p, fault)) = &s.fault
                    && *p == page
                {
                    return fault.clone();
                }
                let end = (start + size).min(s.items.len());
                let slice = &s.items[start.min(end)..end];
                let body = Value::Array(slice.to_vec()).to_string();
                let mut headers = vec![("Content-Type".into(), "application/json".into())];
                if end < s.items.len() {
                    let base = lock(&url).clone();
                    headers.push((
                        "Link".into(),
                        format!("<{base}/orders?page={}>; rel=\"next\"", page + 1),
                    ));
                }
                if s.after_page.as_ref().is_some_and(|(p, _)| *p == page)
                    && let Some((_, change)) = s.after_page.take()
                {
                    change(&mut s.items);
                }
                Answer::Full {
                    status: 200,
                    headers,
                    body: body.into_bytes(),
                }
            })
            .await
        };
        *lock(&url) = server.url.clone();
        Listing {
            url: server.url.clone(),
            state,
            server,
        }
    }

    fn state(&self) -> MutexGuard<'_, ListingState> {
        lock(&self.state)
    }

    fn set(&self, id: u64, status: &str) {
        let mut s = self.state();
        for item in s.items.iter_mut().filter(|i| i["id"] == id) {
            item["status"] = json!(status);
        }
    }

    /// Requests for page `page` (`?page=` or the equivalent `?offset=`) so far.
    fn requests_for(&self, page: usize) -> usize {
        let size = self.state().size;
        self.server
            .targets()
            .iter()
            .filter(|t| match param(t, "offset") {
                Some(offset) => offset / size + 1 == page,
                None => param(t, "page").unwrap_or(1) == page,
            })
            .count()
    }
}

/// A source over `url` with a short timeout and one retry per request, listing `orders`.
fn source(url: &str, orders: Resource) -> String {
    let shop = Source::new("shop", url)
        .set("timeout", "300ms")
        .set("retries", 1)
        .resource(orders);
    ConfigBuilder::without_storage().source(shop).toml()
}

/// `orders` at `/orders`, paged `style` (with `size` items a page, if given).
fn listing(style: &str, size: Option<i64>) -> Resource {
    let mut pagination = toml::Table::new();
    pagination.insert("style".into(), style.into());
    if let Some(size) = size {
        pagination.insert("size".into(), size.into());
    }
    Resource::new("orders", "1h")
        .set("path", "/orders")
        .set("pagination", pagination)
}

/// `(action, resource_id)` of every change event (operational ones left out), oldest first.
fn actions(h: &Harness) -> Vec<(String, String)> {
    h.events()
        .into_iter()
        .filter(|e| e.source == "shop")
        .map(|e| (e.action, e.resource_id))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// Baseline of 9 items over 3 pages; then item 5 changes and page 2 answers `fault`: the poll
/// must fail with every one of `expect` in its error and in `status`, write and emit nothing, and
/// retry (or not) as documented; once the fault is gone, exactly the change made meanwhile comes
/// out.
async fn source_fault(fault: Answer, expect: &[&str], retried: bool) {
    fault_flow(fault, expect, retried, true).await;
}

/// [`source_fault`] for faults in an item rather than in the HTTP exchange: the message quotes the
/// item rather than the page.
async fn item_fault(fault: Answer, expect: &[&str]) {
    fault_flow(fault, expect, false, false).await;
}

async fn fault_flow(fault: Answer, expect: &[&str], retried: bool, names_page: bool) {
    let api = Listing::start(orders(9)).await;
    let h = Harness::new(&source(&api.url, listing("link-header", None)));
    let baseline = h.poll().await.unwrap();
    assert!(baseline.baseline && baseline.listed == 9);
    let before = h.snapshot();

    api.set(5, "paid");
    api.state().fault = Some((2, fault));
    let asked = api.requests_for(2);
    let error = h.poll().await.unwrap_err().to_string();
    for e in expect {
        assert!(error.contains(e), "error `{error}` lacks `{e}`");
    }
    if names_page {
        assert!(
            error.contains("page=2"),
            "the error names the page: {error}"
        );
    }
    let status = h.status();
    assert_eq!(status.last_outcome.as_deref(), Some("failed"));
    assert_eq!(status.consecutive_errors, 1);
    let last_error = status.last_error.unwrap_or_default();
    for e in expect {
        assert!(last_error.contains(e), "status `{last_error}` lacks `{e}`");
    }
    assert!(actions(&h).is_empty(), "a failed fetch emitted something");
    assert_eq!(h.snapshot(), before, "a failed fetch wrote the snapshot");
    assert_eq!(
        api.requests_for(2) - asked,
        if retried { 2 } else { 1 },
        "page 2 requests (retries = 1)"
    );

    api.state().fault = None;
    let report = h.poll().await.unwrap();
    assert_eq!(report.listed, 9);
    assert_eq!(actions(&h), pairs(&[("updated", "5")]));
    let status = h.status();
    assert_eq!(status.last_error, None);
    assert_eq!(status.consecutive_errors, 0);
}

// ───────────────────────────── source faults ─────────────────────────────

#[tokio::test]
async fn a_500_page_fails_the_fetch_after_its_retry() {
    source_fault(
        Answer::json(500, r#"{"error":"boom"}"#),
        &["answered 500", "boom"],
        true,
    )
    .await;
}

#[tokio::test]
async fn a_503_page_fails_the_fetch_after_its_retry() {
    source_fault(
        Answer::json(503, ""),
        &["answered 503", "(empty body)"],
        true,
    )
    .await;
}

#[tokio::test]
async fn a_404_page_fails_at_once_with_a_hint() {
    source_fault(
        Answer::json(404, "no such page"),
        &["answered 404", "check base_url"],
        false,
    )
    .await;
}

#[tokio::test]
async fn a_429_asking_too_long_a_wait_fails_at_once() {
    source_fault(
        Answer::Full {
            status: 429,
            headers: vec![("Retry-After".into(), "86400".into())],
            body: Vec::new(),
        },
        &["429", "max_retry_after"],
        false,
    )
    .await;
}

#[tokio::test]
async fn a_page_slower_than_the_timeout_fails_the_fetch() {
    source_fault(
        Answer::Slow(Duration::from_secs(5)),
        &["timed out after 0.3s"],
        true,
    )
    .await;
}

#[tokio::test]
async fn a_connection_reset_before_the_response_fails_the_fetch() {
    source_fault(Answer::Reset { prefix: Vec::new() }, &["failed"], true).await;
}

#[tokio::test]
async fn a_connection_reset_mid_body_fails_the_fetch() {
    let prefix = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n[{\"id\":4,\"status\":\"open\"},{\"id\"".to_vec();
    source_fault(Answer::Reset { prefix }, &["cut short"], true).await;
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_fails_the_fetch() {
    source_fault(
        Answer::Truncated {
            body: br#"[{"id":4,"status":"open"},{"id":5,"st"#.to_vec(),
            claimed: 1000,
        },
        &["cut short"],
        true,
    )
    .await;
}

#[tokio::test]
async fn invalid_json_fails_the_fetch() {
    source_fault(
        Answer::json(200, r#"[{"id":4,"status":"open"},{"id":5"#),
        &["not valid JSON"],
        false,
    )
    .await;
}

#[tokio::test]
async fn a_page_that_is_not_a_list_fails_the_fetch() {
    source_fault(
        Answer::json(200, r#"{"error":"maintenance"}"#),
        &["not a JSON array", "hint"],
        false,
    )
    .await;
}

/// `null` is valid JSON but no listing: it must fail, not read as an empty page.
#[tokio::test]
async fn a_null_page_fails_the_fetch() {
    source_fault(
        Answer::json(200, "null"),
        &["is null, not a JSON array"],
        false,
    )
    .await;
}

#[tokio::test]
async fn an_item_without_an_id_fails_the_fetch() {
    item_fault(
        Answer::json(200, r#"[{"id":4},{"status":"open"}]"#),
        &["has no `id`", r#"{"status":"open"}"#],
    )
    .await;
}

#[tokio::test]
async fn an_item_whose_id_is_an_object_fails_the_fetch() {
    item_fault(
        Answer::json(200, r#"[{"id":{"n":4}}]"#),
        &["cannot serve as an id", "an object"],
    )
    .await;
}

// ───────────────────────────── listing anomalies ─────────────────────────────

/// An API that glitches and answers `[]` for page 3 of 4 while its `Link` header still names
/// page 4: the listing is not over, so nothing after the empty page may be reported deleted (nor
/// held back as a suspicious delete).
///
/// The walk goes on to page 4, and a listing with such a page does not count as complete, so
/// page 3's items are not reported deleted.
#[tokio::test]
async fn an_empty_page_that_names_a_next_page_does_not_end_the_listing() {
    let api = Listing::start(orders(12)).await;
    let h = Harness::new(&source(&api.url, listing("link-header", None)));
    h.poll().await.unwrap();
    let glitch = Answer::Full {
        status: 200,
        headers: vec![(
            "Link".into(),
            format!("<{}/orders?page=4>; rel=\"next\"", api.url),
        )],
        body: b"[]".to_vec(),
    };
    api.state().fault = Some((3, glitch));
    let outcome = h.poll().await;
    let deleted: Vec<String> = h
        .events()
        .into_iter()
        .filter(|e| e.action == "deleted")
        .map(|e| e.resource_id)
        .collect();
    assert!(
        deleted.is_empty(),
        "an empty page 3 that still links to page 4 deleted {deleted:?} (poll: {:?})",
        outcome.map(|r| r.listed)
    );
    assert_eq!(h.status().held_deletes, 0, "nor may it hold deletes back");
}

/// Page-number pagination has no end signal but an empty page, so a glitching empty page 2 of 3
/// cannot be told from a shrunken listing: the delete guard is what stands between it and mass
/// deletes (20 of 30 would go: held back, nothing emitted, `status` says so).
#[tokio::test]
async fn an_empty_page_mid_listing_is_held_by_the_guard() {
    let api = Listing::start(orders(30)).await;
    api.state().size = 10;
    // `deleted_after = 1` (the default for page pagination is 2, which alone would absorb a
    // one-off glitch): this test is about the guard.
    let h = Harness::new(&source(
        &api.url,
        listing("page", None).set("deleted_after", 1),
    ));
    h.poll().await.unwrap();
    api.state().fault = Some((2, Answer::json(200, "[]")));
    let report = h.poll().await.unwrap();
    assert_eq!(report.listed, 10);
    let held = report.held.expect("the deletes are held back");
    assert_eq!((held.deletes, held.snapshot), (20, 30));
    assert!(actions(&h).is_empty(), "no change event");
    let alerts: Vec<String> = h.events().into_iter().map(|e| e.kind).collect();
    assert_eq!(
        alerts,
        ["pollhook.resource.deletes_held"],
        "the operator is told"
    );
    assert_eq!(h.snapshot().len(), 30);
    let status = h.status();
    assert_eq!(status.last_outcome.as_deref(), Some("held"));
    assert_eq!(status.held_deletes, 20);
    // The glitch passes: the next listing is whole and nothing was ever deleted.
    api.state().fault = None;
    let report = h.poll().await.unwrap();
    assert!(report.held.is_none() && report.events.is_empty());
    assert_eq!(h.status().held_deletes, 0);
}

/// Under the guard's ratio an empty last page would delete (10 of 30); `deleted_after = 2` is the
/// setting that absorbs such one-off glitches: an item must be missing from two complete listings
/// in a row.
#[tokio::test]
async fn deleted_after_two_absorbs_a_one_off_empty_page() {
    let api = Listing::start(orders(30)).await;
    api.state().size = 10;
    let h = Harness::new(&source(
        &api.url,
        listing("page", None).set("deleted_after", 2),
    ));
    h.poll().await.unwrap();
    api.state().fault = Some((3, Answer::json(200, "[]")));
    let report = h.poll().await.unwrap();
    assert!(report.events.is_empty() && report.held.is_none());
    api.state().fault = None;
    let report = h.poll().await.unwrap();
    assert!(report.events.is_empty());
    assert!(actions(&h).is_empty());
    assert_eq!(h.snapshot().len(), 30);
}

/// An item inserted at the front while the poller is between pages 1 and 2 shifts the listing:
/// page 2 repeats page 1's last item and the new item is not seen yet. The repeat is merged, and
/// nothing is reported until the next poll sees the new item.
#[tokio::test]
async fn an_insert_between_pages_is_merged_not_double_counted() {
    let api = Listing::start(orders(9)).await;
    let h = Harness::new(&source(&api.url, listing("offset", Some(3))));
    h.poll().await.unwrap();
    api.state().after_page = Some((
        1,
        Box::new(|items: &mut Vec<Value>| items.insert(0, json!({"id": 100, "status": "open"}))),
    ));
    let report = h.poll().await.unwrap();
    assert_eq!(report.listed, 9, "item 3 was listed twice and counted once");
    assert!(report.events.is_empty(), "{:?}", report.events);
    let report = h.poll().await.unwrap();
    assert_eq!(report.listed, 10);
    assert_eq!(actions(&h), pairs(&[("created", "100")]));
}

/// An item deleted at the front while the poller is between pages 1 and 2 shifts the listing the
/// other way: item 4, first on page 2, moves onto page 1 (already fetched) and is skipped. The
/// listing looks complete, but item 4 still exists and must not be reported deleted.
///
#[tokio::test]
async fn a_delete_between_pages_does_not_delete_the_item_it_skips() {
    let api = Listing::start(orders(9)).await;
    let h = Harness::new(&source(&api.url, listing("offset", Some(3))));
    h.poll().await.unwrap();
    api.state().after_page = Some((
        1,
        Box::new(|items: &mut Vec<Value>| {
            items.remove(0);
        }),
    ));
    // The shifted poll sees item 1 (on page 1) and skips item 4: nothing is emitted, item 4
    // counts one complete listing missing.
    assert!(h.poll().await.unwrap().events.is_empty());
    // Page and offset listings delete after two complete listings without the item
    // (`deleted_after` defaults to 2 for them): item 4 is back, item 1 is missing once…
    assert!(h.poll().await.unwrap().events.is_empty());
    // …and gone for good at the next one.
    let _ = h.poll().await.unwrap();
    assert_eq!(
        actions(&h),
        pairs(&[("deleted", "1")]),
        "only item 1 was deleted; item 4 was skipped by the shift, never gone"
    );
}

/// An API that starts writing an id as a string (`1` → `"1"`) still means the same item: ids are
/// compared as text, so it is one `updated` (the body did change), never a delete plus a create;
/// both spellings in one listing are one item.
#[tokio::test]
async fn an_id_that_changes_type_is_the_same_item() {
    let api = Listing::start(vec![
        json!({"id": 1, "status": "open"}),
        json!({"id": 2, "status": "open"}),
    ])
    .await;
    let h = Harness::new(&source(&api.url, listing("link-header", None)));
    h.poll().await.unwrap();
    api.state().items = vec![
        json!({"id": "1", "status": "open"}),
        json!({"id": 2, "status": "open"}),
    ];
    let report = h.poll().await.unwrap();
    assert_eq!(report.listed, 2);
    assert_eq!(actions(&h), pairs(&[("updated", "1")]));
    let event = h.events().pop().unwrap();
    assert_eq!(
        event.changes,
        json!([{"op": "replace", "path": "/id", "value": "1"}])
    );
    api.state().items = vec![
        json!({"id": "1", "status": "open"}),
        json!({"id": 1, "status": "open"}),
        json!({"id": 2, "status": "open"}),
    ];
    let report = h.poll().await.unwrap();
    assert_eq!(report.listed, 2, "1 and \"1\" are one item");
    assert_eq!(
        actions(&h),
        pairs(&[("updated", "1"), ("updated", "1")]),
        "the last copy wins"
    );
}

// ───────────────────────────── endpoint faults ─────────────────────────────

/// Every delivery, newest first.
fn all_deliveries(store: &Store) -> Vec<DeliveryRow> {
    block_on(store.deliveries(DeliveryFilter {
        limit: 1000,
        ..DeliveryFilter::default()
    }))
    .unwrap()
}

/// Seven endpoints that fail in seven ways and one healthy one, behind one pipeline and one
/// event: each failing one gets three attempts (the first and `retries = ["100ms", "100ms"]`),
/// each recorded with a clear error, then a dead letter; the healthy one is delivered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_faults_are_retried_on_schedule_then_dead_lettered() {
    let shop = pollhook::demo::FakeShop::start(1).await.unwrap();
    let healthy = pollhook::demo::Receiver::start().await.unwrap();
    let moved = pollhook::demo::Receiver::start().await.unwrap();
    let huge = "x".repeat(1 << 20);
    let faulty = {
        let moved = format!("{}/moved", moved.url);
        RawServer::start(move |head| match target(head) {
            "/500" => Answer::json(500, r#"{"error":"receiver down"}"#),
            // Mid-response: the status line and part of a header, then RST.
            "/reset" => Answer::Reset {
                prefix: b"HTTP/1.1 200 OK\r\nContent-Le".to_vec(),
            },
            "/redirect" => Answer::Full {
                status: 302,
                headers: vec![("Location".into(), moved.clone())],
                body: Vec::new(),
            },
            "/huge" => Answer::Full {
                status: 500,
                headers: Vec::new(),
                body: huge.clone().into_bytes(),
            },
            "/slow" => Answer::Slow(Duration::from_secs(3)),
            _ => Answer::json(404, ""),
        })
        .await
    };
    // A plain-HTTP server reached over https: it answers the ClientHello with an HTTP 400, and
    // the TLS handshake fails.
    let plain = {
        let (listener, url) = listen().await;
        let url = url.replacen("http://", "https://", 1);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut hello = [0u8; 512];
                    let _ = sock.read(&mut hello).await;
                    let _ = sock
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        url
    };
    let secret = pollhook::sign::generate_secret(pollhook::sign::Scheme::StandardWebhooks);
    let endpoint = |name: &str, url: &str| Endpoint::new(name, url, "standard-webhooks", &secret);
    let f = &faulty.url;
    let mut p = Pipeline::start(
        ConfigBuilder::without_storage()
            .source(
                Source::json_server("shop", &shop.url)
                    .resource(Resource::new("orders", "1h").set("initial", "emit")),
            )
            .loopback_delivery()
            .set("delivery.timeout", "2s")
            .set("delivery.retries", vec!["100ms", "100ms"])
            .endpoint(endpoint("healthy", &format!("{}/hooks", healthy.url)))
            .endpoint(endpoint("error", &format!("{f}/500")))
            .endpoint(endpoint("reset", &format!("{f}/reset")))
            .endpoint(endpoint("redirect", &format!("{f}/redirect")))
            .endpoint(endpoint("huge", &format!("{f}/huge")))
            .endpoint(endpoint("slow", &format!("{f}/slow")).set("timeout", "300ms"))
            .endpoint(endpoint("tls", &format!("{plain}/tls")))
            .endpoint(endpoint("dns", "http://no-such-host.invalid/hooks")),
    );

    let rows = eventually("every delivery to end", PATIENCE, async || {
        let rows = all_deliveries(&p.store);
        (rows.len() == 8 && rows.iter().all(|d| d.status != "pending")).then_some(rows)
    })
    .await;
    let by_name: BTreeMap<&str, &DeliveryRow> =
        rows.iter().map(|d| (d.endpoint.as_str(), d)).collect();
    assert_eq!(by_name["healthy"].status, "delivered");
    assert_eq!(healthy.received().len(), 1);

    let attempts = |name: &str| -> Vec<AttemptRow> {
        let d = by_name[name];
        assert_eq!(d.status, "failed", "{name}: {d:?}");
        assert_eq!(d.attempts, 3, "{name}: {d:?}");
        let list = block_on(p.store.attempts(&d.id.to_string())).unwrap();
        assert_eq!(list.len(), 3, "{name}: every attempt is recorded");
        for pair in list.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(
                gap >= chrono::Duration::milliseconds(50),
                "{name}: the retry came {gap} after the previous attempt, before its schedule"
            );
        }
        list
    };
    let errors = |list: &[AttemptRow]| -> Vec<String> {
        list.iter()
            .map(|a| a.error.clone().unwrap_or_default())
            .collect()
    };

    for a in attempts("error") {
        assert_eq!(a.status, Some(500));
        assert_eq!(a.error.as_deref(), Some("HTTP 500"));
        assert_eq!(a.response.as_deref(), Some(r#"{"error":"receiver down"}"#));
    }
    for a in attempts("redirect") {
        assert_eq!(a.status, Some(302), "a redirect is a failure");
    }
    assert!(moved.received().is_empty(), "the redirect was followed");
    for a in attempts("huge") {
        assert_eq!(a.status, Some(500));
        let kept = a.response.unwrap_or_default();
        assert_eq!(kept.len(), 1024, "only the first KiB of a response is kept");
    }
    let slow = attempts("slow");
    assert!(slow.iter().all(|a| a.status.is_none()));
    for e in errors(&slow) {
        assert!(e.contains("timed out after 300ms"), "{e}");
    }
    let reset = attempts("reset");
    assert!(reset.iter().all(|a| a.status.is_none()));
    for e in errors(&reset) {
        assert!(
            e.contains("request failed") && (e.contains("reset") || e.contains("closed")),
            "{e}"
        );
    }
    let tls = attempts("tls");
    assert!(tls.iter().all(|a| a.status.is_none()));
    for e in errors(&tls) {
        assert!(e.contains("cannot connect"), "{e}");
    }
    let dns = attempts("dns");
    assert!(dns.iter().all(|a| a.status.is_none()));
    for e in errors(&dns) {
        assert!(e.contains("cannot resolve no-such-host.invalid"), "{e}");
    }
    for name in ["error", "reset", "redirect", "huge", "slow", "tls", "dns"] {
        let first = p
            .store
            .attempts(&by_name[name].id.to_string())
            .await
            .unwrap();
        println!(
            "endpoint fault {name}: 3 attempts, then failed; first error: {}",
            first[0].error.as_deref().unwrap_or_default()
        );
    }
    let hits = faulty.targets();
    for path in ["/500", "/reset", "/redirect", "/huge", "/slow"] {
        assert_eq!(
            hits.iter().filter(|t| *t == path).count(),
            3,
            "{path}: three requests reached the endpoint"
        );
    }
    p.stop().await;
}

// ───────────────────────────── storage faults ─────────────────────────────

/// `pollhook ARGS… --config DIR/pollhook.toml`.
fn pollhook(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = std_command();
    cmd.args(args)
        .arg("--config")
        .arg(dir.join("pollhook.toml"));
    cmd
}

/// Runs a pollhook command to its end (bounded), returning (exit code, stderr).
fn finish(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pollhook did not exit within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `pollhook.toml` in `dir`: the database at `storage`, the shop at `source_url`.
fn write_config(dir: &Path, storage: &str, source_url: &str) -> PathBuf {
    ConfigBuilder::new(dir)
        .set("storage.path", storage)
        .source(Source::json_server("shop", source_url).resource(Resource::new("orders", "200ms")))
        .write()
}

/// No Rust `Debug` noise, no panic and no SQLite error-code noise in what a user reads, and the
/// cause `cause` said exactly once (an error chain printed with `{:#}` repeats a cause that a
/// message also embeds).
fn assert_clean(stderr: &str, cause: &str) {
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("{ "), "a Debug dump: {stderr}");
    assert!(!stderr.contains("Os {"), "a Debug dump: {stderr}");
    assert!(
        !stderr.contains("Error code "),
        "SQLite's error-code noise: {stderr}"
    );
    let said = stderr.to_lowercase().matches(&cause.to_lowercase()).count();
    assert_eq!(said, 1, "`{cause}` said {said} times: {stderr}");
}

#[test]
fn a_database_path_under_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("afile"), "not a directory").unwrap();
    for storage in [
        "/dev/null/pollhook.db".to_owned(),
        dir.path().join("afile/pollhook.db").display().to_string(),
    ] {
        write_config(dir.path(), &storage, "http://127.0.0.1:9");
        for command in [["run"].as_slice(), ["status"].as_slice()] {
            let (code, stderr) = finish(pollhook(dir.path(), command));
            assert_eq!(code, Some(1), "{command:?} {storage}: {stderr}");
            assert!(stderr.starts_with("error: "), "{stderr}");
            assert!(stderr.contains(&storage), "names the file: {stderr}");
            assert_clean(&stderr, "not a directory");
        }
    }
}

#[test]
fn a_database_path_that_is_a_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db-dir");
    std::fs::create_dir(&db).unwrap();
    write_config(dir.path(), &db.display().to_string(), "http://127.0.0.1:9");
    let (code, stderr) = finish(pollhook(dir.path(), &["run"]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot open database {}", db.display())),
        "{stderr}"
    );
    assert_clean(&stderr, "is a directory");
}

#[test]
fn a_corrupt_database_is_a_clear_error_naming_the_file() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pollhook.db");
    let mut noise = vec![0u8; 16 * 1024];
    rand::rngs::StdRng::seed_from_u64(7).fill(noise.as_mut_slice());
    std::fs::write(&db, &noise).unwrap();
    // In-process: the typed error.
    let err = Store::open(&db).err().expect("a corrupt file is refused");
    let text = err.to_string();
    assert!(
        text.contains(&format!("cannot open database {}", db.display())),
        "{text}"
    );
    assert!(text.contains("not a database"), "{text}");
    // The binary: every command that opens it says the same and exits 1.
    write_config(dir.path(), "pollhook.db", "http://127.0.0.1:9");
    for command in [["run"].as_slice(), ["status"].as_slice()] {
        let (code, stderr) = finish(pollhook(dir.path(), command));
        assert_eq!(code, Some(1), "{command:?}: {stderr}");
        assert!(
            stderr.starts_with("error: cannot open database"),
            "{stderr}"
        );
        assert_clean(&stderr, "not a database");
    }
    assert_eq!(
        std::fs::read(&db).unwrap(),
        noise,
        "the file was left as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_database_refuses_and_the_first_keeps_working() {
    let shop = pollhook::demo::FakeShop::start(3).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "pollhook.db", &shop.url);
    let first = spawn_run(&config, &dir.path().join("first.log"));
    // Opened once the first run has created it, so the two never race to migrate it.
    eventually(
        first.waiting_for("the first run to start"),
        PATIENCE,
        async || first.logged("pollhook running").then_some(()),
    )
    .await;
    let store = Store::open(&dir.path().join("pollhook.db")).unwrap();
    let polled = || {
        block_on(store.status())
            .ok()?
            .into_iter()
            .find(|s| s.last_outcome.is_some())?
            .last_poll_at
    };
    let before = eventually("the first run to poll", PATIENCE, async || polled()).await;

    let (code, stderr) = finish(pollhook(dir.path(), &["run"]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("another `pollhook run` is already using"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pollhook.db"),
        "names the database: {stderr}"
    );
    assert_clean(&stderr, "already using");

    let mut first = first;
    assert!(
        first.try_wait().is_none(),
        "{}",
        first.waiting_for("the first run died")
    );
    shop.churn();
    eventually("the first run to poll again", PATIENCE, async || {
        polled().filter(|at| *at > before)
    })
    .await;
    first.kill();
}
