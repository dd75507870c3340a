//! A `page` or `offset` listing whose answers state its length (`total_header`, `total`) ends once
//! the items fetched reach that total, one request before the empty page that ends it otherwise;
//! never earlier: a missing, garbled or larger total, or pages shorter than asked, leave the empty
//! page to end it. A total that shrinks or grows mid-listing counts as stated last. A last page
//! that answers 304 is not taken as the end of such a listing.
//!
//! Each case counts the requests the fake API saw.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::{ConfigBuilder, Harness, Reply, Resource, ScriptedApi, Source, lock, orders};

/// What the fake serves: the listing, and what it states as its length.
struct Served {
    items: Vec<Value>,
    /// The `X-Total-Count` value (or the body's `total`); `None` leaves it out.
    total: Option<String>,
    /// At most this many items a page, whatever was asked (an API's own cap).
    cap: usize,
    /// Run after each answer (a listing that changes while it is walked).
    after: Option<Change>,
}

/// A change to what is served.
type Change = Box<dyn FnMut(&mut Served) + Send>;

type Shared = Arc<Mutex<Served>>;

fn served(n: u64, total: Option<&str>) -> Shared {
    Arc::new(Mutex::new(Served {
        items: orders(n),
        total: total.map(str::to_owned),
        cap: usize::MAX,
        after: None,
    }))
}

/// The slice of the listing from `start`, `size` long (capped), and the stated total.
fn slice(served: &Shared, start: usize, size: usize) -> (Vec<Value>, Option<String>) {
    let mut s = lock(served);
    let end = (start + size.min(s.cap)).min(s.items.len());
    let items = s.items[start.min(end)..end].to_vec();
    let total = s.total.clone();
    if let Some(mut after) = s.after.take() {
        after(&mut s);
        s.after = Some(after);
    }
    (items, total)
}

