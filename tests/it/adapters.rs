//! Adapter definitions against fakes of the APIs they describe, and the engine features the
//! definitions lean on (DESIGN.md §3): OAuth2 client credentials, conditional requests, incremental
//! polling with full syncs, `deleted_after`, exec and GraphQL sources, user definition directories,
//! shared host rate limits and the `pollhook adapters` commands.
//!
//! Each provider fake answers the way the provider documents (pagination, auth header, where the
//! items are, id shapes) and refuses what the provider would refuse, such as a wrong credential or a
//! filter beside Shopify's `page_info`. Fakes cap pages at two or three items so a short listing
//! spans several pages. A source reaches its fake by overriding the definition's `base_url`
//! (user values win over definition values), and sets `host_rate_limit = 1000`: the limit is shared
//! by every source of a host in the process and the strictest wins, so a definition's real limit
//! would pace every test on 127.0.0.1.

use crate::support::block_on;
use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::Method;
use base64::Engine;
use pollhook::config::{
    Auth, Config, ConfigError, Pagination, ResourceConfig, RestConfig, SourceKind,
};
use pollhook::poll::{Mode, PollError, PollReport};
use pollhook::source::{Source, SourceError};
use pollhook::store::Store;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{
    FakeApi, Out, Reply, Req, ScriptedApi, Style, command, orders, output, parse, query_string,
    with_param,
};

/// Items `page` (1-based) of `list`, `size` a page; empty past the end.
fn page_of(list: &[Value], page: usize, size: usize) -> Vec<Value> {
    list.chunks(size)
        .nth(page.saturating_sub(1))
        .map(<[Value]>::to_vec)
        .unwrap_or_default()
}

