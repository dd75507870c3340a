//! Config validation (DESIGN.md §2, STYLE.md habits 7–8): every broken config is refused with the
//! key path of the problem and what is wrong; good configs, and every file in `config/`, parse.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use pollhook::config::{Auth, Config, ConfigError, Initial, Pagination, SourceKind, When};

use crate::support::{env, parse};

/// A `shop` REST source on a local URL with one resource `orders`; `source` lines go into the
/// source table, `resource` lines (which must say when to poll) into the resource table.
fn shop(source: &str, resource: &str) -> String {
    format!(
        r#"
[[sources]]
name = "shop"
base_url = "http://127.0.0.1:3000"
{source}

  [[sources.resources]]
  name = "orders"
  path = "/orders"
  {resource}
"#
    )
}

/// The problems of a config that must be refused as invalid.
fn problems_of(text: &str, env: &BTreeMap<String, String>) -> (Vec<(String, String)>, String) {
    match parse(text, env) {
        Ok(_) => panic!("accepted a broken config:\n{text}"),
        Err(error @ ConfigError::Invalid { .. }) => {
            let shown = error.to_string();
            let ConfigError::Invalid { problems, .. } = error else {
                unreachable!()
            };
            let problems = problems.into_iter().map(|p| (p.at, p.message)).collect();
            (problems, shown)
        }
        Err(other) => panic!("expected an invalid-config error, got: {other}"),
    }
}

/// `text` has exactly one problem, at `at`, whose message contains `what`; the error's Display
/// names both on one line.
fn refused(text: &str, at: &str, what: &str) -> String {
    refused_in(text, &env(&[]), at, what)
}

fn refused_in(text: &str, env: &BTreeMap<String, String>, at: &str, what: &str) -> String {
    let (problems, shown) = problems_of(text, env);
    assert_eq!(problems.len(), 1, "{shown}");
    assert_eq!(problems[0].0, at, "{shown}");
    assert!(problems[0].1.contains(what), "{shown}");
    assert!(shown.starts_with("test.toml has 1 problem(s):"), "{shown}");
    let line = shown
        .lines()
        .find(|l| l.starts_with(&format!("  - {at}: ")))
        .unwrap_or_else(|| panic!("no line names {at}:\n{shown}"));
    assert!(line.contains(what), "{shown}");
    shown
}

#[test]
fn unknown_key() {
    refused(
        &shop("", "every = \"30s\"\n  evry = \"5s\""),
        "sources[shop].resources[orders].evry",
        "unknown field `evry`",
    );
    refused(
        "[stroage]\npath = \"x.db\"\n",
        "stroage",
        "unknown field `stroage`",
    );
}

/// Each problem is one `at: message (hint: …)` line. Errors from the TOML shape step carry the
/// `toml` crate's own "\nin `sources.resources`" suffix, which splits the line and pushes the hint
/// onto a line of its own.
#[test]
fn shape_problems_fit_on_one_line() {
    for text in [
        shop("", "every = \"30s\"\n  evry = \"5s\""),
        shop("", "every = \"30s\"\n  pagination = { style = \"pages\" }"),
    ] {
        let (problems, shown) = problems_of(&text, &env(&[]));
        assert!(
            problems.iter().all(|(_, message)| !message.contains('\n')),
            "{shown}"
        );
        assert_eq!(shown.lines().count(), 2, "{shown}");
    }
}

