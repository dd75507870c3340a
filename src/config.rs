//! Configuration: text → TOML → `${VAR}` interpolation → adapter merge → raw structs → a validated
//! [`Config`].
//!
//! In: a TOML file (DESIGN.md §2) and the process environment. Out: a [`Config`] whose every value
//! has been checked, or a [`ConfigError`] listing *every* problem with its key path and a hint.
//!
//! Invariant: nothing downstream re-validates. A `Config` that exists is one `pollhook run` can
//! start from: every number and duration within its documented range (`limits`), every header
//! one HTTP can send (and none an endpoint may not set), every endpoint URL outside the
//! special-purpose address ranges unless allowed. Secrets inside it are [`Secret`]s that print
//! as `***`.
//!
//! Interpolation runs over the parsed TOML's string values rather than the raw text, so a secret
//! holding a quote or a newline cannot change the file's structure, and a `${VAR}` in a comment is
//! never required.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json_path::JsonPath;
use url::Url;

use crate::adapters;
use crate::endpoint::{ActionFilter, EndpointSpec, reserved_endpoint_header};
use crate::sign::{self, Scheme};

/// Where `pollhook` looks for its config when neither `--config` nor `POLLHOOK_CONFIG` is given.
pub const DEFAULT_CONFIG_FILE: &str = "pollhook.toml";

/// A string that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that needs it (a header, a signature).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// A hint safe to show an operator: `…wxyz`, the last four characters at most (a key's
    /// start is often a fixed header, a JWT's `eyJh`), behind `whsec_` for a Standard Webhooks
    /// secret; a secret shorter than 12 characters shows none.
    pub fn hint(&self) -> String {
        let (prefix, key) = match self.0.strip_prefix(sign::WHSEC_PREFIX) {
            Some(key) => (sign::WHSEC_PREFIX, key),
            None => ("", self.0.as_str()),
        };
        let chars = key.chars().count();
        let tail: String = if chars < 12 {
            String::new()
        } else {
            key.chars().skip(chars - 4).collect()
        };
        format!("{prefix}…{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// ───────────────────────────── the validated config ─────────────────────────────

/// A checked configuration: what `pollhook run` starts from.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages).
    pub file: PathBuf,
    /// SQLite database location.
    pub storage: StorageConfig,
    /// Admin API settings.
    pub server: ServerConfig,
    /// Poll scheduling limits shared by every source.
    pub poll: PollConfig,
    /// Delivery settings shared by every endpoint.
    pub delivery: DeliveryConfig,
    /// The APIs to poll.
    pub sources: Vec<SourceConfig>,
    /// Endpoints declared in the file; reconciled into the database at start.
    pub endpoints: Vec<EndpointSpec>,
}

/// `[storage]`.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Path of the SQLite database (created if missing).
    pub path: PathBuf,
    /// A PostgreSQL URL (`postgres://user:pass@host:5432/db?sslmode=require`); when set it wins
    /// over `path`. A secret: it holds the password.
    pub url: Option<Secret>,
    /// `path` was given too, and is ignored because `url` wins.
    pub path_ignored: bool,
    /// The most connections one process opens to PostgreSQL.
    pub pool_size: usize,
}

/// `[server]`: the admin API.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address the admin API listens on.
    pub listen: SocketAddr,
    /// Bearer token the admin API requires.
    pub admin_token: Option<Secret>,
    /// Host names (`name` or `name:port`) the admin API answers besides loopback names and
    /// `listen`, e.g. the name an ingress forwards. With a token and none listed, any Host.
    pub allowed_hosts: Vec<String>,
    /// Connections the admin API serves at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (and to start the next request
    /// on a kept-alive connection) or its body.
    pub header_timeout: Duration,
}

/// `[poll]`: limits across all sources.
#[derive(Debug, Clone)]
pub struct PollConfig {
    /// At most this many polls run at once, whatever their schedules say.
    pub concurrency: usize,
    /// After this many failed polls in a row, a `pollhook.resource.failing` event is emitted
    /// (0: never).
    pub alert_after_failures: u32,
}

/// `[delivery]`.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Timeout of one POST, unless an endpoint sets its own.
    pub timeout: Duration,
    /// Waits between attempts; after the last one the delivery is failed (dead letter).
    pub retries: Vec<Duration>,
    /// Plain `http://` endpoints allowed.
    pub allow_http: bool,
    /// Networks an endpoint may resolve into although they are private or loopback.
    pub allow_networks: Vec<IpNet>,
    /// Requests in flight across all endpoints.
    pub concurrency: usize,
    /// Requests in flight to one endpoint.
    pub endpoint_concurrency: usize,
    /// An endpoint failing without a single success for this long is disabled.
    pub disable_after: Duration,
}

/// One `[[sources]]` entry.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Unique name, the first half of `source.resource`.
    pub name: String,
    /// How items are fetched.
    pub kind: SourceKind,
    /// The listings polled from it.
    pub resources: Vec<ResourceConfig>,
}

/// The fetching engine behind a source.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// The generic REST engine (`adapter = "rest"` or any definition in `adapters/`).
    Rest(Box<RestConfig>),
    /// An external program printing a JSON array (`adapter = "exec"`).
    Exec(ExecConfig),
    /// A GraphQL endpoint, one query per resource (`adapter = "graphql"`); REST's settings apply.
    Graphql(Box<RestConfig>),
}

impl SourceKind {
    /// The engine's name: `rest`, `exec` or `graphql`.
    pub fn engine(&self) -> &'static str {
        match self {
            SourceKind::Rest(_) => "rest",
            SourceKind::Exec(_) => "exec",
            SourceKind::Graphql(_) => "graphql",
        }
    }
}

/// Settings of the generic REST engine, shared by a source's resources.
#[derive(Debug, Clone)]
pub struct RestConfig {
    /// Base URL; resource paths are joined onto it.
    pub base_url: Url,
    /// How requests authenticate.
    pub auth: Auth,
    /// Extra request headers (values may be secrets).
    pub headers: Vec<(String, Secret)>,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// Attempts per request beyond the first, on connect errors, timeouts, 5xx and 429.
    pub retries: u32,
    /// Longest `Retry-After` honoured; a longer one fails the fetch.
    pub max_retry_after: Duration,
    /// At most this many requests per second to this source.
    pub rate_limit: Option<f64>,
    /// At most this many requests per second to this source's host, shared by every source
    /// polling the same host (an API's account-wide limit).
    pub host_rate_limit: Option<f64>,
    /// A listing longer than this many pages is treated as a runaway and fails.
    pub max_pages: u32,
    /// A response body larger than this fails the fetch (decompressed size).
    pub max_page_bytes: u64,
    /// Origins other than `base_url`'s that next links and redirects may lead to.
    pub follow_origins: Vec<FollowOrigin>,
}

/// An origin a source's next links and redirects may lead to besides its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowOrigin {
    /// Scheme, host and port.
    pub origin: url::Origin,
    /// Whether the source's credentials (auth, `headers`) are sent there too.
    pub credentials: bool,
}

/// What a `max_page_bytes` left unset means: 64 MiB.
pub const DEFAULT_MAX_PAGE_BYTES: u64 = 64 << 20;

/// Settings of the exec engine.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Program and arguments.
    pub command: Vec<String>,
    /// The program is killed after this long.
    pub timeout: Duration,
    /// Environment variables the program gets besides a minimal base (values may be secrets).
    pub env: Vec<(String, Secret)>,
    /// Output on stdout larger than this fails the fetch.
    pub max_output_bytes: u64,
}

/// Request authentication (DESIGN.md §3).
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// No credentials.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// A key in a header or a query parameter.
    ApiKey {
        /// Where it goes.
        place: KeyPlace,
        /// The key.
        value: Secret,
    },
    /// OAuth2 client credentials (RFC 6749 §4.4): a bearer token fetched from `token_url`,
    /// cached, and refreshed before it expires and after a 401.
    OAuth2(OAuth2),
}

/// OAuth2 client-credentials settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2 {
    /// The token endpoint.
    pub token_url: Url,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
    /// Requested scope, if the API wants one.
    pub scope: Option<String>,
    /// Requested audience (Auth0 and others), if the API wants one.
    pub audience: Option<String>,
    /// Send the credentials with HTTP Basic (RFC 6749 §2.3.1, the default) or in the form body.
    pub basic: bool,
}

