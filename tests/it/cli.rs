//! The `pollhook` binary as an operator uses it (DESIGN.md §8): `check`, where the config comes
//! from, `poll`, `events`, `status`, `endpoints`, `replay`, `verify`, and the CLI working beside
//! a running `pollhook run` on the same database.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pollhook::demo::{FakeShop, Receiver};
use pollhook::sign::{self, Scheme, SignInput};
use pollhook::store::Store;
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    ConfigBuilder, EVENT_KEYS, Endpoint, Out, PATIENCE, Resource, Source,
    add_endpoint_with_generated_secret, command, deliveries, event_ids, events, eventually,
    object_keys, output, shop_config, spawn_run,
};

/// `pollhook ARGS… --config CONFIG`; the future owns what it needs, so it can be spawned.
fn cli(config: &Path, args: &[&str]) -> impl Future<Output = Out> + Send + use<> {
    let mut cmd = command();
    cmd.args(args).arg("--config").arg(config);
    output(cmd)
}

/// A config file in a fresh temp dir: its database beside it, the shop at `shop_url`, loopback
/// endpoints allowed, and `endpoints`.
fn config_file(shop_url: &str, endpoints: &[Endpoint]) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = endpoints
        .iter()
        .cloned()
        .fold(shop_config(shop_url), ConfigBuilder::endpoint);
    let path = config.in_dir(dir.path()).write();
    (dir, path)
}

// ───────────────────────────── check and the config's location ─────────────────────────────

#[tokio::test]
async fn check_says_ok_or_names_every_broken_key_with_exit_2() {
    let (secret, _) = whsec();
    let (dir, good) = config_file("http://127.0.0.1:9", &[app_endpoint(&secret)]);
    let out = cli(&good, &["check"]).await.ok();
    assert!(out.stdout.contains(": ok ("), "{out:#?}");
    assert!(
        out.stdout
            .contains("1 source(s), 1 resource(s), 1 endpoint(s)"),
        "{out:#?}"
    );

    let often = Resource::emitting("orders").set("every", "often");
    let broken = ConfigBuilder::new(dir.path())
        .source(Source::json_server("shop", "http://127.0.0.1:9").resource(often))
        .loopback_delivery()
        .set("delivery.timeout", "soon")
        .endpoint(app_endpoint(&secret))
        .write_as("broken.toml");
    let out = cli(&broken, &["check"]).await;
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.starts_with("error:"), "{out:#?}");
    assert!(out.stderr.contains("delivery.timeout"), "{out:#?}");
    assert!(out.stderr.contains("every"), "{out:#?}");
    assert!(out.stdout.is_empty(), "{out:#?}");
}

#[tokio::test]
async fn the_config_comes_from_the_flag_before_or_after_the_subcommand_or_the_environment() {
    let (dir, path) = config_file("http://127.0.0.1:9", &[]);
    let mut before = command();
    before.arg("--config").arg(&path).arg("check");
    let before = output(before).await.ok();
    let after = cli(&path, &["check"]).await.ok();
    let mut env = command();
    env.arg("check").env("POLLHOOK_CONFIG", &path);
    let env = output(env).await.ok();
    assert!(before.stdout.contains(": ok ("), "{before:#?}");
    assert_eq!(before.stdout, after.stdout);
    assert_eq!(before.stdout, env.stdout);

    // No flag, no variable and no ./pollhook.toml: a usage error that says what to do.
    let empty = tempfile::tempdir().unwrap();
    let mut none = command();
    none.arg("check").current_dir(empty.path());
    let none = output(none).await;
    assert_eq!(none.code, 2, "{none:#?}");
    assert!(
        none.stderr.starts_with("error:") && none.stderr.contains("--config"),
        "{none:#?}"
    );

    // ./pollhook.toml is the default.
    let mut default = command();
    default.arg("check").current_dir(dir.path());
    output(default).await.ok();
}

