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
use serde_json::Value;

use crate::support::{Harness, Reply, ScriptedApi, lock, stable};

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

fn rest(url: &str, items: &str, pagination: &str) -> String {
    format!(
        r#"
[[sources]]
name = "shop"
adapter = "rest"
base_url = "{url}"

  [[sources.resources]]
  name = "orders"
  path = "/o"
  every = "1m"
  items = "{items}"
  pagination = {pagination}
"#
    )
}

fn graphql(url: &str, items: &str) -> String {
    format!(
        r#"
[[sources]]
name = "shop"
adapter = "graphql"
base_url = "{url}/graphql"

  [[sources.resources]]
  name = "orders"
  every = "1m"
  document = "query($after: String) {{ orders(after: $after) {{ nodes {{ id }} pageInfo {{ hasNextPage endCursor }} }} }}"
  items = "{items}"
  pagination = {{ style = "cursor", cursor_param = "after", next_cursor = "$.data.orders.pageInfo.endCursor", has_more = "$.data.orders.pageInfo.hasNextPage" }}
"#
    )
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

/// Polls `fast` and `parsed` over `listing` (calling `refresh` after each change, for listings
/// that are files) and checks that they agree at every step.
async fn agree(fast: Harness, parsed: Harness, listing: &Listing, refresh: impl Fn()) {
    refresh();
    let (a, b) = (fast.poll().await.unwrap(), parsed.poll().await.unwrap());
    assert!(a.baseline && b.baseline);
    assert_eq!((a.listed, a.pages), (b.listed, b.pages), "pages and items");
    assert_eq!(a.listed, 6);
    assert_hashed_as_served(&fast, listing);
    assert_eq!(fast.snapshot(), parsed.snapshot(), "canonical hashes");

    churn(listing);
    refresh();
    let (a, b) = (fast.poll().await.unwrap(), parsed.poll().await.unwrap());
    assert_eq!((a.listed, a.pages), (b.listed, b.pages), "pages and items");
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
    let (a, b) = (fast.poll().await, parsed.poll().await);
    let (a, b) = (a.unwrap_err().to_string(), b.unwrap_err().to_string());
    assert_eq!(a, b, "the same located error");
    assert!(a.contains("id"), "{a}");
}

#[tokio::test]
async fn next_url_pages_are_cut_unparsed_with_the_same_events() {
    let items = listing(6);
    let api = next_url_api(items.clone()).await;
    let style = r#"{ style = "next-url", next_url = "$.links.next" }"#;
    let fast = Harness::new(&rest(&api.url, "$.data", style));
    let parsed = Harness::new(&rest(&api.url, "$.data[*]", style));
    agree(fast, parsed, &items, || {}).await;
}

#[tokio::test]
async fn cursor_pages_with_has_more_are_cut_unparsed_with_the_same_events() {
    let items = listing(6);
    let api = cursor_api(items.clone()).await;
    let style = r#"{ style = "cursor", cursor_param = "starting_after", next_cursor = "$.data[-1].id", has_more = "$.has_more" }"#;
    let fast = Harness::new(&rest(&api.url, "$.data", style));
    let parsed = Harness::new(&rest(&api.url, "$.data[*]", style));
    agree(fast, parsed, &items, || {}).await;
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
    agree(fast, parsed, &items, || {}).await;
}

/// An exec source printing `listing` from a file (`cat`), as a JSON array or as JSON lines,
/// against the same items parsed from a `next-url` listing.
async fn exec_agrees(lines: bool) {
    let items = listing(6);
    let api = next_url_api(items.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("listing.json");
    let exec = format!(
        r#"
[[sources]]
name = "shop"
adapter = "exec"
command = ["cat", "{}"]

  [[sources.resources]]
  name = "orders"
  every = "1m"
"#,
        file.display()
    );
    let fast = Harness::new(&exec);
    let style = r#"{ style = "next-url", next_url = "$.links.next" }"#;
    let parsed = Harness::new(&rest(&api.url, "$.data[*]", style));
    let refresh = || {
        let items = lock(&items);
        let texts: Vec<String> = items.iter().map(|(_, t)| t.replace('\n', " ")).collect();
        let out = if lines {
            format!("{}\n\n", texts.join("\n"))
        } else {
            format!("  [{}]\n", texts.join(",\n"))
        };
        std::fs::write(&file, out).unwrap();
    };
    // The file holds each item on one line; the listing serves the same bytes.
    for (_, text) in lock(&items).iter_mut() {
        *text = text.replace('\n', " ");
    }
    let (a, b) = {
        refresh();
        (fast.poll().await.unwrap(), parsed.poll().await.unwrap())
    };
    assert_eq!((a.listed, b.listed), (6, 6));
    assert_hashed_as_served(&fast, &items);
    assert_eq!(fast.snapshot(), parsed.snapshot(), "canonical hashes");
    churn(&items);
    for (_, text) in lock(&items).iter_mut() {
        *text = text.replace('\n', " ");
    }
    refresh();
    let (a, b) = (fast.poll().await.unwrap(), parsed.poll().await.unwrap());
    let texts = |events: &[pollhook::event::Event]| -> Vec<String> {
        events.iter().map(|e| stable(e).to_string()).collect()
    };
    assert_eq!(texts(&a.events), texts(&b.events), "the same payloads");
    assert_eq!(a.events.len(), 3);
    assert_hashed_as_served(&fast, &items);
    lose_an_id(&items);
    refresh();
    let err = fast.poll().await.unwrap_err().to_string();
    let parsed_err = parsed.poll().await.unwrap_err().to_string();
    // The same item, named the same way; the page each names is its own.
    let tail = |e: &str| e.rsplit_once(": ").map(|(_, t)| t.to_owned());
    assert!(err.contains("id"), "{err}");
    assert_eq!(tail(&err), tail(&parsed_err), "{err} / {parsed_err}");
}

#[tokio::test]
async fn exec_json_lines_are_cut_unparsed_with_the_same_events() {
    exec_agrees(true).await;
}

#[tokio::test]
async fn exec_json_arrays_are_cut_unparsed_with_the_same_events() {
    exec_agrees(false).await;
}
