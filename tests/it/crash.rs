//! Crash consistency: the real binary, SIGKILLed at random moments while its source keeps
//! changing, loses no change and invents none.
//!
//! A fake source (`GET /items`, one complete page) mutates its items at random and logs every
//! create, update, delete and "touch" (a change to an ignored field) with the item's version. A
//! receiver records every webhook, verifies its Standard Webhooks signature and answers 500 to the
//! first receipt of some events. `pollhook run` is started and SIGKILLed `POLLHOOK_CRASH_CYCLES`
//! times (default 50) after a random 50–400 ms, then run once more, cleanly, until quiescent. The
//! database, the source's change log and the receiver's log are then checked against each other
//! (see [`check`]).
//!
//! Randomness comes from one seed, `POLLHOOK_CRASH_SEED` (default [`DEFAULT_SEED`]), printed
//! first; timing is real, so a seed fixes the choices, not the interleaving.

use crate::support::{
    ConfigBuilder, Endpoint, Resource, Source, all_deliveries, block_on, spawn_run, start,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use pollhook::store::{DeliveryFilter, EventFilter, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sha2::Sha256;

/// The seed when `POLLHOOK_CRASH_SEED` is not set.
const DEFAULT_SEED: u64 = 20_261_122;
/// Kill cycles when `POLLHOOK_CRASH_CYCLES` is not set.
const DEFAULT_CYCLES: usize = 50;
/// The final clean run must be quiescent within this (it includes waiting out the leases of
/// deliveries claimed by killed processes).
const FINAL_RUN_LIMIT: Duration = Duration::from_secs(100);

pub(crate) fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ───────────────────────────── the changing source ─────────────────────────────

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    Update,
    Delete,
    /// Only `touched`, an ignored field, changes: no event may come of it.
    Touch,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Logged {
    pub(crate) op: Op,
    id: u64,
    /// The item's version after the op (before it, for a delete).
    version: u64,
}

/// The source's items and its change log.
#[derive(Debug, Clone)]
pub(crate) struct World {
    /// id → (version, touch counter).
    pub(crate) items: BTreeMap<u64, (u64, u64)>,
    /// The items before any change.
    initial: BTreeMap<u64, u64>,
    /// Highest version each id ever had (a re-created item continues from there).
    highest: BTreeMap<u64, u64>,
    next_id: u64,
    pub(crate) log: Vec<Logged>,
    /// Listings served.
    pub(crate) served: usize,
}

/// An item's body at a version: `touched` is the ignored field.
fn body(id: u64, version: u64, touched: u64) -> Value {
    json!({
        "id": id,
        "version": version,
        "name": format!("item {id}"),
        "detail": {"note": format!("v{version} of {id}"), "tags": ["a", version % 3]},
        "touched": touched,
    })
}

impl World {
    pub(crate) fn new(n: u64) -> World {
        let items: BTreeMap<u64, (u64, u64)> = (1..=n).map(|id| (id, (1, 0))).collect();
        World {
            initial: items.iter().map(|(id, (v, _))| (*id, *v)).collect(),
            highest: items.iter().map(|(id, (v, _))| (*id, *v)).collect(),
            items,
            next_id: n + 1,
            log: Vec::new(),
            served: 0,
        }
    }

    /// One random change.
    pub(crate) fn mutate(&mut self, rng: &mut StdRng) {
        let roll = rng.random_range(0..100);
        let ids: Vec<u64> = self.items.keys().copied().collect();
        let pick = |rng: &mut StdRng| ids[rng.random_range(0..ids.len())];
        let gone: Vec<u64> = self
            .highest
            .keys()
            .copied()
            .filter(|id| !self.items.contains_key(id))
            .collect();
        let (op, id, version) = if ids.len() < 8 || roll < 15 {
            let id = self.next_id;
            self.next_id += 1;
            self.items.insert(id, (1, 0));
            (Op::Create, id, 1)
        } else if roll < 25 && !gone.is_empty() {
            // A deleted item comes back, with a newer version.
            let id = gone[rng.random_range(0..gone.len())];
            let version = self.highest[&id] + 1;
            self.items.insert(id, (version, 0));
            (Op::Create, id, version)
        } else if roll < 55 {
            let id = pick(rng);
            let entry = self.items.get_mut(&id).unwrap();
            entry.0 += 1;
            (Op::Update, id, entry.0)
        } else if roll < 72 && ids.len() > 8 {
            let id = pick(rng);
            let (version, _) = self.items.remove(&id).unwrap();
            (Op::Delete, id, version)
        } else {
            let id = pick(rng);
            let entry = self.items.get_mut(&id).unwrap();
            entry.1 += 1;
            (Op::Touch, id, entry.0)
        };
        let highest = self.highest.entry(id).or_insert(0);
        *highest = (*highest).max(version);
        self.log.push(Logged { op, id, version });
    }

    fn listing(&self) -> Vec<Value> {
        self.items
            .iter()
            .map(|(id, (v, t))| body(*id, *v, *t))
            .collect()
    }

    /// The (id → version) state after the first `n` logged changes.
    fn states(&self) -> Vec<BTreeMap<u64, u64>> {
        let mut state = self.initial.clone();
        let mut out = vec![state.clone()];
        for l in &self.log {
            match l.op {
                Op::Create | Op::Update => {
                    state.insert(l.id, l.version);
                }
                Op::Delete => {
                    state.remove(&l.id);
                }
                Op::Touch => {}
            }
            out.push(state.clone());
        }
        out
    }

    /// Whether `id` ever had `version`.
    fn existed(&self, id: u64, version: u64) -> bool {
        self.initial.get(&id) == Some(&version)
            || self.log.iter().any(|l| {
                l.id == id && l.version == version && matches!(l.op, Op::Create | Op::Update)
            })
    }

    /// Whether `id` was deleted at `version` or later (versions of an id only grow, and a
    /// version set and deleted between two polls is never seen).
    fn deleted_since(&self, id: u64, version: u64) -> bool {
        self.log
            .iter()
            .any(|l| l.op == Op::Delete && l.id == id && l.version >= version)
    }
}

#[derive(Clone)]
pub(crate) struct SourceApi(pub(crate) Arc<Mutex<World>>);

impl SourceApi {
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) async fn list_items(State(api): State<SourceApi>) -> axum::Json<Vec<Value>> {
    let mut world = api.world();
    world.served += 1;
    axum::Json(world.listing())
}

/// A changing source of `items` items served at `GET /items` on loopback; its base URL.
pub(crate) async fn serve_world(items: u64) -> (SourceApi, String) {
    let world = SourceApi(Arc::new(Mutex::new(World::new(items))));
    let url = start(
        Router::new()
            .route("/items", get(list_items))
            .with_state(world.clone()),
    )
    .await;
    (world, url)
}

/// Keeps `world` changing, a change every 2–30 ms, until the handle is aborted.
pub(crate) fn mutate(world: &SourceApi, seed: u64) -> tokio::task::JoinHandle<()> {
    let world = world.clone();
    let mut rng = StdRng::seed_from_u64(seed ^ 0xc4a5);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(rng.random_range(2..30))).await;
            world.world().mutate(&mut rng);
        }
    })
}