// ───────────────────────────── poll, events, status ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_dry_run_writes_nothing_and_poll_records_events_and_deliveries() {
    let shop = FakeShop::start(3).await.unwrap();
    let (secret, _) = whsec();
    let (_dir, config) = config_file(&shop.url, &[app_endpoint(&secret)]);

    let dry = cli(&config, &["poll", "shop.orders", "--dry-run"])
        .await
        .ok();
    assert!(
        dry.stdout.contains("3 change(s) would be recorded"),
        "{dry:#?}"
    );
    let list = cli(&config, &["events", "list", "--json"]).await.ok();
    assert_eq!(
        list.json(),
        Value::Array(Vec::new()),
        "a dry run wrote events"
    );
    let status = cli(&config, &["status"]).await.ok();
    assert!(
        status.stdout.contains("never"),
        "a dry run recorded a poll: {status:#?}"
    );

    let poll = cli(&config, &["poll", "shop.orders"]).await.ok();
    assert!(
        poll.stdout
            .contains("3 item(s) in 1 page(s); 3 change(s) were recorded, 3 delivery(ies) queued"),
        "{poll:#?}"
    );
    let list = cli(&config, &["events", "list", "--json"])
        .await
        .ok()
        .json();
    let list = list.as_array().expect("a JSON array");
    assert_eq!(list.len(), 3);
    let design_keys = BTreeSet::from(EVENT_KEYS);
    let mut ids = BTreeSet::new();
    for event in list {
        let keys = object_keys(event);
        assert_eq!(keys, design_keys, "{event}");
        assert_eq!(event["type"], "shop.orders.created");
        assert_eq!(event["source"], "shop");
        assert_eq!(event["resource"], "orders");
        assert_eq!(event["previous"], Value::Null);
        assert_eq!(event["changes"], Value::Null);
        assert_eq!(
            event["data"]["id"].to_string(),
            event["resource_id"].as_str().unwrap()
        );
        ids.insert(event["resource_id"].as_str().unwrap().to_owned());
        let id = event["id"].as_str().unwrap();
        let shown = cli(&config, &["events", "show", id]).await.ok();
        assert_eq!(&shown.json(), event);
    }
    assert_eq!(
        ids,
        BTreeSet::from(["1001".into(), "1002".into(), "1003".into()])
    );

    let status = cli(&config, &["status"]).await.ok();
    for word in [
        "RESOURCE",
        "shop.orders",
        "changed",
        "ENDPOINT",
        "PENDING",
        "app",
        // The database's size, events kept and the oldest one (retention).
        "event(s) kept, oldest detected",
        "retain = 30days",
    ] {
        assert!(status.stdout.contains(word), "no {word}: {status:#?}");
    }
    let app = status
        .stdout
        .lines()
        .find(|l| l.starts_with("app "))
        .unwrap();
    assert_eq!(
        app.split_whitespace().collect::<Vec<_>>(),
        ["app", "3", "0", "0", "active"]
    );

    let unknown = cli(&config, &["poll", "shop.nope"]).await;
    assert_eq!(unknown.code, 2, "{unknown:#?}");
    assert!(
        unknown.stderr.contains("no resource `nope`"),
        "{unknown:#?}"
    );
    let unknown = cli(&config, &["events", "show", "evt_nope"]).await;
    assert_ne!(unknown.code, 0, "{unknown:#?}");
    assert!(unknown.stderr.contains("no event evt_nope"), "{unknown:#?}");
}

// ───────────────────────────── endpoints ─────────────────────────────

