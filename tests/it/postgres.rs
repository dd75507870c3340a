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

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pollhook::diff::Change;
use pollhook::event::Event;
use pollhook::normalize::Record;
use pollhook::store::{
    DeliveryRow, EventFilter, POSTGRES_DELIVERY_CLAIM, PollCommit, ResourceClaim, SnapshotRow,
    Store, StoreError,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::crash::{self, Facts, Receiver, Scene, SourceApi};
use crate::support::{
    Child, ConfigBuilder, Hook, Out, Resource, Source, all_deliveries, block_on, command,
    endpoint_spec, eventually, output, spawn_run,
};

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

    /// A fresh database on the server at `admin`.
    async fn on(admin: &str) -> TestDb {
        let name = format!("pollhook_t_{}", uuid::Uuid::now_v7().simple());
        admin_sql(admin, &format!("CREATE DATABASE {name}")).await;
        TestDb {
            admin: admin.to_owned(),
            url: with_database(admin, &name),
            name,
        }
    }

    /// A migrated store on it.
    pub async fn store(&self) -> Store {
        Store::connect_postgres(&self.url, 8).await.unwrap()
    }

    /// Two stores on it, as two replicas open them (each migrating).
    async fn replicas(&self) -> (Store, Store) {
        (self.store().await, self.store().await)
    }

    /// Runs SQL in it.
    pub async fn sql(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        query(&self.url, sql).await
    }
}

/// Runs SQL in the database at `url`, on a connection of its own.
async fn query(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let rows = client.query(sql, &[]).await.unwrap();
    driver.abort();
    rows
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        block_on(async move {
            admin_sql(
                &admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
        });
    }
}

