//! Security of the config and the database: every number bounded at `check`, endpoint addresses
//! classified (embedded IPv4 included) statically and at connect time, reserved endpoint headers
//! refused, URL passwords masked, the database private (0600) and locked on its file whatever
//! name reaches it.
//!
//! Network tests stay on loopback: the only name resolved is `localhost`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use pollhook::config::{Config, EndpointInput, Secret, validate_endpoint};
use pollhook::demo::FakeShop;
use pollhook::store::{RunLock, Store};

use crate::support::{
    ConfigBuilder, Endpoint, Hook, PATIENCE, Pipeline, Resource, Source, command, eventually,
    output, parse, shop_config, shop_source,
};

/// A JWT key long enough for HS256.
const JWT_KEY: &str = "0123456789abcdef0123456789abcdef-key";

/// A valid config: one REST source `shop` with resource `orders`, one endpoint `app`; `source`,
/// `resource` and `tail` add lines to the source, the resource and the end of the file.
fn config(source: &str, resource: &str, tail: &str) -> String {
    format!(
        r#"
[[sources]]
name = "shop"
base_url = "https://api.example.com"
{source}
  [[sources.resources]]
  name = "orders"
  path = "/orders"
  {resource}

[[endpoints]]
name = "app"
url = "https://hooks.example.com/in"
secret = "{JWT_KEY}"
{tail}
"#
    )
}

