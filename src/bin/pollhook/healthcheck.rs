//! `healthcheck`: exit 0 if a running pollhook answers `/healthz`, for container HEALTHCHECKs
//! (an image has no curl).
//!
//! In: a URL, or the config's `[server] health_listen`, else its `listen` (`POLLHOOK_HEALTH_LISTEN`
//! and `POLLHOOK_LISTEN` override them as for `run`); with no config file, those variables, else
//! `127.0.0.1:8787`. Out: the exit code; why not, on stderr.
//!
//! Invariant: it asks the address the `run` of the same config listens on, so a config that moves
//! the port moves the check with it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;

use crate::{load, usage};

/// `pollhook [--config C] healthcheck [--url URL]`. `explicit`: the config was named (by
/// `--config` or `POLLHOOK_CONFIG`), so a missing file is an error rather than "no config".
pub async fn check(path: &Path, explicit: bool, url: Option<String>) -> anyhow::Result<ExitCode> {
    let url = match url {
        Some(url) => url,
        None => format!("http://{}/healthz", reachable(address(path, explicit)?)),
    };
    let client = pollhook::http::client()
        .timeout(std::time::Duration::from_secs(3))
        .build()?;
    Ok(match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("{url}: HTTP {}", r.status());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::from(1)
        }
    })
}

/// Where `pollhook run` with this config serves `/healthz`: the health listener if it has one,
/// else the admin API.
fn address(path: &Path, explicit: bool) -> anyhow::Result<SocketAddr> {
    let server = if explicit || path.exists() {
        let server = load(path)?.server;
        server.health_listen.unwrap_or(server.listen)
    } else {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let (name, text) = match (var("POLLHOOK_HEALTH_LISTEN"), var("POLLHOOK_LISTEN")) {
            (Some(health), _) => ("POLLHOOK_HEALTH_LISTEN", health),
            (None, Some(listen)) => ("POLLHOOK_LISTEN", listen),
            (None, None) => return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 8787))),
        };
        text.parse().map_err(|_| {
            usage(format!(
                "{name} `{text}` is not an address: write host:port, e.g. 0.0.0.0:8788"
            ))
        })?
    };
    if server.port() == 0 {
        return Err(usage(format!(
            "{server} has port 0, which the kernel picks at each start: pass --url http://HOST:PORT/healthz"
        )));
    }
    Ok(server)
}

/// A wildcard listen address is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}
