//! Stage benchmarks: each stage of the spine next to the bare library operation it is built on.
//!
//! `cargo bench --bench stages` runs the divan benchmarks (one group per stage, pollhook's stage
//! and its bare baselines side by side), then a paired table: every stage and its baseline timed in
//! alternating rounds in the same process, medians, and the ratio stage / bare. Set
//! `STAGES_RATIOS=0` to skip the table, `STAGES_ROUNDS=N` to change its rounds (default 9), and
//! `STAGES_ONLY_RATIOS=1` to print only the table. See BENCHMARKS.md.

#[path = "support/item.rs"]
mod item;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use hmac::{Hmac, KeyInit, Mac};
use pollhook::config::{FieldPath, Secret};
use pollhook::diff::{Change, DeleteGuard, Differ, Known, Snapshot};
use pollhook::endpoint::{ActionFilter, EndpointSpec};
use pollhook::event::{self, Event};
use pollhook::normalize::{Hash, Normalizer, Record};
use pollhook::sign::{self, Scheme, SignInput};
use pollhook::store::{PollCommit, SnapshotRow, Store};
use rusqlite::{Connection, params};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Items in one diff (the N).
const DIFF_N: usize = 100_000;
/// Changes in one commit (the K).
const COMMIT_K: usize = 10_000;
/// Items per normalize batch in the paired table.
const NORMALIZE_BATCH: usize = 2_000;
/// Items per page, as the e2e fake API serves them.
const PAGE: usize = 1_000;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const JWT_KEY: &str = "a-benchmark-key-that-is-at-least-32-bytes-long";

fn main() {
    if std::env::var("STAGES_ONLY_RATIOS").as_deref() != Ok("1") {
        divan::main();
    }
    if std::env::var("STAGES_RATIOS").as_deref() != Ok("0") {
        ratios();
    }
}

// ─────────────────────────── fixtures ───────────────────────────

fn id_path() -> Vec<FieldPath> {
    vec!["id".parse().expect("a field path")]
}

fn ignore_path() -> Vec<FieldPath> {
    vec!["updated_at".parse().expect("a field path")]
}

fn items(n: usize) -> Vec<Vec<u8>> {
    (0..n as u64).map(|i| item::item_bytes(i, 0)).collect()
}

fn values(bytes: &[Vec<u8>]) -> Vec<Value> {
    bytes
        .iter()
        .map(|b| serde_json::from_slice(b).expect("item JSON"))
        .collect()
}

fn page_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 560);
    out.push(b'[');
    for i in 0..n as u64 {
        if i > 0 {
            out.push(b',');
        }
        item::write_item(&mut out, i, 0);
    }
    out.push(b']');
    out
}

fn hash_of(i: usize, salt: u8) -> Hash {
    let mut h = [salt; 32];
    h[..8].copy_from_slice(&(i as u64).to_le_bytes());
    h
}

/// A snapshot of `n` items and a listing of it with 1% created, 1% updated, 1% deleted.
struct DiffCase {
    snapshot: Vec<(String, Hash, u32)>,
    listing: Vec<Record>,
}

fn diff_case(n: usize) -> DiffCase {
    let snapshot = (0..n).map(|i| (i.to_string(), hash_of(i, 0), 0)).collect();
    let mut listing = Vec::with_capacity(n + n / 100);
    for i in 0..n {
        if i % 100 == 1 {
            continue; // deleted
        }
        let salt = if i % 100 == 2 { 1 } else { 0 }; // updated
        listing.push(Record {
            id: i.to_string(),
            body: Value::Null,
            hash: hash_of(i, salt),
            raw: None,
        });
    }
    for i in n..n + n / 100 {
        listing.push(Record {
            id: i.to_string(),
            body: Value::Null,
            hash: hash_of(i, 0),
            raw: None,
        });
    }
    DiffCase { snapshot, listing }
}

const GUARD: DeleteGuard = DeleteGuard {
    max_ratio: 0.5,
    accepted: false,
    after: 1,
};

