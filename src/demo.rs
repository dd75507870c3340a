//! The demo: the whole flow on this machine, for a first look, with nothing to install.
//!
//! In: nothing. Out: a fake "shop" API on loopback whose orders change every couple of seconds, a
//! receiver on loopback that verifies and prints every webhook, and the real pipeline (config
//! parsing, polling, diffing, SQLite outbox, signing, delivery) between them.
//!
//! [`FakeShop`] and [`Receiver`] are also what the integration tests use.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use rand::Rng;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::sign::{self, Scheme};

/// A json-server-like shop API: `GET /orders?_page=N&_limit=M` with a `Link` header and the
/// listing's length in `X-Total-Count`.
#[derive(Clone)]
pub struct FakeShop {
    orders: Arc<Mutex<Vec<Value>>>,
    next_id: Arc<Mutex<u64>>,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
}

#[derive(serde::Deserialize)]
struct PageQuery {
    #[serde(rename = "_page")]
    page: Option<usize>,
    #[serde(rename = "_limit")]
    limit: Option<usize>,
}

const STATUSES: [&str; 4] = ["open", "paid", "packed", "shipped"];

impl FakeShop {
    /// Starts the API on `127.0.0.1` with `n` orders.
    pub async fn start(n: u64) -> std::io::Result<FakeShop> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let orders = (1..=n).map(|i| order(1000 + i, "open")).collect();
        let shop = FakeShop {
            orders: Arc::new(Mutex::new(orders)),
            next_id: Arc::new(Mutex::new(1000 + n + 1)),
            url,
        };
        let app = Router::new()
            .route("/orders", get(list_orders))
            .with_state(shop.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(shop)
    }

    /// Makes one random change: a new order, an order moving on, or a cancelled order vanishing.
    pub fn churn(&self) -> String {
        let mut rng = rand::rng();
        let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        let roll = rng.random_range(0..10);
        if orders.len() < 3 || roll < 3 {
            let mut next = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
            let id = *next;
            *next += 1;
            orders.push(order(id, "open"));
            return format!("order {id} placed");
        }
        let at = rng.random_range(0..orders.len());
        if roll < 8 {
            let status = orders[at]["status"].as_str().unwrap_or("open");
            let i = STATUSES.iter().position(|s| *s == status).unwrap_or(0);
            if i + 1 < STATUSES.len() {
                let new = STATUSES[i + 1];
                orders[at]["status"] = json!(new);
                orders[at]["updated_at"] = json!(crate::event::timestamp(chrono::Utc::now()));
                return format!("order {} is now {new}", orders[at]["id"]);
            }
        }
        let gone = orders.remove(at);
        format!("order {} cancelled", gone["id"])
    }
}

fn order(id: u64, status: &str) -> Value {
    json!({
        "id": id,
        "status": status,
        "customer": {"name": format!("Customer {}", id % 7), "country": "DK"},
        "total": ((id * 37) % 500) as f64 + 0.95,
        "updated_at": crate::event::timestamp(chrono::Utc::now()),
    })
}

async fn list_orders(
    State(shop): State<FakeShop>,
    Query(q): Query<PageQuery>,
) -> impl IntoResponse {
    let orders = shop
        .orders
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let limit = q.limit.unwrap_or(orders.len().max(1));
    let page = q.page.unwrap_or(1).max(1);
    let start = (page - 1) * limit;
    let items: Vec<Value> = orders.iter().skip(start).take(limit).cloned().collect();
    let mut headers = HeaderMap::new();
    // As json-server 0.17 does when asked for a slice (`_page`, `_limit`).
    headers.insert("x-total-count", orders.len().into());
    if start + limit < orders.len()
        && let Ok(v) = format!(
            "<{}/orders?_page={}&_limit={limit}>; rel=\"next\"",
            shop.url,
            page + 1
        )
        .parse()
    {
        headers.insert("link", v);
    }
    (headers, axum::Json(items))
}

/// One webhook as a receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path it was POSTed to.
    pub path: String,
    /// Request headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on loopback that records every request and answers with a status the test
/// (or demo) chooses.
#[derive(Clone)]
pub struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<Mutex<u16>>,
    delay: Arc<Mutex<Duration>>,
    on_receive: Arc<dyn Fn(&Received) + Send + Sync>,
    /// Base URL.
    pub url: String,
}

impl Receiver {
    /// Starts a receiver answering 204.
    pub async fn start() -> std::io::Result<Receiver> {
        Self::start_with(|_| {}).await
    }

