//! Endpoints: where events go, which events each one wants, and which URLs may receive them.
//!
//! In: an endpoint's settings (from config or the operator) and an event's source, resource and
//! action. Out: whether the endpoint wants the event; whether a URL or a resolved address is
//! allowed; which headers an endpoint may not set.
//!
//! Invariant: an endpoint only ever receives events its filters select, and only at an address the
//! [`UrlPolicy`] allows (https, an address outside every special-purpose range, see [`classify`])
//! unless the operator opened it up explicitly; a URL is shown with its password masked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::encode::Format;
use crate::event::Action;
use crate::secret::Secret;
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
    /// How the event is written: JSON, or XML (standard-webhooks signing only).
    pub format: Format,
}

impl EndpointSpec {
    /// A digest of everything the config file says about this endpoint. The store keeps the
    /// digest of the file's definition it last applied: while it is unchanged, what an operator
    /// did at run time (pause, disable, remove, edit) stands across restarts; when the file's
    /// definition changes, the file's version wins again.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let definition = serde_json::json!([
            self.url,
            self.secret.expose(),
            self.signing.as_str(),
            self.resources,
            self.actions.as_slice(),
            self.active,
            self.headers,
            self.timeout.map(|t| t.as_millis() as u64),
            self.format.as_str(),
        ]);
        hex::encode(Sha256::digest(definition.to_string().as_bytes()))
    }

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
        let shown = shown_url_text(&self.url);
        let url = Url::parse(&self.url).map_err(|e| format!("`{shown}` is not a URL: {e}"))?;
        match url.scheme() {
            "http" | "https" if url.host().is_some() => Ok(url),
            _ => Err(format!("`{shown}` is not an http(s) URL")),
        }
    }
}

/// Headers an endpoint's `headers` may not set, lower case: pollhook frames the request
/// (`content-length`, `transfer-encoding`, `host`, the hop-by-hop headers of RFC 9110 §7.6.1 and
/// `expect`), describes the signed body (`content-type`, `content-encoding`), signs it
/// (`webhook-*`, Standard Webhooks) and routes it (`pollhook-*`). Overriding any of them loses or
/// misrepresents a webhook; `Content-Length: 0` made a receiver read an empty body and answer
/// 2xx. Anything else (`Authorization`, `User-Agent`, `X-…`) is the operator's to choose.
pub const RESERVED_ENDPOINT_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "content-type",
    "content-encoding",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Whether pollhook sets header `name` itself on every delivery ([`RESERVED_ENDPOINT_HEADERS`],
/// and anything starting `pollhook-`), whatever its case.
pub fn reserved_endpoint_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("pollhook-") || RESERVED_ENDPOINT_HEADERS.contains(&name.as_str())
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
    /// Networks allowed although special-purpose (loopback, private, …).
    pub allow_networks: Vec<IpNet>,
}

impl UrlPolicy {
    /// Checks scheme and, for a literal IP host, the address; every problem in one message.
    pub fn check_url(&self, url: &str) -> Result<Url, String> {
        self.url_problems(url)
            .map_err(|problems| problems.join("; "))
    }