/// `?page=N&per_page=S` (from 1), a JSON array, the total in `X-Total-Count`. With `etag`, each
/// page carries an `ETag` over its body (not the total, as json-server's does) and answers 304
/// to it.
async fn page_api(served: Shared, etag: bool) -> ScriptedApi {
    ScriptedApi::start(move |req| {
        let page: usize = req.q("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let asked: usize = req.q("per_page").and_then(|p| p.parse().ok()).unwrap_or(3);
        // An API that caps the page size pages by its own size.
        let size = asked.min(lock(&served).cap);
        let (items, total) = slice(&served, (page.max(1) - 1) * size, size);
        let body = Value::Array(items).to_string();
        let tag = format!("\"{:x}\"", {
            let mut hasher = std::hash::DefaultHasher::new();
            body.hash(&mut hasher);
            hasher.finish()
        });
        if etag && req.header("if-none-match") == Some(tag.as_str()) {
            return Reply::status(304, "");
        }
        let mut reply = Reply::status(200, body).with("content-type", "application/json");
        if etag {
            reply = reply.with("etag", tag);
        }
        match total {
            Some(total) => reply.with("x-total-count", total),
            None => reply,
        }
    })
    .await
}

/// `?offset=N&limit=S`, `{"data": [...], "meta": {"total": T}}` (`T` a number if it reads as one).
async fn offset_api(served: Shared) -> ScriptedApi {
    ScriptedApi::start(move |req| {
        let offset: usize = req.q("offset").and_then(|p| p.parse().ok()).unwrap_or(0);
        let limit: usize = req.q("limit").and_then(|p| p.parse().ok()).unwrap_or(3);
        let (items, total) = slice(&served, offset, limit);
        let total = match total {
            Some(t) => t.parse::<u64>().map_or(json!(t), |n| json!(n)),
            None => Value::Null,
        };
        Reply::json(&json!({"data": items, "meta": {"total": total, "limit": limit}}))
    })
    .await
}

/// A TOML inline table, e.g. `{ style = "page", size = 3 }`.
fn inline(text: &str) -> toml::Value {
    let table: toml::Table = format!("v = {text}").parse().unwrap();
    table["v"].clone()
}

fn harness(api: &ScriptedApi, pagination: &str, extra: &[(&str, toml::Value)]) -> Harness {
    let mut orders = Resource::new("orders", "1m")
        .set("path", "/orders")
        .set("pagination", inline(pagination));
    for (key, value) in extra {
        orders = orders.set(key, value.clone());
    }
    let source = Source::new("shop", &api.url).set("adapter", "rest");
    Harness::new(
        &ConfigBuilder::without_storage()
            .source(source.resource(orders))
            .toml(),
    )
}

const PAGE: &str = r#"{ style = "page", page_param = "page", size_param = "per_page", size = 3 }"#;
const PAGE_TOTAL: &str = r#"{ style = "page", page_param = "page", size_param = "per_page", size = 3, total_header = "X-Total-Count" }"#;

/// The page numbers asked for, in order.
fn pages_asked(api: &ScriptedApi) -> Vec<String> {
    let asked = api
        .requests()
        .iter()
        .map(|r| r.q("page").unwrap_or("-").to_owned())
        .collect();
    api.clear();
    asked
}

#[tokio::test]
async fn a_page_listing_ends_at_the_total_its_header_states() {
    // Without `total_header`, the same API: the empty page 4 ends the listing.
    let api = page_api(served(7, Some("7")), false).await;
    let h = harness(&api, PAGE, &[]);
    assert_eq!(h.poll().await.unwrap().listed, 7);
    assert_eq!(pages_asked(&api), ["1", "2", "3", "4"]);

    let h = harness(&api, PAGE_TOTAL, &[]);
    for _ in 0..2 {
        let report = h.poll().await.unwrap();
        assert_eq!((report.listed, report.pages), (7, 3));
        assert_eq!(
            pages_asked(&api),
            ["1", "2", "3"],
            "page 3 reached the total of 7"
        );
    }
    assert_eq!(h.snapshot_ids().len(), 7);
}

#[tokio::test]
async fn an_offset_listing_ends_at_the_total_in_its_body() {
    let api = offset_api(served(6, Some("6"))).await;
    let style = r#"{ style = "offset", size = 3, total = "$.meta.total" }"#;
    let h = harness(&api, style, &[("items", "$.data".into())]);
    assert_eq!(h.poll().await.unwrap().listed, 6);
    let offsets: Vec<String> = api
        .requests()
        .iter()
        .map(|r| r.q("offset").unwrap().to_owned())
        .collect();
    assert_eq!(offsets, ["0", "3"]);
}

#[tokio::test]
async fn a_missing_or_garbled_total_falls_back_to_the_empty_page() {
    for total in [None, Some("lots"), Some(""), Some("-7"), Some("7.0")] {
        let api = page_api(served(7, total), false).await;
        let h = harness(&api, PAGE_TOTAL, &[]);
        assert_eq!(h.poll().await.unwrap().listed, 7, "{total:?}");
        assert_eq!(pages_asked(&api), ["1", "2", "3", "4"], "{total:?}");
    }
    // In the body: not there, null, or not a number.
    for total in [None, Some("many")] {
        let api = offset_api(served(5, total)).await;
        let style = r#"{ style = "offset", size = 3, total = "$.meta.total" }"#;
        let h = harness(&api, style, &[("items", "$.data".into())]);
        assert_eq!(h.poll().await.unwrap().listed, 5, "{total:?}");
        assert_eq!(
            api.requests().len(),
            3,
            "{total:?}: offsets 0, 3 and the empty 5"
        );
    }
}

#[tokio::test]
async fn a_total_larger_than_what_was_fetched_never_ends_the_listing_early() {
    // The API caps its pages at 2 items though 3 were asked: page 3 ends at item 6 of 7.
    let capped = served(7, Some("7"));
    lock(&capped).cap = 2;
    let api = page_api(capped, false).await;
    let h = harness(&api, PAGE_TOTAL, &[]);
    let report = h.poll().await.unwrap();
    assert_eq!(report.listed, 7);
    assert_eq!(
        pages_asked(&api),
        ["1", "2", "3", "4"],
        "page 4 holds item 7; the total stops there"
    );

    // A total larger than the listing: the empty page ends it, and nothing is deleted.
    let api = page_api(served(7, Some("100")), false).await;
    let h = harness(&api, PAGE_TOTAL, &[("initial", "emit".into())]);
    assert_eq!(h.poll().await.unwrap().listed, 7);
    assert_eq!(pages_asked(&api), ["1", "2", "3", "4"]);
    let second = h.poll().await.unwrap();
    assert_eq!((second.listed, second.events.len()), (7, 0));
}

#[tokio::test]
async fn a_total_that_shrinks_or_grows_mid_listing_counts_as_last_stated() {
    // Three items go after page 1 is served: page 2 states 6, and 6 fetched reach it. Page 3
    // would have been empty (items 7–9 of a listing of 6).
    let shrinking = served(9, Some("9"));
    lock(&shrinking).after = Some(Box::new(|s: &mut Served| {
        if s.items.len() == 9 {
            s.items.truncate(6);
            s.total = Some("6".into());
        }
    }));
    let api = page_api(shrinking, false).await;
    let h = harness(&api, PAGE_TOTAL, &[]);
    assert_eq!(h.poll().await.unwrap().listed, 6);
    assert_eq!(pages_asked(&api), ["1", "2"]);

    // Three items are added after page 1: page 2 states 9, so the listing goes on to page 3.
    let growing = served(6, Some("6"));
    lock(&growing).after = Some(Box::new(|s: &mut Served| {
        if s.items.len() == 6 {
            s.items = orders(9);
            s.total = Some("9".into());
        }
    }));
    let api = page_api(growing, false).await;
    let h = harness(&api, PAGE_TOTAL, &[]);
    assert_eq!(h.poll().await.unwrap().listed, 9);
    assert_eq!(pages_asked(&api), ["1", "2", "3"]);
}

#[tokio::test]
async fn a_last_page_that_a_total_ended_is_fetched_whole_under_conditional_requests() {
    let shop = served(6, Some("6"));
    let api = page_api(shop.clone(), true).await;
    let h = harness(
        &api,
        PAGE_TOTAL,
        &[("conditional", true.into()), ("initial", "emit".into())],
    );
    assert_eq!(h.poll().await.unwrap().listed, 6);
    assert_eq!(pages_asked(&api), ["1", "2"]);

    // Item 7 lands on a new page 3: pages 1 and 2 are as they were (their ETags match), only
    // the total says more follow. Page 2 ended the listing, so it is asked without validators.
    {
        let mut s = lock(&shop);
        s.items = orders(7);
        s.total = Some("7".into());
    }
    let report = h.poll().await.unwrap();
    assert_eq!(report.listed, 7);
    let statuses: Vec<(String, u16)> = api
        .requests()
        .iter()
        .map(|r| (r.q("page").unwrap_or("-").to_owned(), r.status))
        .collect();
    assert_eq!(statuses[..2], [("1".into(), 304), ("2".into(), 200)]);
    assert_eq!(report.events.len(), 1, "item 7 created");
    assert_eq!(
        (
            report.events[0].action.as_str(),
            report.events[0].resource_id.as_str()
        ),
        ("created", "7")
    );
}
