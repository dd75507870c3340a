//! With `page_concurrency` above 1, a listing whose answers say which pages follow (a stated
//! total, `Link: rel="last"`) has those pages asked for while the page before is still being
//! read; each is taken only when the pager names it in its turn. The fake API logs every page
//! asked for and how many were in flight at once, and can hold one page back until the page
//! after it has been asked for, which only a fetch asking ahead can do.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::support::{ConfigBuilder, Harness, Resource, Source, lock, orders, start};

/// What the fake saw.
#[derive(Default)]
struct Seen {
    /// Page numbers asked for, in arrival order.
    asked: Vec<u64>,
    in_flight: usize,
    most_in_flight: usize,
    /// Whether the held page saw the page after it asked for while it was held.
    overtaken: bool,
}

/// A page's items and, for a `Link` header, its next and last page numbers (each if any).
type Served = (Vec<Value>, Option<(Option<u64>, Option<u64>)>);

struct Fake {
    seen: Mutex<Seen>,
    arrived: Notify,
    /// The page to hold back until the next one is asked for.
    hold: Mutex<Option<u64>>,
    /// Whether pages carry an `ETag` (over their body) and answer a matching `If-None-Match`
    /// with 304.
    etag: bool,
    pages: Box<dyn Fn(u64) -> Served + Send + Sync>,
    /// `X-Total-Count`, if stated.
    total: Option<usize>,
}

async fn page(
    State(fake): State<Arc<Fake>>,
    Query(q): Query<Vec<(String, String)>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let number = q
        .iter()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1);
    {
        let mut seen = lock(&fake.seen);
        seen.asked.push(number);
        seen.in_flight += 1;
        seen.most_in_flight = seen.most_in_flight.max(seen.in_flight);
    }
    fake.arrived.notify_waiters();
    let hold = *lock(&fake.hold);
    if hold == Some(number) {
        // Bounded: a fetch that never asks ahead gets its page after the wait, and the test
        // fails on `overtaken`, not on time.
        let overtaken = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let arrived = fake.arrived.notified();
                if lock(&fake.seen).asked.contains(&(number + 1)) {
                    return;
                }
                arrived.await;
            }
        })
        .await
        .is_ok();
        lock(&fake.seen).overtaken = overtaken;
    }
    let (items, links) = (fake.pages)(number);
    lock(&fake.seen).in_flight -= 1;
    let body = Value::Array(items).to_string();
    let tag = format!("\"{:x}\"", {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&body, &mut hasher);
        std::hash::Hasher::finish(&hasher)
    });
    if fake.etag
        && headers
            .get("if-none-match")
            .is_some_and(|h| h == tag.as_str())
    {
        return axum::http::StatusCode::NOT_MODIFIED.into_response();
    }
    let mut response = ([("content-type", "application/json")], body).into_response();
    let headers = response.headers_mut();
    if fake.etag {
        headers.insert("etag", tag.parse().expect("an ASCII ETag"));
    }
    if let Some(total) = fake.total {
        headers.insert("x-total-count", total.into());
    }
    if let Some((next, last)) = links {
        let link = |n: u64, rel: &str| format!("</orders?page={n}&per_page=3>; rel=\"{rel}\"");
        let links: Vec<String> = [next.map(|n| link(n, "next")), last.map(|n| link(n, "last"))]
            .into_iter()
            .flatten()
            .collect();
        if !links.is_empty() {
            headers.insert(
                "link",
                links.join(", ").parse().expect("an ASCII Link header"),
            );
        }
    }
    response
}

impl Fake {
    /// Serves `pages`: no page held back, no ETags, no stated total.
    fn serving(pages: impl Fn(u64) -> Served + Send + Sync + 'static) -> Fake {
        Fake {
            seen: Mutex::default(),
            arrived: Notify::new(),
            hold: Mutex::new(None),
            etag: false,
            pages: Box::new(pages),
            total: None,
        }
    }
}

/// Page `n` (from 1) of `all`, 3 a page.
fn third(all: &[Value], n: u64) -> Vec<Value> {
    let start = ((n.max(1) - 1) * 3) as usize;
    all.iter().skip(start).take(3).cloned().collect()
}

async fn fake_api(fake: Fake) -> (String, Arc<Fake>) {
    let fake = Arc::new(fake);
    let app = axum::Router::new()
        .route("/orders", axum::routing::get(page))
        .with_state(fake.clone());
    (start(app).await, fake)
}

/// 20 orders, 3 a page (pages 1 to 7), their count in `X-Total-Count`.
fn counted(hold: Option<u64>) -> Fake {
    let all = orders(20);
    Fake {
        hold: Mutex::new(hold),
        total: Some(20),
        ..Fake::serving(move |n| (third(&all, n), None))
    }
}

