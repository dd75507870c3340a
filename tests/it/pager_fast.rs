//! Pages whose pager reads the body (`next-url`, `cursor`), GraphQL connections and exec output
//! are cut into items without parsing them, like `page` listings: the events are what parsing
//! the page gave, byte for byte; the snapshot holds each item's hash of the bytes as served
//! (which only the unparsed path records); an item whose bytes change but whose canonical form
//! does not is no update; an item without an id is the same located error; the listing ends on
//! the same page.
//!
//! Each case polls one listing twice over: through `items = "$.data"` (a plain member path, cut
//! unparsed) and `items = "$.data[*]"` (a wildcard, so the page is parsed whole), each into a
//! database of its own.

use std::sync::{Arc, Mutex};

use pollhook::normalize::Normalizer;
use pollhook::poll::PollReport;
use serde_json::Value;

use crate::support::{
    ConfigBuilder, Harness, Reply, Resource, ScriptedApi, Source, lock, stable, table,
};

/// The listing as served: `(id, the item's text)`, in order.
type Listing = Arc<Mutex<Vec<(u64, String)>>>;

const PER_PAGE: usize = 2;

/// An item's text as an API might send it: spaced, keys unsorted, members named like the pager's
/// fields, nested lists, escapes.
fn item(id: u64, status: &str) -> String {
    format!(
        r#"{{ "status" : "{status}", "id": {id}, "next": "/decoy", "has_more": false,
  "pageInfo": {{"hasNextPage": true, "endCursor": "zz"}}, "tags": [["a", "b]"], []], "note": "q\"uo]te\u00e9 {id}" }}"#
    )
}

fn listing(n: u64) -> Listing {
    Arc::new(Mutex::new(
        (1..=n).map(|id| (id, item(id, "open"))).collect(),
    ))
}

/// Updated 2, deleted 3, created 7, and 4 sent in other bytes with the same canonical form.
fn churn(listing: &Listing) {
    let mut items = lock(listing);
    items.retain(|(id, _)| *id != 3);
    for (id, text) in items.iter_mut() {
        match *id {
            2 => *text = item(2, "paid"),
            4 => {
                // Keys in other order, compact, and `é` as itself rather than `\u00e9`.
                *text = r#"{"note":"q\"uo]teé 4","id":4,"next":"/decoy","has_more":false,"pageInfo":{"endCursor":"zz","hasNextPage":true},"status":"open","tags":[["a","b]"],[]]}"#.to_owned();
            }
            _ => {}
        }
    }
    items.push((7, item(7, "open")));
}

/// Item 5 without an id.
fn lose_an_id(listing: &Listing) {
    for (id, text) in lock(listing).iter_mut() {
        if *id == 5 {
            *text = text.replace("\"id\": 5,", "\"id_\": 5,");
        }
    }
}

fn page_of(items: &[(u64, String)], start: usize) -> (String, bool) {
    let end = (start + PER_PAGE).min(items.len());
    let texts: Vec<&str> = items[start.min(end)..end]
        .iter()
        .map(|(_, t)| t.as_str())
        .collect();
    (format!("[{}]", texts.join(" ,\n ")), end < items.len())
}

fn json(body: String) -> Reply {
    Reply::status(200, body).with("content-type", "application/json")
}

/// `next-url`: `{"data": [...], "links": {"next": "/o?p=N"}}`, the last page's `next` null.
async fn next_url_api(listing: Listing) -> ScriptedApi {
    ScriptedApi::start(move |req| {
        let page: usize = req.q("p").and_then(|p| p.parse().ok()).unwrap_or(0);
        let (items, more) = page_of(&lock(&listing), page * PER_PAGE);
        let next = if more {
            format!("\"/o?p={}\"", page + 1)
        } else {
            "null".into()
        };
        json(format!(
            r#"{{"meta": {{"next": "/wrong"}}, "data": {items}, "links": {{"next": {next}, "prev": "/x"}}}}"#
        ))
    })
    .await
}

/// Stripe's cursor: `starting_after` the last item's id, `has_more`.
async fn cursor_api(listing: Listing) -> ScriptedApi {
    ScriptedApi::start(move |req| {
        let items = lock(&listing);
        let start = match req.q("starting_after").and_then(|a| a.parse::<u64>().ok()) {
            Some(after) => items
                .iter()
                .position(|(id, _)| *id == after)
                .map_or(items.len(), |i| i + 1),
            None => 0,
        };
        let (data, more) = page_of(&items, start);
        json(format!(
            r#"{{"object": "list", "data": {data}, "has_more": {more}, "url": "/v1/c"}}"#
        ))
    })
    .await
}