/// `text` is refused, one problem at `at` with a message containing `says`.
fn refused(text: &str, at: &str, says: &str) {
    let err = match parse(text, &Default::default()) {
        Ok(_) => panic!("accepted; expected a problem at {at}\n--- config ---\n{text}"),
        Err(e) => e.to_string(),
    };
    let line = format!("{at}: ");
    assert!(
        err.lines().any(|l| l.contains(&line) && l.contains(says)),
        "expected `{at}: …{says}…` in:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn accepted(text: &str) -> Config {
    parse(text, &Default::default()).unwrap_or_else(|e| panic!("{e}\n--- config ---\n{text}"))
}

#[test]
fn every_number_and_duration_outside_its_range_is_refused_with_its_place() {
    let every = "every = \"30s\"";
    let huge = "18446744073709551615";
    let cases: Vec<(String, &str, &str)> = vec![
        // [poll]
        (
            format!(
                "[poll]\nconcurrency = 9223372036854775807\n{}",
                config("", every, "")
            ),
            "poll.concurrency",
            "at most 1024",
        ),
        (
            format!(
                "[poll]\nalert_after_failures = 4000000000\n{}",
                config("", every, "")
            ),
            "poll.alert_after_failures",
            "at most 10000",
        ),
        // [delivery]
        (
            format!(
                "[delivery]\nconcurrency = 9223372036854775807\n{}",
                config("", every, "")
            ),
            "delivery.concurrency",
            "at most 4096",
        ),
        (
            format!(
                "[delivery]\nendpoint_concurrency = 9223372036854775807\n{}",
                config("", every, "")
            ),
            "delivery.endpoint_concurrency",
            "at most 1024",
        ),
        (
            format!("[delivery]\ntimeout = \"0s\"\n{}", config("", every, "")),
            "delivery.timeout",
            "at least 100ms",
        ),
        (
            format!(
                "[delivery]\ntimeout = \"{huge}s\"\n{}",
                config("", every, "")
            ),
            "delivery.timeout",
            "at most 10m",
        ),
        (
            format!(
                "[delivery]\nretries = [\"5s\", \"{huge}s\"]\n{}",
                config("", every, "")
            ),
            "delivery.retries[1]",
            "at most 30d",
        ),
        (
            format!(
                "[delivery]\nretries = [{}]\n{}",
                vec!["\"1s\""; 101].join(","),
                config("", every, "")
            ),
            "delivery.retries",
            "at most 100",
        ),
        (
            format!(
                "[delivery]\ndisable_after = \"{huge}s\"\n{}",
                config("", every, "")
            ),
            "delivery.disable_after",
            "at most 365d",
        ),
        (
            format!(
                "[delivery]\ndisable_after = \"1s\"\n{}",
                config("", every, "")
            ),
            "delivery.disable_after",
            "at least 1m",
        ),
        // a source
        (
            config("timeout = \"0s\"", every, ""),
            "sources[shop].timeout",
            "at least 100ms",
        ),
        (
            config("retries = 4000000000", every, ""),
            "sources[shop].retries",
            "at most 20",
        ),
        (
            config(&format!("max_retry_after = \"{huge}s\""), every, ""),
            "sources[shop].max_retry_after",
            "at most 1h",
        ),
        (
            config("rate_limit = 1e-300", every, ""),
            "sources[shop].rate_limit",
            "from 0.001 to 10000",
        ),
        (
            config("host_rate_limit = 1e300", every, ""),
            "sources[shop].host_rate_limit",
            "from 0.001 to 10000",
        ),
        (
            config("rate_limit = nan", every, ""),
            "sources[shop].rate_limit",
            "requests per second",
        ),
        (
            config("max_pages = 0", every, ""),
            "sources[shop].max_pages",
            "at least 1",
        ),
        // a resource
        (
            config("", &format!("every = \"{huge}s\""), ""),
            "sources[shop].resources[orders].every",
            "at most 365d",
        ),
        (
            config("", "every = \"30s\"\n  jitter = \"400d\"", ""),
            "sources[shop].resources[orders].jitter",
            "at most 1d",
        ),
        (
            config(
                "",
                "every = \"30s\"\n  pagination = { style = \"page\", size = 4000000000 }",
                "",
            ),
            "sources[shop].resources[orders].pagination.size",
            "at most 100000",
        ),
        (
            config(
                "",
                "every = \"30s\"\n  pagination = { style = \"page\", first = 9223372036854775807 }",
                "",
            ),
            "sources[shop].resources[orders].pagination.first",
            "at most 1000000",
        ),
        (
            config("", "every = \"30s\"\n  deleted_after = 4000000000", ""),
            "sources[shop].resources[orders].deleted_after",
            "at most 1000",
        ),
        (
            config("", "every = \"30s\"\n  max_delete_ratio = nan", ""),
            "sources[shop].resources[orders].max_delete_ratio",
            "not between 0 and 1",
        ),
        (
            config(
                "",
                &format!(
                    "every = \"30s\"\n  incremental = {{ since_param = \"since\", overlap = \"{huge}s\" }}"
                ),
                "",
            ),
            "sources[shop].resources[orders].incremental.overlap",
            "at most 7d",
        ),
        (
            config(
                "",
                "every = \"30s\"\n  incremental = { since_param = \"since\", full_sync = \"0s\" }",
                "",
            ),
            "sources[shop].resources[orders].incremental.full_sync",
            "at least 1s",
        ),
        // an endpoint
        (
            config("", every, &format!("timeout = \"{huge}s\"")),
            "endpoints[app].timeout",
            "at most 10m",
        ),
    ];
    for (text, at, says) in &cases {
        refused(text, at, says);
    }
    // The edges themselves are allowed.
    accepted(&format!(
        "[poll]\nconcurrency = 1024\n[delivery]\nconcurrency = 4096\nendpoint_concurrency = 1024\ntimeout = \"10m\"\n{}",
        config(
            "rate_limit = 0.001\nmax_pages = 1",
            "every = \"365d\"\n  jitter = \"1d\"",
            ""
        )
    ));
}

#[test]
fn an_exec_timeout_and_an_empty_program_are_refused() {
    let exec = |command: &str, timeout: &str| {
        format!(
            "[[sources]]\nname = \"shop\"\nadapter = \"exec\"\ncommand = {command}\ntimeout = \"{timeout}\"\n  [[sources.resources]]\n  name = \"orders\"\n  every = \"30s\"\n"
        )
    };
    refused(
        &exec("[\"\"]", "30s"),
        "sources[shop].command[0]",
        "the program name is empty",
    );
    refused(
        &exec("[\"true\"]", "0s"),
        "sources[shop].timeout",
        "at least 100ms",
    );
    refused(
        &exec("[\"true\"]", "2h"),
        "sources[shop].timeout",
        "at most 1h",
    );
}

#[test]
fn a_cron_schedule_that_never_fires_is_refused() {
    refused(
        &config("", "schedule = \"0 0 30 2 *\"", ""),
        "sources[shop].resources[orders].schedule",
        "never fires",
    );
    accepted(&config("", "schedule = \"0 0 29 2 *\"", ""));
}

#[test]
fn an_unclosed_variable_is_refused() {
    refused(
        &config("headers = { X-Token = \"${TOKEN\" }", "every = \"30s\"", ""),
        "sources[shop].headers.X-Token",
        "never closed",
    );
}

#[test]
fn a_source_header_http_cannot_send_is_refused() {
    refused(
        &config(
            "headers = { X-Token = \"abc\\r\\nX-Injected: 1\" }",
            "every = \"30s\"",
            "",
        ),
        "sources[shop].headers.X-Token",
        "control character",
    );
    refused(
        &config("headers = { \"Bad Name\" = \"1\" }", "every = \"30s\"", ""),
        "sources[shop].headers.Bad Name",
        "not a header name",
    );
    let secret = "s3cr3t-value\n";
    let err = parse(
        &config(
            &format!("headers = {{ Authorization = {secret:?} }}"),
            "every = \"30s\"",
            "",
        ),
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(!err.contains("s3cr3t"), "the value is quoted: {err}");
}

#[test]
fn endpoint_headers_pollhook_sets_itself_are_refused_in_every_case() {
    for name in [
        "Content-Length",
        "content-length",
        "TRANSFER-ENCODING",
        "Host",
        "Connection",
        "Upgrade",
        "TE",
        "Trailer",
        "Keep-Alive",
        "Expect",
        "Content-Type",
        "Content-Encoding",
        "Webhook-Id",
        "webhook-timestamp",
        "Webhook-Signature",
        "Pollhook-Event-Id",
        "pollhook-anything",
    ] {
        refused(
            &config(
                "",
                "every = \"30s\"",
                &format!("headers = {{ {name:?} = \"0\" }}"),
            ),
            &format!("endpoints[app].headers.{name}"),
            "set by pollhook",
        );
    }
    refused(
        &config("", "every = \"30s\"", "headers = { X-Env = \"a\\r\\nb\" }"),
        "endpoints[app].headers.X-Env",
        "control character",
    );
    let ok = accepted(&config(
        "",
        "every = \"30s\"",
        "headers = { Authorization = \"Bearer x\", User-Agent = \"me\", X-Env = \"prod\" }",
    ));
    assert_eq!(ok.endpoints[0].headers.len(), 3);

    // The CLI and the API validate with the same function.
    let cfg = accepted(&config("", "every = \"30s\"", ""));
    let input = EndpointInput {
        name: "cli".into(),
        url: "https://hooks.example.com/in".into(),
        secret: JWT_KEY.into(),
        signing: "jwt".into(),
        resources: None,
        actions: None,
        active: true,
        headers: [("content-LENGTH".to_owned(), "0".to_owned())].into(),
        timeout: None,
        format: None,
    };
    let problems = validate_endpoint(input, &cfg).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.at == "endpoints[cli].headers.content-LENGTH"),
        "{problems:?}"
    );
}

