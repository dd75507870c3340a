//! The admin API's boundaries, over raw HTTP against a real pipeline on a free loopback port:
//! what a web page in a browser could send is refused (foreign `Host`, foreign `Origin`,
//! `Sec-Fetch-Site`, non-JSON bodies), the probes answer any `Host`, half-sent connections are
//! closed and do not starve `/healthz`, bodies have a size limit, and the handlers refuse what
//! the OpenAPI document refuses (and only that).
//!
//! Requests are written by hand on a `TcpStream`, so the test, not a client library, decides
//! every header, `Host` included. Nothing leaves 127.0.0.1.

use std::path::Path;
use std::time::Duration;

use pollhook::config::Config;
use pollhook::demo::FakeShop;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound on any one wait; generous, so a loaded machine does not fail a test.
const WAIT: Duration = Duration::from_secs(30);

use crate::support::{ConfigBuilder, Resource, Run, Source, start_on_free_port};

const TOKEN: &str = "security-test-token";

/// A pollhook running in this process, with its port.
struct Running {
    port: u16,
    run: Run,
    _dir: TempDir,
    _shop: FakeShop,
}

impl Running {
    /// Starts a pipeline whose `[server]` table is `listen` on a free port plus `server`
    /// (`admin_token`, say); `/api/v1/sources` naming this start's source tells ours from another
    /// that got the same port (see [`start_on_free_port`]).
    async fn start(server: &[(&str, toml::Value)]) -> Running {
        let shop = FakeShop::start(2).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let source = format!("shop{}", rand::random::<u32>());
        let (port, run) = start_on_free_port(
            |port| config(dir.path(), port, server, &source, &shop.url),
            async |port| answers_as(port, &source).await,
        )
        .await;
        Running {
            port,
            run,
            _dir: dir,
            _shop: shop,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `GET /api/v1/events` with the token, naming `host` in its `Host` header.
    async fn events_with_host(&self, host: &str) -> Resp {
        let host = format!("Host: {host}");
        self.send("GET", "/api/v1/events", &[&host, &auth()], "")
            .await
    }

    /// A request with these extra header lines and this body (`Content-Length` added).
    async fn send(&self, method: &str, path: &str, headers: &[&str], body: &str) -> Resp {
        let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("host:"))
        {
            request.push_str(&format!("Host: {}\r\n", self.host()));
        }
        for h in headers {
            request.push_str(h);
            request.push_str("\r\n");
        }
        if !body.is_empty() || method != "GET" {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        request.push_str(body);
        exchange(self.port, request.as_bytes()).await
    }

    /// The endpoints' names, asked the ordinary way.
    async fn endpoint_names(&self) -> Vec<String> {
        let list = self
            .send("GET", "/api/v1/endpoints", &[&auth()], "")
            .await
            .json(200);
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    async fn stop(self) {
        self.run.stop().await;
    }
}

/// `Authorization` for the pipelines that have a token; ignored by those that have none.
fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

fn config(
    dir: &Path,
    port: u16,
    server: &[(&str, toml::Value)],
    source: &str,
    shop: &str,
) -> Config {
    server
        .iter()
        .fold(ConfigBuilder::new(dir), |config, (key, value)| {
            config.set(&format!("server.{key}"), value.clone())
        })
        .set("server.listen", format!("127.0.0.1:{port}"))
        .source(Source::json_server(source, shop).resource(Resource::new("orders", "1h")))
        .loopback_delivery()
        .parse()
}

/// Whether the API on `port` is the pipeline polling `source`; `None` while it does not answer.
async fn answers_as(port: u16, source: &str) -> Option<bool> {
    let request = format!(
        "GET /api/v1/sources HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{}\r\nConnection: close\r\n\r\n",
        auth()
    );
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        try_exchange(port, request.as_bytes()),
    )
    .await
    .ok()?
    .ok()?;
    let body = serde_json::from_str::<Value>(&resp.body).ok()?;
    (resp.status == 200).then(|| body["data"][0]["name"] == source)
}

/// One response, read to the end (every request says `Connection: close`).
#[derive(Debug)]
struct Resp {
    status: u16,
    body: String,
}

impl Resp {
    /// Asserts the status, returns the JSON body.
    fn json(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts the API's error shape with this status and code.
    fn error(&self, status: u16, code: &str) -> Value {
        let body = self.json(status);
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        body
    }
}

async fn exchange(port: u16, request: &[u8]) -> Resp {
    tokio::time::timeout(WAIT, try_exchange(port, request))
        .await
        .expect("the API answers within the bound")
        .expect("the exchange works")
}

async fn try_exchange(port: u16, request: &[u8]) -> std::io::Result<Resp> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(request).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok(Resp {
        status,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// `POST PATH` with `{"FIELD":null}` is refused with 422 `invalid`, naming FIELD as the problem.
async fn refuses_a_null(api: &Running, path: &str, field: &str) {
    let body = format!(r#"{{"{field}":null}}"#);
    let reply = api
        .send("POST", path, &["Content-Type: application/json"], &body)
        .await
        .error(422, "invalid");
    assert_eq!(reply["error"]["problems"][0]["field"], field, "{reply}");
}

fn new_endpoint(name: &str) -> String {
    json!({ "name": name, "url": "http://127.0.0.1:9/hooks", "backfill": true }).to_string()
}

// ───────────────────────────── cross-site requests ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_415_and_adds_no_endpoint() {
    let api = Running::start(&[]).await;
    for content_type in [
        "Content-Type: text/plain",
        "Content-Type: application/x-www-form-urlencoded",
        "Content-Type: multipart/form-data; boundary=x",
    ] {
        api.send(
            "POST",
            "/api/v1/endpoints",
            &[content_type],
            &new_endpoint("evil"),
        )
        .await
        .error(415, "unsupported_media_type");
    }
    // No Content-Type at all, with a body: the same.
    api.send("POST", "/api/v1/endpoints", &[], &new_endpoint("evil"))
        .await
        .error(415, "unsupported_media_type");
    assert_eq!(api.endpoint_names().await, Vec::<String>::new());

    // JSON, with or without parameters, is what the API takes.
    for (name, content_type) in [
        ("plain", "Content-Type: application/json"),
        ("charset", "Content-Type: Application/JSON; charset=utf-8"),
    ] {
        api.send(
            "POST",
            "/api/v1/endpoints",
            &[content_type],
            &new_endpoint(name),
        )
        .await
        .json(201);
    }
    assert_eq!(api.endpoint_names().await, ["charset", "plain"]);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_403_and_changes_nothing() {
    let api = Running::start(&[]).await;
    let json = "Content-Type: application/json";
    let port = api.port;
    for origin in [
        "Origin: http://evil.example".to_owned(),
        "Origin: null".to_owned(),
        // Another local web server: same host, another port, another origin.
        format!("Origin: http://127.0.0.1:{}", port.wrapping_add(1)),
        format!("Origin: http://127.0.0.1:{port}.evil.example"),
    ] {
        api.send(
            "POST",
            "/api/v1/endpoints",
            &[json, &origin],
            &new_endpoint("evil"),
        )
        .await
        .error(403, "cross_origin");
        // Reads too: a page must not read what the API says either.
        api.send("GET", "/api/v1/events", &[&origin], "")
            .await
            .error(403, "cross_origin");
    }
    // A browser that sends no Origin still says where the request comes from.
    api.send(
        "POST",
        "/api/v1/endpoints",
        &[json, "Sec-Fetch-Site: cross-site"],
        &new_endpoint("evil"),
    )
    .await
    .error(403, "cross_origin");
    // A body-less POST (backfill, pause) is refused the same way.
    api.send("POST", "/api/v1/endpoints", &[json], &new_endpoint("mine"))
        .await
        .json(201);
    api.send(
        "POST",
        "/api/v1/endpoints/mine/pause",
        &["Origin: http://evil.example"],
        "",
    )
    .await
    .error(403, "cross_origin");
    let mine = api
        .send("GET", "/api/v1/endpoints/mine", &[], "")
        .await
        .json(200);
    assert_eq!(mine["active"], true, "{mine}");
    assert_eq!(api.endpoint_names().await, ["mine"]);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_421_and_loopback_names_and_the_own_origin_work() {
    let api = Running::start(&[]).await;
    let port = api.port;
    for host in [
        "Host: evil.example".to_owned(),
        format!("Host: evil.example:{port}"),
        format!("Host: localhost.evil.example:{port}"),
        "Host: 10.0.0.1".to_owned(),
    ] {
        api.send("GET", "/api/v1/events", &[&host], "")
            .await
            .error(421, "wrong_host");
        api.send("GET", "/api/v1/openapi.json", &[&host], "")
            .await
            .error(421, "wrong_host");
    }
    // Loopback names on any port (a port-forward changes it), with the page's own Origin.
    for (n, (host, origin)) in [
        (
            format!("localhost:{port}"),
            format!("http://localhost:{port}"),
        ),
        (
            format!("LOCALHOST:{port}"),
            format!("http://localhost:{port}"),
        ),
        (
            format!("127.0.0.1:{port}"),
            format!("http://127.0.0.1:{port}"),
        ),
        (format!("[::1]:{port}"), format!("http://[::1]:{port}")),
        (
            "localhost:9000".to_owned(),
            "https://localhost:9000".to_owned(),
        ),
        ("127.0.0.2".to_owned(), "http://127.0.0.2".to_owned()),
    ]
    .into_iter()
    .enumerate()
    {
        let headers = [
            format!("Host: {host}"),
            format!("Origin: {origin}"),
            "Sec-Fetch-Site: same-origin".to_owned(),
            "Content-Type: application/json".to_owned(),
        ];
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        api.send("GET", "/api/v1/events", &headers, "")
            .await
            .json(200);
        api.send(
            "POST",
            "/api/v1/endpoints",
            &headers,
            &new_endpoint(&format!("e{n}")),
        )
        .await
        .json(201);
    }
    assert_eq!(api.endpoint_names().await.len(), 6);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probes_answer_any_host() {
    let api = Running::start(&[]).await;
    for path in ["/livez", "/healthz", "/readyz", "/metrics"] {
        for host in ["Host: 10.244.1.7:8787", "Host: evil.example"] {
            let resp = api
                .send("GET", path, &[host, "Origin: http://evil.example"], "")
                .await;
            assert_eq!(resp.status, 200, "{path} with {host}: {}", resp.body);
        }
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_any_host_unless_allowed_hosts_and_never_a_foreign_origin() {
    let api = Running::start(&[("admin_token", TOKEN.into())]).await;
    let json = "Content-Type: application/json";
    // Behind an ingress the Host is the ingress's name; the token is what protects the API.
    api.events_with_host("pollhook.example.com").await.json(200);
    api.send(
        "POST",
        "/api/v1/endpoints",
        &[
            "Host: pollhook.example.com",
            "Origin: https://evil.example",
            json,
            &auth(),
        ],
        &new_endpoint("evil"),
    )
    .await
    .error(403, "cross_origin");
    api.send(
        "POST",
        "/api/v1/endpoints",
        &[
            "Host: pollhook.example.com",
            "Origin: https://pollhook.example.com",
            json,
            &auth(),
        ],
        &new_endpoint("mine"),
    )
    .await
    .json(201);
    assert_eq!(api.endpoint_names().await, ["mine"]);
    api.stop().await;

    let api = Running::start(&[
        ("admin_token", TOKEN.into()),
        ("allowed_hosts", vec!["PollHook.example.com"].into()),
    ])
    .await;
    api.events_with_host("pollhook.example.com").await.json(200);
    api.events_with_host("other.example.com")
        .await
        .error(421, "wrong_host");
    api.events_with_host(&format!("localhost:{}", api.port))
        .await
        .json(200);
    api.stop().await;
}

// ───────────────────────────── connections and bodies ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_connections_are_closed_and_do_not_starve_the_liveness_probe() {
    let api = Running::start(&[
        ("max_connections", 64.into()),
        ("header_timeout", "1s".into()),
    ])
    .await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(("127.0.0.1", api.port)).await.unwrap();
        stream
            .write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        idle.push(stream);
    }
    let healthz = exchange(
        api.port,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(healthz.status, 200, "{}", healthz.body);

    // Every half-sent connection is closed by the server (it may say 408 first).
    let mut closed = 0;
    for mut stream in idle {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
        assert!(
            read.is_ok(),
            "a half-sent connection was still open after {WAIT:?} ({closed} closed before it)"
        );
        closed += 1;
    }
    assert_eq!(closed, 300);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_in_the_error_shape() {
    let api = Running::start(&[]).await;
    let name = "x".repeat(1536 * 1024);
    let body = json!({ "name": name, "url": "http://127.0.0.1:9/" }).to_string();
    api.send(
        "POST",
        "/api/v1/endpoints",
        &["Content-Type: application/json"],
        &body,
    )
    .await
    .error(413, "too_large");
    assert_eq!(api.endpoint_names().await, Vec::<String>::new());
    api.stop().await;
}

// ───────────────────────────── the document and the handlers agree ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_refuse_what_the_document_refuses() {
    let api = Running::start(&[]).await;
    let json = "Content-Type: application/json";
    api.send("POST", "/api/v1/endpoints", &[json], &new_endpoint("e"))
        .await
        .json(201);

    // The document says these bodies are required.
    api.send("PATCH", "/api/v1/endpoints/e", &[], "")
        .await
        .error(400, "bad_json");
    api.send("POST", "/api/v1/endpoints", &[], "")
        .await
        .error(400, "bad_json");
    // … and these fields are strings, not nullable.
    refuses_a_null(&api, "/api/v1/endpoints/e/rotate-secret", "overlap").await;
    refuses_a_null(&api, "/api/v1/events/nope/replay", "endpoint").await;
    api.send("PATCH", "/api/v1/endpoints/e", &[json], r#"{"url":null}"#)
        .await
        .error(422, "invalid");
    // Optional bodies stay optional.
    api.send("POST", "/api/v1/endpoints/e/rotate-secret", &[], "")
        .await
        .json(200);
    api.send("PATCH", "/api/v1/endpoints/e", &[json], "{}")
        .await
        .json(200);
    api.stop().await;

    // What the handlers refuse, the document refuses too.
    let doc: Value = serde_json::from_str(pollhook::api::OPENAPI).unwrap();
    let schemas = &doc["components"]["schemas"];
    for (schema, field) in [
        ("NewEndpoint", "name"),
        ("NewEndpoint", "url"),
        ("EndpointChange", "url"),
    ] {
        assert_eq!(
            schemas[schema]["properties"][field]["minLength"], 1,
            "{schema}.{field}: {}",
            schemas[schema]
        );
    }
    let overlap = &schemas["Rotation"]["properties"]["overlap"];
    let pattern = overlap["pattern"].as_str().expect("overlap has a pattern");
    assert!(overlap["maxLength"].is_u64(), "{overlap}");
    for good in ["24h", "90s", "1h30m", "500ms"] {
        assert!(duration_like(pattern, good), "{pattern} refuses {good}");
        assert!(pollhook::config::parse_duration(good).is_ok(), "{good}");
    }
    for bad in ["", "soon", "24", "h"] {
        assert!(!duration_like(pattern, bad), "{pattern} allows {bad:?}");
    }
}

/// Whether `text` is one or more `<digits><unit>` with a unit from the pattern: a check of the
/// pattern's meaning without a regex engine (the pattern is pinned, so this stays in step).
fn duration_like(pattern: &str, text: &str) -> bool {
    assert_eq!(
        pattern, "^([0-9]{1,9}(ms|s|m|h|d))+$",
        "update duration_like with the pattern"
    );
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if !(1..=9).contains(&digits) {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ms", "s", "m", "h", "d"]
            .into_iter()
            .find(|u| rest.starts_with(u))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}
