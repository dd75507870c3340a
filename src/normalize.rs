//! Normalize: an item as the API returned it → a [`Record`] `{ id, body, hash }`.
//!
//! In: one JSON item and the resource's `id` and `ignore` field paths. Out: its id as text and the
//! SHA-256 of its canonical JSON with the ignored fields left out.
//!
//! Invariant: equal content gives an equal hash whatever key order or whitespace the API used, and
//! whatever Cargo features are on elsewhere: [`canonical_json`] sorts keys itself rather than relying
//! on `serde_json::Map`'s iteration order (`preserve_order` would change it). Pure: no I/O.
//!
//! The fast path: most items of most polls are byte for byte what they were last time. For those,
//! [`Normalizer::raw_hash`] (SHA-256 of the item's bytes as served, seeded with the id and ignore
//! paths) and [`Normalizer::peek`] (the id fields only, the rest skimmed without allocating) are
//! enough to know the item is unchanged, without building its `Value` tree. The canonical hash stays
//! the only judge of change: equal bytes imply an equal canonical hash, and an item whose bytes
//! differ is parsed and hashed canonically, so an API that reorders keys emits nothing.
//!
//! Ids: a number id is its [`canonical_number`], read from the item's text where there is one
//! (`1`, `1.0` and `10e-1` are one id; `100000000000000000000001` keeps every digit, which an f64
//! would not), so equal numbers are one id and distinct numbers never merge. Integer ids read as
//! they always did (`7` is `"7"`), strings are taken as they are.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use std::fmt;
use std::str::FromStr;

/// A dotted path into an item (`customer.id`, `lines.*.sku`, `tags.0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    /// The path's segments.
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl FromStr for FieldPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let segments: Vec<String> = s.split('.').map(str::to_owned).collect();
        if s.is_empty() || segments.iter().any(String::is_empty) {
            return Err(format!(
                "`{s}` is not a field path; write dotted names such as `id` or `customer.id`"
            ));
        }
        Ok(Self(segments))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// A normalized item.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<B = Value> {
    /// The item's id (composite ids joined with `:`).
    pub id: String,
    /// The item as the API returned it, ignored fields included (or where it is kept).
    pub body: B,
    /// SHA-256 of the canonical JSON of `body` without the ignored fields.
    pub hash: Hash,
    /// The item's [`RawHash`], when it came as bytes.
    pub raw: Option<RawHash>,
}

/// A content hash.
pub type Hash = [u8; 32];

/// The first 16 bytes of the seeded SHA-256 of an item's bytes as served: a shortcut to "unchanged",
/// never a reason to emit.
pub type RawHash = [u8; 16];

/// An item that cannot be normalized; the fetch it came from is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// The id field is absent or null.
    #[error(
        "an item has no `{field}`; every item needs the id field(s) {fields} (item starts: {preview})"
    )]
    MissingId {
        /// The missing field.
        field: String,
        /// All id fields.
        fields: String,
        /// The first bytes of the item.
        preview: String,
    },
    /// The id field holds an object, array, empty string or a number too large to write out.
    #[error("item field `{field}` cannot serve as an id: it is {kind} (item starts: {preview})")]
    BadId {
        /// The field.
        field: String,
        /// What it holds.
        kind: &'static str,
        /// The first bytes of the item.
        preview: String,
    },
}

/// Turns items into records for one resource.
#[derive(Debug, Clone)]
pub struct Normalizer {
    id: Vec<FieldPath>,
    ignore: Vec<FieldPath>,
    buf: Vec<u8>,
    /// SHA-256 already fed the id and ignore paths: a raw hash made under other settings never
    /// matches, so changing `ignore` re-hashes every item canonically once.
    raw_seed: Sha256,
    /// Top-level keys [`Normalizer::peek`] keeps.
    peek_keys: Vec<String>,
}

