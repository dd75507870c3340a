//! Retry: decides what happens to a delivery after an attempt.
//!
//! In: how many attempts have been made, the [`Outcome`] of the last one, the clock and an rng.
//! Out: [`Next`]: done, retry at a time, dead letter, or disable the endpoint.
//! Pure: time and randomness come in as arguments, so every decision can be replayed in a test.
//!
//! Invariant: a delivery gets at most `schedule.len() + 1` attempts, and a retry is never sooner
//! than its scheduled wait less the jitter, whatever a `Retry-After` header says.
//! Status handling follows the Standard Webhooks spec ("Delivery success and failure"): 2xx is
//! success, 410 Gone disables the endpoint, anything else (3xx included: redirects are not followed)
//! is a failure to retry.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use rand::Rng;

/// The result of one attempt (one POST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered 2xx.
    Delivered {
        /// The 2xx status.
        status: u16,
    },
    /// The endpoint answered with any other status.
    Status {
        /// The status.
        status: u16,
        /// The parsed `Retry-After` header, if the response had one.
        retry_after: Option<Duration>,
    },
    /// No response within the delivery timeout.
    Timeout,
    /// No response at all: DNS, connect, TLS, reset. The text is for the attempt log.
    Network(String),
}

impl Outcome {
    /// The outcome of an attempt that got a response, so that "2xx is success" lives in one place.
    pub fn from_response(status: u16, retry_after: Option<Duration>) -> Self {
        match classify(status) {
            Class::Delivered => Self::Delivered { status },
            Class::Retry | Class::DisableEndpoint => Self::Status {
                status,
                retry_after,
            },
        }
    }
}

/// What to do with a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Delivered; nothing more to do.
    Done,
    /// Attempt again at this time.
    RetryAt(DateTime<Utc>),
    /// The schedule is exhausted: dead letter.
    Failed,
    /// The endpoint answered 410 Gone: it wants no more webhooks.
    DisableEndpoint,
}

/// What a response status means for a delivery, before counting attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 2xx.
    Delivered,
    /// 410 Gone.
    DisableEndpoint,
    /// Everything else, 3xx included.
    Retry,
}

/// Classifies a response status (Standard Webhooks, "Delivery success and failure").
pub fn classify(status: u16) -> Class {
    match status {
        200..=299 => Class::Delivered,
        410 => Class::DisableEndpoint,
        _ => Class::Retry,
    }
}

/// When to retry: the waits between attempts, spread by jitter, stretched by `Retry-After`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Wait after attempt n is `schedule[n - 1]`; after the last, the delivery fails.
    pub schedule: Vec<Duration>,
    /// Each wait is scaled by a random factor in `1 ± jitter` (0.2 = ±20 %), so that a burst of
    /// failures is not retried in lockstep. Clamped to `0..=1`.
    pub jitter: f64,
    /// The most a `Retry-After` header may stretch one wait.
    pub max_retry_after: Duration,
}

impl Default for Policy {
    /// DESIGN §7: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; ±20 %; `Retry-After` honoured up to 1 h.
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 60 * MIN;
        Self {
            schedule: [
                5,
                5 * MIN,
                30 * MIN,
                2 * HOUR,
                5 * HOUR,
                10 * HOUR,
                10 * HOUR,
            ]
            .map(Duration::from_secs)
            .to_vec(),
            jitter: 0.2,
            max_retry_after: Duration::from_secs(HOUR),
        }
    }
}

impl Policy {
    /// Decides what follows an attempt. `attempts_made` counts this one, so it starts at 1.
    pub fn next(
        &self,
        attempts_made: u32,
        outcome: &Outcome,
        now: DateTime<Utc>,
        rng: &mut impl Rng,
    ) -> Next {
        let (status, retry_after) = match *outcome {
            Outcome::Delivered { .. } => return Next::Done,
            Outcome::Status {
                status,
                retry_after,
            } => (Some(status), retry_after),
            Outcome::Timeout | Outcome::Network(_) => (None, None),
        };
        match status.map(classify) {
            Some(Class::Delivered) => return Next::Done,
            Some(Class::DisableEndpoint) => return Next::DisableEndpoint,
            Some(Class::Retry) | None => {}
        }

        let index = usize::try_from(attempts_made.saturating_sub(1)).unwrap_or(usize::MAX);
        let Some(&scheduled) = self.schedule.get(index) else {
            return Next::Failed;
        };
        let mut wait = self.jittered(scheduled, rng);
        // RFC 9110 §10.2.3 sends Retry-After with 429 and 503; it may lengthen a wait, never
        // shorten it, and is capped so one response cannot park a delivery for days.
        if let (Some(429 | 503), Some(asked)) = (status, retry_after) {
            wait = wait.max(asked.min(self.max_retry_after));
        }
        Next::RetryAt(after(now, wait))
    }

    fn jittered(&self, wait: Duration, rng: &mut impl Rng) -> Duration {
        let jitter = self.jitter.clamp(0.0, 1.0);
        // False for NaN too, which `clamp` passes through: no jitter then.
        if jitter > 0.0 {
            let factor = 1.0 + rng.random_range(-jitter..=jitter);
            Duration::try_from_secs_f64(wait.as_secs_f64() * factor).unwrap_or(wait)
        } else {
            wait
        }
    }
}

