//! Config for tests: parse text as a file would be ([`parse`], [`config_in`]), or build it
//! ([`ConfigBuilder`]) as typed TOML tables serialized by `toml`, never by `format!`.
//!
//! In: what a test needs of a source, its resources, endpoints and settings. Out: TOML text, a
//! file, or a parsed [`Config`]. Values are TOML values, so a URL or secret with a quote in it
//! cannot change the file's shape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pollhook::config::{Config, ConfigError};
use tempfile::TempDir;
use toml::{Table, Value};

/// An environment with these variables.
pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Parses config text as if read from `test.toml`.
pub fn parse(text: &str, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), text, env)
}

/// Parses config text with its `[storage] path` inside `dir`; panics on a bad config.
pub fn config_in(dir: &TempDir, text: &str) -> Config {
    let db = dir.path().join("pollhook.db");
    let text = format!("[storage]\npath = '{}'\n\n{text}", db.display());
    parse(&text, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"))
}

// ───────────────────────────── a config builder ─────────────────────────────

/// A whole config file, built as TOML tables.
///
/// ```ignore
/// let text = ConfigBuilder::new(dir)
///     .source(Source::json_server("shop", &shop.url).resource(Resource::emitting("orders")))
///     .loopback_delivery()
///     .endpoint(Endpoint::new("app", &receiver.url))
///     .toml();
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ConfigBuilder {
    doc: Table,
    sources: Vec<Table>,
    endpoints: Vec<Table>,
    dir: Option<PathBuf>,
}

impl ConfigBuilder {
    /// A config whose database is `pollhook.db` in `dir` and whose admin API listens on a port
    /// the kernel picks, so pipelines can run side by side.
    pub fn new(dir: &Path) -> ConfigBuilder {
        ConfigBuilder::without_storage().in_dir(dir)
    }

    /// Puts the database in `dir` (`pollhook.db`), where [`ConfigBuilder::write`] writes the
    /// file, and the admin API on a port the kernel picks.
    pub fn in_dir(mut self, dir: &Path) -> ConfigBuilder {
        self.dir = Some(dir.to_owned());
        self.set(
            "storage.path",
            dir.join("pollhook.db").display().to_string(),
        )
        .any_port()
    }

    /// A config without `[storage]` or `[server]`, for [`super::Harness`] and
    /// [`super::Pipeline`], which add their own.
    pub fn without_storage() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Sets a top-level setting by dotted path: `"server.admin_token"`, `"delivery.retries"`.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> ConfigBuilder {
        set_path(&mut self.doc, path, value.into());
        self
    }

    /// `[server] listen` on a port the kernel picks.
    pub fn any_port(self) -> ConfigBuilder {
        self.set("server.listen", "127.0.0.1:0")
    }

    /// `[delivery]` open to loopback over plain http.
    pub fn loopback_delivery(self) -> ConfigBuilder {
        self.set("delivery.allow_http", true)
            .set("delivery.allow_networks", vec!["127.0.0.0/8"])
    }

    /// Adds a `[[sources]]` table.
    pub fn source(mut self, source: Source) -> ConfigBuilder {
        self.sources.push(source.into_table());
        self
    }

    /// Adds an `[[endpoints]]` table.
    pub fn endpoint(mut self, endpoint: Endpoint) -> ConfigBuilder {
        self.endpoints.push(endpoint.0);
        self
    }

    /// The file's text.
    pub fn toml(&self) -> String {
        let mut doc = self.doc.clone();
        for (key, list) in [("sources", &self.sources), ("endpoints", &self.endpoints)] {
            if !list.is_empty() {
                let tables = list.iter().cloned().map(Value::Table).collect();
                doc.insert(key.to_owned(), Value::Array(tables));
            }
        }
        toml::to_string(&doc).expect("a table of TOML values serializes")
    }

    /// Writes the text as `pollhook.toml` in the builder's dir; its path.
    pub fn write(&self) -> PathBuf {
        self.write_as("pollhook.toml")
    }

    /// Writes the text as `file_name` in the builder's dir; its path.
    pub fn write_as(&self, file_name: &str) -> PathBuf {
        let dir = self
            .dir
            .as_deref()
            .expect("ConfigBuilder::new(dir) to write a file");
        let path = dir.join(file_name);
        std::fs::write(&path, self.toml()).expect("the config file is written");
        path
    }

    /// The parsed config, as if read from `pollhook.toml` in the builder's dir; panics, showing
    /// the text, on a bad one.
    pub fn parse(&self) -> Config {
        let text = self.toml();
        let file = self
            .dir
            .as_deref()
            .unwrap_or(Path::new("."))
            .join("pollhook.toml");
        Config::parse(&file, &text, &BTreeMap::new())
            .unwrap_or_else(|e| panic!("{e}\n--- config ---\n{text}"))
    }
}

/// One `[[sources]]` table and its resources.
#[derive(Debug, Clone)]
#[must_use]
pub struct Source {
    table: Table,
    resources: Vec<Table>,
}

impl Source {
    /// A REST source `name` at `base_url`.
    pub fn new(name: &str, base_url: &str) -> Source {
        Source::named(name).set("base_url", base_url)
    }

    /// A source `name` with no other key yet: an `exec` source, which has no `base_url`.
    pub fn named(name: &str) -> Source {
        let source = Source {
            table: Table::new(),
            resources: Vec::new(),
        };
        source.set("name", name)
    }

    /// A `json-server` source (a [`super::Shop`], a `demo::FakeShop`).
    pub fn json_server(name: &str, base_url: &str) -> Source {
        Source::new(name, base_url).set("adapter", "json-server")
    }

    /// Sets a key of the source: `timeout`, `retries`, `auth`…
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Source {
        set_path(&mut self.table, key, value.into());
        self
    }

    /// Adds a `[[sources.resources]]` table.
    pub fn resource(mut self, resource: Resource) -> Source {
        self.resources.push(resource.0);
        self
    }

    fn into_table(mut self) -> Table {
        if !self.resources.is_empty() {
            let resources = self.resources.into_iter().map(Value::Table).collect();
            self.table
                .insert("resources".into(), Value::Array(resources));
        }
        self.table
    }
}

/// One `[[sources.resources]]` table.
#[derive(Debug, Clone)]
#[must_use]
pub struct Resource(Table);

impl Resource {
    /// A resource `name`, polled `every`, without jitter.
    pub fn new(name: &str, every: &str) -> Resource {
        Resource(Table::new())
            .set("name", name)
            .set("every", every)
            .set("jitter", "0s")
    }

    /// A resource polled every 200 ms whose first poll emits every item as `created`.
    pub fn emitting(name: &str) -> Resource {
        Resource::new(name, "200ms").set("initial", "emit")
    }

    /// Sets a key of the resource: `path`, `id`, `initial`…
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Resource {
        set_path(&mut self.0, key, value.into());
        self
    }
}

/// One `[[endpoints]]` table.
#[derive(Debug, Clone)]
#[must_use]
pub struct Endpoint(Table);

impl Endpoint {
    /// An endpoint `name` posting to `url`, with the given scheme and secret.
    pub fn new(name: &str, url: &str, signing: &str, secret: &str) -> Endpoint {
        Endpoint::default_signing(name, url, secret).set("signing", signing)
    }

    /// An endpoint `name` posting to `url` with `secret`, its scheme left to the default.
    pub fn default_signing(name: &str, url: &str, secret: &str) -> Endpoint {
        Endpoint(Table::new())
            .set("name", name)
            .set("url", url)
            .set("secret", secret)
    }

    /// Sets a key of the endpoint: `resources`, `actions`, `headers`…
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Endpoint {
        set_path(&mut self.0, key, value.into());
        self
    }
}

/// An inline table of strings, such as `auth = { type = "bearer", token = "…" }`.
pub fn table(pairs: &[(&str, &str)]) -> Value {
    Value::Table(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect(),
    )
}

/// Sets `a.b.c` in `table`, making the tables on the way.
fn set_path(table: &mut Table, path: &str, value: Value) {
    let (parents, key) = match path.rsplit_once('.') {
        Some((parents, key)) => (Some(parents), key),
        None => (None, path),
    };
    let mut at = table;
    for part in parents.into_iter().flat_map(|p| p.split('.')) {
        let next = at
            .entry(part.to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        at = match next {
            Value::Table(t) => t,
            other => panic!("config key {part} is {other}, not a table"),
        };
    }
    at.insert(key.to_owned(), value);
}

/// The `shop` source at `url` (a [`super::Shop`] or a `demo::FakeShop`): json-server, its
/// `orders` polled every 200 ms, every item emitted as `created` on the first poll.
pub fn shop_source(url: &str) -> Source {
    Source::json_server("shop", url).resource(Resource::emitting("orders"))
}

/// [`shop_source`] with delivery open to loopback: add endpoints and go.
pub fn shop_config(url: &str) -> ConfigBuilder {
    ConfigBuilder::without_storage()
        .source(shop_source(url))
        .loopback_delivery()
}