    /// [`UrlPolicy::check_url`] with each problem on its own, so `check` reports them all at once
    /// (plain http *and* a loopback address, not one after the other is fixed). A name is not
    /// resolved here: its addresses are checked at connect time.
    pub fn url_problems(&self, url: &str) -> Result<Url, Vec<String>> {
        let parsed = Url::parse(url)
            .map_err(|e| vec![format!("`{}` is not a URL: {e}", shown_url_text(url))])?;
        let shown = shown_url(&parsed);
        let mut problems = Vec::new();
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => problems.push(format!(
                "`{shown}` is plain http; endpoints must use https unless [delivery] allow_http = true"
            )),
            other => problems.push(format!("`{shown}` has scheme {other}; use https")),
        }
        let addr = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => {
                problems.push(format!("`{shown}` has no host"));
                None
            }
        };
        if let Some(Err(e)) = addr.map(|ip| self.check_addr(ip)) {
            problems.push(e);
        }
        match problems.is_empty() {
            true => Ok(parsed),
            false => Err(problems),
        }
    }

    /// Refuses every special-purpose address ([`classify`]) unless `allow_networks` holds it or
    /// the IPv4 address it embeds: `::ffff:127.0.0.1` is allowed by `127.0.0.0/8`, since that is
    /// where a connection to it goes.
    pub fn check_addr(&self, ip: IpAddr) -> Result<(), String> {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = |ip: &IpAddr| self.allow_networks.iter().any(|n| n.contains(ip));
        if allowed(&ip) || embedded.as_ref().is_some_and(allowed) {
            return Ok(());
        }
        match classify(ip) {
            AddrClass::Public => Ok(()),
            AddrClass::Special(kind) => {
                let via = embedded
                    .map(|v4| format!(" (it embeds {v4})"))
                    .unwrap_or_default();
                Err(format!(
                    "{ip} is a special-purpose address: {kind}{via}; add it to [delivery] allow_networks to allow it"
                ))
            }
        }
    }
}

/// What [`shown_url`] shows in place of a password.
pub const MASKED_PASSWORD: &str = "***";

/// An endpoint URL as it may be shown (CLI, API, logs, errors): a password in it is `***`.
/// The stored URL, used to deliver, keeps it.
pub fn shown_url(url: &Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    // Only fails for URLs that cannot have credentials, and this one has them.
    let _ = shown.set_password(Some(MASKED_PASSWORD));
    shown.to_string()
}

/// Whether `url` is one [`shown_url`] printed: its password is the mask, not a password, so
/// storing it would lose the real one.
pub fn is_masked_url(url: &str) -> bool {
    Url::parse(url).is_ok_and(|u| u.password() == Some(MASKED_PASSWORD))
}

/// [`shown_url`] for URL text that may not parse: unparsable text is shown as it is, since a URL
/// parser that cannot find a password cannot strip one either; `user:pass@` is cut by hand.
pub fn shown_url_text(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) => shown_url(&parsed),
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}{MASKED_PASSWORD}@{}", &url[..scheme + 3], &url[at + 1..])
            }
            _ => url.to_owned(),
        },
    }
}

/// Where an address sits in the IANA special-purpose address registries (RFC 6890 and
/// successors, for IPv4 and IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// Globally reachable: an endpoint may live here.
    Public,
    /// In a special-purpose range, named with its prefix: never an endpoint unless allowed.
    Special(&'static str),
}

/// Classifies `ip`. An IPv6 form that carries an IPv4 address (mapped, translated, compatible,
/// NAT64, 6to4, Teredo) is classified by that IPv4 address, since that is where it leads.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V6(v6) => special(embedded_v4(v6).map_or(ip, IpAddr::V4)),
        IpAddr::V4(_) => special(ip),
    }
}

/// The special-purpose ranges that are not globally reachable, each named with its prefix (an
/// address alone is a single host); per family, the most specific first. The IPv6 forms
/// [`embedded_v4`] reads (Teredo's 2001::/32 among them) are classified by their IPv4 address
/// before these.
const SPECIAL: &[&str] = &[
    // IPv4
    "cloud metadata (169.254.169.254)",
    "broadcast (255.255.255.255)",
    "\"this network\" (0.0.0.0/8)",
    "private (10.0.0.0/8)",
    "shared CGNAT (100.64.0.0/10)",
    "loopback (127.0.0.0/8)",
    "link-local (169.254.0.0/16)",
    "private (172.16.0.0/12)",
    "IETF protocol assignments (192.0.0.0/24)",
    "documentation TEST-NET-1 (192.0.2.0/24)",
    "deprecated 6to4 relay anycast (192.88.99.0/24)",
    "private (192.168.0.0/16)",
    "benchmarking (198.18.0.0/15)",
    "documentation TEST-NET-2 (198.51.100.0/24)",
    "documentation TEST-NET-3 (203.0.113.0/24)",
    "multicast (224.0.0.0/4)",
    "reserved (240.0.0.0/4)",
    // IPv6 that embeds no IPv4 address
    "unspecified (::/128)",
    "loopback (::1/128)",
    "cloud metadata (fd00:ec2::254)",
    "local-use NAT64 (64:ff9b:1::/48)",
    "discard-only (100::/64)",
    "documentation (2001:db8::/32)",
    "IETF protocol assignments, ORCHID and benchmarking (2001::/23)",
    "documentation (3fff::/20)",
    "segment routing SIDs (5f00::/16)",
    "unique local (fc00::/7)",
    "link-local (fe80::/10)",
    "deprecated site-local (fec0::/10)",
    "multicast (ff00::/8)",
];

