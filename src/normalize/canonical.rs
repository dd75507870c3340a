//! Canonical forms: a JSON value written one way whatever order or spacing it came in, and a
//! JSON number's text written one way whatever notation it came in.
//!
//! In: a `serde_json::Value`, or the text of one JSON number. Out: canonical JSON bytes (what
//! [`Normalizer`](super::Normalizer) hashes), or canonical decimal text (what a number id reads as).
//!
//! Invariant: equal values give equal output and distinct values distinct output; keys are sorted
//! here by their bytes, not by `serde_json::Map`'s iteration order, so Cargo features elsewhere
//! cannot change a hash. The output of [`canonical_json`] is pinned: a change re-emits every item.

use serde_json::Value;

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