// ───────────────────────────── the receiver ─────────────────────────────

#[derive(Debug, Clone)]
pub(crate) struct Receipt {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Unix seconds when it arrived.
    at: i64,
    status: u16,
}

impl Receipt {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }
}

pub(crate) struct Inbox {
    pub(crate) receipts: Vec<Receipt>,
    pub(crate) seen: HashSet<String>,
    pub(crate) rng: StdRng,
    pub(crate) injected_500: usize,
}

#[derive(Clone)]
pub(crate) struct Receiver(pub(crate) Arc<Mutex<Inbox>>);

impl Receiver {
    pub(crate) fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let delay = {
        let mut inbox = r.inbox();
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let first = inbox.seen.insert(id);
        // The first receipt of some events fails: the retry path runs under the kills too.
        let status = if first && inbox.rng.random_bool(0.15) {
            inbox.injected_500 += 1;
            500
        } else {
            204
        };
        inbox.receipts.push(Receipt {
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body: body.to_vec(),
            at: chrono::Utc::now().timestamp(),
            status,
        });
        (Duration::from_millis(inbox.rng.random_range(0..15)), status)
    };
    // A little latency, so kills land while requests are in flight.
    tokio::time::sleep(delay.0).await;
    StatusCode::from_u16(delay.1).unwrap()
}

