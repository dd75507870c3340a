//! The `jwt` scheme: the event goes into the `data` claim of an HS256 JWT, and the body is
//! `{"data": "<JWT>"}`; no headers of its own.
//!
//! In: the endpoint's newest key and a [`SignInput`] (signing), or the keys and a received body
//! (verifying). Out: a [`Signed`] body, or the [`Verified`] claims.
//!
//! Invariant: the token passes any HS256 library's default validation (it carries `exp`, no
//! `aud`), and `data` is the stored event's own bytes made compact, its keys in their own order.

use std::borrow::Cow;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{SignError, SignInput, Signed, Verified, VerifyError};

/// How long a JWT stays valid after `iat`. Long enough for a slow receiver, short enough that a
/// captured request is useless soon; common JWT libraries refuse a token without `exp`.
const JWT_LIFETIME_SECS: i64 = 300;

/// Clock skew allowed past `exp` when verifying, as in `jsonwebtoken`'s default `Validation`.
const JWT_EXP_LEEWAY_SECS: i64 = 60;

/// HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2).
pub(super) const JWT_MIN_KEY_BYTES: usize = 32;

/// Signs with `key` (the newest of the endpoint's keys).
pub(super) fn sign(key: &[u8], input: &SignInput) -> Result<Signed, SignError> {
    if key.len() < JWT_MIN_KEY_BYTES {
        return Err(SignError::JwtKeyTooShort(key.len()));
    }
    // The stored event goes into the `data` claim as it is, made compact: no parse and
    // re-serialization per attempt, and the keys keep the order every other body has.
    let data = RawValue::from_string(compact_json(input.body)).map_err(SignError::EventNotJson)?;
    let claims = SignedClaims {
        webhook: input.endpoint_name,
        url: input.url,
        data: &data,
        iat: input.timestamp,
        exp: input.timestamp + JWT_LIFETIME_SECS,
        jti: input.event_id,
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key),
    )
    .map_err(SignError::Jwt)?;
    // A JWT is base64url segments joined by dots: nothing in it needs JSON escaping.
    let body = format!(r#"{{"data":"{token}"}}"#).into_bytes();
    Ok(Signed {
        body,
        headers: Vec::new(),
    })
}

/// The JWT claims as signed, in the order they are serialized; `data` is the stored event.
#[derive(Serialize)]
struct SignedClaims<'a> {
    webhook: &'a str,
    url: &'a str,
    data: &'a RawValue,
    iat: i64,
    exp: i64,
    jti: &'a str,
}

/// `text` (one JSON value) without the whitespace between its tokens: the same value, its keys
/// in the same order, every string and number byte for byte. RFC 8259 §2 allows whitespace only
/// between tokens, so dropping what lies outside strings changes nothing else.
pub fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
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