#[test]
fn endpoint_addresses_are_classified_by_the_ipv4_address_they_embed() {
    for host in [
        "[64:ff9b::a9fe:a9fe]",
        "[64:ff9b::7f00:1]",
        "[::a9fe:a9fe]",
        "[::127.0.0.1]",
        "[::10.0.0.1]",
        "[2002:a9fe:a9fe::]",
        "[::ffff:0:a9fe:a9fe]",
        "[fec0::1]",
        "198.18.0.1",
        "240.0.0.1",
        "[2001:db8::1]",
        "[100::1]",
        "192.0.2.1",
    ] {
        let text = config("", "every = \"30s\"", "").replace(
            "https://hooks.example.com/in",
            &format!("https://{host}/in"),
        );
        refused(&text, "endpoints[app].url", "special-purpose address");
    }
    // A public address in an embedding form is fine; so is an allowed network, matched by the
    // embedded IPv4 address too.
    accepted(
        &config("", "every = \"30s\"", "").replace("hooks.example.com", "[64:ff9b::5db8:d822]"),
    );
    accepted(&format!(
        "[delivery]\nallow_networks = [\"127.0.0.0/8\"]\n{}",
        config("", "every = \"30s\"", "").replace("hooks.example.com", "[::ffff:127.0.0.1]")
    ));
}