fn pollhook_diff(case: DiffCase) -> usize {
    let mut d = Differ::<Value>::with_missing(case.snapshot);
    for r in case.listing {
        d.push(r);
    }
    d.finish(true, GUARD).changes.len()
}

/// The same work with nothing but a HashMap: build it, look every listed id up, sweep the unseen.
fn bare_diff(case: DiffCase) -> usize {
    let mut map: std::collections::HashMap<String, (Hash, bool)> = case
        .snapshot
        .into_iter()
        .map(|(id, h, _)| (id, (h, false)))
        .collect();
    let mut changed: Vec<Record> = Vec::new();
    for r in case.listing {
        match map.get_mut(&r.id) {
            Some((h, seen)) => {
                *seen = true;
                if *h != r.hash {
                    changed.push(r);
                }
            }
            None => changed.push(r),
        }
    }
    let deleted = map.values().filter(|(_, seen)| !seen).count();
    changed.len() + deleted
}

/// A store in `dir` with two endpoints that want everything.
fn commit_store(dir: &Path) -> Store {
    let store = Store::open(&dir.join("bench.db")).expect("open store");
    for name in ["a", "b"] {
        block_on(store.add_endpoint(&EndpointSpec {
            name: name.into(),
            url: format!("http://127.0.0.1:9/{name}"),
            secret: Secret::new(WHSEC),
            signing: Scheme::StandardWebhooks,
            resources: vec!["*".into()],
            actions: ActionFilter::parse(None).expect("all actions"),
            active: true,
            headers: Vec::new(),
            timeout: None,
            format: Default::default(),
        }))
        .expect("add endpoint");
    }
    store
}

/// K created changes: the snapshot rows (id, hash, body) and their events.
struct CommitCase {
    rows: Vec<(String, Hash, String)>,
    events: Vec<Event>,
}

fn commit_case(k: usize, round: usize) -> CommitCase {
    let now = Utc::now();
    let mut rows = Vec::with_capacity(k);
    let mut events = Vec::with_capacity(k);
    for i in 0..k {
        let body: Value =
            serde_json::from_slice(&item::item_bytes(i as u64, round as u32)).expect("item JSON");
        let record = Record {
            id: i.to_string(),
            body,
            hash: hash_of(i, round as u8),
            raw: None,
        };
        rows.push((record.id.clone(), record.hash, record.body.to_string()));
        events.push(Event::from_change(
            "bench",
            "items",
            &Change::Created(record),
            None,
            &[],
            now,
        ));
    }
    CommitCase { rows, events }
}

/// The resource's version, which commit_poll checks (optimistic concurrency) and bumps.
fn version(store: &Store) -> i64 {
    block_on(store.resource_state("bench", "items"))
        .expect("resource state")
        .version
}

fn pollhook_commit(store: &Store, (case, version): (CommitCase, i64)) -> usize {
    let listed = case.rows.len();
    let upserts: Vec<SnapshotRow> = (case.rows.into_iter())
        .map(|(id, hash, body)| SnapshotRow {
            id,
            hash,
            raw: None,
            body,
        })
        .collect();
    let (summary, _) = block_on(store.commit_poll(PollCommit {
        source: "bench".into(),
        resource: "items".into(),
        upserts: Box::new(upserts),
        rehashed: Vec::new(),
        deletes: Vec::new(),
        events: case.events,
        listed,
        held: None,
        complete: true,
        duration: Duration::ZERO,
        at: Utc::now(),
        alert_after: 0,
        missing: Vec::new(),
        found: Vec::new(),
        since_cursor: None,
        pages: None,
        version,
    }))
    .expect("commit");
    summary.deliveries
}

/// A bare connection with pollhook's pragmas.
fn bare_conn(dir: &Path, name: &str) -> Connection {
    let conn = Connection::open(dir.join(name)).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS s (k TEXT PRIMARY KEY, h BLOB, body TEXT) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS e (seq INTEGER PRIMARY KEY, body TEXT);
         CREATE TABLE IF NOT EXISTS d (id INTEGER PRIMARY KEY, seq INTEGER, ep INTEGER, at INTEGER);",
    )
    .expect("schema");
    conn
}

