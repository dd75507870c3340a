//! Store conformance: what every storage backend must do, checked through the facade alone.
//!
//! In: a fresh [`Store`] per backend from [`backends`]. Out: a pass, or a panic naming the backend
//! and the broken promise.
//!
//! Each case is an `async fn case(store: &Store)` that knows nothing of the backend; the
//! [`conformance!`] list turns each into a `#[tokio::test]` that runs it against every backend in
//! turn. A new backend adds one line to [`backends`]; a new promise adds one case and its name to
//! the list.

use std::time::Duration;

use chrono::Utc;
use pollhook::config::Secret;
use pollhook::endpoint::{ActionFilter, EndpointSpec};
use pollhook::event::{Action, Event, Payload};
use pollhook::normalize::Hash;
use pollhook::retry::Next;
use pollhook::sign::Scheme;
use pollhook::store::{
    AttemptRow, CommitSummary, DeliveryFilter, Due, EndpointPatch, EventFilter, NoUpserts,
    PollCommit, PollFailure, Recorded, SnapshotRow, Store, StoreError, Upserts, now_ms,
};
use serde_json::json;

use crate::support::{all_events, deliveries_of};

// ───────────────────────────── the backends ─────────────────────────────

/// A store under test, with whatever keeps it alive (a temp dir, a scratch schema).
struct Backend {
    /// Shown when a case fails.
    name: &'static str,
    store: Store,
    _keep: Box<dyn std::any::Any + Send>,
}

/// Every backend the suite runs against, each fresh and empty.
///
/// One line a backend; one that needs a server it may not have returns `Option` and is added
/// with `.chain(postgres().await)` so a machine without it runs the rest.
async fn backends() -> Vec<Backend> {
    std::iter::once(sqlite()).chain(postgres().await).collect()
}

/// SQLite in a temp dir.
fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("a temp dir for the database");
    let store = Store::open(&dir.path().join("pollhook.db")).expect("SQLite opens");
    Backend {
        name: "sqlite",
        store,
        _keep: Box::new(dir),
    }
}

/// PostgreSQL in a database of its own on `POLLHOOK_TEST_POSTGRES`'s server (dropped with the
/// backend), or `None` without one (see [`TestDb::create`](crate::postgres::TestDb::create)).
async fn postgres() -> Option<Backend> {
    let db = crate::postgres::TestDb::create("store conformance").await?;
    let store = db.store().await;
    Some(Backend {
        name: "postgres",
        store,
        _keep: Box::new(db),
    })
}

/// Runs `case` against every backend, saying which one a failure came from.
async fn on_every_backend(case_name: &str, case: impl AsyncFn(&Store)) {
    for backend in backends().await {
        // Printed before the case so a panic's captured output names the backend.
        eprintln!("store conformance: {case_name} on {}", backend.name);
        case(&backend.store).await;
    }
}

/// One `#[tokio::test]` per case, each over every backend.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod conformance {
            $(
                #[tokio::test]
                async fn $case() {
                    super::on_every_backend(stringify!($case), super::$case).await;
                }
            )*
        }
    };
}

conformance![
    commit_poll_writes_snapshot_events_and_deliveries_together,
    item_count_follows_what_each_commit_adds_and_removes,
    a_version_conflict_writes_nothing,
    claims_keep_item_order_per_endpoint,
    a_claim_is_a_lease_until_it_ends_or_is_released,
    record_outcomes_applies_done_retry_and_failed,
    a_410_disables_the_endpoint_and_keeps_the_delivery,
    retry_puts_one_or_every_failed_delivery_back,
    replay_queues_the_same_event_again,
    endpoints_crud,
    reconcile_matches_the_config_and_keeps_api_endpoints,
    events_filter_and_page_by_cursor,
    status_shows_every_resource,
    accept_deletes_lets_held_deletes_through,
    a_failing_streak_alerts_once_at_alert_after_and_recovers,
    deliveries_filter_by_attempts_response_class_and_time,
    reconcile_keeps_runtime_state_until_the_file_changes,
    an_endpoint_keeps_its_format_and_origin,
    replay_without_an_endpoint_goes_to_those_that_had_a_delivery,
    snapshot_items_page_in_byte_order_of_ids,
    queue_for_endpoint_queues_for_that_endpoint_alone,
    release_all_leases_hands_back_a_dead_process_claims,
    prune_removes_settled_events_and_keeps_pending_and_dead_letters,
    attempt_counts_count_attempts_and_successes_per_endpoint,
    attempts_of_lists_the_attempts_of_the_deliveries_named,
    snapshot_of_reads_the_items_named_of_that_resource_alone,
];

// ───────────────────────────── building blocks ─────────────────────────────

const SOURCE: &str = "shop";
const RESOURCE: &str = "orders";

/// An endpoint wanting `resources` (patterns), every action.
fn spec(name: &str, resources: &[&str]) -> EndpointSpec {
    EndpointSpec {
        name: name.to_owned(),
        url: format!("http://127.0.0.1:9/{name}"),
        secret: Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        signing: Scheme::StandardWebhooks,
        format: Default::default(),
        resources: resources.iter().map(|r| (*r).to_owned()).collect(),
        actions: ActionFilter::parse(None).expect("no filter is valid"),
        active: true,
        headers: Vec::new(),
        timeout: None,
    }
}

/// Adds an endpoint wanting every `shop` resource; its row id.
async fn shop_endpoint(store: &Store, name: &str) -> i64 {
    store.add_endpoint(&spec(name, &["shop.*"])).await.unwrap()
}

/// A hash that differs with `n`.
fn hash(n: u8) -> Hash {
    [n; 32]
}

/// A snapshot row for item `id`, its body `{"id": id, "v": n}`.
fn row(id: &str, n: u8) -> SnapshotRow {
    SnapshotRow {
        id: id.to_owned(),
        hash: hash(n),
        raw: None,
        body: json!({"id": id, "v": n}).to_string(),
    }
}

/// An event about item `id` of `shop.<resource>`.
fn event_in(resource: &str, action: Action, id: &str) -> Event {
    let data = match action {
        Action::Deleted => Payload::null(),
        _ => Payload::from_value(&json!({ "id": id })),
    };
    Event::new(SOURCE, resource, action, id, data, None, &[], Utc::now())
}

/// An event about item `id` of `shop.orders`.
fn event(action: Action, id: &str) -> Event {
    event_in(RESOURCE, action, id)
}

/// `created` events for these items of `shop.orders`.
fn created(ids: &[&str]) -> Vec<Event> {
    ids.iter().map(|id| event(Action::Created, id)).collect()
}

/// Items 1 and 2 created, then item 1 updated.
fn one_created_then_updated() -> Vec<Event> {
    let mut events = created(&["1", "2"]);
    events.push(event(Action::Updated, "1"));
    events
}

/// A complete, unheld commit of `shop.<resource>` at `version`.
fn commit_at(
    resource: &str,
    version: i64,
    upserts: impl Upserts + 'static,
    deletes: &[&str],
    events: Vec<Event>,
) -> PollCommit {
    PollCommit {
        source: SOURCE.to_owned(),
        resource: resource.to_owned(),
        upserts: Box::new(upserts),
        rehashed: Vec::new(),
        deletes: deletes.iter().map(|d| (*d).to_owned()).collect(),
        listed: 0,
        events,
        held: None,
        complete: true,
        duration: Duration::from_millis(5),
        at: Utc::now(),
        alert_after: 0,
        missing: Vec::new(),
        found: Vec::new(),
        since_cursor: None,
        pages: None,
        version,
    }
}