/// A GraphQL connection: `nodes` and `pageInfo`, the cursor an offset.
async fn graphql_api(listing: Listing) -> ScriptedApi {
    ScriptedApi::start(move |req| {
        let body: Value = serde_json::from_str(&req.body).unwrap_or_default();
        let start: usize = body["variables"]["after"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let (nodes, more) = page_of(&lock(&listing), start);
        json(format!(
            r#"{{"data": {{"orders": {{"nodes": {nodes}, "pageInfo": {{"hasNextPage": {more}, "endCursor": "{}"}}}}}}}}"#,
            start + PER_PAGE
        ))
    })
    .await
}

/// `next-url` over [`next_url_api`].
fn next_url() -> toml::Value {
    table(&[("style", "next-url"), ("next_url", "$.links.next")])
}

/// The config of one source `shop` with its one resource `orders`, polled every minute.
fn shop(source: Source, orders: Resource) -> String {
    ConfigBuilder::without_storage()
        .source(source.resource(orders))
        .toml()
}

fn rest(url: &str, items: &str, pagination: toml::Value) -> String {
    let orders = Resource::new("orders", "1m")
        .set("path", "/o")
        .set("items", items)
        .set("pagination", pagination);
    shop(Source::new("shop", url).set("adapter", "rest"), orders)
}

fn graphql(url: &str, items: &str) -> String {
    let document = "query($after: String) { orders(after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }";
    let pagination = table(&[
        ("style", "cursor"),
        ("cursor_param", "after"),
        ("next_cursor", "$.data.orders.pageInfo.endCursor"),
        ("has_more", "$.data.orders.pageInfo.hasNextPage"),
    ]);
    let orders = Resource::new("orders", "1m")
        .set("document", document)
        .set("items", items)
        .set("pagination", pagination);
    let source = Source::new("shop", &format!("{url}/graphql")).set("adapter", "graphql");
    shop(source, orders)
}

/// The snapshot's hash of each item's bytes, by id.
fn raw_hashes(h: &Harness) -> Vec<(String, Option<Vec<u8>>)> {
    let db = rusqlite::Connection::open(&h.config.storage.path).unwrap();
    let mut rows = db
        .prepare("SELECT item_id, raw_hash FROM snapshot ORDER BY CAST(item_id AS INTEGER)")
        .unwrap();
    rows.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// What the fast path records: the hash of each item's bytes exactly as `listing` serves them.
fn assert_hashed_as_served(h: &Harness, listing: &Listing) {
    let normalizer = Normalizer::new(h.resource.id.clone(), h.resource.ignore.clone());
    let want: Vec<(String, Option<Vec<u8>>)> = lock(listing)
        .iter()
        .map(|(id, text)| (id.to_string(), Some(normalizer.raw_hash(text).to_vec())))
        .collect();
    assert_eq!(
        raw_hashes(h),
        want,
        "the items were not taken as the bytes served"
    );
}

/// How the two polls walk the listing: over the same pages, or each over pages of its own (an
/// exec source prints the listing whole), where only the items can agree, not the page counts or
/// the page an error names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pages {
    Same,
    Own,
}

/// Polls `fast` and `parsed` over `listing` (calling `refresh` after each change, for listings
/// that are files) and checks that they agree at every step.
async fn agree(
    fast: Harness,
    parsed: Harness,
    listing: &Listing,
    pages: Pages,
    refresh: impl Fn(),
) {
    let same_pages = |a: &PollReport, b: &PollReport| {
        assert_eq!(a.listed, b.listed, "items");
        if pages == Pages::Same {
            assert_eq!(a.pages, b.pages, "pages");
        }
    };
    refresh();
    let (a, b) = (fast.poll().await.unwrap(), parsed.poll().await.unwrap());
    assert!(a.baseline && b.baseline);
    same_pages(&a, &b);
    assert_eq!(a.listed, 6);
    assert_hashed_as_served(&fast, listing);
    assert_eq!(fast.snapshot(), parsed.snapshot(), "canonical hashes");

    churn(listing);
    refresh();
    let (a, b) = (fast.poll().await.unwrap(), parsed.poll().await.unwrap());
    same_pages(&a, &b);
    let texts = |events: &[pollhook::event::Event]| -> Vec<String> {
        events.iter().map(|e| stable(e).to_string()).collect()
    };
    assert_eq!(texts(&a.events), texts(&b.events), "the same payloads");
    let actions: Vec<(String, String)> = a
        .events
        .iter()
        .map(|e| {
            let v = stable(e);
            (v["resource_id"].to_string(), v["action"].to_string())
        })
        .collect();
    assert_eq!(
        actions.len(),
        3,
        "2 updated, 3 deleted, 7 created; 4 (same canonical form) unchanged: {actions:?}"
    );
    assert!(
        !actions.iter().any(|(id, _)| id.contains('4')),
        "{actions:?}"
    );
    // Item 4's new bytes are what the snapshot now knows it by.
    assert_hashed_as_served(&fast, listing);

    lose_an_id(listing);
    refresh();
    let a = fast.poll().await.unwrap_err().to_string();
    let b = parsed.poll().await.unwrap_err().to_string();
    assert!(a.contains("id"), "{a}");
    match pages {
        Pages::Same => assert_eq!(a, b, "the same located error"),
        Pages::Own => {
            // The same item, named the same way; the page each names is its own.
            let tail = |e: &str| e.rsplit_once(": ").map(|(_, t)| t.to_owned());
            assert_eq!(tail(&a), tail(&b), "{a} / {b}");
        }
    }
}

#[tokio::test]
async fn next_url_pages_are_cut_unparsed_with_the_same_events() {
    let items = listing(6);
    let api = next_url_api(items.clone()).await;
    let fast = Harness::new(&rest(&api.url, "$.data", next_url()));
    let parsed = Harness::new(&rest(&api.url, "$.data[*]", next_url()));
    agree(fast, parsed, &items, Pages::Same, || {}).await;
}

#[tokio::test]
async fn cursor_pages_with_has_more_are_cut_unparsed_with_the_same_events() {
    let items = listing(6);
    let api = cursor_api(items.clone()).await;
    let style = table(&[
        ("style", "cursor"),
        ("cursor_param", "starting_after"),
        ("next_cursor", "$.data[-1].id"),
        ("has_more", "$.has_more"),
    ]);
    let fast = Harness::new(&rest(&api.url, "$.data", style.clone()));
    let parsed = Harness::new(&rest(&api.url, "$.data[*]", style));
    agree(fast, parsed, &items, Pages::Same, || {}).await;
    // Each page started after the last id of the one before, and the walk stopped at has_more.
    let afters: Vec<Option<String>> = api
        .requests()
        .iter()
        .take(3)
        .map(|r| r.q("starting_after").map(str::to_owned))
        .collect();
    assert_eq!(afters, [None, Some("2".into()), Some("4".into())]);
}

#[tokio::test]
async fn graphql_nodes_are_cut_unparsed_with_the_same_events() {
    let items = listing(6);
    let api = graphql_api(items.clone()).await;
    let fast = Harness::new(&graphql(&api.url, "$.data.orders.nodes"));
    let parsed = Harness::new(&graphql(&api.url, "$.data.orders.nodes[*]"));
    agree(fast, parsed, &items, Pages::Same, || {}).await;
}

/// An exec source printing `listing` from a file (`cat`), as a JSON array or as JSON lines,
/// against the same items parsed from a `next-url` listing.
async fn exec_agrees(lines: bool) {
    let items = listing(6);
    let api = next_url_api(items.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("listing.json");
    let cat = Source::named("shop").set("adapter", "exec").set(
        "command",
        vec!["cat".to_owned(), file.display().to_string()],
    );
    let fast = Harness::new(&shop(cat, Resource::new("orders", "1m")));
    let parsed = Harness::new(&rest(&api.url, "$.data[*]", next_url()));
    let refresh = || {
        // The file holds each item on one line; the listing serves the same bytes.
        let mut items = lock(&items);
        for (_, text) in items.iter_mut() {
            *text = text.replace('\n', " ");
        }
        let texts: Vec<&str> = items.iter().map(|(_, t)| t.as_str()).collect();
        let out = if lines {
            format!("{}\n\n", texts.join("\n"))
        } else {
            format!("  [{}]\n", texts.join(",\n"))
        };
        std::fs::write(&file, out).unwrap();
    };
    agree(fast, parsed, &items, Pages::Own, refresh).await;
}

#[tokio::test]
async fn exec_json_lines_are_cut_unparsed_with_the_same_events() {
    exec_agrees(true).await;
}

#[tokio::test]
async fn exec_json_arrays_are_cut_unparsed_with_the_same_events() {
    exec_agrees(false).await;
}
