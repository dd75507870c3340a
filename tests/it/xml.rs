//! XML in both directions, and feeds: XML REST listings, a SOAP service listed by POST with a
//! body (the `adapters/examples/soap-orders.toml` example), RSS 2.0, Atom and JSON Feed documents
//! changing over polls, hostile XML, and an XML endpoint read by Python's `xml.etree` with its
//! Standard Webhooks signature checked over the raw bytes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use pollhook::event::Event;
use pollhook::sign::{self, Scheme};

use crate::support::{
    Endpoint, Harness, Hook, PATIENCE, Pipeline, Shop, env, eventually, parse, shop_config,
};

/// Serves `app` on a fresh loopback port; returns `http://127.0.0.1:PORT`.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn xml(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn actions(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.action.clone(), e.resource_id.clone()))
        .collect()
}

type Orders = Arc<Mutex<BTreeMap<u32, String>>>;

/// Shared orders, id to status, that a test edits while a fake service serves them.
fn orders_of(orders: &[(u32, &str)]) -> Orders {
    let orders = orders.iter().map(|&(id, s)| (id, s.to_owned())).collect();
    Arc::new(Mutex::new(orders))
}

/// `<order id="N"><status>…</status></order>` for each order on page `page` of two.
fn orders_page(orders: &Orders, page: usize) -> String {
    let orders = orders.lock().unwrap();
    let rows: String = orders
        .iter()
        .skip((page.max(1) - 1) * 2)
        .take(2)
        .map(|(id, status)| format!(r#"<order id="{id}"><status>{status}</status></order>"#))
        .collect();
    format!(
        r#"<?xml version="1.0"?><orders total="{}">{rows}</orders>"#,
        orders.len()
    )
}

#[tokio::test]
async fn an_xml_listing_with_page_pagination_by_content_type() {
    let orders = orders_of(&[(1, "open"), (2, "open"), (3, "open")]);
    let served = orders.clone();
    let app = Router::new().route(
        "/orders",
        get(move |Query(q): Query<BTreeMap<String, String>>| {
            let served = served.clone();
            async move {
                let page = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                xml(orders_page(&served, page))
            }
        }),
    );
    let url = serve(app).await;
    let h = Harness::new(&format!(
        r#"
[[sources]]
name = "erp"
base_url = "{url}"
  [[sources.resources]]
  name = "orders"
  path = "/orders"
  every = "1m"
  initial = "emit"
  items = "$.orders.order"
  id = "@id"
  pagination = {{ style = "page", size = 2 }}
"#
    ));
    let report = h.poll().await.unwrap();
    assert_eq!(
        (report.listed, report.pages),
        (3, 3),
        "two full pages, one empty"
    );
    assert_eq!(h.snapshot_ids(), ["1", "2", "3"]);
    let first = h.events();
    assert_eq!(
        first[0].data.value(),
        serde_json::json!({"@id": "1", "status": "open"}),
        "values stay strings, attributes are @name"
    );

    orders.lock().unwrap().insert(2, "shipped".into());
    h.poll().await.unwrap();
    let events = h.events();
    let last = &events[first.len()..];
    assert_eq!(actions(last), [("updated".to_owned(), "2".to_owned())]);
    assert_eq!(
        last[0].changes.value(),
        serde_json::json!([{"op": "replace", "path": "/status", "value": "shipped"}])
    );
}

/// A fake SOAP 1.1 service: POST only, `text/xml`, the SOAPAction header and Basic auth the
/// example sets, the page number read from the envelope.
async fn soap_service(orders: Orders, seen: Arc<Mutex<Vec<String>>>) -> String {
    let app = Router::new().route(
        "/soap/orders",
        any(move |method: axum::http::Method, headers: HeaderMap, body: Bytes| {
            let (orders, seen) = (orders.clone(), seen.clone());
            async move {
                let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
                if method != axum::http::Method::POST
                    || !header("content-type").starts_with("text/xml")
                    || header("soapaction") != "urn:erp/ListOrders"
                    || !header("authorization").starts_with("Basic ")
                {
                    return (StatusCode::BAD_REQUEST, "not a ListOrders call").into_response();
                }
                let body = String::from_utf8_lossy(&body).into_owned();
                seen.lock().unwrap().push(body.clone());
                let page = body
                    .split("<erp:PageNumber>")
                    .nth(1)
                    .and_then(|rest| rest.split('<').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let rows: String = orders
                    .lock()
                    .unwrap()
                    .iter()
                    .skip((page.max(1) - 1) * 2)
                    .take(2)
                    .map(|(id, status)| {
                        format!(
                            r#"<erp:Order id="{id}"><erp:Status>{status}</erp:Status><erp:FetchedAt>{page}</erp:FetchedAt></erp:Order>"#
                        )
                    })
                    .collect();
                let envelope = format!(
                    r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:erp="urn:erp"><soap:Body><erp:ListOrdersResponse><erp:Orders>{rows}</erp:Orders></erp:ListOrdersResponse></soap:Body></soap:Envelope>"#
                );
                ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], envelope).into_response()
            }
        }),
    );
    serve(app).await
}

#[tokio::test]
async fn the_soap_example_lists_by_post_with_its_envelope() {
    let orders = orders_of(&[(10, "open"), (11, "open"), (12, "held")]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = soap_service(orders.clone(), seen.clone()).await;
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters/examples/soap-orders.toml"),
    )
    .unwrap();
    let env = env(&[("ERP_URL", &url), ("ERP_PASSWORD", "s3cret")]);
    // The example checks as it stands, and runs against the fake.
    let config = parse(&example, &env).unwrap_or_else(|e| panic!("{e}"));
    let text = example.replace("${ERP_URL:-http://127.0.0.1:8080}", &url);
    let h = Harness::new(&text.replace("${ERP_PASSWORD:-}", "s3cret"));
    assert!(config.sources[0].resources[0].request.post);

    let report = h.poll().await.unwrap();
    assert_eq!(report.listed, 3);
    assert_eq!(h.snapshot_ids(), ["10", "11", "12"]);
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3, "pages 1 and 2, then the empty page 3");
    for (i, body) in bodies.iter().enumerate() {
        assert!(
            body.contains(&format!(
                "<erp:PageNumber>{}</erp:PageNumber><erp:PageSize>2</erp:PageSize>",
                i + 1
            )),
            "{body}"
        );
    }

    // `erp:FetchedAt` changes with the page but is ignored; a status change is an update.
    orders.lock().unwrap().insert(12, "open".into());
    orders.lock().unwrap().remove(&10);
    h.poll().await.unwrap();
    let updated = actions(&h.events());
    assert_eq!(updated, [("updated".to_owned(), "12".to_owned())]);
    // A paged listing deletes after two complete listings without the item (`deleted_after`).
    h.poll().await.unwrap();
    assert_eq!(
        h.snapshot_ids(),
        ["11", "12"],
        "a SOAP listing is complete: 10 is gone"
    );
}

