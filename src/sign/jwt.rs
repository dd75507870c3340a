//! The `jwt` scheme: the event goes into the `data` claim of an HS256 JWT, and the body is
//! `{"data": "<JWT>"}`; no headers of its own.
//!
//! In: the endpoint's newest key and a [`SignInput`] (signing), or the keys and a received body
//! (verifying). Out: a [`Signed`] body, or the [`Verified`] claims.
//!
//! Invariant: the token passes any HS256 library's default validation (it carries `exp`, no
//! `aud`), and `data` is the stored event's own bytes made compact, its keys in their own order.
//! The token is byte for byte what `jsonwebtoken::encode` writes for the same claims.

use std::borrow::Cow;

use base64_simd::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use super::{SignError, SignInput, Signed, Verified, VerifyError};

/// How long a JWT stays valid after `iat`. Long enough for a slow receiver, short enough that a
/// captured request is useless soon; common JWT libraries refuse a token without `exp`.
const JWT_LIFETIME_SECS: i64 = 300;

/// Clock skew allowed past `exp` when verifying, as in `jsonwebtoken`'s default `Validation`.
const JWT_EXP_LEEWAY_SECS: i64 = 60;

/// HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2).
pub(super) const JWT_MIN_KEY_BYTES: usize = 32;

/// `{"typ":"JWT","alg":"HS256"}` in base64url: the header of every token, as jsonwebtoken's
/// `Header::new(Algorithm::HS256)` writes it (a test pins the two equal).
const HEADER_B64: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";

/// `{"data":"`, then the token, then `"}`: the scheme's body around the token (base64url has
/// nothing JSON must escape).
const BODY_OPEN: &[u8] = br#"{"data":""#;
const BODY_CLOSE: &[u8] = br#""}"#;

/// An HMAC-SHA256 tag (32 bytes) in base64url without padding.
const SIGNATURE_B64_LEN: usize = URL_SAFE_NO_PAD.encoded_length(32);

/// Signs with `key` (the newest of the endpoint's keys).
///
/// The token is written here rather than by `jsonwebtoken::encode`: HS256 is one HMAC over two
/// base64url segments (RFC 7515 §3.1), and writing the claims around the stored event's bytes
/// skips the serde pass, the JSON validation of the event and the key setup per attempt that
/// made signing ~8× a bare HMAC. The body is one allocation of its exact length, the claims are
/// encoded straight into it with SIMD base64, and the HMAC reads the signing input from there.
/// What is left is mostly SHA-256 over the base64 text, ~1.4× the bytes of the event itself.
/// Verification, where a library's checks matter, stays jsonwebtoken's; the tests check every
/// token against it.
pub(super) fn sign(key: &[u8], input: &SignInput) -> Result<Signed, SignError> {
    if key.len() < JWT_MIN_KEY_BYTES {
        return Err(SignError::JwtKeyTooShort(key.len()));
    }
    let claims = claims(input);

    let signing_input_len = HEADER_B64.len() + 1 + URL_SAFE_NO_PAD.encoded_length(claims.len());
    let body_len = BODY_OPEN.len() + signing_input_len + 1 + SIGNATURE_B64_LEN + BODY_CLOSE.len();
    let mut body = Vec::with_capacity(body_len);
    body.extend_from_slice(BODY_OPEN);
    body.extend_from_slice(HEADER_B64.as_bytes());
    body.push(b'.');
    URL_SAFE_NO_PAD.encode_append(&claims, &mut body);
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length (RFC 2104 §2)");
    mac.update(&body[BODY_OPEN.len()..]);
    body.push(b'.');
    URL_SAFE_NO_PAD.encode_append(mac.finalize().into_bytes(), &mut body);
    body.extend_from_slice(BODY_CLOSE);
    debug_assert_eq!(body.len(), body_len);
    Ok(Signed {
        body,
        headers: Vec::new(),
    })
}

