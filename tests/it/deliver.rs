//! Delivery end to end (DESIGN.md §6–7): the real pipeline in-process (`pollhook::run`) between a
//! fake shop and webhook receivers on loopback. Signing (jwt, Standard Webhooks, key rotation),
//! the routing headers, retries and the dead letter, operator retries and replays, per-endpoint
//! isolation, per-item order, 410 Gone, the URL policy, and a SIGKILL of the real binary.

use crate::support::block_on;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pollhook::config::Secret;
use pollhook::demo::{FakeShop, Receiver};
use pollhook::endpoint::EndpointSpec;
use pollhook::sign::{self, Scheme};
use pollhook::store::{EndpointPatch, Store};
use serde_json::Value;

use crate::support::{
    self, ConfigBuilder, Endpoint, Hook, PATIENCE, Pipeline, Shop, Switch, deliveries,
    endpoint_spec, event_ids, events, eventually, object_keys, shop_config, shop_source, spawn_run,
    table,
};

/// A jwt key: at least 32 bytes (HS256).
const JWT_KEY: &str = "a-jwt-key-that-is-at-least-32-bytes-long";

fn whsec() -> (String, Vec<u8>) {
    let secret = sign::generate_secret(Scheme::StandardWebhooks);
    let key = sign::decode_secret(Scheme::StandardWebhooks, &secret).unwrap();
    (secret, key)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The `v1,…` entries of a `webhook-signature` header.
fn signatures(header: &str) -> Vec<&str> {
    header.split(' ').filter(|s| !s.is_empty()).collect()
}

// ───────────────────────────── signing and the request ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_body_is_one_token_whose_claims_carry_the_event() {
    let shop = FakeShop::start(2).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let url = format!("{}/hooks/erp", receiver.url);
    let mut p = Pipeline::start(
        shop_config(&shop.url).endpoint(Endpoint::new("erp", &url, "jwt", JWT_KEY)),
    );

    let got = eventually("both orders delivered to erp", PATIENCE, async || {
        let r = receiver.received();
        (r.len() >= 2).then_some(r)
    })
    .await;
    let mut jtis = BTreeSet::new();
    for r in &got {
        assert_eq!(r.path, "/hooks/erp");
        let envelope: serde_json::Map<String, Value> = serde_json::from_slice(&r.body).unwrap();
        let token = envelope["data"].as_str().expect("data is a string");
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            format!(r#"{{"data":"{token}"}}"#),
            "the body is exactly {{\"data\":\"<jwt>\"}}"
        );

        // What a receiver does with any JWT library: default HS256 validation (exp required).
        let decoded = jsonwebtoken::decode::<Value>(
            token,
            &DecodingKey::from_secret(JWT_KEY.as_bytes()),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap_or_else(|e| panic!("default HS256 validation refused the token: {e}"));
        assert_eq!(decoded.header.alg, Algorithm::HS256);
        let claims = decoded.claims;
        let keys = object_keys(&claims);
        assert_eq!(
            keys,
            BTreeSet::from(["webhook", "url", "data", "iat", "exp", "jti"]),
            "claims, and no aud"
        );
        assert_eq!(claims["webhook"], "erp");
        assert_eq!(claims["url"], url.as_str());
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(r.header("pollhook-event-id"), Some(jti));
        let stored = p
            .store
            .event(jti)
            .await
            .unwrap()
            .expect("jti is a stored event id");
        assert_eq!(claims["data"], serde_json::to_value(&stored).unwrap());
        assert_eq!(claims["data"]["type"], "shop.orders.created");
        assert_eq!(claims["data"]["action"], "created");
        assert_eq!(claims["data"]["resource_id"], stored.resource_id.as_str());
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap(),
            claims["exp"].as_i64().unwrap(),
        );
        assert!((iat - now()).abs() < 120, "iat {iat} is about now");
        assert!(
            exp > iat && exp - iat <= 3600,
            "exp {exp} a few minutes after iat {iat}"
        );

        let wrong = jsonwebtoken::decode::<Value>(
            token,
            &DecodingKey::from_secret(b"another-key-that-is-at-least-32-bytes-long"),
            &Validation::new(Algorithm::HS256),
        );
        assert!(wrong.is_err(), "a token verifies under another key");
        jtis.insert(jti.to_owned());
    }
    let stored: BTreeSet<String> = p.events().into_iter().map(|e| e.id).collect();
    assert_eq!(jtis, stored, "one webhook per event, each event once");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_request_is_signed_and_carries_the_routing_headers() {
    let shop = FakeShop::start(2).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let (secret, key) = whsec();
    let mut p = Pipeline::start(
        shop_config(&shop.url).endpoint(
            Endpoint::new(
                "app",
                &format!("{}/hooks/app", receiver.url),
                "standard-webhooks",
                &secret,
            )
            .set("headers", table(&[("X-Tenant", "acme")])),
        ),
    );

    let got = eventually("both orders delivered to app", PATIENCE, async || {
        let r = receiver.received();
        (r.len() >= 2).then_some(r)
    })
    .await;
    let mut ids = BTreeSet::new();
    for r in &got {
        let verified = sign::verify(
            Scheme::StandardWebhooks,
            &[&key],
            &r.headers,
            &r.body,
            now(),
            300,
        )
        .unwrap_or_else(|e| panic!("signature refused: {e}"));
        let id = r.header("webhook-id").unwrap();
        assert_eq!(verified.id, id);
        assert_eq!(r.header("pollhook-event-id"), Some(id));
        assert_eq!(signatures(r.header("webhook-signature").unwrap()).len(), 1);
        let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
        assert!(
            (ts - now()).abs() < 120,
            "webhook-timestamp {ts} is about now"
        );

        let stored = p
            .store
            .event(id)
            .await
            .unwrap()
            .expect("webhook-id is a stored event id");
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            stored.to_json(),
            "the body is the stored event JSON, byte for byte"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(
            r.header("user-agent")
                .unwrap_or_default()
                .starts_with("pollhook/"),
            "{:?}",
            r.header("user-agent")
        );
        assert_eq!(r.header("pollhook-event-type"), Some("shop.orders.created"));
        assert_eq!(r.header("pollhook-resource"), Some("shop.orders"));
        assert_eq!(
            r.header("pollhook-resource-id"),
            Some(stored.resource_id.as_str())
        );
        assert_eq!(r.header("pollhook-action"), Some("created"));
        assert_eq!(r.header("pollhook-endpoint"), Some("app"));
        assert_eq!(
            r.header("x-tenant"),
            Some("acme"),
            "the endpoint's own header"
        );

        let (_, other) = whsec();
        assert!(
            sign::verify(
                Scheme::StandardWebhooks,
                &[&other],
                &r.headers,
                &r.body,
                now(),
                300
            )
            .is_err()
        );
        let mut tampered = r.body.clone();
        tampered.extend_from_slice(b" ");
        assert!(
            sign::verify(
                Scheme::StandardWebhooks,
                &[&key],
                &r.headers,
                &tampered,
                now(),
                300
            )
            .is_err()
        );
        ids.insert(id.to_owned());
    }
    let stored: BTreeSet<String> = p.events().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, stored);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_alongside_the_old_one_during_the_overlap() {
    let shop = Shop::start([1]).await;
    let receiver = Receiver::start().await.unwrap();
    let (old_secret, old_key) = whsec();
    let mut p = Pipeline::start(shop_config(&shop.url).endpoint(Endpoint::new(
        "app",
        &format!("{}/hooks/app", receiver.url),
        "standard-webhooks",
        &old_secret,
    )));
    let first = eventually("order 1 delivered", PATIENCE, async || {
        receiver.received().into_iter().next()
    })
    .await;
    assert_eq!(
        signatures(first.header("webhook-signature").unwrap()).len(),
        1
    );
    sign::verify(
        Scheme::StandardWebhooks,
        &[&old_key],
        &first.headers,
        &first.body,
        now(),
        300,
    )
    .unwrap();
    let first_id = first.header("webhook-id").unwrap().to_owned();

    let (new_secret, new_key) = whsec();
    let patch = EndpointPatch {
        secret: Some(Secret::new(new_secret)),
        rotation_overlap: Some(Duration::from_secs(3600)),
        ..EndpointPatch::default()
    };
    p.store.update_endpoint("app", patch).await.unwrap();
    // The dispatcher caches an endpoint briefly: replays show when it has the new keys.
    replay_until(&p.store, &receiver, &first_id, |r| {
        signatures(r.header("webhook-signature").unwrap()).len() == 2
    })
    .await;

    shop.set(2, "open");
    let second = eventually("order 2 delivered", PATIENCE, async || {
        receiver
            .received()
            .into_iter()
            .find(|r| r.header("pollhook-resource-id") == Some("2"))
    })
    .await;
    let sigs = signatures(second.header("webhook-signature").unwrap());
    assert_eq!(sigs.len(), 2, "two space-separated signatures: {sigs:?}");
    assert!(sigs.iter().all(|s| s.starts_with("v1,")), "{sigs:?}");
    for key in [&new_key, &old_key] {
        sign::verify(
            Scheme::StandardWebhooks,
            &[key],
            &second.headers,
            &second.body,
            now(),
            300,
        )
        .unwrap_or_else(|e| panic!("one of the two keys is refused: {e}"));
    }
    let (_, stranger) = whsec();
    assert!(
        sign::verify(
            Scheme::StandardWebhooks,
            &[&stranger],
            &second.headers,
            &second.body,
            now(),
            300
        )
        .is_err()
    );

    // A rotation without overlap: only the newest key signs from then on.
    let (third_secret, third_key) = whsec();
    let patch = EndpointPatch {
        secret: Some(Secret::new(third_secret)),
        rotation_overlap: Some(Duration::ZERO),
        ..EndpointPatch::default()
    };
    p.store.update_endpoint("app", patch).await.unwrap();
    let last = replay_until(&p.store, &receiver, &first_id, |r| {
        sign::verify(
            Scheme::StandardWebhooks,
            &[&third_key],
            &r.headers,
            &r.body,
            now(),
            300,
        )
        .is_ok()
    })
    .await;
    assert_eq!(
        signatures(last.header("webhook-signature").unwrap()).len(),
        1
    );
    assert!(
        sign::verify(
            Scheme::StandardWebhooks,
            &[&new_key],
            &last.headers,
            &last.body,
            now(),
            300
        )
        .is_err()
    );
    p.stop().await;
}

/// Replays `event_id` to `app` until a request for it passes `check`, replaying again each time
/// one went out without passing (the dispatcher had not yet seen an endpoint change).
async fn replay_until(
    store: &Store,
    receiver: &Receiver,
    event_id: &str,
    check: impl Fn(&pollhook::demo::Received) -> bool,
) -> pollhook::demo::Received {
    let sent = |receiver: &Receiver| {
        receiver
            .received()
            .into_iter()
            .filter(|r| r.header("pollhook-event-id") == Some(event_id))
            .collect::<Vec<_>>()
    };
    let mut seen = sent(receiver).len();
    store.replay(event_id, Some("app")).await.unwrap();
    eventually("a replay that passes the check", PATIENCE, async || {
        let got = sent(receiver);
        if let Some(hit) = got[seen..].iter().find(|r| check(r)) {
            return Some(hit.clone());
        }
        if got.len() > seen {
            seen = got.len();
            block_on(store.replay(event_id, Some("app"))).unwrap();
        }
        None
    })
    .await
}

// ───────────────────────────── retries and the dead letter ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_schedule_keep_the_event_id_and_stop_at_success() {
    let shop = FakeShop::start(1).await.unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let hook = {
        let count = count.clone();
        Hook::start(move |_| {
            if count.fetch_add(1, Ordering::SeqCst) < 2 {
                500
            } else {
                204
            }
        })
        .await
    };
    let (secret, _) = whsec();
    let mut p = Pipeline::start(
        shop_config(&shop.url)
            .set("delivery.retries", vec!["200ms", "400ms"])
            .endpoint(Endpoint::new(
                "app",
                &format!("{}/hooks", hook.url),
                "standard-webhooks",
                &secret,
            )),
    );

    let delivery = eventually("the delivery to succeed", PATIENCE, async || {
        p.deliveries("app")
            .into_iter()
            .find(|d| d.status == "delivered")
    })
    .await;
    assert_eq!(delivery.attempts, 3);
    assert_eq!(delivery.last_status, Some(204));
    let attempts = p.store.attempts(&delivery.event_id).await.unwrap();
    let statuses: Vec<Option<u16>> = attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(204)]);
    assert_eq!(attempts[0].error.as_deref(), Some("HTTP 500"));
    assert_eq!(attempts[2].error, None);
    // Each wait is at least the scheduled one less the ±20 % jitter.
    let gap = |i: usize| (attempts[i + 1].at - attempts[i].at).num_milliseconds();
    assert!(
        gap(0) >= 155,
        "first retry after {} ms; schedule says 200 ms ± 20 %",
        gap(0)
    );
    assert!(
        gap(1) >= 315,
        "second retry after {} ms; schedule says 400 ms ± 20 %",
        gap(1)
    );

    p.stop().await;
    let log = hook.log();
    assert_eq!(log.len(), 3, "no request after the success");
    for exchange in log.iter() {
        assert_eq!(exchange.header("pollhook-event-id"), delivery.event_id);
        assert_eq!(exchange.header("webhook-id"), delivery.event_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_can_be_retried_and_events_replayed_with_the_same_id() {
    let shop = FakeShop::start(2).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    receiver.answer(500);
    let (secret, _) = whsec();
    let mut p = Pipeline::start(
        shop_config(&shop.url)
            .set("delivery.retries", vec!["100ms", "100ms"])
            .endpoint(Endpoint::new(
                "ep",
                &format!("{}/hooks", receiver.url),
                "standard-webhooks",
                &secret,
            )),
    );

    let dead = eventually("both deliveries to fail for good", PATIENCE, async || {
        let rows = p.deliveries("ep");
        (rows.len() == 2 && rows.iter().all(|d| d.status == "failed")).then_some(rows)
    })
    .await;
    for d in &dead {
        assert_eq!(d.attempts, 3, "{d:?}");
        assert_eq!(d.last_status, Some(500));
        let attempts = p.store.attempts(&d.event_id).await.unwrap();
        assert_eq!(attempts.len(), 3);
        assert!(
            attempts.iter().all(|a| a.status == Some(500)),
            "{attempts:?}"
        );
    }
    assert_eq!(
        receiver.received().len(),
        6,
        "3 attempts each, then nothing"
    );

    receiver.answer(204);
    let (first, second) = (&dead[0], &dead[1]);
    p.store.retry_delivery(first.id).await.unwrap();
    eventually("the retried delivery to succeed", PATIENCE, async || {
        let rows = p.deliveries("ep");
        let one = rows.iter().find(|d| d.id == first.id)?;
        (one.status == "delivered").then_some(())
    })
    .await;
    let rows = p.deliveries("ep");
    let other = rows.iter().find(|d| d.id == second.id).unwrap();
    assert_eq!(other.status, "failed", "only the one delivery was put back");
    assert!(
        p.store.retry_delivery(first.id).await.is_err(),
        "a delivered delivery is not retried"
    );

    assert_eq!(p.store.retry_failed(Some("ep")).await.unwrap(), 1);
    eventually("every delivery delivered", PATIENCE, async || {
        p.deliveries("ep")
            .iter()
            .all(|d| d.status == "delivered")
            .then_some(())
    })
    .await;

    let before = event_ids(&receiver.received())
        .iter()
        .filter(|id| **id == first.event_id)
        .count();
    assert_eq!(before, 4, "3 failed attempts and the retry");
    assert_eq!(
        p.store.replay(&first.event_id, Some("ep")).await.unwrap(),
        ["ep"]
    );
    let replayed = eventually("the replayed event to arrive", PATIENCE, async || {
        let got = receiver.received();
        let same: Vec<_> = got
            .into_iter()
            .filter(|r| r.header("pollhook-event-id") == Some(first.event_id.as_str()))
            .collect();
        (same.len() > before).then(|| same.last().cloned().unwrap())
    })
    .await;
    assert_eq!(replayed.header("webhook-id"), Some(first.event_id.as_str()));
    eventually(
        "the replay's delivery to be recorded",
        PATIENCE,
        async || {
            let rows: Vec<_> = p
                .deliveries("ep")
                .into_iter()
                .filter(|d| d.event_id == first.event_id)
                .collect();
            (rows.len() == 2 && rows.iter().all(|d| d.status == "delivered")).then_some(())
        },
    )
    .await;
    p.stop().await;
}

// ───────────────────────────── isolation and order ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_delay_the_others() {
    let shop = FakeShop::start(3).await.unwrap();
    let slow = Hook::start(|_| 204).await;
    slow.hold(true);
    let fast = Receiver::start().await.unwrap();
    let (secret, _) = whsec();
    // Two global slots and one per endpoint: the hanging endpoint can only ever take its own.
    let mut p = Pipeline::start(
        shop_config(&shop.url)
            .set("delivery.timeout", "60s")
            .set("delivery.concurrency", 2)
            .set("delivery.endpoint_concurrency", 1)
            .endpoint(Endpoint::new(
                "slow",
                &format!("{}/slow", slow.url),
                "standard-webhooks",
                &secret,
            ))
            .endpoint(Endpoint::new(
                "fast",
                &format!("{}/fast", fast.url),
                "standard-webhooks",
                &secret,
            )),
    );

    eventually(
        "the slow endpoint's first request to arrive",
        PATIENCE,
        async || (!slow.log().is_empty()).then_some(()),
    )
    .await;
    let events: HashSet<String> = eventually("three events", PATIENCE, async || {
        let e = p.events();
        (e.len() == 3).then_some(e)
    })
    .await
    .into_iter()
    .map(|e| e.id)
    .collect();
    eventually("every event at the fast endpoint", PATIENCE, async || {
        let got: HashSet<String> = event_ids(&fast.received()).into_iter().collect();
        (got == events).then_some(())
    })
    .await;
    // All of that happened while the slow endpoint's first request was still hanging.
    {
        let log = slow.log();
        assert_eq!(log.len(), 1, "one request in flight at the slow endpoint");
        assert!(!log[0].answered);
    }
    assert!(
        p.deliveries("slow")
            .iter()
            .all(|d| d.attempts == 0 && d.status == "pending")
    );

    slow.hold(false);
    eventually("the slow endpoint to catch up", PATIENCE, async || {
        let rows = p.deliveries("slow");
        (rows.len() == 3 && rows.iter().all(|d| d.status == "delivered")).then_some(())
    })
    .await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_items_update_waits_for_its_created_while_other_items_flow() {
    let shop = Shop::start([1001, 1002, 1003]).await;
    let failing = Switch::on();
    let hook = {
        let failing = failing.clone();
        Hook::start(move |r| {
            if failing.is_on() && r.header("pollhook-resource-id") == Some("1001") {
                500
            } else {
                204
            }
        })
        .await
    };
    let (secret, _) = whsec();
    let mut p = Pipeline::start(
        shop_config(&shop.url)
            .set("delivery.retries", vec!["200ms"; 100])
            .endpoint(Endpoint::new(
                "app",
                &format!("{}/hooks", hook.url),
                "standard-webhooks",
                &secret,
            )),
    );
    let requests = |hook: &Hook, id: &str, action: &str| {
        hook.log()
            .iter()
            .filter(|x| {
                x.header("pollhook-resource-id") == id && x.header("pollhook-action") == action
            })
            .count()
    };

    eventually(
        "1002 and 1003 delivered while 1001 is retried",
        PATIENCE,
        async || {
            let ok = |id: &str| {
                hook.log().iter().any(|x| {
                    x.header("pollhook-resource-id") == id && x.status == 204 && x.answered
                })
            };
            (ok("1002") && ok("1003") && requests(&hook, "1001", "created") >= 2).then_some(())
        },
    )
    .await;

    shop.set(1001, "paid");
    shop.set(1002, "paid");
    eventually(
        "the update of 1001 detected and 1002's update delivered",
        PATIENCE,
        async || {
            let detected = p
                .events()
                .iter()
                .any(|e| e.resource_id == "1001" && e.action == "updated");
            (detected && requests(&hook, "1002", "updated") >= 1).then_some(())
        },
    )
    .await;
    // Give the dispatcher every chance to send the update too early: two more retries of the
    // created happen while the update is pending.
    let retried = requests(&hook, "1001", "created");
    eventually(
        "two more attempts at 1001's created",
        PATIENCE,
        async || (requests(&hook, "1001", "created") >= retried + 2).then_some(()),
    )
    .await;
    assert_eq!(
        requests(&hook, "1001", "updated"),
        0,
        "the update overtook its created"
    );

    failing.off();
    eventually("1001's update delivered", PATIENCE, async || {
        let log = hook.log();
        log.iter()
            .any(|x| {
                x.header("pollhook-resource-id") == "1001"
                    && x.header("pollhook-action") == "updated"
            })
            .then_some(())
    })
    .await;
    let log = hook.log().clone();
    let of_1001: Vec<_> = log
        .iter()
        .filter(|x| x.header("pollhook-resource-id") == "1001")
        .collect();
    let first_update = of_1001
        .iter()
        .position(|x| x.header("pollhook-action") == "updated")
        .unwrap();
    let (before, after) = of_1001.split_at(first_update);
    assert!(
        before
            .iter()
            .all(|x| x.header("pollhook-action") == "created")
    );
    assert_eq!(
        before.last().unwrap().status,
        204,
        "the created succeeded before the update was sent"
    );
    assert!(
        after
            .iter()
            .all(|x| x.header("pollhook-action") == "updated")
    );
    p.stop().await;
}

// ───────────────────────────── 410 Gone ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint_until_it_is_resumed() {
    let shop = Shop::start([1]).await;
    let gone = Receiver::start().await.unwrap();
    gone.answer(410);
    let other = Receiver::start().await.unwrap();
    let (secret, _) = whsec();
    let mut p = Pipeline::start(
        shop_config(&shop.url)
            .set("delivery.retries", vec!["100ms", "100ms", "100ms"])
            .endpoint(Endpoint::new(
                "gone",
                &format!("{}/gone", gone.url),
                "standard-webhooks",
                &secret,
            ))
            .endpoint(Endpoint::new(
                "other",
                &format!("{}/other", other.url),
                "standard-webhooks",
                &secret,
            )),
    );

    let disabled = eventually("the endpoint to be disabled", PATIENCE, async || {
        // Not found until `run` has written the config's endpoints.
        let e = block_on(p.store.endpoint_named("gone")).ok()?;
        (!e.spec.active).then_some(e)
    })
    .await;
    let reason = disabled.disabled_reason.unwrap_or_default();
    assert!(reason.contains("410"), "{reason}");
    assert_eq!(gone.received().len(), 1);

    // A new event reaches the healthy endpoint; the disabled one hears nothing more.
    shop.set(2, "open");
    eventually("order 2 at the other endpoint", PATIENCE, async || {
        other
            .received()
            .iter()
            .any(|r| r.header("pollhook-resource-id") == Some("2"))
            .then_some(())
    })
    .await;
    assert_eq!(
        gone.received().len(),
        1,
        "a disabled endpoint was contacted again"
    );
    // Both the refused delivery and the one queued while disabled wait for a resume.
    let rows = p.deliveries("gone");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let waiting: Vec<(&str, &str, u32)> = rows
        .iter()
        .map(|r| (r.resource_id.as_str(), r.status.as_str(), r.attempts))
        .collect();
    assert!(waiting.contains(&("1", "pending", 1)), "{waiting:?}");
    assert!(waiting.contains(&("2", "pending", 0)), "{waiting:?}");

    gone.answer(204);
    p.store.set_endpoint_active("gone", true).await.unwrap();
    eventually(
        "the waiting deliveries sent after the resume",
        PATIENCE,
        async || {
            p.deliveries("gone")
                .iter()
                .all(|d| d.status == "delivered")
                .then_some(())
        },
    )
    .await;
    // Different items: no order between them is promised, only that both arrive.
    let mut ids: Vec<String> = gone
        .received()
        .iter()
        .skip(1)
        .filter_map(|r| r.header("pollhook-resource-id").map(str::to_owned))
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2"], "the backlog arrives after the resume");
    assert!(
        p.store
            .endpoint_named("gone")
            .await
            .unwrap()
            .disabled_reason
            .is_none()
    );
    p.stop().await;
}

// ───────────────────────────── URL policy ─────────────────────────────

/// The config's problems; panics if it is accepted.
fn refusal(config: ConfigBuilder) -> String {
    let text = config.toml();
    match support::parse(&text, &Default::default()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// A config of one endpoint `e` posting to `url`.
fn only_endpoint(url: &str, secret: &str) -> ConfigBuilder {
    ConfigBuilder::without_storage().endpoint(Endpoint::new("e", url, "standard-webhooks", secret))
}

#[test]
fn config_refuses_plain_http_and_private_addresses_unless_allowed() {
    let (secret, _) = whsec();
    let e = refusal(only_endpoint("http://hooks.example.com/x", &secret));
    assert!(
        e.contains("endpoints[e].url") && e.contains("allow_http"),
        "{e}"
    );

    let e = refusal(only_endpoint("https://10.0.0.1/", &secret));
    assert!(
        e.contains("endpoints[e].url") && e.contains("allow_networks"),
        "{e}"
    );

    let loopback =
        only_endpoint("http://127.0.0.1:8080/x", &secret).set("delivery.allow_http", true);
    let e = refusal(loopback);
    assert!(
        e.contains("loopback") && e.contains("allow_networks"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_loopback_is_never_contacted_unless_allowed() {
    let shop = FakeShop::start(1).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let port = receiver.url.rsplit(':').next().unwrap().to_owned();
    let mut p = Pipeline::new(
        ConfigBuilder::without_storage()
            .source(shop_source(&shop.url))
            .set("delivery.allow_http", true)
            .set("delivery.retries", vec!["100ms"]),
    );
    let (secret, _) = whsec();
    p.store
        .add_endpoint(&endpoint_spec(
            "local",
            &format!("http://localhost:{port}/x"),
            &secret,
        ))
        .await
        .unwrap();
    p.run();

    let failed = eventually("the delivery to fail", PATIENCE, async || {
        p.deliveries("local")
            .into_iter()
            .find(|d| d.status == "failed")
    })
    .await;
    let attempts = p.store.attempts(&failed.event_id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    for a in &attempts {
        let error = a.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("refused") && error.contains("loopback"),
            "{error}"
        );
        assert_eq!(a.status, None);
    }
    assert!(
        receiver.received().is_empty(),
        "the loopback receiver was contacted"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_failures_and_never_followed() {
    let shop = FakeShop::start(1).await.unwrap();
    let target = Receiver::start().await.unwrap();
    let redirect = {
        let location = format!("{}/moved", target.url);
        let app = axum::Router::new().fallback(move || {
            let location = location.clone();
            async move {
                (
                    axum::http::StatusCode::PERMANENT_REDIRECT,
                    [("location", location)],
                )
            }
        });
        support::start(app).await
    };
    let (secret, _) = whsec();
    let mut p = Pipeline::start(
        shop_config(&shop.url)
            .set("delivery.retries", vec!["100ms"])
            .endpoint(Endpoint::new(
                "moved",
                &format!("{redirect}/hooks"),
                "standard-webhooks",
                &secret,
            )),
    );
    let failed = eventually("the delivery to fail", PATIENCE, async || {
        p.deliveries("moved")
            .into_iter()
            .find(|d| d.status == "failed")
    })
    .await;
    assert_eq!(failed.last_status, Some(308));
    let attempts = p.store.attempts(&failed.event_id).await.unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        [Some(308), Some(308)]
    );
    assert!(target.received().is_empty(), "the redirect was followed");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_timeout_is_a_failed_attempt() {
    let shop = FakeShop::start(1).await.unwrap();
    let hook = Hook::start(|_| 204).await;
    hook.hold(true);
    let (secret, _) = whsec();
    let mut p = Pipeline::start(
        shop_config(&shop.url)
            .set("delivery.retries", vec!["100ms"])
            .endpoint(
                Endpoint::new(
                    "sleepy",
                    &format!("{}/hooks", hook.url),
                    "standard-webhooks",
                    &secret,
                )
                .set("timeout", "300ms"),
            ),
    );
    let failed = eventually("the delivery to fail", PATIENCE, async || {
        p.deliveries("sleepy")
            .into_iter()
            .find(|d| d.status == "failed")
    })
    .await;
    let attempts = p.store.attempts(&failed.event_id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    for a in &attempts {
        assert_eq!(a.status, None);
        assert!(
            a.error.as_deref().unwrap_or_default().contains("timed out"),
            "{a:?}"
        );
    }
    assert_eq!(hook.log().len(), 2);
    hook.hold(false);
    p.stop().await;
}

// ───────────────────────────── a crash ─────────────────────────────

/// SIGKILL of the real binary while requests are in flight and more are queued: after a restart
/// every event arrives (again) with its id and every delivery ends delivered. Deliveries claimed
/// by the killed process come back once their lease runs out (the delivery timeout, 5 s by
/// default, plus a margin), so this test takes about ten seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_loses_nothing() {
    let shop = FakeShop::start(5).await.unwrap();
    // Requests hang until released: whatever the first process sent is never answered.
    let hook = Hook::start(|_| 204).await;
    hook.hold(true);
    let (secret, key) = whsec();
    let dir = tempfile::tempdir().unwrap();
    let config = shop_config(&shop.url)
        .in_dir(dir.path())
        .set("delivery.endpoint_concurrency", 2)
        .set("delivery.retries", vec!["200ms", "200ms", "200ms"])
        .endpoint(Endpoint::new(
            "app",
            &format!("{}/hooks", hook.url),
            "standard-webhooks",
            &secret,
        ))
        .write();
    let mut first = spawn_run(&config, &dir.path().join("first.log"));
    eventually(
        first.waiting_for("a request in flight"),
        PATIENCE,
        async || (!hook.log().is_empty()).then_some(()),
    )
    .await;
    first.kill();

    let store = Store::open(&dir.path().join("pollhook.db")).unwrap();
    let events: BTreeSet<String> = events(&store).into_iter().map(|e| e.id).collect();
    assert_eq!(events.len(), 5);
    let rows = deliveries(&store, "app");
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|d| d.status == "pending"), "{rows:?}");
    let seen_before = hook.log().len();
    assert!(
        seen_before <= 2,
        "endpoint_concurrency = 2, yet {seen_before} requests in flight"
    );
    hook.hold(false);

    let log = dir.path().join("second.log");
    let mut second = spawn_run(&config, &log);
    eventually(
        second.waiting_for("every delivery delivered after the restart"),
        Duration::from_secs(90),
        async || {
            deliveries(&store, "app")
                .iter()
                .all(|d| d.status == "delivered")
                .then_some(())
        },
    )
    .await;
    second.kill();

    let log = hook.log().clone();
    let after: Vec<_> = log[seen_before..]
        .iter()
        .map(|x| x.request.clone())
        .collect();
    let ids: BTreeSet<String> = event_ids(&after).into_iter().collect();
    assert_eq!(
        ids, events,
        "every event arrived after the restart, with its own id"
    );
    for x in log.iter() {
        let r = &x.request;
        let v = sign::verify(
            Scheme::StandardWebhooks,
            &[&key],
            &r.headers,
            &r.body,
            now(),
            300,
        )
        .unwrap();
        assert!(events.contains(&v.id), "unknown event id {}", v.id);
    }
}

// ───────────────────────────── leases ─────────────────────────────

/// A lane claims (and leases) its deliveries before it has a slot of the global `concurrency`
/// bound to send them in. While another endpoint hangs on to every slot, the claimed delivery's
/// lease can run out; once it finally goes out, nothing may claim it a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_waiting_for_a_slot_is_sent_once() {
    let shop = Shop::start([1]).await;
    let slow = Hook::start(|_| 204).await;
    slow.hold(true);
    // Answers within its 2 s timeout, but slowly enough that the dispatcher loops while the
    // request is in flight.
    let fast = Receiver::start().await.unwrap();
    fast.delay(Duration::from_millis(300));
    let (secret, _) = whsec();
    let mut p = Pipeline::start(
        shop_config(&shop.url)
            .set("delivery.concurrency", 1)
            .endpoint(
                Endpoint::new(
                    "slow",
                    &format!("{}/slow", slow.url),
                    "standard-webhooks",
                    &secret,
                )
                .set("timeout", "60s"),
            ),
    );
    eventually(
        "the slow endpoint to take the only slot",
        PATIENCE,
        async || (!slow.log().is_empty()).then_some(()),
    )
    .await;

    p.store
        .add_endpoint(&EndpointSpec {
            timeout: Some(Duration::from_secs(2)),
            ..endpoint_spec("fast", &format!("{}/fast", fast.url), &secret)
        })
        .await
        .unwrap();
    shop.set(2, "open");
    // The delivery waits for the slot longer than any lease the dispatcher takes for a 2 s
    // timeout (the timeout plus a few seconds' margin).
    let created = eventually("the fast endpoint's delivery", PATIENCE, async || {
        p.deliveries("fast").first().map(|d| d.created_at)
    })
    .await;
    eventually(
        "the delivery to wait past its lease",
        PATIENCE,
        async || (chrono::Utc::now() > created + Duration::from_secs(9)).then_some(()),
    )
    .await;
    assert!(fast.received().is_empty(), "sent without a slot");

    slow.hold(false);
    // A later event for the same endpoint: once it has arrived, the lane is past the first one.
    eventually("order 2 delivered to fast", PATIENCE, async || {
        let rows = p.deliveries("fast");
        (rows.len() == 1 && rows[0].status == "delivered").then_some(())
    })
    .await;
    shop.set(3, "open");
    eventually("order 3 delivered to fast", PATIENCE, async || {
        fast.received()
            .iter()
            .any(|r| r.header("pollhook-resource-id") == Some("3"))
            .then_some(())
    })
    .await;
    let sent: Vec<String> = fast
        .received()
        .iter()
        .map(|r| {
            r.header("pollhook-resource-id")
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(sent, ["2", "3"], "a delivery went out twice");
    p.stop().await;
}