#[test]
fn bad_duration() {
    refused(
        &shop("", r#"every = "5 parsecs""#),
        "sources[shop].resources[orders].every",
        "`5 parsecs` is not a duration",
    );
}

#[test]
fn bad_cron() {
    refused(
        &shop("", r#"schedule = "61 * * * *""#),
        "sources[shop].resources[orders].schedule",
        "`61 * * * *` is not a crontab schedule",
    );
    refused(
        &shop("", r#"schedule = "0 9 * *""#),
        "sources[shop].resources[orders].schedule",
        "has 4 fields",
    );
}

#[test]
fn bad_jsonpath_in_items() {
    refused(
        &shop("", "every = \"30s\"\n  items = \"data[\""),
        "sources[shop].resources[orders].items",
        "`data[` is not a JSONPath",
    );
}

#[test]
fn duplicate_source_names() {
    let text = format!(
        "{}{}",
        shop("", r#"every = "30s""#),
        shop("", r#"every = "1m""#)
    );
    refused(
        &text,
        "sources[1].name",
        "a source named `shop` is already defined",
    );
}

#[test]
fn duplicate_resource_names() {
    let text = format!(
        "{}\n  [[sources.resources]]\n  name = \"orders\"\n  path = \"/v2/orders\"\n  every = \"1m\"\n",
        shop("", r#"every = "30s""#)
    );
    refused(
        &text,
        "sources[shop].resources[orders].name",
        "a resource with this name is already defined",
    );
}

#[test]
fn missing_environment_variable() {
    let shown = refused(
        &shop(
            r#"auth = { type = "bearer", token = "${NOPE}" }"#,
            r#"every = "30s""#,
        ),
        "sources[shop].auth.token",
        "environment variable `NOPE` is not set",
    );
    assert!(shown.contains("${NOPE:-default}"), "{shown}");
}

#[test]
fn missing_environment_variables_are_reported_together() {
    let (problems, shown) = problems_of(
        &shop(
            r#"auth = { type = "basic", username = "${USER_A}", password = "${PASS_B}" }"#,
            r#"every = "30s""#,
        ),
        &env(&[]),
    );
    assert_eq!(
        problems,
        [
            (
                "sources[shop].auth.password".to_owned(),
                "environment variable `PASS_B` is not set".to_owned()
            ),
            (
                "sources[shop].auth.username".to_owned(),
                "environment variable `USER_A` is not set".to_owned()
            ),
        ],
        "{shown}"
    );
}

#[test]
fn every_and_schedule_together() {
    refused(
        &shop("", "every = \"30s\"\n  schedule = \"*/5 * * * *\""),
        "sources[shop].resources[orders]",
        "both `every` and `schedule` are set",
    );
}

#[test]
fn bad_pagination_style() {
    refused(
        &shop("", "every = \"30s\"\n  pagination = { style = \"pages\" }"),
        "sources[shop].resources[orders].pagination.style",
        "unknown variant `pages`",
    );
}

#[test]
fn a_stated_total_is_a_header_name_or_a_jsonpath_not_both() {
    let paged = |style: &str| shop("", &format!("every = \"30s\"\n  pagination = {style}"));
    refused(
        &paged(r#"{ style = "page", total_header = "X Total" }"#),
        "sources[shop].resources[orders].pagination.total_header",
        "`X Total` is not a header name",
    );
    refused(
        &paged(r#"{ style = "offset", total = "meta.total" }"#),
        "sources[shop].resources[orders].pagination.total",
        "is not a JSONPath",
    );
    refused(
        &paged(r#"{ style = "page", total_header = "X-Total-Count", total = "$.total" }"#),
        "sources[shop].resources[orders].pagination",
        "both `total_header` and `total` are set",
    );
    refused(
        &paged(r#"{ style = "cursor", next_cursor = "$.next", total = "$.total" }"#),
        "sources[shop].resources[orders].pagination",
        "unknown field `total`",
    );
    let config = parse(
        &paged(r#"{ style = "page", total_header = "x-total-count" }"#),
        &env(&[]),
    )
    .unwrap();
    let total = config.sources[0].resources[0].pagination.total();
    assert!(
        matches!(total, Some(pollhook::config::Total::Header(name)) if name == "x-total-count"),
        "{total:?}"
    );
}

#[test]
fn api_key_with_header_and_query() {
    refused(
        &shop(
            r#"auth = { type = "api-key", header = "X-API-Key", query = "api_key", value = "k" }"#,
            r#"every = "30s""#,
        ),
        "sources[shop].auth",
        "exactly one of `header` or `query`",
    );
}

#[test]
fn bad_time_zone() {
    refused(
        &shop(
            "",
            "schedule = \"0 9 * * 1-5\"\n  tz = \"Mars/Olympus_Mons\"",
        ),
        "sources[shop].resources[orders].tz",
        "`Mars/Olympus_Mons` is not a time zone",
    );
}

#[test]
fn delete_ratio_above_one() {
    refused(
        &shop("", "every = \"30s\"\n  max_delete_ratio = 2.0"),
        "sources[shop].resources[orders].max_delete_ratio",
        "2 is not between 0 and 1",
    );
}

#[test]
fn short_jwt_endpoint_secret() {
    let text = format!(
        r#"{}
[[endpoints]]
name = "erp"
url = "https://erp.example.com/hooks/pollhook"
secret = "only-28-bytes-of-jwt-secret!"
signing = "jwt"
"#,
        shop("", r#"every = "30s""#)
    );
    refused(
        &text,
        "endpoints[erp].secret",
        "a jwt key must be at least 32 bytes (HS256); this one has 28",
    );
}

#[test]
fn unknown_adapter() {
    let shown = refused(
        &shop(r#"adapter = "nope""#, r#"every = "30s""#),
        "sources[shop].adapter",
        "no adapter definition named `nope`",
    );
    assert!(shown.contains("json-server"), "{shown}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let (problems, shown) = problems_of(
        &shop(
            "",
            "every = \"soon\"\n  max_delete_ratio = -1.0\n  initial = \"shout\"",
        ),
        &env(&[]),
    );
    let at: Vec<&str> = problems.iter().map(|(at, _)| at.as_str()).collect();
    assert_eq!(
        at,
        [
            "sources[shop].resources[orders].every",
            "sources[shop].resources[orders].initial",
            "sources[shop].resources[orders].max_delete_ratio",
        ],
        "{shown}"
    );
    assert!(shown.starts_with("test.toml has 3 problem(s):"), "{shown}");
}

#[test]
fn a_good_config_with_defaults_for_variables() {
    let text = r#"
[storage]
path = "${DB_DIR:-/var/lib/pollhook}/pollhook.db"

[[sources]]
name = "shop"
base_url = "${SHOP_URL:-http://127.0.0.1:3000}"
auth = { type = "bearer", token = "${SHOP_TOKEN:-dev-token}" }

  [[sources.resources]]
  name = "orders"
  path = "/orders"
  query = { status = "any", limit = 50 }
  every = "30s"
  items = "$.data"
  id = ["order_id", "line"]
  ignore = ["updated_at", "meta.etag"]
  pagination = { style = "cursor", next_cursor = "$.meta.next_cursor" }
  initial = "emit"

  [[sources.resources]]
  name = "customers"
  path = "/customers"
  schedule = "*/5 * * * *"
  tz = "Europe/Copenhagen"

[[endpoints]]
name = "erp"
url = "https://erp.example.com/hooks/pollhook"
secret = "${ERP_WEBHOOK_KEY:-0123456789abcdef0123456789abcdef}"
resources = ["shop.orders"]
actions = ["created", "updated"]
"#;
    let config = parse(text, &env(&[])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.storage.path,
        Path::new("/var/lib/pollhook/pollhook.db")
    );
    let shop = &config.sources[0];
    let SourceKind::Rest(rest) = &shop.kind else {
        panic!("not a REST source")
    };
    assert_eq!(rest.base_url.as_str(), "http://127.0.0.1:3000/");
    assert_eq!(
        rest.auth,
        Auth::Bearer {
            token: pollhook::config::Secret::new("dev-token")
        }
    );
    assert!(
        !format!("{config:?}").contains("dev-token"),
        "a secret prints"
    );
    let orders = &shop.resources[0];
    assert!(matches!(orders.when, When::Every(d) if d == Duration::from_secs(30)));
    assert_eq!(
        orders.query,
        [
            ("limit".to_owned(), "50".to_owned()),
            ("status".to_owned(), "any".to_owned())
        ]
    );
    assert_eq!(orders.items_text.as_deref(), Some("$.data"));
    let id: Vec<String> = orders.id.iter().map(ToString::to_string).collect();
    assert_eq!(id, ["order_id", "line"]);
    let ignore: Vec<String> = orders.ignore.iter().map(ToString::to_string).collect();
    assert_eq!(ignore, ["updated_at", "meta.etag"]);
    assert!(
        matches!(&orders.pagination, Pagination::Cursor { cursor_param, .. } if cursor_param == "cursor")
    );
    assert_eq!(orders.initial, Initial::Emit);
    assert_eq!(orders.max_delete_ratio, 0.5);
    let customers = &shop.resources[1];
    assert!(
        matches!(&customers.when, When::Cron { tz, .. } if *tz == chrono_tz::Europe::Copenhagen)
    );
    assert_eq!(customers.initial, Initial::Baseline);
    assert_eq!(
        config.endpoints[0].secret.expose(),
        "0123456789abcdef0123456789abcdef"
    );

    // Set variables win over their defaults.
    let set = env(&[
        ("SHOP_URL", "https://shop.example.com/api/"),
        ("SHOP_TOKEN", "real-token"),
        ("DB_DIR", "/data"),
    ]);
    let config = parse(text, &set).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.storage.path, Path::new("/data/pollhook.db"));
    let SourceKind::Rest(rest) = &config.sources[0].kind else {
        panic!("not a REST source")
    };
    assert_eq!(rest.base_url.as_str(), "https://shop.example.com/api/");
    assert_eq!(
        rest.auth,
        Auth::Bearer {
            token: pollhook::config::Secret::new("real-token")
        }
    );
}

#[test]
fn an_adapter_definition_fills_in_a_source() {
    let text = r#"
[[sources]]
name = "shop"
adapter = "json-server"
base_url = "http://127.0.0.1:3999"

  [[sources.resources]]
  name = "orders"
  every = "10s"
"#;
    let config = parse(text, &env(&[])).unwrap_or_else(|e| panic!("{e}"));
    let orders = &config.sources[0].resources[0];
    assert_eq!(orders.path, "/orders");
    assert!(matches!(orders.pagination, Pagination::LinkHeader));
    let SourceKind::Rest(rest) = &config.sources[0].kind else {
        panic!("not a REST source")
    };
    assert_eq!(rest.base_url.as_str(), "http://127.0.0.1:3999/");
}

#[test]
fn container_overrides_win_over_the_file() {
    let text = "[storage]\npath = \"file.db\"\n[server]\nlisten = \"127.0.0.1:8787\"\n";
    let config = parse(
        text,
        &env(&[
            ("POLLHOOK_STORAGE_PATH", "/data/pollhook.db"),
            ("POLLHOOK_LISTEN", "0.0.0.0:9000"),
            ("POLLHOOK_ADMIN_TOKEN", "t0k3n"),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.storage.path, Path::new("/data/pollhook.db"));
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(
        config.server.admin_token.as_ref().map(|t| t.expose()),
        Some("t0k3n")
    );
}

/// A value for a variable an example config needs, shaped for where secrets of that name go.
fn placeholder(name: &str) -> String {
    if name.contains("WHSEC") || name.contains("STANDARD") {
        // whsec_ + base64 of 24 bytes.
        "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3".into()
    } else if name.ends_with("_URL") {
        "https://example.com".into()
    } else {
        "placeholder-value-long-enough-for-a-jwt-key-0123456789".into()
    }
}

#[test]
fn every_example_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("no {} yet; nothing to check", dir.display());
        return;
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no *.toml", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut vars = env(&[("POLLHOOK_ADMIN_TOKEN", "admin-token")]);
        // Give every variable the file needs a value, then parse for real.
        if let Err(ConfigError::Invalid { problems, .. }) = Config::parse(&file, &text, &vars) {
            for p in problems {
                if let Some(name) = p
                    .message
                    .strip_prefix("environment variable `")
                    .and_then(|m| m.strip_suffix("` is not set"))
                {
                    vars.insert(name.to_owned(), placeholder(name));
                }
            }
        }
        let config = Config::parse(&file, &text, &vars)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
        assert!(
            !config.sources.is_empty(),
            "{} configures no source",
            file.display()
        );
    }
}