fn harness(url: &str, pagination: &str, page_concurrency: Option<i64>) -> Harness {
    harness_with(url, pagination, page_concurrency, false)
}

fn harness_with(
    url: &str,
    pagination: &str,
    page_concurrency: Option<i64>,
    conditional: bool,
) -> Harness {
    let table: toml::Table = format!("v = {pagination}").parse().unwrap();
    let orders = Resource::new("orders", "1m")
        .set("path", "/orders")
        .set("pagination", table["v"].clone())
        .set("conditional", conditional);
    let mut source = Source::new("shop", url).set("adapter", "rest");
    if let Some(n) = page_concurrency {
        source = source.set("page_concurrency", n);
    }
    Harness::new(
        &ConfigBuilder::without_storage()
            .source(source.resource(orders))
            .toml(),
    )
}

const PAGE_TOTAL: &str = r#"{ style = "page", page_param = "page", size_param = "per_page", size = 3, total_header = "X-Total-Count" }"#;

fn taken(fake: &Fake) -> Vec<u64> {
    let mut seen = lock(&fake.seen);
    seen.most_in_flight = 0;
    std::mem::take(&mut seen.asked)
}

#[tokio::test]
async fn pages_a_stated_total_names_are_asked_for_ahead_and_each_once() {
    let (url, fake) = fake_api(counted(Some(2))).await;
    let h = harness(&url, PAGE_TOTAL, Some(4));
    let report = h.poll().await.unwrap();
    assert_eq!((report.listed, report.pages), (20, 7));
    assert_eq!(
        h.snapshot_ids(),
        (1..=20).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    {
        let seen = lock(&fake.seen);
        assert!(seen.overtaken, "page 3 was asked for while page 2 was held");
        assert!(seen.most_in_flight > 1, "{}", seen.most_in_flight);
        assert!(seen.most_in_flight <= 4, "{}", seen.most_in_flight);
    }
    let mut asked = taken(&fake);
    assert_eq!(asked[0], 1, "page 1 alone: nothing is known before it");
    asked.sort_unstable();
    assert_eq!(
        asked,
        (1..=7).collect::<Vec<_>>(),
        "each page once, none past the total"
    );

    // Unchanged: the same pages again, and nothing to report.
    let again = h.poll().await.unwrap();
    assert_eq!((again.listed, again.events.len()), (20, 0));
    let mut asked = taken(&fake);
    asked.sort_unstable();
    assert_eq!(asked, (1..=7).collect::<Vec<_>>());
}

#[tokio::test]
async fn pages_are_asked_one_after_another_unless_page_concurrency_says_otherwise() {
    let (url, fake) = fake_api(counted(None)).await;
    let h = harness(&url, PAGE_TOTAL, None);
    assert_eq!(h.poll().await.unwrap().listed, 20);
    assert_eq!(lock(&fake.seen).most_in_flight, 1);
    assert_eq!(taken(&fake), (1..=7).collect::<Vec<_>>());
}

#[tokio::test]
async fn guesses_the_listing_does_not_bear_out_cost_one_round_and_are_never_taken() {
    // `Link` headers whose `last` is page 10 but whose next pages run 1, 2, 4, 6, 8, 10. Pages
    // guessed from the first answer (3 and 5) hold decoys that must never be taken.
    let chain = [1, 2, 4, 6, 8, 10];
    let fake = Fake::serving(move |n| {
        let items = (0..3)
            .map(|k| json!({"id": n * 100 + k, "page": n}))
            .collect();
        let next = chain
            .iter()
            .position(|&c| c == n)
            .and_then(|at| chain.get(at + 1).copied());
        (items, Some((next, Some(10))))
    });
    let (url, fake) = fake_api(fake).await;
    let h = harness(&url, r#"{ style = "link-header" }"#, Some(4));
    let wanted: Vec<String> = chain
        .iter()
        .flat_map(|n| (0..3).map(move |k| (n * 100 + k).to_string()))
        .collect();
    for _ in 0..2 {
        let report = h.poll().await.unwrap();
        assert_eq!((report.listed, report.pages), (18, 6));
        assert_eq!(h.snapshot_ids(), wanted);
        // The six pages; 3, 4 and 5 guessed with 2 after page 1; page 4 asked again once page
        // 2 named it and the guesses were dropped; then one page after another.
        let mut asked = taken(&fake);
        asked.sort_unstable();
        assert_eq!(asked, [1, 2, 3, 4, 4, 5, 6, 8, 10]);
    }
    assert_eq!(
        h.poll().await.unwrap().events.len(),
        0,
        "nothing deleted or created"
    );
}

#[tokio::test]
async fn a_conditional_listing_asks_ahead_along_the_pages_the_last_poll_walked() {
    // Seven pages linked by `rel="next"` only: their answers never say which pages follow.
    let all = orders(20);
    let fake = Fake {
        etag: true,
        ..Fake::serving(move |n| (third(&all, n), Some(((n < 7).then_some(n + 1), None))))
    };
    let (url, fake) = fake_api(fake).await;
    let h = harness_with(&url, r#"{ style = "link-header" }"#, Some(4), true);
    assert_eq!(h.poll().await.unwrap().listed, 20);
    assert_eq!(
        lock(&fake.seen).most_in_flight,
        1,
        "nothing to guess from yet"
    );
    assert_eq!(taken(&fake), (1..=7).collect::<Vec<_>>());

    // Page 1 answers 304; its record names page 2, whose record names page 3, and so on.
    *lock(&fake.hold) = Some(2);
    let again = h.poll().await.unwrap();
    assert_eq!((again.listed, again.events.len()), (20, 0));
    assert!(
        lock(&fake.seen).overtaken,
        "page 3 was asked for while page 2 was held"
    );
    let mut asked = taken(&fake);
    asked.sort_unstable();
    assert_eq!(asked, (1..=7).collect::<Vec<_>>(), "each page once");
    assert_eq!(h.snapshot_ids().len(), 20);
}

/// The fake for delete confirmations: the listing (one page, the ids in `listed`), and each
/// item's own URL answering 404 for what is not listed, the first such request held back until a
/// second one arrives.
struct Items {
    listed: Mutex<Vec<u64>>,
    seen: Mutex<Seen>,
    arrived: Notify,
}

async fn items_list(State(fake): State<Arc<Items>>) -> Response {
    let listed = lock(&fake.listed).clone();
    axum::Json(
        listed
            .iter()
            .map(|id| json!({"id": id}))
            .collect::<Vec<_>>(),
    )
    .into_response()
}

async fn one_item(
    State(fake): State<Arc<Items>>,
    axum::extract::Path(id): axum::extract::Path<u64>,
) -> Response {
    let first = {
        let mut seen = lock(&fake.seen);
        seen.asked.push(id);
        seen.in_flight += 1;
        seen.most_in_flight = seen.most_in_flight.max(seen.in_flight);
        seen.asked.len() == 1
    };
    fake.arrived.notify_waiters();
    if first {
        let overtaken = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let arrived = fake.arrived.notified();
                if lock(&fake.seen).asked.len() > 1 {
                    return;
                }
                arrived.await;
            }
        })
        .await
        .is_ok();
        lock(&fake.seen).overtaken = overtaken;
    }
    lock(&fake.seen).in_flight -= 1;
    let status = match lock(&fake.listed).contains(&id) {
        true => axum::http::StatusCode::OK,
        false => axum::http::StatusCode::NOT_FOUND,
    };
    (status, axum::Json(json!({"id": id}))).into_response()
}