    /// Starts a receiver that also calls `on_receive` for each request.
    pub async fn start_with(
        on_receive: impl Fn(&Received) + Send + Sync + 'static,
    ) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let receiver = Receiver {
            received: Arc::default(),
            status: Arc::new(Mutex::new(204)),
            delay: Arc::default(),
            on_receive: Arc::new(on_receive),
            url: format!("http://{addr}"),
        };
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(receiver)
    }

    /// The status to answer from now on.
    pub fn answer(&self, status: u16) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// How long to wait before answering, from now on.
    pub fn delay(&self, delay: Duration) {
        *self.delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

async fn receive(
    State(r): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let got = Received {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
    };
    (r.on_receive)(&got);
    r.received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(got);
    let delay = *r.delay.lock().unwrap_or_else(|e| e.into_inner());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = *r.status.lock().unwrap_or_else(|e| e.into_inner());
    StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT)
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A loopback server could not start.
    #[error("cannot start the demo's local servers: {0}")]
    Io(#[from] std::io::Error),
    /// The generated config was refused (a bug).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The pipeline failed.
    #[error(transparent)]
    Run(#[from] crate::RunError),
}

/// Runs the demo until `shutdown` completes or `limit` passes.
pub async fn run(
    limit: Option<Duration>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DemoError> {
    let shop = FakeShop::start(5).await?;
    let app_secret = sign::generate_secret(Scheme::StandardWebhooks);
    let erp_secret = sign::generate_secret(Scheme::Jwt);
    let keys = Arc::new((
        sign::decode_secret(Scheme::StandardWebhooks, &app_secret).unwrap_or_default(),
        sign::decode_secret(Scheme::Jwt, &erp_secret).unwrap_or_default(),
    ));
    let receiver = Receiver::start_with(move |r| print_webhook(r, &keys)).await?;
    let dir = tempfile_dir()?;
    let config_file = dir.join("pollhook.toml");
    // The secrets are written into the file, not referenced as `${VAR}`, so the printed command
    // works in any shell. They are this run's own, and their receiver ends with the demo.
    let text = format!(
        r#"# Written by `pollhook demo` for this run, so its database can be inspected afterwards:
#   pollhook --config {config_file} events list
# (also deliveries list, status, events show ID). Its fake shop and receiver end with the demo.

[storage]
path = "demo.db"                      # beside this file

[[sources]]
name = "shop"
adapter = "json-server"
base_url = "{shop}"

  [[sources.resources]]
  name = "orders"
  every = "2s"
  jitter = "0s"
  ignore = ["updated_at"]

[delivery]
allow_http = true
allow_networks = ["127.0.0.0/8"]
retries = ["1s", "2s", "5s"]

[[endpoints]]
name = "app"
url = "{receiver}/hooks/app"
secret = "{app_secret}"
signing = "standard-webhooks"

[[endpoints]]
name = "erp"
url = "{receiver}/hooks/erp"
secret = "{erp_secret}"
signing = "jwt"
actions = ["created"]
"#,
        config_file = shell_word(&config_file),
        shop = shop.url,
        receiver = receiver.url,
    );
    write_private(&config_file, &text)?;
    let config = Config::parse(&config_file, &text, &BTreeMap::new())?;
    let inspect = format!("pollhook --config {} events list", shell_word(&config_file));

    println!("pollhook demo");
    println!(
        "  fake shop API   {}/orders   (json-server style; its orders change every 2 s)",
        shop.url
    );
    println!(
        "  receiver        {}/hooks/app (standard-webhooks, every change)",
        receiver.url
    );
    println!(
        "                  {}/hooks/erp (jwt, created only)",
        receiver.url
    );
    println!("  database        {}", dir.join("demo.db").display());
    println!("  config          {}", config_file.display());
    println!(
        "The first poll records a baseline; every change after it arrives below, verified. Ctrl-C stops.\n"
    );

    let churn = {
        let shop = shop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                println!("  shop: {}", shop.churn());
            }
        })
    };
    let stop = async {
        match limit {
            Some(limit) => {
                tokio::select! { () = shutdown => {}, () = tokio::time::sleep(limit) => {} }
            }
            None => shutdown.await,
        }
    };
    let result = crate::run(config, stop).await;
    churn.abort();
    println!(
        "\n{} webhook(s) received. Database kept at {}; inspect it with:\n  {inspect}",
        receiver.received().len(),
        dir.join("demo.db").display()
    );
    Ok(result?)
}

/// Writes the demo's config readable by its owner only: it holds the run's signing secrets.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, text.as_bytes())
}

/// `path` as one word a POSIX shell reads back unchanged: bare if it is plain, else single-quoted.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("pollhook-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn print_webhook(r: &Received, keys: &(Vec<u8>, Vec<u8>)) {
    let (scheme, key, who) = if r.path.ends_with("/erp") {
        (Scheme::Jwt, &keys.1, "erp")
    } else {
        (Scheme::StandardWebhooks, &keys.0, "app")
    };
    let now = chrono::Utc::now().timestamp();
    match sign::verify(scheme, &[key.as_slice()], &r.headers, &r.body, now, 300) {
        Ok(verified) => {
            let e = &verified.event;
            let detail = match e["action"].as_str() {
                Some("updated") => e["changes"]
                    .as_array()
                    .map(|ops| {
                        ops.iter()
                            .map(|op| {
                                format!(
                                    "{} {} {}",
                                    op["op"].as_str().unwrap_or(""),
                                    op["path"].as_str().unwrap_or(""),
                                    op.get("value").map(Value::to_string).unwrap_or_default()
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
                Some("created") => format!("status {}", e["data"]["status"]),
                _ => String::new(),
            };
            println!(
                "  → {who:<3} ✓ {:<17} {:<15} id {:<5} {detail}",
                scheme.as_str(),
                e["type"].as_str().unwrap_or("?"),
                e["resource_id"].as_str().unwrap_or("?"),
            );
        }
        Err(error) => println!("  → {who:<3} ✗ signature check failed: {error}"),
    }
}
