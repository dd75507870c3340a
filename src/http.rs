//! The one way pollhook builds an HTTP client, for sources and endpoints alike, and the words it
//! uses for what went wrong.
//!
//! In: what a caller adds (timeouts, a resolver). Out: a `reqwest::ClientBuilder` with the
//! house rules already set.
//!
//! Invariants: no proxy is ever picked up from the environment (`HTTP_PROXY` would send every
//! request, credentials included, through a host nobody configured); no redirect is followed by
//! the client (a source follows its own, hop by hop, under its origin rules; a delivery treats a
//! 3xx as a failure); every request says `User-Agent: pollhook/<version>`; an endpoint's
//! connection goes only to an address the URL policy allows, however its name resolves.

use std::net::SocketAddr;

use crate::endpoint::UrlPolicy;

/// The `User-Agent` of every request pollhook makes.
pub const USER_AGENT: &str = concat!("pollhook/", env!("CARGO_PKG_VERSION"));

/// A client builder with the house rules: no proxy, no redirects, pollhook's user agent.
pub fn client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
}

/// A `reqwest` error with its sources, which say what actually failed (refused, reset, DNS, TLS):
/// reqwest's own message alone is only "error sending request".
pub fn error_text(e: &reqwest::Error) -> String {
    let mut text = String::from(if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the response body was cut short"
    } else {
        "request failed"
    });
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Resolves with the system resolver, then keeps only the addresses the policy allows.
pub struct PolicyResolver(UrlPolicy);

impl PolicyResolver {
    /// A resolver that applies `policy`.
    pub fn new(policy: UrlPolicy) -> Self {
        Self(policy)
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
                    format!("cannot resolve {host}: {e}").into()
                })?
                .collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check_addr(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.unwrap_or_else(|| "no addresses".into());
                return Err(format!("refused to connect to {host}: {why}").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
