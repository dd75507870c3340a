//! `healthcheck`: exit 0 if a running pollhook answers `/healthz`, for container HEALTHCHECKs
//! (an image has no curl).
//!
//! In: a URL, or `POLLHOOK_LISTEN`. Out: the exit code; why not, on stderr.

use std::process::ExitCode;

/// `pollhook healthcheck [--url URL]`.
pub async fn check(url: Option<String>) -> anyhow::Result<ExitCode> {
    let url = url.unwrap_or_else(|| {
        let listen = std::env::var("POLLHOOK_LISTEN").unwrap_or_else(|_| "127.0.0.1:8787".into());
        // A wildcard listen address is reached on loopback.
        let listen = listen
            .replace("0.0.0.0", "127.0.0.1")
            .replace("[::]", "[::1]");
        format!("http://{listen}/healthz")
    });
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