#[tokio::test]
async fn endpoints_show_a_generated_secret_once_and_never_again() {
    let (_dir, config) = config_file("http://127.0.0.1:9", &[]);
    let secret = add_endpoint_with_generated_secret(&config, "hook").await;
    sign::decode_secret(Scheme::StandardWebhooks, &secret).expect("a usable whsec_ secret");
    let key_part = &secret["whsec_".len()..];

    let list = cli(&config, &["endpoints", "list"]).await.ok();
    let list_json = cli(&config, &["endpoints", "list", "--json"]).await.ok();
    let show = cli(&config, &["endpoints", "show", "hook"]).await.ok();
    let show_json = cli(&config, &["endpoints", "show", "hook", "--json"])
        .await
        .ok();
    for out in [&list, &list_json, &show, &show_json] {
        assert!(
            !out.stdout.contains(key_part),
            "the secret leaked: {out:#?}"
        );
        assert!(
            !out.stderr.contains(key_part),
            "the secret leaked: {out:#?}"
        );
    }
    assert!(
        list.stdout.contains("hook") && list.stdout.contains("standard-webhooks"),
        "{list:#?}"
    );
    let shown = show_json.json();
    assert_eq!(shown["name"], "hook");
    assert_eq!(shown["url"], "http://127.0.0.1:9/x");
    assert_eq!(shown["signing"], "standard-webhooks");
    assert_eq!(shown["state"], "active");
    assert_eq!(
        shown["origin"], "cli",
        "added with `pollhook endpoints add`"
    );

    let again = add_endpoint(&config, "hook", "http://127.0.0.1:9/y").await;
    assert_ne!(again.code, 0, "{again:#?}");
    assert!(again.stderr.contains("already exists"), "{again:#?}");
    let private = add_endpoint(&config, "lan", "http://10.0.0.1/x").await;
    assert_eq!(private.code, 2, "{private:#?}");
    assert!(private.stderr.contains("allow_networks"), "{private:#?}");

    cli(&config, &["endpoints", "pause", "hook"]).await.ok();
    assert_eq!(
        active_and_state(&config, "hook").await,
        (false.into(), "paused".into())
    );
    cli(&config, &["endpoints", "resume", "hook"]).await.ok();
    assert_eq!(
        active_and_state(&config, "hook").await,
        (true.into(), "active".into())
    );
    cli(&config, &["endpoints", "remove", "hook"]).await.ok();
    let gone = cli(&config, &["endpoints", "show", "hook"]).await;
    assert_ne!(gone.code, 0, "{gone:#?}");
    assert!(gone.stderr.contains("no endpoint hook"), "{gone:#?}");

    for action in ["pause", "resume", "remove", "show"] {
        let out = cli(&config, &["endpoints", action, "nope"]).await;
        assert_ne!(out.code, 0, "{action}: {out:#?}");
        assert!(
            out.stderr.starts_with("error:") && out.stderr.contains("no endpoint nope"),
            "{action}: {out:#?}"
        );
    }
}

// ───────────────────────────── verify ─────────────────────────────

/// The one endpoint most tests here deliver to: `app`, a closed loopback port, Standard Webhooks.
fn app_endpoint(secret: &str) -> Endpoint {
    Endpoint::new(
        "app",
        "http://127.0.0.1:9/hooks",
        "standard-webhooks",
        secret,
    )
}

/// `endpoints add NAME --url URL`, however it ends.
async fn add_endpoint(config: &Path, name: &str, url: &str) -> Out {
    cli(config, &["endpoints", "add", name, "--url", url]).await
}

/// `endpoints show NAME --json`'s `active` and `state`.
async fn active_and_state(config: &Path, name: &str) -> (Value, Value) {
    let shown = cli(config, &["endpoints", "show", name, "--json"])
        .await
        .ok()
        .json();
    (shown["active"].clone(), shown["state"].clone())
}

fn whsec() -> (String, Vec<u8>) {
    let secret = sign::generate_secret(Scheme::StandardWebhooks);
    let key = sign::decode_secret(Scheme::StandardWebhooks, &secret).unwrap();
    (secret, key)
}