async fn admin_sql(admin: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("POLLHOOK_TEST_POSTGRES does not connect: {e}"));
    let driver = tokio::spawn(connection);
    // CREATE DATABASE copies template1 and refuses while another session is in it ("being
    // accessed by other users", 55006): the other tests' own CREATE DATABASE. It passes in a
    // moment; so does a DROP meeting a session still closing.
    let mut tries = 0;
    loop {
        match client.batch_execute(sql).await {
            Ok(()) => break,
            Err(e)
                if tries < 50
                    && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
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

fn commit(
    version: i64,
    upserts: Vec<SnapshotRow>,
    events: Vec<pollhook::event::Event>,
) -> PollCommit {
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

/// The event of `change` to `shop.orders`, detected now.
fn event_of(change: Change) -> Event {
    Event::from_change("shop", "orders", &change, None, &[], chrono::Utc::now())
}

/// A record of item `id` with `body` (its hash left zero: the store does not look at it).
fn record(id: &str, body: Value) -> Record {
    Record {
        id: id.to_owned(),
        body,
        hash: [0; 32],
        raw: None,
    }
}

/// Reconciles `store` to the one endpoint the store tests deliver to, `app` (every resource):
/// its spec and row id.
async fn reconcile_app(store: &Store) -> (pollhook::endpoint::EndpointSpec, i64) {
    let spec = endpoint_spec(
        "app",
        "http://127.0.0.1:9/hooks",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    );
    store
        .reconcile_endpoints(std::slice::from_ref(&spec))
        .await
        .unwrap();
    (spec, store.endpoint_named("app").await.unwrap().id)
}

/// Every event, newest first.
async fn every_event(store: &Store) -> Vec<(i64, Event)> {
    let filter = EventFilter {
        limit: 1_000_000,
        ..EventFilter::default()
    };
    store.events(filter).await.unwrap()
}

// ───────────────────────────── the store ─────────────────────────────

#[tokio::test]
async fn a_commit_is_conditional_on_the_version_and_claims_keep_item_order() {
    let Some(db) = TestDb::create("postgres store").await else {
        return;
    };
    // Migrating again (a second replica starting) changes nothing.
    let (store, again) = db.replicas().await;
    assert_eq!(again.schema_version().await.unwrap(), 4);

    let (spec, endpoint) = reconcile_app(&store).await;

    // A baseline, then two changes of one item and one of another, in two commits.
    let (summary, _) = store
        .commit_poll(commit(0, rows(&[("1", 1), ("2", 1)]), Vec::new()))
        .await
        .unwrap();
    assert_eq!(summary.outcome, "baseline");
    let state = store.resource_state("shop", "orders").await.unwrap();
    assert_eq!(
        (state.version, state.item_count, state.has_baseline),
        (1, 2, true)
    );
    let updated = |id: &str, v: u64| {
        event_of(Change::Updated(record(
            id,
            serde_json::json!({"id": id, "v": v}),
        )))
    };
    let (summary, _) = store
        .commit_poll(commit(
            1,
            rows(&[("1", 2)]),
            vec![updated("1", 2), updated("2", 2)],
        ))
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
    assert_eq!(every_event(&store).await.len(), 3);

    // The claim offers each item's oldest pending delivery only, whoever asks.
    let first = store.claim(endpoint, 10, 60_000).await.unwrap();
    let items: Vec<&str> = first.iter().map(|d| d.resource_id.as_str()).collect();
    assert_eq!(items, ["1", "2"], "{first:?}");
    assert!(
        store.claim(endpoint, 10, 60_000).await.unwrap().is_empty(),
        "leased, and item 1's next waits"
    );
    let other_replica = db.store().await;
    assert!(
        other_replica
            .claim(endpoint, 10, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    let done = |d: &pollhook::store::Due| pollhook::store::Recorded {
        delivery_id: d.delivery_id,
        endpoint_id: endpoint,
        at: pollhook::store::now_ms(),
        status: Some(204),
        latency_ms: 1,
        error: None,
        response: None,
        next: pollhook::retry::Next::Done,
    };
    store
        .record_outcomes(vec![done(&first[0])], Duration::from_secs(3600))
        .await
        .unwrap();
    let next = other_replica.claim(endpoint, 10, 60_000).await.unwrap();
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

/// The claim's per-item order check is one probe of `deliveries_lane` per candidate, whatever
/// the statistics say. Before a fresh queue's first ANALYZE the planner used to walk the
/// endpoint's whole queue once per candidate instead (0.7 s a claim at 20k pending), in either
/// index, with the item compared row by row.
#[tokio::test]
async fn the_claims_order_check_probes_the_lane_index_before_and_after_analyze() {
    let Some(db) = TestDb::create("claim plan").await else {
        return;
    };
    let store = db.store().await;
    let (_, endpoint) = reconcile_app(&store).await;
    let ids: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
    let baseline: Vec<(&str, u64)> = ids.iter().map(|id| (id.as_str(), 1)).collect();
    store
        .commit_poll(commit(0, rows(&baseline), Vec::new()))
        .await
        .unwrap();
    let changed: Vec<(&str, u64)> = ids.iter().map(|id| (id.as_str(), 2)).collect();
    let events = ids
        .iter()
        .map(|id| event_of(Change::Updated(record(id, serde_json::json!({"id": id})))))
        .collect();
    store
        .commit_poll(commit(1, rows(&changed), events))
        .await
        .unwrap();

    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let explain = format!("EXPLAIN {POSTGRES_DELIVERY_CLAIM}");
    let now = chrono::Utc::now().timestamp_millis();
    for when in ["before ANALYZE", "after ANALYZE"] {
        if when == "after ANALYZE" {
            client.batch_execute("ANALYZE deliveries").await.unwrap();
        }
        let plan: Vec<String> = client
            .query(&explain, &[&endpoint, &now, &128i64, &60_000i64, &"test"])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        // The check's scan of `x`, and the condition it descends the index with.
        let scan = plan
            .iter()
            .position(|line| line.contains(" on deliveries x"))
            .unwrap_or_else(|| panic!("{when}: no scan of x in\n{}", plan.join("\n")));
        let shown = plan.join("\n");
        assert!(
            plan[scan].contains("using deliveries_lane"),
            "{when}, the order check reads deliveries_lane:\n{shown}"
        );
        assert!(
            plan[scan + 1].contains("Index Cond") && plan[scan + 1].contains("item_key ="),
            "{when}, it descends to the candidate's item, not walks the queue:\n{shown}"
        );
    }
    driver.abort();
}

#[tokio::test]
async fn a_starting_replica_hands_back_only_the_leases_of_replicas_that_are_gone() {
    let Some(db) = TestDb::create("postgres release_all_leases").await else {
        return;
    };
    let (live, gone) = db.replicas().await;
    let (_, endpoint) = reconcile_app(&live).await;
    live.commit_poll(commit(0, rows(&[("1", 1), ("2", 1)]), Vec::new()))
        .await
        .unwrap();
    let created = |id: &str| event_of(Change::Created(record(id, serde_json::json!({"id": id}))));
    live.commit_poll(commit(
        1,
        rows(&[("1", 1), ("2", 1), ("3", 1), ("4", 1)]),
        vec![created("3"), created("4")],
    ))
    .await
    .unwrap();
    // One replica heartbeats (it is alive) and claims item 3; another, which never did (or
    // whose row was swept), claims item 4.
    pollhook::cluster::beat(&live).await;
    assert_eq!(live.claim(endpoint, 1, 600_000).await.unwrap().len(), 1);
    assert_eq!(gone.claim(endpoint, 1, 600_000).await.unwrap().len(), 1);
    // A third starts: only the gone one's lease ends.
    let starting = db.store().await;
    pollhook::cluster::beat(&starting).await;
    assert_eq!(starting.release_all_leases().await.unwrap(), 1);
    let freed = starting.claim(endpoint, 10, 600_000).await.unwrap();
    let ids: Vec<&str> = freed.iter().map(|d| d.resource_id.as_str()).collect();
    assert_eq!(ids, ["4"], "the live replica keeps item 3");
}

#[tokio::test]
async fn a_resource_is_claimed_by_one_replica_and_an_unfinished_claim_comes_back_to_it() {
    let Some(db) = TestDb::create("postgres claim_resource").await else {
        return;
    };
    let (one, two) = db.replicas().await;
    let lease = Duration::from_secs(600);
    let claim = async |store: &Store| store.claim_resource("shop", "orders", lease).await.unwrap();
    // Its first ask makes the row; the next wins it, and the other replica finds it busy.
    assert!(matches!(claim(&one).await, ResourceClaim::Busy(wait) if wait.is_zero()));
    assert!(matches!(claim(&one).await, ResourceClaim::Won));
    assert!(
        matches!(claim(&two).await, ResourceClaim::Busy(wait) if wait > Duration::from_secs(500))
    );
    // A poll whose finish was never written (the database restarted under it): its heartbeat
    // keeps the lease alive, so only the same replica's next claim may take it back.
    pollhook::cluster::beat(&one).await;
    assert!(matches!(claim(&two).await, ResourceClaim::Busy(_)));
    assert!(matches!(claim(&one).await, ResourceClaim::Won));
    // Finished: not due for a minute, for either.
    one.finish_resource("shop", "orders", Duration::from_secs(60))
        .await
        .unwrap();
    for store in [&one, &two] {
        assert!(
            matches!(claim(store).await, ResourceClaim::NotYet(wait) if wait > Duration::from_secs(50))
        );
    }
}

#[tokio::test]
async fn maintenance_runs_on_the_one_replica_holding_the_leader_lease() {
    let Some(db) = TestDb::create("postgres leader").await else {
        return;
    };
    let (one, two) = db.replicas().await;
    // Before any heartbeat nobody leads; the first to beat takes the lease, the other does not.
    assert!(!one.leads_maintenance() && !two.leads_maintenance());
    pollhook::cluster::beat(&one).await;
    pollhook::cluster::beat(&two).await;
    assert!(
        one.leads_maintenance(),
        "the first heartbeat takes the lease"
    );
    assert!(!two.leads_maintenance(), "one leader at a time");
    // The leader leaves cleanly: the next heartbeat of the other takes over.
    one.leave().await.unwrap();
    pollhook::cluster::beat(&two).await;
    assert!(
        two.leads_maintenance(),
        "the lease moves once its holder left"
    );
    // SQLite has one process, which always runs it.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&dir.path().join("p.db")).unwrap();
    assert!(sqlite.leads_maintenance());
}

#[tokio::test]
async fn a_wrong_password_names_host_and_database_but_not_the_password() {
    let Some(db) = TestDb::create("postgres login").await else {
        return;
    };
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_password(Some("not-the-Secret-pw")).unwrap();
    let err = Store::connect_postgres(url.as_str(), 2)
        .await
        .err()
        .expect("refused");
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

// ───────────────────────────── the CLI ─────────────────────────────

/// `pollhook ARGS… --config CONFIG`, with a clean environment.
async fn cli(config: &Path, args: &[&str]) -> Out {
    let mut cmd = command();
    cmd.args(args).arg("--config").arg(config);
    output(cmd).await
}

/// [`cli`], which must succeed: its standard output.
async fn cli_ok(config: &Path, args: &[&str]) -> String {
    cli(config, args).await.ok().stdout
}

/// [`cli`], which must fail: its standard error.
async fn cli_fails(config: &Path, args: &[&str]) -> String {
    let out = cli(config, args).await;
    assert_ne!(out.code, 0, "{out:#?}");
    out.stderr
}

/// `endpoints add NAME --url URL EXTRA…`.
fn add_endpoint<'a>(name: &'a str, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["endpoints", "add", name, "--url", url];
    args.extend_from_slice(extra);
    args
}

/// A changing source of `n` items, and a config polling it as `shop.items` (`touched` ignored;
/// polled by hand in these tests) and delivering to loopback, its `[storage]` left to the test.
async fn items_config(n: u64) -> (SourceApi, ConfigBuilder) {
    let (world, source_url) = crash::serve_world(n).await;
    let items = Resource::new("items", "1h")
        .set("path", "/items")
        .set("ignore", vec!["touched"]);
    let config = ConfigBuilder::without_storage()
        .source(Source::new("shop", &source_url).resource(items))
        .loopback_delivery();
    (world, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cli_command_works_on_postgres() {
    let Some(db) = TestDb::create("postgres cli").await else {
        return;
    };
    let (world, config) = items_config(30).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config
        .in_dir(dir.path())
        .set("storage.path", "ignored.db")
        .set("storage.url", db.url.as_str())
        .write();

    let out = cli_ok(&config, &["check"]).await;
    assert!(out.contains("url wins over path"), "{out}");
    assert!(
        !out.contains("postgres:postgres@"),
        "no password in the output: {out}"
    );
    let out = cli_ok(&config, &["migrate"]).await;
    assert!(out.contains("schema version 4"), "{out}");
    assert!(
        !dir.path().join("ignored.db").exists(),
        "the SQLite path is not used"
    );

    // A baseline, then a change and a mass delete held back.
    cli_ok(&config, &["poll", "shop.items"]).await;
    {
        let mut w = world.world();
        let mut rng = StdRng::seed_from_u64(7);
        while w.log.iter().all(|l| l.op != crash::Op::Update) {
            w.mutate(&mut rng);
        }
    }
    cli_ok(&config, &["poll", "shop.items", "--json"]).await;
    let out = cli_ok(&config, &["events", "list", "--json"]).await;
    let events: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(!events.is_empty(), "{out}");
    let event_id = events[0]["id"].as_str().unwrap().to_owned();
    let out = cli_ok(&config, &["events", "show", &event_id]).await;
    assert!(out.contains(&event_id));

    let hooks = "http://127.0.0.1:9/hooks";
    cli_ok(
        &config,
        &add_endpoint("app", hooks, &["--resource", "shop.items"]),
    )
    .await;
    let err = cli_fails(&config, &add_endpoint("app", hooks, &[])).await;
    assert!(err.contains("already exists"), "{err}");
    let out = cli_ok(&config, &["endpoints", "list"]).await;
    assert!(out.contains("app") && out.contains("127.0.0.1:9"), "{out}");
    // A format change is checked as on SQLite (XML cannot be signed with jwt), then applied.
    let err = cli_fails(&config, &["endpoints", "update", "app", "--format", "xml"]).await;
    assert!(err.contains("format") && err.contains("jwt"), "{err}");
    let add = add_endpoint(
        "xml-app",
        "http://127.0.0.1:9/xml",
        &["--resource", "shop.items", "--signing", "standard-webhooks"],
    );
    cli_ok(&config, &add).await;
    cli_ok(
        &config,
        &["endpoints", "update", "xml-app", "--format", "xml"],
    )
    .await;
    let out = cli_ok(&config, &["endpoints", "show", "xml-app", "--json"]).await;
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["format"], "xml", "{out}");
    cli_ok(&config, &["endpoints", "remove", "xml-app"]).await;

    let out = cli_ok(&config, &["replay", &event_id, "--endpoint", "app"]).await;
    assert!(out.contains("queued again for: app"), "{out}");
    let out = cli_ok(&config, &["deliveries", "list"]).await;
    assert!(out.contains("pending") && out.contains("app"), "{out}");

    // Every item gone at once: the guard holds the deletes until `accept`.
    world.world().items.clear();
    cli_ok(&config, &["poll", "shop.items"]).await;
    let out = cli_ok(&config, &["status", "--json"]).await;
    let status: Value = serde_json::from_str(&out).unwrap();
    assert!(
        status["sources"][0]["resources"][0]["held_deletes"]
            .as_i64()
            .unwrap_or(0)
            > 0,
        "the deletes are held: {status}"
    );
    let out = cli_ok(&config, &["accept", "shop.items"]).await;
    assert!(out.contains("will be applied at its next poll"), "{out}");
    // The next poll applies them.
    cli_ok(&config, &["poll", "shop.items"]).await;
    let err = cli_fails(&config, &["accept", "shop.items"]).await;
    assert!(err.contains("no held-back deletes"), "{err}");
}

// ───────────────────────────── replicas ─────────────────────────────

/// [`crash::check`]'s view of the database, read with a connection of its own.
struct PgFacts(String);

impl PgFacts {
    fn query(&self, sql: &'static str) -> Vec<tokio_postgres::Row> {
        let url = self.0.clone();
        block_on(async move { query(&url, sql).await })
    }
}

impl Facts for PgFacts {
    fn snapshot(&self) -> BTreeMap<u64, (u64, u64, i64)> {
        self.query("SELECT item_id, body, changed_at FROM snapshot WHERE source = 'shop'")
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_str(r.get(1)).unwrap();
                (
                    r.get::<_, &str>(0).parse().unwrap(),
                    (
                        body["version"].as_u64().unwrap(),
                        body["touched"].as_u64().unwrap(),
                        r.get(2),
                    ),
                )
            })
            .collect()
    }
    fn baseline_at(&self) -> Option<i64> {
        self.query("SELECT baseline_at FROM resources WHERE source = 'shop' AND resource = 'items'")
            .first()
            .and_then(|r| r.get(0))
    }
}

/// A replica test's world: the changing source, the receiver, the config.
struct Cluster {
    /// What the source's changes and the key come from.
    seed: u64,
    world: SourceApi,
    receiver: Receiver,
    key: [u8; 32],
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Cluster {
    /// The world of `seed`, its config on `db`; and a store on `db` for the test to watch.
    async fn start(seed: u64, db: &TestDb) -> (Cluster, Store) {
        let mut rng = StdRng::seed_from_u64(seed);
        let scene = Scene::start(seed, &mut rng).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pollhook.toml");
        let text = scene
            .config
            .set("storage.url", db.url.as_str())
            .any_port()
            .toml();
        std::fs::write(&config, text).unwrap();
        let cluster = Cluster {
            seed,
            world: scene.world,
            receiver: scene.receiver,
            key: scene.key,
            dir,
            config,
        };
        (cluster, db.store().await)
    }

    fn log(&self, replica: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("replica-{replica}.log"))
    }

    fn spawn(&self, replica: usize) -> Child {
        spawn_run(&self.config, &self.log(replica))
    }

    fn logs(&self) -> String {
        (0..3)
            .map(|i| format!("--- replica {i} ---\n{}", crash::log_tail(&self.log(i))))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Keeps the source changing until the handle is aborted.
    fn mutate(&self) -> tokio::task::JoinHandle<()> {
        crash::mutate(&self.world, self.seed)
    }

    /// Stops `mutator`, waits (for at most `limit`) until a poll after that found nothing new
    /// and every delivery is done and received while `replicas` run, stops them, and checks.
    async fn settle(
        &self,
        db: &TestDb,
        store: &Store,
        mutator: tokio::task::JoinHandle<()>,
        replicas: &mut [Child],
        limit: Duration,
    ) -> crash::Figures {
        mutator.abort();
        let _ = mutator.await;
        let settled_at = chrono::Utc::now();
        let alive = || {
            for (i, child) in replicas.iter_mut().enumerate() {
                if let Some(status) = child.try_wait() {
                    panic!("replica {i} exited by itself ({status})\n{}", self.logs());
                }
            }
        };
        crash::quiesce(store, &self.receiver, settled_at, limit, alive, || {
            self.logs()
        })
        .await;
        self.stop(replicas).await;
        self.check(db, store).await
    }

    /// Waits until some replica has committed the baseline.
    async fn baselined(&self, store: &Store) {
        let polled = async || {
            let status = store.status().await.ok()?;
            status
                .iter()
                .any(|s| s.source == "shop" && s.last_poll_at.is_some())
                .then_some(())
        };
        eventually(
            "a replica commits the baseline",
            Duration::from_secs(30),
            polled,
        )
        .await;
    }

    /// SIGTERMs every replica and checks each stops cleanly.
    async fn stop(&self, replicas: &mut [Child]) {
        for child in replicas.iter() {
            child.terminate();
        }
        for (i, child) in replicas.iter_mut().enumerate() {
            let exit = child
                .exit_within(Duration::from_secs(20))
                .await
                .unwrap_or_else(|| panic!("SIGTERM did not stop replica {i}"));
            assert!(exit.success(), "replica {i}: {exit}\n{}", self.logs());
        }
    }

    /// The crash test's checks, plus: every event has exactly one delivery (to the one
    /// endpoint), so no commit was half-written and no listing was committed twice.
    async fn check(&self, db: &TestDb, store: &Store) -> crash::Figures {
        let extra = db
            .sql(
                "SELECT count(*) FROM events e WHERE e.source = 'shop'
                 AND (SELECT count(*) FROM deliveries d WHERE d.event_seq = e.seq) != 1",
            )
            .await;
        assert_eq!(
            extra[0].get::<_, i64>(0),
            0,
            "an event without exactly one delivery"
        );
        let world = self.world.world().clone();
        let receipts = self.receiver.inbox().receipts.clone();
        let facts = PgFacts(db.url.clone());
        let store = store.clone();
        let key = self.key;
        let result = tokio::task::spawn_blocking(move || {
            crash::check(&world, &store, &facts, &receipts, &key)
        })
        .await
        .unwrap();
        result.unwrap_or_else(|problems| {
            panic!(
                "{} problem(s):\n  {}\n{}",
                problems.len(),
                problems.join("\n  "),
                self.logs()
            )
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_through_one_replicas_api_takes_effect_on_every_replica() {
    let Some(db) = TestDb::create("postgres api").await else {
        return;
    };
    let (cluster, store) = Cluster::start(20_261_204, &db).await;
    let mut replicas: Vec<Child> = (0..2).map(|i| cluster.spawn(i)).collect();
    let (one, two) = (
        replicas[0].admin_addr().await,
        replicas[1].admin_addr().await,
    );
    cluster.baselined(&store).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let hook = Hook::start(|_| 200).await;

    // An endpoint added through replica 0 shows the same on replica 1, and gets webhooks.
    let added = http
        .post(format!("http://{one}/api/v1/endpoints"))
        .json(&serde_json::json!({
            "name": "second",
            "url": format!("{}/second", hook.url),
            "resources": ["shop.items"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201, "{}", added.text().await.unwrap());
    let show = async |addr: std::net::SocketAddr| -> Value {
        let got = http
            .get(format!("http://{addr}/api/v1/endpoints/second"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        got.json().await.unwrap()
    };
    assert_eq!(
        show(one).await,
        show(two).await,
        "both replicas show one endpoint"
    );
    let mutator = cluster.mutate();
    eventually(
        "webhooks reach the endpoint added through one replica",
        Duration::from_secs(30),
        async || (!hook.log().is_empty()).then_some(()),
    )
    .await;

    // Paused through replica 1: no replica sends to it any more (what was in flight lands).
    // `POST /api/v1/endpoints/second/ACTION` on the replica at `addr`.
    let act = async |addr: std::net::SocketAddr, action: &str| {
        let url = format!("http://{addr}/api/v1/endpoints/second/{action}");
        http.post(url).send().await.unwrap()
    };
    let paused = act(two, "pause").await;
    assert_eq!(paused.status(), 200, "{}", paused.text().await.unwrap());
    assert_eq!(show(one).await["state"], "paused", "{}", show(one).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_pause = hook.log().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        hook.log().len(),
        at_pause,
        "a paused endpoint gets nothing, from either replica"
    );
    // Events meanwhile wait in its queue; resumed through replica 0, they arrive.
    let queued = all_deliveries(&store)
        .await
        .iter()
        .filter(|d| d.endpoint == "second" && d.status == "pending")
        .count();
    assert!(queued > 0, "changes went on while it was paused");
    assert_eq!(act(one, "resume").await.status(), 200);
    eventually(
        "the paused queue is delivered after resume",
        Duration::from_secs(30),
        async || (hook.log().len() >= at_pause + queued).then_some(()),
    )
    .await;
    mutator.abort();
    let _ = mutator.await;
    // Both replicas' dashboards and listings read the same database.
    for addr in [one, two] {
        for path in [
            "/api/v1/sources",
            "/api/v1/events?limit=5",
            "/api/v1/deliveries?limit=5",
            "/ui/",
            "/ui/events",
            "/ui/deliveries",
            "/ui/endpoints",
        ] {
            let got = http
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(got.status(), 200, "{addr}{path}");
        }
    }
    cluster.stop(&mut replicas).await;
}

/// Kills in the three-replica test when `POLLHOOK_REPLICA_KILLS` is not set.
const DEFAULT_KILLS: usize = 36;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_sigkilled_at_random_lose_nothing_and_keep_item_order() {
    let Some(db) = TestDb::create("postgres replicas").await else {
        return;
    };
    let seed: u64 = crash::env_number("POLLHOOK_CRASH_SEED", 20_261_201);
    let kills: usize = crash::env_number("POLLHOOK_REPLICA_KILLS", DEFAULT_KILLS);
    println!("replicas: seed {seed} (POLLHOOK_CRASH_SEED), {kills} kills (POLLHOOK_REPLICA_KILLS)");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let (cluster, store) = Cluster::start(seed, &db).await;

    let mut replicas: Vec<Child> = (0..3).map(|i| cluster.spawn(i)).collect();
    // The kills start once the baseline is in, so that what they interrupt is change detection.
    cluster.baselined(&store).await;
    let mutator = cluster.mutate();
    // At least `kills` kills, and on until polls found changes while replicas were dying (a
    // loaded machine restarts replicas slowly, so fewer polls fit between the kills).
    let polls_with_changes = async || {
        db.sql("SELECT count(DISTINCT detected_at) FROM events WHERE source = 'shop'")
            .await[0]
            .get::<_, i64>(0)
    };
    let kills_until = Instant::now() + Duration::from_secs(90);
    let mut kill = 0;
    while kill < kills || (polls_with_changes().await < 5 && Instant::now() < kills_until) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..=400))).await;
        let victim = rng.random_range(0..3);
        if let Some(status) = replicas[victim].try_wait() {
            panic!(
                "kill {kill}: replica {victim} exited by itself ({status})\n{}",
                cluster.logs()
            );
        }
        replicas[victim].kill();
        replicas[victim] = cluster.spawn(victim);
        kill += 1;
    }
    let during_kills = polls_with_changes().await;
    println!(
        "replicas: {kill} SIGKILLs in {:.1}s, {} source changes; settling",
        started.elapsed().as_secs_f64(),
        cluster.world.world().log.len()
    );
    // Killed replicas' delivery leases come back once the leader finds their heartbeat gone.
    let figures = cluster
        .settle(
            &db,
            &store,
            mutator,
            &mut replicas,
            Duration::from_secs(120),
        )
        .await;
    // Not a vacuous pass: change detection went on while replicas were being killed.
    assert!(
        during_kills >= 5 && figures.events >= 50,
        "only {during_kills} polls found changes during {kill} kills ({} events in all): the kills \
         left no replica polling\n{}",
        figures.events,
        cluster.logs()
    );
    println!(
        "replicas: seed {seed}: {during_kills} polls found changes during {kill} SIGKILLs across 3 replicas, {} source changes, {} events \
         checked ({}), {} webhooks ({} duplicates); lost 0, phantom 0, out of order 0; total {:.1}s",
        cluster.world.world().log.len(),
        figures.events,
        figures.by_action,
        cluster.receiver.inbox().receipts.len(),
        figures.duplicates,
        started.elapsed().as_secs_f64()
    );
}

// ───────────────────────────── a server restart, a network stall ─────────────────────────────

/// A PostgreSQL cluster of this test's own, on a free loopback port, so it can be restarted
/// without disturbing the other tests: `initdb` and `pg_ctl` as the `postgres` user (this test
/// runs as root in CI). Stopped and removed when dropped.
struct PrivateServer {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivateServer {
    /// Starts one, or says why not (no PostgreSQL binaries, not root) and returns `None`.
    fn start(test: &str) -> Option<PrivateServer> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("pg_ctl").exists())
            .max()?;
        if !Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"))
        {
            println!("{test}: skipped: a private PostgreSQL cluster needs root (runuser postgres)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let as_postgres = |args: String| {
            let status = Command::new("runuser")
                .args(["-u", "postgres", "--", "sh", "-c", &args])
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "{args}");
        };
        Command::new("chown")
            .args(["postgres", &dir.path().display().to_string()])
            .status()
            .unwrap();
        as_postgres(format!(
            "{} -D {} -U postgres --auth=trust -E UTF8 >/dev/null",
            bin.join("initdb").display(),
            data.display()
        ));
        let server = PrivateServer { bin, dir, port };
        server.pg_ctl("start -w");
        Some(server)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl(&self, what: &str) {
        let data = self.dir.path().join("data");
        let status = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "sh",
                "-c",
                &format!(
                    "{} -D {} -l {}/server.log -o '-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off' {what} >/dev/null",
                    self.bin.join("pg_ctl").display(),
                    data.display(),
                    self.dir.path().display(),
                    self.port,
                    self.dir.path().display(),
                ),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl {what}");
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &data.display().to_string(), "-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_recover_from_a_postgres_restart_mid_run_and_lose_nothing() {
    // Only runs where the shared tests run, so CI (which sets it) always runs it.
    if TestDb::create("postgres restart").await.is_none() {
        return;
    }
    let Some(server) = PrivateServer::start("postgres restart") else {
        return;
    };
    let db = TestDb::on(&server.url()).await;
    let (cluster, store) = Cluster::start(20_261_202, &db).await;
    let mutator = cluster.mutate();
    let mut replicas: Vec<Child> = (0..2).map(|i| cluster.spawn(i)).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cluster.receiver.inbox().receipts.len();
    assert!(
        before > 0,
        "webhooks flow before the restart\n{}",
        cluster.logs()
    );
    // A fast restart drops every connection, the listeners' included.
    server.pg_ctl("restart -w -m fast");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let figures = cluster
        .settle(&db, &store, mutator, &mut replicas, Duration::from_secs(90))
        .await;
    assert!(
        cluster.receiver.inbox().receipts.len() > before,
        "webhooks flow after the restart"
    );
    println!(
        "restart: {} events checked ({}), {} webhooks ({} duplicates); lost 0, out of order 0",
        figures.events,
        figures.by_action,
        cluster.receiver.inbox().receipts.len(),
        figures.duplicates
    );
}

/// A TCP relay on loopback that the test can freeze: while paused it neither reads nor writes,
/// as a network that drops everything does (the connections stay open).
struct Relay {
    port: u16,
    paused: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (paused, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, watch.clone()));
                tokio::spawn(pump(sr, cw, watch.clone()));
            }
        });
        Relay { port, paused }
    }

    fn pause(&self, paused: bool) {
        self.paused.send_replace(paused);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0; 64 * 1024];
    loop {
        while *paused.borrow_and_update() {
            if paused.changed().await.is_err() {
                return;
            }
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = paused.changed() => continue,
        };
        // What was read just as the pause began waits for the end of it.
        while *paused.borrow_and_update() {
            if paused.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_cut_off_from_postgres_longer_than_a_lease_is_fenced_and_taken_over() {
    let Some(db) = TestDb::create("postgres stall").await else {
        return;
    };
    let (cluster, store) = Cluster::start(20_261_203, &db).await;
    // Replica 0 reaches the database through the relay; replica 1 directly.
    let target = url::Url::parse(&db.url).unwrap();
    let upstream = format!(
        "{}:{}",
        target.host_str().unwrap(),
        target.port().unwrap_or(5432)
    );
    let upstream: std::net::SocketAddr = tokio::net::lookup_host(upstream)
        .await
        .unwrap()
        .next()
        .unwrap();
    let relay = Relay::start(upstream).await;
    let mut relayed = target.clone();
    relayed.set_port(Some(relay.port)).unwrap();
    let relayed_config = cluster.dir.path().join("relayed.toml");
    std::fs::write(
        &relayed_config,
        std::fs::read_to_string(&cluster.config)
            .unwrap()
            .replace(&db.url, relayed.as_str()),
    )
    .unwrap();
    let mutator = cluster.mutate();
    let mut replicas = vec![
        spawn_run(&relayed_config, &cluster.log(0)),
        cluster.spawn(1),
    ];
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Longer than a resource lease (15 s) and than the time after which a silent replica is
    // presumed dead and its delivery leases handed back.
    relay.pause(true);
    let stalled_at = cluster.receiver.inbox().receipts.len();
    tokio::time::sleep(Duration::from_secs(18)).await;
    let during = cluster.receiver.inbox().receipts.len();
    relay.pause(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let figures = cluster
        .settle(&db, &store, mutator, &mut replicas, Duration::from_secs(90))
        .await;
    assert!(
        during > stalled_at,
        "the other replica kept delivering during the stall"
    );
    println!(
        "stall: {} webhooks during an 18 s stall of one replica; {} events checked ({}), {} \
         duplicates; lost 0, out of order 0",
        during - stalled_at,
        figures.events,
        figures.by_action,
        figures.duplicates
    );
}

// ───────────────────────────── SQLite → PostgreSQL ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_storage_copies_a_sqlite_database_without_a_rebaseline() {
    let Some(db) = TestDb::create("postgres migrate-storage").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (world, config) = items_config(12).await;
    let sqlite = config.clone().in_dir(dir.path()).write_as("sqlite.toml");
    let postgres = dir.path().join("postgres.toml");
    std::fs::write(&postgres, config.set("storage.url", db.url.as_str()).toml()).unwrap();

    // On SQLite: an endpoint, a baseline, changes with their deliveries.
    let add = add_endpoint(
        "app",
        "http://127.0.0.1:9/hooks",
        &["--signing", "standard-webhooks"],
    );
    cli_ok(&sqlite, &add).await;
    cli_ok(&sqlite, &["poll", "shop.items"]).await;
    {
        let mut w = world.world();
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..20 {
            w.mutate(&mut rng);
        }
    }
    cli_ok(&sqlite, &["poll", "shop.items"]).await;
    let sqlite_store = Store::open(&dir.path().join("pollhook.db")).unwrap();
    let events_before = every_event(&sqlite_store).await;
    assert!(!events_before.is_empty());
    let deliveries_before = all_deliveries(&sqlite_store).await;
    assert!(
        !deliveries_before.is_empty(),
        "the changes were queued for app"
    );
    let secret_before = sqlite_store
        .endpoint_named("app")
        .await
        .unwrap()
        .spec
        .secret;
    drop(sqlite_store);

    let from = dir.path().join("pollhook.db");
    let from = from.to_str().unwrap();
    let out = cli_ok(&postgres, &["migrate-storage", "--from", from]).await;
    assert!(
        out.contains("events") && !out.contains("postgres:postgres@"),
        "{out}"
    );

    // Everything is there, in order, with the same ids; the next poll finds nothing new.
    let store = db.store().await;
    let events_after = every_event(&store).await;
    let ids = |events: &[(i64, Event)]| -> Vec<(i64, String)> {
        events.iter().map(|(seq, e)| (*seq, e.id.clone())).collect()
    };
    assert_eq!(ids(&events_after), ids(&events_before));
    let rows = |d: &[DeliveryRow]| -> Vec<(i64, String, String)> {
        d.iter()
            .map(|d| (d.id, d.event_id.clone(), d.status.clone()))
            .collect()
    };
    assert_eq!(
        rows(&all_deliveries(&store).await),
        rows(&deliveries_before)
    );
    let endpoint = store.endpoint_named("app").await.unwrap();
    assert_eq!(endpoint.spec.secret.expose(), secret_before.expose());
    let out = cli_ok(&postgres, &["poll", "shop.items", "--json"]).await;
    let found: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(
        found.is_empty(),
        "no re-baseline, no change detected twice: {out}"
    );
    // New rows continue after the copied ids.
    let replayed = store
        .replay(&events_after[0].1.id, Some("app"))
        .await
        .unwrap();
    assert_eq!(replayed, ["app"]);
    let newest = all_deliveries(&store).await;
    assert!(newest.last().unwrap().id > deliveries_before.iter().map(|d| d.id).max().unwrap_or(0));

    // A second copy into the same database is refused.
    let err = cli_fails(&postgres, &["migrate-storage", "--from", from]).await;
    assert!(err.contains("already holds pollhook data"), "{err}");
}

#[test]
fn a_bad_storage_url_is_reported_without_its_password() {
    for url in [
        "mysql://pollhook:hunter2secret@db.example:3306/pollhook",
        "postgres://pollhook:hunter2secret@db.example:5432/pollhook?sslmode=sometimes",
        "postgres://pollhook:hunter2secret@db.example:5432/",
        "postgres://pollhook:hunter2secret@db.example:5432/pollhook?connect_timeout=soon",
    ] {
        let text = format!("[storage]\nurl = \"{url}\"\n");
        let err = crate::support::parse(&text, &BTreeMap::new())
            .err()
            .unwrap_or_else(|| panic!("{url} is refused"))
            .to_string();
        assert!(err.contains("storage.url"), "{err}");
        assert!(!err.contains("hunter2secret"), "{err}");
    }
    // From the environment too, and it wins over a path given in the file.
    let env = crate::support::env(&[(
        "POLLHOOK_STORAGE_URL",
        "postgres://u:p@127.0.0.1:5432/pollhook",
    )]);
    let config = crate::support::parse("[storage]\npath = \"x.db\"\n", &env).unwrap();
    assert!(config.storage.url.is_some() && config.storage.path_ignored);
}
