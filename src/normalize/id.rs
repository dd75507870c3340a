//! Ids: an item's id read from its `Value`, or straight from its JSON text without building the
//! rest of it ([`Normalizer::peek`], [`Normalizer::peek_id`]: the fast path's shortcut, which
//! borrows the id from the text where the text spells it as it is).
//!
//! In: an item (a `Value`, or its text) and the resource's id paths. Out: the id as text, composite
//! parts joined with `:`, or a [`NormalizeError`] naming the field and showing the item's start.
//!
//! Invariant: both paths give one id for one item: a number id is its [`canonical_number`] (every
//! digit kept), a string is taken as it is, and a repeated key means its last copy on either path.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::canonical::PLAIN_DIGITS;
use super::{FieldPath, NormalizeError, Normalizer, canonical_number, lookup};

impl Normalizer {
    /// The id of a JSON object given as text, and its peeked fields (the id's and those named
    /// with [`Normalizer::also_peek`]), without building the rest of it. `None` when that is not
    /// possible (not an object, no usable id): [`Normalizer::identify`] then says why.
    pub fn peek(&self, raw: &str) -> Option<(String, Value)> {
        let members = self.peek_members(raw)?;
        let id = self.peeked_id(&members)?.into_owned();
        let fields = members
            .into_iter()
            .map(|(k, v)| serde_json::from_str(v.get()).map(|v| (k.into_owned(), v)))
            .collect::<Result<Map<String, Value>, _>>()
            .ok()?;
        Some((id, Value::Object(fields)))
    }

    /// [`Normalizer::peek`]'s id alone, borrowed from `raw` where the text is the id (a string
    /// without escapes, an integer written canonically, a single id field): the fast path's
    /// question costs no allocation for most items.
    pub fn peek_id<'r>(&self, raw: &'r str) -> Option<Cow<'r, str>> {
        self.peeked_id(&self.peek_members(raw)?)
    }

    /// The peeked top-level members of the object `raw`; `None` unless it is one JSON object.
    fn peek_members<'r>(&self, raw: &'r str) -> Option<Vec<(Cow<'r, str>, &'r RawValue)>> {
        let mut de = serde_json::Deserializer::from_str(raw);
        let members = Peek(&self.peek_keys).deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(members)
    }

    /// The id read from peeked members, its parts joined with `:`.
    fn peeked_id<'r>(&self, members: &[(Cow<'r, str>, &'r RawValue)]) -> Option<Cow<'r, str>> {
        let part = |path: &FieldPath| {
            let (first, rest) = path.segments().split_first()?;
            let member = members.iter().find(|(k, _)| k == first)?.1.get();
            id_part(raw_lookup(member, rest)?).ok()
        };
        match self.id.as_slice() {
            [path] => part(path),
            paths => paths
                .iter()
                .map(part)
                .collect::<Option<Vec<_>>>()
                .map(|parts| Cow::Owned(parts.join(":"))),
        }
    }

    /// The id read from an item's text; `Some(Err(()))` or `None` when it is missing or unusable.
    pub(super) fn raw_id(&self, raw: &str) -> Option<Result<String, ()>> {
        let mut parts = Vec::with_capacity(self.id.len());
        for path in &self.id {
            match id_part(raw_lookup(raw, path.segments())?) {
                Ok(part) => parts.push(part),
                Err(()) => return Some(Err(())),
            }
        }
        Some(Ok(parts.join(":")))
    }

    pub(super) fn id_of(&self, item: &Value) -> Result<String, NormalizeError> {
        let mut parts = Vec::with_capacity(self.id.len());
        for path in &self.id {
            let field = path.to_string();
            let value = lookup(item, path.segments());
            let part = match value {
                None | Some(Value::Null) => {
                    return Err(NormalizeError::MissingId {
                        field,
                        fields: self
                            .id
                            .iter()
                            .map(|p| format!("`{p}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        preview: preview(item),
                    });
                }
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => match canonical_number(&n.to_string()) {
                    Some(id) => id,
                    None => {
                        return Err(NormalizeError::BadId {
                            field,
                            kind: "a number too large to serve as an id",
                            preview: preview(item),
                        });
                    }
                },
                Some(Value::Bool(b)) => b.to_string(),
                Some(other) => {
                    return Err(NormalizeError::BadId {
                        field,
                        kind: match other {
                            Value::Object(_) => "an object",
                            Value::Array(_) => "an array",
                            _ => "an empty string",
                        },
                        preview: preview(item),
                    });
                }
            };
            parts.push(part);
        }
        Ok(parts.join(":"))
    }
}

/// One part of an id from the JSON text of its value: a string's content, a number's
/// [`canonical_number`], `true`/`false`; `Err` for what cannot serve (null, objects, arrays, `""`).
/// Borrowed from `raw` where the text already is the part.
fn id_part(raw: &str) -> Result<Cow<'_, str>, ()> {
    match raw.as_bytes().first() {
        Some(b'"') => match serde_json::from_str::<Key<'_>>(raw) {
            Ok(Key(s)) if !s.is_empty() => Ok(s),
            _ => Err(()),
        },
        Some(b't') if raw == "true" => Ok(Cow::Borrowed(raw)),
        Some(b'f') if raw == "false" => Ok(Cow::Borrowed(raw)),
        Some(b'-' | b'0'..=b'9') if is_canonical_integer(raw) => Ok(Cow::Borrowed(raw)),
        Some(b'-' | b'0'..=b'9') => canonical_number(raw).map(Cow::Owned).ok_or(()),
        _ => Err(()),
    }
}

