//! Incremental polling's bookkeeping: which `since` value a poll asks for, and the newest
//! modification time its listing showed.
//!
//! In: the resource's `incremental` settings, what the store knows of it, the items' times. Out:
//! the `since` query value (or `None`: a full listing is due) and the cursor to keep.
//!
//! Invariant: the cursor never moves backwards, and a full listing is asked for at least every
//! `full_sync`, because only a full listing can show what was deleted.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::{FieldPath, Incremental, SinceFormat};
use crate::normalize::lookup;
use crate::store::ResourceState;

/// The `since` value of an incremental poll, or `None` when this poll must be a full listing: no
/// cursor yet, or the last full sync is `full_sync` old.
pub fn incremental_since(
    inc: &Incremental,
    state: &ResourceState,
    now: DateTime<Utc>,
) -> Option<String> {
    let cursor = state.since_cursor.as_deref()?;
    let last_full = DateTime::from_timestamp_millis(state.full_sync_at?)?;
    let full_sync = chrono::Duration::from_std(inc.full_sync).ok()?;
    if now - last_full >= full_sync {
        return None;
    }
    let cursor = DateTime::parse_from_rfc3339(cursor)
        .ok()?
        .with_timezone(&Utc);
    let since = cursor - chrono::Duration::from_std(inc.overlap).unwrap_or_default();
    Some(match inc.format {
        SinceFormat::Rfc3339 => since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        SinceFormat::Unix => since.timestamp().to_string(),
        SinceFormat::UnixMs => since.timestamp_millis().to_string(),
    })
}

/// The newest modification time among the items of a listing.
pub struct Newest {
    field: Option<(FieldPath, SinceFormat)>,
    max: Option<DateTime<Utc>>,
}

impl Newest {
    /// Watches the `incremental.field` of each item, if the resource polls incrementally.
    pub fn new(inc: Option<&Incremental>) -> Self {
        Self {
            field: inc.map(|i| (i.field.clone(), i.format)),
            max: None,
        }
    }

    /// Whether items' times are watched at all (the resource polls incrementally): when not,
    /// [`Newest::see`] does nothing, and an item need not be read for it.
    pub fn watches(&self) -> bool {
        self.field.is_some()
    }

    /// Takes one item's time into account.
    pub fn see(&mut self, item: &Value) {
        let Some((field, format)) = &self.field else {
            return;
        };
        let at = match (lookup(item, field.segments()), format) {
            (Some(Value::String(s)), _) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
                .or_else(|| s.parse::<i64>().ok().and_then(|n| from_number(n, *format))),
            (Some(Value::Number(n)), _) => n.as_i64().and_then(|n| from_number(n, *format)),
            _ => None,
        };
        if let Some(at) = at {
            self.max = Some(self.max.map_or(at, |m| m.max(at)));
        }
    }

    /// The cursor to keep: the newest time seen, never moving backwards.
    pub fn cursor(&self, previous: Option<&str>) -> Option<String> {
        let previous = previous
            .and_then(|p| DateTime::parse_from_rfc3339(p).ok())
            .map(|t| t.with_timezone(&Utc));
        let newest = match (self.max, previous) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b)?,
        };
        Some(newest.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }
}

fn from_number(n: i64, format: SinceFormat) -> Option<DateTime<Utc>> {
    match format {
        SinceFormat::UnixMs => DateTime::from_timestamp_millis(n),
        _ => DateTime::from_timestamp(n, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn inc(format: SinceFormat) -> Incremental {
        Incremental {
            since_param: "updated_since".into(),
            field: "updated_at".parse().unwrap(),
            overlap: Duration::from_secs(60),
            full_sync: Duration::from_secs(3600),
            format,
        }
    }

    #[test]
    fn incremental_needs_a_cursor_and_a_recent_full_sync() {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let mut state = ResourceState::default();
        assert_eq!(
            incremental_since(&inc(SinceFormat::Rfc3339), &state, now),
            None
        );
        state.since_cursor = Some("2026-11-27T11:50:00.000Z".into());
        state.full_sync_at = Some((now - chrono::Duration::minutes(30)).timestamp_millis());
        assert_eq!(
            incremental_since(&inc(SinceFormat::Rfc3339), &state, now).as_deref(),
            Some("2026-11-27T11:49:00Z")
        );
        assert_eq!(
            incremental_since(&inc(SinceFormat::Unix), &state, now).as_deref(),
            Some("1795780140")
        );
        state.full_sync_at = Some((now - chrono::Duration::minutes(60)).timestamp_millis());
        assert_eq!(
            incremental_since(&inc(SinceFormat::Rfc3339), &state, now),
            None
        );
    }

    #[test]
    fn the_cursor_is_the_newest_time_and_never_goes_back() {
        let i = inc(SinceFormat::Rfc3339);
        let mut n = Newest::new(Some(&i));
        n.see(&serde_json::json!({"updated_at": "2026-11-27T10:00:00Z"}));
        n.see(&serde_json::json!({"updated_at": "2026-11-27T11:00:00+01:00"}));
        n.see(&serde_json::json!({"updated_at": "garbage"}));
        assert_eq!(n.cursor(None).as_deref(), Some("2026-11-27T10:00:00.000Z"));
        assert_eq!(
            n.cursor(Some("2026-11-28T00:00:00.000Z")).as_deref(),
            Some("2026-11-28T00:00:00.000Z")
        );
        let unix = inc(SinceFormat::Unix);
        let mut n = Newest::new(Some(&unix));
        n.see(&serde_json::json!({"updated_at": 1795780140}));
        assert_eq!(n.cursor(None).as_deref(), Some("2026-11-27T11:49:00.000Z"));
    }
}
