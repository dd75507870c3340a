//! Event: a [`Change`](crate::diff::Change) with its context → the webhook payload of DESIGN.md §5.
//!
//! In: the change, the item's previous body (for updates and deletes), the source and resource
//! names and the detection time. Out: an [`Event`] whose JSON is what receivers get.
//!
//! Invariant: the event id is minted once, when the change is detected, and stored with the event,
//! so every retry and replay carries the same id: the receiver's idempotency key. Every key of
//! the shape is always present (`null` where it does not apply), so receivers can rely on it.
//!
//! One form for every event, live or backfilled, whatever the signing scheme:
//! - `type` is `<source>.<resource>.<action>`, the same string the CLI, the API and the
//!   `Pollhook-Event-Type` header show (two sources with an `orders` resource never collide, and
//!   operational events, `pollhook.resource.failing`, have the same three parts).
//! - `data` and `previous` are the item's JSON as the API sent it, its keys in the API's order
//!   (the bytes are kept, never re-serialized through a sorted map). `previous` is the `data` of
//!   the last event about the item, so its ignored fields are as they were then.
//! - `changes` lists only what counts: the RFC 6902 patch between the two with the resource's
//!   `ignore` fields left out of both.
//! - `backfill` is `true` for an event made by bootstrapping an endpoint, `false` otherwise.
//!
//! Pure: no I/O.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::diff::Change;
use crate::normalize::{FieldPath, without_ignored};

/// What happened to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It appeared.
    Created,
    /// Its content changed.
    Updated,
    /// It disappeared from a complete listing.
    Deleted,
}

impl Action {
    /// The lowercase name used in event types and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Deleted => "deleted",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "created" => Ok(Action::Created),
            "updated" => Ok(Action::Updated),
            "deleted" => Ok(Action::Deleted),
            other => Err(format!(
                "`{other}` is not an action; use created, updated or deleted"
            )),
        }
    }
}

/// The source name of operational events.
pub const OPERATIONAL_SOURCE: &str = "pollhook";

/// Actions of operational events: a resource failing or recovering, deletes held back, an
/// endpoint disabled.
pub const OPERATIONAL_ACTIONS: [&str; 4] = ["failing", "recovered", "deletes_held", "disabled"];

/// The webhook payload (DESIGN.md §5). Field order here is the order on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `evt_` + a UUIDv7: unique, time-ordered, stable across retries.
    pub id: String,
    /// `<source>.<resource>.<action>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The source's name.
    pub source: String,
    /// The resource's name.
    pub resource: String,
    /// What happened.
    pub action: String,
    /// The item's id.
    pub resource_id: String,
    /// When pollhook saw the change (RFC 3339, UTC, milliseconds).
    pub detected_at: String,
    /// The item now; `null` for `deleted`.
    pub data: Payload,
    /// The item before; `null` for `created`.
    pub previous: Payload,
    /// RFC 6902 JSON Patch from `previous` to `data` over the fields that count (the resource's
    /// `ignore` fields left out); `null` unless `updated`.
    pub changes: Payload,
    /// Made by bootstrapping an endpoint with the current state, not by a detected change.
    /// Events stored before the field existed read as `false`.
    #[serde(default)]
    pub backfill: bool,
}

/// One JSON part of an event (`data`, `previous`, `changes`), kept as text: the item's bytes as
/// the API sent them (made compact when they span lines). A parsed `Value` takes about ten times
/// the text's size, and a poll of a large resource can hold tens of thousands of events.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// `null`.
    pub fn null() -> Self {
        Self::from_value(&Value::Null)
    }

    /// A value's compact JSON.
    pub fn from_value(value: &Value) -> Self {
        // Serializing a `Value` cannot fail.
        Self(
            serde_json::value::to_raw_value(value)
                .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default()),
        )
    }

    /// JSON text, checked; text that spans lines (a pretty-printing API) is made compact.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        if text.contains('\n') {
            let value: Value = serde_json::from_str(text)?;
            return Ok(Self::from_value(&value));
        }
        RawValue::from_string(text.to_owned()).map(Self)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parsed.
    pub fn value(&self) -> Value {
        // The text was checked when the payload was made.
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }

    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        self.0.get() == "null"
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Self::from_value(&value)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

/// Equal when the JSON values are, whatever the key order or spacing.
impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get() || self.value() == other.value()
    }
}

impl PartialEq<Value> for Payload {
    fn eq(&self, other: &Value) -> bool {
        self.value() == *other
    }
}

