//! PostgreSQL: the store's operations, the CLI and several `pollhook run` replicas on a real
//! server.
//!
//! `POLLHOOK_TEST_POSTGRES` is an admin URL (`postgres://postgres:…@127.0.0.1:5432/postgres`);
//! each test creates a database of its own from it and drops it at the end, so tests run in
//! parallel. Without it each test prints one "skipped" line and passes, except under `CI=true`,
//! where a missing server fails the run (`.ci/run` starts one).
//!
//! To hook these into the store conformance suite: [`TestDb::store`] opens a migrated
//! [`Store`] on a fresh database, so a `backends()` list can hold it beside the SQLite one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use pollhook::config::Secret;
use pollhook::endpoint::{ActionFilter, EndpointSpec};
use pollhook::sign::Scheme;
use pollhook::store::{DeliveryFilter, EventFilter, PollCommit, SnapshotRow, Store, StoreError};
use sha2::{Digest, Sha256};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::common::block_on;
use crate::crash;

/// A database of its own on the test server, dropped (with whatever is connected) at the end.
pub struct TestDb {
    admin: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl TestDb {
    /// A fresh, empty database, or `None` (after saying so) when no server is configured.
    pub async fn create(test: &str) -> Option<TestDb> {
        let Some(admin) = std::env::var("POLLHOOK_TEST_POSTGRES")
            .ok()
            .filter(|v| !v.is_empty())
        else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but POLLHOOK_TEST_POSTGRES is not set: .ci/run starts PostgreSQL and sets it"
            );
            println!("{test}: skipped: set POLLHOOK_TEST_POSTGRES to run the PostgreSQL tests");
            return None;
        };
        let name = format!(
            "pollhook_t_{}_{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        );
        admin_sql(&admin, &format!("CREATE DATABASE {name}")).await;
        let url = with_database(&admin, &name);
        Some(TestDb { admin, name, url })
    }

    /// A migrated store on it.
    pub async fn store(&self) -> Store {
        Store::connect_postgres(&self.url, 8).await.unwrap()
    }

    /// Runs SQL in it.
    pub async fn sql(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        let rows = client.query(sql, &[]).await.unwrap();
        driver.abort();
        rows
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        block_on(async move {
            admin_sql(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        });
    }
}

async fn admin_sql(admin: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("POLLHOOK_TEST_POSTGRES does not connect: {e}"));
    let driver = tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap();
    driver.abort();
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let mut url = url::Url::parse(url).expect("POLLHOOK_TEST_POSTGRES is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn rows(ids: &[(&str, u64)]) -> Vec<SnapshotRow> {
    ids.iter()
        .map(|(id, v)| {
            let body = format!(r#"{{"id":"{id}","v":{v}}}"#);
            SnapshotRow {
                id: (*id).to_owned(),
                hash: Sha256::digest(body.as_bytes()).into(),
                raw: None,
                body,
            }
        })
        .collect()
}

fn commit(version: i64, upserts: Vec<SnapshotRow>, events: Vec<pollhook::event::Event>) -> PollCommit {
    PollCommit {
        source: "shop".into(),
        resource: "orders".into(),
        upserts: Box::new(upserts),
        rehashed: Vec::new(),
        deletes: Vec::new(),
        events,
        listed: 2,
        held: None,
        complete: true,
        duration: Duration::from_millis(3),
        at: chrono::Utc::now(),
        alert_after: 3,
        missing: Vec::new(),
        found: Vec::new(),
        since_cursor: None,
        pages: None,
        version,
    }
}

// ───────────────────────────── the store ─────────────────────────────

#[tokio::test]
async fn a_commit_is_conditional_on_the_version_and_claims_keep_item_order() {
    let Some(db) = TestDb::create("postgres store").await else {
        return;
    };
    let store = db.store().await;
    // Migrating again (a second replica starting) changes nothing.
    let again = db.store().await;
    assert_eq!(again.schema_version().await.unwrap(), 1);

    let spec = EndpointSpec {
        name: "app".into(),
        url: "http://127.0.0.1:9/hooks".into(),
        secret: Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        signing: Scheme::StandardWebhooks,
        resources: vec!["*".into()],
        actions: ActionFilter::default(),
        active: true,
        headers: Vec::new(),
        timeout: None,
    };
    store.reconcile_endpoints(std::slice::from_ref(&spec)).await.unwrap();
    let endpoint = store.endpoint_named("app").await.unwrap();

    // A baseline, then two changes of one item and one of another, in two commits.
    let (summary, _) = store
        .commit_poll(commit(0, rows(&[("1", 1), ("2", 1)]), Vec::new()))
        .await
        .unwrap();
    assert_eq!(summary.outcome, "baseline");
    let state = store.resource_state("shop", "orders").await.unwrap();
    assert_eq!((state.version, state.item_count, state.has_baseline), (1, 2, true));
    let updated = |id: &str, v: u64| {
        pollhook::event::Event::from_change(
            "shop",
            "orders",
            &pollhook::diff::Change::Updated(pollhook::normalize::Record {
                id: id.to_owned(),
                body: serde_json::json!({"id": id, "v": v}),
                hash: [0; 32],
                raw: None,
            }),
            None,
            chrono::Utc::now(),
        )
    };
    let (summary, _) = store
        .commit_poll(commit(1, rows(&[("1", 2)]), vec![updated("1", 2), updated("2", 2)]))
        .await
        .unwrap();
    assert_eq!((summary.events, summary.deliveries), (2, 2));
    store
        .commit_poll(commit(2, rows(&[("1", 3)]), vec![updated("1", 3)]))
        .await
        .unwrap();

    // A poll that read version 2 commits nothing now that it is 3.
    let stale = store
        .commit_poll(commit(2, rows(&[("1", 9)]), vec![updated("1", 9)]))
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::VersionConflict(_)), "{stale}");
    assert_eq!(store.events(EventFilter { limit: 10, ..Default::default() }).await.unwrap().len(), 3);

