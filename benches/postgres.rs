//! PostgreSQL benchmark: the store and several `pollhook run` replicas on a real server.
//!
//! `cargo build --release && POLLHOOK_BENCH_POSTGRES=postgres://postgres:…@127.0.0.1:5432/postgres
//! cargo bench --bench postgres`. Each section creates a database of its own from that admin URL
//! and drops it afterwards. Without the variable it prints one "skipped" line.
//!
//! Sections: (1) commit_poll, changes per second, PostgreSQL next to SQLite on the same data;
//! (2) the delivery claim's plan at 100k pending (`EXPLAIN ANALYZE`); (3) delivery throughput of
//! 20k queued deliveries with 1, 2 and 3 replicas (the release binary) to an in-process receiver;
//! (4) detection → receipt with 3 idle replicas running, a change committed every 20 ms, p50/p99
//! from each event's `detected_at` to its receipt; (5) idle CPU per replica (user + sys from `/proc/PID/stat`) with nothing to do.
//!
//! Environment: `PG_DELIVERIES=20000`, `PG_REPLICAS=1,2,3`, `PG_LATENCY_EVENTS=300`,
//! `PG_IDLE_SECS=10`, `POLLHOOK_BIN` (default `<target>/release/pollhook`), `PG_SECTIONS` (a
//! comma-separated subset of `commit,plan,delivery,latency`; default all).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use pollhook::diff::Change;
use pollhook::endpoint::{ActionFilter, EndpointSpec};
use pollhook::event::Event;
use pollhook::normalize::Record;
use pollhook::sign::Scheme;
use pollhook::store::{POSTGRES_DELIVERY_CLAIM, PollCommit, SnapshotRow, Store};
use sha2::{Digest, Sha256};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    async fn create(admin: &str) -> Database {
        let name = format!("pollhook_bench_{}", uuid::Uuid::now_v7().simple());
        sql(admin, &format!("CREATE DATABASE {name}")).await;
        let mut url = url::Url::parse(admin).expect("a URL");
        url.set_path(&format!("/{name}"));
        Database {
            admin: admin.to_owned(),
            name,
            url: url.to_string(),
        }
    }

    async fn drop_it(self) {
        sql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
    }
}

async fn sql(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the bench database connects");
    let driver = tokio::spawn(connection);
    client.batch_execute(sql).await.expect(sql);
    driver.abort();
}

async fn query(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the bench database connects");
    let driver = tokio::spawn(connection);
    let rows = client.query(sql, &[]).await.expect(sql);
    driver.abort();
    rows
}

/// Transactions committed in the database so far (the statistics lag by up to a second).
async fn commits(db: &Database) -> i64 {
    let rows = query(
        &db.url,
        &format!(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = '{}'",
            db.name
        ),
    )
    .await;
    rows.first().map_or(0, |r| r.get(0))
}

