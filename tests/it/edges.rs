//! What a new user tripped on, from the command line: the demo's database can be inspected,
//! `healthcheck` asks the config's address, `[server] health_listen` serves the probes alone,
//! `adapters show` knows the engines, `check`'s secret hint names the scheme, `replay` goes where
//! the event went, and an endpoint says who added it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use tempfile::TempDir;

use crate::support::*;

/// `pollhook --config CONFIG ARGS…`.
async fn cli(config: &std::path::Path, args: &[&str]) -> Out {
    let mut cmd = command();
    cmd.arg("--config").arg(config).args(args);
    output(cmd).await
}

/// `pollhook check` exits 2 and its error names `key`.
async fn check_refuses(config: &std::path::Path, key: &str) {
    let out = cli(config, &["check"]).await;
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains(key), "{out:#?}");
}

/// A config in `dir` whose shop source is a closed loopback port.
fn shop_nowhere(dir: &TempDir) -> ConfigBuilder {
    ConfigBuilder::new(dir.path()).source(shop_source("http://127.0.0.1:9"))
}

/// A config with the shop source at `url` and a file endpoint `early`, in `dir`.
fn shop_file(dir: &TempDir, url: &str) -> std::path::PathBuf {
    ConfigBuilder::new(dir.path())
        .source(shop_source(url))
        .loopback_delivery()
        .endpoint(Endpoint::default_signing(
            "early",
            "http://127.0.0.1:9/early",
            "a-jwt-secret-that-is-long-enough-0123456789",
        ))
        .write()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_without_endpoint_goes_to_the_endpoints_that_had_a_delivery() {
    let shop = Shop::start([1]).await;
    let dir = TempDir::new().unwrap();
    let config = shop_file(&dir, &shop.url);
    cli(&config, &["poll", "shop.orders"]).await.ok();
    let events = cli(&config, &["events", "list", "--json"])
        .await
        .ok()
        .json();
    let id = events[0]["id"].as_str().expect("an event id").to_owned();
    cli(
        &config,
        &[
            "endpoints",
            "add",
            "late",
            "--url",
            "http://127.0.0.1:9/late",
        ],
    )
    .await
    .ok();

    let replayed = cli(&config, &["replay", &id]).await.ok();
    assert!(
        replayed.stdout.contains("queued again for: early\n"),
        "only the endpoint that had a delivery: {replayed:#?}"
    );
    let named = cli(&config, &["replay", &id, "--endpoint", "late"])
        .await
        .ok();
    assert!(
        named.stdout.contains("queued again for: late\n"),
        "a named endpoint gets it even if added later: {named:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_say_who_added_them_and_hint_their_own_secret() {
    let dir = TempDir::new().unwrap();
    let config = shop_file(&dir, "http://127.0.0.1:9");
    let mut tails = Vec::new();
    for name in ["one", "two"] {
        let secret = add_endpoint_with_generated_secret(&config, name).await;
        tails.push(secret[secret.len() - 4..].to_owned());
    }
    let listed = cli(&config, &["endpoints", "list", "--json"])
        .await
        .ok()
        .json();
    let by_name = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {listed}"))
            .clone()
    };
    // (`config` for the file's endpoints is pinned by admin.rs, once `run` has reconciled them.)
    for (name, tail) in ["one", "two"].iter().zip(&tails) {
        let e = by_name(name);
        assert_eq!(e["origin"], "cli", "{e}");
        assert_eq!(e["secret_hint"], format!("whsec_…{tail}"), "{e}");
    }
    assert_ne!(by_name("one")["secret_hint"], by_name("two")["secret_hint"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_standard_webhooks_secret_is_hinted_with_its_scheme() {
    let dir = TempDir::new().unwrap();
    let config = shop_nowhere(&dir)
        .loopback_delivery()
        .endpoint(Endpoint::new(
            "app",
            "http://127.0.0.1:9/app",
            "standard-webhooks",
            "whsec_c2hvcnQ=",
        ))
        .write();
    let out = cli(&config, &["check"]).await;
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr
            .contains("pollhook endpoints secret --signing standard-webhooks"),
        "{out:#?}"
    );
}

/// A server answering `GET /healthz` with 200, counting the requests.
async fn healthz_server() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let url = start(Router::new().route(
        "/healthz",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        }),
    ))
    .await;
    (url.trim_start_matches("http://").to_owned(), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_asks_the_configs_health_listen_else_its_listen() {
    let (addr, hits) = healthz_server().await;
    let dir = TempDir::new().unwrap();
    let base = shop_nowhere(&dir);

    let on_listen = base
        .clone()
        .set("server.listen", addr.as_str())
        .write_as("a.toml");
    cli(&on_listen, &["healthcheck"]).await.ok();
    assert_eq!(hits.load(Ordering::SeqCst), 1, "asked [server] listen");

    let on_health = base
        .clone()
        .set("server.listen", "127.0.0.1:9")
        .set("server.health_listen", addr.as_str())
        .write_as("b.toml");
    cli(&on_health, &["healthcheck"]).await.ok();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "asked [server] health_listen"
    );

    let closed = base.set("server.listen", "127.0.0.1:9").write_as("c.toml");
    let out = cli(&closed, &["healthcheck"]).await;
    assert_eq!(out.code, 1, "nothing listens on 127.0.0.1:9: {out:#?}");
    assert!(out.stderr.contains("127.0.0.1:9/healthz"), "{out:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_listen_serves_the_probes_and_nothing_else() {
    let dir = TempDir::new().unwrap();
    let config = shop_nowhere(&dir)
        .set("server.health_listen", "127.0.0.1:0")
        .write();
    let log = dir.path().join("run.log");
    let run = spawn_run(&config, &log);
    let admin = run.admin_addr().await;
    let health: std::net::SocketAddr = eventually(
        run.waiting_for("the health listener"),
        PATIENCE,
        async || {
            let log = std::fs::read_to_string(&log).ok()?;
            log.lines()
                .filter(|l| l.contains("Health listener listening"))
                .find_map(|l| {
                    l.split_once("addr=")?
                        .1
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
        },
    )
    .await;
    assert_ne!(health, admin);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let status = async |url: String| http.get(url).send().await.unwrap().status().as_u16();
    for path in ["/livez", "/healthz", "/metrics"] {
        assert_eq!(
            status(format!("http://{health}{path}")).await,
            200,
            "{path}"
        );
    }
    let ready = status(format!("http://{health}/readyz")).await;
    assert!(ready == 200 || ready == 503, "/readyz answers: {ready}");
    for path in ["/api/v1/sources", "/api/v1/openapi.json", "/"] {
        assert_eq!(
            status(format!("http://{health}{path}")).await,
            404,
            "{path} is not on the health listener"
        );
    }
    assert_eq!(
        status(format!("http://{admin}/api/v1/openapi.json")).await,
        200,
        "the admin API still serves its routes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_listen_on_the_admin_port_is_a_config_problem() {
    let dir = TempDir::new().unwrap();
    let config = shop_nowhere(&dir)
        .set("server.listen", "127.0.0.1:8787")
        .set("server.health_listen", "0.0.0.0:8787")
        .write();
    check_refuses(&config, "server.health_listen").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapters_show_gives_each_engines_keys_and_true_defaults() {
    let dir = TempDir::new().unwrap();
    let nowhere = dir.path().join("none.toml");
    for engine in ["rest", "exec", "graphql", "feed"] {
        let shown = cli(&nowhere, &["adapters", "show", engine]).await.ok();
        assert!(
            shown.stdout.contains(&format!("adapter = \"{engine}\"")),
            "{shown:#?}"
        );
        let file = dir.path().join(format!("{engine}.toml"));
        std::fs::write(&file, &shown.stdout).unwrap();
        cli(&file, &["check"]).await.ok();
    }
    // Every value the reference sets is the default: the same source with only its required keys
    // reads the same.
    let shown = std::fs::read_to_string(dir.path().join("rest.toml")).unwrap();
    let minimal = r#"
[[sources]]
name = "shop"
base_url = "https://api.example.com/v1"
  [[sources.resources]]
  name = "orders"
  path = "/orders"
  every = "30s"
"#;
    let none = env(&[]);
    let full = parse(&shown, &none).unwrap();
    let bare = parse(minimal, &none).unwrap();
    assert_eq!(
        format!("{:?}", full.sources),
        format!("{:?}", bare.sources),
        "a value in `adapters show rest` differs from the default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_database_can_be_inspected_with_the_command_it_prints() {
    let tmp = TempDir::new().unwrap();
    let mut demo = command();
    demo.args(["demo", "--duration", "3s"])
        .env("TMPDIR", tmp.path());
    let out = output(demo).await.ok();
    let inspect = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("pollhook --config "))
        .unwrap_or_else(|| panic!("no inspect command printed: {out:#?}"));
    let config = inspect
        .strip_suffix(" events list")
        .unwrap_or_else(|| panic!("not an events list command: {inspect}"));
    let config = std::path::Path::new(config);
    assert!(config.starts_with(tmp.path()), "{}", config.display());

    cli(config, &["events", "list"]).await.ok();
    let status = cli(config, &["status"]).await.ok();
    assert!(status.stdout.contains("shop.orders"), "{status:#?}");

    // A config naming only the database lists what the database knows.
    let bare = tmp.path().join("bare.toml");
    let db = config.with_file_name("demo.db");
    std::fs::write(
        &bare,
        format!("[storage]\npath = {:?}\n", db.display().to_string()),
    )
    .unwrap();
    let status = cli(&bare, &["status"]).await.ok();
    assert!(
        status.stdout.contains("shop.orders (not in config)"),
        "{status:#?}"
    );
}