/// K plain rows of ~500 bytes in one transaction.
fn bare_insert(conn: &mut Connection, bodies: &[String]) -> usize {
    let tx = conn.transaction().expect("tx");
    {
        let mut stmt = tx
            .prepare_cached("INSERT INTO t (body) VALUES (?1)")
            .expect("prepare");
        for b in bodies {
            stmt.execute(params![b]).expect("insert");
        }
    }
    tx.commit().expect("commit");
    bodies.len()
}

/// The rows commit_poll writes (K snapshot upserts, K events, 2K deliveries) as plain inserts into
/// tables without secondary indexes: what the row count alone costs.
fn bare_equivalent(conn: &mut Connection, case: &CommitCase) -> usize {
    let tx = conn.transaction().expect("tx");
    {
        let mut s = tx
            .prepare_cached("INSERT OR REPLACE INTO s (k, h, body) VALUES (?1, ?2, ?3)")
            .expect("prepare");
        let mut e = tx
            .prepare_cached("INSERT INTO e (body) VALUES (?1)")
            .expect("prepare");
        let mut d = tx
            .prepare_cached("INSERT INTO d (seq, ep, at) VALUES (?1, ?2, ?3)")
            .expect("prepare");
        for ((id, h, body), ev) in case.rows.iter().zip(&case.events) {
            s.execute(params![id, &h[..], body]).expect("s");
            e.execute(params![ev.to_json()]).expect("e");
            let seq = tx.last_insert_rowid();
            for ep in 0..2 {
                d.execute(params![seq, ep, 0]).expect("d");
            }
        }
    }
    tx.commit().expect("commit");
    case.rows.len()
}

fn event_json() -> String {
    let body: Value = serde_json::from_slice(&item::item_bytes(42, 1)).expect("item");
    let previous: Value = serde_json::from_slice(&item::item_bytes(42, 0)).expect("item");
    Event::from_change(
        "bench",
        "items",
        &Change::Updated(Record {
            id: "42".into(),
            body,
            hash: [0; 32],
            raw: None,
        }),
        Some(previous),
        &[],
        Utc::now(),
    )
    .to_json()
}

fn sign_input<'a>(event_json: &'a str) -> SignInput<'a> {
    SignInput {
        endpoint_name: "bench",
        url: "http://127.0.0.1:9/hook",
        event_id: "evt_0193aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        body: event_json,
        timestamp: 1_790_000_000,
    }
}

fn bare_hmac(key: &[u8], input: &SignInput) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(input.event_id.as_bytes());
    mac.update(b".");
    mac.update(input.timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(input.body.as_bytes());
    mac.finalize().into_bytes().into()
}

/// One page of an unchanged poll the slow way (every item's bytes new, or the way pollhook worked
/// before the fast path): parse the page into a `Value`, normalize every item, push every record
/// into a `Differ` (which drops the bodies of unchanged items).
fn page_parsed(page: &[u8], n: &mut Normalizer, differ: &mut Differ) {
    let Value::Array(items) = serde_json::from_slice::<Value>(page).expect("page") else {
        unreachable!()
    };
    for item in items {
        differ.push(n.record(item).expect("record"));
    }
}

/// The same page as pollhook takes an unchanged page: split into item texts without parsing them,
/// then per item `Normalizer::peek` (the id), `Normalizer::raw_hash` and `Differ::unchanged`.
fn page_fast_path(page: &[u8], n: &Normalizer, differ: &mut Differ) -> usize {
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(page).expect("page");
    let mut unchanged = 0;
    for raw in items {
        let text = raw.get();
        let hash = n.raw_hash(text);
        let (id, _) = n.peek(text).expect("id");
        unchanged += usize::from(differ.unchanged(&id, &hash));
    }
    unchanged
}