#[tokio::test]
async fn verify_accepts_a_signed_request_and_refuses_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, key) = whsec();
    let event = r#"{"id":"evt_0193","type":"shop.orders.updated","source":"shop","resource":"orders","action":"updated","resource_id":"1042"}"#;
    let input = SignInput {
        endpoint_name: "hook",
        url: "http://127.0.0.1:9/x",
        event_id: "evt_0193",
        body: event,
        timestamp: chrono::Utc::now().timestamp(),
    };
    let signed = sign::sign(Scheme::StandardWebhooks, &[&key], &input).unwrap();
    let request = |body: &[u8]| {
        let mut raw =
            b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Type: application/json\r\n".to_vec();
        for (name, value) in &signed.headers {
            raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(body);
        raw
    };
    let good = dir.path().join("good.http");
    std::fs::write(&good, request(&signed.body)).unwrap();
    let tampered = dir.path().join("tampered.http");
    std::fs::write(
        &tampered,
        request(&event.replace("1042", "1043").into_bytes()),
    )
    .unwrap();

    let verify = |file: &Path, secret: &str| {
        let mut cmd = command();
        cmd.args([
            "verify",
            "--signing",
            "standard-webhooks",
            "--secret",
            secret,
            "--request",
        ])
        .arg(file);
        output(cmd)
    };
    let out = verify(&good, &secret).await.ok();
    assert!(
        out.stdout.starts_with("valid") && out.stdout.contains("evt_0193"),
        "{out:#?}"
    );
    let out = verify(&tampered, &secret).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.starts_with("INVALID"), "{out:#?}");
    let (other, _) = whsec();
    let out = verify(&good, &other).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.starts_with("INVALID"), "{out:#?}");

    // jwt: the body alone carries the signature; the secret may come from the environment.
    let jwt_key = "a-jwt-key-that-is-at-least-32-bytes-long";
    let signed = sign::sign(Scheme::Jwt, &[jwt_key.as_bytes()], &input).unwrap();
    let body = dir.path().join("jwt.json");
    std::fs::write(&body, &signed.body).unwrap();
    let mut cmd = command();
    cmd.args(["verify", "--signing", "jwt", "--body"])
        .arg(&body)
        .env("POLLHOOK_VERIFY_SECRET", jwt_key);
    let out = output(cmd).await.ok();
    assert!(
        out.stdout.starts_with("valid") && out.stdout.contains("evt_0193"),
        "{out:#?}"
    );
    let mut forged = String::from_utf8(signed.body).unwrap();
    forged.insert(forged.len() - 3, 'x');
    std::fs::write(&body, forged).unwrap();
    let mut cmd = command();
    cmd.args(["verify", "--signing", "jwt", "--body"])
        .arg(&body)
        .env("POLLHOOK_VERIFY_SECRET", jwt_key);
    let out = output(cmd).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.starts_with("INVALID"), "{out:#?}");
}