impl Normalizer {
    /// A normalizer with the resource's id and ignore paths.
    pub fn new(id: Vec<FieldPath>, ignore: Vec<FieldPath>) -> Self {
        let mut raw_seed = Sha256::new();
        raw_seed.update(b"pollhook raw v1\0");
        for (section, paths) in [(&b"id\0"[..], &id), (&b"ignore\0"[..], &ignore)] {
            raw_seed.update(section);
            for path in paths {
                raw_seed.update(path.to_string().as_bytes());
                raw_seed.update(b"\0");
            }
        }
        let mut normalizer = Self {
            id,
            ignore,
            buf: Vec::with_capacity(1024),
            raw_seed,
            peek_keys: Vec::new(),
        };
        for path in normalizer.id.clone() {
            normalizer.also_peek(&path);
        }
        normalizer
    }

    /// Makes [`Normalizer::peek`] keep the top-level field `path` starts with, too.
    pub fn also_peek(&mut self, path: &FieldPath) {
        if let Some(first) = path.segments().first()
            && !self.peek_keys.contains(first)
        {
            self.peek_keys.push(first.clone());
        }
    }

    /// Normalizes one item.
    pub fn record(&mut self, body: Value) -> Result<Record, NormalizeError> {
        let (id, hash) = self.identify(&body)?;
        Ok(Record {
            id,
            body,
            hash,
            raw: None,
        })
    }

    /// The id and canonical hash of one item.
    pub fn identify(&mut self, body: &Value) -> Result<(String, Hash), NormalizeError> {
        let id = self.id_of(body)?;
        Ok((id, self.hash(body)))
    }

    /// [`Normalizer::identify`] for an item that came as text (`raw`, parsed into `body`): number
    /// ids are read from the text, every digit kept.
    pub fn identify_raw(
        &mut self,
        raw: &str,
        body: &Value,
    ) -> Result<(String, Hash), NormalizeError> {
        let id = match self.raw_id(raw) {
            Some(Ok(id)) => id,
            // The `Value` path says what is wrong, in its words.
            Some(Err(())) | None => self.id_of(body)?,
        };
        Ok((id, self.hash(body)))
    }

    fn hash(&mut self, body: &Value) -> Hash {
        self.buf.clear();
        if self.ignore.is_empty() {
            canonical_json(body, &mut self.buf);
        } else {
            let mut stripped = body.clone();
            for path in &self.ignore {
                remove(&mut stripped, path.segments());
            }
            canonical_json(&stripped, &mut self.buf);
        }
        Sha256::digest(&self.buf).into()
    }