/// Commits to `shop.<resource>` at its current version.
async fn commit_to(
    store: &Store,
    resource: &str,
    upserts: impl Upserts + 'static,
    deletes: &[&str],
    events: Vec<Event>,
) -> CommitSummary {
    let version = store
        .resource_state(SOURCE, resource)
        .await
        .unwrap()
        .version;
    let commit = commit_at(resource, version, upserts, deletes, events);
    store.commit_poll(commit).await.unwrap().0
}

/// Commits events (and no snapshot rows) to `shop.orders`.
async fn commit_events(store: &Store, events: Vec<Event>) -> CommitSummary {
    commit_to(store, RESOURCE, NoUpserts, &[], events).await
}

/// The item ids of what a claim handed out, in its order.
async fn claim_items(store: &Store, endpoint_id: i64, lease_ms: i64) -> Vec<String> {
    store
        .claim(endpoint_id, 100, lease_ms)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.resource_id)
        .collect()
}

/// The outcome of an attempt on `delivery_id` that answered `status`.
/// Records, for the first three of `due`: 200 and done; 503 and a retry at `retry_at`; `failed`
/// and failed. Never disabling; the endpoints disabled.
async fn done_retry_failed(
    store: &Store,
    hook: i64,
    due: &[Due],
    retry_at: chrono::DateTime<Utc>,
    failed: u16,
) -> Vec<(i64, String)> {
    assert!(due.len() >= 3, "{due:?}");
    let results = [
        (200, Next::Done),
        (503, Next::RetryAt(retry_at)),
        (failed, Next::Failed),
    ];
    let batch = due
        .iter()
        .zip(results)
        .map(|(d, (status, next))| outcome(d.delivery_id, hook, status, next))
        .collect();
    store.record_outcomes(batch, NEVER_DISABLE).await.unwrap()
}

fn outcome(delivery_id: i64, endpoint_id: i64, status: u16, next: Next) -> Recorded {
    Recorded {
        delivery_id,
        endpoint_id,
        at: now_ms(),
        status: Some(status),
        latency_ms: 3,
        error: None,
        response: None,
        next,
    }
}

/// A failed poll of `shop.orders`.
fn failure(alert_after: u32) -> PollFailure {
    PollFailure {
        source: SOURCE.to_owned(),
        resource: RESOURCE.to_owned(),
        error: "HTTP 503 from http://127.0.0.1:9/orders".to_owned(),
        at: Utc::now(),
        duration: Duration::from_millis(5),
        alert_after,
        forget_pages: false,
    }
}

/// How long a lease lasts when a case wants it to outlive the case.
const LONG_LEASE_MS: i64 = 3_600_000;
/// How long `record_outcomes` waits before disabling a failing endpoint: longer than any case.
const NEVER_DISABLE: Duration = Duration::from_secs(86_400);

// ───────────────────────────── the cases ─────────────────────────────

async fn commit_poll_writes_snapshot_events_and_deliveries_together(store: &Store) {
    shop_endpoint(store, "wants-shop").await;
    store
        .add_endpoint(&spec("wants-other", &["other.*"]))
        .await
        .unwrap();

    let baseline = commit_to(store, RESOURCE, vec![row("1", 1), row("2", 1)], &[], vec![]).await;
    assert_eq!(baseline.outcome, "baseline");
    assert_eq!((baseline.events, baseline.deliveries), (0, 0));
    let state = store.resource_state(SOURCE, RESOURCE).await.unwrap();
    assert!(state.has_baseline);
    assert_eq!(state.item_count, 2);

    let events = vec![event(Action::Updated, "1"), event(Action::Deleted, "2")];
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let changed = commit_to(store, RESOURCE, vec![row("1", 2)], &["2"], events).await;
    assert_eq!(changed.outcome, "changed");
    assert_eq!((changed.events, changed.deliveries), (2, 2));

    let snapshot = store.snapshot_hashes(SOURCE, RESOURCE).await.unwrap();
    assert_eq!(snapshot, vec![("1".to_owned(), hash(2))]);
    let stored: Vec<String> = all_events(store).await.into_iter().map(|e| e.id).collect();
    assert_eq!(stored, ids);
    let queued: Vec<String> = deliveries_of(store, "wants-shop")
        .await
        .into_iter()
        .map(|d| d.event_id)
        .collect();
    assert_eq!(
        queued, ids,
        "one delivery per event to the endpoint that wants it"
    );
    assert!(deliveries_of(store, "wants-other").await.is_empty());
    let bodies = store
        .snapshot_bodies(SOURCE, RESOURCE, vec!["1".into()])
        .await
        .unwrap();
    assert_eq!(bodies["1"].value(), json!({"id": "1", "v": 2}));
}

/// `item_count` is the snapshot's row count after every commit: an upsert of a row already there
/// adds nothing, a delete of an id the snapshot lacks removes nothing, and an id deleted and then
/// listed again counts once.
async fn item_count_follows_what_each_commit_adds_and_removes(store: &Store) {
    let count = async || {
        let state = store.resource_state(SOURCE, RESOURCE).await.unwrap();
        let rows = store.snapshot_hashes(SOURCE, RESOURCE).await.unwrap().len() as i64;
        assert_eq!(
            state.item_count, rows,
            "item_count is the number of snapshot rows"
        );
        rows
    };
    // Each commit's rows and deletes, and the rows the snapshot then holds.
    let commits: [(Vec<SnapshotRow>, &[&str], i64); 4] = [
        (vec![row("1", 1), row("2", 1), row("3", 1)], &[], 3),
        // One updated, one new, one deleted, one deleted that was never there.
        (vec![row("1", 2), row("4", 1)], &["2", "9"], 3),
        // The deleted one comes back, another goes, and one is listed unchanged again.
        (vec![row("2", 3), row("3", 1)], &["4"], 3),
        (Vec::new(), &["1", "2", "3"], 0),
    ];
    for (rows, deletes, expected) in commits {
        commit_to(store, RESOURCE, rows, deletes, vec![]).await;
        assert_eq!(count().await, expected, "after deleting {deletes:?}");
    }
}

async fn a_version_conflict_writes_nothing(store: &Store) {
    shop_endpoint(store, "hook").await;
    let read = store
        .resource_state(SOURCE, RESOURCE)
        .await
        .unwrap()
        .version;
    // Another poll commits first…
    store
        .commit_poll(commit_at(RESOURCE, read, vec![row("1", 1)], &[], vec![]))
        .await
        .unwrap();
    let after_first = store.resource_state(SOURCE, RESOURCE).await.unwrap();

    // …so this one, which read the same version, must write nothing at all.
    let late = commit_at(
        RESOURCE,
        read,
        vec![row("1", 9), row("2", 9)],
        &[],
        vec![event(Action::Created, "2")],
    );
    let err = store.commit_poll(late).await.unwrap_err();
    assert!(matches!(err, StoreError::VersionConflict(_)), "{err}");
    assert!(err.to_string().contains("shop.orders"), "{err}");

    let after = store.resource_state(SOURCE, RESOURCE).await.unwrap();
    assert_eq!(after.version, after_first.version);
    assert_eq!(after.item_count, 1);
    assert_eq!(
        store.snapshot_hashes(SOURCE, RESOURCE).await.unwrap(),
        vec![("1".to_owned(), hash(1))]
    );
    assert!(all_events(store).await.is_empty());
    assert!(deliveries_of(store, "hook").await.is_empty());
}