/// The claims JSON: `webhook`, `url`, `data`, `iat`, `exp`, `jti`, in that order.
fn claims(input: &SignInput) -> Vec<u8> {
    // The stored event goes into the `data` claim as it is, made compact: no parse and
    // re-serialization per attempt, and the keys keep the order every other body has. The body
    // is JSON: [`crate::encode`] writes JSON for every jwt endpoint (XML with jwt is refused
    // where endpoints are checked), so it is embedded without being parsed again.
    let data = compact_json(input.body);
    let mut claims = Vec::with_capacity(data.len() + input.url.len() + 160);
    claims.extend_from_slice(br#"{"webhook":"#);
    json_string(&mut claims, input.endpoint_name);
    claims.extend_from_slice(br#","url":"#);
    json_string(&mut claims, input.url);
    claims.extend_from_slice(br#","data":"#);
    claims.extend_from_slice(data.as_bytes());
    let (iat, exp) = (input.timestamp, input.timestamp + JWT_LIFETIME_SECS);
    let mut number = itoa::Buffer::new();
    claims.extend_from_slice(br#","iat":"#);
    claims.extend_from_slice(number.format(iat).as_bytes());
    claims.extend_from_slice(br#","exp":"#);
    claims.extend_from_slice(number.format(exp).as_bytes());
    claims.extend_from_slice(br#","jti":"#);
    json_string(&mut claims, input.event_id);
    claims.push(b'}');
    claims
}

/// Appends `text` as a JSON string (quoted and escaped).
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a `str` into a `Vec` cannot fail: neither the serializer nor the writer has a
    // failure case for it.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// `text` (one JSON value) without the whitespace between its tokens: the same value, its keys
/// in the same order, every string and number byte for byte. RFC 8259 §2 allows whitespace only
/// between tokens, so dropping what lies outside strings changes nothing else. Borrowed when
/// there is nothing to drop (a stored event is written compact).
pub fn compact_json(text: &str) -> Cow<'_, str> {
    if plainly_compact(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    compact_by_walking(text)
}

/// [`compact_json`] the long way: string by string, whitespace outside them dropped.
fn compact_by_walking(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut out: Option<Vec<u8>> = None;
    while at < bytes.len() {
        let b = bytes[at];
        if b == b'"' {
            // A string, copied whole: jump from quote to backslash to quote.
            let end = string_end(bytes, at + 1);
            if let Some(out) = &mut out {
                out.extend_from_slice(&bytes[at..end]);
            }
            at = end;
            continue;
        }
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.get_or_insert_with(|| {
                let mut v = Vec::with_capacity(bytes.len());
                v.extend_from_slice(&bytes[..at]);
                v
            });
        } else if let Some(out) = &mut out {
            out.push(b);
        }
        at += 1;
    }
    match out {
        None => Cow::Borrowed(text),
        // Only ASCII whitespace between tokens was dropped: the rest is the input's own UTF-8.
        Some(out) => Cow::Owned(
            String::from_utf8(out)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
    }
}

/// Whether `bytes` (one JSON value) is compact, told from each whitespace byte's neighbours
/// alone, without finding where its strings begin and end; `false` also when it cannot tell.
///
/// Whitespace between tokens lies next to one of the six structural characters `{}[]:,`, more
/// whitespace, or the text's edge (RFC 8259 §2), and a string cannot hold a raw tab, newline,
/// carriage return or any other byte below 0x20 (§7). So a text whose only such bytes are spaces
/// between two other bytes holds them inside strings: compact. A stored event is serde_json's
/// compact output, whose spaces are in its text values ("Customer 42"), and passes in one
/// branch-free pass the compiler vectorizes; the rest (`"a, b"`, pretty-printed JSON) is walked
/// string by string.
fn plainly_compact(bytes: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return true;
    };
    if first <= b' ' || last <= b' ' {
        return false;
    }
    // `{` and `[`, `}` and `]` differ in bit 0x20 only.
    let touches = |b: u8| b <= b' ' || b == b',' || b == b':' || matches!(b | 0x20, b'{' | b'}');
    let middle = bytes.get(1..bytes.len() - 1).unwrap_or_default();
    let unclear = middle
        .iter()
        .zip(bytes)
        .zip(&bytes[2.min(bytes.len())..])
        // `|` and `&` rather than `||` and `&&`: no branch per byte, so the loop vectorizes.
        .fold(false, |unclear, ((&b, &before), &after)| {
            unclear | ((b <= b' ') & ((b != b' ') | touches(before) | touches(after)))
        });
    !unclear
}

/// Where the string whose contents begin at `from` ends: just past its closing quote (or the
/// end of `bytes`, for text cut short).
fn string_end(bytes: &[u8], mut from: usize) -> usize {
    while let Some(k) = memchr::memchr2(b'"', b'\\', &bytes[from..]) {
        let at = from + k;
        if bytes[at] == b'"' {
            return at + 1;
        }
        // An escape: the next byte is its, whatever it is.
        from = (at + 2).min(bytes.len());
    }
    bytes.len()
}

/// The JWT claims a verifier needs (`webhook` and `url` are informative and not checked).
#[derive(Debug, Deserialize)]
struct Claims<'a> {
    data: Value,
    iat: i64,
    exp: i64,
    jti: Cow<'a, str>,
}

/// The JWT scheme's body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    data: String,
}

/// Checks a `{"data": "<JWT>"}` body against every key; `exp` against `now`, with leeway.
pub(super) fn verify(keys: &[&[u8]], body: &[u8], now: i64) -> Result<Verified, VerifyError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(VerifyError::NotJwtEnvelope)?;
    let mut validation = Validation::new(Algorithm::HS256);
    // `exp` is checked against the caller's `now`, not the system clock, so that `verify` stays
    // pure; signature, algorithm and the presence of `exp` remain the library's job.
    validation.validate_exp = false;

    let mut error = VerifyError::NoKey;
    for key in keys {
        let decoded = jsonwebtoken::decode::<Claims<'static>>(
            &envelope.data,
            &DecodingKey::from_secret(key),
            &validation,
        );
        match decoded {
            Ok(token) => return unexpired(token.claims, now),
            // During a rotation the token may be under another of the keys: try the next one.
            Err(e) if *e.kind() == ErrorKind::InvalidSignature => error = VerifyError::Jwt(e),
            Err(e) => return Err(VerifyError::Jwt(e)),
        }
    }
    Err(error)
}

fn unexpired(claims: Claims<'static>, now: i64) -> Result<Verified, VerifyError> {
    let overdue = now.saturating_sub(claims.exp);
    if overdue > JWT_EXP_LEEWAY_SECS {
        return Err(VerifyError::JwtExpired(overdue));
    }
    Ok(Verified {
        id: claims.jti.into_owned(),
        timestamp: claims.iat,
        event: claims.data,
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    use super::*;
    use crate::sign::tests::{SPEC_TIMESTAMP, spec_input};
    use crate::sign::{Scheme, sign, verify};

    const JWT_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn jwt_round_trips_through_default_validation() {
        let now = chrono::Utc::now().timestamp();
        let event = r#"{"id":"evt_1","type":"orders.created","data":{"n":1}}"#;
        let input = SignInput {
            body: event,
            event_id: "evt_1",
            timestamp: now,
            ..spec_input()
        };
        let signed = sign(Scheme::Jwt, &[JWT_KEY], &input).unwrap();
        assert!(signed.headers.is_empty());

        let body = std::str::from_utf8(&signed.body).unwrap();
        let token = body
            .strip_prefix(r#"{"data":""#)
            .and_then(|rest| rest.strip_suffix(r#""}"#))
            .expect(r#"body is exactly {"data":"<JWT>"}"#);

        let decoded = jsonwebtoken::decode::<Value>(
            token,
            &DecodingKey::from_secret(JWT_KEY),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap();
        assert_eq!(decoded.header.alg, Algorithm::HS256);
        assert_eq!(decoded.header.typ.as_deref(), Some("JWT"));
        let claims = decoded.claims.as_object().unwrap();
        assert_eq!(claims.len(), 6);
        assert!(!claims.contains_key("aud"));
        assert_eq!(claims["webhook"], "erp");
        assert_eq!(claims["url"], "https://erp.example.com/hooks/pollhook");
        assert_eq!(
            claims["data"],
            serde_json::from_str::<Value>(event).unwrap()
        );
        assert_eq!(claims["iat"], now);
        assert_eq!(claims["exp"], now + JWT_LIFETIME_SECS);
        assert_eq!(claims["jti"], "evt_1");

        let verified = verify(Scheme::Jwt, &[JWT_KEY], &[], &signed.body, now, 300).unwrap();
        assert_eq!(verified.id, "evt_1");
        assert_eq!(verified.timestamp, now);
        assert_eq!(verified.event, claims["data"]);
    }

    /// The claims JSON of the token that signing `input` puts in the envelope, as its bytes are.
    fn signed_claims(input: &SignInput) -> String {
        let signed = sign(Scheme::Jwt, &[JWT_KEY], input).unwrap();
        let body: Value = serde_json::from_slice(&signed.body).unwrap();
        let token = body["data"].as_str().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn jwt_claims_are_serialized_in_the_documented_order() {
        assert_eq!(
            signed_claims(&spec_input()),
            // `data` is the event's own bytes (the spec vector's, with its space), not re-serialized.
            r#"{"webhook":"erp","url":"https://erp.example.com/hooks/pollhook","data":{"test":2432232314},"iat":1614265330,"exp":1614265630,"jti":"msg_p5jXN8AQM9LWM0D4loKWxJek"}"#
        );
    }

    #[test]
    fn the_jwt_data_claim_is_the_stored_event_compact_in_its_own_key_order() {
        let event = "{\"id\":\"evt_1\",\"data\": {\"z\": 1, \"a\":\"x \\\" y\",\n \"n\": 1.50, \"big\": 100000000000000000000001}}";
        let input = SignInput {
            body: event,
            ..spec_input()
        };
        assert_eq!(
            signed_claims(&input),
            r#"{"webhook":"erp","url":"https://erp.example.com/hooks/pollhook","data":{"id":"evt_1","data":{"z":1,"a":"x \" y","n":1.50,"big":100000000000000000000001}},"iat":1614265330,"exp":1614265630,"jti":"msg_p5jXN8AQM9LWM0D4loKWxJek"}"#
        );
        assert_eq!(compact_json(" [ 1 , \"a b\" ] "), r#"[1,"a b"]"#);
        assert_eq!(compact_json(r#"{"k":"\\"}"#), r#"{"k":"\\"}"#);
        // Escaped quotes and backslashes do not end a string; its spaces and non-ASCII stay.
        assert_eq!(
            compact_json("{ \"k\" : \"a \\\" b \\\\\" , \"é ü\" : [ \"\\\\ \" ] }"),
            r#"{"k":"a \" b \\","é ü":["\\ "]}"#
        );
        // Already compact (spaces only inside strings): the input itself, not a copy.
        let compact = r#"{"name":"Customer 42","lines":[{"note":"x y"}]}"#;
        assert!(matches!(compact_json(compact), Cow::Borrowed(t) if t == compact));
    }

    #[test]
    fn an_event_is_told_compact_from_its_spaces_neighbours_or_walked() {
        // serde_json's compact output, spaces only inside text values: told compact at once.
        let stored = r#"{"name":"Customer 42","note":"Leave at the door.","lines":[{"q":1}]}"#;
        assert!(plainly_compact(stored.as_bytes()));
        assert!(plainly_compact(b""));
        assert!(plainly_compact(b"1"));
        assert!(
            plainly_compact(br#"" a ""#),
            "a space beside a quote is in the string"
        );
        // Whitespace that may lie between tokens: not told, walked instead.
        for unclear in [
            r#"{"a":"x, y"}"#,
            r#"{"a":"x : y"}"#,
            r#"["[ ]"]"#,
            r#"{"a":"two  spaces"}"#,
            r#"{"a": 1}"#,
            r#"[1 ,2]"#,
            " 1",
            "1 ",
            "[\n1]",
            "[1,\t2]",
            "{\r\n}",
        ] {
            assert!(!plainly_compact(unclear.as_bytes()), "{unclear:?}");
        }
        // Walked, a compact text is still borrowed, and the rest is made compact.
        let inside = r#"{"a":"x, y","b":["[ ]"," : "]}"#;
        assert!(matches!(compact_json(inside), Cow::Borrowed(t) if t == inside));
        assert_eq!(
            compact_json("{\"a\": \"x, y\" ,\n\t\"b\" : [ 1 ]}"),
            r#"{"a":"x, y","b":[1]}"#
        );
    }

    /// Any JSON value with text values full of the bytes that matter here: spaces beside
    /// structural characters, quotes, backslashes, controls, non-ASCII.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter_map("finite", serde_json::Number::from_f64)
                .prop_map(Value::Number),
            "[a-c ,:{}\\[\\]\"\\\\\t\n\u{1}é😀]{0,10}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-c ,:\"]{0,3}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// `value` as JSON text with whitespace in some of the gaps between its tokens, most left
    /// empty, so that one space in one kind of gap is often the only whitespace there is.
    fn sparsely_spaced(value: &Value, seed: &mut u64, out: &mut String) {
        fn gap(seed: &mut u64, out: &mut String) {
            // xorshift: deterministic from the proptest-drawn seed.
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            out.push_str(["", "", "", "", "", "", " ", "\t"][(*seed % 8) as usize]);
        }
        match value {
            Value::Object(map) => {
                out.push('{');
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        gap(seed, out);
                        out.push(',');
                    }
                    gap(seed, out);
                    out.push_str(&serde_json::to_string(k).unwrap());
                    gap(seed, out);
                    out.push(':');
                    gap(seed, out);
                    sparsely_spaced(v, seed, out);
                }
                gap(seed, out);
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        gap(seed, out);
                        out.push(',');
                    }
                    gap(seed, out);
                    sparsely_spaced(v, seed, out);
                }
                gap(seed, out);
                out.push(']');
            }
            scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// However a value is spaced, `data` is its compact text; and a text told compact from
        /// its spaces' neighbours is one the long walk finds nothing to drop in.
        #[test]
        fn compact_json_is_serde_jsons_compact_text(value in json(), seed in any::<u64>()) {
            let compact = serde_json::to_string(&value).unwrap();
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            let mut sparse = String::new();
            sparsely_spaced(&value, &mut (seed | 1), &mut sparse);
            prop_assert!(matches!(compact_json(&compact), Cow::Borrowed(t) if t == compact));
            for text in [&compact, &pretty, &sparse] {
                prop_assert_eq!(&compact_json(text), &compact);
                if plainly_compact(text.as_bytes()) {
                    prop_assert!(matches!(compact_by_walking(text), Cow::Borrowed(_)), "{:?}", text);
                }
            }
        }
    }

    #[test]
    fn the_written_token_is_what_jsonwebtoken_writes_for_the_same_claims() {
        let header = serde_json::to_vec(&jsonwebtoken::Header::new(Algorithm::HS256)).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(header), HEADER_B64);
        // Same claims bytes, same key: the very same token, byte for byte; three names, so the
        // claims' length meets base64's three cases (no, one and two bytes left over).
        for name in ["erp \"main\"", "erp \"main\" 2", "erp \"main\" 23"] {
            let input = SignInput {
                endpoint_name: name,
                ..spec_input()
            };
            let signed = sign(Scheme::Jwt, &[JWT_KEY], &input).unwrap();
            let body: Value = serde_json::from_slice(&signed.body).unwrap();
            let token = body["data"].as_str().unwrap();
            let text = String::from_utf8(
                URL_SAFE_NO_PAD
                    .decode(token.split('.').nth(1).unwrap())
                    .unwrap(),
            )
            .unwrap();
            // Raw, so the library writes the claims' bytes as they are, in their order.
            let claims: Box<serde_json::value::RawValue> = serde_json::from_str(&text).unwrap();
            let by_library = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(JWT_KEY),
            )
            .unwrap();
            assert_eq!(token, by_library, "{name}");
            let claims: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(claims["webhook"], name, "names are escaped");
        }
    }

    #[test]
    fn a_stored_event_signs_to_the_pinned_body() {
        // What pollhook 0a69b08 (the `base64` crate, every event walked) wrote for these inputs.
        let input = SignInput {
            body: r#"{"id":"evt_1","type":"orders.updated","data":{"name":"Customer 42","note":"Leave at the door.","lines":[{"sku":"SKU-1","qty":2}]}}"#,
            ..spec_input()
        };
        let signed = sign(Scheme::Jwt, &[JWT_KEY], &input).unwrap();
        assert_eq!(
            std::str::from_utf8(&signed.body).unwrap(),
            concat!(
                r#"{"data":""#,
                "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.",
                "eyJ3ZWJob29rIjoiZXJwIiwidXJsIjoiaHR0cHM6Ly9lcnAuZXhhbXBsZS5jb20vaG9va3MvcG9sbGhvb2si",
                "LCJkYXRhIjp7ImlkIjoiZXZ0XzEiLCJ0eXBlIjoib3JkZXJzLnVwZGF0ZWQiLCJkYXRhIjp7Im5hbWUiOiJD",
                "dXN0b21lciA0MiIsIm5vdGUiOiJMZWF2ZSBhdCB0aGUgZG9vci4iLCJsaW5lcyI6W3sic2t1IjoiU0tVLTEi",
                "LCJxdHkiOjJ9XX19LCJpYXQiOjE2MTQyNjUzMzAsImV4cCI6MTYxNDI2NTYzMCwianRpIjoibXNnX3A1alhO",
                "OEFRTTlMV00wRDRsb0tXeEplayJ9.",
                "81PWiGU9K7XLdM0dl4roe0dBfn1b92sdouXS2iqRt0c",
                r#""}"#,
            )
        );
    }

    #[test]
    fn jwt_verify_accepts_an_older_key_and_refuses_a_wrong_one() {
        let old = b"an older key that is 32 bytes ok";
        let signed = sign(Scheme::Jwt, &[old], &spec_input()).unwrap();
        let verify_with =
            |keys: &[&[u8]]| verify(Scheme::Jwt, keys, &[], &signed.body, SPEC_TIMESTAMP, 300);

        assert!(verify_with(&[JWT_KEY, old]).is_ok());
        let err = verify_with(&[JWT_KEY]).unwrap_err();
        assert!(matches!(err, VerifyError::Jwt(_)), "{err}");
    }

    #[test]
    fn jwt_verify_refuses_an_expired_token_and_a_bad_envelope() {
        let signed = sign(Scheme::Jwt, &[JWT_KEY], &spec_input()).unwrap();
        let late = SPEC_TIMESTAMP + JWT_LIFETIME_SECS + 61;
        let err = verify(Scheme::Jwt, &[JWT_KEY], &[], &signed.body, late, 300).unwrap_err();
        assert!(matches!(err, VerifyError::JwtExpired(61)), "{err}");

        let err = verify(Scheme::Jwt, &[JWT_KEY], &[], br#"{"token":"x"}"#, 0, 300).unwrap_err();
        assert!(matches!(err, VerifyError::NotJwtEnvelope(_)), "{err}");
    }
}