/// Whether `text` is an integer as [`canonical_number`] writes it (`0`, `7`, `-12`; not `-0`,
/// `007`, `1.0` or `1e2`), so that it is its own canonical text. At most [`PLAIN_DIGITS`]
/// digits: longer ones are written with an exponent.
fn is_canonical_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let plain = !digits.is_empty()
        && digits.len() as i64 <= PLAIN_DIGITS
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    plain || text == "0"
}

/// The JSON text of the value at a dotted path inside the JSON text `raw` (numeric segments index
/// arrays; a repeated key: the last copy wins), found without building values.
fn raw_lookup<'a>(raw: &'a str, path: &[String]) -> Option<&'a str> {
    let Some((first, rest)) = path.split_first() else {
        return Some(raw.trim());
    };
    let mut de = serde_json::Deserializer::from_str(raw);
    let found = Member(first).deserialize(&mut de).ok()??;
    raw_lookup(found.get(), rest)
}

/// Finds one member of an object, or one element of an array, as raw text.
struct Member<'s>(&'s str);

impl<'de> DeserializeSeed<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(Key(key)) = map.next_key()? {
            if key == self.0 {
                found = Some(map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let index = self.0.parse::<usize>().ok();
        let mut found = None;
        for i in 0.. {
            if Some(i) == index {
                found = seq.next_element()?;
                if found.is_none() {
                    break;
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
        }
        Ok(found)
    }
    // Scalars hold no members.
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reads a JSON object keeping only the listed top-level members, as raw text; the rest are
/// skimmed.
struct Peek<'k>(&'k [String]);

/// An object key, borrowed from the input unless it holds escapes.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> DeserializeSeed<'de> for Peek<'_> {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Peek<'_> {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Self::Value = Vec::with_capacity(self.0.len());
        while let Some(Key(key)) = map.next_key()? {
            if self.0.iter().any(|k| *k == key) {
                // A repeated key: the last copy wins, as when parsing into a `Value`.
                let value = map.next_value()?;
                match out.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = value,
                    None => out.push((key, value)),
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

fn preview(item: &Value) -> String {
    let text = item.to_string();
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::tests::paths;
    use serde_json::json;

    #[test]
    fn peek_finds_the_id_identify_finds_without_the_rest() {
        let mut n = Normalizer::new(paths(&["order.id", "line"]), vec![]);
        n.also_peek(&"updated_at".parse().unwrap());
        let text = r#"{"big": {"deep": [1, {"x": "\u00e9"}]}, "line": 2, "order": {"id": "a\"b"}, "updated_at": 5, "line": 3}"#;
        let (id, fields) = n.peek(text).unwrap();
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(id, n.identify(&value).unwrap().0);
        assert_eq!(id, "a\"b:3", "a repeated key: the last copy wins");
        assert_eq!(
            fields,
            json!({"line": 3, "order": {"id": "a\"b"}, "updated_at": 5})
        );
        // An escaped key is still the key.
        assert_eq!(
            n.peek(r#"{"li\u006ee": 1, "order": {"id": 1}}"#).unwrap().0,
            "1:1"
        );
        for no in [
            "[1]",
            "7",
            r#"{"line": 1}"#,
            r#"{"line": 1, "order": {"id": null}}"#,
        ] {
            assert_eq!(n.peek(no), None, "{no}");
        }
    }

    #[test]
    fn number_ids_compare_by_exact_value_on_every_path() {
        let mut n = Normalizer::new(paths(&["id"]), vec![]);
        let mut id = |text: &str| {
            let value: Value = serde_json::from_str(text).unwrap();
            let (slow, _) = n.identify_raw(text, &value).unwrap();
            assert_eq!(
                n.peek(text).unwrap().0,
                slow,
                "peek and identify agree on {text}"
            );
            slow
        };
        assert_eq!(
            id(r#"{"id": 1}"#),
            "1",
            "an integer id reads as it always did"
        );
        assert_eq!(id(r#"{"id": 1.0}"#), "1");
        assert_eq!(id(r#"{"id": 10e-1}"#), "1");
        assert_eq!(
            id(r#"{"id": "1.0"}"#),
            "1.0",
            "strings are taken as they are"
        );
        assert_eq!(
            id(r#"{"id": 100000000000000000000001}"#),
            "100000000000000000000001"
        );
        assert_eq!(
            id(r#"{"id": 100000000000000000000002}"#),
            "100000000000000000000002"
        );
        let mut nested = Normalizer::new(paths(&["a.1.id", "b"]), vec![]);
        let text = r#"{"a": [{"id": 9}, {"id": 2.50}], "b": true}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(nested.identify_raw(text, &value).unwrap().0, "2.5:true");
        assert_eq!(nested.peek(text).unwrap().0, "2.5:true");
    }

    #[test]
    fn ids_simple_nested_and_composite() {
        let mut n = Normalizer::new(paths(&["id"]), vec![]);
        assert_eq!(n.record(json!({"id": 7})).unwrap().id, "7");
        assert_eq!(n.record(json!({"id": "a-7"})).unwrap().id, "a-7");
        let mut n = Normalizer::new(paths(&["order.id", "line"]), vec![]);
        assert_eq!(
            n.record(json!({"order": {"id": 7}, "line": 2})).unwrap().id,
            "7:2"
        );
        let err = n.record(json!({"order": {}, "line": 2})).unwrap_err();
        assert!(err.to_string().contains("`order.id`"), "{err}");
        let err = n
            .record(json!({"order": {"id": [1]}, "line": 2}))
            .unwrap_err();
        assert!(matches!(err, NormalizeError::BadId { .. }));
    }

    /// `peek_id` is `peek`'s id, borrowed where the text spells the id as it is and written out
    /// where it does not.
    #[test]
    fn peek_id_is_peeks_id_borrowed_where_the_text_is_the_id() {
        let n = Normalizer::new(paths(&["id"]), vec![]);
        for (text, id, borrowed) in [
            (r#"{"id": 1042, "x": [1, {"id": 2}]}"#, "1042", true),
            (r#"{"id": -7}"#, "-7", true),
            (r#"{"id": 0}"#, "0", true),
            (r#"{"id": "a-7"}"#, "a-7", true),
            (r#"{"id": true}"#, "true", true),
            (r#"{"id": 1, "id": 2}"#, "2", true),
            (r#"{"id": "a\"b"}"#, "a\"b", false),
            (r#"{"id": -0}"#, "0", false),
            (r#"{"id": 1.50}"#, "1.5", false),
            (r#"{"id": 1e2}"#, "100", false),
            (
                r#"{"id": 100000000000000000000001}"#,
                "100000000000000000000001",
                true,
            ),
        ] {
            let got = n.peek_id(text).unwrap();
            assert_eq!(got, id, "{text}");
            assert_eq!(matches!(got, Cow::Borrowed(_)), borrowed, "{text}");
            assert_eq!(n.peek(text).unwrap().0, id, "{text}");
        }
        let composite = Normalizer::new(paths(&["order.id", "line"]), vec![]);
        let text = r#"{"line": 2, "order": {"id": "a"}}"#;
        assert_eq!(composite.peek_id(text).unwrap(), "a:2");
        for no in [
            "[1]",
            r#"{"id": null}"#,
            r#"{"id": ""}"#,
            r#"{"id": 1} x"#,
            r#"{"x": 1}"#,
        ] {
            assert_eq!(n.peek_id(no), None, "{no}");
        }
    }

    /// The integers taken as their own canonical text are exactly those `canonical_number`
    /// writes back unchanged.
    #[test]
    fn canonical_integers_are_their_own_canonical_number() {
        let long = "9".repeat(64);
        let longer = "9".repeat(65);
        for text in [
            "0", "7", "-12", "100", "-0", "007", "00", "-", "1.0", "1e2", "+1", &long, &longer,
        ] {
            let canonical = canonical_number(text);
            assert_eq!(
                is_canonical_integer(text),
                canonical.as_deref() == Some(text) && !text.contains(['.', 'e', 'E']),
                "{text}: canonical {canonical:?}"
            );
        }
        assert!(is_canonical_integer(&long));
        assert!(!is_canonical_integer(&longer));
    }
}
