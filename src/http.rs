//! The one way pollhook builds an HTTP client, for sources and endpoints alike, and the words it
//! uses for what went wrong.
//!
//! In: what a caller adds (timeouts, a resolver, `[http] proxy`). Out: a `reqwest::ClientBuilder` with the
//! house rules already set.
//!
//! Invariants: no proxy is ever picked up from the environment (`HTTP_PROXY` would send every
//! request, credentials included, through a host nobody configured): only `[http] proxy` is
//! used, for the hosts `no_proxy` does not name; no redirect is followed by
//! the client (a source follows its own, hop by hop, under its origin rules; a delivery treats a
//! 3xx as a failure); every request says `User-Agent: pollhook/<version>`; an endpoint's
//! connection goes only to an address the URL policy allows, however its name resolves.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use url::Url;

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

/// [`client`] that sends through `proxy` (when given) every request to a host its `no_proxy` does
/// not name.
pub fn client_via(proxy: Option<&Proxy>) -> reqwest::ClientBuilder {
    let Some(proxy) = proxy.cloned() else {
        return client();
    };
    let target = proxy.url.clone();
    client().proxy(reqwest::Proxy::custom(move |url| {
        proxy.applies_to(url).then(|| target.clone())
    }))
}

/// `[http] proxy`: the outbound HTTP proxy (`http://host:port`, credentials in the URL allowed),
/// and the hosts reached directly.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The proxy's URL.
    pub url: Url,
    /// Hosts reached without it.
    pub no_proxy: Vec<NoProxy>,
}

/// One `no_proxy` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoProxy {
    /// `*`: every host.
    All,
    /// `example.com` (or `.example.com`): that name and every name under it.
    Domain(String),
    /// `10.0.0.0/8` or `10.1.2.3`: a literal address in it.
    Network(IpNet),
}

impl NoProxy {
    /// Reads one entry; `None` if it is none of the three forms.
    pub fn parse(text: &str) -> Option<NoProxy> {
        let text = text.trim();
        if text == "*" {
            return Some(NoProxy::All);
        }
        let net =
            (text.parse::<IpNet>().ok()).or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from));
        if let Some(net) = net {
            return Some(NoProxy::Network(net));
        }
        let domain = text
            .trim_start_matches('.')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let valid = !domain.is_empty()
            && domain
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        valid.then_some(NoProxy::Domain(domain))
    }
}

impl Proxy {
    /// Whether a request to `url` goes through the proxy.
    pub fn applies_to(&self, url: &Url) -> bool {
        let host = match url.host() {
            Some(h) => h,
            None => return false,
        };
        let ip: Option<IpAddr> = match &host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
            url::Host::Domain(_) => None,
        };
        let name = match &host {
            url::Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
            _ => String::new(),
        };
        !self.no_proxy.iter().any(|rule| match rule {
            NoProxy::All => true,
            NoProxy::Network(net) => ip.is_some_and(|ip| net.contains(&ip)),
            NoProxy::Domain(d) => name == *d || name.ends_with(&format!(".{d}")),
        })
    }
}

/// Never prints the proxy's password.
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &crate::endpoint::shown_url(&self.url))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// The addresses `host` resolves to, if the policy allows every one of them. For a request sent
/// through a proxy, which resolves the name itself and may pick any of its addresses: the
/// client's own resolver only ever sees the proxy's name, whose address the policy does not
/// judge.
pub async fn check_target(policy: &UrlPolicy, url: &Url) -> Result<(), String> {
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_owned(),
        // Literal addresses were judged with the URL.
        Some(_) => return Ok(()),
        None => return Err(format!("`{}` has no host", crate::endpoint::shown_url(url))),
    };
    let addrs = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut any = false;
    for addr in addrs {
        any = true;
        policy
            .check_addr(addr.ip())
            .map_err(|why| format!("refused to connect to {host}: {why}"))?;
    }
    match any {
        true => Ok(()),
        false => Err(format!("cannot resolve {host}: no addresses")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_names_hosts_domains_and_networks() {
        let proxy = Proxy {
            url: "http://proxy:3128".parse().unwrap(),
            no_proxy: ["internal.example", ".corp", "10.0.0.0/8", "192.168.1.1"]
                .iter()
                .map(|t| NoProxy::parse(t).unwrap())
                .collect(),
        };
        let via = |u: &str| proxy.applies_to(&u.parse().unwrap());
        assert!(via("https://api.example.com/x"));
        assert!(!via("https://internal.example/x"));
        assert!(!via("https://a.b.internal.example/x"));
        assert!(
            via("https://notinternal.example/x"),
            "a suffix is not a subdomain"
        );
        assert!(!via("https://x.corp/"));
        assert!(!via("http://10.1.2.3/"));
        assert!(!via("http://192.168.1.1/"));
        assert!(via("http://192.168.1.2/"));
        assert_eq!(NoProxy::parse("*"), Some(NoProxy::All));
        assert_eq!(NoProxy::parse("a b"), None);
        let secret = Proxy {
            url: "http://u:pw@proxy:3128".parse().unwrap(),
            no_proxy: vec![],
        };
        assert!(!format!("{secret:?}").contains("pw"));
    }
}