/// An RFC 8288 `Link` value.
fn link(links: &[(String, &str)]) -> String {
    links
        .iter()
        .map(|(url, rel)| format!("<{url}>; rel=\"{rel}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A weak ETag over the body only, as most servers compute it.
fn etag_of(body: &str) -> String {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    format!("W/\"{:016x}\"", hasher.finish())
}

/// Shared, mutable data behind a fake.
#[derive(Default)]
struct Shared<T>(Arc<Mutex<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Shared<T> {
    fn new(value: T) -> Self {
        Self(Arc::new(Mutex::new(value)))
    }
    fn get(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// ───────────────────────────── a poll harness ─────────────────────────────

/// A config over a fresh database, with every source built once (so an OAuth2 token cache lives
/// across polls, as in `pollhook run`).
struct Setup {
    _dir: TempDir,
    config: Config,
    store: Store,
    sources: BTreeMap<String, Arc<dyn Source>>,
}

impl Setup {
    /// `text` is a config without `[storage]`.
    fn new(text: &str) -> Setup {
        Self::with("", text, &BTreeMap::new())
    }

    /// `top` goes before `[storage]` (top-level keys such as `adapters_dir`).
    fn with(top: &str, text: &str, env: &BTreeMap<String, String>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = Self::parse_in(&dir, top, text, env).unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&config.storage.path).unwrap();
        let sources = config
            .sources
            .iter()
            .map(|s| (s.name.clone(), pollhook::source::build(s).unwrap()))
            .collect();
        Setup {
            _dir: dir,
            config,
            store,
            sources,
        }
    }

    fn parse_in(
        dir: &TempDir,
        top: &str,
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let db = dir.path().join("pollhook.db");
        parse(
            &format!("{top}\n[storage]\npath = '{}'\n\n{text}", db.display()),
            env,
        )
    }

    fn split(target: &str) -> (&str, &str) {
        target.split_once('.').expect("source.resource")
    }

    fn resource(&self, target: &str) -> &ResourceConfig {
        let (source, resource) = Self::split(target);
        self.config
            .sources
            .iter()
            .find(|s| s.name == source)
            .and_then(|s| s.resources.iter().find(|r| r.name == resource))
            .unwrap_or_else(|| panic!("no resource {target}"))
    }

    fn rest(&self, source: &str) -> &RestConfig {
        let source = self
            .config
            .sources
            .iter()
            .find(|s| s.name == source)
            .unwrap();
        match &source.kind {
            SourceKind::Rest(rest) | SourceKind::Graphql(rest) | SourceKind::Feed(rest) => rest,
            SourceKind::Exec(_) => panic!("{} is an exec source", source.name),
        }
    }

    async fn try_poll(&self, target: &str) -> Result<PollReport, PollError> {
        let (source, _) = Self::split(target);
        pollhook::poll::poll(
            &self.store,
            source,
            self.sources[source].as_ref(),
            self.resource(target),
            Mode::Commit,
        )
        .await
    }

    async fn poll(&self, target: &str) -> PollReport {
        self.try_poll(target)
            .await
            .unwrap_or_else(|e| panic!("polling {target}: {e}"))
    }

    async fn fail(&self, target: &str) -> SourceError {
        match self.try_poll(target).await {
            Err(PollError::Fetch(e)) => e,
            Err(other) => panic!("expected a fetch error, got {other}"),
            Ok(report) => panic!("expected a fetch error, got {report:?}"),
        }
    }

    /// The snapshot's ids, sorted.
    fn ids(&self, target: &str) -> Vec<String> {
        let (source, resource) = Self::split(target);
        let mut ids: Vec<String> = block_on(self.store.snapshot_hashes(source, resource))
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        ids
    }

    /// Every event written, as `action id`.
    fn written(&self) -> Vec<String> {
        let filter = pollhook::store::EventFilter {
            limit: 10_000,
            ..Default::default()
        };
        let mut events: Vec<String> = block_on(self.store.events(filter))
            .unwrap()
            .into_iter()
            .map(|(_, e)| format!("{} {}", e.action, e.resource_id))
            .collect();
        events.reverse();
        events
    }
}

/// The report's events as `action id`.
fn actions(report: &PollReport) -> Vec<String> {
    report
        .events
        .iter()
        .map(|e| format!("{} {}", e.action, e.resource_id))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn adapters_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters")
}

// ───────────────────────────── 1. every definition is documented and valid ─────────────────────────────

/// Every `adapters/*.toml`: (name, text), sorted by name.
fn definitions() -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = std::fs::read_dir(adapters_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    found.sort();
    found
}

/// The `[[sources]]` example of a definition's header comment, uncommented.
fn example_source(text: &str) -> Option<String> {
    let mut lines = text
        .lines()
        .skip_while(|l| l.trim_start_matches('#').trim() != "[[sources]]");
    let mut out = String::new();
    for line in lines.by_ref() {
        let Some(rest) = line.strip_prefix("#  ") else {
            break;
        };
        out.push_str(rest);
        out.push('\n');
    }
    (!out.is_empty()).then_some(out)
}

/// An environment setting every `${VAR}` that `text` names.
fn env_for(text: &str) -> BTreeMap<String, String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split(['}', ':']).next())
        .map(|var| (var.to_owned(), format!("value-of-{}", var.to_lowercase())))
        .collect()
}

#[test]
fn every_definition_is_embedded() {
    let catalog = pollhook::adapters::Catalog::load(None).unwrap();
    let embedded: Vec<&str> = catalog.names().collect();
    let files: Vec<String> = definitions().into_iter().map(|(name, _)| name).collect();
    assert_eq!(embedded, files);
    for name in [
        "github",
        "stripe",
        "shipmondo",
        "shopify",
        "hubspot",
        "microsoft-graph",
    ] {
        assert!(embedded.contains(&name), "{name} is not embedded");
        assert!(
            !catalog.description(name).is_empty(),
            "{name}: no description"
        );
    }
}

/// The example in each definition's header comment passes `pollhook check`, and so does a source
/// polling every resource the definition knows.
#[test]
fn every_definition_documents_a_source_that_checks() {
    for (name, text) in definitions() {
        let example = example_source(&text).unwrap_or_else(|| {
            panic!("adapters/{name}.toml: no `[[sources]]` example in its header comment")
        });
        assert!(
            example.contains(&format!("adapter = \"{name}\"")),
            "adapters/{name}.toml: the example does not use it:\n{example}"
        );
        let env = env_for(&example);
        let config = parse(&example, &env)
            .unwrap_or_else(|e| panic!("adapters/{name}.toml example:\n{example}\n{e}"));
        assert_eq!(config.sources.len(), 1);

        let definition: toml::Table = text.parse().unwrap();
        let known: Vec<String> = definition
            .get("resources")
            .and_then(toml::Value::as_table)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        let mut table: toml::Table = example.parse().unwrap();
        let source = table["sources"].as_array_mut().unwrap()[0]
            .as_table_mut()
            .unwrap();
        source.insert(
            "resources".into(),
            toml::Value::Array(
                known
                    .iter()
                    .map(|r| {
                        let mut t = toml::Table::new();
                        t.insert("name".into(), r.clone().into());
                        t.insert("every".into(), "1m".into());
                        toml::Value::Table(t)
                    })
                    .collect(),
            ),
        );
        let all = toml::to_string(&table).unwrap();
        let config = parse(&all, &env)
            .unwrap_or_else(|e| panic!("adapters/{name}.toml, every resource:\n{all}\n{e}"));
        let paths: Vec<&str> = config.sources[0]
            .resources
            .iter()
            .map(|r| r.path.as_str())
            .collect();
        assert_eq!(paths.len(), known.len());
        assert!(
            paths.iter().all(|p| p.starts_with('/') && !p.contains('{')),
            "adapters/{name}.toml: {paths:?}"
        );
    }
}

/// What each definition encodes, read back from a minimal source: the real base URL, auth, where
/// the items are, paging and the rate limit.
#[test]
fn definitions_carry_the_documented_api_shapes() {
    let examples: String = definitions()
        .iter()
        .filter(|(name, _)| name != "json-server")
        .map(|(_, text)| example_source(text).unwrap())
        .collect();
    let env = env_for(&examples);
    let config = parse(&examples, &env).unwrap_or_else(|e| panic!("{e}"));
    let source = |name: &str| {
        let s = config.sources.iter().find(|s| s.name == name).unwrap();
        let SourceKind::Rest(rest) = &s.kind else {
            panic!("{name} is not a REST source")
        };
        (rest.as_ref(), &s.resources[0])
    };

    let (github, issues) = source("github");
    assert_eq!(github.base_url.as_str(), "https://api.github.com/");
    assert_eq!(github.host_rate_limit, Some(1.0));
    assert!(matches!(github.auth, Auth::Bearer { .. }));
    let headers: BTreeMap<&str, &str> = github
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(headers["Accept"], "application/vnd.github+json");
    assert_eq!(headers["X-GitHub-Api-Version"], "2022-11-28");
    assert_eq!(issues.path, "/repos/octocat/Hello-World/issues");
    assert!(matches!(issues.pagination, Pagination::LinkHeader));
    assert!(issues.conditional);
    assert_eq!(issues.id[0].to_string(), "number");
    assert_eq!(
        issues.incremental.as_ref().map(|i| i.since_param.as_str()),
        Some("since")
    );

    let (stripe, customers) = source("stripe");
    assert_eq!(stripe.base_url.as_str(), "https://api.stripe.com/v1");
    assert_eq!(stripe.host_rate_limit, Some(20.0));
    assert_eq!(customers.items_text.as_deref(), Some("$.data"));
    assert_eq!(customers.query, [("limit".to_owned(), "100".to_owned())]);
    let Pagination::Cursor {
        cursor_param,
        has_more,
        ..
    } = &customers.pagination
    else {
        panic!("{:?}", customers.pagination)
    };
    assert_eq!(cursor_param, "starting_after");
    assert!(has_more.is_some());

    let (shipmondo, shipments) = source("shipmondo");
    assert_eq!(
        shipmondo.base_url.as_str(),
        "https://app.shipmondo.com/api/public/v3"
    );
    assert!(matches!(shipmondo.auth, Auth::Basic { .. }));
    assert!(matches!(
        shipments.pagination,
        Pagination::Page {
            size: 50,
            first: 1,
            ..
        }
    ));

    let (shop, orders) = source("shopify");
    assert_eq!(
        shop.base_url.as_str(),
        "https://value-of-shopify_shop.myshopify.com/admin/api/2024-10"
    );
    let Auth::ApiKey { place, .. } = &shop.auth else {
        panic!("{:?}", shop.auth)
    };
    assert_eq!(
        *place,
        pollhook::config::KeyPlace::Header("X-Shopify-Access-Token".into())
    );
    assert_eq!(orders.items_text.as_deref(), Some("$.orders"));
    assert_eq!(
        orders.query,
        [
            ("limit".to_owned(), "250".to_owned()),
            ("status".to_owned(), "any".to_owned())
        ]
    );

    let (hubspot, contacts) = source("hubspot");
    assert_eq!(hubspot.base_url.as_str(), "https://api.hubapi.com/");
    assert_eq!(contacts.path, "/crm/v3/objects/contacts");
    assert_eq!(contacts.items_text.as_deref(), Some("$.results"));

    let (graph, users) = source("entra");
    assert_eq!(graph.base_url.as_str(), "https://graph.microsoft.com/v1.0");
    let Auth::OAuth2(oauth) = &graph.auth else {
        panic!("{:?}", graph.auth)
    };
    assert_eq!(
        oauth.token_url.as_str(),
        "https://login.microsoftonline.com/value-of-azure_tenant_id/oauth2/v2.0/token"
    );
    assert_eq!(
        oauth.scope.as_deref(),
        Some("https://graph.microsoft.com/.default")
    );
    assert!(
        !oauth.basic,
        "Graph takes the client secret in the form body"
    );
    assert_eq!(users.items_text.as_deref(), Some("$.value"));
    assert!(matches!(users.pagination, Pagination::NextUrl { .. }));
}

// ───────────────────────────── 2. GitHub ─────────────────────────────

const GITHUB_TOKEN: &str = "github_pat_11ABCDEFG0123456789_test";

/// A repository as GitHub's REST API v3 serves it: arrays paged by `page` with a `Link` header
/// pointing at `/repositories/<id>/…`, weak ETags over the body, `since` on issues.
#[derive(Default)]
struct Repo {
    issues: Vec<Value>,
    pulls: Vec<Value>,
    releases: Vec<Value>,
}

fn github(repo: Shared<Repo>) -> impl Fn(&Req) -> Reply {
    move |req| {
        if req.bearer() != Some(GITHUB_TOKEN) {
            return Reply::error(
                401,
                &json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}),
            );
        }
        if req.header("x-github-api-version") != Some("2022-11-28")
            || req.header("accept") != Some("application/vnd.github+json")
        {
            return Reply::error(
                400,
                &json!({"message": "missing API version or media type"}),
            );
        }
        let kind = req
            .path
            .strip_prefix("/repos/octo/widgets/")
            .or_else(|| req.path.strip_prefix("/repositories/1296269/"))
            .unwrap_or("");
        let repo = repo.get();
        let mut list = match kind {
            "issues" => repo.issues.clone(),
            "pulls" => repo.pulls.clone(),
            "releases" => repo.releases.clone(),
            _ => return Reply::error(404, &json!({"message": "Not Found"})),
        };
        if let Some(since) = req.q("since") {
            list.retain(|i| i["updated_at"].as_str().unwrap_or("") >= since);
        }
        // GitHub honours per_page up to 100; this fake serves 2 so five items span three pages.
        let size = 2;
        let pages = list.len().div_ceil(size).max(1);
        let page: usize = req.q("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let body = Value::Array(page_of(&list, page, size)).to_string();
        let etag = etag_of(&body);
        if req.header("if-none-match") == Some(etag.as_str()) {
            return Reply::status(304, "").with("etag", etag);
        }
        let at = |n: usize| {
            format!(
                "{}/repositories/1296269/{kind}?{}",
                req.base,
                with_param(req, "page", &n.to_string())
            )
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push((at(page - 1), "prev"));
        }
        if page < pages {
            links.push((at(page + 1), "next"));
            links.push((at(pages), "last"));
        }
        if page > 1 {
            links.push((at(1), "first"));
        }
        let mut reply = Reply::status(200, body)
            .with("content-type", "application/json; charset=utf-8")
            .with("etag", etag)
            .with("x-ratelimit-limit", "5000");
        if !links.is_empty() {
            reply = reply.with("link", link(&links));
        }
        reply
    }
}

fn issue(number: u64, state: &str, updated_at: &str) -> Value {
    json!({
        "id": 1_000_000 + number, "node_id": format!("I_kwDO{number}"), "number": number,
        "title": format!("Issue {number}"), "state": state, "locked": false,
        "user": {"login": "octocat", "id": 1}, "labels": [], "comments": 0,
        "created_at": "2026-11-01T09:00:00Z", "updated_at": updated_at,
        "reactions": {"total_count": 0, "+1": 0, "heart": 0},
        "url": format!("https://api.github.com/repos/octo/widgets/issues/{number}")
    })
}

fn pull(number: u64, title: &str, stars: u64) -> Value {
    let repo = json!({"id": 1296269, "full_name": "octo/widgets", "stargazers_count": stars, "pushed_at": "2026-11-20T10:00:00Z"});
    json!({
        "id": 2_000_000 + number, "number": number, "title": title, "state": "open",
        "head": {"ref": format!("feature-{number}"), "sha": "6dcb09b5", "repo": repo},
        "base": {"ref": "main", "sha": "9f1c4e21", "repo": repo},
        "updated_at": "2026-11-20T10:00:00Z"
    })
}

/// A `github` source on the fake: the definition's paths, headers and paging with `params`.
fn github_source(url: &str, token: &str) -> String {
    format!(
        r#"
[[sources]]
name = "gh"
adapter = "github"
base_url = "{url}"
host_rate_limit = 1000
auth = {{ type = "bearer", token = "{token}" }}
params = {{ repo = "octo/widgets" }}

  [[sources.resources]]
  name = "issues"
  every = "5m"

  [[sources.resources]]
  name = "pulls"
  every = "5m"

  [[sources.resources]]
  name = "releases"
  every = "1h"
"#
    )
}

#[tokio::test]
async fn github_issues_follow_link_headers_then_poll_incrementally() {
    let repo = Shared::new(Repo {
        issues: (1..=5)
            .map(|n| issue(n, "open", "2026-11-20T10:00:00Z"))
            .collect(),
        ..Repo::default()
    });
    let fake = ScriptedApi::start(github(repo.clone())).await;
    let setup = Setup::new(&github_source(&fake.url, GITHUB_TOKEN));

    let first = setup.poll("gh.issues").await;
    assert!(first.full && first.baseline);
    assert_eq!((first.listed, first.pages), (5, 3));
    assert_eq!(setup.ids("gh.issues"), strings(&["1", "2", "3", "4", "5"]));
    assert_eq!(
        fake.targets(),
        [
            "/repos/octo/widgets/issues?per_page=100&state=all",
            "/repositories/1296269/issues?per_page=100&state=all&page=2",
            "/repositories/1296269/issues?per_page=100&state=all&page=3",
        ]
    );
    for req in fake.requests() {
        assert_eq!(req.status, 200, "{req:?}");
        assert!(req.header("if-none-match").is_none());
    }

    // A reaction (ignored, as is the `updated_at` it bumps) and a closed issue.
    {
        let mut repo = repo.get();
        repo.issues[1]["reactions"]["heart"] = json!(3);
        repo.issues[1]["updated_at"] = json!("2026-11-21T08:00:00Z");
        repo.issues[3]["state"] = json!("closed");
        repo.issues[3]["updated_at"] = json!("2026-11-21T09:00:00Z");
    }
    fake.clear();
    let second = setup.poll("gh.issues").await;
    assert!(
        !second.full,
        "the second poll within full_sync is incremental"
    );
    assert_eq!(actions(&second), ["updated 4"]);
    assert!(
        second.events[0]
            .changes
            .value()
            .as_array()
            .unwrap()
            .contains(&json!({"op": "replace", "path": "/state", "value": "closed"})),
        "{}",
        second.events[0].changes
    );
    // `since` is the newest `updated_at` listed so far, less the default one-minute overlap.
    let requests = fake.requests();
    assert_eq!(requests[0].q("since"), Some("2026-11-20T09:59:00Z"));
    assert!(requests.iter().all(|r| r.q("since").is_some()));
    assert_eq!(setup.ids("gh.issues").len(), 5);
}

#[tokio::test]
async fn github_pulls_and_releases_use_etags_and_ignore_volatile_fields() {
    let asset = |downloads: u64| json!({"id": 7, "name": "widget.tar.gz", "download_count": downloads, "updated_at": "2026-11-20T10:00:00Z"});
    let repo = Shared::new(Repo {
        pulls: vec![
            pull(7, "Add widgets", 10),
            pull(8, "Fix gears", 10),
            pull(9, "Docs", 10),
        ],
        releases: vec![
            json!({"id": 501, "tag_name": "v1.1.0", "name": "1.1", "assets": [asset(3)], "reactions": {"total_count": 1}}),
            json!({"id": 500, "tag_name": "v1.0.0", "name": "1.0", "assets": [], "reactions": {"total_count": 0}}),
        ],
        ..Repo::default()
    });
    let fake = ScriptedApi::start(github(repo.clone())).await;
    let setup = Setup::new(&github_source(&fake.url, GITHUB_TOKEN));

    assert_eq!(setup.poll("gh.pulls").await.listed, 3);
    assert_eq!(setup.poll("gh.releases").await.listed, 2);
    assert_eq!(setup.ids("gh.pulls"), strings(&["7", "8", "9"]));
    assert_eq!(setup.ids("gh.releases"), strings(&["500", "501"]));

    // Stars on the embedded repository copies change page 1; a retitled pull request page 2.
    {
        let mut repo = repo.get();
        for pr in repo.pulls.iter_mut() {
            pr["head"]["repo"]["stargazers_count"] = json!(11);
            pr["base"]["repo"]["stargazers_count"] = json!(11);
        }
        repo.pulls[2]["title"] = json!("Docs for widgets");
        repo.releases[0]["assets"][0]["download_count"] = json!(40);
        repo.releases[0]["reactions"]["total_count"] = json!(5);
    }
    fake.clear();
    let pulls = setup.poll("gh.pulls").await;
    assert_eq!(actions(&pulls), ["updated 9"]);
    let releases = setup.poll("gh.releases").await;
    assert!(releases.events.is_empty(), "{:?}", actions(&releases));
    // Pages with a next page send the ETags recorded for them; the last page of a Link-header
    // listing is always fetched in full (a 304 there could hide a page added after it).
    let requests = fake.requests();
    let conditional: Vec<bool> = requests
        .iter()
        .map(|r| r.header("if-none-match").is_some())
        .collect();
    assert_eq!(conditional, [true, false, false], "{requests:?}");

    // Nothing changed: every page answers 304 and is replayed from the snapshot.
    fake.clear();
    let pulls = setup.poll("gh.pulls").await;
    let releases = setup.poll("gh.releases").await;
    assert!(pulls.events.is_empty() && releases.events.is_empty());
    assert_eq!((pulls.listed, releases.listed), (3, 2));
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [304, 200, 200]);
    assert_eq!(setup.written(), strings(&["updated 9"]));
}

#[tokio::test]
async fn github_refuses_a_wrong_token_and_nothing_is_written() {
    let repo = Shared::new(Repo {
        issues: vec![issue(1, "open", "2026-11-20T10:00:00Z")],
        ..Repo::default()
    });
    let fake = ScriptedApi::start(github(repo)).await;
    let setup = Setup::new(&github_source(&fake.url, "github_pat_wrong"));
    let error = setup.fail("gh.issues").await;
    assert!(
        matches!(error, SourceError::Status { status: 401, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("Bad credentials"), "{message}");
    assert!(!message.contains("github_pat_wrong"), "{message}");
    assert!(setup.ids("gh.issues").is_empty() && setup.written().is_empty());
}

// ───────────────────────────── 3. Stripe ─────────────────────────────

const STRIPE_KEY: &str = "rk_test_51Hx0TESTKEY";

/// Stripe's list shape: `{"object": "list", "url", "has_more", "data"}`, `limit` 1–100, the next page
/// `starting_after=<last id>`; canceled subscriptions only with `status=all`.
fn stripe(objects: Shared<BTreeMap<&'static str, Vec<Value>>>) -> impl Fn(&Req) -> Reply {
    move |req| {
        if req.bearer() != Some(STRIPE_KEY) {
            return Reply::error(
                401,
                &json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: rk_test_****"}}),
            );
        }
        let Some(kind) = req.path.strip_prefix("/v1/") else {
            return Reply::error(404, &json!({"error": {"type": "invalid_request_error"}}));
        };
        let limit: usize = match req.q("limit").map(str::parse) {
            None => 10,
            Some(Ok(n @ 1..=100)) => n,
            Some(_) => {
                return Reply::error(
                    400,
                    &json!({"error": {"type": "invalid_request_error", "param": "limit"}}),
                );
            }
        };
        let mut list = objects.get().get(kind).cloned().unwrap_or_default();
        if kind == "subscriptions" && req.q("status") != Some("all") {
            list.retain(|s| s["status"] != "canceled");
        }
        let start = match req.q("starting_after") {
            None => 0,
            Some(id) => match list.iter().position(|o| o["id"] == id) {
                Some(at) => at + 1,
                None => {
                    return Reply::error(
                        400,
                        &json!({"error": {"type": "invalid_request_error", "param": "starting_after"}}),
                    );
                }
            },
        };
        // Stripe fills a page up to `limit`; this fake stops at 2 so five objects span 3 pages.
        let end = (start + limit.min(2)).min(list.len());
        Reply::json(&json!({
            "object": "list",
            "url": format!("/v1/{kind}"),
            "has_more": end < list.len(),
            "data": list[start..end],
        }))
    }
}

fn customer(n: u64, email: &str) -> Value {
    json!({
        "id": format!("cus_Q{n:04}"), "object": "customer", "email": email,
        "name": format!("Customer {n}"), "balance": 0, "created": 1_790_000_000 + n,
        "livemode": false, "metadata": {}, "next_invoice_sequence": 1
    })
}

#[tokio::test]
async fn stripe_pages_with_starting_after_until_has_more_is_false() {
    let mut objects = BTreeMap::new();
    objects.insert(
        "customers",
        (1..=5)
            .rev()
            .map(|n| customer(n, &format!("c{n}@example.com")))
            .collect(),
    );
    objects.insert(
        "subscriptions",
        vec![
            json!({"id": "sub_A", "object": "subscription", "status": "active", "customer": "cus_Q0001"}),
            json!({"id": "sub_B", "object": "subscription", "status": "canceled", "customer": "cus_Q0002"}),
            json!({"id": "sub_C", "object": "subscription", "status": "trialing", "customer": "cus_Q0003"}),
        ],
    );
    let objects = Shared::new(objects);
    let fake = ScriptedApi::start(stripe(objects.clone())).await;
    let setup = Setup::new(&format!(
        r#"
[[sources]]
name = "stripe"
adapter = "stripe"
base_url = "{url}/v1"
host_rate_limit = 1000
auth = {{ type = "bearer", token = "{STRIPE_KEY}" }}

  [[sources.resources]]
  name = "customers"
  every = "5m"

  [[sources.resources]]
  name = "subscriptions"
  every = "5m"
"#,
        url = fake.url
    ));

    let report = setup.poll("stripe.customers").await;
    assert_eq!((report.listed, report.pages), (5, 3));
    assert_eq!(
        fake.targets(),
        [
            "/v1/customers?limit=100",
            "/v1/customers?limit=100&starting_after=cus_Q0004",
            "/v1/customers?limit=100&starting_after=cus_Q0002",
        ]
    );
    assert_eq!(
        setup.ids("stripe.customers"),
        strings(&[
            "cus_Q0001",
            "cus_Q0002",
            "cus_Q0003",
            "cus_Q0004",
            "cus_Q0005"
        ])
    );

    // A new invoice moves `next_invoice_sequence` (ignored); an email changes; a customer is deleted.
    {
        let mut objects = objects.get();
        let customers = objects.get_mut("customers").unwrap();
        customers[4]["next_invoice_sequence"] = json!(2);
        customers[2]["email"] = json!("new3@example.com");
        customers.remove(0);
    }
    let report = setup.poll("stripe.customers").await;
    assert_eq!(actions(&report), ["updated cus_Q0003", "deleted cus_Q0005"]);

    // `status=all` keeps a canceled subscription listed.
    fake.clear();
    assert_eq!(setup.poll("stripe.subscriptions").await.listed, 3);
    assert_eq!(
        fake.targets(),
        [
            "/v1/subscriptions?limit=100&status=all",
            "/v1/subscriptions?limit=100&status=all&starting_after=sub_B",
        ]
    );
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.bearer() == Some(STRIPE_KEY))
    );
}

// ───────────────────────────── 4. Shipmondo ─────────────────────────────

/// Shipmondo API v3: arrays paged by `page` and `per_page` (at most 50, 25 for sales orders) with
/// `X-Total-*` headers, HTTP Basic auth, `updated_at_min` on sales orders.
fn shipmondo(data: Shared<BTreeMap<&'static str, Vec<Value>>>) -> impl Fn(&Req) -> Reply {
    move |req| {
        let basic = base64::engine::general_purpose::STANDARD.encode("api-user-1:api-key-1");
        if req.header("authorization") != Some(format!("Basic {basic}").as_str()) {
            return Reply::error(401, &json!({"error": "Invalid API User or API Key"}));
        }
        let Some(kind) = req.path.strip_prefix("/api/public/v3/") else {
            return Reply::error(404, &json!({"error": "Not found"}));
        };
        let max = if kind == "sales_orders" { 25 } else { 50 };
        let per_page: usize = req.q("per_page").and_then(|p| p.parse().ok()).unwrap_or(20);
        if per_page > max {
            return Reply::error(
                422,
                &json!({"error": format!("per_page must be at most {max}")}),
            );
        }
        let mut list = data.get().get(kind).cloned().unwrap_or_default();
        if let Some(min) = req.q("updated_at_min") {
            list.retain(|o| o["updated_at"].as_str().unwrap_or("") >= min);
        }
        let page: usize = req.q("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        // Served two at a time so a short listing spans pages.
        let size = per_page.min(2);
        Reply::json(&Value::Array(page_of(&list, page, size)))
            .with("x-per-page", size.to_string())
            .with("x-current-page", page.to_string())
            .with("x-total-count", list.len().to_string())
            .with("x-total-pages", list.len().div_ceil(size).to_string())
    }
}

#[tokio::test]
async fn shipmondo_pages_until_an_empty_page_and_polls_sales_orders_incrementally() {
    let mut data = BTreeMap::new();
    data.insert(
        "shipments",
        (1..=5)
            .map(|n| json!({"id": 5_545_620 + n, "carrier_code": "gls", "product_code": "GLSDK_SD", "pkg_no": format!("0000{n}"), "created_at": "2026-11-20T10:00:00.000+01:00"}))
            .collect(),
    );
    data.insert(
        "sales_orders",
        (1..=3)
            .map(|n| json!({"id": 83_837_160 + n, "order_id": format!("5662{n}"), "order_status": "open", "updated_at": "2026-11-20T10:00:00Z"}))
            .collect(),
    );
    let data = Shared::new(data);
    let fake = ScriptedApi::start(shipmondo(data.clone())).await;
    let setup = Setup::new(&format!(
        r#"
[[sources]]
name = "shipmondo"
adapter = "shipmondo"
base_url = "{url}/api/public/v3"
host_rate_limit = 1000
auth = {{ type = "basic", username = "api-user-1", password = "api-key-1" }}

  [[sources.resources]]
  name = "shipments"
  every = "2m"

  [[sources.resources]]
  name = "sales_orders"
  every = "2m"
"#,
        url = fake.url
    ));

    let report = setup.poll("shipmondo.shipments").await;
    assert_eq!((report.listed, report.pages), (5, 4));
    assert_eq!(
        fake.targets(),
        (1..=4)
            .map(|p| format!("/api/public/v3/shipments?page={p}&per_page=50"))
            .collect::<Vec<_>>()
    );
    assert_eq!(setup.ids("shipmondo.shipments").len(), 5);
    assert!(
        setup
            .ids("shipmondo.shipments")
            .contains(&"5545621".to_owned())
    );

    fake.clear();
    let first = setup.poll("shipmondo.sales_orders").await;
    assert!(first.full);
    assert_eq!(
        fake.targets()[0],
        "/api/public/v3/sales_orders?page=1&per_page=25"
    );
    {
        let mut data = data.get();
        let order = &mut data.get_mut("sales_orders").unwrap()[1];
        order["order_status"] = json!("on_hold");
        order["updated_at"] = json!("2026-11-21T08:00:00Z");
    }
    fake.clear();
    let second = setup.poll("shipmondo.sales_orders").await;
    assert!(!second.full);
    assert_eq!(actions(&second), ["updated 83837162"]);
    assert_eq!(
        fake.targets()[0],
        "/api/public/v3/sales_orders?updated_at_min=2026-11-20T09%3A59%3A00Z&page=1&per_page=25"
    );
}

// ───────────────────────────── 5. Shopify ─────────────────────────────

/// Shopify's Admin REST API: `{"orders": [...]}` pages linked by `page_info` in the `Link` header;
/// a request with `page_info` may carry no other filter than `limit` (400 otherwise, as Shopify
/// answers); only open orders unless `status=any`.
fn shopify(orders: Shared<Vec<Value>>) -> impl Fn(&Req) -> Reply {
    move |req| {
        if req.header("x-shopify-access-token") != Some("shpat_0123456789abcdef") {
            return Reply::error(
                401,
                &json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
            );
        }
        if req.path != "/admin/api/2024-10/orders.json" {
            return Reply::error(404, &json!({"errors": "Not Found"}));
        }
        let limit: usize = req.q("limit").and_then(|l| l.parse().ok()).unwrap_or(50);
        if limit > 250 {
            return Reply::error(400, &json!({"errors": {"limit": "must be at most 250"}}));
        }
        // page_info carries the page number and the filters of the first request.
        let (page, status, since) = match req.q("page_info") {
            Some(info) => {
                if req
                    .query
                    .iter()
                    .any(|(k, _)| k != "page_info" && k != "limit")
                {
                    return Reply::error(
                        400,
                        &json!({"errors": {"page_info": "cannot be combined with other filters"}}),
                    );
                }
                let mut parts = info.splitn(3, '|');
                let page = parts.next().and_then(|p| p.parse().ok()).unwrap_or(1);
                (
                    page,
                    parts.next().unwrap_or("").to_owned(),
                    parts.next().unwrap_or("").to_owned(),
                )
            }
            None => (
                1,
                req.q("status").unwrap_or("open").to_owned(),
                req.q("updated_at_min").unwrap_or("").to_owned(),
            ),
        };
        let mut list = orders.get().clone();
        if status != "any" {
            list.retain(|o| o["closed_at"].is_null());
        }
        list.retain(|o| o["updated_at"].as_str().unwrap_or("") >= since.as_str());
        let size = 2;
        let pages = list.len().div_ceil(size).max(1);
        let at = |n: usize| {
            format!(
                "{}/admin/api/2024-10/orders.json?{}",
                req.base,
                query_string(&[
                    ("limit".into(), limit.to_string()),
                    ("page_info".into(), format!("{n}|{status}|{since}")),
                ])
            )
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push((at(page - 1), "previous"));
        }
        if page < pages {
            links.push((at(page + 1), "next"));
        }
        let mut reply = Reply::json(&json!({"orders": page_of(&list, page, size)}))
            .with("x-shopify-shop-api-call-limit", "1/40");
        if !links.is_empty() {
            reply = reply.with("link", link(&links));
        }
        reply
    }
}

fn shopify_order(id: u64, closed: bool, updated_at: &str) -> Value {
    json!({
        "id": id, "admin_graphql_api_id": format!("gid://shopify/Order/{id}"), "name": format!("#{}", id % 10_000),
        "financial_status": "paid", "fulfillment_status": null,
        "closed_at": if closed { json!("2026-11-19T12:00:00-05:00") } else { Value::Null },
        "created_at": "2026-11-18T12:00:00-05:00", "updated_at": updated_at,
        "line_items": [{"id": id * 10, "sku": "WIDGET-1", "quantity": 1}]
    })
}

#[tokio::test]
async fn shopify_follows_page_info_links_verbatim() {
    let orders = Shared::new(
        (1..=5)
            .map(|n| shopify_order(450_789_460 + n, n == 2, "2026-11-20T10:00:00Z"))
            .collect::<Vec<_>>(),
    );
    let fake = ScriptedApi::start(shopify(orders.clone())).await;
    let setup = Setup::new(&format!(
        r#"
[[sources]]
name = "shop"
adapter = "shopify"
base_url = "{url}/admin/api/2024-10"
host_rate_limit = 1000
auth = {{ type = "api-key", value = "shpat_0123456789abcdef" }}

  [[sources.resources]]
  name = "orders"
  every = "1m"
"#,
        url = fake.url
    ));

    let report = setup.poll("shop.orders").await;
    assert_eq!(
        (report.listed, report.pages),
        (5, 3),
        "status=any lists the closed order"
    );
    let requests = fake.requests();
    assert_eq!(
        requests[0].target(),
        "/admin/api/2024-10/orders.json?limit=250&status=any"
    );
    for req in &requests[1..] {
        let keys: Vec<&str> = req.query.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["limit", "page_info"], "{}", req.target());
    }
    assert!(requests.iter().all(|r| r.status == 200));
    assert_eq!(setup.ids("shop.orders").len(), 5);

    {
        let mut orders = orders.get();
        orders[3]["financial_status"] = json!("refunded");
        orders[3]["updated_at"] = json!("2026-11-21T08:00:00Z");
        orders[0]["updated_at"] = json!("2026-11-21T09:00:00Z"); // ignored by itself
    }
    fake.clear();
    let report = setup.poll("shop.orders").await;
    assert!(!report.full);
    assert_eq!(actions(&report), ["updated 450789464"]);
    assert_eq!(
        fake.requests()[0].q("updated_at_min"),
        Some("2026-11-20T09:59:00Z")
    );
}

// ───────────────────────────── 6. HubSpot ─────────────────────────────

/// HubSpot CRM v3 list: `{"results": [...], "paging": {"next": {"after", "link"}}}`, no `paging` on
/// the last page; `limit` at most 100; archived objects only when asked.
fn hubspot(contacts: Shared<Vec<Value>>) -> impl Fn(&Req) -> Reply {
    move |req| {
        if req.bearer() != Some("pat-na1-11111111-2222-3333-4444-555555555555") {
            return Reply::error(
                401,
                &json!({"status": "error", "message": "Authentication credentials not found.", "category": "INVALID_AUTHENTICATION"}),
            );
        }
        if req.path != "/crm/v3/objects/contacts" {
            return Reply::error(
                404,
                &json!({"status": "error", "category": "OBJECT_NOT_FOUND"}),
            );
        }
        let limit: usize = req.q("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
        if limit > 100 {
            return Reply::error(
                400,
                &json!({"status": "error", "category": "VALIDATION_ERROR"}),
            );
        }
        let mut list = contacts.get().clone();
        if req.q("archived") != Some("true") {
            list.retain(|c| c["archived"] == false);
        }
        let start: usize = req.q("after").and_then(|a| a.parse().ok()).unwrap_or(0);
        let end = (start + limit.min(2)).min(list.len());
        let mut body = json!({"results": list[start.min(end)..end]});
        if end < list.len() {
            body["paging"] = json!({"next": {
                "after": end.to_string(),
                "link": format!("{}/crm/v3/objects/contacts?after={end}", req.base)
            }});
        }
        Reply::json(&body)
    }
}

fn contact(id: u64, email: &str, archived: bool) -> Value {
    json!({
        "id": id.to_string(),
        "properties": {
            "createdate": "2026-11-01T09:00:00.000Z", "email": email, "firstname": "Ada",
            "hs_object_id": id.to_string(), "lastmodifieddate": "2026-11-20T10:00:00.000Z"
        },
        "createdAt": "2026-11-01T09:00:00.000Z", "updatedAt": "2026-11-20T10:00:00.000Z",
        "archived": archived
    })
}

#[tokio::test]
async fn hubspot_follows_paging_next_after() {
    let contacts = Shared::new(vec![
        contact(101, "a@example.com", false),
        contact(102, "b@example.com", false),
        contact(103, "c@example.com", true),
        contact(104, "d@example.com", false),
        contact(105, "e@example.com", false),
    ]);
    let fake = ScriptedApi::start(hubspot(contacts.clone())).await;
    let setup = Setup::new(&format!(
        r#"
[[sources]]
name = "hubspot"
adapter = "hubspot"
base_url = "{url}"
host_rate_limit = 1000
auth = {{ type = "bearer", token = "pat-na1-11111111-2222-3333-4444-555555555555" }}

  [[sources.resources]]
  name = "contacts"
  every = "5m"
  query = {{ properties = "email,firstname" }}
"#,
        url = fake.url
    ));

    let report = setup.poll("hubspot.contacts").await;
    assert_eq!((report.listed, report.pages), (4, 2));
    assert_eq!(
        setup.ids("hubspot.contacts"),
        strings(&["101", "102", "104", "105"])
    );
    assert_eq!(
        fake.targets(),
        [
            "/crm/v3/objects/contacts?archived=false&limit=100&properties=email%2Cfirstname",
            "/crm/v3/objects/contacts?archived=false&limit=100&properties=email%2Cfirstname&after=2",
        ]
    );

    {
        let mut contacts = contacts.get();
        contacts[0]["properties"]["lastmodifieddate"] = json!("2026-11-21T08:00:00.000Z");
        contacts[0]["updatedAt"] = json!("2026-11-21T08:00:00.000Z");
        contacts[3]["properties"]["email"] = json!("dee@example.com");
        contacts[4]["archived"] = json!(true);
    }
    let report = setup.poll("hubspot.contacts").await;
    assert_eq!(actions(&report), ["updated 104", "deleted 105"]);
}

// ───────────────────────────── 7. Microsoft Graph ─────────────────────────────

/// The Microsoft identity platform's token endpoint (client credentials in the form body) and
/// Graph's `{"value": [...], "@odata.nextLink"}` pages with `$top` and `$skiptoken`.
fn graph(users: Vec<Value>, tokens: Shared<Vec<String>>) -> impl Fn(&Req) -> Reply {
    move |req| {
        if req.path == "/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token" {
            let form = req.form();
            let expected = [
                ("client_id", "8a3e0c52-0000-4000-8000-000000000001"),
                ("client_secret", "graph~secret.value"),
                ("grant_type", "client_credentials"),
                ("scope", "https://graph.microsoft.com/.default"),
            ];
            if req.method != Method::POST
                || expected
                    .iter()
                    .any(|(k, v)| form.get(*k).map(String::as_str) != Some(*v))
                || req.header("authorization").is_some()
            {
                return Reply::error(
                    401,
                    &json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
                );
            }
            let mut tokens = tokens.get();
            let token = format!("eyJ0eXAiOiJKV1QiLCJub25jZSI6.graph-{}", tokens.len() + 1);
            tokens.push(token.clone());
            return Reply::json(&json!({
                "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token
            }));
        }
        if !tokens
            .get()
            .iter()
            .any(|t| Some(t.as_str()) == req.bearer())
        {
            return Reply::error(
                401,
                &json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty."}}),
            );
        }
        if req.path != "/v1.0/users" || req.q("$top") != Some("999") {
            return Reply::error(400, &json!({"error": {"code": "BadRequest"}}));
        }
        let page: usize = req
            .q("$skiptoken")
            .and_then(|t| {
                t.trim_start_matches("X'")
                    .trim_end_matches('\'')
                    .parse()
                    .ok()
            })
            .unwrap_or(1);
        let size = 2;
        let mut body = json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
            "value": page_of(&users, page, size),
        });
        if page * size < users.len() {
            body["@odata.nextLink"] = json!(format!(
                "{}/v1.0/users?$top=999&$skiptoken=X'{}'",
                req.base,
                page + 1
            ));
        }
        Reply::json(&body)
    }
}

