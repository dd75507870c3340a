//! End-to-end benchmark: the real release binary against a fake API and a receiver on loopback.
//!
//! `cargo build --release && cargo bench --bench e2e` (add `-- --quick` for a short run). The fake
//! API and the receiver run in this process; pollhook runs as a child process, so wall time, CPU
//! time (user + sys, from `wait4`) and peak RSS (`ru_maxrss`) are pollhook's alone.
//!
//! Sections: (1) poll: a baseline poll of N items, then a poll after 1% created/updated/deleted,
//! each next to the sum of its stages timed in this process on the same data; (2) delivery: events
//! queued by an `initial = "emit"` poll and delivered by `pollhook run` to 1, 4, 16 endpoints, next
//! to a bare reqwest client at 16 in flight; (3) latency: `pollhook run` polling every second while
//! items change, detection → receipt; (4) idle: `pollhook run` with 100 unchanged resources;
//! (5) styles: the same items paged as page, offset, link-header, next-url, cursor (`has_more`,
//! `starting_after`), exec (JSON lines and an array, `cat` of files) and GraphQL, polled in
//! alternation, baseline and 1% changed, each as a ratio to `page` in the same round. Every style
//! is served from the same item bytes written in advance, so no style costs the fake API more
//! than another (an offset or a page is a slice of them, found without walking the listing).
//!
//! Environment: `E2E_SIZES=10000,100000` (add 1000000 for the 1M run), `E2E_DELIVERIES=20000`
//! (deliveries per endpoint count), `E2E_ENDPOINTS=1,4,16`, `E2E_LATENCY_SECS=20`,
//! `E2E_IDLE_SECS=60`, `E2E_IDLE_RESOURCES=100`, `E2E_IDLE_ITEMS=10`, `E2E_SECTIONS=poll,delivery,
//! latency,idle,styles`, `E2E_STYLE_ITEMS=200000`, `E2E_STYLE_ROUNDS=3`, `POLLHOOK_BIN` (default: build and use `<target>/release/pollhook`),
//! `BENCH_TMPDIR` (where databases go; default the system temp dir, which must be a real disk),
//! `E2E_KEEP=1` (keep the databases, configs and pollhook logs for a look afterwards),
//! `E2E_IDLE_FLOOR=0` (skip the idle floor measurement), `E2E_IDLE_EVERY=5s,1m` (one idle row per
//! polling interval), `E2E_IDLE_TOTAL=1` (the idle resources end their listing at the API's
//! `X-Total-Count` instead of an empty page).
//!
//! Peak RSS is the child's `VmHWM`, sampled every 2 ms: `ru_maxrss` would report this bench's own
//! size, which Linux carries into a vfork+exec child's high-water mark.

#[path = "support/item.rs"]
mod item;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::Utc;
use pollhook::diff::{Change, DeleteGuard, Differ};
use pollhook::event::Event;
use pollhook::normalize::Normalizer;
use pollhook::store::{PollCommit, SnapshotRow, Store};
use serde_json::Value;
use tokio::net::TcpListener;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PER_PAGE: u64 = 1_000;

// ─────────────────────────── options ───────────────────────────

struct Opts {
    sizes: Vec<u64>,
    deliveries: u64,
    endpoints: Vec<u64>,
    latency_secs: u64,
    idle_secs: u64,
    idle_resources: u64,
    idle_items: u64,
    sections: Vec<String>,
    style_items: u64,
    style_rounds: usize,
}

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .collect()
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Opts {
    fn get() -> Opts {
        let quick = std::env::args().any(|a| a == "--quick") || std::env::var("E2E_QUICK").is_ok();
        Opts {
            sizes: env_list("E2E_SIZES", if quick { "10000" } else { "10000,100000" }),
            deliveries: env_num("E2E_DELIVERIES", if quick { 5_000 } else { 20_000 }),
            endpoints: env_list("E2E_ENDPOINTS", if quick { "1,16" } else { "1,4,16" }),
            latency_secs: env_num("E2E_LATENCY_SECS", if quick { 8 } else { 20 }),
            idle_secs: env_num("E2E_IDLE_SECS", if quick { 15 } else { 60 }),
            idle_resources: env_num("E2E_IDLE_RESOURCES", 100),
            idle_items: env_num("E2E_IDLE_ITEMS", 10),
            sections: std::env::var("E2E_SECTIONS")
                .unwrap_or_else(|_| "poll,styles,delivery,latency,idle".into())
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect(),
            style_items: env_num("E2E_STYLE_ITEMS", if quick { 20_000 } else { 200_000 }),
            style_rounds: env_num("E2E_STYLE_ROUNDS", 3).max(1) as usize,
        }
    }
    fn runs(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s == section)
    }
}

// ─────────────────────────── the fake API ───────────────────────────

/// The listing as a function: ids `0..base` plus `base..base+extra`, minus `deleted`, each at its
/// version in `versions` (0 if absent). Pages are generated on request, so serving 1M items needs
/// no memory for them; a [`Listing::prepared`] one (the `styles` section) holds every listed
/// item's bytes written in advance instead, so that each style's server only copies them.
#[derive(Default)]
struct Listing {
    base: u64,
    extra: u64,
    deleted: HashSet<u64>,
    versions: HashMap<u64, u32>,
    prepared: Option<Prepared>,
}

/// Every listed item's bytes, and each one's id and place in them, in listing order.
#[derive(Default)]
struct Prepared {
    bytes: Vec<u8>,
    items: Vec<(u64, std::ops::Range<usize>)>,
}

impl Listing {
    fn new(n: u64) -> Listing {
        Listing {
            base: n,
            ..Listing::default()
        }
    }

    /// The listing with its items' bytes written in advance.
    fn prepared(n: u64) -> Listing {
        let mut listing = Listing::new(n);
        listing.prepare();
        listing
    }

