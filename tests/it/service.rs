//! Running as a service: a clean stop on SIGTERM with deliveries in flight, and the operational
//! `pollhook.*` events an operator subscribes to.

use crate::support::block_on;
use std::collections::BTreeSet;
use std::time::Duration;

use pollhook::demo::Received;

use crate::support::{
    ConfigBuilder, Endpoint, Hook, PATIENCE, Pipeline, Shop, Switch, event_ids, eventually,
    shop_config, shop_source, spawn_run,
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// SIGTERM stops claiming, lets the requests in flight finish and records them, and exits 0;
/// what was not sent stays pending and goes out after the next start. Nothing is lost, and
/// nothing is marked delivered that the receiver did not answer 2xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_deliveries_in_flight_exits_cleanly_and_loses_nothing() {
    let shop = Shop::start(1..=6).await;
    let hook = Hook::start(|_| 204).await;
    hook.hold(true);
    let dir = tempfile::tempdir().unwrap();
    let config = shop_config(&shop.url)
        .in_dir(dir.path())
        .set("delivery.endpoint_concurrency", 2)
        .set("delivery.retries", vec!["200ms"])
        .endpoint(signed_endpoint("app", &format!("{}/hooks", hook.url)))
        .write();
    let mut run = spawn_run(&config, &dir.path().join("run.log"));
    eventually(
        run.waiting_for("two requests in flight"),
        PATIENCE,
        async || (hook.log().len() == 2).then_some(()),
    )
    .await;

    run.terminate();
    eventually(
        run.waiting_for("the shutdown to begin"),
        PATIENCE,
        async || run.logged("Shutting down").then_some(()),
    )
    .await;
    // The two requests in flight are answered now, inside the grace period.
    hook.hold(false);
    let status = run
        .exit_within(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("{}", run.waiting_for("a clean exit after SIGTERM")));
    assert!(status.success(), "exit status {status}");
    assert_eq!(hook.log().len(), 2, "nothing new was claimed after SIGTERM");

    let store = pollhook::store::Store::open(&dir.path().join("pollhook.db")).unwrap();
    let rows = crate::support::deliveries(&store, "app");
    assert_eq!(rows.len(), 6);
    let answered: BTreeSet<String> = answered_ids(&hook);
    let delivered: BTreeSet<String> = rows
        .iter()
        .filter(|d| d.status == "delivered")
        .map(|d| d.event_id.clone())
        .collect();
    assert_eq!(
        delivered, answered,
        "exactly what the receiver answered is delivered"
    );
    assert_eq!(rows.iter().filter(|d| d.status == "pending").count(), 4);

    // The next start sends the rest.
    let mut again = spawn_run(&config, &dir.path().join("again.log"));
    eventually(
        again.waiting_for("every delivery delivered after the restart"),
        Duration::from_secs(30),
        async || {
            crate::support::deliveries(&store, "app")
                .iter()
                .all(|d| d.status == "delivered")
                .then_some(())
        },
    )
    .await;
    again.terminate();
    assert!(
        again
            .exit_within(Duration::from_secs(20))
            .await
            .is_some_and(|s| s.success())
    );
    let all: BTreeSet<String> = answered_ids(&hook);
    assert_eq!(all.len(), 6, "every event reached the receiver");
}

/// The ids of every event the hook has been sent, once each.
fn answered_ids(hook: &Hook) -> BTreeSet<String> {
    let received: Vec<Received> = hook.log().iter().map(|x| x.request.clone()).collect();
    event_ids(&received).into_iter().collect()
}

/// Endpoint `name` at `url`, Standard Webhooks with [`SECRET`].
fn signed_endpoint(name: &str, url: &str) -> Endpoint {
    Endpoint::new(name, url, "standard-webhooks", SECRET)
}

/// The operators' endpoint: `ops` on `ops`, subscribed to pollhook's own events.
fn ops_endpoint(ops: &Hook) -> Endpoint {
    signed_endpoint("ops", &format!("{}/ops", ops.url)).set("resources", vec!["pollhook.*"])
}

/// The body of the first webhook of event type `kind` the hook gets, as JSON.
async fn first_event(hook: &Hook, kind: &str) -> serde_json::Value {
    serde_json::from_slice(&first_of(hook, kind).await.body).unwrap()
}