#[test]
fn secret_hints_show_at_most_the_last_four_characters() {
    let jwt = Secret::new("eyJhbGciOiJIUzI1NiJ9-rest-of-a-long-key-wxyz");
    assert_eq!(jwt.hint(), "…wxyz");
    let whsec = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert_eq!(whsec.hint(), "whsec_…LaSw");
}

// ───────────────────────────── connect time ─────────────────────────────

/// The shop, a receiver, and a pipeline whose only endpoint is `url`; `delivery` holds the
/// `[delivery]` settings.
async fn deliver_to(url_of: impl Fn(&str) -> String, delivery: ConfigBuilder) -> (Hook, Pipeline) {
    let shop = FakeShop::start(1).await.unwrap();
    let hook = Hook::start(|_| 200).await;
    let url = url_of(&hook.url);
    let config = delivery
        .source(shop_source(&shop.url))
        .endpoint(Endpoint::default_signing("app", &url, JWT_KEY));
    // The shop must outlive the test body: it is leaked into the runtime's tasks.
    std::mem::forget(shop);
    (hook, Pipeline::start(config))
}

/// `[delivery]` over plain http, retrying once an hour.
fn http_retrying_hourly() -> ConfigBuilder {
    ConfigBuilder::without_storage()
        .set("delivery.allow_http", true)
        .set("delivery.retries", vec!["1h"])
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_connect_time_unless_allowed() {
    let port = |hook: &str| hook.rsplit(':').next().unwrap().to_owned();
    // `localhost` passes `check` (a name is not resolved there) but resolves to 127.0.0.1/::1.
    let (hook, mut refused) = deliver_to(
        |h| format!("http://localhost:{}/hook", port(h)),
        http_retrying_hourly(),
    )
    .await;
    let error = eventually("an attempt refused at connect time", PATIENCE, async || {
        refused
            .deliveries("app")
            .into_iter()
            .find_map(|d| d.last_error.filter(|_| d.attempts > 0))
    })
    .await;
    assert!(
        error.contains("refused to connect to localhost") && error.contains("loopback"),
        "{error}"
    );
    assert!(
        hook.log().is_empty(),
        "a request reached the loopback receiver"
    );
    refused.stop().await;

    let (hook, mut allowed) = deliver_to(
        |h| format!("http://localhost:{}/hook", port(h)),
        ConfigBuilder::without_storage()
            .set("delivery.allow_http", true)
            .set("delivery.allow_networks", vec!["127.0.0.0/8", "::1/128"]),
    )
    .await;
    eventually("the delivery through localhost", PATIENCE, async || {
        (allowed
            .deliveries("app")
            .iter()
            .any(|d| d.status == "delivered"))
        .then_some(())
    })
    .await;
    assert!(!hook.log().is_empty());
    allowed.stop().await;
}

#[tokio::test]
async fn an_ip_literal_is_refused_at_connect_time_too() {
    // Registered while loopback was allowed, then delivered under a config that does not allow
    // it: an IP literal skips the resolver, so the send checks it itself.
    let shop = FakeShop::start(1).await.unwrap();
    let hook = Hook::start(|_| 200).await;
    let mut pipeline = Pipeline::new(http_retrying_hourly().source(shop_source(&shop.url)));
    let open = accepted(&shop_config(&shop.url).toml());
    let input = EndpointInput {
        name: "app".into(),
        url: format!("{}/hook", hook.url),
        secret: JWT_KEY.into(),
        signing: "jwt".into(),
        resources: None,
        actions: None,
        active: true,
        headers: Default::default(),
        timeout: None,
        format: None,
    };
    let spec = validate_endpoint(input, &open).unwrap();
    pipeline.store.add_endpoint(&spec).await.unwrap();
    pipeline.run();
    let error = eventually("a refused attempt", Duration::from_secs(30), async || {
        pipeline
            .deliveries("app")
            .into_iter()
            .find_map(|d| d.last_error.filter(|_| d.attempts > 0))
    })
    .await;
    assert!(error.contains("loopback"), "{error}");
    assert!(
        hook.log().is_empty(),
        "a request reached the loopback receiver"
    );
    pipeline.stop().await;
    drop(shop);
}

// ───────────────────────────── the database file ─────────────────────────────

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_database_and_its_wal_and_shm_are_readable_by_their_owner_only() {
    let (hook, mut pipeline) = deliver_to(
        |h| format!("{h}/hook"),
        ConfigBuilder::without_storage().loopback_delivery(),
    )
    .await;
    eventually("a delivery", PATIENCE, async || {
        (!hook.log().is_empty()).then_some(())
    })
    .await;
    let db = pipeline.config.storage.path.clone();
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", db.display());
        assert_eq!(mode(Path::new(&file)), 0o600, "{file}");
    }
    pipeline.stop().await;
}

