//! Canonical forms: a JSON value written one way whatever order or spacing it came in, and a
//! JSON number's text written one way whatever notation it came in.
//!
//! In: a `serde_json::Value`, or the JSON text of one (and the ignore paths to leave out), or the
//! text of one JSON number. Out: canonical JSON bytes (what [`Normalizer`](super::Normalizer)
//! hashes), or canonical decimal text (what a number id reads as).
//!
//! Invariant: equal values give equal output and distinct values distinct output; keys are sorted
//! here by their bytes, not by `serde_json::Map`'s iteration order, so Cargo features elsewhere
//! cannot change a hash. The output of [`canonical_json`] is pinned: a change re-emits every item.
//! [`canonical_json_of_text`] writes the same bytes straight from the text, with no `Value` (what
//! the normalizer hashes); `canonical_json` stays as the definition it is tested against.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::FieldPath;

/// Numbers whose canonical form would need more digits than this are written `{digits}e{exp}`.
pub(super) const PLAIN_DIGITS: i64 = 64;

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

/// The key by which `serde_json` (with its `raw_value` feature, which pollhook builds with) reads
/// an object whose *first* key it is as a JSON text held in a string: `{KEY: "[1,2]"}` reads as
/// `[1,2]`. [`canonical_json_of_text`] reads it so too, to stay equal to the `Value` path.
const RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

/// Writes the canonical JSON of the JSON text `text` with the fields at `ignore` left out: byte
/// for byte what [`canonical_json`] writes for `text` read into a `Value` and stripped of those
/// fields ([`without_ignored`](super::without_ignored)), without building the `Value`. It fails
/// exactly where reading `text` into a `Value` fails.
///
/// One pass over the text: scalars are written as they are read, and each object's members are
/// written into a buffer of their own, then copied out in key order (a repeated key: the last
/// copy wins, as in a `Value`).
pub fn canonical_json_of_text(
    text: &str,
    ignore: &[FieldPath],
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    let ignore: Vec<&[String]> = ignore.iter().map(FieldPath::segments).collect();
    write_canonical_text(text, &ignore, out, &mut Vec::new())
}

/// [`canonical_json_of_text`] with the ignore paths as segments and the members' buffers kept in
/// `spare` for the next call.
pub(super) fn write_canonical_text(
    text: &str,
    ignore: &[&[String]],
    out: &mut Vec<u8>,
    spare: &mut Vec<Vec<u8>>,
) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    Canonical { out, spare, ignore }.deserialize(&mut de)?;
    de.end()
}

/// One JSON value read and written canonically; `ignore` holds the rest of each ignore path that
/// has reached this value.
struct Canonical<'w, 'p> {
    out: &'w mut Vec<u8>,
    spare: &'w mut Vec<Vec<u8>>,
    ignore: &'w [&'p [String]],
}

impl<'p> Canonical<'_, 'p> {
    /// The rest of each ignore path whose next step is taken by a child that `step` accepts.
    fn below(&self, step: impl Fn(&str) -> bool) -> Vec<&'p [String]> {
        self.ignore
            .iter()
            .filter(|path| path.len() > 1 && step(&path[0]))
            .map(|path| &path[1..])
            .collect()
    }
}

impl<'de> DeserializeSeed<'de> for Canonical<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Canonical<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    // Scalars are written by serde_json, as `canonical_json` has it write a `Value`'s.
    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        let _ = serde_json::to_writer(&mut *self.out, &v);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        let _ = serde_json::to_writer(&mut *self.out, &v);
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // serde_json only reads finite numbers, which a `Value` holds and prints as this does.
        let _ = serde_json::to_writer(&mut *self.out, &v);
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        write_str(v, self.out);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        for i in 0usize.. {
            let mark = self.out.len();
            if i > 0 {
                self.out.push(b',');
            }
            // As `remove` has it: `*` or the element's index.
            let ignore = self.below(|step| step == "*" || step.parse() == Ok(i));
            let element = Canonical {
                out: &mut *self.out,
                spare: &mut *self.spare,
                ignore: &ignore,
            };
            if seq.next_element_seed(element)?.is_none() {
                self.out.truncate(mark);
                break;
            }
        }
        self.out.push(b']');
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(Key(mut key)) = map.next_key()? else {
            self.out.extend_from_slice(b"{}");
            return Ok(());
        };
        if key == RAW_VALUE_KEY {
            let inner: Cow<'de, str> = map.next_value::<Key>()?.0;
            let ignore = self.ignore;
            return write_canonical_text(&inner, ignore, self.out, self.spare)
                .map_err(de::Error::custom);
        }
        let mut members: Vec<(Cow<'de, str>, Range<usize>)> = Vec::new();
        let mut buf = self.spare.pop().unwrap_or_default();
        loop {
            let ignore = self.below(|step| step == "*" || step == key);
            let start = buf.len();
            map.next_value_seed(Canonical {
                out: &mut buf,
                spare: &mut *self.spare,
                ignore: &ignore,
            })?;
            // Read even when ignored: the text must be what a `Value` would accept.
            if self
                .ignore
                .iter()
                .any(|path| path.len() == 1 && path[0] == key)
            {
                buf.truncate(start);
            } else {
                members.push((key, start..buf.len()));
            }
            match map.next_key()? {
                Some(Key(next)) => key = next,
                None => break,
            }
        }
        // Stable, so of a repeated key's copies the last stays last.
        members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        self.out.push(b'{');
        let mut first = true;
        for (i, (key, span)) in members.iter().enumerate() {
            if members.get(i + 1).is_some_and(|(next, _)| next == key) {
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            write_str(key, self.out);
            self.out.push(b':');
            self.out.extend_from_slice(&buf[span.clone()]);
        }
        self.out.push(b'}');
        buf.clear();
        self.spare.push(buf);
        Ok(())
    }
}