/// Mints a new event id.
pub fn new_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

/// Formats a detection time as events carry it.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Event {
    /// Builds the event for `change`; `previous` is the snapshot's body for updates and deletes,
    /// `ignore` the resource's ignored fields (left out of `changes`).
    pub fn from_change(
        source: &str,
        resource: &str,
        change: &Change,
        previous: Option<Value>,
        ignore: &[FieldPath],
        detected_at: DateTime<Utc>,
    ) -> Event {
        let (action, data) = match change {
            Change::Created(r) => (Action::Created, Payload::from_value(&r.body)),
            Change::Updated(r) => (Action::Updated, Payload::from_value(&r.body)),
            Change::Deleted { .. } => (Action::Deleted, Payload::null()),
        };
        Event::new(
            source,
            resource,
            action,
            change.id(),
            data,
            previous.map(Payload::from),
            ignore,
            detected_at,
        )
    }

    /// Builds the event for item `id`: `data` is its body now (`null` when deleted), `previous`
    /// the snapshot's body (for updates and deletes), `ignore` the resource's ignored fields.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        source: &str,
        resource: &str,
        action: Action,
        id: &str,
        data: Payload,
        previous: Option<Payload>,
        ignore: &[FieldPath],
        detected_at: DateTime<Utc>,
    ) -> Event {
        let previous = match action {
            Action::Created => Payload::null(),
            _ => previous.unwrap_or_else(Payload::null),
        };
        let changes = match action {
            Action::Updated => changes(&previous.value(), &data.value(), ignore),
            _ => Payload::null(),
        };
        Event {
            id: new_id(),
            kind: format!("{source}.{resource}.{action}"),
            source: source.to_owned(),
            resource: resource.to_owned(),
            action: action.as_str().to_owned(),
            resource_id: id.to_owned(),
            detected_at: timestamp(detected_at),
            data,
            previous,
            changes,
            backfill: false,
        }
    }

    /// The same event, marked as made by a backfill.
    pub fn backfilled(self) -> Event {
        Event {
            backfill: true,
            ..self
        }
    }

    /// An operational event about pollhook itself (`pollhook.resource.failing`, …). Its source is
    /// `pollhook`, its resource `resource` or `endpoint`, so endpoints subscribe with a
    /// `pollhook.*` pattern like to any other resource.
    pub fn operational(
        subject: &str,
        action: &str,
        id: &str,
        data: Value,
        at: DateTime<Utc>,
    ) -> Event {
        Event {
            id: new_id(),
            kind: format!("{OPERATIONAL_SOURCE}.{subject}.{action}"),
            source: OPERATIONAL_SOURCE.to_owned(),
            resource: subject.to_owned(),
            action: action.to_owned(),
            resource_id: id.to_owned(),
            detected_at: timestamp(at),
            data: Payload::from_value(&data),
            previous: Payload::null(),
            changes: Payload::null(),
            backfill: false,
        }
    }

    /// The event as compact JSON, the bytes a receiver gets (standard-webhooks) or finds in the
    /// JWT's `data` claim.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings and `Value`s cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The RFC 6902 patch from `before` to `after` over the fields that count.