    fn prepare(&mut self) {
        let mut prepared = Prepared {
            bytes: Vec::with_capacity(self.len() as usize * 600),
            items: Vec::with_capacity(self.len() as usize),
        };
        for id in self.live() {
            let start = prepared.bytes.len();
            item::write_item(&mut prepared.bytes, id, self.version(id));
            prepared.items.push((id, start..prepared.bytes.len()));
        }
        self.prepared = Some(prepared);
    }

    /// 1% created (appended), 1% updated (every 100th id from 2), 1% deleted (from 1).
    fn churn_one_percent(&mut self) {
        let n = self.base;
        self.extra += n / 100;
        for id in (1..n).step_by(100) {
            self.deleted.insert(id);
        }
        for id in (2..n).step_by(100) {
            *self.versions.entry(id).or_default() += 1;
        }
        if self.prepared.is_some() {
            self.prepare();
        }
    }

    fn len(&self) -> u64 {
        self.base + self.extra
    }

    fn version(&self, id: u64) -> u32 {
        self.versions.get(&id).copied().unwrap_or(0)
    }

    /// The ids listed, in order.
    fn live_count(&self) -> u64 {
        self.len() - self.deleted.iter().filter(|&&id| id < self.len()).count() as u64
    }

    fn live(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len()).filter(|id| !self.deleted.contains(id))
    }

    /// The listed items with ids from `start` up to `end` (exclusive), as a JSON array.
    fn write_ids(&self, start: u64, end: u64, out: &mut Vec<u8>) {
        match &self.prepared {
            Some(prepared) => {
                let at = |id: u64| prepared.items.partition_point(|(i, _)| *i < id);
                prepared.write(at(start)..at(end), out);
            }
            None => write_array(
                (start..end.min(self.len())).filter(|id| !self.deleted.contains(id)),
                |id, out| item::write_item(out, id, self.version(id)),
                out,
            ),
        }
    }

    /// The listed items from the `skip`-th on, at most `take`, as a JSON array.
    fn write_listed(&self, skip: usize, take: usize, out: &mut Vec<u8>) {
        match &self.prepared {
            Some(prepared) => {
                let start = skip.min(prepared.items.len());
                let end = start.saturating_add(take).min(prepared.items.len());
                prepared.write(start..end, out);
            }
            None => write_array(
                self.live().skip(skip).take(take),
                |id, out| item::write_item(out, id, self.version(id)),
                out,
            ),
        }
    }

    /// Page `page` (1-based) as a JSON array; an empty array past the end.
    fn write_page(&self, page: u64, per_page: u64, out: &mut Vec<u8>) {
        let start = (page.max(1) - 1) * per_page;
        self.write_ids(start, start + per_page, out);
    }
}

impl Prepared {
    /// The items at places `places` of the listing, as a JSON array.
    fn write(&self, places: std::ops::Range<usize>, out: &mut Vec<u8>) {
        write_array(
            self.items[places].iter(),
            |(_, span), out| out.extend_from_slice(&self.bytes[span.clone()]),
            out,
        );
    }
}

/// A JSON array of `items`, each written by `write`.
fn write_array<T>(
    items: impl Iterator<Item = T>,
    mut write: impl FnMut(T, &mut Vec<u8>),
    out: &mut Vec<u8>,
) {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(item, out);
    }
    out.push(b']');
}

#[derive(Clone)]
struct Api {
    listing: Arc<RwLock<Listing>>,
    requests: Arc<AtomicU64>,
    /// Requests for page 1: one per poll.
    polls: Arc<AtomicU64>,
    url: String,
}

#[derive(serde::Deserialize)]
struct PageQuery {
    page: Option<u64>,
    per_page: Option<u64>,
}

async fn serve_page(State(api): State<Api>, Query(q): Query<PageQuery>) -> impl IntoResponse {
    api.requests.fetch_add(1, Ordering::Relaxed);
    if q.page.unwrap_or(1) <= 1 {
        api.polls.fetch_add(1, Ordering::Relaxed);
    }
    let per_page = q.per_page.unwrap_or(PER_PAGE).clamp(1, 10_000);
    let mut out = Vec::with_capacity(per_page as usize * 600);
    let listing = api.listing.read().unwrap_or_else(|e| e.into_inner());
    listing.write_page(q.page.unwrap_or(1), per_page, &mut out);
    // The listing's length, as json-server states it (read with `E2E_IDLE_TOTAL=1`).
    let total = listing.live_count().to_string();
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::HeaderName::from_static("x-total-count"), total),
        ],
        out,
    )
}

async fn start_api(rt: &tokio::runtime::Runtime, n: u64) -> Api {
    let _ = rt;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
    let api = Api {
        listing: Arc::new(RwLock::new(Listing::new(n))),
        requests: Arc::default(),
        polls: Arc::default(),
        url: format!("http://{}", listener.local_addr().expect("addr")),
    };
    let app = Router::new()
        .route("/items", get(serve_page))
        .route("/offset", get(serve_offset))
        .route("/link", get(serve_link))
        .route("/next", get(serve_next))
        .route("/cursor", get(serve_cursor))
        .route("/graphql", post(serve_graphql))
        .with_state(api.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    api
}

// The same listing in every pagination style (the `styles` section).

#[derive(serde::Deserialize)]
struct StyleQuery {
    page: Option<u64>,
    offset: Option<u64>,
    limit: Option<u64>,
    starting_after: Option<u64>,
}

fn listing_of(api: &Api) -> std::sync::RwLockReadGuard<'_, Listing> {
    api.listing.read().unwrap_or_else(|e| e.into_inner())
}