/// One mutable document served at `/feed` with `content_type`.
async fn feed_server(doc: Arc<Mutex<String>>, content_type: &'static str) -> String {
    let app = Router::new().route(
        "/feed",
        get(move || {
            let doc = doc.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, content_type)],
                    doc.lock().unwrap().clone(),
                )
            }
        }),
    );
    serve(app).await
}

/// `markup` for each (id, title), one after another.
fn each_item(items: &[(&str, &str)], markup: impl Fn(&str, &str) -> String) -> String {
    items.iter().map(|(id, title)| markup(id, title)).collect()
}

fn rss(items: &[(&str, &str)]) -> String {
    let items = each_item(items, |guid, title| {
        format!(
            "<item><guid>{guid}</guid><title>{title}</title><link>https://e.example/{guid}</link></item>"
        )
    });
    format!(
        r#"<?xml version="1.0"?><rss version="2.0"><channel><title>News</title>{items}</channel></rss>"#
    )
}

fn atom(items: &[(&str, &str)]) -> String {
    let entries = each_item(items, |id, title| {
        format!(
            "<entry><id>urn:{id}</id><title>{title}</title><updated>2025-06-10T04:00:00Z</updated></entry>"
        )
    });
    format!(
        r#"<feed xmlns="http://www.w3.org/2005/Atom"><id>urn:f</id><title>F</title><updated>2025-06-10T04:00:00Z</updated>{entries}</feed>"#
    )
}

fn json_feed(items: &[(&str, &str)]) -> String {
    let items: Vec<serde_json::Value> = items
        .iter()
        .map(|(id, title)| serde_json::json!({"id": id, "title": title, "content_text": "x"}))
        .collect();
    serde_json::json!({"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": items})
        .to_string()
}

#[tokio::test]
async fn rss_atom_and_json_feeds_emit_created_and_updated_but_no_deletes() {
    type Render = fn(&[(&str, &str)]) -> String;
    let kinds: [(Render, &str, &str); 3] = [
        (rss, "application/rss+xml", ""),
        (atom, "application/atom+xml", "urn:"),
        (json_feed, "application/feed+json", ""),
    ];
    for (render, content_type, prefix) in kinds {
        let doc = Arc::new(Mutex::new(render(&[("a", "A"), ("b", "B")])));
        let url = feed_server(doc.clone(), content_type).await;
        let h = Harness::new(&format!(
            r#"
[[sources]]
name = "news"
adapter = "feed"
base_url = "{url}"
  [[sources.resources]]
  name = "posts"
  path = "/feed"
  every = "1m"
"#
        ));
        assert!(h.resource.window, "a feed is a window by default");
        let report = h.poll().await.unwrap();
        assert!(report.baseline, "{content_type}");
        assert_eq!(h.snapshot().len(), 2, "{content_type}");

        // `a` leaves the window, `b` is retitled, `c` is new.
        *doc.lock().unwrap() = render(&[("b", "B, corrected"), ("c", "C")]);
        h.poll().await.unwrap();
        let mut got = actions(&h.events());
        got.sort();
        assert_eq!(
            got,
            [
                ("created".to_owned(), format!("{prefix}c")),
                ("updated".to_owned(), format!("{prefix}b"))
            ],
            "{content_type}"
        );
        // Polling the same document again changes nothing.
        h.poll().await.unwrap();
        assert_eq!(h.events().len(), 2, "{content_type}");
    }
}

