//! A source and its resources: engine, auth, origins, limits, and each resource's schedule,
//! items, ids, pagination and incremental settings.

use std::collections::{BTreeMap, HashSet};

use url::Url;

use super::problem::Problems;
use super::raw::*;
use super::resource::{fill_params, validate_resource};
use super::values::*;
use super::*;

pub(super) fn max_page_bytes(raw: Option<u64>, at: &str, p: &mut Problems) -> u64 {
    number(
        raw,
        DEFAULT_MAX_PAGE_BYTES,
        limits::MAX_PAGE_BYTES,
        format!("{at}.max_page_bytes"),
        p,
    )
}

pub(super) fn follow_origins(
    raw: Vec<RawFollowOrigin>,
    at: &str,
    p: &mut Problems,
) -> Vec<FollowOrigin> {
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

pub(super) fn validate_source(mut raw: RawSource, p: &mut Problems) -> Option<SourceConfig> {
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
        "rest" | "graphql" | "exec" | "feed" => {}
        other => {
            p.push(
                format!("{at}.adapter"),
                format!("`{other}` is not an engine"),
                Some("an adapter definition's `engine` is \"rest\" (default), \"graphql\", \"feed\" or \"exec\""),
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
                page_concurrency: number(
                    raw.page_concurrency,
                    1,
                    limits::PAGE_CONCURRENCY,
                    format!("{at}.page_concurrency"),
                    p,
                ),
                max_page_bytes: max_page_bytes(raw.max_page_bytes, &at, p),
                follow_origins: follow_origins(raw.follow_origins, &at, p),
                proxy: None,
            });
            match raw.adapter.as_str() {
                "graphql" => SourceKind::Graphql(rest),
                "feed" => SourceKind::Feed(rest),
                _ => SourceKind::Rest(rest),
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

pub(super) fn validate_auth(raw: Option<RawAuth>, at: &str, p: &mut Problems) -> Auth {
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

/// A source's extra request headers, each name and value checked as HTTP allows them (RFC 9110
/// §5): a CR or LF in a value could otherwise start a header of its own.
pub(super) fn source_headers(
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