// ───────────────────────────── beside a running pollhook ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_pollhook_picks_up_cli_changes_and_a_second_run_refuses() {
    let shop = FakeShop::start(2).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let (dir, config) = config_file(&shop.url, &[]);
    let mut run = spawn_run(&config, &dir.path().join("run.log"));
    // Opening the database while `run` creates it races its migration (see
    // `first_opens_of_a_new_database_do_not_race`): wait until it is up.
    eventually(run.waiting_for("pollhook running"), PATIENCE, async || {
        run.logged("pollhook running.").then_some(())
    })
    .await;
    let store = Store::open(&dir.path().join("pollhook.db")).unwrap();
    let first = eventually(
        run.waiting_for("the first poll's events"),
        PATIENCE,
        async || events(&store).into_iter().next(),
    )
    .await;

    let second = cli(&config, &["run"]).await;
    assert_ne!(second.code, 0, "{second:#?}");
    assert!(second.stderr.contains("already using"), "{second:#?}");

    let (secret, key) = whsec();
    let url = format!("{}/late", receiver.url);
    let args = [
        "endpoints",
        "add",
        "late",
        "--url",
        &url,
        "--signing",
        "standard-webhooks",
        "--secret",
        &secret,
    ];
    let add = cli(&config, &args).await.ok();
    assert!(
        !add.stdout.contains(&secret),
        "a secret given by the operator is not echoed: {add:#?}"
    );
    let replay = cli(&config, &["replay", &first.id, "--endpoint", "late"])
        .await
        .ok();
    assert!(
        replay.stdout.contains("queued again for: late"),
        "{replay:#?}"
    );

    let got = eventually(
        run.waiting_for("the replayed event at the new endpoint"),
        PATIENCE,
        async || receiver.received().into_iter().next(),
    )
    .await;
    let verified = sign::verify(
        Scheme::StandardWebhooks,
        &[&key],
        &got.headers,
        &got.body,
        chrono::Utc::now().timestamp(),
        300,
    )
    .unwrap();
    assert_eq!(verified.id, first.id);
    assert_eq!(event_ids(&receiver.received()), [first.id.as_str()]);
    eventually("the delivery recorded", PATIENCE, async || {
        (deliveries(&store, "late").first()?.status == "delivered").then_some(())
    })
    .await;
    let attempts = cli(&config, &["deliveries", "attempts", &first.id, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(attempts[0]["status"], 204, "{attempts}");
    let listed = cli(
        &config,
        &["deliveries", "list", "--endpoint", "late", "--json"],
    )
    .await
    .ok()
    .json();
    assert_eq!(listed[0]["event_id"], first.id.as_str(), "{listed}");
    assert_eq!(listed[0]["status"], "delivered", "{listed}");

    let unknown = cli(&config, &["replay", "evt_nope"]).await;
    assert_ne!(unknown.code, 0, "{unknown:#?}");
    assert!(unknown.stderr.contains("no event evt_nope"), "{unknown:#?}");
    let usage = cli(&config, &["deliveries", "retry"]).await;
    assert_eq!(usage.code, 2, "{usage:#?}");
    run.kill();
}

/// DESIGN.md §8: operator commands work while `pollhook run` writes to the same database. SQLite
/// makes a writer wait up to `busy_timeout` for another; here another connection holds the write
/// lock for a moment, and `replay` and `endpoints update` must wait for it rather than fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_wait_for_a_busy_database() {
    let shop = FakeShop::start(1).await.unwrap();
    let (secret, _) = whsec();
    let (dir, config) = config_file(&shop.url, &[app_endpoint(&secret)]);
    cli(&config, &["poll", "shop.orders"]).await.ok();
    let store = Store::open(&dir.path().join("pollhook.db")).unwrap();
    let event = events(&store).remove(0);

    // Another writer (as `pollhook run` is, between two commits) holds the write lock.
    let writer = rusqlite::Connection::open(dir.path().join("pollhook.db")).unwrap();
    writer
        .execute_batch("BEGIN IMMEDIATE; UPDATE endpoints SET updated_at = updated_at;")
        .unwrap();
    let mut replay = tokio::spawn(cli(&config, &["replay", &event.id, "--endpoint", "app"]));
    let mut rotate = tokio::spawn(cli(
        &config,
        &["endpoints", "update", "app", "--rotate-secret"],
    ));
    // A moment of contention: both commands must still be waiting when the lock is released.
    let early = tokio::time::timeout(Duration::from_millis(500), &mut replay).await;
    if let Ok(out) = early {
        panic!(
            "`replay` gave up on a busy database instead of waiting: {:#?}",
            out.unwrap()
        );
    }
    if rotate.is_finished() {
        panic!(
            "`endpoints update` gave up on a busy database instead of waiting: {:#?}",
            rotate.await.unwrap()
        );
    }
    writer.execute_batch("COMMIT").unwrap();
    let replayed = replay.await.unwrap().ok();
    assert!(
        replayed.stdout.contains("queued again for: app"),
        "{replayed:#?}"
    );
    let rotated = (&mut rotate).await.unwrap().ok();
    assert!(rotated.stdout.contains("New secret"), "{rotated:#?}");
}

/// Two processes opening a new database at once (`pollhook run` starting while an operator runs
/// `pollhook status`, say) must both find it migrated, not fail with "table … already exists".
#[test]
fn first_opens_of_a_new_database_do_not_race() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pollhook.db");
        let start = std::sync::Arc::new(std::sync::Barrier::new(4));
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let (db, start) = (db.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    Store::open(&db).map(|_| ())
                })
            })
            .collect();
        for open in opens {
            if let Err(e) = open.join().unwrap() {
                panic!("round {round}: a concurrent first open failed: {e}");
            }
        }
    }
}
