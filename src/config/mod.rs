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

mod endpoint;
mod interpolate;
mod problem;
mod raw;
mod resource;
mod settings;
mod source;
#[cfg(test)]
mod tests;
mod values;

pub use crate::encode::Format;
pub use crate::normalize::FieldPath;
pub use crate::secret::Secret;
pub use endpoint::{EndpointInput, validate_endpoint};
pub use interpolate::{Env, ProcessEnv, Unfilled, interpolate};
pub use problem::{ConfigError, Problem};
pub use values::{DEFAULT_RETRIES, parse_cron, parse_duration, parse_network};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde_json_path::JsonPath;
use url::Url;

use crate::adapters;
use crate::endpoint::EndpointSpec;

use interpolate::{apply_env_overrides, interpolate_table};
use problem::Problems;
use raw::RawConfig;
use settings::validate;

/// Where `pollhook` looks for its config when neither `--config` nor `POLLHOOK_CONFIG` is given.
pub const DEFAULT_CONFIG_FILE: &str = "pollhook.toml";

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
    /// Delivered events (and those no endpoint wanted) older than this are removed with their
    /// deliveries and attempts (default 30 days).
    pub retain: Duration,
    /// Events with a dead-lettered delivery are kept until it is resolved or they are older
    /// than this (default 90 days); pending ones are never removed.
    pub retain_failed: Duration,
}

/// `[server]`: the admin API.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address the admin API listens on.
    pub listen: SocketAddr,
    /// A second listener serving only the probes and `/metrics`, without a token and on any
    /// interface, so a kubelet or Prometheus reaches them while the admin API stays on loopback.
    pub health_listen: Option<SocketAddr>,
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
    /// `[http] proxy`, when `proxy_for` names endpoints.
    pub proxy: Option<crate::http::Proxy>,
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
    /// RSS, Atom or JSON Feed documents, one entry per item (`adapter = "feed"`); REST's settings
    /// apply.
    Feed(Box<RestConfig>),
}

impl SourceKind {
    /// The engine's name: `rest`, `exec`, `graphql` or `feed`.
    pub fn engine(&self) -> &'static str {
        match self {
            SourceKind::Rest(_) => "rest",
            SourceKind::Exec(_) => "exec",
            SourceKind::Graphql(_) => "graphql",
            SourceKind::Feed(_) => "feed",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a resource's listing is requested: GET, or a POST carrying a body (SOAP, search APIs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// POST rather than GET.
    pub post: bool,
    /// The body sent with each page's request; `{page}`, `{offset}`, `{size}` and `{cursor}` are
    /// filled in per page (escaped for XML or JSON, as `content_type` says).
    pub body: Option<String>,
    /// The body's media type.
    pub content_type: String,
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
    /// At most this many pages of one listing in flight at once: pages after the one being read
    /// are asked for ahead where the answers say which they are (a stated total, `Link:
    /// rel="last"`, a `Content-Range` total, the pages the last poll walked); the items a poll asks
    /// about at their own URL go as many at a time. 1 fetches one page after another.
    pub page_concurrency: u32,
    /// A response body larger than this fails the fetch (decompressed size).
    pub max_page_bytes: u64,
    /// Origins other than `base_url`'s that next links and redirects may lead to.
    pub follow_origins: Vec<FollowOrigin>,
    /// `[http] proxy`, when `proxy_for` names sources.
    pub proxy: Option<crate::http::Proxy>,
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
    /// 2 for `page` and `offset` pagination without `item_path`, whose pages shift under
    /// deletes).
    pub deleted_after: u32,
    /// The item's own URL path with an `{id}` placeholder (`/orders/{id}`): an item missing
    /// from a complete listing is fetched alone before it counts as deleted (404/410: deleted
    /// now; 200: pages shifted, it stays).
    pub item_path: Option<String>,
    /// Send `If-None-Match` / `If-Modified-Since` per page; a 304 page is taken from the snapshot.
    pub conditional: bool,
    /// Fetch only what changed since the last poll, with periodic full syncs.
    pub incremental: Option<Incremental>,
    /// How pages are written; `None`: by each response's `Content-Type`, JSON when it names none.
    pub format: Option<Format>,
    /// GET, or POST with a body.
    pub request: Request,
    /// The listing is a window onto the newest items (a feed): an item leaving it is not deleted.
    pub window: bool,
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
        /// Where an answer states the listing's length, if the API says.
        total: Option<Total>,
    },
    /// `?offset=N&limit=S`.
    Offset {
        /// Offset parameter.
        offset_param: String,
        /// Limit parameter.
        limit_param: String,
        /// Page size.
        size: u32,
        /// Where an answer states the listing's length, if the API says.
        total: Option<Total>,
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
    /// PostgREST-style `Range` headers: each request asks `Range-Unit: items` and
    /// `Range: 0-99`; the answer's `Content-Range: 0-99/2500` says where it ends (`206` for part
    /// of the listing, `200` for all of it).
    Range {
        /// The `Range-Unit` (`items`).
        unit: String,
        /// Items per request.
        size: u32,
    },
}

/// Where a `page` or `offset` listing's answers state how many items the whole listing holds
/// (`total_header` or `total`). The listing ends once the items fetched reach it, one request
/// before the empty page that ends such a listing otherwise.
#[derive(Debug, Clone)]
pub enum Total {
    /// A response header holding a count (json-server's and Shipmondo's `X-Total-Count`).
    Header(reqwest::header::HeaderName),
    /// A count in the body (`$.total`, `$.meta.total_count`), a number or a string of digits.
    Body(JsonPath),
}

impl Pagination {
    /// Where this listing's answers state its length, if they do.
    pub fn total(&self) -> Option<&Total> {
        match self {
            Pagination::Page { total, .. } | Pagination::Offset { total, .. } => total.as_ref(),
            _ => None,
        }
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
pub(super) fn list_label(item: &toml::Value, index: usize) -> String {
    match item.get("name").and_then(toml::Value::as_str) {
        Some(name) => name.to_owned(),
        None => index.to_string(),
    }
}

/// A key path as validation writes it: list entries by their `name` where they have one
/// (`sources[shop].resources[orders].every`), by index otherwise.
pub(super) fn named_path(path: &serde_path_to_error::Path, root: &toml::Value) -> String {
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
pub(super) fn resolve(file: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        return path.to_owned();
    }
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
        _ => path.to_owned(),
    }
}