/// Where an API key is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlace {
    /// In this request header.
    Header(String),
    /// In this query parameter.
    Query(String),
}

/// One listing of a source.
#[derive(Debug, Clone)]
pub struct ResourceConfig {
    /// Unique within its source.
    pub name: String,
    /// Path joined onto the source's base URL (or the program's `POLLHOOK_RESOURCE` for exec).
    pub path: String,
    /// The GraphQL query (GraphQL sources only).
    pub document: Option<String>,
    /// `query` with its TOML types kept: GraphQL variables (an `Int` must not arrive as `"2"`).
    pub variables: serde_json::Map<String, serde_json::Value>,
    /// Static query parameters.
    pub query: Vec<(String, String)>,
    /// When to poll.
    pub when: When,
    /// Largest random delay added to each scheduled poll.
    pub jitter: Duration,
    /// Where the items are in a response; `None`: the body is the array.
    pub items: Option<JsonPath>,
    /// The text of `items`, for messages.
    pub items_text: Option<String>,
    /// Field paths whose values identify an item (several: a composite id).
    pub id: Vec<FieldPath>,
    /// Field paths left out of the hash.
    pub ignore: Vec<FieldPath>,
    /// How the listing is paged.
    pub pagination: Pagination,
    /// What the very first poll does.
    pub initial: Initial,
    /// A complete listing deleting more than this share of the snapshot is held back.
    pub max_delete_ratio: f64,
    /// Failed polls in a row before a `pollhook.resource.failing` event (`[poll]
    /// alert_after_failures`).
    pub alert_after: u32,
    /// An item is `deleted` once missing from this many complete listings in a row (default 1;
    /// 2 for `page` and `offset` pagination, whose pages shift under deletes).
    pub deleted_after: u32,
    /// Send `If-None-Match` / `If-Modified-Since` per page; a 304 page is taken from the snapshot.
    pub conditional: bool,
    /// Fetch only what changed since the last poll, with periodic full syncs.
    pub incremental: Option<Incremental>,
}

/// Incremental polling: `?<since_param>=<newest value of field seen, minus overlap>`; only a full
/// sync (every `full_sync`) lists everything and so can find deletes.
#[derive(Debug, Clone)]
pub struct Incremental {
    /// The query parameter the API filters on.
    pub since_param: String,
    /// The item field holding its modification time.
    pub field: FieldPath,
    /// Subtracted from the newest value seen, to survive clock skew and late writes.
    pub overlap: Duration,
    /// How often a full listing is fetched.
    pub full_sync: Duration,
    /// How the API writes times.
    pub format: SinceFormat,
}

/// How an API writes the times `since_param` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinceFormat {
    /// `2026-11-22T23:40:00Z`.
    Rfc3339,
    /// Seconds since the epoch.
    Unix,
    /// Milliseconds since the epoch.
    UnixMs,
}

impl ResourceConfig {
    /// `source.resource`, the name used in filters, logs and the CLI.
    pub fn key(&self, source: &str) -> String {
        format!("{source}.{}", self.name)
    }
}

/// When a resource is polled.
#[derive(Debug, Clone)]
pub enum When {
    /// Every so often, measured from the start of the previous poll.
    Every(Duration),
    /// On a crontab schedule (5 fields, or 6 with seconds first), in a time zone.
    Cron {
        /// The parsed pattern.
        cron: Box<croner::Cron>,
        /// The time zone it is read in.
        tz: chrono_tz::Tz,
    },
}

/// What the first poll of a resource does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initial {
    /// Record the listing as the snapshot and emit nothing.
    Baseline,
    /// Emit a `created` event for every item.
    Emit,
}

/// How a listing is paged (DESIGN.md §3).
#[derive(Debug, Clone)]
pub enum Pagination {
    /// One request returns everything.
    None,
    /// RFC 8288 `Link: <…>; rel="next"`.
    LinkHeader,
    /// `?page=N&per_page=S`.
    Page {
        /// Page number parameter.
        page_param: String,
        /// Page size parameter, if any.
        size_param: Option<String>,
        /// Page size.
        size: u32,
        /// Number of the first page.
        first: u64,
    },
    /// `?offset=N&limit=S`.
    Offset {
        /// Offset parameter.
        offset_param: String,
        /// Limit parameter.
        limit_param: String,
        /// Page size.
        size: u32,
    },
    /// `?cursor=<value found in the previous response>`.
    Cursor {
        /// Cursor parameter.
        cursor_param: String,
        /// Where the next cursor is in a response (`$.data[-1].id` takes the last item's id, as
        /// Stripe's `starting_after` wants).
        next_cursor: JsonPath,
        /// A boolean in the response saying whether more pages follow (Stripe's `has_more`);
        /// when absent, the listing ends when no next cursor is given.
        has_more: Option<JsonPath>,
    },
    /// The next page's URL is in the response body.
    NextUrl {
        /// Where the URL is.
        next_url: JsonPath,
    },
}

/// A dotted path into an item (`customer.id`, `lines.*.sku`, `tags.0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    /// The path's segments.
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl FromStr for FieldPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let segments: Vec<String> = s.split('.').map(str::to_owned).collect();
        if s.is_empty() || segments.iter().any(String::is_empty) {
            return Err(format!(
                "`{s}` is not a field path; write dotted names such as `id` or `customer.id`"
            ));
        }
        Ok(Self(segments))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

// ───────────────────────────── errors ─────────────────────────────

/// One thing wrong with a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, such as `sources[shop].resources[orders].every`.
    pub at: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// A config that could not be loaded, with every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "cannot read config file {file}: {source} (hint: pass --config FILE or set POLLHOOK_CONFIG)"
    )]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{file} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The file parsed but its content is wrong.
    #[error("{file} has {} problem(s):\n{}", problems.len(), list(problems))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects problems during validation.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, at: impl Into<String>, message: impl Into<String>, hint: Option<&str>) {
        self.0.push(Problem {
            at: at.into(),
            message: message.into(),
            hint: hint.map(str::to_owned),
        });
    }
}

// ───────────────────────────── loading ─────────────────────────────

/// The environment a config is read in: a lookup so tests need not touch the process environment.
pub trait Env {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Config {
    /// Reads, interpolates and validates the file at `path` in the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, &ProcessEnv)
    }

    /// Validates config `text` as if read from `file`, looking variables up in `env`.
    pub fn parse(file: &Path, text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let syntax = |message: String| ConfigError::Syntax {
            file: file.to_owned(),
            message,
        };
        let invalid = |problems: Vec<Problem>| ConfigError::Invalid {
            file: file.to_owned(),
            problems,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| syntax(e.to_string().trim_end().to_owned()))?;

        let mut problems = Problems::default();
        interpolate_table(&mut table, "", env, &mut problems);
        apply_env_overrides(&mut table, env);
        if !problems.0.is_empty() {
            return Err(invalid(problems.0));
        }

        let adapters_dir = table
            .get("adapters_dir")
            .and_then(toml::Value::as_str)
            .map(|dir| resolve(file, dir));
        let catalog = adapters::Catalog::load(adapters_dir.as_deref()).map_err(|e| {
            invalid(vec![Problem {
                at: "adapters_dir".into(),
                message: e.to_string(),
                hint: None,
            }])
        })?;
        if let Some(toml::Value::Array(sources)) = table.get_mut("sources") {
            for (i, source) in sources.iter_mut().enumerate() {
                let label = list_label(source, i);
                if let toml::Value::Table(source) = source
                    && let Err(p) = catalog.apply(source)
                {
                    problems.push(
                        format!("sources[{label}].adapter"),
                        p.message,
                        p.hint.as_deref(),
                    );
                }
            }
        }
        if !problems.0.is_empty() {
            return Err(invalid(problems.0));
        }

        let root = toml::Value::Table(table);
        let raw: RawConfig = serde_path_to_error::deserialize(root.clone()).map_err(|e| {
            invalid(vec![Problem {
                at: named_path(e.path(), &root),
                message: e.into_inner().message().trim_end().to_owned(),
                hint: Some("see config/example.toml for every key".into()),
            }])
        })?;
        let config = validate(file, raw, &mut problems);
        if problems.0.is_empty() {
            Ok(config)
        } else {
            Err(invalid(problems.0))
        }
    }
}