fn row(id: usize, v: usize) -> SnapshotRow {
    let body = format!(r#"{{"id":"{id}","status":"open","v":{v},"note":"an order of some size"}}"#);
    SnapshotRow {
        id: id.to_string(),
        hash: Sha256::digest(body.as_bytes()).into(),
        raw: None,
        body,
    }
}

fn updated(id: usize, v: usize) -> Event {
    Event::from_change(
        "shop",
        "orders",
        &Change::Updated(Record {
            id: id.to_string(),
            body: serde_json::json!({"id": id.to_string(), "status": "open", "v": v}),
            hash: [0; 32],
            raw: None,
        }),
        None,
        &[],
        chrono::Utc::now(),
    )
}

fn commit(version: i64, upserts: Vec<SnapshotRow>, events: Vec<Event>) -> PollCommit {
    PollCommit {
        source: "shop".into(),
        resource: "orders".into(),
        listed: upserts.len(),
        upserts: Box::new(upserts),
        rehashed: Vec::new(),
        deletes: Vec::new(),
        events,
        held: None,
        complete: true,
        duration: Duration::from_millis(1),
        at: chrono::Utc::now(),
        alert_after: 3,
        missing: Vec::new(),
        found: Vec::new(),
        since_cursor: None,
        pages: None,
        version,
    }
}

fn endpoint(url: &str) -> EndpointSpec {
    EndpointSpec {
        name: "app".into(),
        url: url.to_owned(),
        secret: pollhook::config::Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        signing: Scheme::StandardWebhooks,
        resources: vec!["*".into()],
        actions: ActionFilter::default(),
        active: true,
        headers: Vec::new(),
        timeout: None,
        format: Default::default(),
    }
}

/// A baseline of `items`, then `rounds` commits of `changes` updated items each: changes/s.
async fn commit_rate(store: &Store, items: usize, changes: usize, rounds: usize) -> f64 {
    store
        .reconcile_endpoints(&[endpoint("http://127.0.0.1:9/hooks")])
        .await
        .unwrap();
    store
        .commit_poll(commit(
            0,
            (0..items).map(|i| row(i, 0)).collect(),
            Vec::new(),
        ))
        .await
        .unwrap();
    let started = Instant::now();
    for r in 0..rounds {
        let ids = (r * changes..(r + 1) * changes).map(|i| i % items);
        let rows = ids.clone().map(|i| row(i, r + 1)).collect();
        let events = ids.map(|i| updated(i, r + 1)).collect();
        store
            .commit_poll(commit(r as i64 + 1, rows, events))
            .await
            .unwrap();
    }
    (rounds * changes) as f64 / started.elapsed().as_secs_f64()
}

/// Queues `n` deliveries for `app` in commits of 1000.
async fn queue(store: &Store, n: usize, version: &mut i64) {
    for chunk in 0..n.div_ceil(1000) {
        let ids = chunk * 1000..((chunk + 1) * 1000).min(n);
        let rows = ids.clone().map(|i| row(i, *version as usize + 1)).collect();
        let events = ids.map(|i| updated(i, *version as usize + 1)).collect();
        store
            .commit_poll(commit(*version, rows, events))
            .await
            .unwrap();
        *version += 1;
    }
}

#[derive(Default)]
struct Inbox {
    /// Distinct webhooks (by `webhook-id`) received.
    count: AtomicUsize,
    /// Webhooks received again with an id already seen.
    dupes: AtomicUsize,
    ids: Mutex<HashSet<String>>,
    /// (received at ms, detected at ms) per webhook.
    latencies: Mutex<Vec<i64>>,
}

async fn receive(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = chrono::Utc::now().timestamp_millis();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !inbox.ids.lock().unwrap().insert(id) {
        inbox.dupes.fetch_add(1, Ordering::Relaxed);
        return StatusCode::NO_CONTENT;
    }
    if let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body)
        && let Some(at) = event["detected_at"].as_str()
        && let Ok(at) = chrono::DateTime::parse_from_rfc3339(at)
    {
        inbox
            .latencies
            .lock()
            .unwrap()
            .push(now - at.timestamp_millis());
    }
    inbox.count.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

fn binary() -> PathBuf {
    std::env::var_os("POLLHOOK_BIN").map_or_else(
        || {
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
                PathBuf::from,
            );
            target.join("release/pollhook")
        },
        PathBuf::from,
    )
}