fn json_reply(out: Vec<u8>) -> ([(header::HeaderName, &'static str); 1], Vec<u8>) {
    ([(header::CONTENT_TYPE, "application/json")], out)
}

/// `?offset=N&limit=S`: the N-th listed item on.
async fn serve_offset(State(api): State<Api>, Query(q): Query<StyleQuery>) -> impl IntoResponse {
    let listing = listing_of(&api);
    let mut out = Vec::with_capacity(PER_PAGE as usize * 600);
    let limit = q.limit.unwrap_or(PER_PAGE).clamp(1, 10_000) as usize;
    listing.write_listed(q.offset.unwrap_or(0) as usize, limit, &mut out);
    json_reply(out)
}

/// Pages as `/items`, each naming the next in a `Link` header (none on the last).
async fn serve_link(State(api): State<Api>, Query(q): Query<StyleQuery>) -> impl IntoResponse {
    let page = q.page.unwrap_or(1);
    let mut out = Vec::with_capacity(PER_PAGE as usize * 600);
    let listing = listing_of(&api);
    listing.write_page(page, PER_PAGE, &mut out);
    let link = if page * PER_PAGE < listing.len() {
        format!("<{}/link?page={}>; rel=\"next\"", api.url, page + 1)
    } else {
        String::new()
    };
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::LINK, link),
        ],
        out,
    )
}

/// `{"data": [...page...], "next": "/next?page=N+1" | null}`.
async fn serve_next(State(api): State<Api>, Query(q): Query<StyleQuery>) -> impl IntoResponse {
    let page = q.page.unwrap_or(1);
    let listing = listing_of(&api);
    let mut out = Vec::with_capacity(PER_PAGE as usize * 600);
    out.extend_from_slice(b"{\"data\":");
    listing.write_page(page, PER_PAGE, &mut out);
    if page * PER_PAGE < listing.len() {
        let _ = write!(out, ",\"next\":\"/next?page={}\"}}", page + 1);
    } else {
        out.extend_from_slice(b",\"next\":null}");
    }
    json_reply(out)
}

/// Stripe's shape: the items after `starting_after`, `has_more`.
async fn serve_cursor(State(api): State<Api>, Query(q): Query<StyleQuery>) -> impl IntoResponse {
    let listing = listing_of(&api);
    let start = q.starting_after.map_or(0, |id| id + 1);
    let end = (start + PER_PAGE).min(listing.len());
    let mut out = Vec::with_capacity(PER_PAGE as usize * 600);
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":");
    listing.write_ids(start, end, &mut out);
    let _ = write!(out, ",\"has_more\":{}}}", end < listing.len());
    json_reply(out)
}