#[tokio::test]
async fn microsoft_graph_gets_a_client_credentials_token_and_follows_next_links() {
    let users: Vec<Value> = (1..=5)
        .map(|n| json!({
            "id": format!("87d349ed-44d7-43e1-9a83-5f2406dee5b{n}"),
            "displayName": format!("User {n}"), "userPrincipalName": format!("user{n}@contoso.com"),
            "mail": format!("user{n}@contoso.com"), "jobTitle": null
        }))
        .collect();
    let tokens = Shared::default();
    let fake = ScriptedApi::start(graph(users, tokens.clone())).await;
    let setup = Setup::new(&format!(
        r#"
[[sources]]
name = "entra"
adapter = "microsoft-graph"
base_url = "{url}/v1.0"
host_rate_limit = 1000
auth = {{ type = "oauth2", token_url = "{url}/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token", client_id = "8a3e0c52-0000-4000-8000-000000000001", client_secret = "graph~secret.value" }}

  [[sources.resources]]
  name = "users"
  every = "10m"
"#,
        url = fake.url
    ));

    let report = setup.poll("entra.users").await;
    assert_eq!((report.listed, report.pages), (5, 3));
    assert!(setup.ids("entra.users")[0].starts_with("87d349ed-"));
    let requests = fake.requests();
    assert_eq!(requests.len(), 4, "one token request, three pages");
    assert_eq!(requests[0].method, Method::POST);
    assert!(requests.iter().all(|r| r.status == 200));
    let token = tokens.get()[0].clone();
    for req in &requests[1..] {
        assert_eq!(req.bearer(), Some(token.as_str()));
        assert_eq!(req.q("$top"), Some("999"));
    }
    assert_eq!(requests[3].q("$skiptoken"), Some("X'3'"));

    // The token is cached: a second poll asks for none.
    fake.clear();
    assert!(setup.poll("entra.users").await.events.is_empty());
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(tokens.get().len(), 1);
}

