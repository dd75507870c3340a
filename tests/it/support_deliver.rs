//! Helpers for the delivery and CLI tests: a shop whose items a test edits, a scripted webhook
//! receiver that can hold requests, the pipeline running in-process, and `eventually`.
//!
//! `pollhook::demo::{FakeShop, Receiver}` cover the plain cases; the two servers here exist for
//! what they cannot do: change one chosen item (`Shop`), decide each response from the request
//! and keep a request hanging until the test lets it go (`Hook`).

use crate::common::block_on;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{get, post};
use pollhook::config::Config;
use pollhook::demo::Received;
use pollhook::event::Event;
use pollhook::store::{DeliveryFilter, DeliveryRow, EventFilter, Store};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// How long `eventually` waits by default: generous, so a loaded machine does not fail a test.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `check` every 20 ms until it returns `Some`, for at most [`PATIENCE`].
pub async fn eventually<T>(what: impl Display, check: impl FnMut() -> Option<T>) -> T {
    eventually_within(PATIENCE, what, check).await
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `timeout`; panics naming `what`.
pub async fn eventually_within<T>(
    timeout: Duration,
    what: impl Display,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ───────────────────────────── a shop the test edits ─────────────────────────────

/// A json-server-like `GET /orders` whose items the test sets one by one. It ignores paging
/// parameters and never sends a `Link` header, so any listing is one complete page.
#[derive(Clone)]
pub struct Shop {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    items: Arc<Mutex<BTreeMap<u64, Value>>>,
}

impl Shop {
    /// Starts the API with orders `ids`, all `open`.
    pub async fn start(ids: impl IntoIterator<Item = u64>) -> Shop {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shop = Shop {
            url: format!("http://{}", listener.local_addr().unwrap()),
            items: Arc::default(),
        };
        for id in ids {
            shop.set(id, "open");
        }
        let app = Router::new()
            .route("/orders", get(list))
            .with_state(shop.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        shop
    }

    /// Adds order `id`, or changes its status.
    pub fn set(&self, id: u64, status: &str) {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, json!({"id": id, "status": status}));
    }
}

async fn list(State(shop): State<Shop>) -> axum::Json<Vec<Value>> {
    let items = shop.items.lock().unwrap_or_else(|e| e.into_inner());
    axum::Json(items.values().cloned().collect())
}

/// `[storage]` in the config's directory, and `[server]` on a free port so that pipelines can
/// run side by side.
pub fn storage_and_server() -> &'static str {
    "[storage]\npath = \"pollhook.db\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n"
}

/// A `shop` source with an `orders` resource at `url` (a [`Shop`] or a `demo::FakeShop`), polled
/// every 200 ms, every item emitted as `created` on the first poll.
pub fn shop_source(url: &str) -> String {
    format!(
        r#"
[[sources]]
name = "shop"
adapter = "json-server"
base_url = "{url}"

  [[sources.resources]]
  name = "orders"
  every = "200ms"
  jitter = "0s"
  initial = "emit"
"#
    )
}

/// `[delivery]` open to loopback over http, with `extra` lines (retries, timeout, …).
pub fn loopback_delivery(extra: &str) -> String {
    format!("\n[delivery]\nallow_http = true\nallow_networks = [\"127.0.0.0/8\"]\n{extra}\n")
}

/// One `[[endpoints]]` table.
pub fn endpoint(name: &str, url: &str, signing: &str, secret: &str) -> String {
    format!(
        "\n[[endpoints]]\nname = \"{name}\"\nurl = \"{url}\"\nsigning = \"{signing}\"\nsecret = \"{secret}\"\n"
    )
}

// ───────────────────────────── a scripted receiver ─────────────────────────────

/// One request a [`Hook`] got, and what it answered.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The request.
    pub request: Received,
    /// The status chosen for it when it arrived.
    pub status: u16,
    /// Whether the response has been released (false while the hook holds it).
    pub answered: bool,
}

impl Exchange {
    /// A request header.
    pub fn header(&self, name: &str) -> &str {
        self.request.header(name).unwrap_or_default()
    }
}

type Respond = dyn Fn(&Received) -> u16 + Send + Sync;

/// A webhook receiver on loopback that picks each response's status from the request, and
/// holds every response while [`Hook::hold`] is on.
#[derive(Clone)]
pub struct Hook {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: Arc<Mutex<Vec<Exchange>>>,
    respond: Arc<Respond>,
    open: Arc<watch::Sender<bool>>,
}

impl Hook {
    /// Starts a receiver answering `respond(request)` to each request.
    pub async fn start(respond: impl Fn(&Received) -> u16 + Send + Sync + 'static) -> Hook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = Hook {
            url: format!("http://{}", listener.local_addr().unwrap()),
            log: Arc::default(),
            respond: Arc::new(respond),
            open: Arc::new(watch::channel(true).0),
        };
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(hook.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        hook
    }

    /// While `true`, requests are recorded but not answered; `false` releases them.
    pub fn hold(&self, hold: bool) {
        self.open.send_replace(!hold);
    }