/// The bare operations under the fast path: split the page into borrowed items and SHA-256 each
/// item's bytes.
fn page_split_and_hash(page: &[u8]) -> u8 {
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(page).expect("page");
    items
        .iter()
        .map(|raw| Sha256::digest(raw.get().as_bytes())[0])
        .fold(0, |a, b| a ^ b)
}

/// Snapshot state for one page of `PAGE` unchanged items, as the store loads it after a poll.
fn page_state(page: &[u8]) -> Snapshot {
    let Value::Array(items) = serde_json::from_slice::<Value>(page).expect("page") else {
        unreachable!()
    };
    let raws: Vec<&serde_json::value::RawValue> = serde_json::from_slice(page).expect("page");
    let mut n = Normalizer::new(id_path(), Vec::new());
    items
        .into_iter()
        .zip(raws)
        .map(|(item, r)| {
            let rec = n.record(item).expect("record");
            let raw = n.raw_hash(r.get());
            (rec.id, Known::new(rec.hash, Some(raw), 0))
        })
        .collect()
}

// ─────────────────────────── divan groups ───────────────────────────

/// Stage 1: canonical JSON + SHA-256 of one ~500-byte item, next to parsing and hashing its bytes.
#[divan::bench_group(sample_count = 200)]
mod normalize {
    use super::*;

    #[divan::bench]
    fn pollhook_record(b: Bencher) {
        let v = values(&items(1)).remove(0);
        let mut n = Normalizer::new(id_path(), Vec::new());
        b.counter(ItemsCount::new(1usize))
            .with_inputs(|| v.clone())
            .bench_local_values(|v| n.record(v).expect("record"));
    }

    #[divan::bench]
    fn pollhook_record_with_ignore(b: Bencher) {
        let v = values(&items(1)).remove(0);
        let mut n = Normalizer::new(id_path(), ignore_path());
        b.counter(ItemsCount::new(1usize))
            .with_inputs(|| v.clone())
            .bench_local_values(|v| n.record(v).expect("record"));
    }

    #[divan::bench]
    fn pollhook_canonical_json_only(b: Bencher) {
        let v = values(&items(1)).remove(0);
        let mut out = Vec::with_capacity(1024);
        b.counter(ItemsCount::new(1usize)).bench_local(|| {
            out.clear();
            pollhook::normalize::canonical_json(black_box(&v), &mut out);
            out.len()
        });
    }

    #[divan::bench]
    fn bare_serde_json_parse(b: Bencher) {
        let bytes = items(1).remove(0);
        b.counter(BytesCount::new(bytes.len()))
            .bench_local(|| serde_json::from_slice::<Value>(black_box(&bytes)).expect("json"));
    }

    #[divan::bench]
    fn bare_sha256_digest(b: Bencher) {
        let bytes = items(1).remove(0);
        b.counter(BytesCount::new(bytes.len()))
            .bench_local(|| Sha256::digest(black_box(&bytes)));
    }

    /// What `source/rest.rs` does per page before normalizing: one `from_slice` of the page.
    #[divan::bench(sample_count = 30)]
    fn bare_serde_json_parse_page_of_1000(b: Bencher) {
        let page = page_bytes(PAGE);
        b.counter(ItemsCount::new(PAGE))
            .bench_local(|| serde_json::from_slice::<Value>(black_box(&page)).expect("json"));
    }
}

/// Stage 2: diff of 100k records against a 100k snapshot (1% created, updated, deleted).
#[divan::bench_group(sample_count = 15, sample_size = 1)]
mod diff {
    use super::*;

    #[divan::bench]
    fn pollhook_differ(b: Bencher) {
        b.counter(ItemsCount::new(DIFF_N))
            .with_inputs(|| diff_case(DIFF_N))
            .bench_local_values(pollhook_diff);
    }

    #[divan::bench]
    fn bare_hashmap(b: Bencher) {
        b.counter(ItemsCount::new(DIFF_N))
            .with_inputs(|| diff_case(DIFF_N))
            .bench_local_values(bare_diff);
    }
}

/// Stage 3: one transaction of 10k changes (snapshot rows, events, 2 deliveries each).
#[divan::bench_group(sample_count = 6, sample_size = 1)]
mod commit {
    use super::*;