// ───────────────────────────── the process ─────────────────────────────

pub(crate) fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A crash test's world: the changing source, the receiver, the key the endpoint signs with,
/// and a config without `[storage]` polling the one (`shop.items`, every 100 ms) and delivering
/// to the other (`app`).
pub(crate) struct Scene {
    pub(crate) world: SourceApi,
    pub(crate) receiver: Receiver,
    pub(crate) key: [u8; 32],
    pub(crate) config: ConfigBuilder,
}

impl Scene {
    /// Starts the source and the receiver on loopback; the key comes from `rng`.
    pub(crate) async fn start(seed: u64, rng: &mut StdRng) -> Scene {
        let (world, source_url) = serve_world(20).await;
        let receiver = Receiver(Arc::new(Mutex::new(Inbox {
            receipts: Vec::new(),
            seen: HashSet::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x5ec0),
            injected_500: 0,
        })));
        let receiver_url = start(
            Router::new()
                .route("/hooks", post(receive))
                .with_state(receiver.clone()),
        )
        .await;
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        let secret = format!("whsec_{}", STANDARD.encode(key));
        let items = Resource::new("items", "100ms")
            .set("path", "/items")
            .set("ignore", vec!["touched"])
            .set("max_delete_ratio", 1.0);
        let config = ConfigBuilder::without_storage()
            .source(
                Source::new("shop", &source_url)
                    .set("timeout", "2s")
                    .set("retries", 1)
                    .resource(items),
            )
            .loopback_delivery()
            .set("delivery.timeout", "1s")
            .set("delivery.retries", vec!["50ms", "100ms"])
            .endpoint(
                Endpoint::new(
                    "app",
                    &format!("{receiver_url}/hooks"),
                    "standard-webhooks",
                    &secret,
                )
                .set("resources", vec!["shop.items"]),
            );
        Scene {
            world,
            receiver,
            key,
            config,
        }
    }
}

