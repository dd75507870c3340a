//! The process-wide settings: `[storage]`, `[server]`, `[poll]`, `[delivery]`, and the walk over
//! the whole file that validates everything else.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::endpoint::check_endpoint;
use super::problem::Problems;
use super::raw::*;
use super::source::validate_source;
use super::values::*;
use super::*;

pub(super) fn validate(file: &Path, raw: RawConfig, p: &mut Problems) -> Config {
    let retain = duration_in(
        raw.storage.retain.as_deref(),
        Duration::from_secs(30 * 24 * 3600),
        limits::RETAIN,
        "storage.retain",
        p,
    );
    let retain_failed = duration_in(
        raw.storage.retain_failed.as_deref(),
        Duration::from_secs(90 * 24 * 3600).max(retain),
        limits::RETAIN,
        "storage.retain_failed",
        p,
    );
    if retain_failed < retain {
        p.push(
            "storage.retain_failed",
            "is shorter than storage.retain: dead letters would go before delivered events",
            Some("make retain_failed at least as long as retain (default 90d)"),
        );
    }
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
        retain,
        retain_failed,
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
    let health_listen = raw.server.health_listen.as_deref().and_then(|text| {
        let parsed = text.parse::<SocketAddr>().ok();
        if parsed.is_none() {
            p.push(
                "server.health_listen",
                format!("`{text}` is not an address"),
                Some("write host:port, e.g. 0.0.0.0:8788"),
            );
        }
        parsed
    });
    if let Some(health) = health_listen
        && shares_port(health, listen)
    {
        p.push(
            "server.health_listen",
            format!("`{health}` is the admin API's port (`server.listen` = `{listen}`)"),
            Some("give the probes a port of their own, e.g. 0.0.0.0:8788"),
        );
    }
    let server = ServerConfig {
        listen,
        health_listen,
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
    let (proxy, for_sources, for_endpoints) = validate_http(raw.http, p);
    for source in &mut sources {
        if let SourceKind::Rest(rest) | SourceKind::Graphql(rest) = &mut source.kind {
            rest.proxy = proxy.clone().filter(|_| for_sources);
        }
    }
    let mut delivery = delivery;
    delivery.proxy = proxy.filter(|_| for_endpoints);

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

/// `[http]`: the proxy, and whether sources and endpoints use it.
fn validate_http(raw: RawHttp, p: &mut Problems) -> (Option<crate::http::Proxy>, bool, bool) {
    let no_proxy = (raw.no_proxy.iter().enumerate())
        .filter_map(|(i, text)| {
            let rule = crate::http::NoProxy::parse(text);
            if rule.is_none() {
                p.push(
                    format!("http.no_proxy[{i}]"),
                    format!("`{text}` is not a host name, an address or a network"),
                    Some(r#"write e.g. "internal.example.com", ".corp", "10.0.0.0/8" or "*""#),
                );
            }
            rule
        })
        .collect();
    let (mut sources, mut endpoints) = (true, true);
    if let Some(list) = raw.proxy_for {
        (sources, endpoints) = (false, false);
        for (i, what) in list.iter().enumerate() {
            match what.as_str() {
                "sources" => sources = true,
                "endpoints" => endpoints = true,
                other => p.push(
                    format!("http.proxy_for[{i}]"),
                    format!("`{other}` is not a choice"),
                    Some(r#"proxy_for = ["sources", "endpoints"] (the default), or one of them"#),
                ),
            }
        }
    }
    let proxy = raw.proxy.filter(|t| !t.is_empty()).and_then(|text| {
        let shown = crate::endpoint::shown_url_text(&text);
        match url::Url::parse(&text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(crate::http::Proxy { url, no_proxy })
            }
            Ok(_) | Err(_) => {
                p.push(
                    "http.proxy",
                    format!("`{shown}` is not a proxy URL"),
                    Some(r#"write proxy = "http://proxy.example.com:3128" (credentials as http://user:password@host:port)"#),
                );
                None
            }
        }
    });
    (proxy, sources, endpoints)
}

/// Whether two listen addresses would take the same port: the same non-zero port, on the same
/// address or with either on a wildcard.
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

fn shares_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `[server] allowed_hosts`: bare authorities, compared case-insensitively with `Host`.
pub(super) fn allowed_hosts(hosts: Vec<String>, p: &mut Problems) -> Vec<String> {
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

pub(super) fn validate_delivery(raw: RawDelivery, p: &mut Problems) -> DeliveryConfig {
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
        proxy: None,
    }
}