    #[divan::bench]
    fn pollhook_commit_poll(b: Bencher) {
        let dir = tempfile::tempdir_in(bench_dir()).expect("tempdir");
        let store = commit_store(dir.path());
        let mut round = 0;
        b.counter(ItemsCount::new(COMMIT_K))
            .with_inputs(|| {
                round += 1;
                (commit_case(COMMIT_K, round), version(&store))
            })
            .bench_local_values(|input| pollhook_commit(&store, input));
    }

    #[divan::bench]
    fn bare_insert_k_rows(b: Bencher) {
        let dir = tempfile::tempdir_in(bench_dir()).expect("tempdir");
        let mut conn = bare_conn(dir.path(), "bare.db");
        let bodies: Vec<String> = items(COMMIT_K)
            .into_iter()
            .map(|b| String::from_utf8(b).expect("utf8"))
            .collect();
        b.counter(ItemsCount::new(COMMIT_K))
            .bench_local(|| bare_insert(&mut conn, &bodies));
    }

    #[divan::bench]
    fn bare_insert_same_rows_no_indexes(b: Bencher) {
        let dir = tempfile::tempdir_in(bench_dir()).expect("tempdir");
        let mut conn = bare_conn(dir.path(), "bare.db");
        let mut round = 0;
        b.counter(ItemsCount::new(COMMIT_K))
            .with_inputs(|| {
                round += 1;
                commit_case(COMMIT_K, round)
            })
            .bench_local_values(|case| bare_equivalent(&mut conn, &case));
    }
}

/// Stage 4: signing one ~1.3 KiB event.
#[divan::bench_group(sample_count = 200)]
mod sign_event {
    use super::*;

    #[divan::bench]
    fn pollhook_sign_jwt(b: Bencher) {
        let json = event_json();
        let input = sign_input(&json);
        let key = JWT_KEY.as_bytes();
        b.bench_local(|| sign::sign(Scheme::Jwt, &[key], black_box(&input)).expect("sign"));
    }

    #[divan::bench]
    fn pollhook_sign_standard_webhooks(b: Bencher) {
        let json = event_json();
        let input = sign_input(&json);
        let key = sign::decode_secret(Scheme::StandardWebhooks, WHSEC).expect("key");
        b.bench_local(|| {
            sign::sign(Scheme::StandardWebhooks, &[&key], black_box(&input)).expect("sign")
        });
    }

    /// What `deliver::send` does per attempt before signing.
    #[divan::bench]
    fn pollhook_decode_secret(b: Bencher) {
        b.bench_local(|| {
            sign::decode_secret(Scheme::StandardWebhooks, black_box(WHSEC)).expect("key")
        });
    }

    #[divan::bench]
    fn bare_hmac_sha256(b: Bencher) {
        let json = event_json();
        let input = sign_input(&json);
        let key = sign::decode_secret(Scheme::StandardWebhooks, WHSEC).expect("key");
        b.bench_local(|| bare_hmac(&key, black_box(&input)));
    }
}

/// Between stages: building an `updated` event (clone, JSON Patch, id) and serializing it.
#[divan::bench_group(sample_count = 200)]
mod event_build {
    use super::*;

    #[divan::bench]
    fn pollhook_event_from_change_updated(b: Bencher) {
        let body: Value = serde_json::from_slice(&item::item_bytes(42, 1)).expect("item");
        let previous: Value = serde_json::from_slice(&item::item_bytes(42, 0)).expect("item");
        let change = Change::Updated(Record {
            id: "42".into(),
            body,
            hash: [0; 32],
            raw: None,
        });
        let now = Utc::now();
        b.with_inputs(|| previous.clone()).bench_local_values(|p| {
            Event::from_change("bench", "items", &change, Some(p), &[], now)
        });
    }

    #[divan::bench]
    fn pollhook_event_to_json(b: Bencher) {
        let json = event_json();
        let event: Event = serde_json::from_str(&json).expect("event");
        b.bench_local(|| black_box(&event).to_json());
    }