/// How a list entry is named in key paths: by its `name`, or by its index if it has none.
fn list_label(item: &toml::Value, index: usize) -> String {
    match item.get("name").and_then(toml::Value::as_str) {
        Some(name) => name.to_owned(),
        None => index.to_string(),
    }
}

/// A key path as validation writes it: list entries by their `name` where they have one
/// (`sources[shop].resources[orders].every`), by index otherwise.
fn named_path(path: &serde_path_to_error::Path, root: &toml::Value) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    let mut here = Some(root);
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                let item = here.and_then(|v| v.as_array()).and_then(|a| a.get(*index));
                match item
                    .and_then(|i| i.get("name"))
                    .and_then(toml::Value::as_str)
                {
                    Some(name) => out.push_str(&format!("[{name}]")),
                    None => out.push_str(&format!("[{index}]")),
                }
                here = item;
            }
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
                here = here.and_then(|v| v.get(key.as_str()));
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {
                out.push_str(".?");
                here = None;
            }
        }
    }
    if out.is_empty() {
        "(top level)".into()
    } else {
        out
    }
}

/// A path in the config is relative to the config file's directory.
fn resolve(file: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        return path.to_owned();
    }
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
        _ => path.to_owned(),
    }
}

/// Why a `[storage] url` cannot be used, in words that never repeat its password.
fn check_postgres_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "`{}://` is not a PostgreSQL URL; it must start with postgres://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("names no host".to_owned());
    }
    if url.path().trim_start_matches('/').is_empty() {
        return Err("names no database (the path after the host, e.g. /pollhook)".to_owned());
    }
    for (key, value) in url.query_pairs() {
        if key == "sslmode" && !matches!(&*value, "disable" | "prefer" | "require") {
            return Err(format!(
                "sslmode `{value}` is not one of disable, prefer, require"
            ));
        }
    }
    text.parse::<tokio_postgres::Config>()
        .map(drop)
        .map_err(|e| format!("cannot be read: {e}"))
}

/// The short list of environment overrides a container needs (DESIGN.md §2).
fn apply_env_overrides(table: &mut toml::Table, env: &dyn Env) {
    let overrides = [
        ("POLLHOOK_STORAGE_PATH", "storage", "path"),
        ("POLLHOOK_STORAGE_URL", "storage", "url"),
        ("POLLHOOK_LISTEN", "server", "listen"),
        ("POLLHOOK_ADMIN_TOKEN", "server", "admin_token"),
    ];
    for (var, section, key) in overrides {
        if let Some(value) = env.var(var).filter(|v| !v.is_empty()) {
            let section = table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(section) = section {
                section.insert(key.into(), toml::Value::String(value));
            }
        }
    }
    if let Some(dir) = env.var("POLLHOOK_ADAPTERS_DIR").filter(|v| !v.is_empty()) {
        table.insert("adapters_dir".into(), toml::Value::String(dir));
    }
}

fn interpolate_table(table: &mut toml::Table, at: &str, env: &dyn Env, problems: &mut Problems) {
    for (key, value) in table.iter_mut() {
        let here = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        interpolate_value(value, &here, env, problems);
    }
}

fn interpolate_value(value: &mut toml::Value, at: &str, env: &dyn Env, problems: &mut Problems) {
    match value {
        toml::Value::String(s) => match interpolate(s, env) {
            Ok(out) => *s = out,
            Err(unfilled) => {
                for problem in unfilled {
                    match problem {
                        Unfilled::Missing(var) => problems.push(
                            at,
                            format!("environment variable `{var}` is not set"),
                            Some(&format!("export {var}=… or write ${{{var}:-default}}")),
                        ),
                        Unfilled::Unclosed => problems.push(
                            at,
                            "a `${` is never closed by `}`",
                            Some("write ${VAR}, or $${ for a literal ${"),
                        ),
                    }
                }
            }
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let label = list_label(item, i);
                interpolate_value(item, &format!("{at}[{label}]"), env, problems);
            }
        }
        toml::Value::Table(table) => interpolate_table(table, at, env, problems),
        _ => {}
    }
}

/// Why a string's `${…}` could not be filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfilled {
    /// `${NAME}` names an unset variable and gives no default.
    Missing(String),
    /// A `${` with no `}` after it.
    Unclosed,
}

/// Replaces `${VAR}` and `${VAR:-default}` in `text`; `$${` stands for a literal `${`.
/// Returns every unset variable without a default, and an unclosed `${`.
pub fn interpolate(text: &str, env: &dyn Env) -> Result<String, Vec<Unfilled>> {
    let mut out = String::with_capacity(text.len());
    let mut unfilled = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            match (env.var(name), default) {
                (Some(value), _) if !(value.is_empty() && default.is_some()) => {
                    out.push_str(&value)
                }
                (_, Some(default)) => out.push_str(default),
                (None, None) => unfilled.push(Unfilled::Missing(name.to_owned())),
                (Some(value), None) => out.push_str(&value),
            }
            rest = &body[end + 1..];
        } else if after.starts_with('{') {
            unfilled.push(Unfilled::Unclosed);
            break;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if unfilled.is_empty() {
        Ok(out)
    } else {
        Err(unfilled)
    }
}

// ───────────────────────────── raw TOML shapes ─────────────────────────────

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    poll: RawPoll,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    sources: Vec<RawSource>,
    #[serde(default)]
    endpoints: Vec<EndpointInput>,
    #[allow(dead_code)] // read before deserializing, kept here so the key is known
    adapters_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Option<String>,
    url: Option<String>,
    pool_size: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    admin_token: Option<String>,
    allowed_hosts: Option<Vec<String>>,
    max_connections: Option<usize>,
    header_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPoll {
    concurrency: Option<usize>,
    alert_after_failures: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    timeout: Option<String>,
    retries: Option<Vec<String>>,
    #[serde(default)]
    allow_http: bool,
    #[serde(default)]
    allow_networks: Vec<String>,
    concurrency: Option<usize>,
    endpoint_concurrency: Option<usize>,
    disable_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    #[serde(default = "default_adapter")]
    adapter: String,
    base_url: Option<String>,
    auth: Option<RawAuth>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout: Option<String>,
    retries: Option<u32>,
    max_retry_after: Option<String>,
    rate_limit: Option<f64>,
    host_rate_limit: Option<f64>,
    max_pages: Option<u32>,
    max_page_bytes: Option<u64>,
    #[serde(default)]
    follow_origins: Vec<RawFollowOrigin>,
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    resources: Vec<RawResource>,
}

/// `"https://cdn.example.com"` (no credentials sent) or
/// `{ origin = "https://cdn.example.com", credentials = true }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawFollowOrigin {
    Origin(String),
    Table {
        origin: String,
        #[serde(default)]
        credentials: bool,
    },
}