    /// Every request so far, in arrival order.
    pub fn log(&self) -> MutexGuard<'_, Vec<Exchange>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn receive(
    State(hook): State<Hook>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let request = Received {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
    };
    let status = (hook.respond)(&request);
    let at = {
        let mut log = hook.log();
        log.push(Exchange {
            request,
            status,
            answered: false,
        });
        log.len() - 1
    };
    let mut open = hook.open.subscribe();
    let _ = open.wait_for(|open| *open).await;
    hook.log()[at].answered = true;
    StatusCode::from_u16(status).unwrap()
}

/// A switch shared between a test and a `Hook`'s respond closure.
#[derive(Clone, Default)]
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    /// A switch that starts on.
    pub fn on() -> Switch {
        Switch(Arc::new(AtomicBool::new(true)))
    }
    /// Whether it is on.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// Turns it off.
    pub fn off(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

// ───────────────────────────── the pipeline, in-process ─────────────────────────────

/// A config in a temp dir, its database, and `pollhook::run` once started.
pub struct Pipeline {
    /// Holds the config's database.
    _dir: TempDir,
    /// The parsed config.
    pub config: Config,
    /// A second connection to the database, for the test to look and act.
    pub store: Store,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), pollhook::RunError>>>,
}

impl Pipeline {
    /// Parses `text` (no `[storage]` section) with its database in a fresh temp dir, and opens
    /// the database; nothing runs yet.
    pub fn new(text: &str) -> Pipeline {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{}{text}", storage_and_server());
        let config = Config::parse(&dir.path().join("pollhook.toml"), &text, &BTreeMap::new())
            .unwrap_or_else(|e| panic!("{e}\n--- config ---\n{text}"));
        let store = Store::open(&config.storage.path).unwrap();
        Pipeline {
            _dir: dir,
            config,
            store,
            stop: None,
            task: None,
        }
    }

    /// Parses `text` and starts `pollhook::run` on it.
    pub fn start(text: &str) -> Pipeline {
        let mut p = Pipeline::new(text);
        p.run();
        p
    }

    /// Starts `pollhook::run`, stopped by [`Pipeline::stop`] (or by the test's runtime ending).
    pub fn run(&mut self) {
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = rx.await;
        };
        self.task = Some(tokio::spawn(pollhook::run(self.config.clone(), shutdown)));
        self.stop = Some(tx);
    }

    /// Asks `run` to stop and checks that it returns `Ok` within its grace period.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(PATIENCE, task)
                .await
                .expect("pollhook::run stops within its grace period")
                .expect("pollhook::run does not panic");
            if let Err(e) = result {
                panic!("pollhook::run failed: {e}");
            }
        }
    }

    /// Every event, oldest first.
    pub fn events(&self) -> Vec<Event> {
        events(&self.store)
    }

    /// The deliveries of one endpoint, oldest first.
    pub fn deliveries(&self, endpoint: &str) -> Vec<DeliveryRow> {
        deliveries(&self.store, endpoint)
    }
}

/// Every event, oldest first.
pub fn events(store: &Store) -> Vec<Event> {
    let filter = EventFilter {
        limit: 10_000,
        ..EventFilter::default()
    };
    let mut events: Vec<Event> = block_on(store.events(filter))
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    events.reverse();
    events
}

/// The deliveries of one endpoint, oldest first.
pub fn deliveries(store: &Store, endpoint: &str) -> Vec<DeliveryRow> {
    let mut rows = block_on(store.deliveries(DeliveryFilter {
        endpoint: Some(endpoint.to_owned()),
        limit: 10_000,
        ..DeliveryFilter::default()
    }))
    .unwrap();
    rows.reverse();
    rows
}

/// The `Pollhook-Event-Id` of each request.
pub fn event_ids(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.header("pollhook-event-id").unwrap_or_default().to_owned())
        .collect()
}

/// Writes `text` as `pollhook.toml` in `dir` and returns its path.
pub fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("pollhook.toml");
    std::fs::write(&path, text).unwrap();
    path
}

// ───────────────────────────── the binary ─────────────────────────────

/// A `pollhook` child process, SIGKILLed when dropped so a failing test leaves nothing behind.
pub struct Child {
    process: std::process::Child,
    log: std::path::PathBuf,
}

impl Child {
    /// Whether the child's log contains `text` yet.
    pub fn logged(&self, text: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|log| log.contains(text))
    }

    /// What a test waits for, shown with the child's log if the wait times out.
    pub fn waiting_for<'a>(&'a self, what: &'a str) -> impl Display + 'a {
        WithLog(what, &self.log)
    }

    /// Sends SIGTERM, as a container runtime does to stop it.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.process.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `patience` for the process to exit by itself; its exit status, or `None`.
    pub async fn exit_within(&mut self, patience: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                return Some(status);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `pollhook run --config FILE`, its log (stderr) going to `log`.
pub fn spawn_run(config: &Path, log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pollhook"))
        .args(["run", "--config"])
        .arg(config)
        .env_remove("POLLHOOK_CONFIG")
        .env_remove("POLLHOOK_STORAGE_PATH")
        .env("POLLHOOK_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    Child {
        process: child,
        log: log.to_owned(),
    }
}

/// Displays as `what`, then the log file as it is when displayed (a timeout's panic message).
struct WithLog<'a>(&'a str, &'a Path);

impl Display for WithLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = std::fs::read_to_string(self.1).unwrap_or_default();
        write!(f, "{}\n--- {} ---\n{log}", self.0, self.1.display())
    }
}
