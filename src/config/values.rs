//! Value parsers and ranges shared by every part of the config (and by the CLI and API):
//! durations, numbers within their documented `limits`, networks, cron schedules, names,
//! JSONPath expressions, headers.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use ipnet::IpNet;
use serde_json_path::JsonPath;

use super::problem::Problems;

// ───────────────────────────── validation ─────────────────────────────

/// Default waits between delivery attempts (DESIGN.md §7).
pub const DEFAULT_RETRIES: [&str; 7] = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"];

/// Parses a human duration (`500ms`, `30s`, `5m`, `2h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. `30s`, `5m` or `2h`"))
}

/// A number checked against its documented range (README, "Limits"): a value outside it is a
/// problem and the default stands in, so validation goes on to report the rest.
pub(super) fn number<T>(
    value: Option<T>,
    default: T,
    range: RangeInclusive<T>,
    at: impl Into<String>,
    p: &mut Problems,
) -> T
where
    T: PartialOrd + Copy + fmt::Display,
{
    let Some(value) = value else {
        return default;
    };
    if range.contains(&value) {
        return value;
    }
    let (start, end) = (range.start(), range.end());
    let message = if value > *end {
        format!("{value} is too large: must be at most {end}")
    } else {
        format!("must be at least {start}")
    };
    p.push(
        at,
        message,
        Some(&format!("write a number from {start} to {end}")),
    );
    default
}

/// A duration parsed and checked against its documented range, as [`number`] does.
pub(super) fn duration_in(
    value: Option<&str>,
    default: Duration,
    range: RangeInclusive<Duration>,
    at: impl Into<String>,
    p: &mut Problems,
) -> Duration {
    value
        .and_then(|text| checked_duration(text, range, at, p))
        .unwrap_or(default)
}

/// `text` as a duration within `range`; `None` once the problem is recorded.
pub(super) fn checked_duration(
    text: &str,
    range: RangeInclusive<Duration>,
    at: impl Into<String>,
    p: &mut Problems,
) -> Option<Duration> {
    let at = at.into();
    let parsed = parse_duration(text)
        .map_err(|m| p.push(&at, m, None))
        .ok()?;
    let (start, end) = (Span(*range.start()), Span(*range.end()));
    let hint = format!("write a duration from {start} to {end}");
    if parsed > end.0 {
        let message = format!("`{text}` is too long: must be at most {end}");
        p.push(at, message, Some(&hint));
        None
    } else if parsed < start.0 {
        p.push(at, format!("must be at least {start}"), Some(&hint));
        None
    } else {
        Some(parsed)
    }
}

/// A duration as a bound is written: in its largest whole unit (`100ms`, `10m`, `365d`).
pub(super) struct Span(Duration);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
        ];
        match units
            .iter()
            .find(|(unit, _)| ms > 0 && ms.is_multiple_of(*unit))
        {
            Some((unit, name)) => write!(f, "{}{name}", ms / unit),
            None => write!(f, "{ms}ms"),
        }
    }
}

pub(super) const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) const MINUTE: u64 = 60;
pub(super) const HOUR: u64 = 3600;
pub(super) const DAY: u64 = 24 * HOUR;

/// The documented ranges (README, "Limits"). Each keeps arithmetic downstream (semaphores,
/// `Instant` and `chrono` sums, `1 / rate`) far from overflow, and each is wide enough for any
/// real API or endpoint.
pub(super) mod limits {
    use super::{DAY, Duration, HOUR, MINUTE, secs};
    use std::ops::RangeInclusive;