async fn claims_keep_item_order_per_endpoint(store: &Store) {
    let hook = shop_endpoint(store, "hook").await;
    let other = shop_endpoint(store, "other").await;
    commit_events(store, one_created_then_updated()).await;

    // Item 1's update waits behind its creation; item 2 does not.
    let first = store.claim(hook, 100, LONG_LEASE_MS).await.unwrap();
    let items: Vec<(&str, &str)> = first
        .iter()
        .map(|d| (d.resource_id.as_str(), d.action.as_str()))
        .collect();
    assert_eq!(items, [("1", "created"), ("2", "created")]);

    // Another endpoint's queue is its own.
    assert_eq!(claim_items(store, other, LONG_LEASE_MS).await, ["1", "2"]);

    // Once item 1's creation is delivered, its update is due.
    let created = first[0].delivery_id;
    store
        .record_outcomes(vec![outcome(created, hook, 200, Next::Done)], NEVER_DISABLE)
        .await
        .unwrap();
    let next = store.claim(hook, 100, LONG_LEASE_MS).await.unwrap();
    let items: Vec<(&str, &str)> = next
        .iter()
        .map(|d| (d.resource_id.as_str(), d.action.as_str()))
        .collect();
    assert_eq!(items, [("1", "updated")]);
}

async fn a_claim_is_a_lease_until_it_ends_or_is_released(store: &Store) {
    let hook = shop_endpoint(store, "hook").await;
    commit_events(store, created(&["1", "2"])).await;

    let claimed = store.claim(hook, 1, LONG_LEASE_MS).await.unwrap();
    assert_eq!(claimed.len(), 1, "the limit is respected");
    assert_eq!(claimed[0].attempts, 0);
    // Leased: the next claim skips it and takes the other one.
    assert_eq!(claim_items(store, hook, LONG_LEASE_MS).await, ["2"]);
    assert!(claim_items(store, hook, LONG_LEASE_MS).await.is_empty());

    // Released: claimable again, with the same event.
    store.release(vec![claimed[0].delivery_id]).await.unwrap();
    let again = store.claim(hook, 100, 0).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery_id, claimed[0].delivery_id);
    assert_eq!(again[0].event_id, claimed[0].event_id);

    // A lease of no time has ended by the next claim: the work of a dead process comes back.
    let back = store.claim(hook, 100, 0).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].delivery_id, claimed[0].delivery_id);
    assert!(store.next_due_at(hook).await.unwrap().is_some());
}

async fn record_outcomes_applies_done_retry_and_failed(store: &Store) {
    let hook = shop_endpoint(store, "hook").await;
    commit_events(store, created(&["1", "2", "3"])).await;
    let due = store.claim(hook, 100, LONG_LEASE_MS).await.unwrap();
    assert_eq!(due.len(), 3);
    let later = Utc::now() + chrono::Duration::hours(1);
    let disabled = done_retry_failed(store, hook, &due, later, 500).await;
    assert!(disabled.is_empty());

    let rows = deliveries_of(store, "hook").await;
    let seen: Vec<(&str, u32, Option<u16>)> = rows
        .iter()
        .map(|d| (d.status.as_str(), d.attempts, d.last_status))
        .collect();
    assert_eq!(
        seen,
        [
            ("delivered", 1, Some(200)),
            ("pending", 1, Some(503)),
            ("failed", 1, Some(500)),
        ]
    );
    assert!(rows[0].finished_at.is_some() && rows[2].finished_at.is_some());
    assert_eq!(
        rows[1].next_attempt_at.map(|t| t.timestamp_millis()),
        Some(later.timestamp_millis())
    );
    assert_eq!(rows[1].last_error.as_deref(), Some("HTTP 503"));
    // The retry is not due for an hour, and the others are finished.
    assert!(claim_items(store, hook, LONG_LEASE_MS).await.is_empty());

    let attempts = store.attempts(&rows[1].id.to_string()).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!((attempts[0].status, attempts[0].latency_ms), (Some(503), 3));
    let by_event = store.attempts(&rows[0].event_id).await.unwrap();
    assert_eq!(by_event.len(), 1);
    assert_eq!(by_event[0].endpoint, "hook");
}

async fn deliveries_filter_by_attempts_response_class_and_time(store: &Store) {
    let hook = shop_endpoint(store, "hook").await;
    commit_events(store, created(&["1", "2", "3", "4"])).await;
    let due = store.claim(hook, 100, LONG_LEASE_MS).await.unwrap();
    let later = Utc::now() + chrono::Duration::hours(1);
    done_retry_failed(store, hook, &due, later, 404).await;
    let ids = async |filter: DeliveryFilter| -> Vec<String> {
        let mut rows = store.deliveries(filter).await.unwrap();
        rows.sort_by_key(|d| d.id);
        rows.into_iter().map(|d| d.resource_id).collect()
    };
    let all = || DeliveryFilter {
        limit: 100,
        ..DeliveryFilter::default()
    };
    // Retrying: pending and tried; "4" is pending but untried.
    let retrying = DeliveryFilter {
        status: Some("pending".into()),
        min_attempts: Some(1),
        ..all()
    };
    assert_eq!(ids(retrying).await, ["2"]);
    for (class, want) in [(2, vec!["1"]), (4, vec!["3"]), (5, vec!["2"]), (3, vec![])] {
        let filter = DeliveryFilter {
            status_class: Some(class),
            ..all()
        };
        assert_eq!(ids(filter).await, want, "{class}xx");
    }
    let now = now_ms();
    let since_now = DeliveryFilter {
        since_ms: Some(now + 60_000),
        ..all()
    };
    assert!(ids(since_now).await.is_empty());
    let until_now = DeliveryFilter {
        until_ms: Some(now + 60_000),
        since_ms: Some(now - 3_600_000),
        ..all()
    };
    assert_eq!(ids(until_now).await, ["1", "2", "3", "4"]);
}

async fn a_410_disables_the_endpoint_and_keeps_the_delivery(store: &Store) {
    let hook = shop_endpoint(store, "hook").await;
    commit_events(store, vec![event(Action::Created, "1")]).await;
    let due = store.claim(hook, 100, LONG_LEASE_MS).await.unwrap();
    let disabled = store
        .record_outcomes(
            vec![outcome(
                due[0].delivery_id,
                hook,
                410,
                Next::DisableEndpoint,
            )],
            NEVER_DISABLE,
        )
        .await
        .unwrap();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].0, hook);
    assert!(disabled[0].1.contains("410"), "{}", disabled[0].1);

    let endpoint = store.endpoint_named("hook").await.unwrap();
    assert!(!endpoint.spec.active);
    assert_eq!(endpoint.disabled_reason.as_deref(), Some(&*disabled[0].1));
    let rows = deliveries_of(store, "hook").await;
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("pending", 1));
    // A disabled endpoint's queue waits…
    assert!(claim_items(store, hook, 0).await.is_empty());
    // …until it is resumed.
    store.set_endpoint_active("hook", true).await.unwrap();
    assert_eq!(claim_items(store, hook, 0).await, ["1"]);
}