    // The claim offers each item's oldest pending delivery only, whoever asks.
    let first = store.claim(endpoint.id, 10, 60_000).await.unwrap();
    let items: Vec<&str> = first.iter().map(|d| d.resource_id.as_str()).collect();
    assert_eq!(items, ["1", "2"], "{first:?}");
    assert!(store.claim(endpoint.id, 10, 60_000).await.unwrap().is_empty(), "leased, and item 1's next waits");
    let other_replica = db.store().await;
    assert!(other_replica.claim(endpoint.id, 10, 60_000).await.unwrap().is_empty());
    let done = |d: &pollhook::store::Due| pollhook::store::Recorded {
        delivery_id: d.delivery_id,
        endpoint_id: endpoint.id,
        at: pollhook::store::now_ms(),
        status: Some(204),
        latency_ms: 1,
        error: None,
        response: None,
        next: pollhook::retry::Next::Done,
    };
    store.record_outcomes(vec![done(&first[0])], Duration::from_secs(3600)).await.unwrap();
    let next = other_replica.claim(endpoint.id, 10, 60_000).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].resource_id, "1");
    assert!(next[0].payload.contains("\"v\":3"), "{}", next[0].payload);

    // Duplicates and missing rows are the same errors as on SQLite.
    let dup = store.add_endpoint(&spec).await.unwrap_err();
    assert!(matches!(dup, StoreError::Duplicate(_)), "{dup}");
    assert!(dup.to_string().contains("already exists"), "{dup}");
    let missing = store.accept_deletes("shop", "orders").await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing}");
}

#[tokio::test]
async fn a_wrong_password_names_host_and_database_but_not_the_password() {
    let Some(db) = TestDb::create("postgres login").await else {
        return;
    };
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_password(Some("not-the-Secret-pw")).unwrap();
    let err = Store::connect_postgres(url.as_str(), 2).await.err().expect("refused");
    let text = err.to_string();
    assert!(text.contains("cannot connect to PostgreSQL at"), "{text}");
    assert!(text.contains(&db.name), "names the database: {text}");
    assert!(text.contains("password"), "says what to check: {text}");
    assert!(!text.contains("not-the-Secret-pw"), "{text}");

    // Nothing listens on port 9: a clear error, quickly.
    let started = Instant::now();
    let err = Store::connect_postgres("postgres://u:hunter2@127.0.0.1:9/nowhere", 2)
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:9/nowhere"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