    #[divan::bench]
    fn bare_new_id(b: Bencher) {
        b.bench_local(event::new_id);
    }
}

/// One 1,000-item page of an unchanged poll: the fast path, the parsed path, and the bare split +
/// SHA-256 under the fast path.
#[divan::bench_group(sample_count = 40)]
mod unchanged_page {
    use super::*;

    #[divan::bench]
    fn pollhook_fast_path(b: Bencher) {
        let page = page_bytes(PAGE);
        let snapshot = page_state(&page);
        let n = Normalizer::new(id_path(), Vec::new());
        b.counter(ItemsCount::new(PAGE))
            .with_inputs(|| Differ::<Value>::with_known(snapshot.clone()))
            .bench_local_refs(|differ| assert_eq!(page_fast_path(&page, &n, differ), PAGE));
    }

    #[divan::bench]
    fn pollhook_parse_record_push(b: Bencher) {
        let page = page_bytes(PAGE);
        let snapshot = page_state(&page);
        let mut n = Normalizer::new(id_path(), Vec::new());
        b.counter(ItemsCount::new(PAGE))
            .with_inputs(|| Differ::<Value>::with_known(snapshot.clone()))
            .bench_local_refs(|differ| page_parsed(&page, &mut n, differ));
    }

    #[divan::bench]
    fn bare_split_and_sha256(b: Bencher) {
        let page = page_bytes(PAGE);
        b.counter(ItemsCount::new(PAGE))
            .bench_local(|| page_split_and_hash(&page));
    }
}