#[tokio::test]
async fn deletes_are_confirmed_at_their_items_urls_page_concurrency_at_a_time() {
    let fake = Arc::new(Items {
        listed: Mutex::new((1..=6).collect()),
        seen: Mutex::default(),
        arrived: Notify::new(),
    });
    let app = axum::Router::new()
        .route("/orders", axum::routing::get(items_list))
        .route("/orders/{id}", axum::routing::get(one_item))
        .with_state(fake.clone());
    let url = start(app).await;
    let orders = Resource::new("orders", "1m")
        .set("path", "/orders")
        .set("item_path", "/orders/{id}")
        .set("max_delete_ratio", 1.0);
    let source = Source::new("shop", &url)
        .set("adapter", "rest")
        .set("page_concurrency", 4);
    let h = Harness::new(
        &ConfigBuilder::without_storage()
            .source(source.resource(orders))
            .toml(),
    );
    assert_eq!(h.poll().await.unwrap().listed, 6);

    lock(&fake.listed).retain(|id| id % 2 == 0);
    let report = h.poll().await.unwrap();
    let deleted: Vec<(&str, &str)> = report
        .events
        .iter()
        .map(|e| (e.action.as_str(), e.resource_id.as_str()))
        .collect();
    assert_eq!(
        deleted,
        [("deleted", "1"), ("deleted", "3"), ("deleted", "5")]
    );
    let seen = lock(&fake.seen);
    assert!(
        seen.overtaken,
        "a second item was asked about while the first was held"
    );
    let mut asked = seen.asked.clone();
    asked.sort_unstable();
    assert_eq!(asked, [1, 3, 5], "each candidate once");
    assert!(
        (2..=4).contains(&seen.most_in_flight),
        "{}",
        seen.most_in_flight
    );
}