/// An object key or a string, borrowed from the text unless it holds escapes.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

#[cfg(test)]
mod tests {
    use super::*;

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

    /// What the `Value` path writes for `text` without the fields at `ignore`: the definition.
    fn through_a_value(text: &str, ignore: &[FieldPath]) -> Option<String> {
        let v: Value = serde_json::from_str(text).ok()?;
        Some(canonical_string(&super::super::without_ignored(&v, ignore)))
    }

    fn from_text(text: &str, ignore: &[FieldPath]) -> Option<String> {
        let mut out = Vec::new();
        canonical_json_of_text(text, ignore, &mut out).ok()?;
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn canonical_json_of_text_writes_what_the_value_path_writes() {
        let paths = super::super::tests::paths;
        for (text, ignore, canonical) in [
            (
                r#"{ "b": [1, {"z": null, "a": true}], "a": "x\"y", "é": 1.5 }"#,
                paths(&[]),
                r#"{"a":"x\"y","b":[1,{"a":true,"z":null}],"é":1.5}"#,
            ),
            // A repeated key, also spelt with an escape: the last copy wins.
            (
                r#"{"a": 1, "b": 2, "\u0061": 3, "a": {"k": [4]}}"#,
                paths(&[]),
                r#"{"a":{"k":[4]},"b":2}"#,
            ),
            // Strings re-escaped as serde_json escapes them; numbers as a `Value` prints them.
            (
                r#"["\u00e9\/\ud83d\ude00\u001f\t", 1.50, 1e2, -0, -0.0, 18446744073709551616, -9223372036854775808, 1E-7]"#,
                paths(&[]),
                "[\"é/😀\\u001f\\t\",1.5,100.0,-0.0,-0.0,1.8446744073709552e+19,-9223372036854775808,1e-7]",
            ),
            (r#" { } "#, paths(&[]), "{}"),
            (r#"[[], {}, [{}]]"#, paths(&[]), "[[],{},[{}]]"),
            // Ignore paths: a member, under a wildcard, at an index; a last step never removes
            // an array element, and a literal `*` key is only removed by a last-step `*`.
            (
                r#"{"u": 1, "m": {"e": 1, "v": 2}, "l": [{"s": 1, "q": 1}, {"s": 2}], "x": [5, 6], "*": 0}"#,
                paths(&["u", "m.e", "l.*.s", "x.0", "*"]),
                r#"{"l":[{"q":1},{}],"m":{"v":2},"x":[5,6]}"#,
            ),
            (
                r#"{"l": [{"s": 1}, {"s": 2}, {"s": 3}], "o": {"a": {"s": 1}, "b": {"s": 2}}}"#,
                paths(&["l.1.s", "o.*.s"]),
                r#"{"l":[{"s":1},{},{"s":3}],"o":{"a":{},"b":{}}}"#,
            ),
            // The key serde_json reads as JSON text in a string, when it comes first.
            (
                r#"{"$serde_json::private::RawValue": "{\"b\": 1, \"a\": [2]}"}"#,
                paths(&["b"]),
                r#"{"a":[2]}"#,
            ),
            (
                r#"{"k": 1, "$serde_json::private::RawValue": "[1]"}"#,
                paths(&[]),
                r#"{"$serde_json::private::RawValue":"[1]","k":1}"#,
            ),
        ] {
            assert_eq!(
                through_a_value(text, &ignore).as_deref(),
                Some(canonical),
                "{text}"
            );
            assert_eq!(
                from_text(text, &ignore).as_deref(),
                Some(canonical),
                "{text}"
            );
        }
    }

    #[test]
    fn canonical_json_of_text_fails_where_a_value_fails() {
        let ignore = super::super::tests::paths(&["a"]);
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        for n in [1, 100, 126, 127, 128, 129, 200] {
            let text = deep(n);
            assert_eq!(
                from_text(&text, &[]),
                through_a_value(&text, &[]),
                "depth {n}"
            );
        }
        assert!(from_text(&deep(100), &[]).is_some());
        for text in [
            "",
            "[1,]",
            r#"{"a": 1} x"#,
            r#"{"a": 1,}"#,
            r#"{"a": "\ud800"}"#,
            r#"{"a": 1e400}"#,
            "{\"a\": \"\u{1}\"}",
            r#"{"$serde_json::private::RawValue": 1}"#,
            r#"{"$serde_json::private::RawValue": "[1", "k": 1}"#,
            r#"{"$serde_json::private::RawValue": "1", "k": 1}"#,
            &deep(200),
        ] {
            assert_eq!(through_a_value(text, &ignore), None, "{text}");
            assert_eq!(from_text(text, &ignore), None, "{text}");
        }
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
}