fn default_adapter() -> String {
    "rest".into()
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
enum RawAuth {
    None,
    Bearer {
        token: String,
    },
    Basic {
        username: String,
        #[serde(default)]
        password: String,
    },
    ApiKey {
        header: Option<String>,
        query: Option<String>,
        value: String,
    },
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        audience: Option<String>,
        credentials: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    name: String,
    path: Option<String>,
    #[serde(default)]
    query: BTreeMap<String, toml::Value>,
    every: Option<String>,
    schedule: Option<String>,
    tz: Option<String>,
    jitter: Option<String>,
    items: Option<String>,
    id: Option<OneOrMany>,
    #[serde(default)]
    ignore: Vec<String>,
    pagination: Option<RawPagination>,
    initial: Option<String>,
    max_delete_ratio: Option<f64>,
    deleted_after: Option<u32>,
    #[serde(default)]
    conditional: bool,
    document: Option<String>,
    incremental: Option<RawIncremental>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncremental {
    since_param: String,
    #[serde(default = "default_since_field")]
    field: String,
    overlap: Option<String>,
    full_sync: Option<String>,
    format: Option<String>,
}

fn default_since_field() -> String {
    "updated_at".into()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(tag = "style", rename_all = "kebab-case", deny_unknown_fields)]
enum RawPagination {
    None,
    LinkHeader,
    Page {
        page_param: Option<String>,
        size_param: Option<String>,
        size: Option<u32>,
        first: Option<u64>,
    },
    Offset {
        offset_param: Option<String>,
        limit_param: Option<String>,
        size: Option<u32>,
    },
    Cursor {
        cursor_param: Option<String>,
        next_cursor: String,
        has_more: Option<String>,
    },
    NextUrl {
        next_url: String,
    },
}

/// An endpoint's settings as a user writes them: in `[[endpoints]]`, on the command line or in an
/// admin API request. [`validate_endpoint`] turns it into an [`EndpointSpec`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    /// Unique name.
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// Signing secret.
    pub secret: String,
    /// `jwt` (default) or `standard-webhooks`.
    #[serde(default = "default_signing")]
    pub signing: String,
    /// `source.resource` patterns; default all.
    pub resources: Option<Vec<String>>,
    /// Actions; default all.
    pub actions: Option<Vec<String>>,
    /// Default true.
    #[serde(default = "yes")]
    pub active: bool,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request timeout, e.g. `10s`.
    pub timeout: Option<String>,
}

/// Validates endpoint settings given outside the config file exactly as the file's are.
pub fn validate_endpoint(
    input: EndpointInput,
    config: &Config,
) -> Result<EndpointSpec, Vec<Problem>> {
    let mut p = Problems::default();
    let at = format!("endpoints[{}]", input.name);
    let spec = check_endpoint(input, &config.sources, &config.delivery, &at, &mut p);
    match spec {
        Some(spec) if p.0.is_empty() => Ok(spec),
        _ => Err(p.0),
    }
}

fn default_signing() -> String {
    "jwt".into()
}

fn yes() -> bool {
    true
}

// ───────────────────────────── validation ─────────────────────────────

/// Default waits between delivery attempts (DESIGN.md §7).
pub const DEFAULT_RETRIES: [&str; 7] = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"];

/// Parses a human duration (`500ms`, `30s`, `5m`, `2h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. `30s`, `5m` or `2h`"))
}

/// A number checked against its documented range (README, "Limits"): a value outside it is a
/// problem and the default stands in, so validation goes on to report the rest.
fn number<T>(
    value: Option<T>,
    default: T,
    range: RangeInclusive<T>,
    at: impl Into<String>,
    p: &mut Problems,
) -> T
where
    T: PartialOrd + Copy + fmt::Display,
{
    let Some(value) = value else {
        return default;
    };
    if range.contains(&value) {
        return value;
    }
    let (start, end) = (range.start(), range.end());
    let message = if value > *end {
        format!("{value} is too large: must be at most {end}")
    } else {
        format!("must be at least {start}")
    };
    p.push(
        at,
        message,
        Some(&format!("write a number from {start} to {end}")),
    );
    default
}

/// A duration parsed and checked against its documented range, as [`number`] does.
fn duration_in(
    value: Option<&str>,
    default: Duration,
    range: RangeInclusive<Duration>,
    at: impl Into<String>,
    p: &mut Problems,
) -> Duration {
    value
        .and_then(|text| checked_duration(text, range, at, p))
        .unwrap_or(default)
}

/// `text` as a duration within `range`; `None` once the problem is recorded.
fn checked_duration(
    text: &str,
    range: RangeInclusive<Duration>,
    at: impl Into<String>,
    p: &mut Problems,
) -> Option<Duration> {
    let at = at.into();
    let parsed = parse_duration(text)
        .map_err(|m| p.push(&at, m, None))
        .ok()?;
    let (start, end) = (Span(*range.start()), Span(*range.end()));
    let hint = format!("write a duration from {start} to {end}");
    if parsed > end.0 {
        let message = format!("`{text}` is too long: must be at most {end}");
        p.push(at, message, Some(&hint));
        None
    } else if parsed < start.0 {
        p.push(at, format!("must be at least {start}"), Some(&hint));
        None
    } else {
        Some(parsed)
    }
}

/// A duration as a bound is written: in its largest whole unit (`100ms`, `10m`, `365d`).
struct Span(Duration);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
        ];
        match units
            .iter()
            .find(|(unit, _)| ms > 0 && ms.is_multiple_of(*unit))
        {
            Some((unit, name)) => write!(f, "{}{name}", ms / unit),
            None => write!(f, "{ms}ms"),
        }
    }
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// The documented ranges (README, "Limits"). Each keeps arithmetic downstream (semaphores,
/// `Instant` and `chrono` sums, `1 / rate`) far from overflow, and each is wide enough for any
/// real API or endpoint.
mod limits {
    use super::{DAY, Duration, HOUR, MINUTE, secs};
    use std::ops::RangeInclusive;

    pub const POLL_CONCURRENCY: RangeInclusive<usize> = 1..=1024;
    pub const ALERT_AFTER_FAILURES: RangeInclusive<u32> = 0..=10_000;
    pub const DELIVERY_CONCURRENCY: RangeInclusive<usize> = 1..=4096;
    pub const ENDPOINT_CONCURRENCY: RangeInclusive<usize> = 1..=1024;
    pub const DELIVERY_TIMEOUT: RangeInclusive<Duration> =
        Duration::from_millis(100)..=secs(10 * MINUTE);
    pub const RETRY_WAIT: RangeInclusive<Duration> = secs(0)..=secs(30 * DAY);
    pub const RETRIES_LEN: usize = 100;
    pub const DISABLE_AFTER: RangeInclusive<Duration> = secs(MINUTE)..=secs(365 * DAY);
    pub const SOURCE_TIMEOUT: RangeInclusive<Duration> =
        Duration::from_millis(100)..=secs(10 * MINUTE);
    pub const EXEC_TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(100)..=secs(HOUR);
    pub const SOURCE_RETRIES: RangeInclusive<u32> = 0..=20;
    pub const MAX_RETRY_AFTER: RangeInclusive<Duration> = secs(0)..=secs(HOUR);
    pub const RATE_LIMIT: RangeInclusive<f64> = 0.001..=10_000.0;
    pub const MAX_PAGES: RangeInclusive<u32> = 1..=1_000_000;
    pub const EVERY: RangeInclusive<Duration> = Duration::from_millis(100)..=secs(365 * DAY);
    pub const JITTER: RangeInclusive<Duration> = secs(0)..=secs(DAY);
    pub const PAGE_SIZE: RangeInclusive<u32> = 1..=100_000;
    pub const FIRST_PAGE: RangeInclusive<u64> = 0..=1_000_000;
    pub const DELETED_AFTER: RangeInclusive<u32> = 1..=1000;
    pub const OVERLAP: RangeInclusive<Duration> = secs(0)..=secs(7 * DAY);
    pub const FULL_SYNC: RangeInclusive<Duration> = secs(1)..=secs(365 * DAY);
    pub const MAX_CONNECTIONS: RangeInclusive<usize> = 1..=65_536;
    pub const HEADER_TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(100)..=secs(HOUR);
    pub const MAX_PAGE_BYTES: RangeInclusive<u64> = 1024..=(4 << 30);
    pub const POOL_SIZE: RangeInclusive<usize> = 1..=1000;
}

