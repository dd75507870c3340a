//! Endpoints: where events go, which events each one wants, and which URLs may receive them.
//!
//! In: an endpoint's settings (from config or the operator) and an event's source, resource and
//! action. Out: whether the endpoint wants the event; whether a URL or a resolved address is allowed.
//!
//! Invariant: an endpoint only ever receives events its filters select, and only at an address the
//! [`UrlPolicy`] allows (https, public address) unless the operator opened it up explicitly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::Secret;
use crate::event::Action;
use crate::sign::Scheme;

/// An endpoint's settings, as written in config or registered by an operator.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSpec {
    /// Unique name; also the JWT `webhook` claim.
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// Signing key (`whsec_…` for standard-webhooks, ≥ 32 bytes for jwt).
    pub secret: Secret,
    /// Signing scheme.
    pub signing: Scheme,
    /// `source.resource` patterns, `*` matching any run of characters.
    pub resources: Vec<String>,
    /// Which actions it wants.
    pub actions: ActionFilter,
    /// Inactive (paused or disabled) endpoints are not sent to; their deliveries wait.
    pub active: bool,
    /// Extra headers on every request.
    pub headers: Vec<(String, String)>,
    /// Overrides `[delivery] timeout`.
    pub timeout: Option<Duration>,
}

impl EndpointSpec {
    /// Whether an event about `source.resource` with `action` passes this endpoint's filters.
    /// Paused and disabled endpoints match too: their deliveries queue until they are resumed,
    /// so an outage or a pause loses nothing.
    ///
    /// Operational events (source `pollhook`) only go to endpoints that name them with a
    /// `pollhook.` pattern: a catch-all `*` means "every resource", not "every alert".
    pub fn wants(&self, source: &str, resource: &str, action: &str) -> bool {
        let key = format!("{source}.{resource}");
        let operational = source == crate::event::OPERATIONAL_SOURCE;
        self.actions.allows(action)
            && self
                .resources
                .iter()
                .filter(|p| !operational || p.starts_with("pollhook."))
                .any(|p| glob_match(p, &key))
    }

    /// Checks that the URL parses as http(s); the policy checks come at delivery time.
    pub fn check_url(&self) -> Result<Url, String> {
        let url = Url::parse(&self.url).map_err(|e| format!("`{}` is not a URL: {e}", self.url))?;
        match url.scheme() {
            "http" | "https" if url.host().is_some() => Ok(url),
            _ => Err(format!("`{}` is not an http(s) URL", self.url)),
        }
    }
}

/// The actions an endpoint subscribes to; empty means all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionFilter(Vec<String>);

impl ActionFilter {
    /// Validates a list such as `["created", "updated"]`; `None` means every action.
    pub fn parse(list: Option<&[String]>) -> Result<ActionFilter, String> {
        let list = list.unwrap_or_default();
        for action in list {
            if action.parse::<Action>().is_err()
                && !crate::event::OPERATIONAL_ACTIONS.contains(&action.as_str())
            {
                return Err(format!(
                    "`{action}` is not an action; use created, updated or deleted (or, for pollhook.* events, {})",
                    crate::event::OPERATIONAL_ACTIONS.join(", ")
                ));
            }
        }
        Ok(ActionFilter(list.to_vec()))
    }

    /// Whether `action` passes.
    pub fn allows(&self, action: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|a| a == action)
    }

    /// The listed actions (empty: all).
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// Matches `text` against `pattern`, where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Which endpoint URLs and addresses may receive webhooks (DESIGN.md §7).
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    /// Plain http allowed.
    pub allow_http: bool,
    /// Networks allowed although private.
    pub allow_networks: Vec<IpNet>,
}

impl UrlPolicy {
    /// Checks scheme and, for a literal IP host, the address.
    pub fn check_url(&self, url: &str) -> Result<Url, String> {
        let parsed = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(format!(
                    "`{url}` is plain http; endpoints must use https unless [delivery] allow_http = true"
                ));
            }
            other => return Err(format!("`{url}` has scheme {other}; use https")),
        }
        match parsed.host() {
            Some(url::Host::Ipv4(ip)) => self.check_addr(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_addr(IpAddr::V6(ip))?,
            Some(url::Host::Domain(_)) => {}
            None => return Err(format!("`{url}` has no host")),
        }
        Ok(parsed)
    }

    /// Refuses loopback, private, link-local, CGNAT, multicast and metadata addresses unless
    /// inside `allow_networks`.
    pub fn check_addr(&self, ip: IpAddr) -> Result<(), String> {
        if self.allow_networks.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match forbidden(ip) {
            None => Ok(()),
            Some(kind) => Err(format!(
                "{ip} is a {kind} address; add it to [delivery] allow_networks to allow it"
            )),
        }
    }
}

fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let seg = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some("cloud metadata")
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        // Includes 169.254.169.254, the cloud metadata service.
        Some("link-local or cloud metadata")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("CGNAT (100.64.0.0/10)")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("multicast or broadcast")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "shop.orders"));
        assert!(glob_match("shop.*", "shop.orders"));
        assert!(glob_match("*.orders", "shop.orders"));
        assert!(glob_match("shop.orders", "shop.orders"));
        assert!(!glob_match("shop.order", "shop.orders"));
        assert!(!glob_match("crm.*", "shop.orders"));
        assert!(glob_match("s*p.*s", "shop.orders"));
    }

    #[test]
    fn policy_refuses_private_and_http_unless_allowed() {
        let strict = UrlPolicy::default();
        assert!(strict.check_url("http://example.com/").is_err());
        assert!(strict.check_url("https://example.com/").is_ok());
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(strict.check_addr(ip).is_err(), "{ip} allowed");
        }
        assert!(strict.check_addr("93.184.216.34".parse().unwrap()).is_ok());
        let open = UrlPolicy {
            allow_http: true,
            allow_networks: vec!["127.0.0.0/8".parse().unwrap()],
        };
        assert!(open.check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(open.check_url("http://10.0.0.1/hook").is_err());
    }
}
