//! The config file's raw shapes: serde structs only (`deny_unknown_fields`), turned into the
//! validated [`Config`](super::Config) by the rest of this module.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::EndpointInput;

// ───────────────────────────── raw TOML shapes ─────────────────────────────

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) storage: RawStorage,
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) poll: RawPoll,
    #[serde(default)]
    pub(super) delivery: RawDelivery,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) sources: Vec<RawSource>,
    #[serde(default)]
    pub(super) endpoints: Vec<EndpointInput>,
    #[allow(dead_code)] // read before deserializing, kept here so the key is known
    pub(super) adapters_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub(super) path: Option<String>,
    pub(super) url: Option<String>,
    pub(super) pool_size: Option<usize>,
    pub(super) retain: Option<String>,
    pub(super) retain_failed: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) health_listen: Option<String>,
    pub(super) admin_token: Option<String>,
    pub(super) allowed_hosts: Option<Vec<String>>,
    pub(super) max_connections: Option<usize>,
    pub(super) header_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoll {
    pub(super) concurrency: Option<usize>,
    pub(super) alert_after_failures: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) proxy: Option<String>,
    #[serde(default)]
    pub(super) no_proxy: Vec<String>,
    pub(super) proxy_for: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    pub(super) timeout: Option<String>,
    pub(super) retries: Option<Vec<String>>,
    #[serde(default)]
    pub(super) allow_http: bool,
    #[serde(default)]
    pub(super) allow_networks: Vec<String>,
    pub(super) concurrency: Option<usize>,
    pub(super) endpoint_concurrency: Option<usize>,
    pub(super) disable_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) name: String,
    #[serde(default = "default_adapter")]
    pub(super) adapter: String,
    pub(super) base_url: Option<String>,
    pub(super) auth: Option<RawAuth>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    pub(super) timeout: Option<String>,
    pub(super) retries: Option<u32>,
    pub(super) max_retry_after: Option<String>,
    pub(super) rate_limit: Option<f64>,
    pub(super) host_rate_limit: Option<f64>,
    pub(super) max_pages: Option<u32>,
    pub(super) page_concurrency: Option<u32>,
    pub(super) max_page_bytes: Option<u64>,
    #[serde(default)]
    pub(super) follow_origins: Vec<RawFollowOrigin>,
    pub(super) command: Option<Vec<String>>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) params: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) resources: Vec<RawResource>,
}

/// `"https://cdn.example.com"` (no credentials sent) or
/// `{ origin = "https://cdn.example.com", credentials = true }`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawFollowOrigin {
    Origin(String),
    Table {
        origin: String,
        #[serde(default)]
        credentials: bool,
    },
}

pub(super) fn default_adapter() -> String {
    "rest".into()
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub(super) enum RawAuth {
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
pub(super) struct RawResource {
    pub(super) name: String,
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) query: BTreeMap<String, toml::Value>,
    pub(super) every: Option<String>,
    pub(super) schedule: Option<String>,
    pub(super) tz: Option<String>,
    pub(super) jitter: Option<String>,
    pub(super) items: Option<String>,
    pub(super) id: Option<OneOrMany>,
    #[serde(default)]
    pub(super) ignore: Vec<String>,
    pub(super) pagination: Option<RawPagination>,
    pub(super) initial: Option<String>,
    pub(super) max_delete_ratio: Option<f64>,
    pub(super) deleted_after: Option<u32>,
    pub(super) item_path: Option<String>,
    #[serde(default)]
    pub(super) conditional: bool,
    pub(super) document: Option<String>,
    pub(super) incremental: Option<RawIncremental>,
    pub(super) format: Option<String>,
    pub(super) method: Option<String>,
    pub(super) body: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) window: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIncremental {
    pub(super) since_param: String,
    #[serde(default = "default_since_field")]
    pub(super) field: String,
    pub(super) overlap: Option<String>,
    pub(super) full_sync: Option<String>,
    pub(super) format: Option<String>,
}

pub(super) fn default_since_field() -> String {
    "updated_at".into()
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(tag = "style", rename_all = "kebab-case", deny_unknown_fields)]
pub(super) enum RawPagination {
    None,
    LinkHeader,
    Page {
        page_param: Option<String>,
        size_param: Option<String>,
        size: Option<u32>,
        first: Option<u64>,
        total_header: Option<String>,
        total: Option<String>,
    },
    Offset {
        offset_param: Option<String>,
        limit_param: Option<String>,
        size: Option<u32>,
        total_header: Option<String>,
        total: Option<String>,
    },
    Cursor {
        cursor_param: Option<String>,
        next_cursor: String,
        has_more: Option<String>,
    },
    NextUrl {
        next_url: String,
    },
    Range {
        unit: Option<String>,
        size: Option<u32>,
    },
}