/// A GraphQL connection: `nodes` and `pageInfo`, the cursor a page number.
async fn serve_graphql(State(api): State<Api>, body: Bytes) -> impl IntoResponse {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let page: u64 = request["variables"]["after"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let listing = listing_of(&api);
    let mut out = Vec::with_capacity(PER_PAGE as usize * 600);
    out.extend_from_slice(b"{\"data\":{\"items\":{\"nodes\":");
    listing.write_page(page, PER_PAGE, &mut out);
    let _ = write!(
        out,
        ",\"pageInfo\":{{\"hasNextPage\":{},\"endCursor\":\"{}\"}}}}}}}}",
        page * PER_PAGE < listing.len(),
        page + 1
    );
    json_reply(out)
}

// ─────────────────────────── the receiver ───────────────────────────

/// One request as received.
#[derive(Clone)]
struct Hit {
    /// Receipt, µs since the Unix epoch.
    at_us: i64,
    /// `Pollhook-Event-Id`.
    event_id: Option<String>,
    /// `Pollhook-Endpoint`.
    endpoint: Option<String>,
    /// The event's `detected_at`, µs since the Unix epoch (latency runs only).
    detected_us: Option<i64>,
}

#[derive(Clone)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    count: Arc<AtomicUsize>,
    parse_bodies: Arc<std::sync::atomic::AtomicBool>,
    url: String,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at_us = now_us();
    let event_id = headers
        .get("pollhook-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let endpoint = headers
        .get("pollhook-endpoint")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let detected_us = if r.parse_bodies.load(Ordering::Relaxed) {
        detected_at_us(&body)
    } else {
        None
    };
    r.hits.lock().unwrap_or_else(|e| e.into_inner()).push(Hit {
        at_us,
        event_id,
        endpoint,
        detected_us,
    });
    r.count.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

/// `detected_at` of an event body, found without parsing the whole body.
fn detected_at_us(body: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(body).ok()?;
    let key = r#""detected_at":""#;
    let start = text.find(key)? + key.len();
    let end = start + text[start..].find('"')?;
    let at = chrono::DateTime::parse_from_rfc3339(&text[start..end]).ok()?;
    Some(at.timestamp_micros())
}

async fn start_receiver() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let r = Receiver {
        hits: Arc::new(Mutex::new(Vec::with_capacity(1 << 16))),
        count: Arc::default(),
        parse_bodies: Arc::default(),
        url: format!("http://{}", listener.local_addr().expect("addr")),
    };
    let app = Router::new()
        .route("/{*path}", post(receive))
        .with_state(r.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    r
}

impl Receiver {
    fn take(&self) -> Vec<Hit> {
        self.count.store(0, Ordering::Relaxed);
        std::mem::take(&mut *self.hits.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

// ─────────────────────────── the child process ───────────────────────────

/// What one pollhook process cost.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    wall: Duration,
    user: Duration,
    sys: Duration,
    max_rss_kb: i64,
    ok: bool,
}

impl Usage {
    fn cpu(&self) -> Duration {
        self.user + self.sys
    }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// Samples a process's peak RSS (`VmHWM`, kB) every 2 ms until it is gone. `ru_maxrss` cannot be
/// used for this: Linux carries the high-water mark of the pre-exec address space into the child's
/// `maxrss`, and with vfork+exec that is this (large) bench process's.
fn watch_hwm(
    pid: u32,
) -> (
    Arc<std::sync::atomic::AtomicI64>,
    std::thread::JoinHandle<()>,
) {
    let peak = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let p = peak.clone();
    let handle = std::thread::spawn(move || {
        loop {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return;
            };
            let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            else {
                // A zombie has no address space left: the last reading stands.
                return;
            };
            p.fetch_max(kb, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    (peak, handle)
}

/// Waits for `pid` and returns its own CPU time (wait4) and peak RSS (from the watcher).
fn wait_child(
    pid: u32,
    started: Instant,
    hwm: (
        Arc<std::sync::atomic::AtomicI64>,
        std::thread::JoinHandle<()>,
    ),
) -> Usage {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
    let wall = started.elapsed();
    let _ = hwm.1.join();
    Usage {
        wall,
        user: timeval(ru.ru_utime),
        sys: timeval(ru.ru_stime),
        max_rss_kb: hwm.0.load(Ordering::Relaxed),
        ok: r > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    }
}

/// CPU time of a running process from /proc/<pid>/stat (utime + stime).
fn proc_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the comm field: state is [0], utime is field 14 overall → [11], stime → [12].
    let ticks: u64 = fields
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// CPU time of this process (the fake API and receiver), user + sys.
fn self_cpu() -> Duration {
    // SAFETY: as above.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    timeval(ru.ru_utime) + timeval(ru.ru_stime)
}

struct Bench {
    bin: PathBuf,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Bench {
    fn command(&self, config: &Path, args: &[&str], log: &str) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.path().join(log))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            );
        cmd
    }

    /// Starts `pollhook <args>`.
    // Reaped by `wait4` in `wait_child`, which also yields the child's own CPU time.
    #[allow(clippy::zombie_processes)]
    fn spawn(&self, config: &Path, args: &[&str], log: &str) -> Child {
        let started = Instant::now();
        let child = self
            .command(config, args, log)
            .spawn()
            .expect("spawn pollhook");
        let pid = child.id();
        Child {
            pid,
            started,
            hwm: watch_hwm(pid),
        }
    }

    /// Runs `pollhook <args>` to completion.
    fn run_once(&self, config: &Path, args: &[&str], log: &str) -> Usage {
        let child = self.spawn(config, args, log);
        let usage = wait_child(child.pid, child.started, child.hwm);
        if !usage.ok {
            eprintln!(
                "pollhook {args:?} failed; its log:\n{}",
                std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default()
            );
        }
        usage
    }

    fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }
}

/// A running pollhook.
struct Child {
    pid: u32,
    started: Instant,
    hwm: (
        Arc<std::sync::atomic::AtomicI64>,
        std::thread::JoinHandle<()>,
    ),
}

/// SIGTERM, then wait.
fn stop(child: Child) -> Usage {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.pid as libc::pid_t, libc::SIGTERM) };
    wait_child(child.pid, child.started, child.hwm)
}

fn config_text(
    db: &Path,
    api: &str,
    resources: &str,
    receiver: &str,
    endpoints: u64,
    extra_source: &str,
) -> String {
    let mut text = format!(
        r#"[storage]
path = "{db}"

[server]
listen = "127.0.0.1:0"

[poll]
concurrency = 4

[[sources]]
name = "bench"
adapter = "rest"
base_url = "{api}"
timeout = "120s"
{extra_source}
{resources}

[delivery]
allow_http = true
allow_networks = ["127.0.0.0/8"]
"#,
        db = db.display()
    );
    for e in 0..endpoints {
        text.push_str(&format!(
            r#"
[[endpoints]]
name = "app{e}"
url = "{receiver}/e{e}"
secret = "{WHSEC}"
signing = "standard-webhooks"
resources = ["bench.*"]
"#
        ));
    }
    text
}

fn resource(name: &str, when: &str, initial: &str, query: &str) -> String {
    format!(
        r#"
  [[sources.resources]]
  name = "{name}"
  path = "/items"
  {when}
  id = "id"
  {query}
  pagination = {{ style = "page", page_param = "page", size_param = "per_page", size = {PER_PAGE}, first = 1 }}
  initial = "{initial}"
  # Page listings default to deleted_after = 2 (shifting pages); 1 makes the 1% deletes events now.
  deleted_after = 1
"#
    )
}

// ─────────────────────────── stage sum (in process) ───────────────────────────

/// The poll's stages timed in this process on the data the child gets: what the poll would take
/// with no HTTP, no process start and no orchestration.
#[derive(Debug, Default, Clone, Copy)]
struct Stages {
    load: Duration,
    parse: Duration,
    normalize: Duration,
    diff: Duration,
    events: Duration,
    commit: Duration,
}

impl Stages {
    fn sum(&self) -> Duration {
        self.load + self.parse + self.normalize + self.diff + self.events + self.commit
    }
}

fn stage_sum(store: &Store, listing: &Listing, emit: bool) -> Stages {
    let mut st = Stages::default();
    let t = Instant::now();
    let state = block_on(store.resource_state("bench", "items")).expect("state");
    let version = state.version;
    let snapshot = block_on(store.snapshot("bench", "items", state.item_count)).expect("snapshot");
    st.load = t.elapsed();
    let baseline = snapshot.is_empty() && !emit;
    let mut differ = Differ::<Value>::with_known(snapshot);
    let mut normalizer = Normalizer::new(vec!["id".parse().expect("path")], Vec::new());
    let pages = listing.len().div_ceil(PER_PAGE) + 1;
    let mut buf = Vec::with_capacity(PER_PAGE as usize * 600);
    for page in 1..=pages {
        buf.clear();
        listing.write_page(page, PER_PAGE, &mut buf);
        let t = Instant::now();
        let items = match serde_json::from_slice::<Value>(&buf).expect("page") {
            Value::Array(items) => items,
            _ => unreachable!(),
        };
        st.parse += t.elapsed();
        let t = Instant::now();
        let records: Vec<_> = items
            .into_iter()
            .map(|v| normalizer.record(v).expect("record"))
            .collect();
        st.normalize += t.elapsed();
        let t = Instant::now();
        for r in records {
            differ.push(r);
        }
        st.diff += t.elapsed();
    }
    let t = Instant::now();
    let diff = differ.finish(
        true,
        DeleteGuard {
            max_ratio: 0.5,
            accepted: false,
            after: 1,
        },
    );
    st.diff += t.elapsed();
    let now = Utc::now();
    let t = Instant::now();
    let events: Vec<Event> = if baseline {
        Vec::new()
    } else {
        let ids: Vec<String> = diff
            .changes
            .iter()
            .filter(|c| !matches!(c, Change::Created(_)))
            .map(|c| c.id().to_owned())
            .collect();
        let mut previous = block_on(store.snapshot_bodies("bench", "items", ids)).expect("bodies");
        diff.changes
            .iter()
            .map(|c| {
                Event::from_change(
                    "bench",
                    "items",
                    c,
                    previous.remove(c.id()).map(|p| p.value()),
                    &[],
                    now,
                )
            })
            .collect()
    };
    st.events = t.elapsed();
    let t = Instant::now();
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    for c in &diff.changes {
        match c {
            Change::Created(r) | Change::Updated(r) => upserts.push(SnapshotRow {
                id: r.id.clone(),
                hash: r.hash,
                raw: None,
                body: r.body.to_string(),
            }),
            Change::Deleted { id } => deletes.push(id.clone()),
        }
    }
    block_on(store.commit_poll(PollCommit {
        source: "bench".into(),
        resource: "items".into(),
        upserts: Box::new(upserts),
        rehashed: Vec::new(),
        deletes,
        events,
        listed: diff.listed,
        held: None,
        complete: true,
        duration: Duration::ZERO,
        at: now,
        alert_after: 0,
        missing: Vec::new(),
        found: Vec::new(),
        since_cursor: None,
        pages: None,
        version,
    }))
    .expect("commit");
    st.commit = t.elapsed();
    st
}

// ─────────────────────────── report helpers ───────────────────────────

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn rate(n: f64, d: Duration) -> String {
    let r = n / d.as_secs_f64().max(1e-9);
    if r >= 1e3 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

fn mb(kb: i64) -> String {
    format!("{:.0} MB", kb as f64 / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn db_count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(-1)
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    done()
}

// ─────────────────────────── sections ───────────────────────────

fn poll_section(b: &Bench, opts: &Opts, receiver: &Receiver) {
    println!("\n## Poll (page style, {PER_PAGE} items per page, ~560-byte items)\n");
    println!(
        "| N | poll | wall | CPU (user+sys) | peak RSS | items/s | fake API CPU | stage sum (in process) | wall / stage sum | events |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut details = Vec::new();
    for &n in &opts.sizes {
        let api = b.rt.block_on(start_api(&b.rt, n));
        let db = b.dir.path().join(format!("poll-{n}.db"));
        let config = b.write_config(
            &format!("poll-{n}.toml"),
            &config_text(
                &db,
                &api.url,
                &resource("items", r#"every = "1h""#, "baseline", ""),
                &receiver.url,
                1,
                "",
            ),
        );
        let inproc = Store::open(&b.dir.path().join(format!("inproc-{n}.db"))).expect("store");
        block_on(inproc.reconcile_endpoints(&[])).expect("no endpoints in process");
        // The in-process store gets the same endpoint the child has, so its commit writes deliveries.
        {
            let cfg = pollhook::config::Config::load(&config);
            if let Ok(cfg) = cfg {
                block_on(inproc.reconcile_endpoints(&cfg.endpoints)).expect("endpoints");
            }
        }
        for (label, churn) in [("(a) baseline", false), ("(b) 1%/1%/1% changed", true)] {
            if churn {
                api.listing
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .churn_one_percent();
            }
            let events_before = db_count(&db, "SELECT count(*) FROM events");
            let api_cpu = self_cpu();
            let usage = b.run_once(
                &config,
                &["poll", "bench.items"],
                &format!("poll-{n}-{}.log", if churn { "b" } else { "a" }),
            );
            let api_cpu = self_cpu() - api_cpu;
            let events = db_count(&db, "SELECT count(*) FROM events") - events_before.max(0);
            let stages = {
                let listing = api.listing.read().unwrap_or_else(|e| e.into_inner());
                stage_sum(&inproc, &listing, false)
            };
            let items = api.listing.read().map(|l| l.len()).unwrap_or(n);
            println!(
                "| {n} | {label} | {} | {} | {} | {} | {} | {} | {:.2}× | {events} |{}",
                secs(usage.wall),
                secs(usage.cpu()),
                mb(usage.max_rss_kb),
                rate(items as f64, usage.wall),
                secs(api_cpu),
                secs(stages.sum()),
                usage.wall.as_secs_f64() / stages.sum().as_secs_f64(),
                if usage.ok { "" } else { " FAILED" }
            );
            details.push((n, label, stages));
        }
    }
    println!("\nStage sum breakdown (in process, same data, same run):\n");
    println!(
        "| N | poll | load snapshot | parse pages | normalize | diff | events (+previous) | commit | sum |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (n, label, s) in details {
        println!(
            "| {n} | {label} | {} | {} | {} | {} | {} | {} | {} |",
            ms(s.load),
            ms(s.parse),
            ms(s.normalize),
            ms(s.diff),
            ms(s.events),
            ms(s.commit),
            ms(s.sum())
        );
    }
}

/// Every pagination style over the same items: (source, resource, pagination and items settings).
const STYLES: [(&str, &str); 8] = [
    ("bench.page", "page"),
    ("bench.offset", "offset"),
    ("bench.link", "link-header"),
    ("bench.next", "next-url"),
    ("bench.cursor", "cursor (has_more)"),
    ("execnd.items", "exec (JSON lines)"),
    ("execarr.items", "exec (JSON array)"),
    ("gql.items", "GraphQL"),
];

fn styles_config(db: &Path, api: &str, files: &Path) -> String {
    let resource = |name: &str, path: &str, extra: &str| {
        format!(
            r#"
  [[sources.resources]]
  name = "{name}"
  path = "{path}"
  every = "1h"
  initial = "baseline"
  deleted_after = 1
  {extra}
"#
        )
    };
    let mut text = format!(
        r#"[storage]
path = "{db}"

[server]
listen = "127.0.0.1:0"

[[sources]]
name = "bench"
adapter = "rest"
base_url = "{api}"
timeout = "120s"
"#,
        db = db.display()
    );
    text += &resource(
        "page",
        "/items",
        &format!(
            r#"pagination = {{ style = "page", page_param = "page", size_param = "per_page", size = {PER_PAGE}, first = 1 }}"#
        ),
    );
    text += &resource(
        "offset",
        "/offset",
        &format!(
            r#"pagination = {{ style = "offset", offset_param = "offset", limit_param = "limit", size = {PER_PAGE} }}"#
        ),
    );
    text += &resource("link", "/link", r#"pagination = { style = "link-header" }"#);
    text += &resource(
        "next",
        "/next",
        "items = \"$.data\"\n  pagination = { style = \"next-url\", next_url = \"$.next\" }",
    );
    text += &resource(
        "cursor",
        "/cursor",
        "items = \"$.data\"\n  pagination = { style = \"cursor\", cursor_param = \"starting_after\", next_cursor = \"$.data[-1].id\", has_more = \"$.has_more\" }",
    );
    for (name, file) in [("execnd", "items.ndjson"), ("execarr", "items.json")] {
        text += &format!(
            r#"
[[sources]]
name = "{name}"
adapter = "exec"
command = ["cat", "{}"]
timeout = "120s"
max_page_bytes = 4000000000
"#,
            files.join(file).display()
        );
        text += &resource("items", "", "");
    }
    text += &format!(
        r#"
[[sources]]
name = "gql"
adapter = "graphql"
base_url = "{api}/graphql"
timeout = "120s"
"#
    );
    text += &resource(
        "items",
        "",
        "document = \"query($after: String) { items(after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }\"\n  items = \"$.data.items.nodes\"\n  pagination = { style = \"cursor\", cursor_param = \"after\", next_cursor = \"$.data.items.pageInfo.endCursor\", has_more = \"$.data.items.pageInfo.hasNextPage\" }",
    );
    text
}

/// What the exec sources print: the listing as JSON lines and as one JSON array.
fn write_exec_files(listing: &Listing, files: &Path) {
    let mut array = Vec::with_capacity(listing.len() as usize * 600);
    listing.write_listed(0, usize::MAX, &mut array);
    let mut lines = Vec::with_capacity(array.len());
    for id in listing.live() {
        item::write_item(&mut lines, id, listing.version(id));
        lines.push(b'\n');
    }
    std::fs::write(files.join("items.json"), array).expect("write exec array");
    std::fs::write(files.join("items.ndjson"), lines).expect("write exec lines");
}

/// The same N items in every pagination style, polled in alternation: a baseline, then a poll
/// after 1% created/updated/deleted, each as a ratio to `page` in the same round.
fn styles_section(b: &Bench, opts: &Opts) {
    let n = opts.style_items;
    println!(
        "\n## Pagination styles ({n} items, {PER_PAGE} per page, {} rounds, wall time; ratio to `page` in the same round)\n",
        opts.style_rounds
    );
    let api = b.rt.block_on(start_api(&b.rt, n));
    let files = b.dir.path().join("styles");
    std::fs::create_dir_all(&files).expect("styles dir");
    // [style][baseline | changed] → per-round wall seconds
    let mut walls = vec![[Vec::new(), Vec::new()]; STYLES.len()];
    for round in 0..opts.style_rounds {
        *api.listing.write().unwrap_or_else(|e| e.into_inner()) = Listing::prepared(n);
        let db = b.dir.path().join(format!("styles-{round}.db"));
        let config = b.write_config(
            &format!("styles-{round}.toml"),
            &styles_config(&db, &api.url, &files),
        );
        for (phase, churn) in [(0, false), (1, true)] {
            {
                let mut listing = api.listing.write().unwrap_or_else(|e| e.into_inner());
                if churn {
                    listing.churn_one_percent();
                }
                write_exec_files(&listing, &files);
            }
            // Alternate the order from round to round, so no style always runs first.
            let mut order: Vec<usize> = (0..STYLES.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let (target, _) = STYLES[i];
                let usage = b.run_once(
                    &config,
                    &["poll", target],
                    &format!("styles-{round}-{phase}-{i}.log"),
                );
                if !usage.ok {
                    eprintln!("styles: {target} failed in round {round}");
                }
                walls[i][phase].push(usage.wall.as_secs_f64());
            }
        }
        eprintln!("styles: round {} of {} done", round + 1, opts.style_rounds);
    }
    let stats = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    println!(
        "| style | baseline min / median | ratio to page (median of rounds) | 1% changed min / median | ratio to page (median of rounds) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for ((_, label), phases) in STYLES.iter().zip(&walls) {
        let mut cells = Vec::new();
        for (phase, page) in phases.iter().zip(&walls[0]) {
            let (min, median) = stats(phase);
            let ratios: Vec<f64> = phase.iter().zip(page).map(|(w, p)| w / p).collect();
            let (_, ratio) = stats(&ratios);
            cells.push(format!("{min:.2} s / {median:.2} s | {ratio:.2}×"));
        }
        println!("| {label} | {} | {} |", cells[0], cells[1]);
    }
}

fn delivery_section(b: &Bench, opts: &Opts, receiver: &Receiver) {
    println!(
        "\n## Delivery ({} deliveries per row, standard-webhooks, loopback receiver answering 204)\n",
        opts.deliveries
    );
    println!(
        "| endpoints | events queued | queue poll wall | run: first→last receipt | deliveries/s | run start→last | run CPU | run peak RSS | received (dupes) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &e in &opts.endpoints {
        let m = (opts.deliveries / e).max(1);
        let total = (m * e) as usize;
        let api = b.rt.block_on(start_api(&b.rt, m));
        let db = b.dir.path().join(format!("deliver-{e}.db"));
        let config = b.write_config(
            &format!("deliver-{e}.toml"),
            &config_text(
                &db,
                &api.url,
                // Far-off cron: `run` delivers what is queued and does not poll meanwhile.
                &resource("items", r#"schedule = "0 0 1 1 *""#, "emit", ""),
                &receiver.url,
                e,
                "",
            ),
        );
        let queue = b.run_once(
            &config,
            &["poll", "bench.items"],
            &format!("deliver-{e}-poll.log"),
        );
        receiver.take();
        let spawn_us = now_us();
        let child = b.spawn(&config, &["run"], &format!("deliver-{e}-run.log"));
        let done = wait_until(Duration::from_secs(300), || {
            receiver.count.load(Ordering::Relaxed) >= total
        });
        // A moment for outcomes to be committed, so a restart would not redeliver.
        std::thread::sleep(Duration::from_millis(300));
        let usage = stop(child);
        let hits = receiver.take();
        let start_us = hits.iter().map(|h| h.at_us).min().unwrap_or(0);
        let end_us = hits.iter().map(|h| h.at_us).max().unwrap_or(0);
        let span = Duration::from_micros((end_us - start_us).max(1) as u64);
        let unique: HashSet<(&str, &str)> = hits
            .iter()
            .filter_map(|h| Some((h.event_id.as_deref()?, h.endpoint.as_deref()?)))
            .collect();
        let run_to_last = Duration::from_micros((end_us - spawn_us).max(0) as u64);
        println!(
            "| {e} | {m} | {} | {} | {} | {} | {} | {} | {}{} ({}) |",
            secs(queue.wall),
            secs(span),
            rate(hits.len().saturating_sub(1) as f64, span),
            secs(run_to_last),
            secs(usage.cpu()),
            mb(usage.max_rss_kb),
            hits.len(),
            if done { "" } else { " TIMED OUT" },
            hits.len() - unique.len(),
        );
    }
    // The bare client, same receiver, same run.
    let n = opts.deliveries as usize;
    let body = vec![b'x'; 1024];
    receiver.take();
    let cpu = self_cpu();
    let elapsed = b.rt.block_on(bare_reqwest(&receiver.url, n, 16, body));
    let cpu = self_cpu() - cpu;
    receiver.take();
    println!(
        "\nBare reqwest client, 1 KiB bodies, 16 in flight, same receiver: {n} POSTs in {} = {} (client + receiver CPU {})",
        secs(elapsed),
        rate(n as f64, elapsed),
        secs(cpu)
    );
}

async fn bare_reqwest(url: &str, n: usize, inflight: usize, body: Vec<u8>) -> Duration {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{url}/bare");
    let body = Bytes::from(body);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..inflight {
        let (client, next, url, body) = (client.clone(), next.clone(), url.clone(), body.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("post");
                assert!(r.status().is_success());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    started.elapsed()
}

fn latency_section(b: &Bench, opts: &Opts, receiver: &Receiver) {
    let n = 1_000;
    println!(
        "\n## Detection → receipt latency (`pollhook run`, 1 resource of {n} items polled every 1 s, 10 items updated every 500 ms, 1 endpoint, {} s)\n",
        opts.latency_secs
    );
    let api = b.rt.block_on(start_api(&b.rt, n));
    let db = b.dir.path().join("latency.db");
    let config = b.write_config(
        "latency.toml",
        &config_text(
            &db,
            &api.url,
            &resource("items", "every = \"1s\"\n  jitter = \"0s\"", "baseline", ""),
            &receiver.url,
            1,
            "",
        ),
    );
    receiver.take();
    receiver.parse_bodies.store(true, Ordering::Relaxed);
    let child = b.spawn(&config, &["run"], "latency-run.log");
    // Let the baseline land first.
    std::thread::sleep(Duration::from_millis(1500));
    let until = Instant::now() + Duration::from_secs(opts.latency_secs);
    let mut next_id = 0u64;
    while Instant::now() < until {
        {
            let mut l = api.listing.write().unwrap_or_else(|e| e.into_inner());
            for _ in 0..10 {
                *l.versions.entry(next_id % n).or_default() += 1;
                next_id += 7;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let usage = stop(child);
    receiver.parse_bodies.store(false, Ordering::Relaxed);
    let hits = receiver.take();
    // The events table's detected_at column is stamped inside commit_poll: commit → receipt.
    let committed: HashMap<String, i64> = rusqlite::Connection::open(&db)
        .and_then(|c| {
            let mut s = c.prepare("SELECT id, detected_at FROM events")?;
            let rows = s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            rows.collect()
        })
        .unwrap_or_default();
    let mut from_detect: Vec<f64> = hits
        .iter()
        .filter_map(|h| Some((h.at_us - h.detected_us?) as f64 / 1e3))
        .collect();
    let mut from_commit: Vec<f64> = hits
        .iter()
        .filter_map(|h| {
            let c = committed.get(h.event_id.as_deref()?)?;
            Some((h.at_us - c * 1000) as f64 / 1e3)
        })
        .collect();
    from_detect.sort_by(f64::total_cmp);
    from_commit.sort_by(f64::total_cmp);
    println!("| measured from | events | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (label, v) in [
        ("event `detected_at` (the poll's start)", &from_detect),
        ("commit (`events.detected_at` column)", &from_commit),
    ] {
        println!(
            "| {label} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            v.len(),
            percentile(v, 50.0),
            percentile(v, 99.0),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
    println!(
        "\n`pollhook run` CPU over the run: {} in {} ({:.1}% of one core), peak RSS {}.",
        secs(usage.cpu()),
        secs(usage.wall),
        100.0 * usage.cpu().as_secs_f64() / usage.wall.as_secs_f64(),
        mb(usage.max_rss_kb)
    );
}

fn idle_section(b: &Bench, opts: &Opts, receiver: &Receiver) {
    let k = opts.idle_resources;
    println!(
        "\n## Idle cost (`pollhook run`, nothing changing, {} s window after warm-up)\n",
        opts.idle_secs
    );
    println!(
        "| configuration | polls (requests) in window | CPU in window | % of one core | CPU per poll | peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let api = b.rt.block_on(start_api(&b.rt, opts.idle_items));
    let everies = std::env::var("E2E_IDLE_EVERY").unwrap_or_else(|_| "5s,1m".into());
    // `E2E_IDLE_TOTAL=1`: the listing ends at the `X-Total-Count` the API states, one request a
    // poll fewer (a binary from before `total_header` refuses the config).
    let total = std::env::var("E2E_IDLE_TOTAL").as_deref() == Ok("1");
    let paging = if total {
        r#", total_header = "X-Total-Count""#
    } else {
        ""
    };
    let mut cases: Vec<(String, String)> = everies
        .split(',')
        .map(|every| {
            (
                format!("{k} resources × {} items, every {every}", opts.idle_items),
                (0..k)
                    .map(|i| {
                        resource(
                            &format!("r{i:03}"),
                            &format!(r#"every = "{every}""#),
                            "baseline",
                            &format!(r#"query = {{ shard = "{i}" }}"#),
                        )
                        .replace("first = 1 }", &format!("first = 1{paging} }}"))
                    })
                    .collect(),
            )
        })
        .collect();
    if std::env::var("E2E_IDLE_FLOOR").as_deref() != Ok("0") {
        cases.push((
            "floor: 1 resource, never due (cron)".to_owned(),
            resource("r000", r#"schedule = "0 0 1 1 *""#, "baseline", ""),
        ));
    }
    for (label, resources) in cases {
        let db = b.dir.path().join(format!("idle-{}.db", label.len()));
        let config = b.write_config(
            "idle.toml",
            &config_text(&db, &api.url, &resources, &receiver.url, 1, ""),
        );
        let child = b.spawn(&config, &["run"], "idle-run.log");
        // Warm-up: start, baselines, first steady polls.
        std::thread::sleep(Duration::from_secs(12));
        let pid = child.pid;
        let cpu0 = proc_cpu(pid);
        let req0 = api.requests.load(Ordering::Relaxed);
        let polls0 = api.polls.load(Ordering::Relaxed);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(opts.idle_secs));
        let cpu = proc_cpu(pid) - cpu0;
        let window = t0.elapsed();
        let requests = api.requests.load(Ordering::Relaxed) - req0;
        let polls = api.polls.load(Ordering::Relaxed) - polls0;
        let usage = stop(child);
        println!(
            "| {label} | {polls} ({requests}) | {} | {:.2}% | {} | {} |",
            secs(cpu),
            100.0 * cpu.as_secs_f64() / window.as_secs_f64(),
            if polls > 0 {
                format!("{:.2} ms", cpu.as_secs_f64() * 1e3 / polls as f64)
            } else {
                "–".into()
            },
            mb(usage.max_rss_kb)
        );
    }
}

// ─────────────────────────── main ───────────────────────────

fn pollhook_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("POLLHOOK_BIN") {
        return bin.into();
    }
    // target/release/deps/e2e-… → target/release/pollhook
    let exe = std::env::current_exe().expect("current exe");
    let release = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/release")
        .to_owned();
    let bin = release.join("pollhook");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("e2e: building the release binary (cargo build --release --bin pollhook)…");
    let built = Command::new(cargo)
        .args(["build", "--release", "--bin", "pollhook", "--quiet"])
        .status();
    if !matches!(built, Ok(s) if s.success()) {
        eprintln!(
            "e2e: the build failed; using the binary already at {}",
            bin.display()
        );
    }
    assert!(
        bin.exists(),
        "no pollhook binary at {}: run `cargo build --release` first or set POLLHOOK_BIN",
        bin.display()
    );
    bin
}

fn main() {
    let opts = Opts::get();
    let bin = pollhook_binary();
    let base = std::env::var_os("BENCH_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).expect("bench dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let b = Bench {
        bin,
        dir: tempfile::Builder::new()
            .prefix("pollhook-e2e-")
            .tempdir_in(base)
            .expect("tempdir"),
        rt,
    };
    let receiver = b.rt.block_on(start_receiver());
    let started = Instant::now();
    println!(
        "# pollhook e2e ({} cores, binary {}, databases in {})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        b.bin.display(),
        b.dir.path().display()
    );
    let _ = std::io::stdout().flush();
    if opts.runs("poll") {
        poll_section(&b, &opts, &receiver);
    }
    if opts.runs("styles") {
        styles_section(&b, &opts);
    }
    if opts.runs("delivery") {
        delivery_section(&b, &opts, &receiver);
    }
    if opts.runs("latency") {
        latency_section(&b, &opts, &receiver);
    }
    if opts.runs("idle") {
        idle_section(&b, &opts, &receiver);
    }
    println!("\n(e2e total {})", secs(started.elapsed()));
    if std::env::var_os("E2E_KEEP").is_some() {
        let Bench { dir, .. } = b;
        println!(
            "(databases, configs and logs kept in {})",
            dir.keep().display()
        );
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
