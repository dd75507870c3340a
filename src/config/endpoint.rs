//! The one check of an endpoint's settings, used by the config file, the CLI, the API and the
//! dashboard alike: URL and address policy, signing scheme and secret, filters, headers.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::endpoint::{ActionFilter, EndpointSpec, reserved_endpoint_header};
use crate::sign::{self, Scheme};

use super::problem::Problems;
use super::values::*;
use super::*;

/// An endpoint's settings as a user writes them: in `[[endpoints]]`, on the command line or in an
/// admin API request. [`validate_endpoint`] turns it into an [`EndpointSpec`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    /// Unique name.
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// Signing secret.
    pub secret: String,
    /// `jwt` (default) or `standard-webhooks`.
    #[serde(default = "default_signing")]
    pub signing: String,
    /// `source.resource` patterns; default all.
    pub resources: Option<Vec<String>>,
    /// Actions; default all.
    pub actions: Option<Vec<String>>,
    /// Default true.
    #[serde(default = "yes")]
    pub active: bool,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request timeout, e.g. `10s`.
    pub timeout: Option<String>,
    /// `json` (default) or `xml`.
    pub format: Option<String>,
}

/// Validates endpoint settings given outside the config file exactly as the file's are.
pub fn validate_endpoint(
    input: EndpointInput,
    config: &Config,
) -> Result<EndpointSpec, Vec<Problem>> {
    let mut p = Problems::default();
    let at = format!("endpoints[{}]", input.name);
    let spec = check_endpoint(input, &config.sources, &config.delivery, &at, &mut p);
    match spec {
        Some(spec) if p.0.is_empty() => Ok(spec),
        _ => Err(p.0),
    }
}

fn default_signing() -> String {
    "jwt".into()
}

fn yes() -> bool {
    true
}

pub(super) fn check_endpoint(
    raw: EndpointInput,
    sources: &[SourceConfig],
    delivery: &DeliveryConfig,
    at: &str,
    p: &mut Problems,
) -> Option<EndpointSpec> {
    let scheme: Scheme = match raw.signing.parse() {
        Ok(s) => s,
        Err(_) => {
            p.push(
                format!("{at}.signing"),
                format!("`{}` is not a signing scheme", raw.signing),
                Some(r#"signing = "jwt" or "standard-webhooks""#),
            );
            return None;
        }
    };
    if let Err(e) = sign::decode_secret(scheme, &raw.secret) {
        // Named in full: the command's default scheme may not be this endpoint's.
        let hint = format!(
            "generate one with `pollhook endpoints secret --signing {}`",
            scheme.as_str()
        );
        p.push(format!("{at}.secret"), e.to_string(), Some(&hint));
    }
    let format = match raw.format.as_deref().map(str::parse::<Format>) {
        None => Format::Json,
        Some(Ok(format)) => format,
        Some(Err(message)) => {
            p.push(
                format!("{at}.format"),
                message,
                Some(r#"format = "json" (default) or "xml""#),
            );
            Format::Json
        }
    };
    if format == Format::Xml && scheme == Scheme::Jwt {
        p.push(
            format!("{at}.format"),
            "an XML body cannot be signed with jwt: a JWT carries the event as JSON claims",
            Some(r#"use signing = "standard-webhooks", which signs the raw XML bytes"#),
        );
    }
    let resources = raw.resources.unwrap_or_else(|| vec!["*".into()]);
    for (i, pattern) in resources.iter().enumerate() {
        let known = sources.iter().any(|s| {
            s.resources
                .iter()
                .any(|r| crate::endpoint::glob_match(pattern, &r.key(&s.name)))
        });
        if !known && !pattern.starts_with("pollhook.") && !sources.is_empty() {
            p.push(
                format!("{at}.resources[{i}]"),
                format!("`{pattern}` matches no configured resource"),
                Some("write source.resource, e.g. shop.orders or shop.*"),
            );
        }
    }
    let actions = match ActionFilter::parse(raw.actions.as_deref()) {
        Ok(a) => a,
        Err(m) => {
            p.push(format!("{at}.actions"), m, None);
            return None;
        }
    };
    let timeout = raw.timeout.as_deref().map(|t| {
        let at = format!("{at}.timeout");
        duration_in(Some(t), secs(5), limits::DELIVERY_TIMEOUT, at, p)
    });
    let headers = raw
        .headers
        .into_iter()
        .filter(|(name, value)| {
            if reserved_endpoint_header(name) {
                p.push(
                    format!("{at}.headers.{name}"),
                    format!("`{name}` is set by pollhook on every delivery"),
                    Some("remove it: pollhook frames, signs and labels each request itself"),
                );
                return false;
            }
            check_header(name, value, &format!("{at}.headers"), p)
        })
        .collect();
    let spec = EndpointSpec {
        name: raw.name,
        url: raw.url,
        secret: Secret::new(raw.secret),
        signing: scheme,
        resources,
        actions,
        active: raw.active,
        headers,
        timeout,
        format,
    };
    let policy = crate::endpoint::UrlPolicy {
        allow_http: delivery.allow_http,
        allow_networks: delivery.allow_networks.clone(),
    };
    for problem in policy.url_problems(&spec.url).err().unwrap_or_default() {
        p.push(format!("{at}.url"), problem, None);
    }
    Some(spec)
}
