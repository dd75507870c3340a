//! The operator operations shared by the CLI and the API (`pollhook::admin`): both edges print
//! the same views, backfill reaches only the endpoint it is for, status keeps resources the
//! config dropped, and a closed stdout ends a listing quietly.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use pollhook::admin::{Admin, EndpointState, NewEndpoint};
use pollhook::config::Config;
use pollhook::deliver::Wake;
use pollhook::poll::{self, Mode};
use pollhook::store::{DeliveryFilter, EventFilter, Origin, Store};
use pollhook::{Pipeline, api};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `GET /orders` with `n` items `{"id": i, "status": "open"}` on `127.0.0.1:0`.
async fn orders_api(n: u64) -> String {
    let items: Vec<Value> = (1..=n)
        .map(|i| json!({"id": i, "status": "open"}))
        .collect();
    let app = axum::Router::new().route(
        "/orders",
        axum::routing::get(move || {
            let items = items.clone();
            async move { axum::Json(items) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A config file in a fresh directory: source `shop` with `resources` at `url`, loopback
/// endpoints allowed, and `extra` appended.
/// The config at `path`, its database, and the report of one committed poll of each resource of
/// its first source (`shop`), in order.
async fn load_and_poll(path: &Path) -> (Config, Store, Vec<poll::PollReport>) {
    let config = Config::load(path).unwrap();
    let store = Store::open(&config.storage.path).unwrap();
    let source = pollhook::source::build(&config.sources[0]).unwrap();
    let mut reports = Vec::new();
    for resource in &config.sources[0].resources {
        let report = poll::poll(&store, "shop", source.as_ref(), resource, Mode::Commit)
            .await
            .unwrap();
        reports.push(report);
    }
    (config, store, reports)
}

fn config_file(url: &str, resources: &[&str], extra: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[storage]\npath = \"pollhook.db\"\n\n[[sources]]\nname = \"shop\"\nadapter = \"rest\"\nbase_url = \"{url}\"\n"
    );
    for name in resources {
        text.push_str(&format!(
            "\n  [[sources.resources]]\n  name = \"{name}\"\n  path = \"/orders\"\n  every = \"1h\"\n"
        ));
    }
    text.push_str("\n[delivery]\nallow_http = true\nallow_networks = [\"127.0.0.0/8\"]\n");
    text.push_str(extra);
    let path = dir.path().join("pollhook.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// `pollhook ARGS… --config CONFIG` with a clean environment; stdout, or a panic with stderr.
async fn cli(config: &Path, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        command(config, args).stdout(Stdio::piped()).output(),
    )
    .await
    .expect("the command finishes")
    .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn command(config: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pollhook"));
    for var in [
        "POLLHOOK_CONFIG",
        "POLLHOOK_STORAGE_PATH",
        "POLLHOOK_LISTEN",
        "POLLHOOK_ADMIN_TOKEN",
        "POLLHOOK_ENDPOINT_SECRET",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("POLLHOOK_LOG", "warn")
        .args(args)
        .arg("--config")
        .arg(config)
        .kill_on_drop(true);
    cmd
}

/// The admin API of `config` served on `127.0.0.1:0`; its base URL and the token that stops it.
async fn serve_api(config: Config) -> (String, CancellationToken) {
    let store = Store::open(&config.storage.path).unwrap();
    store.reconcile_endpoints(&config.endpoints).await.unwrap();
    let pipeline = Arc::new(Pipeline::new(config, store).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let cancel = CancellationToken::new();
    tokio::spawn(api::serve(listener, pipeline, cancel.clone()));
    (url, cancel)
}

/// A client for the API [`serve_api`] serves: no proxy, bounded in time.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(url: &str) -> Value {
    let response = client().get(url).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_show_json_and_the_api_print_the_same_view() {
    let (_dir, config) = config_file(
        "http://127.0.0.1:9",
        &["orders"],
        "\n[[endpoints]]\nname = \"erp\"\nurl = \"http://erp:pa55word@127.0.0.1:9/hooks\"\nsecret = \"a-jwt-secret-that-is-long-enough-0123456789\"\nactions = [\"created\"]\nheaders = { X-Tenant = \"t-1\" }\ntimeout = \"3s\"\n",
    );
    // One endpoint from the file, one added at run time, paused, with a header.
    let (url, stop) = serve_api(Config::load(&config).unwrap()).await;
    cli(
        &config,
        &[
            "endpoints",
            "add",
            "app",
            "--url",
            "http://127.0.0.1:9/app",
            "--signing",
            "standard-webhooks",
            "--resource",
            "shop.*",
            "--header",
            "X-Key: s3cr3t-header",
            "--paused",
        ],
    )
    .await;

    for name in ["erp", "app"] {
        let shown: Value =
            serde_json::from_str(&cli(&config, &["endpoints", "show", name, "--json"]).await)
                .unwrap();
        let served = get(&format!("{url}/api/v1/endpoints/{name}")).await;
        assert_eq!(shown, served, "{name}: the CLI and the API differ");
        let keys: Vec<&str> = shown
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "actions",
                "active",
                "disabled_reason",
                "format",
                "headers",
                "name",
                "origin",
                "resources",
                "secret_hint",
                "signing",
                "state",
                "timeout_ms",
                "url"
            ],
            "{name}"
        );
        let text = shown.to_string();
        for secret in ["pa55word", "0123456789", "s3cr3t-header"] {
            assert!(!text.contains(secret), "{name} shows {secret}: {text}");
        }
    }
    let listed: Value =
        serde_json::from_str(&cli(&config, &["endpoints", "list", "--json"]).await).unwrap();
    assert_eq!(
        listed,
        get(&format!("{url}/api/v1/endpoints")).await["data"]
    );
    let app = &listed[0];
    assert_eq!(app["name"], "app");
    assert_eq!(
        (&app["state"], &app["active"]),
        (&json!("paused"), &json!(false))
    );
    assert_eq!(app["headers"], json!(["X-Key"]));
    assert_eq!(app["origin"], "cli", "added with `pollhook endpoints add`");
    let erp = &listed[1];
    assert_eq!(erp["url"], "http://erp:***@127.0.0.1:9/hooks");
    assert_eq!(erp["origin"], "config");
    assert_eq!(erp["timeout_ms"], 3000);
    assert_eq!(erp["state"], "active");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_queues_created_events_for_that_endpoint_alone_in_batches() {
    // More items than one batch, in a resource the endpoint wants and one it does not.
    let url = orders_api(1205).await;
    let (_dir, path) = config_file(&url, &["orders", "archive"], "");
    let (config, store, reports) = load_and_poll(&path).await;
    assert!(reports.iter().all(|r| r.baseline));
    let wake = Wake::default();
    let admin = Admin::new(&store, &config, &wake);
    let endpoint = |name: &str, resources: &[&str], actions: Option<&[&str]>| NewEndpoint {
        name: name.to_owned(),
        url: format!("http://127.0.0.1:9/{name}"),
        secret: None,
        signing: "jwt".to_owned(),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        actions: actions.map(|a| a.iter().map(|x| (*x).to_owned()).collect()),
        active: false,
        headers: Default::default(),
        timeout: None,
        format: None,
        backfill: false,
        origin: Origin::Api,
    };
    admin
        .add_endpoint(endpoint("other", &["shop.*"], None))
        .await
        .unwrap();
    let only_updates = admin
        .add_endpoint(NewEndpoint {
            backfill: true,
            ..endpoint("updates", &["shop.*"], Some(&["updated"]))
        })
        .await
        .unwrap();
    assert_eq!(
        only_updates.backfilled,
        Some(0),
        "it wants no created events"
    );
    let created = admin
        .add_endpoint(NewEndpoint {
            backfill: true,
            ..endpoint("late", &["shop.orders"], None)
        })
        .await
        .unwrap();
    assert_eq!(created.backfilled, Some(1205));
    assert!(
        created.secret.is_some(),
        "a generated secret is returned once"
    );
    assert_eq!(created.endpoint.state, EndpointState::Paused);

    let deliveries = |endpoint: &str| {
        store.deliveries(DeliveryFilter {
            endpoint: Some(endpoint.to_owned()),
            limit: 5000,
            ..DeliveryFilter::default()
        })
    };
    assert_eq!(deliveries("late").await.unwrap().len(), 1205);
    assert!(deliveries("other").await.unwrap().is_empty());
    assert!(deliveries("updates").await.unwrap().is_empty());

    let events = store
        .events(EventFilter {
            limit: 5000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1205);
    let mut ids = std::collections::BTreeSet::new();
    let mut items = std::collections::BTreeSet::new();
    for (_, event) in &events {
        assert_eq!(
            (
                event.kind.as_str(),
                event.resource.as_str(),
                event.action.as_str()
            ),
            ("shop.orders.created", "orders", "created")
        );
        assert_eq!(event.data.value()["id"].to_string(), event.resource_id);
        assert!(event.previous.is_null() && event.changes.is_null());
        ids.insert(event.id.clone());
        items.insert(event.resource_id.clone());
    }
    assert_eq!(ids.len(), 1205, "every event has its own id");
    assert_eq!(items.len(), 1205, "every item once");

    let missing = admin.backfill("nobody").await.unwrap_err();
    assert!(
        missing.to_string().contains("no endpoint nobody"),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_keeps_resources_the_config_no_longer_names() {
    let url = orders_api(3).await;
    let (dir, path) = config_file(&url, &["orders", "archive"], "");
    let (_, store, _) = load_and_poll(&path).await;
    drop(store);
    // The same database, with `archive` gone from the config.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("name = \"archive\"", "name = \"recent\""),
    )
    .unwrap();
    let status: Value = serde_json::from_str(&cli(&path, &["status", "--json"]).await).unwrap();
    let resources = &status["sources"][0]["resources"];
    let summary: Vec<(Value, Value, Value)> = resources
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].clone(),
                r["configured"].clone(),
                r["item_count"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (json!("shop.orders"), json!(true), json!(3)),
            (json!("shop.recent"), json!(true), json!(0)),
            (json!("shop.archive"), json!(false), json!(3)),
        ],
        "{status}"
    );
    assert_eq!(resources[2]["schedule"], Value::Null);
    let table = cli(&path, &["status"]).await;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("shop.archive (not in config)")),
        "{table}"
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_each_listing_quietly() {
    let (_dir, config) = config_file("http://127.0.0.1:9", &["orders"], "");
    cli(
        &config,
        &["endpoints", "add", "app", "--url", "http://127.0.0.1:9/app"],
    )
    .await;
    for args in [
        &["endpoints", "list"][..],
        &["endpoints", "list", "--json"],
        &["endpoints", "show", "app"],
        &["status"],
        &["events", "list", "--json"],
        &["check"],
    ] {
        // A pipe whose reader is already gone: the first write fails with EPIPE, always.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            command(&config, args).stdout(writer).output(),
        )
        .await
        .expect("the command finishes")
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_over_the_api_puts_back_one_endpoints_failed_deliveries_or_all() {
    let url = orders_api(3).await;
    let (_dir, path) = config_file(&url, &["orders"], "");
    let config = Config::load(&path).unwrap();
    let store = Store::open(&config.storage.path).unwrap();
    let source = pollhook::source::build(&config.sources[0]).unwrap();
    let resource = &config.sources[0].resources[0];
    poll::poll(&store, "shop", source.as_ref(), resource, Mode::Commit)
        .await
        .unwrap();
    let wake = Wake::default();
    let admin = Admin::new(&store, &config, &wake);
    // Two endpoints, each with three deliveries given up on.
    for name in ["a", "b"] {
        let created = admin
            .add_endpoint(NewEndpoint {
                name: name.to_owned(),
                url: format!("http://127.0.0.1:9/{name}"),
                secret: None,
                signing: "jwt".to_owned(),
                resources: None,
                actions: None,
                active: true,
                headers: Default::default(),
                timeout: None,
                format: None,
                backfill: true,
                origin: Origin::Api,
            })
            .await
            .unwrap();
        assert_eq!(created.backfilled, Some(3));
        let id = store.endpoint_named(name).await.unwrap().id;
        let mut given_up = Vec::new();
        // One claim offers an item's first delivery; three items, three claims at most.
        for _ in 0..3 {
            for due in store.claim(id, 10, 60_000).await.unwrap() {
                given_up.push(pollhook::store::Recorded {
                    delivery_id: due.delivery_id,
                    endpoint_id: id,
                    at: pollhook::store::now_ms(),
                    status: Some(500),
                    latency_ms: 1,
                    error: None,
                    response: None,
                    next: pollhook::retry::Next::Failed,
                });
            }
        }
        assert_eq!(given_up.len(), 3, "{name}");
        store
            .record_outcomes(given_up, Duration::from_secs(86_400))
            .await
            .unwrap();
    }
    let statuses = |name: &'static str| {
        let store = store.clone();
        async move {
            let rows = store
                .deliveries(DeliveryFilter {
                    endpoint: Some(name.to_owned()),
                    limit: 10,
                    ..DeliveryFilter::default()
                })
                .await
                .unwrap();
            rows.into_iter().map(|d| d.status).collect::<Vec<_>>()
        }
    };
    assert_eq!(statuses("a").await, ["failed"; 3]);

    let (base, stop) = serve_api(config.clone()).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = |body: Option<Value>| {
        let mut request = client.post(format!("{base}/api/v1/deliveries/retry-failed"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    assert_eq!(
        post(Some(json!({"endpoint": "a"}))).await,
        (200, json!({"queued": 3}))
    );
    assert_eq!(statuses("a").await, ["pending"; 3]);
    assert_eq!(statuses("b").await, ["failed"; 3], "only a's were put back");
    let (status, body) = post(Some(json!({"endpoint": "nobody"}))).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nobody"),
        "{body}"
    );
    assert_eq!(post(None).await, (200, json!({"queued": 3})));
    assert_eq!(statuses("b").await, ["pending"; 3]);
    stop.cancel();
}

/// `PATCH url` with a JSON `body` and no token (the API of [`serve_api`] has none): the status
/// and the JSON answer.
async fn patch(url: &str, body: Value) -> (u16, Value) {
    let response = client().patch(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The one problem of a 422 answer: its field and its message and hint, joined.
fn problem(status: u16, body: &Value) -> (&str, String) {
    assert_eq!(status, 422, "{body}");
    let problems = body["error"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{body}");
    let p = &problems[0];
    let text = format!("{} {}", p["message"], p["hint"]);
    (p["field"].as_str().unwrap(), text)
}

/// A config with endpoint `erp` (jwt, a URL with a password), and `app` (standard-webhooks)
/// added with the CLI; the API served over it.
async fn two_endpoints() -> (TempDir, PathBuf, String, CancellationToken) {
    let (dir, config) = config_file(
        "http://127.0.0.1:9",
        &["orders"],
        "\n[[endpoints]]\nname = \"erp\"\nurl = \"http://erp:pa55word@127.0.0.1:9/hooks\"\nsecret = \"a-jwt-secret-that-is-long-enough-0123456789\"\n",
    );
    let (url, stop) = serve_api(Config::load(&config).unwrap()).await;
    let add = ["endpoints", "add", "app", "--url", "http://127.0.0.1:9/app"];
    cli(
        &config,
        &[&add[..], &["--signing", "standard-webhooks"]].concat(),
    )
    .await;
    (dir, config, url, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_and_update_change_an_endpoints_format_checked_like_the_other_fields() {
    let (_dir, config, url, stop) = two_endpoints().await;
    let app = format!("{url}/api/v1/endpoints/app");
    let (status, changed) = patch(&app, json!({"format": "xml"})).await;
    assert_eq!(
        (status, &changed["format"]),
        (200, &json!("xml")),
        "{changed}"
    );
    assert_eq!(get(&app).await, changed, "stored");
    assert_eq!(
        changed["signing"], "standard-webhooks",
        "the rest untouched"
    );

    let (status, body) = patch(&app, json!({"format": "yaml"})).await;
    assert_eq!(problem(status, &body).0, "format");
    // jwt signs JSON claims: an XML body cannot be signed with it.
    let (status, body) = patch(
        &format!("{url}/api/v1/endpoints/erp"),
        json!({"format": "xml"}),
    )
    .await;
    let (field, text) = problem(status, &body);
    assert!(
        field == "format" && text.contains("standard-webhooks"),
        "{body}"
    );
    assert_eq!(
        get(&format!("{url}/api/v1/endpoints/erp")).await["format"],
        "json"
    );

    cli(&config, &["endpoints", "update", "app", "--format", "json"]).await;
    let shown: Value =
        serde_json::from_str(&cli(&config, &["endpoints", "show", "app", "--json"]).await).unwrap();
    assert_eq!(shown["format"], "json", "{shown}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_sent_back_with_its_password_masked_is_refused_and_the_real_one_kept() {
    let (_dir, config, url, stop) = two_endpoints().await;
    let erp = format!("{url}/api/v1/endpoints/erp");
    let shown = get(&erp).await["url"].as_str().unwrap().to_owned();
    assert_eq!(shown, "http://erp:***@127.0.0.1:9/hooks");

    // What the API printed, sent back: refused, with what to do.
    let (status, body) = patch(&erp, json!({"url": shown, "actions": ["created"]})).await;
    let (field, text) = problem(status, &body);
    assert_eq!(field, "url", "{body}");
    assert!(
        text.contains("***") && text.contains("real URL") && text.contains("leave"),
        "{body}"
    );
    // The CLI's update goes through the same check.
    let out = command(&config, &["endpoints", "update", "erp", "--url", &shown])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("real URL"),
        "{stderr}"
    );

    let store = Store::open(&Config::load(&config).unwrap().storage.path).unwrap();
    let kept = store.endpoint_named("erp").await.unwrap().spec;
    assert_eq!(
        kept.url, "http://erp:pa55word@127.0.0.1:9/hooks",
        "the password kept"
    );
    assert!(
        kept.actions.as_slice().is_empty(),
        "nothing of the refused change applied"
    );
    // A real password is taken.
    let moved = "http://erp:n3w-pass@127.0.0.1:9/v2";
    let (status, body) = patch(&erp, json!({"url": moved})).await;
    assert_eq!(
        (status, &body["url"]),
        (200, &json!("http://erp:***@127.0.0.1:9/v2")),
        "{body}"
    );
    assert_eq!(store.endpoint_named("erp").await.unwrap().spec.url, moved);
    stop.cancel();
}