async fn retry_puts_one_or_every_failed_delivery_back(store: &Store) {
    let hook = shop_endpoint(store, "hook").await;
    let other = shop_endpoint(store, "other").await;
    commit_events(store, created(&["1", "2", "3"])).await;
    let mut outcomes = Vec::new();
    for d in store.claim(hook, 100, LONG_LEASE_MS).await.unwrap() {
        let next = if d.resource_id == "3" {
            Next::Done
        } else {
            Next::Failed
        };
        outcomes.push(outcome(d.delivery_id, hook, 500, next));
    }
    for d in store.claim(other, 100, LONG_LEASE_MS).await.unwrap() {
        outcomes.push(outcome(d.delivery_id, other, 500, Next::Failed));
    }
    store
        .record_outcomes(outcomes, NEVER_DISABLE)
        .await
        .unwrap();
    let rows = deliveries_of(store, "hook").await;

    store.retry_delivery(rows[0].id).await.unwrap();
    let retried = &deliveries_of(store, "hook").await[0];
    assert_eq!((retried.status.as_str(), retried.attempts), ("pending", 0));
    assert!(retried.finished_at.is_none());
    assert_eq!(claim_items(store, hook, LONG_LEASE_MS).await, ["1"]);

    // A delivered one cannot be retried.
    let err = store.retry_delivery(rows[2].id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    assert_eq!(store.retry_failed(Some("hook")).await.unwrap(), 1);
    assert_eq!(store.retry_failed(Some("hook")).await.unwrap(), 0);
    assert_eq!(store.retry_failed(None).await.unwrap(), 3, "other's three");
    let statuses: Vec<String> = deliveries_of(store, "other")
        .await
        .into_iter()
        .map(|d| d.status)
        .collect();
    assert_eq!(statuses, ["pending", "pending", "pending"]);
}

async fn replay_queues_the_same_event_again(store: &Store) {
    let hook = shop_endpoint(store, "hook").await;
    store
        .add_endpoint(&spec("elsewhere", &["other.*"]))
        .await
        .unwrap();
    let created = event(Action::Created, "1");
    let id = created.id.clone();
    commit_events(store, vec![created]).await;
    let due = store.claim(hook, 100, LONG_LEASE_MS).await.unwrap();
    store
        .record_outcomes(
            vec![outcome(due[0].delivery_id, hook, 200, Next::Done)],
            NEVER_DISABLE,
        )
        .await
        .unwrap();

    // To every endpoint that wants it…
    assert_eq!(store.replay(&id, None).await.unwrap(), ["hook"]);
    let again = store.claim(hook, 100, LONG_LEASE_MS).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event_id, id, "a replay keeps the event id");
    assert_eq!(again[0].payload, due[0].payload, "and its bytes");

    // …or to one named endpoint, wanted or not.
    assert_eq!(
        store.replay(&id, Some("elsewhere")).await.unwrap(),
        ["elsewhere"]
    );
    assert_eq!(deliveries_of(store, "elsewhere").await.len(), 1);

    let err = store.replay("evt_nope", None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let err = store.replay(&id, Some("nope")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

async fn endpoints_crud(store: &Store) {
    let id = store
        .add_endpoint(&spec("hook", &["shop.*"]))
        .await
        .unwrap();
    let err = store
        .add_endpoint(&spec("hook", &["shop.*"]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err}");

    let stored = store.endpoint(id).await.unwrap().expect("by id");
    assert_eq!(stored.spec.name, "hook");
    assert_eq!(stored.origin, "api");
    assert_eq!(stored.spec.resources, ["shop.*"]);
    assert_eq!(
        stored.spec.secret.expose(),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    );
    assert!(store.endpoint(id + 1000).await.unwrap().is_none());

    let patch = EndpointPatch {
        url: Some("http://127.0.0.1:9/moved".to_owned()),
        resources: Some(vec!["shop.orders".to_owned()]),
        ..EndpointPatch::default()
    };
    store.update_endpoint("hook", patch).await.unwrap();
    let updated = store.endpoint_named("hook").await.unwrap();
    assert_eq!(updated.spec.url, "http://127.0.0.1:9/moved");
    assert_eq!(updated.spec.resources, ["shop.orders"]);
    assert_eq!(updated.spec.signing, Scheme::StandardWebhooks, "untouched");

    // Rotating the secret keeps the old one for the overlap.
    let rotate = EndpointPatch {
        secret: Some(Secret::new("whsec_bmV3IHNlY3JldCBvZiB0aGlydHktdHdvIGI=")),
        rotation_overlap: Some(Duration::from_secs(3600)),
        ..EndpointPatch::default()
    };
    store.update_endpoint("hook", rotate).await.unwrap();
    let rotated = store.endpoint_named("hook").await.unwrap();
    let (old, until) = rotated.old_secret.expect("the old secret is kept");
    assert_eq!(old.expose(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert!(until > Utc::now());

    store.set_endpoint_active("hook", false).await.unwrap();
    assert!(!store.endpoint_named("hook").await.unwrap().spec.active);
    store.set_endpoint_active("hook", true).await.unwrap();
    assert!(store.endpoint_named("hook").await.unwrap().spec.active);

    store.remove_endpoint("hook").await.unwrap();
    assert!(store.endpoints().await.unwrap().is_empty());
    for err in [
        store.endpoint_named("hook").await.unwrap_err(),
        store.remove_endpoint("hook").await.unwrap_err(),
        store
            .update_endpoint("hook", EndpointPatch::default())
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }
}

async fn reconcile_matches_the_config_and_keeps_api_endpoints(store: &Store) {
    store
        .add_endpoint(&spec("from-api", &["shop.*"]))
        .await
        .unwrap();
    store
        .reconcile_endpoints(&[spec("a", &["shop.*"]), spec("b", &["shop.*"])])
        .await
        .unwrap();
    commit_events(store, vec![event(Action::Created, "1")]).await;
    assert_eq!(deliveries_of(store, "b").await.len(), 1);

    let mut changed = spec("a", &["shop.orders"]);
    changed.url = "http://127.0.0.1:9/changed".to_owned();
    store.reconcile_endpoints(&[changed]).await.unwrap();

    let endpoints = store.endpoints().await.unwrap();
    let names: Vec<(&str, &str)> = endpoints
        .iter()
        .map(|e| (e.spec.name.as_str(), e.origin.as_str()))
        .collect();
    assert_eq!(names, [("a", "config"), ("from-api", "api")]);
    assert_eq!(endpoints[0].spec.url, "http://127.0.0.1:9/changed");
    assert_eq!(endpoints[0].spec.resources, ["shop.orders"]);
    // A config endpoint removed from the file goes with its queue.
    assert!(deliveries_of(store, "b").await.is_empty());
    assert_eq!(deliveries_of(store, "from-api").await.len(), 1);
}

async fn events_filter_and_page_by_cursor(store: &Store) {
    commit_events(store, one_created_then_updated()).await;
    commit_to(
        store,
        "customers",
        NoUpserts,
        &[],
        vec![event_in("customers", Action::Deleted, "1")],
    )
    .await;
    let all = all_events(store).await;
    assert_eq!(all.len(), 4);

    let kinds = async |filter: EventFilter| -> Vec<String> {
        let filter = EventFilter {
            limit: 100,
            ..filter
        };
        let events = store.events(filter).await.unwrap();
        events
            .into_iter()
            .map(|(_, e)| format!("{}:{}", e.kind, e.resource_id))
            .collect()
    };
    assert_eq!(
        kinds(EventFilter::default()).await,
        [
            "shop.customers.deleted:1",
            "shop.orders.updated:1",
            "shop.orders.created:2",
            "shop.orders.created:1"
        ],
        "newest first"
    );
    let by_action = EventFilter {
        action: Some("created".into()),
        ..EventFilter::default()
    };
    assert_eq!(
        kinds(by_action).await,
        ["shop.orders.created:2", "shop.orders.created:1"]
    );
    let by_item = EventFilter {
        resource_id: Some("1".into()),
        ..EventFilter::default()
    };
    assert_eq!(
        kinds(by_item).await,
        [
            "shop.customers.deleted:1",
            "shop.orders.updated:1",
            "shop.orders.created:1"
        ]
    );
    for resource in ["shop.customers", "customers"] {
        let by_resource = EventFilter {
            resource: Some(resource.into()),
            ..EventFilter::default()
        };
        assert_eq!(
            kinds(by_resource).await,
            ["shop.customers.deleted:1"],
            "{resource}"
        );
    }
    let by_source = EventFilter {
        source: Some("elsewhere".into()),
        ..EventFilter::default()
    };
    assert!(kinds(by_source).await.is_empty());

    // Paging: a page's last seq is the cursor for the next one, and nothing is seen twice.
    let mut seen = Vec::new();
    let mut before_seq = None;
    loop {
        let page = store
            .events(EventFilter {
                limit: 3,
                before_seq,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        let Some((last, _)) = page.last() else { break };
        before_seq = Some(*last);
        seen.extend(page.into_iter().map(|(_, e)| e.id));
    }
    let mut oldest_first = seen.clone();
    oldest_first.reverse();
    let ids: Vec<String> = all.iter().map(|e| e.id.clone()).collect();
    assert_eq!(oldest_first, ids);

    // Time bounds are detection times in ms: everything was detected before now + 1 h.
    let until = EventFilter {
        until_ms: Some(now_ms() + 3_600_000),
        since_ms: Some(now_ms() - 3_600_000),
        ..EventFilter::default()
    };
    assert_eq!(kinds(until).await.len(), 4);
    let later = EventFilter {
        since_ms: Some(now_ms() + 3_600_000),
        ..EventFilter::default()
    };
    assert!(kinds(later).await.is_empty());

    let one = store.event(&all[1].id).await.unwrap().expect("by id");
    assert_eq!(one.to_json(), all[1].to_json());
    assert!(store.event("evt_nope").await.unwrap().is_none());
}

async fn status_shows_every_resource(store: &Store) {
    commit_to(store, RESOURCE, vec![row("1", 1), row("2", 1)], &[], vec![]).await;
    store.record_poll_failure(failure(0)).await.unwrap();
    commit_to(store, "customers", vec![row("7", 1)], &[], vec![]).await;

    let status = store.status().await.unwrap();
    let seen: Vec<(&str, &str, Option<&str>, i64, i64)> = status
        .iter()
        .map(|s| {
            (
                s.source.as_str(),
                s.resource.as_str(),
                s.last_outcome.as_deref(),
                s.item_count,
                s.consecutive_errors,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("shop", "customers", Some("baseline"), 1, 0),
            ("shop", "orders", Some("failed"), 2, 1),
        ]
    );
    let orders = &status[1];
    assert_eq!(
        orders.last_error.as_deref(),
        Some("HTTP 503 from http://127.0.0.1:9/orders")
    );
    assert!(orders.last_poll_at.is_some() && orders.last_duration_ms.is_some());
    assert_eq!(status[0].last_error, None);
    // No event yet, so no last change; then an event of `orders` alone, recorded just now.
    assert_eq!(
        (status[0].last_change_at, orders.last_change_at),
        (None, None)
    );
    let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
    commit_events(store, vec![event(Action::Updated, "1")]).await;
    let status = store.status().await.unwrap();
    let recorded = status[1].last_change_at.expect("orders has an event");
    assert!(
        before <= recorded && recorded <= chrono::Utc::now(),
        "{recorded}"
    );
    assert_eq!(status[0].last_change_at, None, "customers has no event");
}

async fn accept_deletes_lets_held_deletes_through(store: &Store) {
    let err = store.accept_deletes(SOURCE, RESOURCE).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    store
        .add_endpoint(&spec("ops", &["pollhook.*"]))
        .await
        .unwrap();
    commit_to(store, RESOURCE, vec![row("1", 1), row("2", 1)], &[], vec![]).await;

    let version = store
        .resource_state(SOURCE, RESOURCE)
        .await
        .unwrap()
        .version;
    let mut held = commit_at(RESOURCE, version, NoUpserts, &[], vec![]);
    held.held = Some(2);
    let (summary, _) = store.commit_poll(held).await.unwrap();
    assert_eq!(summary.outcome, "held");
    let status = store.status().await.unwrap();
    assert_eq!(status[0].held_deletes, 2);
    let alerts: Vec<String> = all_events(store)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(alerts, ["pollhook.resource.deletes_held"]);
    assert_eq!(deliveries_of(store, "ops").await.len(), 1);

    assert!(
        !store
            .resource_state(SOURCE, RESOURCE)
            .await
            .unwrap()
            .accept_deletes
    );
    assert_eq!(store.accept_deletes(SOURCE, RESOURCE).await.unwrap(), 2);
    assert!(
        store
            .resource_state(SOURCE, RESOURCE)
            .await
            .unwrap()
            .accept_deletes
    );

    // The next complete listing applies them, and the acceptance is spent.
    commit_to(store, RESOURCE, NoUpserts, &["1", "2"], vec![]).await;
    let state = store.resource_state(SOURCE, RESOURCE).await.unwrap();
    assert!(!state.accept_deletes);
    assert_eq!(state.item_count, 0);
    assert_eq!(store.status().await.unwrap()[0].held_deletes, 0);
}

async fn a_failing_streak_alerts_once_at_alert_after_and_recovers(store: &Store) {
    store
        .add_endpoint(&spec("ops", &["pollhook.*"]))
        .await
        .unwrap();
    store.add_endpoint(&spec("all", &["*"])).await.unwrap();
    let kinds = async || -> Vec<String> {
        all_events(store)
            .await
            .into_iter()
            .map(|e| e.kind)
            .collect()
    };

    for n in 1..=2 {
        assert_eq!(store.record_poll_failure(failure(3)).await.unwrap(), n);
    }
    assert!(kinds().await.is_empty(), "no alert before alert_after");
    assert_eq!(store.record_poll_failure(failure(3)).await.unwrap(), 3);
    assert_eq!(kinds().await, ["pollhook.resource.failing"]);
    assert_eq!(store.record_poll_failure(failure(3)).await.unwrap(), 4);
    assert_eq!(kinds().await.len(), 1, "once per streak");

    let alert = &all_events(store).await[0];
    assert_eq!(alert.resource_id, "shop.orders");
    assert_eq!(alert.data.value()["failed_polls"], json!(3));
    assert_eq!(deliveries_of(store, "ops").await.len(), 1);
    assert!(
        deliveries_of(store, "all").await.is_empty(),
        "a catch-all of resources is not a subscription to alerts"
    );

    let version = store
        .resource_state(SOURCE, RESOURCE)
        .await
        .unwrap()
        .version;
    let mut recovered = commit_at(RESOURCE, version, vec![row("1", 1)], &[], vec![]);
    recovered.alert_after = 3;
    store.commit_poll(recovered).await.unwrap();
    assert_eq!(
        kinds().await,
        ["pollhook.resource.failing", "pollhook.resource.recovered"]
    );
    assert_eq!(store.status().await.unwrap()[0].consecutive_errors, 0);
}

async fn reconcile_keeps_runtime_state_until_the_file_changes(store: &Store) {
    let file = [spec("a", &["shop.*"])];
    store.reconcile_endpoints(&file).await.unwrap();
    // Paused at run time: a restart with the same file leaves it paused.
    store.set_endpoint_active("a", false).await.unwrap();
    store.reconcile_endpoints(&file).await.unwrap();
    assert!(!store.endpoint_named("a").await.unwrap().spec.active);
    // Removed at run time: it stays removed.
    store.remove_endpoint("a").await.unwrap();
    store.reconcile_endpoints(&file).await.unwrap();
    assert!(store.endpoints().await.unwrap().is_empty());
    // Until the file's definition of it changes: then it is back, as the file says.
    let mut changed = spec("a", &["shop.*"]);
    changed.url = "http://127.0.0.1:9/changed".to_owned();
    store
        .reconcile_endpoints(std::slice::from_ref(&changed))
        .await
        .unwrap();
    let back = store.endpoint_named("a").await.unwrap();
    assert_eq!(back.spec.url, "http://127.0.0.1:9/changed");
    assert!(back.spec.active);
    assert_eq!(back.origin, "config");
    // A file change resets run-time state too.
    store.set_endpoint_active("a", false).await.unwrap();
    store.reconcile_endpoints(&file).await.unwrap();
    let reset = store.endpoint_named("a").await.unwrap();
    assert!(reset.spec.active);
    assert_eq!(reset.spec.url, "http://127.0.0.1:9/a");
}

async fn an_endpoint_keeps_its_format_and_origin(store: &Store) {
    let mut xml = spec("xml", &["shop.*"]);
    xml.format = pollhook::encode::Format::Xml;
    store
        .add_endpoint_from(&xml, pollhook::store::Origin::Cli)
        .await
        .unwrap();
    let stored = store.endpoint_named("xml").await.unwrap();
    assert_eq!(stored.spec.format, pollhook::encode::Format::Xml);
    assert_eq!(stored.origin, "cli");
    let mut file = spec("file", &["shop.*"]);
    file.format = pollhook::encode::Format::Xml;
    store.reconcile_endpoints(&[file]).await.unwrap();
    let stored = store.endpoint_named("file").await.unwrap();
    assert_eq!(stored.spec.format, pollhook::encode::Format::Xml);
    assert_eq!(stored.origin, "config");
}

async fn replay_without_an_endpoint_goes_to_those_that_had_a_delivery(store: &Store) {
    shop_endpoint(store, "hook").await;
    let created = event(Action::Created, "1");
    let id = created.id.clone();
    commit_events(store, vec![created]).await;
    // Added after the change: it wants the event, but never had it.
    shop_endpoint(store, "later").await;
    assert_eq!(store.replay(&id, None).await.unwrap(), ["hook"]);
    assert_eq!(deliveries_of(store, "hook").await.len(), 2);
    assert!(deliveries_of(store, "later").await.is_empty());
}

async fn snapshot_items_page_in_byte_order_of_ids(store: &Store) {
    let rows: Vec<SnapshotRow> = ["a", "B", "9", "10", "b"]
        .iter()
        .enumerate()
        .map(|(n, id)| row(id, n as u8))
        .collect();
    commit_to(store, RESOURCE, rows, &[], Vec::new()).await;
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .snapshot_items(SOURCE, RESOURCE, after.clone(), 2)
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        seen.extend(page);
    }
    let ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["10", "9", "B", "a", "b"]);
    let body: serde_json::Value = serde_json::from_str(seen[3].1.get()).unwrap();
    assert_eq!(body, json!({"id": "a", "v": 0}));
    assert!(
        store
            .snapshot_items(SOURCE, "customers", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn queue_for_endpoint_queues_for_that_endpoint_alone(store: &Store) {
    let hook = shop_endpoint(store, "hook").await;
    shop_endpoint(store, "other").await;
    let queued = store
        .queue_for_endpoint(hook, created(&["1", "2"]))
        .await
        .unwrap();
    assert_eq!(queued, 2);
    assert_eq!(deliveries_of(store, "hook").await.len(), 2);
    assert!(deliveries_of(store, "other").await.is_empty());
    assert_eq!(all_events(store).await.len(), 2);
    assert_eq!(claim_items(store, hook, LONG_LEASE_MS).await, ["1", "2"]);
    let err = store
        .queue_for_endpoint(hook + 1000, created(&["3"]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(all_events(store).await.len(), 2, "nothing written");
}

async fn release_all_leases_hands_back_a_dead_process_claims(store: &Store) {
    let hook = shop_endpoint(store, "hook").await;
    commit_events(store, created(&["1", "2"])).await;
    // Claimed by a process that then died (this store runs no heartbeat: on PostgreSQL, a
    // replica that is gone).
    assert_eq!(claim_items(store, hook, LONG_LEASE_MS).await, ["1", "2"]);
    assert!(claim_items(store, hook, LONG_LEASE_MS).await.is_empty());
    assert_eq!(store.release_all_leases().await.unwrap(), 2);
    assert_eq!(claim_items(store, hook, LONG_LEASE_MS).await, ["1", "2"]);
}

async fn prune_removes_settled_events_and_keeps_pending_and_dead_letters(store: &Store) {
    let hook = shop_endpoint(store, "hook").await;
    commit_events(store, created(&["1", "2", "3"])).await;
    let due = store.claim(hook, 100, LONG_LEASE_MS).await.unwrap();
    store
        .record_outcomes(
            vec![
                outcome(due[0].delivery_id, hook, 200, Next::Done),
                outcome(due[1].delivery_id, hook, 500, Next::Failed),
            ],
            NEVER_DISABLE,
        )
        .await
        .unwrap();
    let stats = store.storage_stats().await.unwrap();
    assert_eq!(stats.events, 3);
    assert!(stats.bytes > 0);
    assert!(stats.oldest_event_at.is_some());

    let later = now_ms() + 60_000;
    // Nothing is old enough yet.
    assert_eq!(store.prune_events(0, 0, 100).await.unwrap(), 0);
    // The delivered one goes, with its delivery and attempt; the dead letter waits for the
    // longer cut-off; the pending one stays.
    assert_eq!(store.prune_events(later, 0, 100).await.unwrap(), 1);
    assert!(store.attempts(&due[0].event_id).await.unwrap().is_empty());
    assert_eq!(store.prune_events(later, later, 100).await.unwrap(), 1);
    assert_eq!(store.prune_events(later, later, 100).await.unwrap(), 0);
    let left: Vec<String> = all_events(store)
        .await
        .into_iter()
        .map(|e| e.resource_id)
        .collect();
    assert_eq!(left, ["3"]);
    assert_eq!(store.storage_stats().await.unwrap().events, 1);

    // In batches: fewer than asked means nothing more is due.
    commit_events(store, created(&["4", "5", "6"])).await;
    store.remove_endpoint("hook").await.unwrap();
    assert_eq!(store.prune_events(later, later, 2).await.unwrap(), 2);
    assert_eq!(store.prune_events(later, later, 2).await.unwrap(), 2);
    assert_eq!(store.prune_events(later, later, 2).await.unwrap(), 0);
    let stats = store.storage_stats().await.unwrap();
    assert_eq!((stats.events, stats.oldest_event_at), (0, None));
}

async fn attempt_counts_count_attempts_and_successes_per_endpoint(store: &Store) {
    let hook = shop_endpoint(store, "hook").await;
    let other = shop_endpoint(store, "other").await;
    let start = now_ms();
    commit_events(store, created(&["1", "2"])).await;
    let mut outcomes = Vec::new();
    for (endpoint, status) in [(hook, 200), (other, 503)] {
        let due = store.claim(endpoint, 100, LONG_LEASE_MS).await.unwrap();
        outcomes.push(outcome(due[0].delivery_id, endpoint, status, Next::Done));
        outcomes.push(outcome(due[1].delivery_id, endpoint, 500, Next::Failed));
    }
    store
        .record_outcomes(outcomes, NEVER_DISABLE)
        .await
        .unwrap();
    let counts: Vec<(String, i64, i64)> = store
        .attempt_counts(start)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.endpoint, c.attempts, c.succeeded))
        .collect();
    assert_eq!(
        counts,
        [("hook".to_owned(), 2, 1), ("other".to_owned(), 2, 0)]
    );
    assert!(
        store
            .attempt_counts(now_ms() + 60_000)
            .await
            .unwrap()
            .is_empty()
    );
}

/// `attempts_of` answers for the deliveries named, in the order the attempts were made, and for
/// nothing else; one without attempts, or no delivery named, adds nothing.
async fn attempts_of_lists_the_attempts_of_the_deliveries_named(store: &Store) {
    let hook = shop_endpoint(store, "hook").await;
    commit_events(store, created(&["1", "2", "3"])).await;
    let due = store.claim(hook, 100, LONG_LEASE_MS).await.unwrap();
    let [one, two, three] = [0, 1, 2].map(|i| due[i].delivery_id);
    let failed = vec![
        outcome(one, hook, 503, Next::Failed),
        outcome(two, hook, 500, Next::Failed),
    ];
    store.record_outcomes(failed, NEVER_DISABLE).await.unwrap();
    store.retry_delivery(one).await.unwrap();
    let again = store.claim(hook, 100, LONG_LEASE_MS).await.unwrap();
    assert_eq!(again[0].delivery_id, one);
    store
        .record_outcomes(vec![outcome(one, hook, 200, Next::Done)], NEVER_DISABLE)
        .await
        .unwrap();

    let seen = |rows: Vec<AttemptRow>| -> Vec<(i64, Option<u16>)> {
        rows.into_iter()
            .map(|a| (a.delivery_id, a.status))
            .collect()
    };
    let both = store.attempts_of(&[one, two, three]).await.unwrap();
    assert!(both.iter().all(|a| a.endpoint == "hook"));
    assert_eq!(
        seen(both),
        [(one, Some(503)), (two, Some(500)), (one, Some(200))]
    );
    assert_eq!(
        seen(store.attempts_of(&[two]).await.unwrap()),
        [(two, Some(500))]
    );
    assert!(store.attempts_of(&[three]).await.unwrap().is_empty());
    assert!(store.attempts_of(&[]).await.unwrap().is_empty());
    // The same rows as one delivery's own attempts.
    assert_eq!(
        seen(store.attempts_of(&[one]).await.unwrap()),
        seen(store.attempts(&one.to_string()).await.unwrap())
    );
}

// ───────────────────────────── SQLite alone ─────────────────────────────
//
// An idle poll's SQLite work may run on the async runtime's thread (`Store::prior`, a
// bookkeeping-only `Store::commit_poll`); these pin what makes that sound.

/// The `-wal` file of an SQLite database, in bytes.
fn wal_bytes(db: &std::path::Path) -> u64 {
    let wal = db.with_extension("db-wal");
    std::fs::metadata(&wal).map_or(0, |m| m.len())
}

/// Thousands of commits that write nothing but a poll's bookkeeping still have the WAL
/// checkpointed: it stays near SQLite's 1,000-frame mark instead of growing with every poll.
#[tokio::test]
async fn sqlite_idle_commits_keep_the_wal_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pollhook.db");
    let store = Store::open(&path).unwrap();
    commit_to(&store, RESOURCE, vec![row("1", 1)], &[], vec![]).await;
    let polls = 3_000;
    for _ in 0..polls {
        let prior = store.prior(SOURCE, RESOURCE, false, 10_000).await.unwrap();
        assert_eq!(prior.snapshot.map(|s| s.len()), Some(1));
        let commit = commit_at(RESOURCE, prior.state.version, NoUpserts, &[], vec![]);
        let (summary, _) = store.commit_poll(commit).await.unwrap();
        assert_eq!(summary.outcome, "unchanged");
    }
    // Each commit appends at least one 4 KiB page (and a 24-byte frame header) to the log.
    let bound = 1_200 * (4_096 + 24);
    assert!(
        wal_bytes(&path) < bound,
        "WAL of {} bytes after {polls} idle commits",
        wal_bytes(&path)
    );
    let state = store.resource_state(SOURCE, RESOURCE).await.unwrap();
    assert_eq!(state.version, 1 + polls);
    let status = store.status().await.unwrap();
    assert_eq!(status[0].last_outcome.as_deref(), Some("unchanged"));
}

/// While another process holds SQLite's write lock (a CLI writing), an idle poll's commit waits
/// for it on a blocking thread, not on the async runtime's, and then records the poll.
#[tokio::test]
async fn sqlite_an_idle_commit_waits_for_another_writer_off_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pollhook.db");
    let store = Store::open(&path).unwrap();
    commit_to(&store, RESOURCE, vec![row("1", 1)], &[], vec![]).await;
    let version = store
        .resource_state(SOURCE, RESOURCE)
        .await
        .unwrap()
        .version;

    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (locked_tx, locked) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        // Holds the lock until the test has seen the runtime run while the commit waited.
        let _ = locked.recv_timeout(Duration::from_secs(5));
        other.execute_batch("COMMIT").unwrap();
    });

    let commit = store.commit_poll(commit_at(RESOURCE, version, NoUpserts, &[], vec![]));
    tokio::pin!(commit);
    tokio::select! {
        biased;
        result = &mut commit => panic!("committed while another writer held the lock: {result:?}"),
        () = tokio::time::sleep(Duration::from_millis(100)) => {}
    }
    locked_tx.send(()).unwrap();
    let (summary, _) = tokio::time::timeout(Duration::from_secs(10), commit)
        .await
        .expect("the commit ends once the lock is released")
        .unwrap();
    writer.join().unwrap();
    assert_eq!(summary.outcome, "unchanged");
    let state = store.resource_state(SOURCE, RESOURCE).await.unwrap();
    assert_eq!(state.version, version + 1);
}

/// `snapshot_of` is what the whole snapshot says of the items named, and of no other: ids it
/// lacks are left out, another resource's rows with the same ids are not read, and the bytes'
/// hash and the misses come with each.
async fn snapshot_of_reads_the_items_named_of_that_resource_alone(store: &Store) {
    let raw = |n: u8| Some([n; 16]);
    let rows = vec![
        SnapshotRow {
            raw: raw(1),
            ..row("1", 1)
        },
        row("2", 2),
        SnapshotRow {
            raw: raw(3),
            ..row("3", 3)
        },
    ];
    commit_to(store, RESOURCE, rows, &[], Vec::new()).await;
    commit_to(store, "other", vec![row("1", 9)], &[], Vec::new()).await;
    // Item 3 is missing from the next complete listing (`deleted_after` not yet reached).
    let version = store
        .resource_state(SOURCE, RESOURCE)
        .await
        .unwrap()
        .version;
    let mut missed = commit_at(RESOURCE, version, NoUpserts, &[], Vec::new());
    missed.missing = vec!["3".to_owned()];
    store.commit_poll(missed).await.unwrap();

    let ids = ["1", "3", "9"].map(String::from).to_vec();
    let known = store.snapshot_of(SOURCE, RESOURCE, ids).await.unwrap();
    let mut got: Vec<_> = known
        .iter()
        .map(|(id, k)| (id.clone(), k.hash, k.raw, k.missing))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("1".to_owned(), hash(1), raw(1), 0),
            ("3".to_owned(), hash(3), raw(3), 1)
        ]
    );
    let whole = store.snapshot(SOURCE, RESOURCE, 3).await.unwrap();
    for (id, k) in &known {
        assert_eq!(whole.get(id), Some(k), "as the whole snapshot says of {id}");
    }
    assert!(
        store
            .snapshot_of(SOURCE, RESOURCE, Vec::new())
            .await
            .unwrap()
            .is_empty()
    );
}

// ───────────────────────── two processes on one database ─────────────────────────

/// What `run` polls from is what was committed last, by whichever process: `run`'s own
/// unchanged polls, its changes, and what another process (`other`: the CLI beside
/// `pollhook run`, or another replica) writes. On SQLite, after `run`'s own unchanged poll of a
/// small resource, `prior` answers from memory without a read (`remembered`); then a poll made
/// from it after another process wrote conflicts and writes nothing, and the next `prior` reads
/// what that process wrote. This is the promise that remembering must not break.
async fn prior_sees_every_commit(run: &Store, other: &Store, remembers: bool) {
    // What a poll of `run` starts from; `other_wrote`: another process wrote since `run` last
    // read or committed.
    let prior = async |pages: bool, other_wrote: bool| {
        let mut prior = run.prior(SOURCE, RESOURCE, pages, 1_000).await.unwrap();
        if prior.remembered && other_wrote {
            let late = commit_at(RESOURCE, prior.state.version, NoUpserts, &[], vec![]);
            let err = run.commit_poll(late).await.unwrap_err();
            assert!(matches!(err, StoreError::VersionConflict(_)), "{err}");
            prior = run.prior(SOURCE, RESOURCE, pages, 1_000).await.unwrap();
            assert!(
                !prior.remembered,
                "what was remembered is forgotten at the conflict"
            );
        }
        prior
    };
    // Its snapshot, and what the database holds, read anew.
    let snapshot = async |prior: pollhook::store::Prior| {
        let mut rows: Vec<(String, Hash, u32)> = (prior.snapshot.expect("a baseline"))
            .into_iter()
            .map(|(id, k)| (id, k.hash, k.missing))
            .collect();
        rows.sort();
        let held = run.resource_state(SOURCE, RESOURCE).await.unwrap();
        assert_eq!(prior.state, held);
        assert_eq!(rows.len() as i64, held.item_count);
        (prior.state.version, rows)
    };
    let rows = |r: &[(&str, u8)]| -> Vec<(String, Hash, u32)> {
        r.iter()
            .map(|(id, n)| (id.to_string(), hash(*n), 0))
            .collect()
    };
    commit_to(run, RESOURCE, vec![row("1", 1), row("2", 1)], &[], vec![]).await;
    let first = prior(false, false).await;
    assert!(!first.remembered, "a change is read back");
    let (mut version, first) = snapshot(first).await;
    assert_eq!(first, rows(&[("1", 1), ("2", 1)]));
    // Unchanged polls: nothing but their bookkeeping is written, and SQLite remembers it.
    for _ in 0..3 {
        commit_to(run, RESOURCE, NoUpserts, &[], vec![]).await;
        let next = prior(false, false).await;
        assert_eq!(next.remembered, remembers);
        let (now, same) = snapshot(next).await;
        assert_eq!((now, &same), (version + 1, &first));
        version = now;
    }
    // An incremental poll's bookkeeping: a newer cursor, and no complete listing.
    let mut commit = commit_at(RESOURCE, version, NoUpserts, &[], vec![]);
    commit.since_cursor = Some("2026-12-01T10:00:00Z".to_owned());
    commit.complete = false;
    run.commit_poll(commit).await.unwrap();
    let next = prior(false, false).await;
    assert_eq!(next.remembered, remembers);
    assert_eq!(
        next.state.since_cursor.as_deref(),
        Some("2026-12-01T10:00:00Z")
    );
    let (now, same) = snapshot(next).await;
    assert_eq!((now, &same), (version + 1, &first));
    version = now;
    // Another process changes one item and deletes the other.
    commit_to(other, RESOURCE, vec![row("1", 2)], &["2"], vec![]).await;
    assert_eq!(
        snapshot(prior(false, true).await).await.1,
        rows(&[("1", 2)])
    );
    // `run`'s own change.
    commit_to(run, RESOURCE, vec![row("3", 1)], &[], vec![]).await;
    assert_eq!(
        snapshot(prior(false, false).await).await.1,
        rows(&[("1", 2), ("3", 1)])
    );
    // `run` remembers its unchanged poll; the other process commits an unchanged one too.
    commit_to(run, RESOURCE, NoUpserts, &[], vec![]).await;
    commit_to(other, RESOURCE, NoUpserts, &[], vec![]).await;
    let (now, same) = snapshot(prior(false, true).await).await;
    assert_eq!(same, rows(&[("1", 2), ("3", 1)]));
    // `run` read at this version; the other process commits an unchanged poll, then a change…
    commit_to(other, RESOURCE, NoUpserts, &[], vec![]).await;
    commit_to(other, RESOURCE, vec![row("3", 7)], &[], vec![]).await;
    // …so `run`'s unchanged poll of what it read conflicts and writes nothing…
    let late = commit_at(RESOURCE, now, NoUpserts, &[], vec![]);
    let err = run.commit_poll(late).await.unwrap_err();
    assert!(matches!(err, StoreError::VersionConflict(_)), "{err}");
    // …and its next poll reads what the other process wrote.
    let (now, latest) = snapshot(prior(false, false).await).await;
    assert_eq!((now, latest), (version + 6, rows(&[("1", 2), ("3", 7)])));

    // Page records: `run` keeps those its unchanged poll wrote…
    let page = pollhook::store::PageRecord {
        url: "http://127.0.0.1:9/orders?page=1".into(),
        etag: Some("\"v1\"".into()),
        ids: vec!["1".into(), "3".into()],
        ..Default::default()
    };
    let mut commit = commit_at(RESOURCE, now, NoUpserts, &[], vec![]);
    commit.pages = Some(vec![page.clone()]);
    run.commit_poll(commit).await.unwrap();
    let kept = prior(true, false).await;
    assert_eq!(kept.remembered, remembers);
    assert_eq!(kept.pages.get(&page.url), Some(&page));
    assert_eq!(kept.pages.len(), 1);
    // …until another process forgets them (a replayed page turned out stale), and so forgets
    // what `run` remembered.
    let failure = PollFailure {
        source: SOURCE.to_owned(),
        resource: RESOURCE.to_owned(),
        error: "page 1 is stale".to_owned(),
        at: Utc::now(),
        duration: Duration::from_millis(5),
        alert_after: 0,
        forget_pages: true,
    };
    other.record_poll_failure(failure).await.unwrap();
    assert!(prior(true, true).await.pages.is_empty());
}

#[tokio::test]
async fn prior_sees_every_commit_of_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pollhook.db");
    let (run, other) = (Store::open(&path).unwrap(), Store::open(&path).unwrap());
    eprintln!("two stores on one database: sqlite");
    prior_sees_every_commit(&run, &other, true).await;
    if let Some(db) = crate::postgres::TestDb::create("prior of two processes").await {
        eprintln!("two stores on one database: postgres");
        prior_sees_every_commit(&db.store().await, &db.store().await, false).await;
    }
}