fn validate(file: &Path, raw: RawConfig, p: &mut Problems) -> Config {
    let url = raw.storage.url.filter(|u| !u.is_empty());
    if let Some(url) = &url
        && let Err(problem) = check_postgres_url(url)
    {
        p.push(
            "storage.url",
            problem,
            Some(
                "write postgres://user:password@host:5432/database, with ?sslmode=require for TLS",
            ),
        );
    }
    let storage = StorageConfig {
        path_ignored: url.is_some() && raw.storage.path.is_some(),
        path: resolve(file, raw.storage.path.as_deref().unwrap_or("pollhook.db")),
        url: url.map(Secret::new),
        pool_size: number(
            raw.storage.pool_size,
            16,
            limits::POOL_SIZE,
            "storage.pool_size",
            p,
        ),
    };
    let listen_text = raw.server.listen.as_deref().unwrap_or("127.0.0.1:8787");
    let listen = listen_text.parse().unwrap_or_else(|_| {
        p.push(
            "server.listen",
            format!("`{listen_text}` is not an address"),
            Some("write host:port, e.g. 127.0.0.1:8787 or 0.0.0.0:8787"),
        );
        SocketAddr::from(([127, 0, 0, 1], 8787))
    });
    let server = ServerConfig {
        listen,
        admin_token: raw
            .server
            .admin_token
            .filter(|t| !t.is_empty())
            .map(Secret::new),
        allowed_hosts: allowed_hosts(raw.server.allowed_hosts.unwrap_or_default(), p),
        max_connections: number(
            raw.server.max_connections,
            1024,
            limits::MAX_CONNECTIONS,
            "server.max_connections",
            p,
        ),
        header_timeout: duration_in(
            raw.server.header_timeout.as_deref(),
            Duration::from_secs(10),
            limits::HEADER_TIMEOUT,
            "server.header_timeout",
            p,
        ),
    };
    let poll = PollConfig {
        concurrency: number(
            raw.poll.concurrency,
            4,
            limits::POLL_CONCURRENCY,
            "poll.concurrency",
            p,
        ),
        alert_after_failures: number(
            raw.poll.alert_after_failures,
            3,
            limits::ALERT_AFTER_FAILURES,
            "poll.alert_after_failures",
            p,
        ),
    };
    let delivery = validate_delivery(raw.delivery, p);

    let mut names = HashSet::new();
    let mut sources = Vec::new();
    for (i, source) in raw.sources.into_iter().enumerate() {
        if !names.insert(source.name.clone()) {
            p.push(
                format!("sources[{i}].name"),
                format!("a source named `{}` is already defined", source.name),
                Some("source names must be unique"),
            );
        }
        if let Some(source) = validate_source(source, p) {
            sources.push(source);
        }
    }

    for resource in sources.iter_mut().flat_map(|s| s.resources.iter_mut()) {
        resource.alert_after = poll.alert_after_failures;
    }

    let mut endpoint_names = HashSet::new();
    let mut endpoints = Vec::new();
    for endpoint in raw.endpoints {
        let at = format!("endpoints[{}]", endpoint.name);
        if !valid_name(&endpoint.name) {
            p.push(
                format!("{at}.name"),
                format!("`{}` is not a usable name", endpoint.name),
                Some("use letters, digits, `-` and `_`"),
            );
        }
        if !endpoint_names.insert(endpoint.name.clone()) {
            p.push(
                format!("{at}.name"),
                "an endpoint with this name is already defined",
                Some("endpoint names must be unique"),
            );
        }
        if let Some(endpoint) = check_endpoint(endpoint, &sources, &delivery, &at, p) {
            endpoints.push(endpoint);
        }
    }

    Config {
        file: file.to_owned(),
        storage,
        server,
        poll,
        delivery,
        sources,
        endpoints,
    }
}

/// `[server] allowed_hosts`: bare authorities, compared case-insensitively with `Host`.
fn allowed_hosts(hosts: Vec<String>, p: &mut Problems) -> Vec<String> {
    for (i, host) in hosts.iter().enumerate() {
        if host.is_empty() || host.contains(['/', '@', ' ', '*']) {
            p.push(
                format!("server.allowed_hosts[{i}]"),
                format!("`{host}` is not a host name"),
                Some("write the name clients use, e.g. `pollhook.example.com` or `pollhook.example.com:8443`, without scheme or path"),
            );
        }
    }
    hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect()
}

fn validate_delivery(raw: RawDelivery, p: &mut Problems) -> DeliveryConfig {
    let retries = match raw.retries {
        None => DEFAULT_RETRIES
            .iter()
            .filter_map(|d| parse_duration(d).ok())
            .collect(),
        Some(list) => {
            if list.len() > limits::RETRIES_LEN {
                p.push(
                    "delivery.retries",
                    format!(
                        "{} waits is too many: at most {}",
                        list.len(),
                        limits::RETRIES_LEN
                    ),
                    Some("the default seven waits span about 28 hours"),
                );
            }
            list.iter()
                .enumerate()
                .map(|(i, d)| {
                    let at = format!("delivery.retries[{i}]");
                    duration_in(Some(d), Duration::ZERO, limits::RETRY_WAIT, at, p)
                })
                .collect()
        }
    };
    let allow_networks = raw
        .allow_networks
        .iter()
        .enumerate()
        .filter_map(|(i, net)| match parse_network(net) {
            Some(net) => Some(net),
            None => {
                p.push(
                    format!("delivery.allow_networks[{i}]"),
                    format!("`{net}` is not a network"),
                    Some("write a CIDR such as 127.0.0.0/8 or 10.1.2.3/32"),
                );
                None
            }
        })
        .collect();
    DeliveryConfig {
        timeout: duration_in(
            raw.timeout.as_deref(),
            secs(5),
            limits::DELIVERY_TIMEOUT,
            "delivery.timeout",
            p,
        ),
        retries,
        allow_http: raw.allow_http,
        allow_networks,
        concurrency: number(
            raw.concurrency,
            64,
            limits::DELIVERY_CONCURRENCY,
            "delivery.concurrency",
            p,
        ),
        endpoint_concurrency: number(
            raw.endpoint_concurrency,
            16,
            limits::ENDPOINT_CONCURRENCY,
            "delivery.endpoint_concurrency",
            p,
        ),
        disable_after: duration_in(
            raw.disable_after.as_deref(),
            secs(5 * DAY),
            limits::DISABLE_AFTER,
            "delivery.disable_after",
            p,
        ),
    }
}

/// Parses a CIDR, or a bare address as a one-address network.
pub fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn max_page_bytes(raw: Option<u64>, at: &str, p: &mut Problems) -> u64 {
    number(
        raw,
        DEFAULT_MAX_PAGE_BYTES,
        limits::MAX_PAGE_BYTES,
        format!("{at}.max_page_bytes"),
        p,
    )
}

fn follow_origins(raw: Vec<RawFollowOrigin>, at: &str, p: &mut Problems) -> Vec<FollowOrigin> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, entry) in raw.into_iter().enumerate() {
        let (text, credentials) = match entry {
            RawFollowOrigin::Origin(text) => (text, false),
            RawFollowOrigin::Table {
                origin,
                credentials,
            } => (origin, credentials),
        };
        match Url::parse(&text) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && matches!(url.path(), "" | "/")
                    && url.query().is_none()
                    && url.username().is_empty() =>
            {
                out.push(FollowOrigin {
                    origin: url.origin(),
                    credentials,
                });
            }
            _ => p.push(
                format!("{at}.follow_origins[{i}]"),
                format!("`{text}` is not an origin"),
                Some("write scheme, host and optional port only, e.g. \"https://cdn.example.com\""),
            ),
        }
    }
    out
}