// ───────────────────────────── 8. OAuth2 client credentials ─────────────────────────────

/// An OAuth2 token endpoint at `/oauth/token` and an API at `/items` (page style, two a page) that
/// accepts only the tokens it issued and has not revoked.
#[derive(Default)]
struct TokenServer {
    /// `expires_in` of each token issued.
    expires_in: u64,
    /// Every token issued, in order.
    issued: Vec<String>,
    /// The form of every token request.
    forms: Vec<BTreeMap<String, String>>,
    /// The `Authorization` header of every token request.
    basic: Vec<Option<String>>,
    /// Tokens the API refuses.
    revoked: HashSet<String>,
    /// Refuse every token, new ones included.
    refuse_all: bool,
    items: Vec<Value>,
}

fn token_server(server: Shared<TokenServer>) -> impl Fn(&Req) -> Reply {
    move |req| {
        let mut s = server.get();
        if req.path == "/oauth/token" {
            s.forms.push(req.form());
            s.basic.push(req.header("authorization").map(str::to_owned));
            let token = format!("tok-{}", s.issued.len() + 1);
            s.issued.push(token.clone());
            return Reply::json(&json!({
                "access_token": token, "token_type": "bearer", "expires_in": s.expires_in
            }));
        }
        let known = req.bearer().filter(|t| s.issued.iter().any(|i| i == t));
        match known {
            Some(t) if !s.refuse_all && !s.revoked.contains(t) => {}
            _ => {
                return Reply::error(401, &json!({"error": "invalid_token"}))
                    .with("www-authenticate", "Bearer error=\"invalid_token\"");
            }
        }
        let page: usize = req.q("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        Reply::json(&Value::Array(page_of(&s.items, page, 2)))
    }
}

fn oauth_source(url: &str, auth_extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "api"
base_url = "{url}"
retries = 0
auth = {{ type = "oauth2", token_url = "{url}/oauth/token", client_id = "my client", client_secret = "s3cr:t/+ü" {auth_extra} }}

  [[sources.resources]]
  name = "items"
  path = "/items"
  every = "1m"
  pagination = {{ style = "page", page_param = "page", size = 2 }}
"#
    )
}

