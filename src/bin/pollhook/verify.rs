//! `verify`: checks a received webhook's signature, from a raw HTTP request as received or a
//! body and its headers, for receivers debugging their side.
//!
//! In: the scheme, the secret, the request. Out: `valid: …` and exit 0, or `INVALID: why` and
//! exit 1.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::out::say;
use crate::{parse_headers, usage};

#[derive(Args)]
pub struct VerifyArgs {
    /// jwt or standard-webhooks.
    #[arg(long)]
    signing: String,
    /// The endpoint's secret.
    #[arg(long, env = "POLLHOOK_VERIFY_SECRET", hide_env_values = true)]
    secret: String,
    /// A raw HTTP request as received (request line, headers, blank line, body).
    #[arg(long, conflicts_with = "body")]
    request: Option<PathBuf>,
    /// The body as received.
    #[arg(long)]
    body: Option<PathBuf>,
    /// A header `Name: value` as received (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Largest accepted age of a standard-webhooks timestamp.
    #[arg(long, default_value = "5m")]
    tolerance: String,
}

/// `pollhook verify`.
pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let scheme: pollhook::sign::Scheme = args
        .signing
        .parse()
        .map_err(|e| usage(format!("--signing: {e}")))?;
    let key = pollhook::sign::decode_secret(scheme, &args.secret)
        .map_err(|e| usage(format!("--secret: {e}")))?;
    let tolerance = pollhook::config::parse_duration(&args.tolerance)
        .map_err(|e| usage(format!("--tolerance: {e}")))?;
    let (headers, body) = match (&args.request, &args.body) {
        (Some(file), _) => {
            let raw =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            split_request(&raw).ok_or_else(|| {
                usage(format!(
                    "{} is not an HTTP request: no blank line after the headers",
                    file.display()
                ))
            })?
        }
        (None, Some(file)) => {
            let body =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            (parse_headers(&args.headers)?.into_iter().collect(), body)
        }
        (None, None) => {
            return Err(usage(
                "give --request FILE, or --body FILE with --header 'Name: value'".into(),
            ));
        }
    };
    let now = chrono::Utc::now().timestamp();
    match pollhook::sign::verify(
        scheme,
        &[key.as_slice()],
        &headers,
        &body,
        now,
        tolerance.as_secs() as i64,
    ) {
        Ok(v) => {
            say!(
                "valid: {} signature of event {} (type {})",
                scheme,
                v.id,
                v.event["type"].as_str().unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            say!("INVALID: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Header name/value pairs as received.
type Headers = Vec<(String, String)>;

/// Splits a raw HTTP request into headers and body.
fn split_request(raw: &[u8]) -> Option<(Headers, Vec<u8>)> {
    let (head_len, sep) = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))?;
    let head = String::from_utf8_lossy(&raw[..head_len]);
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some((headers, raw[head_len + sep..].to_vec()))
}