#[tokio::test]
async fn hostile_xml_is_refused_without_exhausting_memory() {
    let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><orders><order id="&lol2;"/></orders>"#.to_owned();
    let huge_attribute = format!(r#"<orders><order id="{}"/></orders>"#, "x".repeat(2 << 20));
    let cases = [
        (laughs, "DOCTYPE"),
        (deep, "deep"),
        (huge_attribute, "max_page_bytes"),
    ];
    for (doc, expected) in cases {
        let doc = Arc::new(Mutex::new(doc));
        let url = feed_server(doc, "application/xml").await;
        let h = Harness::new(&format!(
            r#"
[[sources]]
name = "erp"
base_url = "{url}"
max_page_bytes = 1048576
  [[sources.resources]]
  name = "orders"
  path = "/feed"
  every = "1m"
  items = "$.orders.order"
"#
        ));
        let err = h.poll().await.unwrap_err().to_string();
        assert!(err.contains(expected), "{expected}: {err}");
        assert!(h.snapshot().is_empty());
    }
}

#[test]
fn jwt_with_xml_is_refused_at_check_with_a_hint() {
    let text = r#"
[[endpoints]]
name = "erp"
url = "https://erp.example.com/hook"
secret = "0123456789abcdef0123456789abcdef0123"
signing = "jwt"
format = "xml"
"#;
    let err = parse(text, &BTreeMap::new()).unwrap_err().to_string();
    assert!(err.contains("endpoints[erp].format"), "{err}");
    assert!(err.contains("standard-webhooks"), "{err}");
}

/// A receiver in Python, stdlib only: parse the body with `xml.etree`, check the Standard
/// Webhooks signature over the raw bytes, print what it read.
const PYTHON_RECEIVER: &str = r#"
import base64, hashlib, hmac, sys
import xml.etree.ElementTree as ET
secret, msg_id, timestamp, signatures, path = sys.argv[1:]
body = open(path, "rb").read()
key = base64.b64decode(secret.removeprefix("whsec_"))
expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
assert any(hmac.compare_digest(s.removeprefix("v1,"), expected) for s in signatures.split()), "bad signature"
event = ET.fromstring(body)
assert event.tag == "event", event.tag
print(event.findtext("id"), event.findtext("type"), event.findtext("data/status"), event.find("data").get("id") or event.findtext("data/id"))
"#;

#[tokio::test]
async fn an_xml_endpoint_is_read_by_xml_etree_and_its_signature_verifies() {
    let shop = Shop::start([7]).await;
    let hook = Hook::start(|_| 204).await;
    let secret = sign::generate_secret(Scheme::StandardWebhooks);
    let erp = Endpoint::new(
        "erp",
        &format!("{}/hooks/erp", hook.url),
        "standard-webhooks",
        &secret,
    )
    .set("format", "xml");
    let mut p = Pipeline::start(shop_config(&shop.url).endpoint(erp));
    let request = eventually(
        "the created event reached the XML endpoint",
        PATIENCE,
        async || hook.log().first().map(|e| e.request.clone()),
    )
    .await;
    p.stop().await;
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(header("content-type"), "application/xml");
    // pollhook's own verifier reads it too.
    let key = sign::decode_secret(Scheme::StandardWebhooks, &secret).unwrap();
    let verified = sign::verify(
        Scheme::StandardWebhooks,
        &[&key],
        &request.headers,
        &request.body,
        chrono::Utc::now().timestamp(),
        300,
    )
    .unwrap();
    assert_eq!(verified.event["type"], "shop.orders.created");

    // The Python receiver, given the secret, this request's signature headers and a body file.
    let python_receiver = |body: &std::path::Path| {
        std::process::Command::new("python3")
            .args(["-c", PYTHON_RECEIVER, &secret])
            .args([
                header("webhook-id"),
                header("webhook-timestamp"),
                header("webhook-signature"),
            ])
            .arg(body)
            .output()
            .expect("python3 runs")
    };
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.xml");
    std::fs::write(&body, &request.body).unwrap();
    let out = python_receiver(&body);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("{} shop.orders.created open 7", header("webhook-id"))
    );

    // A tampered body fails the same check.
    let mut tampered = request.body.clone();
    tampered.extend_from_slice(b" ");
    std::fs::write(&body, &tampered).unwrap();
    let out = python_receiver(&body);
    assert!(!out.status.success());
}