/// [`SPECIAL`] read once: each range with its name.
static SPECIAL_NETS: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(|| {
    SPECIAL
        .iter()
        .map(|&kind| match special_net(kind) {
            Some(net) => (net, kind),
            None => unreachable!("SPECIAL holds `{kind}`, which names no prefix"),
        })
        .collect()
});

/// The prefix in a [`SPECIAL`] entry's parentheses.
fn special_net(kind: &str) -> Option<IpNet> {
    let (_, prefix) = kind.rsplit_once('(')?;
    let prefix = prefix.strip_suffix(')')?;
    prefix
        .parse()
        .ok()
        .or_else(|| prefix.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The first [`SPECIAL`] range holding `ip`, as it is (no embedded address read).
fn special(ip: IpAddr) -> AddrClass {
    SPECIAL_NETS
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map_or(AddrClass::Public, |&(_, kind)| AddrClass::Special(kind))
}

/// The IPv4 address an IPv6 address leads to, for the forms that carry one: IPv4-mapped
/// `::ffff:0:0/96`, translated `::ffff:0:0:0/96` (RFC 2765), IPv4-compatible `::/96` (deprecated,
/// RFC 4291), NAT64 `64:ff9b::/96` (RFC 6052), 6to4 `2002::/16` (bits 16..48, RFC 3056) and Teredo
/// `2001::/32` (the client address, bit-inverted in the last 32 bits, RFC 4380). `::` and `::1`
/// carry none.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = ip.to_bits();
    let low = Ipv4Addr::from_bits(bits as u32);
    let prefix = |net: Ipv6Addr, len: u32| bits >> (128 - len) == net.to_bits() >> (128 - len);
    if prefix(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96)
        || prefix(Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96)
        || prefix(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96)
    {
        Some(low)
    } else if prefix(Ipv6Addr::UNSPECIFIED, 96) {
        (bits > 1).then_some(low)
    } else if prefix(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        Some(Ipv4Addr::from_bits((bits >> 80) as u32))
    } else if prefix(Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32) {
        Some(Ipv4Addr::from_bits(!(bits as u32)))
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
        let strict = UrlPolicy::default();
        let both = strict.url_problems("http://127.0.0.1:9/hook").unwrap_err();
        assert_eq!(both.len(), 2, "plain http and loopback, at once: {both:?}");
        assert!(both[0].contains("allow_http") && both[1].contains("allow_networks"));
    }

    #[test]
    fn classify_knows_every_special_purpose_range() {
        let special = [
            // IPv4
            ("0.0.0.0", "this network"),
            ("0.1.2.3", "this network"),
            ("10.0.0.1", "private"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.255", "CGNAT"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.8", "IETF protocol assignments"),
            ("192.0.2.1", "TEST-NET-1"),
            ("192.88.99.1", "6to4 relay"),
            ("192.168.1.1", "private"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "TEST-NET-2"),
            ("203.0.113.9", "TEST-NET-3"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            // IPv6 without an embedded IPv4 address
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("64:ff9b:1::1", "local-use NAT64"),
            ("100::1", "discard-only"),
            ("2001:db8::1", "documentation"),
            ("2001:2::1", "2001::/23"),
            ("2001:10::1", "2001::/23"),
            ("3fff::1", "documentation"),
            ("5f00::1", "segment routing"),
            ("fc00::1", "unique local"),
            ("fd00::1", "unique local"),
            ("fd00:ec2::254", "cloud metadata"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            // IPv6 forms classified by the IPv4 address they embed
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("::ffff:0:a9fe:a9fe", "cloud metadata"),
            ("::ffff:0:10.0.0.1", "private"),
            ("::a9fe:a9fe", "cloud metadata"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("::0.0.0.2", "this network"),
            ("64:ff9b::a9fe:a9fe", "cloud metadata"),
            ("64:ff9b::7f00:1", "loopback"),
            ("2002:a9fe:a9fe::", "cloud metadata"),
            ("2002:7f00:1::1", "loopback"),
            ("2002:c0a8:101:1::1", "private"),
            // Teredo: server 65.54.227.120, client 127.0.0.1 inverted (80ff:fffe).
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
        ];
        for (text, kind) in special {
            let ip: IpAddr = text.parse().unwrap();
            match classify(ip) {
                AddrClass::Special(found) => {
                    assert!(found.contains(kind), "{ip}: {found}, expected {kind}")
                }
                AddrClass::Public => panic!("{ip} classified as public, expected {kind}"),
            }
            assert!(UrlPolicy::default().check_addr(ip).is_err(), "{ip} allowed");
        }
        let public = [
            "93.184.216.34",
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82b::200e",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
            // Teredo with client 93.184.216.34 (inverted: a247:27dd).
            "2001:0:4136:e378:8000:63bf:a247:27dd",
        ];
        for text in public {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(classify(ip), AddrClass::Public, "{ip}");
            assert!(UrlPolicy::default().check_addr(ip).is_ok(), "{ip} refused");
        }
    }

    #[test]
    fn every_special_range_names_its_prefix() {
        for kind in SPECIAL {
            let net = special_net(kind).unwrap_or_else(|| panic!("`{kind}` names no prefix"));
            assert_eq!(special(net.network()), AddrClass::Special(kind), "{kind}");
        }
        assert_eq!(SPECIAL_NETS.len(), SPECIAL.len());
        assert_eq!(
            special_net("cloud metadata (fd00:ec2::254)")
                .unwrap()
                .prefix_len(),
            128
        );
        assert_eq!(
            special_net("broadcast (255.255.255.255)")
                .unwrap()
                .prefix_len(),
            32
        );
    }

    #[test]
    fn an_embedded_ipv4_address_is_allowed_by_its_ipv4_network() {
        let open = UrlPolicy {
            allow_http: true,
            allow_networks: vec!["127.0.0.0/8".parse().unwrap()],
        };
        for ip in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "::127.0.0.1",
        ] {
            assert!(open.check_addr(ip.parse().unwrap()).is_ok(), "{ip} refused");
        }
        assert!(open.check_addr("::1".parse().unwrap()).is_err());
        let err = open
            .check_addr("64:ff9b::a9fe:a9fe".parse().unwrap())
            .unwrap_err();
        assert!(
            err.contains("cloud metadata") && err.contains("169.254.169.254"),
            "{err}"
        );
        assert!(open.check_url("http://[::ffff:10.0.0.1]/").is_err());
    }

    #[test]
    fn a_password_in_a_url_is_never_shown() {
        let url = Url::parse("https://hook:s3cret@example.com/in?x=1").unwrap();
        assert_eq!(shown_url(&url), "https://hook:***@example.com/in?x=1");
        assert_eq!(url.password(), Some("s3cret"));
        let plain = Url::parse("https://example.com/in").unwrap();
        assert_eq!(shown_url(&plain), "https://example.com/in");
        assert_eq!(shown_url_text("https://u:pw@[bad/x"), "https://***@[bad/x");
        assert!(is_masked_url(&shown_url(&url)));
        assert!(!is_masked_url(url.as_str()));
        assert!(!is_masked_url("https://***@example.com/in"));
        assert!(!is_masked_url("https://u:pw@[bad/x"));
        let err = UrlPolicy::default()
            .check_url("http://u:pw@example.com/")
            .unwrap_err();
        assert!(!err.contains("pw@"), "{err}");
    }
}
