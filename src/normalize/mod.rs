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
//! paths) and [`Normalizer::peek_id`] (the id fields only, the rest skimmed without allocating;
//! the id itself borrowed from the text where the text spells it as it is) are enough to know the
//! item is unchanged, without building its `Value` tree. The canonical hash stays
//! the only judge of change: equal bytes imply an equal canonical hash, and an item whose bytes
//! differ is hashed canonically, so an API that reorders keys emits nothing. An item that came as
//! text can be hashed from its text ([`Normalizer::identify_text`], [`canonical_json_of_text`]):
//! no `Value` built, the same hash as the parsed item's, bit for bit.
//!
//! Ids: a number id is its [`canonical_number`], read from the item's text where there is one
//! (`1`, `1.0` and `10e-1` are one id; `100000000000000000000001` keeps every digit, which an f64
//! would not), so equal numbers are one id and distinct numbers never merge. Integer ids read as
//! they always did (`7` is `"7"`), strings are taken as they are.
//!
//! The rooms: this one holds the types and the [`Normalizer`] (record, hash, raw hash); [`canonical`]
//! writes canonical JSON and canonical number text; `id` reads ids, from a `Value` or straight
//! from an item's text ([`Normalizer::peek`]).

mod canonical;
mod id;

use serde_json::Value;
use sha2::{Digest, Sha256};

use std::fmt;
use std::str::FromStr;

pub use canonical::{canonical_json, canonical_json_of_text, canonical_number, canonical_string};

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
    /// An item given as text ([`Normalizer::identify_text`]) is not one JSON value.
    #[error("an item is not valid JSON: {0}")]
    NotJson(String),
}

/// Turns items into records for one resource.
#[derive(Debug, Clone)]
pub struct Normalizer {
    id: Vec<FieldPath>,
    ignore: Vec<FieldPath>,
    buf: Vec<u8>,
    /// Buffers for the members of objects being written canonically, kept between items.
    spare: Vec<Vec<u8>>,
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
            spare: Vec::new(),
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

    /// [`Normalizer::identify`] for an item that came as text, with no `Value` built: number ids
    /// are read from the text, every digit kept, and the hash is that of
    /// [`canonical_json_of_text`], equal to the one [`Normalizer::identify`] gives the parsed
    /// item. [`NormalizeError::NotJson`] when the text is not one JSON value.
    pub fn identify_text(&mut self, raw: &str) -> Result<(String, Hash), NormalizeError> {
        let hash = self.hash_text(raw)?;
        let id = match self.raw_id(raw) {
            Some(Ok(id)) => id,
            // A bad item is rare: the `Value` path says what is wrong, in its words.
            Some(Err(())) | None => {
                let body: Value = serde_json::from_str(raw)
                    .map_err(|e| NormalizeError::NotJson(e.to_string()))?;
                self.id_of(&body)?
            }
        };
        Ok((id, hash))
    }

    fn hash_text(&mut self, raw: &str) -> Result<Hash, NormalizeError> {
        self.buf.clear();
        let ignore: Vec<&[String]> = self.ignore.iter().map(FieldPath::segments).collect();
        canonical::write_canonical_text(raw, &ignore, &mut self.buf, &mut self.spare)
            .map_err(|e| NormalizeError::NotJson(e.to_string()))?;
        Ok(Sha256::digest(&self.buf).into())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) fn paths(list: &[&str]) -> Vec<FieldPath> {
        list.iter().map(|p| p.parse().unwrap()).collect()
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

    /// The hash of an item's text is the pinned hash of the same item parsed: snapshots hashed
    /// either way never re-baseline.
    #[test]
    fn identify_text_gives_the_pinned_hash_without_a_value() {
        let mut n = Normalizer::new(paths(&["id"]), vec![]);
        let text = r#"{"total": 99.50, "lines": [{"qty": 2, "sku": "A-1"}], "status": "shipped", "id": 1042}"#;
        let (id, hash) = n.identify_text(text).unwrap();
        assert_eq!(id, "1042");
        assert_eq!(
            hex::encode(hash),
            "200a326891924584ae5455708dab2a6bc7404c84f4c1babcced181c9e0fba236"
        );
        let mut ignoring = Normalizer::new(paths(&["id"]), paths(&["meta.etag", "lines.*.seen"]));
        let text = r#"{"id": "a", "meta": {"etag": 1, "v": [1]}, "lines": [{"seen": 1, "q": 1}]}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            ignoring.identify_text(text).unwrap(),
            ignoring.identify(&value).unwrap()
        );
        let err = n.identify_text(r#"{"id": 1,}"#).unwrap_err();
        assert!(matches!(err, NormalizeError::NotJson(_)), "{err}");
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = n.identify_text(r#"{"x": 1}"#).unwrap_err();
        assert!(err.to_string().contains("`id`"), "{err}");
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
}