/// The bearer token each API request (not token request) carried, in order.
fn bearers(fake: &ScriptedApi) -> Vec<String> {
    fake.requests()
        .iter()
        .filter(|r| r.path != "/oauth/token")
        .map(|r| r.bearer().unwrap_or("-").to_owned())
        .collect()
}

#[tokio::test]
async fn oauth2_token_is_fetched_once_and_cached_across_polls() {
    let server = Shared::new(TokenServer {
        expires_in: 3600,
        items: orders(3),
        ..TokenServer::default()
    });
    let fake = ScriptedApi::start(token_server(server.clone())).await;
    let setup = Setup::new(&oauth_source(
        &fake.url,
        r#", scope = "read:items", audience = "https://api.example.com""#,
    ));

    assert_eq!(setup.poll("api.items").await.listed, 3);
    assert_eq!(setup.poll("api.items").await.listed, 3);

    let s = server.get();
    assert_eq!(s.issued, ["tok-1"], "one token for both polls");
    assert_eq!(bearers(&fake), ["tok-1"; 6], "three pages a poll");
    // RFC 6749 §2.3.1: id and secret form-encoded, then HTTP Basic; the grant in the form body.
    let basic = base64::engine::general_purpose::STANDARD.encode("my+client:s3cr%3At%2F%2B%C3%BC");
    assert_eq!(
        s.basic[0].as_deref(),
        Some(format!("Basic {basic}").as_str())
    );
    let form = &s.forms[0];
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], "read:items");
    assert_eq!(form["audience"], "https://api.example.com");
    assert!(!form.contains_key("client_secret"));
}

/// A token is renewed a minute before it expires, or halfway through its life if it lives less
/// than two minutes (src/source/auth.rs): a 60-second token serves a whole quick poll, and one that
/// expires at once is fetched for every request.
#[tokio::test]
async fn oauth2_short_lived_tokens_are_renewed_halfway_through_their_life() {
    let server = Shared::new(TokenServer {
        expires_in: 60,
        items: orders(3),
        ..TokenServer::default()
    });
    let fake = ScriptedApi::start(token_server(server.clone())).await;
    let setup = Setup::new(&oauth_source(&fake.url, r#", credentials = "body""#));
    let report = setup.poll("api.items").await;
    assert_eq!((report.listed, report.pages), (3, 3));
    assert_eq!(server.get().issued, ["tok-1"]);
    assert_eq!(bearers(&fake), ["tok-1"; 3]);

    let server = Shared::new(TokenServer {
        expires_in: 0,
        items: orders(3),
        ..TokenServer::default()
    });
    let fake = ScriptedApi::start(token_server(server.clone())).await;
    let setup = Setup::new(&oauth_source(&fake.url, r#", credentials = "body""#));

    let report = setup.poll("api.items").await;
    assert_eq!((report.listed, report.pages), (3, 3));
    let s = server.get();
    assert_eq!(s.issued, ["tok-1", "tok-2", "tok-3"]);
    assert_eq!(bearers(&fake), ["tok-1", "tok-2", "tok-3"]);
    assert!(
        s.basic.iter().all(Option::is_none),
        "credentials = \"body\""
    );
    assert_eq!(s.forms[0]["client_id"], "my client");
    assert_eq!(s.forms[0]["client_secret"], "s3cr:t/+ü");
}

#[tokio::test]
async fn oauth2_renews_a_refused_token_once_and_retries() {
    let server = Shared::new(TokenServer {
        expires_in: 3600,
        items: orders(3),
        ..TokenServer::default()
    });
    let fake = ScriptedApi::start(token_server(server.clone())).await;
    let setup = Setup::new(&oauth_source(&fake.url, ""));
    setup.poll("api.items").await;

    // The provider revokes the cached token: the next request gets 401, and the engine fetches a
    // new token and repeats that request once.
    server.get().revoked.insert("tok-1".into());
    fake.clear();
    let report = setup.poll("api.items").await;
    assert_eq!(report.listed, 3);
    assert_eq!(server.get().issued, ["tok-1", "tok-2"]);
    assert_eq!(bearers(&fake), ["tok-1", "tok-2", "tok-2", "tok-2"]);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 200, 200, 200, 200]);

    // A credential refused even when fresh fails the poll after one renewal; nothing is written.
    server.get().items = orders(4);
    server.get().refuse_all = true;
    fake.clear();
    let error = setup.fail("api.items").await;
    assert!(
        matches!(error, SourceError::Status { status: 401, .. }),
        "{error:?}"
    );
    assert_eq!(server.get().issued.len(), 3);
    assert_eq!(bearers(&fake), ["tok-2", "tok-3"]);
    assert!(setup.written().is_empty());
    assert_eq!(setup.ids("api.items").len(), 3);
}

/// ENGINE GAP (src/source/rest.rs `RestSource::new` puts the source's `headers` in the client's
/// default headers; src/source/auth.rs `TokenCache::request` posts with that client): API headers,
/// which may hold secrets (`headers = { X-Api-Key = "${KEY}" }`), also go to the token endpoint,
/// usually another party's host (login.microsoftonline.com, an Auth0 tenant).
#[tokio::test]
async fn oauth2_token_requests_do_not_carry_the_api_headers() {
    let server = Shared::new(TokenServer {
        expires_in: 3600,
        items: orders(1),
        ..TokenServer::default()
    });
    let fake = ScriptedApi::start(token_server(server.clone())).await;
    let text = oauth_source(&fake.url, "").replace(
        "retries = 0",
        "retries = 0\nheaders = { X-Api-Key = \"api-secret-for-the-api-only\" }",
    );
    let setup = Setup::new(&text);
    setup.poll("api.items").await;
    let requests = fake.requests();
    let api = requests.iter().find(|r| r.path == "/items").unwrap();
    assert_eq!(api.header("x-api-key"), Some("api-secret-for-the-api-only"));
    let token = requests.iter().find(|r| r.path == "/oauth/token").unwrap();
    assert_eq!(
        token.header("x-api-key"),
        None,
        "the API's headers reach the token endpoint"
    );
}

// ───────────────────────────── 9. conditional requests ─────────────────────────────

/// An API at `/items` paging `items` `size` at a time (page style, or RFC 8288 links with
/// `link`), sending a weak ETag over each page's body and answering 304 to a matching
/// `If-None-Match`.
fn etag_server(items: Shared<Vec<Value>>, links: bool, size: usize) -> impl Fn(&Req) -> Reply {
    move |req| {
        let list = items.get().clone();
        let page: usize = req.q("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let body = Value::Array(page_of(&list, page, size)).to_string();
        let etag = etag_of(&body);
        if req.header("if-none-match") == Some(etag.as_str()) {
            // RFC 9110 §15.4.5: a 304 repeats the validators, not the body or the Link header.
            return Reply::status(304, "").with("etag", etag);
        }
        let mut reply = Reply::status(200, body)
            .with("content-type", "application/json")
            .with("x-total-count", list.len().to_string())
            .with("etag", etag);
        if links && page * size < list.len() {
            let next = format!(
                "{}/items?{}",
                req.base,
                with_param(req, "page", &(page + 1).to_string())
            );
            reply = reply.with("link", link(&[(next, "next")]));
        }
        reply
    }
}

/// The status of each request the fake API answered, in order.
fn statuses(fake: &ScriptedApi) -> Vec<u16> {
    fake.requests().iter().map(|r| r.status).collect()
}

fn conditional_source(url: &str, pagination: &str) -> String {
    format!(
        r#"
[[sources]]
name = "api"
base_url = "{url}"

  [[sources.resources]]
  name = "items"
  path = "/items"
  every = "1m"
  conditional = true
  pagination = {pagination}
"#
    )
}

#[tokio::test]
async fn conditional_requests_replay_unchanged_pages_from_the_snapshot() {
    let items = Shared::new(orders(6));
    let fake = ScriptedApi::start(etag_server(items.clone(), false, 2)).await;
    let setup = Setup::new(&conditional_source(
        &fake.url,
        r#"{ style = "page", page_param = "page", size = 2 }
  deleted_after = 1"#,
    ));

    let first = setup.poll("api.items").await;
    assert_eq!((first.listed, first.pages), (6, 4));
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.header("if-none-match").is_none())
    );

    // Page 2 changes; pages 1, 3 and the empty page 4 answer 304.
    items.get()[2]["status"] = json!("shipped");
    fake.clear();
    let second = setup.poll("api.items").await;
    assert_eq!(actions(&second), ["updated 3"]);
    assert_eq!(
        second.listed, 6,
        "replayed pages count as listed; nothing looks deleted"
    );
    assert_eq!(statuses(&fake), [304, 200, 304, 304]);
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.header("if-none-match").is_some())
    );

    // Nothing changes: all 304, no events.
    fake.clear();
    let third = setup.poll("api.items").await;
    assert!(third.events.is_empty(), "{:?}", actions(&third));
    assert_eq!(third.listed, 6);
    assert_eq!(statuses(&fake), [304, 304, 304, 304]);

    // A page that lost an item is fetched, and the loss is a delete.
    items.get().remove(5);
    let fourth = setup.poll("api.items").await;
    assert_eq!(actions(&fourth), ["deleted 6"]);
    assert_eq!(setup.written(), strings(&["updated 3", "deleted 6"]));
}