/// The first webhook of event type `kind` the hook gets.
async fn first_of(hook: &Hook, kind: &str) -> Received {
    eventually(format!("a {kind} webhook"), PATIENCE, async || {
        hook.log()
            .iter()
            .find(|x| x.header("pollhook-event-type") == kind)
            .map(|x| x.request.clone())
    })
    .await
}

/// A source that answers 503 while `down` is on, and one order otherwise.
async fn flaky_source(down: Switch) -> String {
    let app = axum::Router::new().route(
        "/orders",
        axum::routing::get(move || {
            let down = down.clone();
            async move {
                if down.is_on() {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "[]")
                } else {
                    (
                        axum::http::StatusCode::OK,
                        r#"[{"id": 1, "status": "open"}]"#,
                    )
                }
            }
        }),
    );
    crate::support::start(app).await
}

/// An endpoint that names `pollhook.*` hears when a resource starts failing and when it recovers,
/// once each, not at every poll; one subscribed to `*` does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_resource_is_announced_once_and_so_is_its_recovery() {
    let ops = Hook::start(|_| 204).await;
    let app = Hook::start(|_| 204).await;
    let down = Switch::on();
    let url = flaky_source(down.clone()).await;
    let mut p = Pipeline::start(
        ConfigBuilder::without_storage()
            .set("poll.alert_after_failures", 3)
            .source(shop_source(&url).set("retries", 0))
            .loopback_delivery()
            .endpoint(ops_endpoint(&ops))
            .endpoint(signed_endpoint("app", &format!("{}/app", app.url))),
    );
    let event = first_event(&ops, "pollhook.resource.failing").await;
    assert_eq!(event["resource_id"], "shop.orders");
    assert_eq!(event["data"]["failed_polls"], 3);
    assert!(
        event["data"]["error"].as_str().unwrap().contains("503"),
        "{event}"
    );
    // More failures follow without another alert.
    eventually("six failed polls", PATIENCE, async || {
        let status = block_on(p.store.status()).unwrap();
        (status.first()?.consecutive_errors >= 6).then_some(())
    })
    .await;
    let alerts = |kind: &str| {
        ops.log()
            .iter()
            .filter(|x| x.header("pollhook-event-type") == kind)
            .count()
    };
    assert_eq!(alerts("pollhook.resource.failing"), 1);

    // The API comes back: one recovery alert, and the listing's own event goes to `app`.
    down.off();
    let event = first_event(&ops, "pollhook.resource.recovered").await;
    assert!(
        event["data"]["failed_polls"].as_i64().unwrap() >= 6,
        "{event}"
    );
    eventually("order 1 at the app", PATIENCE, async || {
        (app.log().len() == 1).then_some(())
    })
    .await;
    assert_eq!(alerts("pollhook.resource.recovered"), 1);
    assert!(
        app.log()
            .iter()
            .all(|x| !x.header("pollhook-event-type").starts_with("pollhook.")),
        "`*` does not subscribe to pollhook.* events"
    );
    p.stop().await;
}

/// A `410 Gone` disables the endpoint and tells the operators' endpoint so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_endpoint_is_announced() {
    let shop = Shop::start(1..=2).await;
    let ops = Hook::start(|_| 204).await;
    let gone = Hook::start(|_| 410).await;
    let mut p = Pipeline::start(
        shop_config(&shop.url)
            .endpoint(ops_endpoint(&ops))
            .endpoint(
                signed_endpoint("gone", &format!("{}/gone", gone.url))
                    .set("resources", vec!["shop.*"]),
            ),
    );
    let event = first_event(&ops, "pollhook.endpoint.disabled").await;
    assert_eq!(event["resource_id"], "gone");
    assert_eq!(event["source"], "pollhook");
    assert!(
        event["data"]["reason"].as_str().unwrap().contains("410"),
        "{event}"
    );
    p.stop().await;
}

/// `listen = "127.0.0.1:0"` lets the kernel pick the admin port, and the binary's log says which:
/// the API answers there.
#[tokio::test]
async fn the_admin_api_answers_on_the_address_the_binary_logs() {
    let dir = tempfile::tempdir().unwrap();
    let config = shop_config("http://127.0.0.1:9").in_dir(dir.path()).write();
    let run = spawn_run(&config, &dir.path().join("run.log"));
    let addr = run.admin_addr().await;
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let livez = reqwest::get(format!("http://{addr}/livez"))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", run.waiting_for("/livez to answer")));
    assert_eq!(livez.status(), reqwest::StatusCode::OK);
}
