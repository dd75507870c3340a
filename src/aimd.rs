//! AIMD: how many requests one endpoint gets at once, learned from how it answers.
//!
//! In: each attempt's outcome and latency. Out: the endpoint's current concurrency limit, between
//! 1 and `endpoint_concurrency`.
//!
//! Invariant: a lane starts low ([`START`]) and grows by one after a full window of fast answers
//! (additive increase: one window is as many answers as the current limit), and halves at the
//! first sign of overload, a timeout, a connection failure, a 429 or a 5xx, or an answer slower
//! than its share of the timeout (multiplicative decrease, at most once per window, so one burst
//! of failures from requests already in flight counts once). A receiver with a small listen
//! backlog therefore sees about as many requests as it can take, never the full
//! `endpoint_concurrency` at once, and is not pushed into timeouts that would make pollhook send
//! the same event twice. Pure: no I/O, no clock.

use std::time::Duration;

/// Where every endpoint's limit starts.
pub const START: usize = 2;

/// An answer slower than this share of the timeout counts as overload.
const SLOW_SHARE: u32 = 4;

/// How one attempt went, as far as load is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Answered fast enough, whatever the status.
    Fast,
    /// Timed out, failed to connect, answered 429 or 5xx, or answered slowly.
    Overload,
    /// Says nothing about load (an attempt that panicked).
    Neutral,
}

impl Signal {
    /// The signal of an attempt: `status` if a response came, its `latency`, and the timeout.
    pub fn of(status: Option<u16>, latency: Duration, timeout: Duration) -> Signal {
        match status {
            None => Signal::Overload,
            Some(429 | 500..=599) => Signal::Overload,
            Some(_) if latency > timeout / SLOW_SHARE => Signal::Overload,
            Some(_) => Signal::Fast,
        }
    }
}

/// One endpoint's concurrency limit.
#[derive(Debug, Clone)]
pub struct Limit {
    current: usize,
    max: usize,
    /// Fast answers since the last change.
    fast: usize,
    /// Answers to wait for before another decrease counts (those in flight when it happened).
    hold: usize,
}

impl Limit {
    /// A limit starting at [`START`] (or `max` if that is lower).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            current: START.min(max),
            max,
            fast: 0,
            hold: 0,
        }
    }

    /// Requests allowed in flight now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// Takes one attempt's signal into account.
    pub fn record(&mut self, signal: Signal) {
        self.hold = self.hold.saturating_sub(1);
        match signal {
            Signal::Neutral => {}
            Signal::Fast => {
                self.fast += 1;
                if self.fast >= self.current && self.current < self.max {
                    self.current += 1;
                    self.fast = 0;
                }
            }
            Signal::Overload if self.hold > 0 => {}
            Signal::Overload => {
                // Requests sent under the old limit answer after this; they must not halve again.
                self.hold = self.current;
                self.current = (self.current / 2).max(1);
                self.fast = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_low_grows_by_one_per_window_and_stops_at_the_maximum() {
        let mut limit = Limit::new(16);
        assert_eq!(limit.current(), 2);
        limit.record(Signal::Fast);
        assert_eq!(limit.current(), 2, "one fast answer is not a window of two");
        limit.record(Signal::Fast);
        assert_eq!(limit.current(), 3);
        for _ in 0..1000 {
            limit.record(Signal::Fast);
        }
        assert_eq!(limit.current(), 16);
        assert_eq!(Limit::new(1).current(), 1);
    }

    #[test]
    fn halves_once_per_burst_of_overload_and_never_below_one() {
        let mut limit = Limit::new(16);
        for _ in 0..1000 {
            limit.record(Signal::Fast);
        }
        limit.record(Signal::Overload);
        assert_eq!(limit.current(), 8);
        for _ in 0..15 {
            limit.record(Signal::Overload);
        }
        assert_eq!(
            limit.current(),
            8,
            "the 15 others were in flight under the old limit"
        );
        limit.record(Signal::Overload);
        assert_eq!(limit.current(), 4);
        for _ in 0..100 {
            limit.record(Signal::Overload);
        }
        assert_eq!(limit.current(), 1);
        limit.record(Signal::Neutral);
        assert_eq!(limit.current(), 1);
    }

    #[test]
    fn signals_come_from_status_and_latency() {
        let timeout = Duration::from_secs(4);
        let fast = Duration::from_millis(20);
        assert_eq!(Signal::of(Some(200), fast, timeout), Signal::Fast);
        assert_eq!(Signal::of(Some(400), fast, timeout), Signal::Fast);
        assert_eq!(Signal::of(Some(503), fast, timeout), Signal::Overload);
        assert_eq!(Signal::of(Some(429), fast, timeout), Signal::Overload);
        assert_eq!(Signal::of(None, fast, timeout), Signal::Overload);
        assert_eq!(
            Signal::of(Some(200), Duration::from_millis(1500), timeout),
            Signal::Overload,
            "slower than a quarter of the timeout"
        );
    }
}