    /// The [`RawHash`] of an item's bytes as served.
    pub fn raw_hash(&self, raw: &str) -> RawHash {
        let digest = self
            .raw_seed
            .clone()
            .chain_update(raw.as_bytes())
            .finalize();
        let mut out = [0; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }

    /// The id of a JSON object given as text, and its peeked fields (the id's and those named
    /// with [`Normalizer::also_peek`]), without building the rest of it. `None` when that is not
    /// possible (not an object, no usable id): [`Normalizer::identify`] then says why.
    pub fn peek(&self, raw: &str) -> Option<(String, Value)> {
        let mut de = serde_json::Deserializer::from_str(raw);
        let members = Peek(&self.peek_keys).deserialize(&mut de).ok()?;
        de.end().ok()?;
        let mut parts = Vec::with_capacity(self.id.len());
        for path in &self.id {
            let (first, rest) = path.segments().split_first()?;
            let member = members.iter().find(|(k, _)| k == first)?.1.get();
            parts.push(id_part(raw_lookup(member, rest)?).ok()?);
        }
        let fields = members
            .into_iter()
            .map(|(k, v)| serde_json::from_str(v.get()).map(|v| (k.into_owned(), v)))
            .collect::<Result<Map<String, Value>, _>>()
            .ok()?;
        Some((parts.join(":"), Value::Object(fields)))
    }

    /// The id read from an item's text; `Some(Err(()))` or `None` when it is missing or unusable.
    fn raw_id(&self, raw: &str) -> Option<Result<String, ()>> {
        let mut parts = Vec::with_capacity(self.id.len());
        for path in &self.id {
            match id_part(raw_lookup(raw, path.segments())?) {
                Ok(part) => parts.push(part),
                Err(()) => return Some(Err(())),
            }
        }
        Some(Ok(parts.join(":")))
    }

    fn id_of(&self, item: &Value) -> Result<String, NormalizeError> {
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
fn id_part(raw: &str) -> Result<String, ()> {
    match raw.as_bytes().first() {
        Some(b'"') => match serde_json::from_str::<String>(raw) {
            Ok(s) if !s.is_empty() => Ok(s),
            _ => Err(()),
        },
        Some(b't') if raw == "true" => Ok("true".into()),
        Some(b'f') if raw == "false" => Ok("false".into()),
        Some(b'-' | b'0'..=b'9') => canonical_number(raw).ok_or(()),
        _ => Err(()),
    }
}

/// Numbers whose canonical form would need more digits than this are written `{digits}e{exp}`.
const PLAIN_DIGITS: i64 = 64;

/// The canonical decimal text of a JSON number given as text (RFC 8259 §6 grammar): its exact
/// value, written without a sign for zero, without leading or trailing zeros, and without an
/// exponent unless writing it out would take more than [`PLAIN_DIGITS`] digits (then
/// `{digits}e{exponent}` with no trailing zeros in the digits). Equal values give equal text:
/// `1`, `1.0`, `1e0`, `10E-1` → `1`; `-0` → `0`; `1.50` → `1.5`; `1e2` → `100`. `None` for text
/// that is not a JSON number, or whose exponent does not fit an `i64`.
pub fn canonical_number(text: &str) -> Option<String> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => {
            let exp = &unsigned[at + 1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (&unsigned[..at], exp.parse::<i64>().ok()?)
        }
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let valid_int = int == "0" || (!int.is_empty() && !int.starts_with('0'));
    if !valid_int
        || !int.bytes().all(|b| b.is_ascii_digit())
        || (mantissa.contains('.') && frac.is_empty())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // value = digits × 10^exponent, with no leading or trailing zeros in digits.
    let all = format!("{int}{frac}");
    let significant = all.trim_start_matches('0');
    let digits = significant.trim_end_matches('0');
    if digits.is_empty() {
        return Some("0".into());
    }
    let exponent = exponent
        .checked_sub(i64::try_from(frac.len()).ok()?)?
        .checked_add(i64::try_from(significant.len() - digits.len()).ok()?)?;
    let len = i64::try_from(digits.len()).ok()?;
    let sign = if negative { "-" } else { "" };
    Some(
        if exponent >= 0 && len.checked_add(exponent)? <= PLAIN_DIGITS {
            format!("{sign}{digits}{}", "0".repeat(exponent as usize))
        } else if exponent < 0 && -exponent < len {
            let point = (len + exponent) as usize;
            format!("{sign}{}.{}", &digits[..point], &digits[point..])
        } else if exponent < 0 && -exponent - len < PLAIN_DIGITS {
            format!("{sign}0.{}{digits}", "0".repeat((-exponent - len) as usize))
        } else {
            format!("{sign}{digits}e{exponent}")
        },
    )
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

/// The value at a dotted path; numeric segments index arrays.
pub fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, seg| match v {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Removes the field at a dotted path; a `*` segment walks every element or member.
/// `value` without the fields at `ignore` (the item as pollhook compares it).
pub fn without_ignored(value: &Value, ignore: &[FieldPath]) -> Value {
    let mut stripped = value.clone();
    for path in ignore {
        remove(&mut stripped, path.segments());
    }
    stripped
}

fn remove(value: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        if let Value::Object(map) = value {
            map.remove(first);
        }
        return;
    }
    match (value, first.as_str()) {
        (Value::Object(map), "*") => map.values_mut().for_each(|v| remove(v, rest)),
        (Value::Array(items), "*") => items.iter_mut().for_each(|v| remove(v, rest)),
        (Value::Object(map), key) => {
            if let Some(v) = map.get_mut(key) {
                remove(v, rest);
            }
        }
        (Value::Array(items), index) => {
            if let Some(v) = index.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                remove(v, rest);
            }
        }
        _ => {}
    }
}

/// Writes `value` as canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace,
/// strings escaped as `serde_json` escapes them, numbers as `serde_json` prints them.
pub fn canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(key, out);
                out.push(b':');
                canonical_json(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_str(s, out),
        scalar => {
            // Null, bools and numbers: serde_json's own formatting, which is what a reader
            // round-trips; writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Canonical JSON as a `String`.
pub fn canonical_string(value: &Value) -> String {
    let mut out = Vec::new();
    canonical_json(value, &mut out);
    // canonical_json only writes valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(list: &[&str]) -> Vec<FieldPath> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, {"z": null, "a": true}], "a": "x\"y", "é": 1.5 }"#)
                .unwrap();
        assert_eq!(
            canonical_string(&v),
            r#"{"a":"x\"y","b":[1,{"a":true,"z":null}],"é":1.5}"#
        );
    }

    /// Pins the hash of a fixed document: if this changes, every snapshot in the field would see
    /// every item as updated.
    #[test]
    fn pinned_hash_of_a_fixed_document() {
        let mut n = Normalizer::new(paths(&["id"]), vec![]);
        let doc = json!({"id": 1042, "status": "shipped", "lines": [{"sku": "A-1", "qty": 2}], "total": 99.5});
        let record = n.record(doc).unwrap();
        assert_eq!(
            hex::encode(record.hash),
            "200a326891924584ae5455708dab2a6bc7404c84f4c1babcced181c9e0fba236"
        );
    }

    #[test]
    fn key_order_and_ignored_fields_do_not_change_the_hash() {
        let mut n = Normalizer::new(
            paths(&["id"]),
            paths(&["updated_at", "meta.etag", "lines.*.seen"]),
        );
        let a = n
            .record(json!({"id": 1, "x": 1, "updated_at": "t1", "meta": {"etag": "a", "v": 1}, "lines": [{"seen": 1, "q": 1}]}))
            .unwrap();
        let b = n
            .record(json!({"meta": {"v": 1, "etag": "b"}, "x": 1, "id": 1, "updated_at": "t2", "lines": [{"q": 1, "seen": 2}]}))
            .unwrap();
        assert_eq!(a.hash, b.hash);
        assert_eq!(b.body["updated_at"], "t2", "the body keeps ignored fields");
        let c = n.record(json!({"id": 1, "x": 2})).unwrap();
        assert_ne!(a.hash, c.hash);
    }

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
    fn raw_hashes_depend_on_the_bytes_and_the_settings() {
        let plain = Normalizer::new(paths(&["id"]), vec![]);
        let ignoring = Normalizer::new(paths(&["id"]), paths(&["updated_at"]));
        let (a, b) = (r#"{"id":1,"x":1}"#, r#"{"x":1,"id":1}"#);
        assert_eq!(plain.raw_hash(a), plain.raw_hash(a));
        assert_ne!(plain.raw_hash(a), plain.raw_hash(b));
        assert_ne!(
            plain.raw_hash(a),
            ignoring.raw_hash(a),
            "new ignore paths, new hashes"
        );
    }

    #[test]
    fn canonical_numbers_are_exact_and_one_per_value() {
        for (text, canonical) in [
            ("1", "1"),
            ("1.0", "1"),
            ("1e0", "1"),
            ("10E-1", "1"),
            ("0.1e1", "1"),
            ("-0", "0"),
            ("-0.0e5", "0"),
            ("0", "0"),
            ("100", "100"),
            ("1e2", "100"),
            ("1E+2", "100"),
            ("-12.50", "-12.5"),
            ("0.001", "0.001"),
            ("1e-3", "0.001"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            ("100000000000000000000001", "100000000000000000000001"),
            ("1e100", "1e100"),
            ("1.5e-100", "15e-101"),
            ("18446744073709551616", "18446744073709551616"),
        ] {
            assert_eq!(canonical_number(text).as_deref(), Some(canonical), "{text}");
        }
        for not in [
            "",
            "-",
            "01",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "1x",
            "0x10",
            "1e99999999999999999999",
        ] {
            assert_eq!(canonical_number(not), None, "{not:?}");
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
}
