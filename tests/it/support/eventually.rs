//! `eventually`: wait for a condition instead of sleeping a fixed time.
//!
//! In: what is awaited (for the failure message), a bound, and a check. Out: the check's value,
//! or a panic naming what never happened. Bounded in time, never in speed: a slow machine waits
//! longer, a fast one no longer than it must.

use std::fmt::Display;
use std::time::Duration;

/// How long to wait by default: generous, so a loaded machine does not fail a test.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Runs `check` every 20 ms until it returns `Some`, for at most `timeout`; panics naming `what`.
pub async fn eventually<T>(
    what: impl Display,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