/// `now + wait`, saturating at the largest representable time.
fn after(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(wait)
        .ok()
        .and_then(|delta| now.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Parses a `Retry-After` value (RFC 9110 §10.2.3): delta-seconds, or an HTTP-date in any of the
/// three formats a recipient must accept (§5.6.7). A date in the past, or a negative number, is
/// zero; anything else unparseable is `None`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<i64>() {
        return Some(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)));
    }
    let date = DateTime::parse_from_rfc2822(value)
        .map(|date| date.to_utc())
        .or_else(|_| {
            // The obsolete RFC 850 and asctime forms; both are always GMT.
            NaiveDateTime::parse_from_str(value, "%A, %d-%b-%y %H:%M:%S GMT")
                .or_else(|_| NaiveDateTime::parse_from_str(value, "%a %b %e %H:%M:%S %Y"))
                .map(|naive| naive.and_utc())
        })
        .ok()?;
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T23:40:00Z")
            .unwrap()
            .to_utc()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn policy() -> Policy {
        Policy {
            schedule: vec![secs(5), secs(300), secs(1800)],
            jitter: 0.2,
            max_retry_after: secs(3600),
        }
    }

    /// The wait `next` chose, or `None` if it did not schedule a retry.
    fn wait(
        policy: &Policy,
        attempts: u32,
        outcome: &Outcome,
        rng: &mut StdRng,
    ) -> Option<Duration> {
        match policy.next(attempts, outcome, now(), rng) {
            Next::RetryAt(at) => Some((at - now()).to_std().unwrap()),
            _ => None,
        }
    }

    fn status(status: u16, retry_after: Option<Duration>) -> Outcome {
        Outcome::Status {
            status,
            retry_after,
        }
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_varies() {
        let policy = policy();
        let mut rng = StdRng::seed_from_u64(7);
        let waits: Vec<Duration> = (0..1000)
            .map(|_| wait(&policy, 2, &Outcome::Timeout, &mut rng).unwrap())
            .collect();

        assert!(waits.iter().all(|w| (secs(240)..=secs(360)).contains(w)));
        let (min, max) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
        assert!(*min < secs(250) && *max > secs(350), "{min:?}..{max:?}");
    }

    #[test]
    fn no_jitter_gives_the_schedule_exactly() {
        let policy = Policy {
            jitter: 0.0,
            ..policy()
        };
        let mut rng = StdRng::seed_from_u64(1);
        let waits: Vec<_> = (1..=3)
            .map(|n| wait(&policy, n, &Outcome::Network("reset".into()), &mut rng))
            .collect();
        assert_eq!(waits, [Some(secs(5)), Some(secs(300)), Some(secs(1800))]);
    }

    #[test]
    fn the_schedule_allows_exactly_len_plus_one_attempts() {
        let policy = policy();
        let mut rng = StdRng::seed_from_u64(2);
        let nexts: Vec<Next> = (1..=4)
            .map(|n| policy.next(n, &status(500, None), now(), &mut rng))
            .collect();

        assert!(nexts[..3].iter().all(|n| matches!(n, Next::RetryAt(_))));
        assert_eq!(nexts[3], Next::Failed);
    }

    #[test]
    fn success_is_done_and_410_disables_the_endpoint() {
        let policy = policy();
        let mut rng = StdRng::seed_from_u64(3);
        for attempts in [1, 4] {
            let delivered = Outcome::from_response(204, None);
            assert_eq!(delivered, Outcome::Delivered { status: 204 });
            assert_eq!(
                policy.next(attempts, &delivered, now(), &mut rng),
                Next::Done
            );
            assert_eq!(
                policy.next(attempts, &status(410, None), now(), &mut rng),
                Next::DisableEndpoint
            );
        }
    }

    #[test]
    fn redirects_and_other_failures_are_retried() {
        let policy = policy();
        let mut rng = StdRng::seed_from_u64(4);
        for code in [301, 302, 304, 308, 400, 404, 500, 502] {
            assert_eq!(classify(code), Class::Retry, "{code}");
            assert!(
                wait(&policy, 1, &status(code, None), &mut rng).is_some(),
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_lengthens_a_wait_up_to_the_cap_but_never_shortens_it() {
        let policy = policy();
        let mut rng = StdRng::seed_from_u64(5);
        let mut asked = |code, after| wait(&policy, 1, &status(code, Some(secs(after))), &mut rng);

        assert_eq!(asked(429, 120), Some(secs(120)));
        assert_eq!(asked(503, 120), Some(secs(120)));
        assert_eq!(asked(429, 86_400), Some(secs(3600)));
        assert!(asked(429, 1).unwrap() <= secs(6));
        // Only 429 and 503 carry a Retry-After worth honouring.
        assert!(asked(500, 120).unwrap() <= secs(6));
    }

    #[test]
    fn retry_after_parses_delta_seconds() {
        assert_eq!(parse_retry_after("120", now()), Some(secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now()), Some(secs(0)));
        assert_eq!(parse_retry_after("-5", now()), Some(secs(0)));
        assert_eq!(parse_retry_after("soon", now()), None);
        assert_eq!(parse_retry_after("", now()), None);
    }

    #[test]
    fn retry_after_parses_http_dates() {
        // now() is Sun, 22 Nov 2026 23:40:00 GMT.
        for date in [
            "Sun, 22 Nov 2026 23:41:30 GMT",
            "Sunday, 22-Nov-26 23:41:30 GMT",
            "Sun Nov 22 23:41:30 2026",
        ] {
            assert_eq!(parse_retry_after(date, now()), Some(secs(90)), "{date}");
        }
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 23:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }
}
