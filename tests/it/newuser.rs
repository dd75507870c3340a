//! What a new user tripped on (the new-user issue): one test per behaviour that changed. Real
//! servers on loopback only; every wait bounded by `eventually`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use pollhook::poll::Mode;

use crate::common::{FakeApi, Harness, Style};
use crate::support_deliver::{Hook, Pipeline, endpoint, eventually, loopback_delivery};

/// A jwt key: at least 32 bytes (HS256).
const JWT_KEY: &str = "a-jwt-key-that-is-at-least-32-bytes-long";

/// A `shop` source with an `orders` resource at `url`, `extra` lines added to the resource.
fn shop(url: &str, extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "shop"
base_url = "{url}"

  [[sources.resources]]
  name = "orders"
  path = "/orders"
  every = "200ms"
  jitter = "0s"
{extra}
"#
    )
}

// ───────────────────────── 7. changes list only what counts ─────────────────────────

#[tokio::test]
async fn changes_leave_out_ignored_fields_and_previous_is_the_last_data() {
    let api = FakeApi::start(Style::None).await;
    api.set_raw_items(&[r#"{"id":1,"status":"open","updatedAt":"t1"}"#]);
    let h = Harness::new(&shop(&api.url, r#"  ignore = ["updatedAt"]"#));
    h.poll().await.unwrap();

    api.set_raw_items(&[r#"{"id":1,"status":"open","updatedAt":"t2"}"#]);
    let only_ignored = h.poll().await.unwrap();
    assert!(only_ignored.events.is_empty(), "{:?}", only_ignored.events);

    api.set_raw_items(&[r#"{"id":1,"status":"shipped","updatedAt":"t3"}"#]);
    let report = h.poll().await.unwrap();
    let [event] = &report.events[..] else {
        panic!("one event: {:?}", report.events)
    };
    assert_eq!(
        event.changes,
        json!([{"op": "replace", "path": "/status", "value": "shipped"}]),
        "no `/updatedAt` in changes"
    );
    assert_eq!(
        event.previous.get(),
        r#"{"id":1,"status":"open","updatedAt":"t1"}"#,
        "previous is the data of the last event about the item"
    );
    assert_eq!(
        event.data.value()["updatedAt"],
        "t3",
        "data is the item in full"
    );
}

// ───────────────────────── 13. one form for the event type ─────────────────────────

#[tokio::test]
async fn event_type_names_the_source_and_two_sources_never_collide() {
    let api = FakeApi::start(Style::None).await;
    api.set_items([json!({"id": 1})]);
    let text = shop(&api.url, r#"  initial = "emit""#);
    let shop_h = Harness::new(&text);
    let pg_h = Harness::new(&text.replace(r#"name = "shop""#, r#"name = "pg""#));
    let shop_event = &shop_h.poll().await.unwrap().events[0];
    let pg_event = &pg_h.poll().await.unwrap().events[0];
    assert_eq!(shop_event.kind, "shop.orders.created");
    assert_eq!(pg_event.kind, "pg.orders.created");
    assert_eq!(
        pg_h.events()[0].kind,
        "pg.orders.created",
        "stored the same"
    );
    let json: Value = serde_json::from_str(&pg_event.to_json()).unwrap();
    assert_eq!(json["type"], "pg.orders.created", "and sent the same");
}

// ───────────────────────── 14. one key-order rule for every event ─────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_jwt_and_backfilled_events_keep_the_api_key_order() {
    const ITEM: &str = r#"{"zeta":1,"id":7,"alpha":{"y":2,"b":3}}"#;
    let api = FakeApi::start(Style::None).await;
    api.set_raw_items(&[ITEM]);
    let hook = Hook::start(|_| 200).await;
    let secret = pollhook::sign::generate_secret(pollhook::sign::Scheme::StandardWebhooks);
    let mut p = Pipeline::start(&format!(
        "{}{}{}{}",
        shop(&api.url, r#"  initial = "emit""#),
        loopback_delivery(""),
        endpoint(
            "sw",
            &format!("{}/sw", hook.url),
            "standard-webhooks",
            &secret
        ),
        endpoint("jwt", &format!("{}/jwt", hook.url), "jwt", JWT_KEY),
    ));
    let bodies = |path: &str| -> Option<Vec<String>> {
        let got: Vec<String> = (hook.log().iter())
            .filter(|x| x.request.path == path)
            .map(|x| String::from_utf8_lossy(&x.request.body).into_owned())
            .collect();
        (!got.is_empty()).then_some(got)
    };
    let sw = eventually("the live event at sw", || bodies("/sw")).await;
    assert!(sw[0].contains(&format!(r#""data":{ITEM},"#)), "{}", sw[0]);
    assert!(sw[0].ends_with(r#""backfill":false}"#), "{}", sw[0]);

    let jwt = eventually("the live event at jwt", || bodies("/jwt")).await;
    let envelope: Value = serde_json::from_str(&jwt[0]).unwrap();
    let token = envelope["data"].as_str().unwrap();
    let claims = URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    let claims = String::from_utf8(claims).unwrap();
    assert!(
        claims.contains(&format!(r#""data":{ITEM},"#)),
        "the JWT's data claim keeps the order too: {claims}"
    );

    assert_eq!(p.store.backfill("sw").await.unwrap(), 1);
    let backfilled = eventually("the backfilled event at sw", || {
        let got = bodies("/sw")?;
        (got.len() >= 2).then(|| got[1].clone())
    })
    .await;
    assert!(
        backfilled.contains(&format!(r#""data":{ITEM},"#)),
        "{backfilled}"
    );
    assert!(backfilled.ends_with(r#""backfill":true}"#), "{backfilled}");
    p.stop().await;
}

// ───────────────────────── 5. a crashed process's leases end at start ─────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_run_releases_the_leases_of_a_dead_process() {
    let api = FakeApi::start(Style::None).await;
    api.set_items([json!({"id": 1})]);
    let hook = Hook::start(|_| 200).await;
    let mut p = Pipeline::new(&format!(
        "{}{}{}",
        shop(&api.url, r#"  initial = "emit""#),
        loopback_delivery(""),
        endpoint("hook", &format!("{}/h", hook.url), "jwt", JWT_KEY),
    ));
    p.store
        .reconcile_endpoints(&p.config.endpoints)
        .await
        .unwrap();
    let source = pollhook::source::build(&p.config.sources[0]).unwrap();
    let resource = &p.config.sources[0].resources[0];
    let report = pollhook::poll::poll(&p.store, "shop", source.as_ref(), resource, Mode::Commit)
        .await
        .unwrap();
    assert_eq!(report.deliveries, 1);
    // A process that claims the delivery for an hour and dies before sending it.
    let id = p.store.endpoint_named("hook").await.unwrap().id;
    let claimed = p.store.claim(id, 10, 3_600_000).await.unwrap();
    assert_eq!(claimed.len(), 1);

    p.run();
    let got = eventually("the leased delivery sent by the next run", || {
        let log = hook.log();
        (!log.is_empty()).then(|| log.len())
    })
    .await;
    assert_eq!(got, 1);
    assert_eq!(
        hook.log()[0].request.header("pollhook-event-id"),
        Some(claimed[0].event_id.as_str()),
        "the same event id"
    );
    p.stop().await;
}

// ───────────────────────── 16. runtime state of config endpoints survives restarts ─────────────────────────

#[tokio::test]
async fn pausing_or_removing_a_config_endpoint_lasts_until_the_file_changes_it() {
    let text = |url: &str| {
        format!(
            "{}{}{}",
            loopback_delivery(""),
            endpoint("paused", "http://127.0.0.1:9/p", "jwt", JWT_KEY),
            endpoint("removed", url, "jwt", JWT_KEY),
        )
    };
    let p = Pipeline::new(&text("http://127.0.0.1:9/r"));
    let store = &p.store;
    let specs = &p.config.endpoints;
    store.reconcile_endpoints(specs).await.unwrap();
    store.set_endpoint_active("paused", false).await.unwrap();
    store.remove_endpoint("removed").await.unwrap();

    // A restart with the same file.
    store.reconcile_endpoints(specs).await.unwrap();
    let list = store.endpoints().await.unwrap();
    let names: Vec<&str> = list.iter().map(|e| e.spec.name.as_str()).collect();
    assert_eq!(names, ["paused"], "the removed one stays removed");
    assert!(!list[0].spec.active, "the paused one stays paused");
    assert_eq!(list[0].origin, "config", "and is marked as the file's");

    // The file's definition of `removed` changes: the file wins again, `paused` is untouched.
    let changed = Pipeline::new(&text("http://127.0.0.1:9/r2"));
    store
        .reconcile_endpoints(&changed.config.endpoints)
        .await
        .unwrap();
    let list = store.endpoints().await.unwrap();
    let names: Vec<&str> = list.iter().map(|e| e.spec.name.as_str()).collect();
    assert_eq!(names, ["paused", "removed"]);
    assert!(!list[0].spec.active);
    assert!(list[1].spec.active && list[1].spec.url.ends_with("/r2"));
}