#[test]
fn a_database_readable_by_others_is_tightened_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pollhook.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    Store::open(&db).unwrap();
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn a_second_run_through_a_symlink_or_a_hard_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pollhook.db");
    Store::open(&db).unwrap();
    let symlink = dir.path().join("via-symlink.db");
    std::os::unix::fs::symlink(&db, &symlink).unwrap();
    let other = tempfile::tempdir().unwrap();
    let hard = other.path().join("via-hard-link.db");
    std::fs::hard_link(&db, &hard).unwrap();

    let held = RunLock::acquire(&db).unwrap();
    for path in [&db, &symlink, &hard] {
        let err = RunLock::acquire(path).unwrap_err().to_string();
        assert!(err.contains("already using"), "{}: {err}", path.display());
    }
    // The CLI's commands still read and write beside the run.
    let store = Store::open(&symlink).unwrap();
    crate::support::block_on(store.status()).unwrap();
    crate::support::block_on(store.check_writable()).unwrap();
    drop(held);
    let _again = RunLock::acquire(&hard).unwrap();
}

#[tokio::test]
async fn endpoint_lists_mask_a_password_in_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let orders = Resource::new("orders", "30s").set("path", "/orders");
    let file = ConfigBuilder::new(dir.path())
        .source(Source::new("shop", "https://api.example.com").resource(orders))
        .endpoint(Endpoint::default_signing(
            "app",
            "https://hook:pa55word@hooks.example.com/in",
            JWT_KEY,
        ))
        .write();
    let config = Config::load(&file).unwrap();
    let store = Store::open(&config.storage.path).unwrap();
    store.reconcile_endpoints(&config.endpoints).await.unwrap();
    for args in [
        &["endpoints", "list"][..],
        &["endpoints", "list", "--json"],
        &["endpoints", "show", "app"],
    ] {
        let mut cmd = command();
        cmd.args(args).arg("--config").arg(&file);
        let out = output(cmd).await;
        let stdout = &out.stdout;
        assert!(out.code == 0, "{args:?}: {stdout} {}", out.stderr);
        assert!(
            stdout.contains("hook:***@hooks.example.com"),
            "{args:?}: {stdout}"
        );
        assert!(!stdout.contains("pa55word"), "{args:?}: {stdout}");
    }
    // The stored URL, used to deliver, keeps the password.
    let stored = store.endpoint_named("app").await.unwrap();
    assert!(stored.spec.url.contains("pa55word"));
}

#[tokio::test]
async fn a_stored_framing_header_is_never_sent() {
    // An endpoint stored before `check` refused `Content-Length` (here: written straight to the
    // store) must not cut the body its receiver reads.
    let shop = FakeShop::start(1).await.unwrap();
    let hook = Hook::start(|_| 200).await;
    let mut pipeline = Pipeline::new(shop_config(&shop.url));
    let input = EndpointInput {
        name: "app".into(),
        url: format!("{}/hook", hook.url),
        secret: JWT_KEY.into(),
        signing: "jwt".into(),
        resources: None,
        actions: None,
        active: true,
        headers: Default::default(),
        timeout: None,
        format: None,
    };
    let mut spec = validate_endpoint(input, &pipeline.config).unwrap();
    spec.headers.push(("Content-Length".into(), "0".into()));
    spec.headers.push(("X-Env".into(), "prod".into()));
    pipeline.store.add_endpoint(&spec).await.unwrap();
    pipeline.run();
    eventually("a delivery", PATIENCE, async || {
        (!hook.log().is_empty()).then_some(())
    })
    .await;
    let first = hook.log()[0].request.clone();
    assert!(!first.body.is_empty(), "the receiver got an empty body");
    let header = |name: &str| {
        first
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-env").as_deref(), Some("prod"));
    assert_eq!(header("content-length"), Some(first.body.len().to_string()));
    pipeline.stop().await;
    drop(shop);
}