    pub const POLL_CONCURRENCY: RangeInclusive<usize> = 1..=1024;
    pub const ALERT_AFTER_FAILURES: RangeInclusive<u32> = 0..=10_000;
    pub const DELIVERY_CONCURRENCY: RangeInclusive<usize> = 1..=4096;
    pub const ENDPOINT_CONCURRENCY: RangeInclusive<usize> = 1..=1024;
    pub const DELIVERY_TIMEOUT: RangeInclusive<Duration> =
        Duration::from_millis(100)..=secs(10 * MINUTE);
    pub const RETRY_WAIT: RangeInclusive<Duration> = secs(0)..=secs(30 * DAY);
    pub const RETRIES_LEN: usize = 100;
    pub const DISABLE_AFTER: RangeInclusive<Duration> = secs(MINUTE)..=secs(365 * DAY);
    pub const SOURCE_TIMEOUT: RangeInclusive<Duration> =
        Duration::from_millis(100)..=secs(10 * MINUTE);
    pub const EXEC_TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(100)..=secs(HOUR);
    pub const SOURCE_RETRIES: RangeInclusive<u32> = 0..=20;
    pub const MAX_RETRY_AFTER: RangeInclusive<Duration> = secs(0)..=secs(HOUR);
    pub const RATE_LIMIT: RangeInclusive<f64> = 0.001..=10_000.0;
    pub const MAX_PAGES: RangeInclusive<u32> = 1..=1_000_000;
    pub const PAGE_CONCURRENCY: RangeInclusive<u32> = 1..=32;
    pub const EVERY: RangeInclusive<Duration> = Duration::from_millis(100)..=secs(365 * DAY);
    pub const JITTER: RangeInclusive<Duration> = secs(0)..=secs(DAY);
    pub const PAGE_SIZE: RangeInclusive<u32> = 1..=100_000;
    pub const FIRST_PAGE: RangeInclusive<u64> = 0..=1_000_000;
    pub const DELETED_AFTER: RangeInclusive<u32> = 1..=1000;
    pub const RETAIN: RangeInclusive<Duration> = secs(HOUR)..=secs(100 * 365 * DAY);
    pub const OVERLAP: RangeInclusive<Duration> = secs(0)..=secs(7 * DAY);
    pub const FULL_SYNC: RangeInclusive<Duration> = secs(1)..=secs(365 * DAY);
    pub const MAX_CONNECTIONS: RangeInclusive<usize> = 1..=65_536;
    pub const HEADER_TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(100)..=secs(HOUR);
    pub const MAX_PAGE_BYTES: RangeInclusive<u64> = 1024..=(4 << 30);
    pub const POOL_SIZE: RangeInclusive<usize> = 1..=1000;
}

/// Parses a CIDR, or a bare address as a one-address network.
pub fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// Parses a crontab line: 5 fields, or 6 with seconds first; weekdays 0–7 with 0 and 7 Sunday,
/// as crontab(5) reads them.
pub fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    let fields = text.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "`{text}` has {fields} fields; a crontab line has 5 (or 6 with seconds first)"
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("`{text}` is not a crontab schedule: {e}"))
}

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) fn json_path(text: &str, at: &str, p: &mut Problems) -> Option<JsonPath> {
    match JsonPath::parse(text) {
        Ok(path) => Some(path),
        Err(e) => {
            p.push(
                at,
                format!("`{text}` is not a JSONPath: {e}"),
                Some("JSONPath (RFC 9535) starts with `$`, e.g. `$.data` or `$.meta.next`"),
            );
            None
        }
    }
}

/// Whether `name: value` is a header HTTP can send; if not, says so at `at.name`. The value is
/// never quoted: it may be a secret.
pub(super) fn check_header(name: &str, value: &str, at: &str, p: &mut Problems) -> bool {
    use reqwest::header::{HeaderName, HeaderValue};
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        p.push(
            format!("{at}.{}", name.escape_debug()),
            format!("`{}` is not a header name", name.escape_debug()),
            Some("a header name is letters, digits and `-`, e.g. X-Api-Version"),
        );
        false
    } else if HeaderValue::from_str(value).is_err() {
        p.push(
            format!("{at}.{name}"),
            "the value holds a control character (CR, LF, NUL…) or a non-ASCII one",
            Some("write the value on one line, in visible ASCII"),
        );
        false
    } else {
        true
    }
}