/// A listing larger than the snapshot read with the prior state, so read while pages arrive: the
/// pages that answer 304 wait for it only until one does not, and a listing that is 304 from end
/// to end goes without it unless an item may be missing.
#[tokio::test]
async fn a_large_conditional_listing_replays_its_304_pages_before_and_without_the_snapshot() {
    let items = Shared::new(orders(1_500));
    let fake = ScriptedApi::start(etag_server(items.clone(), false, 100)).await;
    let setup = Setup::new(&conditional_source(
        &fake.url,
        r#"{ style = "page", page_param = "page", size = 100 }
  deleted_after = 2"#,
    ));
    let first = setup.poll("api.items").await;
    assert_eq!((first.listed, first.pages), (1_500, 16));

    // Nothing changes: every page answers 304, and every item counts as listed.
    fake.clear();
    let second = setup.poll("api.items").await;
    assert!(second.events.is_empty(), "{:?}", actions(&second));
    assert_eq!(second.listed, 1_500);
    assert_eq!(statuses(&fake), [304; 16]);

    // Page 9 changes: the eight pages that answered 304 before it are replayed, and so are
    // the seven after it.
    items.get()[850]["status"] = json!("shipped");
    fake.clear();
    let third = setup.poll("api.items").await;
    assert_eq!(actions(&third), ["updated 851"]);
    assert_eq!(third.listed, 1_500, "nothing looks deleted");
    let mut expected = [304; 16];
    expected[8] = 200;
    assert_eq!(statuses(&fake), expected);

    // The last item goes: missing from one listing, it is not deleted yet (`deleted_after = 2`).
    items.get().pop();
    let fourth = setup.poll("api.items").await;
    assert!(fourth.events.is_empty(), "{:?}", actions(&fourth));
    assert_eq!(fourth.listed, 1_499);

    // Every page answers 304, but the snapshot still holds the missing item: this listing is
    // its second miss, and it is deleted.
    fake.clear();
    let fifth = setup.poll("api.items").await;
    assert!(
        statuses(&fake).iter().all(|&s| s == 304),
        "{:?}",
        statuses(&fake)
    );
    assert_eq!(actions(&fifth), ["deleted 1500"]);
    assert_eq!(fifth.listed, 1_499);

    // And after it, 304 from end to end again, with nothing to say.
    let sixth = setup.poll("api.items").await;
    assert!(sixth.events.is_empty(), "{:?}", actions(&sixth));
    assert_eq!(setup.written(), strings(&["updated 851", "deleted 1500"]));
}

/// As above with a stated total, which ends the listing at its last page and so fetches that
/// page whole, validators or not: while its items are as the snapshot holds them (looked up by
/// id), the snapshot is still not read; once one is not, it is, and the changes are found.
#[tokio::test]
async fn a_large_conditional_listing_with_a_total_looks_up_its_last_page_by_id() {
    let items = Shared::new(orders(1_500));
    let fake = ScriptedApi::start(etag_server(items.clone(), false, 100)).await;
    let setup = Setup::new(&conditional_source(
        &fake.url,
        r#"{ style = "page", page_param = "page", size = 100, total_header = "X-Total-Count" }
  deleted_after = 1"#,
    ));
    let first = setup.poll("api.items").await;
    assert_eq!((first.listed, first.pages), (1_500, 15));

    // Nothing changes: fourteen pages answer 304, the last comes whole, as it was.
    fake.clear();
    let second = setup.poll("api.items").await;
    assert!(second.events.is_empty(), "{:?}", actions(&second));
    assert_eq!(second.listed, 1_500);
    let mut expected = [304; 15];
    expected[14] = 200;
    // (A 16th request, for the page after the last, may be asked ahead and come back empty.)
    assert_eq!(statuses(&fake)[..15], expected);

    // An item of the last page changes, then the last item goes.
    items.get()[1_449]["status"] = json!("shipped");
    let third = setup.poll("api.items").await;
    assert_eq!(actions(&third), ["updated 1450"]);
    assert_eq!(third.listed, 1_500);
    items.get().pop();
    let fourth = setup.poll("api.items").await;
    assert_eq!(actions(&fourth), ["deleted 1500"]);
    assert_eq!(fourth.listed, 1_499);

    let fifth = setup.poll("api.items").await;
    assert!(fifth.events.is_empty(), "{:?}", actions(&fifth));
    assert_eq!(fifth.listed, 1_499);
    assert_eq!(setup.written(), strings(&["updated 1450", "deleted 1500"]));
}

/// ENGINE GAP (src/source/rest.rs, `Got::NotModified` in `fetch`): a page that answered 304 is
/// replayed with the next URL recorded last time. With `Link`-header paging the next page is not
/// part of the body the ETag validates, so when the last page was full and an item is added after
/// it, that page still answers 304, the replay ends the listing there, and the new item is never
/// listed (nor, if an incremental poll saw it, kept: the next full sync would delete it).
#[tokio::test]
async fn conditional_link_header_paging_sees_a_page_added_after_the_last() {
    let items = Shared::new(orders(4));
    let fake = ScriptedApi::start(etag_server(items.clone(), true, 2)).await;
    let setup = Setup::new(&conditional_source(
        &fake.url,
        r#"{ style = "link-header" }"#,
    ));
    assert_eq!(setup.poll("api.items").await.pages, 2);

    items.get().push(json!({"id": 5, "status": "open"}));
    fake.clear();
    let report = setup.poll("api.items").await;
    assert_eq!(
        actions(&report),
        ["created 5"],
        "requests: {:?}",
        fake.requests()
            .iter()
            .map(|r| format!("{} {}", r.target(), r.status))
            .collect::<Vec<_>>()
    );
}

// ───────────────────────────── 10. incremental polls and full syncs ─────────────────────────────