fn changes(before: &Value, after: &Value, ignore: &[FieldPath]) -> Payload {
    let patch = match ignore {
        [] => json_patch::diff(before, after),
        _ => json_patch::diff(
            &without_ignored(before, ignore),
            &without_ignored(after, ignore),
        ),
    };
    Payload::from_value(&serde_json::to_value(patch).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Record;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn updated_event_has_the_design_shape_and_a_json_patch() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 23, 40, 0).unwrap();
        let change = Change::Updated(Record {
            id: "1042".into(),
            body: json!({"id": 1042, "status": "shipped"}),
            hash: [0; 32],
            raw: None,
        });
        let e = Event::from_change(
            "shop",
            "orders",
            &change,
            Some(json!({"id": 1042, "status": "open"})),
            &[],
            at,
        );
        assert!(e.id.starts_with("evt_") && e.id.len() == 36, "{}", e.id);
        let mut v = serde_json::to_value(&e).unwrap();
        v["id"] = json!("evt_x");
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            serde_json::to_string(&json!({
                "id": "evt_x", "type": "shop.orders.updated", "source": "shop", "resource": "orders",
                "action": "updated", "resource_id": "1042", "detected_at": "2026-11-22T23:40:00.000Z",
                "data": {"id": 1042, "status": "shipped"}, "previous": {"id": 1042, "status": "open"},
                "changes": [{"op": "replace", "path": "/status", "value": "shipped"}],
                "backfill": false
            }))
            .unwrap()
        );
        assert!(e.to_json().starts_with(r#"{"id":"evt_"#));
        assert!(
            e.to_json()
                .contains(r#""type":"shop.orders.updated","source":"shop""#)
        );
    }

    #[test]
    fn created_and_deleted_have_nulls_where_nothing_applies() {
        let at = Utc::now();
        let created = Change::Created(Record {
            id: "1".into(),
            body: json!({"id": 1}),
            hash: [0; 32],
            raw: None,
        });
        let e = Event::from_change("s", "r", &created, None, &[], at);
        assert!(e.previous.is_null() && e.changes.is_null());
        let deleted = Change::Deleted { id: "1".into() };
        let e = Event::from_change("s", "r", &deleted, Some(json!({"id": 1})), &[], at);
        assert_eq!(e.data, Value::Null);
        assert_eq!(e.previous, json!({"id": 1}));
        assert_eq!(e.kind, "s.r.deleted");
    }

    #[test]
    fn payloads_keep_the_bytes_and_compact_what_spans_lines() {
        let one = Payload::from_json(r#"{"b": 1, "a": [1, 2]}"#).unwrap();
        assert_eq!(one.get(), r#"{"b": 1, "a": [1, 2]}"#);
        let pretty = Payload::from_json("{\n  \"a\": [1, 2],\n  \"b\": 1\n}").unwrap();
        assert_eq!(pretty.get(), r#"{"a":[1,2],"b":1}"#);
        assert_eq!(one, pretty, "equal as JSON values");
        assert_eq!(one, json!({"a": [1, 2], "b": 1}));
        assert!(Payload::from_json("{").is_err());
        assert!(Payload::null().is_null());
    }

    #[test]
    fn changes_leave_out_ignored_fields_and_previous_is_the_last_data() {
        let ignore: [FieldPath; 2] = ["updatedAt".parse().unwrap(), "meta.etag".parse().unwrap()];
        let before = r#"{"id":1,"status":"open","updatedAt":"t1","meta":{"etag":"a"}}"#;
        let now = r#"{"status":"shipped","id":1,"updatedAt":"t3","meta":{"etag":"c"}}"#;
        let e = Event::new(
            "shop",
            "orders",
            Action::Updated,
            "1",
            Payload::from_json(now).unwrap(),
            Some(Payload::from_json(before).unwrap()),
            &ignore,
            Utc::now(),
        );
        assert_eq!(
            e.changes,
            json!([{"op": "replace", "path": "/status", "value": "shipped"}])
        );
        assert_eq!(
            e.previous.get(),
            before,
            "previous is kept as it was stored"
        );
        let only_ignored = Event::new(
            "shop",
            "orders",
            Action::Updated,
            "1",
            Payload::from_json(now).unwrap(),
            Some(
                Payload::from_json(
                    r#"{"id":1,"status":"shipped","updatedAt":"t2","meta":{"etag":"b"}}"#,
                )
                .unwrap(),
            ),
            &ignore,
            Utc::now(),
        );
        assert_eq!(only_ignored.changes, json!([]));
    }

    #[test]
    fn data_keeps_the_api_key_order_and_backfill_says_so() {
        let data = r#"{"z":1,"a":{"y":2,"b":3}}"#;
        let e = Event::new(
            "shop",
            "orders",
            Action::Created,
            "1",
            Payload::from_json(data).unwrap(),
            None,
            &[],
            Utc::now(),
        );
        assert!(e.to_json().contains(&format!(r#""data":{data},"#)));
        assert!(e.to_json().ends_with(r#""backfill":false}"#));
        let b = e.backfilled();
        assert!(b.backfill && b.to_json().ends_with(r#""backfill":true}"#));
        let old: Event = serde_json::from_str(
            r#"{"id":"evt_1","type":"r.created","source":"s","resource":"r","action":"created",
                "resource_id":"1","detected_at":"t","data":null,"previous":null,"changes":null}"#,
        )
        .unwrap();
        assert!(!old.backfill, "events stored before the flag read as live");
    }

    #[test]
    fn ids_are_unique_and_time_ordered() {
        let a = new_id();
        let b = new_id();
        assert!(a < b);
    }
}