fn bench_dir() -> std::path::PathBuf {
    // On the disk the database would live on, not a tmpfs: fsync must cost what it costs.
    let dir = std::env::var_os("BENCH_TMPDIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

// ─────────────────────────── paired ratio table ───────────────────────────

/// Median and fastest of a set of timings: the median is what a loaded machine gives, the fastest
/// is closest to the work itself (noise only ever adds time).
#[derive(Clone, Copy)]
struct Fig {
    median: Duration,
    fastest: Duration,
}

fn fig(mut v: Vec<Duration>) -> Fig {
    v.sort();
    Fig {
        median: v[v.len() / 2],
        fastest: v[0],
    }
}

/// Times `stage` and each of `bares` in alternating rounds; each closure returns the time of its
/// measured part only (setup excluded).
fn paired(
    rounds: usize,
    stage: &mut dyn FnMut() -> Duration,
    bares: &mut [&mut dyn FnMut() -> Duration],
) -> (Fig, Vec<Fig>) {
    // One warm-up round each.
    stage();
    for b in bares.iter_mut() {
        b();
    }
    let mut s = Vec::new();
    let mut bs: Vec<Vec<Duration>> = vec![Vec::new(); bares.len()];
    for _ in 0..rounds {
        s.push(stage());
        for (i, b) in bares.iter_mut().enumerate() {
            bs[i].push(b());
        }
    }
    (fig(s), bs.into_iter().map(fig).collect())
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let out = black_box(f());
    (t.elapsed(), out)
}

struct Row {
    stage: &'static str,
    per: usize,
    unit: &'static str,
    figure: Fig,
    bare: &'static str,
    bare_figure: Fig,
}

fn ratios() {
    let rounds: usize = std::env::var("STAGES_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    let mut rows = Vec::new();

    // Normalize.
    {
        let bytes = items(NORMALIZE_BATCH);
        let vals = values(&bytes);
        let mut plain = Normalizer::new(id_path(), Vec::new());
        let mut ignoring = Normalizer::new(id_path(), ignore_path());
        let record = |n: &mut Normalizer| {
            let input = vals.clone();
            let mut out = Vec::with_capacity(input.len());
            let (t, ()) = timed(|| {
                for v in input {
                    out.push(n.record(v).expect("record"));
                }
            });
            drop(out);
            t
        };
        let mut parse = || {
            let mut out = Vec::with_capacity(bytes.len());
            let (t, ()) = timed(|| {
                for b in &bytes {
                    out.push(serde_json::from_slice::<Value>(b).expect("json"));
                }
            });
            drop(out);
            t
        };
        let mut sha = || {
            timed(|| {
                bytes
                    .iter()
                    .map(|b| Sha256::digest(b)[0] as usize)
                    .sum::<usize>()
            })
            .0
        };
        let page = page_bytes(PAGE);
        let mut parse_page = || {
            let (t, v) = timed(|| serde_json::from_slice::<Value>(&page).expect("json"));
            drop(v);
            t * (NORMALIZE_BATCH / PAGE) as u32
        };
        let (s, b) = paired(
            rounds,
            &mut || record(&mut plain),
            &mut [&mut parse, &mut sha, &mut parse_page],
        );
        let (si, _) = paired(rounds, &mut || record(&mut ignoring), &mut []);
        for (name, bare_fig) in [
            ("serde_json::from_slice, same item", b[0]),
            ("sha2::Sha256::digest, same bytes", b[1]),
            ("serde_json::from_slice, 1000-item page", b[2]),
        ] {
            rows.push(Row {
                stage: "Normalizer::record (id, no ignore)",
                per: NORMALIZE_BATCH,
                unit: "item",
                figure: s,
                bare: name,
                bare_figure: bare_fig,
            });
        }
        rows.push(Row {
            stage: "Normalizer::record (ignore = [updated_at])",
            per: NORMALIZE_BATCH,
            unit: "item",
            figure: si,
            bare: "Normalizer::record, no ignore",
            bare_figure: s,
        });
    }

    // An unchanged page: the fast path against its bare operations, and the parsed path.
    {
        let page = page_bytes(PAGE);
        let snapshot = page_state(&page);
        let fast = Normalizer::new(id_path(), Vec::new());
        let mut n = Normalizer::new(id_path(), Vec::new());
        let (s, b) = paired(
            rounds,
            &mut || {
                let mut differ = Differ::<Value>::with_known(snapshot.clone());
                let t = timed(|| page_fast_path(&page, &fast, &mut differ)).0;
                drop(differ);
                t
            },
            &mut [&mut || timed(|| page_split_and_hash(&page)).0, &mut || {
                let mut differ = Differ::<Value>::with_known(snapshot.clone());
                let t = timed(|| page_parsed(&page, &mut n, &mut differ)).0;
                drop(differ);
                t
            }],
        );
        rows.push(Row {
            stage: "unchanged 1000-item page: split + peek + raw hash + Differ::unchanged",
            per: PAGE,
            unit: "item",
            figure: s,
            bare: "split into RawValues + SHA-256 of each item's bytes",
            bare_figure: b[0],
        });
        rows.push(Row {
            stage: "″",
            per: PAGE,
            unit: "item",
            figure: s,
            bare: "the parsed path: page → Value, Normalizer::record, Differ::push",
            bare_figure: b[1],
        });
    }

    // Diff.
    {
        let (s, b) = paired(
            rounds.min(7),
            &mut || {
                let case = diff_case(DIFF_N);
                timed(|| pollhook_diff(case)).0
            },
            &mut [&mut || {
                let case = diff_case(DIFF_N);
                timed(|| bare_diff(case)).0
            }],
        );
        rows.push(Row {
            stage: "Differ (with_missing+push+finish), N=100k, 1%/1%/1%",
            per: DIFF_N,
            unit: "item",
            figure: s,
            bare: "HashMap build + get_mut loop + sweep",
            bare_figure: b[0],
        });
    }

    // Commit.
    {
        let dir = tempfile::tempdir_in(bench_dir()).expect("tempdir");
        let store = commit_store(dir.path());
        let mut conn = bare_conn(dir.path(), "bare.db");
        let mut conn2 = bare_conn(dir.path(), "bare2.db");
        let bodies: Vec<String> = items(COMMIT_K)
            .into_iter()
            .map(|b| String::from_utf8(b).expect("utf8"))
            .collect();
        let mut round = 0;
        let mut round2 = 1000;
        let (s, b) = paired(
            rounds.min(5),
            &mut || {
                round += 1;
                let input = (commit_case(COMMIT_K, round), version(&store));
                timed(|| pollhook_commit(&store, input)).0
            },
            &mut [
                &mut || timed(|| bare_insert(&mut conn, &bodies)).0,
                &mut || {
                    round2 += 1;
                    let case = commit_case(COMMIT_K, round2);
                    // Serializing the events is part of commit_poll too (`to_json` per event).
                    timed(|| bare_equivalent(&mut conn2, &case)).0
                },
            ],
        );
        rows.push(Row {
            stage: "Store::commit_poll, K=10k (+10k events, 20k deliveries)",
            per: COMMIT_K,
            unit: "change",
            figure: s,
            bare: "rusqlite: K plain rows, one tx",
            bare_figure: b[0],
        });
        rows.push(Row {
            stage: "Store::commit_poll, K=10k (+10k events, 20k deliveries)",
            per: COMMIT_K,
            unit: "change",
            figure: s,
            bare: "rusqlite: same 4K rows, no indexes",
            bare_figure: b[1],
        });
    }

    // Sign.
    {
        let json = event_json();
        let input = sign_input(&json);
        let key = sign::decode_secret(Scheme::StandardWebhooks, WHSEC).expect("key");
        let reps = 2_000;
        let mut jwt = || {
            timed(|| {
                for _ in 0..reps {
                    black_box(sign::sign(Scheme::Jwt, &[JWT_KEY.as_bytes()], &input).expect("s"));
                }
            })
            .0
        };
        let mut sw = || {
            timed(|| {
                for _ in 0..reps {
                    black_box(sign::sign(Scheme::StandardWebhooks, &[&key], &input).expect("sign"));
                }
            })
            .0
        };
        let mut bare = || {
            timed(|| {
                for _ in 0..reps {
                    black_box(bare_hmac(&key, &input));
                }
            })
            .0
        };
        // Both schemes and the bare HMAC in the same rounds, so each ratio compares figures taken
        // under the same load.
        let (s_jwt, b) = paired(rounds, &mut jwt, &mut [&mut bare, &mut sw]);
        rows.push(Row {
            stage: "sign::sign standard-webhooks (1.3 KiB event)",
            per: reps,
            unit: "event",
            figure: b[1],
            bare: "hmac+sha2 HMAC over id.ts.body",
            bare_figure: b[0],
        });
        rows.push(Row {
            stage: "sign::sign jwt (1.3 KiB event)",
            per: reps,
            unit: "event",
            figure: s_jwt,
            bare: "hmac+sha2 HMAC over id.ts.body",
            bare_figure: b[0],
        });
    }

    println!();
    println!(
        "Paired: {rounds} alternating rounds in this process on the same data; median (fastest)."
    );
    println!(
        "| stage | per unit | rate | bare library operation | bare per | bare rate | ratio of medians (of fastest) |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|");
    for r in rows {
        let per = |d: Duration| d.as_secs_f64() / r.per as f64;
        let (m, f) = (per(r.figure.median), per(r.figure.fastest));
        let (bm, bf) = (per(r.bare_figure.median), per(r.bare_figure.fastest));
        println!(
            "| {} | {} ({}) | {} {}/s | {} | {} ({}) | {}/s | {:.2}× ({:.2}×) |",
            r.stage,
            fmt_time(m),
            fmt_time(f),
            fmt_rate(1.0 / m),
            r.unit,
            r.bare,
            fmt_time(bm),
            fmt_time(bf),
            fmt_rate(1.0 / bm),
            m / bm,
            f / bf
        );
    }
}

fn fmt_time(secs: f64) -> String {
    if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else if secs >= 1e-6 {
        format!("{:.2} µs", secs * 1e6)
    } else {
        format!("{:.0} ns", secs * 1e9)
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.0}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// Runs one store call from the bench's synchronous code (the store's facade is async), on one
/// runtime kept for the whole run.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
    .block_on(f)
}