#[tokio::test]
async fn incremental_polls_never_delete_only_the_next_full_sync_does() {
    let items = Shared::new(
        (1..=3)
            .map(|i| json!({"id": i, "status": "open", "updated_at": "2026-01-01T00:00:00Z"}))
            .collect::<Vec<_>>(),
    );
    let served = items.clone();
    let fake = ScriptedApi::start(move |req| {
        let mut list = served.get().clone();
        if let Some(since) = req.q("updated_since") {
            list.retain(|i| i["updated_at"].as_str().unwrap() >= since);
        }
        Reply::json(&json!({"data": list}))
    })
    .await;
    let setup = Setup::new(&format!(
        r#"
[[sources]]
name = "api"
base_url = "{url}"

  [[sources.resources]]
  name = "orders"
  path = "/orders"
  every = "1m"
  items = "$.data"
  incremental = {{ since_param = "updated_since", field = "updated_at", full_sync = "2s" }}
"#,
        url = fake.url
    ));

    let first = setup.poll("api.orders").await;
    assert!(first.full && first.baseline);
    assert_eq!(fake.requests()[0].q("updated_since"), None);

    // Order 1 changes, order 2 is deleted.
    {
        let mut items = items.get();
        items[0]["status"] = json!("shipped");
        items[0]["updated_at"] = json!("2026-01-02T00:00:00Z");
        items.remove(1);
    }
    fake.clear();
    let second = setup.poll("api.orders").await;
    assert!(!second.full, "within full_sync of the first poll");
    assert_eq!(actions(&second), ["updated 1"]);
    assert_eq!(
        fake.requests()[0].q("updated_since"),
        Some("2025-12-31T23:59:00Z"),
        "the newest updated_at of the last listing, less the one-minute overlap"
    );
    assert_eq!(setup.ids("api.orders"), strings(&["1", "2", "3"]));

    // Poll until the full sync is due: incremental polls meanwhile find nothing and keep order 2.
    let deadline = Instant::now() + Duration::from_secs(20);
    let full = loop {
        fake.clear();
        let report = setup.poll("api.orders").await;
        if report.full {
            break report;
        }
        assert!(report.events.is_empty(), "{:?}", actions(&report));
        assert_eq!(
            fake.requests()[0].q("updated_since"),
            Some("2026-01-01T23:59:00Z")
        );
        assert!(Instant::now() < deadline, "no full sync within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(actions(&full), ["deleted 2"]);
    assert_eq!(fake.requests()[0].q("updated_since"), None);
    assert_eq!(setup.ids("api.orders"), strings(&["1", "3"]));
    assert_eq!(setup.written(), strings(&["updated 1", "deleted 2"]));
}

// ───────────────────────────── 11. deleted_after ─────────────────────────────

#[tokio::test]
async fn deleted_after_two_deletes_an_item_missing_twice_in_a_row() {
    let api = FakeApi::start(Style::None).await;
    api.set_items(orders(3));
    let setup = Setup::new(&format!(
        r#"
[[sources]]
name = "api"
base_url = "{url}"

  [[sources.resources]]
  name = "orders"
  path = "/orders"
  every = "1m"
  deleted_after = 2
"#,
        url = api.url
    ));
    setup.poll("api.orders").await;
    let without_2 = || vec![orders(3)[0].clone(), orders(3)[2].clone()];

    api.set_items(without_2());
    assert!(
        setup.poll("api.orders").await.events.is_empty(),
        "missing once"
    );
    assert_eq!(setup.ids("api.orders"), strings(&["1", "2", "3"]));

    // Back again: the count starts over.
    api.set_items(orders(3));
    assert!(setup.poll("api.orders").await.events.is_empty());
    api.set_items(without_2());
    assert!(
        setup.poll("api.orders").await.events.is_empty(),
        "missing once again"
    );

    let report = setup.poll("api.orders").await;
    assert_eq!(actions(&report), ["deleted 2"], "missing twice in a row");
    assert_eq!(setup.ids("api.orders"), strings(&["1", "3"]));
    assert_eq!(setup.written(), strings(&["deleted 2"]));
}

// ───────────────────────────── 12. exec ─────────────────────────────
// tests/it/poll.rs covers a JSON array, a non-zero exit and invalid JSON.

fn exec_source(command: &[&str], extra: &str) -> String {
    let command = toml::Value::Array(command.iter().map(|c| (*c).into()).collect());
    format!(
        r#"
[[sources]]
name = "tool"
adapter = "exec"
command = {command}
{extra}

  [[sources.resources]]
  name = "orders"
  every = "1m"
  initial = "emit"
"#
    )
}

#[tokio::test]
async fn exec_reads_json_lines() {
    let setup = Setup::new(&exec_source(
        &[
            "sh",
            "-c",
            r#"printf '{"id":1}\n\n{"id":2,"path":"%s"}\n' "$POLLHOOK_PATH""#,
        ],
        "",
    ));
    let report = setup.poll("tool.orders").await;
    assert_eq!(actions(&report), ["created 1", "created 2"]);
    assert_eq!(report.events[1].data, json!({"id": 2, "path": "orders"}));
}

#[tokio::test]
async fn exec_timeout_kills_the_program_and_emits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > '{}'; exec sleep 30", pid_file.display());
    let setup = Setup::new(&exec_source(&["sh", "-c", &script], r#"timeout = "300ms""#));

    let error = setup.fail("tool.orders").await;
    let message = error.to_string();
    assert!(matches!(error, SourceError::Exec(_)), "{error:?}");
    assert!(message.contains("did not finish within"), "{message}");
    assert!(setup.written().is_empty() && setup.ids("tool.orders").is_empty());

    // The program is killed, not left running (Linux: its /proc entry is gone or a zombie).
    if let Ok(pid) = std::fs::read_to_string(&pid_file)
        && cfg!(target_os = "linux")
    {
        let stat = format!("/proc/{}/stat", pid.trim());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match std::fs::read_to_string(&stat) {
                Err(_) => break,
                Ok(s)
                    if s.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z')) =>
                {
                    break;
                }
                Ok(_) => {}
            }
            assert!(Instant::now() < deadline, "sleep {} still runs", pid.trim());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// adapters/examples/list_orders.py, the README's worked exec example, against a paged API.
#[tokio::test]
async fn the_python_example_adapter_lists_every_page() {
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output();
    if !python.is_ok_and(|o| o.status.success()) {
        eprintln!("python3 is not installed; skipping the Python example");
        return;
    }
    let api = FakeApi::start(Style::Page).await;
    api.set_items(orders(5));
    let script = adapters_dir().join("examples/list_orders.py");
    let setup = Setup::new(&exec_source(
        &["python3", script.to_str().unwrap(), &api.url],
        "",
    ));

    let report = setup.poll("tool.orders").await;
    assert_eq!(
        actions(&report),
        [
            "created 1",
            "created 2",
            "created 3",
            "created 4",
            "created 5"
        ]
    );
    assert_eq!(
        report.events[0].data,
        json!({"id": 1, "status": "open", "via": "python"})
    );
    assert_eq!(
        api.paths(),
        ["/orders?page=1&per_page=100", "/orders?page=2&per_page=100"]
    );

    // A failing API makes the script exit non-zero: the poll fails and writes nothing.
    api.state().fail_page = Some((1, 500));
    let error = setup.fail("tool.orders").await;
    assert!(error.to_string().contains("HTTP Error 500"), "{error}");
    assert_eq!(setup.written().len(), 5);
}

// ───────────────────────────── 13. user definitions ─────────────────────────────

#[tokio::test]
async fn a_user_directory_overrides_a_built_in_definition_and_adds_new_ones() {
    let fake = ScriptedApi::start(|req| {
        if req.path == "/api/v3/repos/octo/widgets/issues" {
            return Reply::json(&json!([{"number": 1, "title": "on GHES"}]));
        }
        if req.path == "/v2/orders" && req.header("x-acme-key") == Some("acme-k3y") {
            let skip: usize = req.q("skip").and_then(|s| s.parse().ok()).unwrap_or(0);
            let all: Vec<Value> = (1..=3).map(|i| json!({"ref": format!("A-{i}")})).collect();
            let end = (skip + 2).min(all.len());
            return Reply::json(&json!({"orders": all[skip.min(end)..end]}));
        }
        Reply::error(404, &json!({"message": "Not Found"}))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("github.toml"),
        format!(
            r#"# GitHub Enterprise Server: same API, another host.
description = "GitHub Enterprise Server at ghe.example.com"
base_url = "{url}/api/v3"
headers = {{ Accept = "application/vnd.github+json" }}

[resources.issues]
path = "/repos/{{repo}}/issues"
id = "number"
"#,
            url = fake.url
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("acme.toml"),
        format!(
            r#"description = "ACME orders"
base_url = "{url}"
auth = {{ type = "api-key", header = "X-Acme-Key" }}

[resource_defaults]
id = "ref"

[resources.orders]
path = "/v2/orders"
items = "$.orders"
pagination = {{ style = "offset", offset_param = "skip", limit_param = "take", size = 2 }}
"#,
            url = fake.url
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tool.toml"),
        r#"description = "a script as a definition"
engine = "exec"
command = ["sh", "-c", "printf '[{\"sku\": \"W-1\", \"resource\": \"%s\"}]' \"$POLLHOOK_RESOURCE\""]
timeout = "10s"

[resource_defaults]
id = "sku"
"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a definition").unwrap();

    let setup = Setup::with(
        &format!("adapters_dir = '{}'", dir.path().display()),
        r#"
[[sources]]
name = "ghes"
adapter = "github"
params = { repo = "octo/widgets" }

  [[sources.resources]]
  name = "issues"
  every = "5m"

[[sources]]
name = "acme"
adapter = "acme"
auth = { type = "api-key", value = "acme-k3y" }

  [[sources.resources]]
  name = "orders"
  every = "5m"

[[sources]]
name = "tool"
adapter = "tool"

  [[sources.resources]]
  name = "stock"
  every = "5m"
"#,
        &BTreeMap::new(),
    );

    // The user's github.toml replaces the built-in one as a whole: its base URL, and none of the
    // built-in's conditional requests, incremental polling or host rate limit.
    assert_eq!(
        setup.rest("ghes").base_url.as_str(),
        format!("{}/api/v3", fake.url)
    );
    assert_eq!(setup.rest("ghes").host_rate_limit, None);
    let issues = setup.resource("ghes.issues");
    assert!(!issues.conditional && issues.incremental.is_none());
    assert_eq!(setup.poll("ghes.issues").await.listed, 1);
    assert_eq!(setup.ids("ghes.issues"), strings(&["1"]));

    let report = setup.poll("acme.orders").await;
    assert_eq!((report.listed, report.pages), (3, 3));
    assert_eq!(setup.ids("acme.orders"), strings(&["A-1", "A-2", "A-3"]));

    // A definition may name the exec engine: a script shared by several sources.
    let report = setup.poll("tool.stock").await;
    assert_eq!(report.listed, 1);
    assert_eq!(setup.ids("tool.stock"), strings(&["W-1"]));

    // Built-ins the directory does not name are still there.
    let catalog = pollhook::adapters::Catalog::load(Some(dir.path())).unwrap();
    let names: Vec<&str> = catalog.names().collect();
    assert!(
        names.contains(&"stripe") && names.contains(&"acme"),
        "{names:?}"
    );
    assert_eq!(
        catalog.description("github"),
        "GitHub Enterprise Server at ghe.example.com"
    );
}

// ───────────────────────────── 14. GraphQL ─────────────────────────────

/// A Relay-style GraphQL API at `/graphql`: `orders(first, after)` with
/// `pageInfo { hasNextPage endCursor }`, two nodes a page; `errors` for what a server would refuse.
fn graphql_server(orders: Shared<Vec<Value>>, fail: Shared<bool>) -> impl Fn(&Req) -> Reply {
    move |req| {
        if req.method != Method::POST || req.bearer() != Some("gql-token") {
            return Reply::error(401, &json!({"message": "Bad credentials"}));
        }
        let body: Value = serde_json::from_str(&req.body).unwrap_or_default();
        let variables = &body["variables"];
        if *fail.get() {
            return Reply::json(&json!({
                "data": {"orders": null},
                "errors": [{"message": "Field 'statu' doesn't exist on type 'Order'", "locations": [{"line": 1, "column": 60}]}]
            }));
        }
        // As graphql-js and GitHub do: a variable of the wrong type is a request error.
        if let Some(first) = variables.get("first")
            && !first.is_i64()
        {
            return Reply::json(&json!({"errors": [{"message": format!(
                "Variable $first of type Int! was provided invalid value {first}"
            )}]}));
        }
        let list = orders.get().clone();
        let start: usize = variables["after"]
            .as_str()
            .and_then(|c| c.strip_prefix("cursor:"))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let size = variables["first"].as_u64().unwrap_or(2) as usize;
        let end = (start + size).min(list.len());
        Reply::json(&json!({"data": {"orders": {
            "nodes": list[start.min(end)..end],
            "pageInfo": {"hasNextPage": end < list.len(), "endCursor": format!("cursor:{end}")}
        }}}))
    }
}

fn graphql_source(url: &str, document: &str, extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "gql"
adapter = "graphql"
base_url = "{url}/graphql"
auth = {{ type = "bearer", token = "gql-token" }}

  [[sources.resources]]
  name = "orders"
  every = "1m"
  document = "{document}"
  items = "$.data.orders.nodes"
  pagination = {{ style = "cursor", cursor_param = "after", next_cursor = "$.data.orders.pageInfo.endCursor", has_more = "$.data.orders.pageInfo.hasNextPage" }}
  {extra}
"#
    )
}

#[tokio::test]
async fn graphql_follows_relay_page_info_and_fails_on_errors() {
    let orders = Shared::new(orders(5));
    let fail = Shared::new(false);
    let fake = ScriptedApi::start(graphql_server(orders.clone(), fail.clone())).await;
    let setup = Setup::new(&graphql_source(
        &fake.url,
        "query($after: String) { orders(first: 2, after: $after) { nodes { id status } pageInfo { hasNextPage endCursor } } }",
        "",
    ));

    let report = setup.poll("gql.orders").await;
    assert_eq!((report.listed, report.pages), (5, 3));
    let requests = fake.requests();
    let variables: Vec<Value> = requests
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["variables"].clone())
        .collect();
    assert_eq!(
        variables,
        [
            json!({}),
            json!({"after": "cursor:2"}),
            json!({"after": "cursor:4"})
        ]
    );
    assert!(
        requests
            .iter()
            .all(|r| r.method == Method::POST
                && r.header("content-type") == Some("application/json"))
    );
    let query = serde_json::from_str::<Value>(&requests[0].body).unwrap()["query"].clone();
    assert!(query.as_str().unwrap().contains("pageInfo"), "{query}");

    // A response with `errors` fails the poll even beside `data`; the snapshot is kept.
    orders.get()[0]["status"] = json!("shipped");
    *fail.get() = true;
    let error = setup.fail("gql.orders").await;
    assert!(
        error.to_string().contains("doesn't exist on type"),
        "{error}"
    );
    assert!(setup.written().is_empty());
    assert_eq!(setup.ids("gql.orders").len(), 5);

    *fail.get() = false;
    assert_eq!(actions(&setup.poll("gql.orders").await), ["updated 1"]);
}

/// An error names the request as it was made: a GraphQL page and a `method = "POST"` listing as
/// POSTs, a GET as a GET; and never with a credential its URL carries (an `api-key` in the query,
/// a token in the base URL).
#[tokio::test]
async fn a_failed_request_is_named_by_its_method_and_never_shows_its_key() {
    let fake = ScriptedApi::start(|req| match req.path.as_str() {
        "/graphql" => Reply::json(&json!({"data": {"orders": "not a connection"}})),
        _ => Reply::status(500, "down"),
    })
    .await;
    let key = r#"auth = { type = "api-key", query = "api_key", value = "k3y-secret" }"#;
    // A token in the base URL itself, as some GraphQL gateways take it.
    let source = graphql_source(&fake.url, "{ orders { nodes { id } } }", "")
        .replace("/graphql\"", "/graphql?access_token=t0ken-in-url\"");
    let setup = Setup::new(&format!(
        r#"{source}
[[sources]]
name = "search"
base_url = "{url}"
retries = 0
{key}

  [[sources.resources]]
  name = "orders"
  path = "/search"
  every = "1m"
  method = "POST"
  body = '{{"q": "*"}}'

  [[sources.resources]]
  name = "plain"
  path = "/plain"
  every = "1m"
"#,
        url = fake.url
    ));
    let graphql = setup.fail("gql.orders").await.to_string();
    assert!(
        graphql.starts_with(&format!("POST {}/graphql?access_token=***: ", fake.url)),
        "{graphql}"
    );
    let post = setup.fail("search.orders").await.to_string();
    assert!(
        post.contains(&format!("POST {}/search", fake.url)),
        "{post}"
    );
    assert!(post.contains("answered 500"), "{post}");
    let get = setup.fail("search.plain").await.to_string();
    assert!(get.contains(&format!("GET {}/plain", fake.url)), "{get}");
    for error in [&graphql, &post, &get] {
        assert!(
            !error.contains("k3y-secret") && !error.contains("t0ken-in-url"),
            "{error}"
        );
        assert!(
            !error.contains("GET GET") && !error.contains("POST POST"),
            "{error}"
        );
    }
}

/// ENGINE GAP (src/config.rs, `validate_resource`: `query` values become strings; then
/// src/source/graphql.rs sends each as a JSON string variable): a GraphQL variable declared `Int`
/// receives `"2"`, which GraphQL servers refuse ("Variable $first of type Int! was provided invalid
/// value"). `query = { first = 2 }` should reach the server as the number 2.
#[tokio::test]
async fn graphql_query_values_keep_their_toml_types_as_variables() {
    let fake = ScriptedApi::start(graphql_server(Shared::new(orders(3)), Shared::new(false))).await;
    let setup = Setup::new(&graphql_source(
        &fake.url,
        "query($first: Int!, $after: String) { orders(first: $first, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }",
        "query = { first = 2 }",
    ));
    let result = setup.try_poll("gql.orders").await;
    let sent: Vec<String> = fake.requests().iter().map(|r| r.body.clone()).collect();
    let report = result.unwrap_or_else(|e| panic!("{e}\nrequests: {sent:?}"));
    assert_eq!((report.listed, report.pages), (3, 2));
}

// ───────────────────────────── 15. a host's rate limit ─────────────────────────────

/// Two sources on one host share its limit, the strictest one given: their requests, interleaved,
/// are spaced by 250 ms as a whole. The sources use `localhost` (the fake listens on 127.0.0.1) so
/// this limit paces no other test. Asserted on the spread of the arrival times, which load can only
/// widen: 6 requests at 4 a second take 1.25 s together; each source alone would take 0.5 s.
#[tokio::test]
async fn host_rate_limit_is_shared_by_the_sources_of_a_host() {
    let fake = ScriptedApi::start(|req| {
        let page: usize = req.q("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        Reply::json(&Value::Array(page_of(&orders(6), page, 3)))
    })
    .await;
    let url = fake.url.replace("127.0.0.1", "localhost");
    let source = |name: &str, rate: u32| {
        format!(
            r#"
[[sources]]
name = "{name}"
base_url = "{url}"
host_rate_limit = {rate}

  [[sources.resources]]
  name = "orders"
  path = "/{name}"
  every = "1m"
  pagination = {{ style = "page", page_param = "page", size = 3 }}
"#
        )
    };
    let setup = Setup::new(&format!("{}{}", source("a", 4), source("b", 100)));

    let (a, b) = tokio::join!(setup.poll("a.orders"), setup.poll("b.orders"));
    assert_eq!((a.listed, a.pages, b.listed, b.pages), (6, 3, 6, 3));
    let requests = fake.requests();
    assert_eq!(requests.len(), 6);
    for name in ["/a", "/b"] {
        assert_eq!(requests.iter().filter(|r| r.path == name).count(), 3);
    }
    let first = requests.iter().map(|r| r.at).min().unwrap();
    let last = requests.iter().map(|r| r.at).max().unwrap();
    assert!(
        last - first >= Duration::from_millis(900),
        "6 requests spread over only {:?}",
        last - first
    );
}

// ───────────────────────────── 16. the `pollhook` commands ─────────────────────────────

/// Runs the binary with a clean environment plus `envs`.
async fn pollhook(args: &[&str], envs: &[(&str, &str)]) -> Out {
    let mut cmd = command();
    cmd.envs(envs.iter().copied()).args(args);
    output(cmd).await
}

/// A config file in `dir` with `top` before `[storage]`.
fn write_config(dir: &TempDir, top: &str, sources: &str) -> PathBuf {
    let file = dir.path().join("pollhook.toml");
    std::fs::write(
        &file,
        format!("{top}\n[storage]\npath = 'pollhook.db'\n\n{sources}"),
    )
    .unwrap();
    file
}

#[tokio::test]
async fn adapters_list_names_every_definition_with_its_description() {
    let dir = tempfile::tempdir().unwrap();
    let defs = dir.path().join("defs");
    std::fs::create_dir(&defs).unwrap();
    std::fs::write(
        defs.join("acme.toml"),
        "description = \"ACME orders (ours)\"\nbase_url = \"https://acme.example\"\n",
    )
    .unwrap();
    let config = write_config(&dir, "adapters_dir = 'defs'", "");

    let out = pollhook(
        &["--config", config.to_str().unwrap(), "adapters", "list"],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{}", out.stdout))
            .to_owned()
    };
    for engine in ["rest", "exec", "graphql"] {
        line(engine);
    }
    let catalog = pollhook::adapters::Catalog::load(None).unwrap();
    for (name, _) in definitions() {
        let row = line(&name);
        assert!(row.contains(catalog.description(&name)), "{row}");
    }
    assert!(line("acme").contains("ACME orders (ours)"));
}

#[tokio::test]
async fn adapters_show_prints_the_definition_or_the_merged_source_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &dir,
        "",
        r#"
[[sources]]
name = "gh"
adapter = "github"
auth = { type = "bearer", token = "${GITHUB_TOKEN}" }
params = { repo = "octo/widgets" }

  [[sources.resources]]
  name = "issues"
  every = "2m"
"#,
    );
    let config = config.to_str().unwrap();

    let out = pollhook(&["--config", config, "adapters", "show", "github"], &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        std::fs::read_to_string(adapters_dir().join("github.toml")).unwrap()
    );

    let secret = [("GITHUB_TOKEN", "github_pat_must_not_print")];
    let out = pollhook(
        &[
            "--config", config, "adapters", "show", "github", "--source", "gh",
        ],
        &secret,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("${GITHUB_TOKEN}"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("github_pat_must_not_print"),
        "{}",
        out.stdout
    );
    let merged: toml::Table = out
        .stdout
        .parse()
        .unwrap_or_else(|e| panic!("{e}\n{}", out.stdout));
    let source = merged["sources"][0].as_table().unwrap();
    assert_eq!(source["adapter"].as_str(), Some("rest"));
    assert_eq!(source["base_url"].as_str(), Some("https://api.github.com"));
    assert_eq!(
        source["headers"]["X-GitHub-Api-Version"].as_str(),
        Some("2022-11-28")
    );
    let issues = source["resources"][0].as_table().unwrap();
    assert_eq!(
        issues["every"].as_str(),
        Some("2m"),
        "the source's own value"
    );
    assert_eq!(issues["path"].as_str(), Some("/repos/{repo}/issues"));
    assert_eq!(issues["incremental"]["since_param"].as_str(), Some("since"));
    assert_eq!(issues["conditional"].as_bool(), Some(true));

    let out = pollhook(&["--config", config, "adapters", "show", "nope"], &[]).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stderr.contains("adapters list"), "{}", out.stderr);
}

/// Every definition's documented example, together in one config, passes `pollhook check`.
#[tokio::test]
async fn pollhook_check_accepts_every_documented_example() {
    let examples: String = definitions()
        .iter()
        .map(|(_, text)| example_source(text).unwrap())
        .collect();
    let env = env_for(&examples);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, "", &examples);
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let out = pollhook(&["--config", config.to_str().unwrap(), "check"], &envs).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let sources = definitions().len();
    assert!(
        out.stdout.contains(&format!("ok ({sources} source(s)")),
        "{}",
        out.stdout
    );

    // Without the credentials' variables, check names each one.
    let out = pollhook(&["--config", config.to_str().unwrap(), "check"], &[]).await;
    assert_eq!(out.code, 2);
    let required = env
        .keys()
        .filter(|var| examples.contains(&format!("${{{var}}}")));
    for var in required {
        assert!(out.stderr.contains(var.as_str()), "{var}: {}", out.stderr);
    }
    assert!(!out.stderr.contains("SHOPIFY_SHOP"), "it has a default");
}

/// The README's way to try a definition: `pollhook poll source.resource --dry-run`.
#[tokio::test]
async fn poll_dry_run_tries_a_definition_and_writes_nothing() {
    let repo = Shared::new(Repo {
        issues: (1..=3)
            .map(|n| issue(n, "open", "2026-11-20T10:00:00Z"))
            .collect(),
        ..Repo::default()
    });
    let fake = ScriptedApi::start(github(repo)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, "", &github_source(&fake.url, "${GITHUB_TOKEN}"));
    let args = [
        "--config",
        config.to_str().unwrap(),
        "poll",
        "gh.issues",
        "--dry-run",
    ];

    for _ in 0..2 {
        let out = pollhook(&args, &[("GITHUB_TOKEN", GITHUB_TOKEN)]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(
            out.stdout
                .contains("gh.issues: first poll: 3 item(s) would be recorded as the baseline"),
            "{}",
            out.stdout
        );
    }
    assert_eq!(fake.requests().len(), 4, "two pages, twice");

    let out = pollhook(&args, &[("GITHUB_TOKEN", "github_pat_wrong")]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("401"), "{}", out.stderr);
}

/// The code blocks of adapters/README.md: the worked definition checks with its own example, the
/// exec source checks, and the Python shown is the example file's.
#[test]
fn the_readme_examples_are_real() {
    let readme = std::fs::read_to_string(adapters_dir().join("README.md")).unwrap();
    let blocks = |lang: &str| -> Vec<String> {
        readme
            .split(&format!("```{lang}\n"))
            .skip(1)
            .map(|b| b.split("```").next().unwrap().to_owned())
            .collect()
    };
    let toml_blocks = blocks("toml");

    let definition = toml_blocks
        .iter()
        .find(|b| b.contains("description = "))
        .expect("a worked definition");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("acme.toml"), definition).unwrap();
    let example = example_source(definition).expect("its [[sources]] example");
    let top = format!("adapters_dir = '{}'", dir.path().display());
    let config =
        Setup::parse_in(&dir, &top, &example, &env_for(&example)).unwrap_or_else(|e| panic!("{e}"));
    let orders = &config.sources[0].resources[0];
    assert_eq!(orders.path, "/orders");
    assert!(matches!(
        orders.pagination,
        Pagination::Offset { size: 100, .. }
    ));
    assert!(orders.incremental.is_some());

    let exec = toml_blocks
        .iter()
        .find(|b| b.contains("adapter = \"exec\""))
        .expect("an exec source");
    let config =
        Setup::parse_in(&dir, "", exec, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(config.sources[0].kind, SourceKind::Exec(_)));

    let script = std::fs::read_to_string(adapters_dir().join("examples/list_orders.py")).unwrap();
    let python = &blocks("python")[0];
    assert!(
        script.contains(python.as_str()),
        "the README's Python differs from examples/list_orders.py"
    );
}