fn spawn_replicas(n: usize, config: &std::path::Path) -> Vec<Child> {
    (0..n)
        .map(|i| {
            let log = std::fs::File::create(config.with_file_name(format!("replica-{n}-{i}.log")))
                .expect("a log file");
            Command::new(binary())
                .args(["run", "--config"])
                .arg(config)
                .env_remove("POLLHOOK_STORAGE_PATH")
                .env("POLLHOOK_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("the release binary runs (cargo build --release)")
        })
        .collect()
}

fn stop(children: Vec<Child>) {
    for mut c in children {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
}

/// User + system CPU seconds of a process so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

fn config(dir: &std::path::Path, url: &str, receiver: SocketAddr) -> PathBuf {
    let path = dir.join("pollhook.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[storage]
url = "{url}"

[server]
listen = "127.0.0.1:0"

[delivery]
allow_http = true
allow_networks = ["127.0.0.0/8"]
concurrency = 256
endpoint_concurrency = 64

[[endpoints]]
name = "app"
url = "http://{receiver}/hooks"
signing = "standard-webhooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"#
        ),
    )
    .unwrap();
    path
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(admin) = std::env::var("POLLHOOK_BENCH_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        println!("postgres bench: skipped: set POLLHOOK_BENCH_POSTGRES to an admin URL");
        return;
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!("postgres bench on {cpu}");

    let sections =
        std::env::var("PG_SECTIONS").unwrap_or_else(|_| "commit,plan,delivery,latency".into());
    let section = |name: &str| sections.split(',').any(|s| s.trim() == name);
    let dir = tempfile::tempdir().unwrap();
    println!("replica logs in {}", dir.path().display());
    if section("commit") {
        commit_section(&admin, dir.path()).await;
    }
    if section("plan") {
        plan_section(&admin).await;
    }
    if section("delivery") {
        delivery_section(&admin, dir.path()).await;
    }
    if section("latency") {
        latency_section(&admin, dir.path()).await;
    }
    if std::env::var_os("PG_KEEP_LOGS").is_some() {
        let _ = dir.keep();
    }
}

/// (1) commit_poll on both backends, and the steady poll of 100k.
async fn commit_section(admin: &str, dir: &std::path::Path) {
    let sqlite = Store::open(&dir.join("bench.db")).unwrap();
    let rate = commit_rate(&sqlite, 100_000, 1000, 20).await;
    println!(
        "commit_poll, SQLite:     {rate:>9.0} changes/s (100k snapshot, 20 commits of 1000 updates + events + deliveries)"
    );
    let db = Database::create(admin).await;
    let pg = Store::connect_postgres(&db.url, 8).await.unwrap();
    let rate = commit_rate(&pg, 100_000, 1000, 20).await;
    println!("commit_poll, PostgreSQL: {rate:>9.0} changes/s (same)");
    // A steady poll of the 100k snapshot that finds nothing: its bookkeeping commit.
    let started = Instant::now();
    let state = pg.resource_state("shop", "orders").await.unwrap();
    let snapshot = pg
        .snapshot("shop", "orders", state.item_count)
        .await
        .unwrap();
    pg.commit_poll(commit(state.version, Vec::new(), Vec::new()))
        .await
        .unwrap();
    println!(
        "steady poll of 100k on PostgreSQL (read the snapshot + commit, no fetch): {:.0} ms ({} items)",
        started.elapsed().as_secs_f64() * 1000.0,
        snapshot.len()
    );
    drop(pg);
    db.drop_it().await;
}

/// (2) the claim's plan at 100k pending.
async fn plan_section(admin: &str) {
    let db = Database::create(admin).await;
    let pg = Store::connect_postgres(&db.url, 8).await.unwrap();
    pg.reconcile_endpoints(&[endpoint("http://127.0.0.1:9/hooks")])
        .await
        .unwrap();
    let mut version = 0;
    queue(&pg, 100_000, &mut version).await;
    // Once as a fresh queue is, before autovacuum's first ANALYZE of it, then with statistics.
    // Each claims the next 128.
    for when in ["before ANALYZE", "after ANALYZE"] {
        if when == "after ANALYZE" {
            sql(&db.url, "ANALYZE").await;
        }
        let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        let explain = format!("EXPLAIN (ANALYZE, BUFFERS) {POSTGRES_DELIVERY_CLAIM}");
        let plan = client
            .query(
                &explain,
                &[&1i64, &9_000_000_000_000i64, &128i64, &60_000i64, &"bench"],
            )
            .await
            .unwrap();
        println!("EXPLAIN ANALYZE of the delivery claim at 100k pending (128 claimed), {when}:");
        for r in &plan {
            println!("  {}", r.get::<_, &str>(0));
        }
        driver.abort();
    }
    drop(pg);
    db.drop_it().await;
}

/// (3) throughput with 1, 2, 3 replicas.
async fn delivery_section(admin: &str, dir: &std::path::Path) {
    let (inbox, receiver) = receiver().await;
    let deliveries: usize = env_or("PG_DELIVERIES", 20_000);
    let counts: Vec<usize> = std::env::var("PG_REPLICAS")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    for n in counts {
        let db = Database::create(admin).await;
        let pg = Store::connect_postgres(&db.url, 8).await.unwrap();
        pg.reconcile_endpoints(&[endpoint(&format!("http://{receiver}/hooks"))])
            .await
            .unwrap();
        let mut version = 0;
        queue(&pg, deliveries, &mut version).await;
        inbox.count.store(0, Ordering::Relaxed);
        inbox.dupes.store(0, Ordering::Relaxed);
        inbox.ids.lock().unwrap().clear();
        let config = config(dir, &db.url, receiver);
        let children = spawn_replicas(n, &config);
        // From the first webhook to the last: start-up is not delivery.
        while inbox.count.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let started = Instant::now();
        let deadline = started + Duration::from_secs(300);
        while inbox.count.load(Ordering::Relaxed) < deliveries && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        let got = inbox.count.load(Ordering::Relaxed);
        let cpu: f64 = children.iter().map(|c| cpu_secs(c.id())).sum();
        let commits = commits(&db).await;
        stop(children);
        println!(
            "delivery, {n} replica(s): {got} webhooks in {secs:.2} s = {:.0}/s, {} received twice; replicas' CPU {:.0} µs per webhook, {commits} database commits",
            got as f64 / secs,
            inbox.dupes.load(Ordering::Relaxed),
            cpu * 1e6 / got.max(1) as f64,
        );
        drop(pg);
        db.drop_it().await;
    }
}

/// (4) detection → receipt of single changes while 3 replicas idle, a change committed every
/// 20 ms, from each event's `detected_at` (set just before its commit) to its receipt; then (5)
/// the same replicas' idle CPU.
async fn latency_section(admin: &str, dir: &std::path::Path) {
    let (inbox, receiver) = receiver().await;
    let db = Database::create(admin).await;
    let pg = Store::connect_postgres(&db.url, 8).await.unwrap();
    pg.reconcile_endpoints(&[endpoint(&format!("http://{receiver}/hooks"))])
        .await
        .unwrap();
    let config = config(dir, &db.url, receiver);
    let children = spawn_replicas(3, &config);
    let mut version = 0;
    // Every replica is up (and may send) once a warm-up change gets through; a second
    // is then enough for the slowest to join.
    queue(&pg, 1, &mut version).await;
    let up = Instant::now() + Duration::from_secs(60);
    while inbox.count.load(Ordering::Relaxed) == 0 && Instant::now() < up {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events: usize = env_or("PG_LATENCY_EVENTS", 300);
    inbox.latencies.lock().unwrap().clear();
    for i in 0..events {
        let v = version as usize + 1;
        pg.commit_poll(commit(version, vec![row(i, v)], vec![updated(i, v)]))
            .await
            .unwrap();
        version += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while inbox.latencies.lock().unwrap().len() < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut l = inbox.latencies.lock().unwrap().clone();
    l.sort_unstable();
    println!(
        "detection → receipt, 3 idle replicas, {} of {events} changes 20 ms apart received: p50 {} ms, p99 {} ms, max {} ms",
        l.len(),
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or(0)
    );
    // (5) idle.
    let idle: u64 = env_or("PG_IDLE_SECS", 10);
    let before: Vec<f64> = children.iter().map(|c| cpu_secs(c.id())).collect();
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let used: Vec<String> = children
        .iter()
        .zip(&before)
        .map(|(c, b)| format!("{:.2}%", (cpu_secs(c.id()) - b) / idle as f64 * 100.0))
        .collect();
    println!(
        "idle CPU per replica over {idle} s (no sources, nothing due): {}",
        used.join(", ")
    );
    stop(children);
    drop(pg);
    db.drop_it().await;
}

/// An in-process receiver on 127.0.0.1: what it counted and where it listens.
async fn receiver() -> (Arc<Inbox>, SocketAddr) {
    let inbox = Arc::new(Inbox::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hooks", post(receive))
        .with_state(inbox.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (inbox, receiver)
}