fn validate_source(mut raw: RawSource, p: &mut Problems) -> Option<SourceConfig> {
    let at = format!("sources[{}]", raw.name);
    // `{name}` placeholders from `params` also fill the URLs a definition cannot know in full
    // (a Shopify shop's host, a Microsoft tenant's token endpoint).
    let fill = |text: &mut String, key: &str, p: &mut Problems| match fill_params(text, &raw.params)
    {
        Ok(filled) => *text = filled,
        Err(missing) => p.push(
            format!("{at}.{key}"),
            format!("`{text}` needs `{{{missing}}}`, which the source does not set"),
            Some(&format!(
                "add params = {{ {missing} = \"…\" }} to the source"
            )),
        ),
    };
    let mut base_url = raw.base_url.take();
    if let Some(url) = base_url.as_mut() {
        fill(url, "base_url", p);
    }
    raw.base_url = base_url;
    let mut auth = raw.auth.take();
    if let Some(RawAuth::Oauth2 { token_url, .. }) = auth.as_mut() {
        fill(token_url, "auth.token_url", p);
    }
    raw.auth = auth;
    if !valid_name(&raw.name) {
        p.push(
            format!("{at}.name"),
            format!("`{}` is not a usable name", raw.name),
            Some("use letters, digits, `-` and `_`"),
        );
    }
    match raw.adapter.as_str() {
        "rest" | "graphql" | "exec" => {}
        other => {
            p.push(
                format!("{at}.adapter"),
                format!("`{other}` is not an engine"),
                Some("an adapter definition's `engine` is \"rest\" (default), \"graphql\" or \"exec\""),
            );
            return None;
        }
    }
    let kind = match raw.adapter.as_str() {
        "exec" => {
            let command = raw.command.unwrap_or_default();
            match command.first() {
                None => p.push(
                    format!("{at}.command"),
                    "an exec source needs a command",
                    Some(r#"command = ["python3", "list.py"]"#),
                ),
                Some(program) if program.trim().is_empty() => p.push(
                    format!("{at}.command[0]"),
                    "the program name is empty",
                    Some(r#"name the program first: command = ["python3", "list.py"]"#),
                ),
                Some(_) => {}
            }
            for key in [
                ("base_url", raw.base_url.is_some()),
                ("auth", raw.auth.is_some()),
            ] {
                if key.1 {
                    p.push(
                        format!("{at}.{}", key.0),
                        "an exec source does not make HTTP requests",
                        Some("remove it, or use adapter = \"rest\""),
                    );
                }
            }
            if !raw.follow_origins.is_empty() {
                p.push(
                    format!("{at}.follow_origins"),
                    "an exec source does not make HTTP requests",
                    Some("remove it, or use adapter = \"rest\""),
                );
            }
            SourceKind::Exec(ExecConfig {
                command,
                timeout: duration_in(
                    raw.timeout.as_deref(),
                    secs(30),
                    limits::EXEC_TIMEOUT,
                    format!("{at}.timeout"),
                    p,
                ),
                env: raw
                    .env
                    .into_iter()
                    .map(|(k, v)| (k, Secret::new(v)))
                    .collect(),
                max_output_bytes: max_page_bytes(raw.max_page_bytes, &at, p),
            })
        }
        _ => {
            if raw.command.is_some() {
                p.push(
                    format!("{at}.command"),
                    "only an exec source runs a command",
                    Some("set adapter = \"exec\", or remove command"),
                );
            }
            if !raw.env.is_empty() {
                p.push(
                    format!("{at}.env"),
                    "only an exec source runs a program with an environment",
                    Some("set adapter = \"exec\", or remove env"),
                );
            }
            let base_url = match raw.base_url.as_deref().map(Url::parse) {
                Some(Ok(url)) if matches!(url.scheme(), "http" | "https") => url,
                Some(Ok(url)) => {
                    p.push(
                        format!("{at}.base_url"),
                        format!("`{url}` is not an http(s) URL"),
                        None,
                    );
                    return None;
                }
                Some(Err(e)) => {
                    p.push(
                        format!("{at}.base_url"),
                        format!("not a URL: {e}"),
                        Some("write e.g. https://api.example.com/v1"),
                    );
                    return None;
                }
                None => {
                    p.push(
                        format!("{at}.base_url"),
                        "a REST source needs a base_url",
                        Some("base_url = \"https://api.example.com\""),
                    );
                    return None;
                }
            };
            let auth = validate_auth(raw.auth, &format!("{at}.auth"), p);
            let mut rate = |key: &str, rate: Option<f64>| {
                let rate = rate?;
                let (start, end) = (limits::RATE_LIMIT.start(), limits::RATE_LIMIT.end());
                if limits::RATE_LIMIT.contains(&rate) {
                    return Some(rate);
                }
                p.push(
                    format!("{at}.{key}"),
                    format!("{rate} is not a number of requests per second from {start} to {end}"),
                    Some("e.g. 5, or 0.5 for one request every two seconds"),
                );
                None
            };
            let rate_limit = rate("rate_limit", raw.rate_limit);
            let host_rate_limit = rate("host_rate_limit", raw.host_rate_limit);
            let headers = source_headers(raw.headers, &at, p);
            let rest = Box::new(RestConfig {
                base_url,
                auth,
                headers,
                timeout: duration_in(
                    raw.timeout.as_deref(),
                    secs(30),
                    limits::SOURCE_TIMEOUT,
                    format!("{at}.timeout"),
                    p,
                ),
                retries: number(
                    raw.retries,
                    3,
                    limits::SOURCE_RETRIES,
                    format!("{at}.retries"),
                    p,
                ),
                max_retry_after: duration_in(
                    raw.max_retry_after.as_deref(),
                    secs(120),
                    limits::MAX_RETRY_AFTER,
                    format!("{at}.max_retry_after"),
                    p,
                ),
                rate_limit,
                host_rate_limit,
                max_pages: number(
                    raw.max_pages,
                    10_000,
                    limits::MAX_PAGES,
                    format!("{at}.max_pages"),
                    p,
                ),
                max_page_bytes: max_page_bytes(raw.max_page_bytes, &at, p),
                follow_origins: follow_origins(raw.follow_origins, &at, p),
            });
            if raw.adapter == "graphql" {
                SourceKind::Graphql(rest)
            } else {
                SourceKind::Rest(rest)
            }
        }
    };
    if raw.resources.is_empty() {
        p.push(
            format!("{at}.resources"),
            "a source needs at least one resource",
            Some("add a [[sources.resources]] table with name, path and every"),
        );
    }
    let mut names = HashSet::new();
    let resources = raw
        .resources
        .into_iter()
        .filter_map(|r| {
            if !names.insert(r.name.clone()) {
                p.push(
                    format!("{at}.resources[{}].name", r.name),
                    "a resource with this name is already defined in this source",
                    None,
                );
            }
            validate_resource(r, &at, &kind, &raw.params, p)
        })
        .collect();
    Some(SourceConfig {
        name: raw.name,
        kind,
        resources,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn validate_auth(raw: Option<RawAuth>, at: &str, p: &mut Problems) -> Auth {
    match raw {
        None | Some(RawAuth::None) => Auth::None,
        Some(RawAuth::Bearer { token }) => Auth::Bearer {
            token: Secret::new(token),
        },
        Some(RawAuth::Basic { username, password }) => Auth::Basic {
            username,
            password: Secret::new(password),
        },
        Some(RawAuth::ApiKey {
            header,
            query,
            value,
        }) => {
            let place = match (header, query) {
                (Some(h), None) => KeyPlace::Header(h),
                (None, Some(q)) => KeyPlace::Query(q),
                _ => {
                    p.push(
                        at,
                        "an api-key needs exactly one of `header` or `query`",
                        Some(r#"auth = { type = "api-key", header = "X-API-Key", value = "${KEY}" }"#),
                    );
                    KeyPlace::Header("X-API-Key".into())
                }
            };
            Auth::ApiKey {
                place,
                value: Secret::new(value),
            }
        }
        Some(RawAuth::Oauth2 {
            token_url,
            client_id,
            client_secret,
            scope,
            audience,
            credentials,
        }) => {
            let token_url = match Url::parse(&token_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => u,
                _ => {
                    p.push(
                        format!("{at}.token_url"),
                        format!("`{token_url}` is not an http(s) URL"),
                        Some("the provider's OAuth2 token endpoint, e.g. https://login.example.com/oauth2/token"),
                    );
                    return Auth::None;
                }
            };
            let basic = match credentials.as_deref() {
                None | Some("basic") => true,
                Some("body") => false,
                Some(other) => {
                    p.push(
                        format!("{at}.credentials"),
                        format!("`{other}` is not a choice"),
                        Some(r#""basic" (HTTP Basic, the default) or "body" (client_id and client_secret in the form)"#),
                    );
                    true
                }
            };
            Auth::OAuth2(OAuth2 {
                token_url,
                client_id,
                client_secret: Secret::new(client_secret),
                scope,
                audience,
                basic,
            })
        }
    }
}

fn json_path(text: &str, at: &str, p: &mut Problems) -> Option<JsonPath> {
    match JsonPath::parse(text) {
        Ok(path) => Some(path),
        Err(e) => {
            p.push(
                at,
                format!("`{text}` is not a JSONPath: {e}"),
                Some("JSONPath (RFC 9535) starts with `$`, e.g. `$.data` or `$.meta.next`"),
            );
            None
        }
    }
}

fn validate_resource(
    raw: RawResource,
    source_at: &str,
    kind: &SourceKind,
    params: &BTreeMap<String, String>,
    p: &mut Problems,
) -> Option<ResourceConfig> {
    let exec = matches!(kind, SourceKind::Exec(_));
    let graphql = matches!(kind, SourceKind::Graphql(_));
    let at = format!("{source_at}.resources[{}]", raw.name);
    if !valid_name(&raw.name) {
        p.push(
            format!("{at}.name"),
            format!("`{}` is not a usable name", raw.name),
            Some("use letters, digits, `-` and `_`"),
        );
    }
    let when = match (raw.every.as_deref(), raw.schedule.as_deref()) {
        (Some(_), Some(_)) => {
            p.push(
                &at,
                "both `every` and `schedule` are set",
                Some("keep one of them"),
            );
            None
        }
        (None, None) => {
            p.push(
                &at,
                "no `every` or `schedule`: when should it be polled?",
                Some(r#"every = "30s" or schedule = "*/5 * * * *""#),
            );
            None
        }
        (Some(every), None) => {
            checked_duration(every, limits::EVERY, format!("{at}.every"), p).map(When::Every)
        }
        (None, Some(schedule)) => {
            let tz = match raw.tz.as_deref().map(str::parse::<chrono_tz::Tz>) {
                None => Some(chrono_tz::UTC),
                Some(Ok(tz)) => Some(tz),
                Some(Err(_)) => {
                    p.push(
                        format!("{at}.tz"),
                        format!("`{}` is not a time zone", raw.tz.as_deref().unwrap_or("")),
                        Some("use an IANA name such as Europe/Copenhagen or UTC"),
                    );
                    None
                }
            };
            let cron = parse_cron(schedule).map_err(|m| p.push(format!("{at}.schedule"), m, Some("write a crontab line: minute hour day-of-month month day-of-week, e.g. \"0 9 * * 1-5\"")));
            match (cron, tz) {
                (Ok(cron), Some(tz)) => {
                    let now = chrono::Utc::now().with_timezone(&tz);
                    if cron.find_next_occurrence(&now, false).is_ok() {
                        Some(When::Cron {
                            cron: Box::new(cron),
                            tz,
                        })
                    } else {
                        p.push(
                            format!("{at}.schedule"),
                            format!("`{schedule}` never fires: no date matches it"),
                            Some("check the day-of-month and month fields (February has no 30th)"),
                        );
                        None
                    }
                }
                _ => None,
            }
        }
    };
    if raw.tz.is_some() && raw.schedule.is_none() {
        p.push(
            format!("{at}.tz"),
            "`tz` only applies to a cron `schedule`",
            None,
        );
    }
    let jitter = match (&when, raw.jitter.as_deref()) {
        (_, Some(text)) => duration_in(
            Some(text),
            Duration::ZERO,
            limits::JITTER,
            format!("{at}.jitter"),
            p,
        ),
        // Default: a tenth of the interval, at most five seconds, so many resources started
        // together do not hit an API in the same instant.
        (Some(When::Every(every)), None) => (*every / 10).min(Duration::from_secs(5)),
        _ => Duration::from_secs(1),
    };
    let items = raw
        .items
        .as_deref()
        .and_then(|text| json_path(text, &format!("{at}.items"), p));
    let id_texts = match raw.id {
        None => vec!["id".to_owned()],
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    };
    if id_texts.is_empty() {
        p.push(format!("{at}.id"), "needs at least one field", None);
    }
    let field_paths = |texts: &[String], key: &str, p: &mut Problems| -> Vec<FieldPath> {
        texts
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                t.parse()
                    .map_err(|m: String| p.push(format!("{at}.{key}[{i}]"), m, None))
                    .ok()
            })
            .collect()
    };
    let id = field_paths(&id_texts, "id", p);
    let ignore = field_paths(&raw.ignore, "ignore", p);
    let variables = raw
        .query
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), serde_json::to_value(v).ok()?)))
        .collect();
    let query = raw
        .query
        .into_iter()
        .filter_map(|(k, v)| match v {
            toml::Value::String(s) => Some((k, s)),
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                Some((k, v.to_string()))
            }
            _ => {
                p.push(
                    format!("{at}.query.{k}"),
                    "a query value must be a string, number or boolean",
                    None,
                );
                None
            }
        })
        .collect();
    let pagination = match raw.pagination {
        None | Some(RawPagination::None) => Pagination::None,
        Some(RawPagination::LinkHeader) => Pagination::LinkHeader,
        Some(RawPagination::Page {
            page_param,
            size_param,
            size,
            first,
        }) => Pagination::Page {
            page_param: page_param.unwrap_or_else(|| "page".into()),
            size_param,
            size: page_size(size, &at, p),
            first: number(
                first,
                1,
                limits::FIRST_PAGE,
                format!("{at}.pagination.first"),
                p,
            ),
        },
        Some(RawPagination::Offset {
            offset_param,
            limit_param,
            size,
        }) => Pagination::Offset {
            offset_param: offset_param.unwrap_or_else(|| "offset".into()),
            limit_param: limit_param.unwrap_or_else(|| "limit".into()),
            size: page_size(size, &at, p),
        },
        Some(RawPagination::Cursor {
            cursor_param,
            next_cursor,
            has_more,
        }) => Pagination::Cursor {
            cursor_param: cursor_param.unwrap_or_else(|| "cursor".into()),
            next_cursor: json_path(&next_cursor, &format!("{at}.pagination.next_cursor"), p)?,
            has_more: match has_more {
                Some(text) => Some(json_path(&text, &format!("{at}.pagination.has_more"), p)?),
                None => None,
            },
        },
        Some(RawPagination::NextUrl { next_url }) => Pagination::NextUrl {
            next_url: json_path(&next_url, &format!("{at}.pagination.next_url"), p)?,
        },
    };
    if exec && !matches!(pagination, Pagination::None) {
        p.push(
            format!("{at}.pagination"),
            "an exec source prints the whole listing; it has no pages",
            Some("remove pagination"),
        );
    }
    let initial = match raw.initial.as_deref() {
        None | Some("baseline") => Initial::Baseline,
        Some("emit") => Initial::Emit,
        Some(other) => {
            p.push(
                format!("{at}.initial"),
                format!("`{other}` is not a choice"),
                Some(r#"initial = "baseline" (default) or "emit""#),
            );
            Initial::Baseline
        }
    };
    let max_delete_ratio = raw.max_delete_ratio.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&max_delete_ratio) {
        p.push(
            format!("{at}.max_delete_ratio"),
            format!("{max_delete_ratio} is not between 0 and 1"),
            Some("0.5 holds back a listing that would delete more than half the snapshot"),
        );
    }
    let deleted_after = match raw.deleted_after {
        // Page and offset listings shift when an item is deleted between two requests: the item
        // after it slides onto a page already fetched and looks deleted. Waiting for a second
        // complete listing that lacks it keeps that from becoming a false `deleted`.
        None if matches!(
            pagination,
            Pagination::Page { .. } | Pagination::Offset { .. }
        ) =>
        {
            2
        }
        None => 1,
        Some(n) => number(
            Some(n),
            1,
            limits::DELETED_AFTER,
            format!("{at}.deleted_after"),
            p,
        ),
    };
    let incremental = raw.incremental.and_then(|inc| {
        let iat = format!("{at}.incremental");
        if exec {
            p.push(&iat, "an exec source cannot be polled incrementally", None);
        }
        let field = inc
            .field
            .parse()
            .map_err(|m: String| p.push(format!("{iat}.field"), m, None))
            .ok()?;
        let format = match inc.format.as_deref() {
            None | Some("rfc3339") => SinceFormat::Rfc3339,
            Some("unix") => SinceFormat::Unix,
            Some("unix_ms") => SinceFormat::UnixMs,
            Some(other) => {
                p.push(
                    format!("{iat}.format"),
                    format!("`{other}` is not a time format"),
                    Some("rfc3339 (default), unix or unix_ms"),
                );
                SinceFormat::Rfc3339
            }
        };
        Some(Incremental {
            since_param: inc.since_param,
            field,
            overlap: duration_in(
                inc.overlap.as_deref(),
                secs(MINUTE),
                limits::OVERLAP,
                format!("{iat}.overlap"),
                p,
            ),
            full_sync: duration_in(
                inc.full_sync.as_deref(),
                secs(HOUR),
                limits::FULL_SYNC,
                format!("{iat}.full_sync"),
                p,
            ),
            format,
        })
    });
    let path = match raw.path {
        Some(path) => fill_params(&path, params).unwrap_or_else(|missing| {
            p.push(
                format!("{at}.path"),
                format!("`{path}` needs `{{{missing}}}`, which the source does not set"),
                Some(&format!(
                    "add params = {{ {missing} = \"…\" }} to the source"
                )),
            );
            path.clone()
        }),
        None if exec => raw.name.clone(),
        None if graphql => String::new(),
        None => {
            p.push(
                format!("{at}.path"),
                "a REST resource needs a path",
                Some(r#"path = "/orders""#),
            );
            String::new()
        }
    };
    match (&raw.document, graphql) {
        (None, true) => p.push(
            format!("{at}.document"),
            "a GraphQL resource needs its query",
            Some(r#"document = "query($after: String) { orders(after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }""#),
        ),
        (Some(_), false) => p.push(
            format!("{at}.document"),
            "only a GraphQL source (adapter = \"graphql\") sends a document",
            None,
        ),
        _ => {}
    }
    if graphql && raw.items.is_none() {
        p.push(
            format!("{at}.items"),
            "a GraphQL resource needs `items`, the JSONPath of its list",
            Some(r#"items = "$.data.orders.nodes""#),
        );
    }
    Some(ResourceConfig {
        name: raw.name,
        document: raw.document,
        variables,
        path,
        query,
        when: when?,
        jitter,
        items,
        items_text: raw.items,
        id,
        ignore,
        pagination,
        initial,
        max_delete_ratio,
        alert_after: 3,
        deleted_after,
        conditional: raw.conditional,
        incremental,
    })
}

/// A source's extra request headers, each name and value checked as HTTP allows them (RFC 9110
/// §5): a CR or LF in a value could otherwise start a header of its own.
fn source_headers(
    headers: BTreeMap<String, String>,
    at: &str,
    p: &mut Problems,
) -> Vec<(String, Secret)> {
    headers
        .into_iter()
        .filter(|(name, value)| check_header(name, value, &format!("{at}.headers"), p))
        .map(|(name, value)| (name, Secret::new(value)))
        .collect()
}

/// Whether `name: value` is a header HTTP can send; if not, says so at `at.name`. The value is
/// never quoted: it may be a secret.
fn check_header(name: &str, value: &str, at: &str, p: &mut Problems) -> bool {
    use reqwest::header::{HeaderName, HeaderValue};
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        p.push(
            format!("{at}.{}", name.escape_debug()),
            format!("`{}` is not a header name", name.escape_debug()),
            Some("a header name is letters, digits and `-`, e.g. X-Api-Version"),
        );
        false
    } else if HeaderValue::from_str(value).is_err() {
        p.push(
            format!("{at}.{name}"),
            "the value holds a control character (CR, LF, NUL…) or a non-ASCII one",
            Some("write the value on one line, in visible ASCII"),
        );
        false
    } else {
        true
    }
}

/// Replaces each `{name}` in a resource path with the source's `params` value.
fn fill_params(path: &str, params: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 1..start + len];
        let value = params.get(name).ok_or_else(|| name.to_owned())?;
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn page_size(size: Option<u32>, at: &str, p: &mut Problems) -> u32 {
    number(
        size,
        100,
        limits::PAGE_SIZE,
        format!("{at}.pagination.size"),
        p,
    )
}

/// Parses a crontab line: 5 fields, or 6 with seconds first; weekdays 0–7 with 0 and 7 Sunday,
/// as crontab(5) reads them.
pub fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    let fields = text.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "`{text}` has {fields} fields; a crontab line has 5 (or 6 with seconds first)"
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("`{text}` is not a crontab schedule: {e}"))
}

fn check_endpoint(
    raw: EndpointInput,
    sources: &[SourceConfig],
    delivery: &DeliveryConfig,
    at: &str,
    p: &mut Problems,
) -> Option<EndpointSpec> {
    let scheme: Scheme = match raw.signing.parse() {
        Ok(s) => s,
        Err(_) => {
            p.push(
                format!("{at}.signing"),
                format!("`{}` is not a signing scheme", raw.signing),
                Some(r#"signing = "jwt" or "standard-webhooks""#),
            );
            return None;
        }
    };
    if let Err(e) = sign::decode_secret(scheme, &raw.secret) {
        p.push(
            format!("{at}.secret"),
            e.to_string(),
            Some("generate one with `pollhook endpoints secret`"),
        );
    }
    let resources = raw.resources.unwrap_or_else(|| vec!["*".into()]);
    for (i, pattern) in resources.iter().enumerate() {
        let known = sources.iter().any(|s| {
            s.resources
                .iter()
                .any(|r| crate::endpoint::glob_match(pattern, &r.key(&s.name)))
        });
        if !known && !pattern.starts_with("pollhook.") && !sources.is_empty() {
            p.push(
                format!("{at}.resources[{i}]"),
                format!("`{pattern}` matches no configured resource"),
                Some("write source.resource, e.g. shop.orders or shop.*"),
            );
        }
    }
    let actions = match ActionFilter::parse(raw.actions.as_deref()) {
        Ok(a) => a,
        Err(m) => {
            p.push(format!("{at}.actions"), m, None);
            return None;
        }
    };
    let timeout = raw.timeout.as_deref().map(|t| {
        let at = format!("{at}.timeout");
        duration_in(Some(t), secs(5), limits::DELIVERY_TIMEOUT, at, p)
    });
    let headers = raw
        .headers
        .into_iter()
        .filter(|(name, value)| {
            if reserved_endpoint_header(name) {
                p.push(
                    format!("{at}.headers.{name}"),
                    format!("`{name}` is set by pollhook on every delivery"),
                    Some("remove it: pollhook frames, signs and labels each request itself"),
                );
                return false;
            }
            check_header(name, value, &format!("{at}.headers"), p)
        })
        .collect();
    let spec = EndpointSpec {
        name: raw.name,
        url: raw.url,
        secret: Secret::new(raw.secret),
        signing: scheme,
        resources,
        actions,
        active: raw.active,
        headers,
        timeout,
    };
    let policy = crate::endpoint::UrlPolicy {
        allow_http: delivery.allow_http,
        allow_networks: delivery.allow_networks.clone(),
    };
    if let Err(e) = policy.check_url(&spec.url) {
        p.push(format!("{at}.url"), e, None);
    }
    Some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn interpolates_set_default_and_escaped_variables() {
        let e = env(&[("TOKEN", "s3cr\"et"), ("EMPTY", "")]);
        assert_eq!(interpolate("a ${TOKEN} b", &e).unwrap(), "a s3cr\"et b");
        assert_eq!(interpolate("${NOPE:-dflt}", &e).unwrap(), "dflt");
        assert_eq!(interpolate("${EMPTY:-dflt}", &e).unwrap(), "dflt");
        assert_eq!(interpolate("$${TOKEN} $5", &e).unwrap(), "${TOKEN} $5");
        assert_eq!(
            interpolate("${A}${B}", &e).unwrap_err(),
            vec![Unfilled::Missing("A".into()), Unfilled::Missing("B".into())]
        );
        assert_eq!(
            interpolate("x ${TOKEN", &e).unwrap_err(),
            vec![Unfilled::Unclosed]
        );
    }

    #[test]
    fn crontab_lines_mean_what_crontab_users_expect() {
        use chrono::{TimeZone, Utc};
        // 2026-11-27 is a Friday.
        let friday_noon = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let weekdays_at_nine = parse_cron("0 9 * * 1-5").unwrap();
        let next = weekdays_at_nine
            .find_next_occurrence(&friday_noon, false)
            .unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap()); // Monday
        let sundays = parse_cron("30 6 * * 0").unwrap();
        let next = sundays.find_next_occurrence(&friday_noon, false).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 29, 6, 30, 0).unwrap());
        let sundays_as_7 = parse_cron("30 6 * * 7").unwrap();
        assert_eq!(
            sundays_as_7
                .find_next_occurrence(&friday_noon, false)
                .unwrap(),
            next
        );
        let every_five = parse_cron("*/5 * * * *").unwrap();
        assert_eq!(
            every_five
                .find_next_occurrence(&friday_noon, false)
                .unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 27, 12, 5, 0).unwrap()
        );
        let with_seconds = parse_cron("*/10 * * * * *").unwrap();
        assert_eq!(
            with_seconds
                .find_next_occurrence(&friday_noon, false)
                .unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 10).unwrap()
        );
        assert!(parse_cron("0 9 * *").is_err());
        assert!(parse_cron("0 0 9 * * 1 2026").is_err());
        assert!(parse_cron("61 * * * *").is_err());
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.hint(), "…cret");
        assert_eq!(Secret::new("short").hint(), "…");
        assert_eq!(
            Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").hint(),
            "whsec_…LaSw"
        );
    }
}