/// Waits, for at most `limit`, until a poll after `settled_at` found nothing new and every
/// delivery is done and received. `alive` panics if a process that should be running exited;
/// `logs` is shown if time runs out.
pub(crate) async fn quiesce(
    store: &Store,
    receiver: &Receiver,
    settled_at: chrono::DateTime<chrono::Utc>,
    limit: Duration,
    mut alive: impl FnMut(),
    logs: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    loop {
        alive();
        let settled = store.status().await.unwrap().iter().any(|s| {
            s.source == "shop"
                && s.last_outcome.as_deref() == Some("unchanged")
                && s.last_poll_at.is_some_and(|at| at > settled_at)
        });
        let rows = all_deliveries(store).await;
        let received: HashSet<String> = receiver
            .inbox()
            .receipts
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        let done = rows
            .iter()
            .all(|d| d.status != "pending" && received.contains(&d.event_id));
        if settled && done {
            return;
        }
        if Instant::now() > deadline {
            let pending = rows.iter().filter(|d| d.status == "pending").count();
            panic!(
                "not quiescent after {limit:?}: settled {settled}, {pending} pending of {} deliveries\n{}",
                rows.len(),
                logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the checks read straight from the database, beside what the store's API shows.
pub(crate) trait Facts {
    /// id → (version, touched, changed_at) of the snapshot.
    fn snapshot(&self) -> BTreeMap<u64, (u64, u64, i64)>;
    /// When the resource's baseline was recorded.
    fn baseline_at(&self) -> Option<i64>;
}

impl Facts for Db {
    fn snapshot(&self) -> BTreeMap<u64, (u64, u64, i64)> {
        Db::snapshot(self)
    }
    fn baseline_at(&self) -> Option<i64> {
        Db::baseline_at(self)
    }
}

/// Reads what the checks need straight from the database (a second connection, as the CLI has).
struct Db(rusqlite::Connection);

impl Db {
    fn open(path: &Path) -> Db {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        Db(conn)
    }

    /// Shop events without exactly one delivery row: a poll's commit was not one transaction.
    fn events_without_one_delivery(&self) -> i64 {
        self.0
            .query_row(
                "SELECT count(*) FROM events e WHERE e.source = 'shop'
                 AND (SELECT count(*) FROM deliveries d WHERE d.event_seq = e.seq) != 1",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// id → (version, touched, changed_at) of the snapshot.
    fn snapshot(&self) -> BTreeMap<u64, (u64, u64, i64)> {
        let mut stmt = self
            .0
            .prepare("SELECT item_id, body, changed_at FROM snapshot WHERE source = 'shop'")
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .unwrap()
        .map(|row| {
            let (id, body, at) = row.unwrap();
            let body: Value = serde_json::from_str(&body).unwrap();
            (
                id.parse().unwrap(),
                (
                    body["version"].as_u64().unwrap(),
                    body["touched"].as_u64().unwrap(),
                    at,
                ),
            )
        })
        .collect()
    }

    fn baseline_at(&self) -> Option<i64> {
        self.0
            .query_row(
                "SELECT baseline_at FROM resources WHERE source = 'shop' AND resource = 'items'",
                [],
                |r| r.get(0),
            )
            .ok()
            .flatten()
    }
}

// ───────────────────────────── the test ─────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_moments_loses_no_change_and_invents_none() {
    let seed: u64 = env_number("POLLHOOK_CRASH_SEED", DEFAULT_SEED);
    let cycles: usize = env_number("POLLHOOK_CRASH_CYCLES", DEFAULT_CYCLES);
    println!("crash: seed {seed} (POLLHOOK_CRASH_SEED), {cycles} cycles (POLLHOOK_CRASH_CYCLES)");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);

    let Scene {
        world,
        receiver,
        key,
        config,
    } = Scene::start(seed, &mut rng).await;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("pollhook.db");
    let config = config.in_dir(dir.path()).write();
    let log = dir.path().join("pollhook.log");

    // The source keeps changing, while pollhook runs and while it is dead.
    let mutator = mutate(&world, seed);

    let mut killed_live = 0;
    let mut db: Option<Db> = None;
    for cycle in 0..cycles {
        let mut child = spawn_run(&config, &log);
        let life = Duration::from_millis(rng.random_range(50..=400));
        tokio::time::sleep(life).await;
        if let Some(status) = child.try_wait() {
            panic!(
                "cycle {cycle}: pollhook exited by itself ({status}) before the kill\n{}",
                log_tail(&log)
            );
        }
        child.kill();
        killed_live += 1;
        // Whatever the moment of the kill, each committed event has its delivery.
        if db.is_none() && db_path.exists() {
            db = Some(Db::open(&db_path));
        }
        if let Some(db) = &db {
            assert_eq!(
                db.events_without_one_delivery(),
                0,
                "cycle {cycle}: an event without its delivery row"
            );
        }
    }
    mutator.abort();
    let _ = mutator.await;
    let settled_at = chrono::Utc::now();
    let changes = world.world().log.len();
    println!(
        "crash: {killed_live} SIGKILLs in {:.1}s, {changes} source changes so far; final clean run",
        started.elapsed().as_secs_f64()
    );

    // The final run: until the last state is in the snapshot and every delivery is done.
    let mut child = spawn_run(&config, &log);
    let store = Store::open(&db_path).unwrap();
    let final_started = Instant::now();
    quiesce(
        &store,
        &receiver,
        settled_at,
        FINAL_RUN_LIMIT,
        || {
            if let Some(status) = child.try_wait() {
                panic!(
                    "the final run exited by itself ({status})\n{}",
                    log_tail(&log)
                );
            }
        },
        || log_tail(&log),
    )
    .await;
    let final_secs = final_started.elapsed().as_secs_f64();
    // A clean stop, as an operator would do it.
    child.terminate();
    let exit = child
        .exit_within(Duration::from_secs(20))
        .await
        .expect("SIGTERM did not stop pollhook");
    assert!(exit.success(), "{exit}\n{}", log_tail(&log));

    let db = Db::open(&db_path);
    let world = world.world();
    let inbox = receiver.inbox();
    let figures = check(&world, &store, &db, &inbox.receipts, &key).unwrap_or_else(|problems| {
        panic!(
            "seed {seed}: {} problem(s):\n  {}\n--- log tail ---\n{}",
            problems.len(),
            problems.join("\n  "),
            log_tail(&log)
        )
    });
    // The checks have teeth: a lost webhook, an out-of-order one and a lost change are caught.
    let fails_with = |world: &World, receipts: &[Receipt], what: &str| match check(
        world, &store, &db, receipts, &key,
    ) {
        Ok(_) => panic!("the checks missed {what}"),
        Err(problems) => assert!(
            problems.iter().any(|p| p.contains(what)),
            "the checks missed {what}: {problems:?}"
        ),
    };
    let victim = inbox.receipts[inbox.receipts.len() / 2]
        .header("webhook-id")
        .to_owned();
    let lost: Vec<Receipt> = inbox
        .receipts
        .iter()
        .filter(|r| r.header("webhook-id") != victim)
        .cloned()
        .collect();
    fails_with(&world, &lost, "lost");
    let mut per_item: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in inbox.receipts.iter().enumerate() {
        per_item
            .entry(r.header("pollhook-resource-id"))
            .or_default()
            .push(i);
    }
    if let Some(at) = per_item.values().find_map(|list| {
        let first = inbox.receipts[list[0]].header("webhook-id");
        list.iter()
            .copied()
            .find(|i| inbox.receipts[*i].header("webhook-id") != first)
            .map(|later| (list[0], later))
    }) {
        let mut swapped = inbox.receipts.clone();
        swapped.swap(at.0, at.1);
        fails_with(&world, &swapped, "came after");
    }
    let mut changed = world.clone();
    if let Some((_, (version, _))) = changed.items.iter_mut().next() {
        *version += 1;
    }
    fails_with(&changed, &inbox.receipts, "a change lost");

    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &world.log {
        *ops.entry(match l.op {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Touch => "touch",
        })
        .or_default() += 1;
    }
    println!(
        "crash: seed {seed}: {killed_live} SIGKILLs, {} source changes {ops:?}, {} listings served, \
         {} items at the end; {} events checked ({}), {} webhooks received ({} duplicates, {} \
         injected 500s); lost 0, phantom 0, out of order 0; final run quiescent in {final_secs:.1}s; \
         total {:.1}s",
        world.log.len(),
        world.served,
        world.items.len(),
        figures.events,
        figures.by_action,
        inbox.receipts.len(),
        figures.duplicates,
        inbox.injected_500,
        started.elapsed().as_secs_f64(),
    );
}

/// What the checks counted.
pub(crate) struct Figures {
    pub(crate) events: usize,
    pub(crate) by_action: String,
    pub(crate) duplicates: usize,
}

fn version_of(v: &Value) -> Option<u64> {
    v.get("version").and_then(Value::as_u64)
}

/// The item's body without the ignored field.
fn without_touched(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("touched");
    }
    v
}

/// Checks the database and the receiver's log against the source's change log:
///
/// 1. every webhook is signed (Standard Webhooks, checked here independently) and its headers and
///    body agree on the event id; two receipts of one event id are byte-identical;
/// 2. every event in the database was delivered at least once, every delivery ended `delivered`,
///    and every webhook received is an event of the database;
/// 3. per item, webhooks arrive in event-sequence order (redeliveries included): an `updated`
///    never before its `created`;
/// 4. per item, the events form a chain consistent with the change log: `created` only for an
///    absent item, `updated`/`deleted` carry the previous event's version as `previous`,
///    versions strictly increase (so a touch of an ignored field never made an event, and no
///    change was reported twice under two ids), each version reported existed, each `deleted`
///    follows a real delete at that version;
/// 5. the final snapshot is exactly the source's final state, each item's last event matches it,
///    and items without events are baseline items;
/// 6. the baseline (the state the chains start from) is a state the source really was in.
pub(crate) fn check(
    world: &World,
    store: &Store,
    db: &dyn Facts,
    receipts: &[Receipt],
    key: &[u8],
) -> Result<Figures, Vec<String>> {
    let mut problems = Vec::new();
    let events: Vec<(i64, Value)> = {
        let mut list: Vec<(i64, Value)> = block_on(store.events(EventFilter {
            limit: 1_000_000,
            ..EventFilter::default()
        }))
        .unwrap()
        .into_iter()
        .map(|(seq, e)| (seq, serde_json::to_value(e).unwrap()))
        .collect();
        list.reverse();
        list
    };
    let shop: Vec<&(i64, Value)> = events
        .iter()
        .filter(|(_, e)| e["source"] == "shop")
        .collect();
    let seq_of: HashMap<String, i64> = shop
        .iter()
        .map(|(seq, e)| (e["id"].as_str().unwrap().to_owned(), *seq))
        .collect();

    // 1. signatures and ids.
    let mut bodies: HashMap<&str, &[u8]> = HashMap::new();
    let mut duplicates = 0;
    for (i, r) in receipts.iter().enumerate() {
        let id = r.header("webhook-id");
        let timestamp = r.header("webhook-timestamp");
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(&r.body);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        if !r
            .header("webhook-signature")
            .split_whitespace()
            .any(|s| s == expected)
        {
            problems.push(format!("receipt {i} ({id}): bad signature"));
        }
        if timestamp
            .parse::<i64>()
            .map_or(true, |t| (r.at - t).abs() > 300)
        {
            problems.push(format!(
                "receipt {i} ({id}): timestamp {timestamp} not current"
            ));
        }
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if body["id"] != id || r.header("pollhook-event-id") != id {
            problems.push(format!(
                "receipt {i}: ids disagree ({id}, body {})",
                body["id"]
            ));
        }
        match bodies.insert(id, &r.body) {
            Some(before) if before != r.body.as_slice() => {
                problems.push(format!("event {id} was sent twice with different bodies"))
            }
            Some(_) => duplicates += 1,
            None => {}
        }
    }

    // 2. delivered at least once, nothing unknown.
    let rows = block_on(store.deliveries(DeliveryFilter {
        limit: 1_000_000,
        ..DeliveryFilter::default()
    }))
    .unwrap();
    for d in &rows {
        if d.status != "delivered" {
            problems.push(format!(
                "delivery {} of {} is {}",
                d.id, d.event_id, d.status
            ));
        }
    }
    let with_delivery: HashSet<&str> = rows.iter().map(|d| d.event_id.as_str()).collect();
    let accepted: HashSet<&str> = receipts
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .map(|r| r.header("webhook-id"))
        .collect();
    for id in seq_of.keys() {
        if !bodies.contains_key(id.as_str()) {
            problems.push(format!("event {id} was never received (lost)"));
        } else if !accepted.contains(id.as_str()) {
            problems.push(format!(
                "event {id} was never answered 2xx, yet it counts as delivered"
            ));
        }
        if !with_delivery.contains(id.as_str()) {
            problems.push(format!("event {id} has no delivery"));
        }
    }
    for id in bodies.keys() {
        if !seq_of.contains_key(*id) {
            problems.push(format!("received {id}, which is no event of the database"));
        }
    }

    // 3. per item, receipts in sequence order.
    let mut last_seq: HashMap<String, (i64, usize)> = HashMap::new();
    for (i, r) in receipts.iter().enumerate() {
        let Some(&seq) = seq_of.get(r.header("webhook-id")) else {
            continue;
        };
        let item = r.header("pollhook-resource-id").to_owned();
        if let Some(&(before, at)) = last_seq.get(&item)
            && seq < before
        {
            problems.push(format!(
                "item {item}: receipt {i} (seq {seq}) came after receipt {at} (seq {before})"
            ));
        }
        last_seq.insert(item, (seq, i));
    }

    // 4. per-item chains.
    let snapshot = db.snapshot();
    let baseline_at = db.baseline_at();
    let mut chains: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
    for (_, e) in &shop {
        let id: u64 = e["resource_id"].as_str().unwrap().parse().unwrap();
        chains.entry(id).or_default().push(e);
        *by_action
            .entry(e["action"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let mut baseline: BTreeMap<u64, u64> = BTreeMap::new();
    for (id, chain) in &chains {
        let mut state: Option<u64> = None;
        let mut highest = 0;
        for (n, e) in chain.iter().enumerate() {
            let action = e["action"].as_str().unwrap();
            let data = version_of(&e["data"]);
            let previous = version_of(&e["previous"]);
            let at = format!("item {id}, event {} ({action})", e["id"]);
            if n == 0 && action != "created" {
                match previous {
                    Some(p) => {
                        baseline.insert(*id, p);
                        state = Some(p);
                        highest = p;
                    }
                    None => problems.push(format!("{at}: no previous")),
                }
            }
            match action {
                "created" => {
                    if state.is_some() {
                        problems.push(format!("{at}: created while it exists (v{state:?})"));
                    }
                    if !e["previous"].is_null() {
                        problems.push(format!("{at}: a created event with a previous"));
                    }
                }
                "updated" | "deleted" => {
                    if state.is_none() || previous != state {
                        problems.push(format!(
                            "{at}: previous v{previous:?} but the last known version is v{state:?}"
                        ));
                    }
                }
                other => problems.push(format!("{at}: unknown action {other}")),
            }
            match (action, data) {
                ("deleted", None) => {
                    if let Some(p) = previous
                        && !world.deleted_since(*id, p)
                    {
                        problems.push(format!("{at}: phantom delete: never deleted since v{p}"));
                    }
                    state = None;
                }
                ("deleted", Some(_)) => problems.push(format!("{at}: a deleted event with data")),
                (_, Some(v)) => {
                    if !world.existed(*id, v) {
                        problems.push(format!("{at}: phantom version v{v}"));
                    }
                    if v <= highest && !(n == 0 && action == "created") {
                        problems.push(format!(
                            "{at}: v{v} is not newer than v{highest} (a change reported twice, or an ignored field counted)"
                        ));
                    }
                    let touched = e["data"]["touched"].as_u64().unwrap_or(0);
                    if without_touched(&e["data"]) != without_touched(&body(*id, v, touched)) {
                        problems.push(format!("{at}: data is not the item's v{v}"));
                    }
                    highest = highest.max(v);
                    state = Some(v);
                }
                (_, None) => problems.push(format!("{at}: no data")),
            }
        }
        match (state, world.items.get(id)) {
            (Some(v), Some((now, _))) if v == *now => {}
            (None, None) => {}
            (mine, theirs) => problems.push(format!(
                "item {id}: its last event says v{mine:?}, the source ends at {theirs:?} (a change lost)"
            )),
        }
    }

    // 5. the final snapshot is the source's final state; items without events are baseline ones.
    let finals: BTreeMap<u64, u64> = world.items.iter().map(|(id, (v, _))| (*id, *v)).collect();
    let stored: BTreeMap<u64, u64> = snapshot.iter().map(|(id, (v, _, _))| (*id, *v)).collect();
    if stored != finals {
        let missing: Vec<_> = finals
            .keys()
            .filter(|id| !stored.contains_key(id))
            .collect();
        let extra: Vec<_> = stored
            .keys()
            .filter(|id| !finals.contains_key(id))
            .collect();
        problems.push(format!(
            "the final snapshot differs from the source: missing {missing:?}, extra {extra:?}"
        ));
    }
    for (id, (v, _, changed_at)) in &snapshot {
        if !chains.contains_key(id) {
            if Some(*changed_at) != baseline_at {
                problems.push(format!(
                    "item {id} v{v} is in the snapshot without any event and was not written by the baseline"
                ));
            }
            baseline.insert(*id, *v);
        }
    }

    // 6. the baseline is a state the source really was in.
    if baseline_at.is_none() {
        problems.push("no baseline was ever recorded".into());
    } else if !world.states().contains(&baseline) {
        problems.push(format!(
            "the state before the first events ({} items) is no state the source was ever in",
            baseline.len()
        ));
    }

    if problems.is_empty() {
        let mut text = String::new();
        for (action, n) in &by_action {
            let _ = write!(
                text,
                "{}{action} {n}",
                if text.is_empty() { "" } else { ", " }
            );
        }
        Ok(Figures {
            events: shop.len(),
            by_action: text,
            duplicates,
        })
    } else {
        Err(problems)
    }
}
