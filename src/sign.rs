//! Signing: turns an event into the body and headers an endpoint's scheme asks for, and checks them
//! on the receiving side (`pollhook verify`, tests).
//!
//! In: a [`Scheme`], the endpoint's keys (newest first) and a [`SignInput`]. Out: a [`Signed`] body
//! plus the scheme's own headers; the generic `Pollhook-*` headers are the sender's business.
//! Pure: the clock comes in as `timestamp` / `now`, so a signature is a function of its inputs.
//!
//! Invariant: whatever [`sign`] produces, [`verify`] with the same keys accepts, and so do the
//! receivers' libraries: the official Standard Webhooks libraries for `standard-webhooks`, any HS256
//! JWT library with default validation for `jwt` (which is why claims carry `exp` and no `aud`).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::Sha256;
use thiserror::Error;

/// How long a JWT stays valid after `iat`. Long enough for a slow receiver, short enough that a
/// captured request is useless soon; common JWT libraries refuse a token without `exp`.
const JWT_LIFETIME_SECS: i64 = 300;
/// Clock skew allowed past `exp` when verifying, as in `jsonwebtoken`'s default `Validation`.
const JWT_EXP_LEEWAY_SECS: i64 = 60;
/// HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2).
const JWT_MIN_KEY_BYTES: usize = 32;
/// Standard Webhooks: "Random. At least 24 bytes".
const WHSEC_MIN_KEY_BYTES: usize = 24;
/// How a Standard Webhooks secret starts.
pub use crate::secret::WHSEC_PREFIX;

const WEBHOOK_ID: &str = "webhook-id";
const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// How an endpoint's requests are signed; one per endpoint, named as in the config (`signing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Body `{"data": "<JWT>"}`, the event in an HS256 JWT's `data` claim.
    Jwt,
    /// Body is the event; `webhook-id`, `webhook-timestamp` and `webhook-signature` headers.
    StandardWebhooks,
}

impl Scheme {
    /// The scheme's name in config files and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::StandardWebhooks => "standard-webhooks",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = SignError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jwt" => Ok(Self::Jwt),
            "standard-webhooks" => Ok(Self::StandardWebhooks),
            other => Err(SignError::UnknownScheme(other.to_owned())),
        }
    }
}

/// What one attempt sends: the body and the headers the scheme adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The exact bytes to POST; they are what was signed.
    pub body: Vec<u8>,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` for Standard Webhooks; none for JWT.
    pub headers: Vec<(&'static str, String)>,
}

/// The facts a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// The endpoint's name (the JWT `webhook` claim).
    pub endpoint_name: &'a str,
    /// The endpoint's URL (the JWT `url` claim).
    pub url: &'a str,
    /// The event id: `webhook-id` / `jti`, the receiver's idempotency key.
    pub event_id: &'a str,
    /// The body as the endpoint gets it ([`crate::encode`]): the event's compact JSON, or its
    /// XML. Standard Webhooks signs these bytes; JWT embeds them as a claim, so they must be JSON.
    pub body: &'a str,
    /// When this attempt is signed, in unix seconds; fresh for every attempt.
    pub timestamp: i64,
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// `webhook-id`, or the JWT's `jti`.
    pub id: String,
    /// `webhook-timestamp`, or the JWT's `iat`.
    pub timestamp: i64,
    /// The event: the body, or the JWT's `data` claim.
    pub event: Value,
}

/// Why an event could not be signed, or a secret not used.
#[derive(Debug, Error)]
pub enum SignError {
    /// A scheme name that is neither `jwt` nor `standard-webhooks`.
    #[error("unknown signing scheme {0:?}; expected \"jwt\" or \"standard-webhooks\"")]
    UnknownScheme(String),
    /// A Standard Webhooks secret that is not `whsec_<base64>` of enough bytes.
    #[error(
        "a standard-webhooks secret must be whsec_ followed by the base64 of at least 24 random bytes; {0}"
    )]
    BadWhsec(&'static str),
    /// A JWT key too short for HS256.
    #[error("a jwt key must be at least 32 bytes (HS256); this one has {0}")]
    JwtKeyTooShort(usize),
    /// Signing was asked for with no key.
    #[error("no signing key given")]
    NoKey,
    /// `body` did not parse as JSON (JWT embeds the event as an object).
    #[error("the event is not valid JSON")]
    EventNotJson(#[source] serde_json::Error),
    /// The JWT library refused to sign.
    #[error("could not sign the JWT")]
    Jwt(#[source] jsonwebtoken::errors::Error),
}

/// Why a received request was refused, worded for the receiver who has to fix it.
#[derive(Debug, Error)]
pub enum VerifyError {
    /// Verification was asked for with no key.
    #[error("no verification key given")]
    NoKey,
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not an integer.
    #[error("webhook-timestamp {0:?} is not unix seconds")]
    BadTimestamp(String),
    /// The request is older than the tolerance: a replay, or a clock out of sync.
    #[error(
        "webhook-timestamp is {age}s old, more than the {tolerance}s tolerance (a replay, or a clock out of sync)"
    )]
    TimestampTooOld {
        /// Seconds between the timestamp and now.
        age: i64,
        /// The allowed skew.
        tolerance: i64,
    },
    /// The request is dated in the future beyond the tolerance.
    #[error(
        "webhook-timestamp is {ahead}s in the future, more than the {tolerance}s tolerance (a clock out of sync)"
    )]
    TimestampTooNew {
        /// Seconds between now and the timestamp.
        ahead: i64,
        /// The allowed skew.
        tolerance: i64,
    },
    /// No `v1` signature matched any key.
    #[error(
        "no v1 signature in webhook-signature matches any key (wrong secret, or the body changed after signing)"
    )]
    NoSignatureMatched,
    /// A Standard Webhooks body that is not JSON.
    #[error("the body is not JSON")]
    BodyNotJson(#[source] serde_json::Error),
    /// A Standard Webhooks body that opens like XML but is not a pollhook `<event>`.
    #[error("the body is not a well-formed XML <event>: {0}")]
    BodyNotXml(String),
    /// A JWT-scheme body that is not `{"data": "<JWT>"}`.
    #[error(r#"the body is not {{"data": "<JWT>"}}"#)]
    NotJwtEnvelope(#[source] serde_json::Error),
    /// The JWT's signature, algorithm or claims are wrong.
    #[error("JWT invalid")]
    Jwt(#[source] jsonwebtoken::errors::Error),
    /// The JWT's `exp` has passed.
    #[error("the JWT expired {0}s ago")]
    JwtExpired(i64),
}

/// Signs one attempt of an event for an endpoint.
///
/// `keys` are the endpoint's signing keys, newest first. Standard Webhooks signs with each of them
/// (zero-downtime rotation: the receiver accepts any match); JWT uses `keys[0]` only.
pub fn sign(scheme: Scheme, keys: &[&[u8]], input: &SignInput) -> Result<Signed, SignError> {
    let newest = *keys.first().ok_or(SignError::NoKey)?;
    match scheme {
        Scheme::Jwt => sign_jwt(newest, input),
        Scheme::StandardWebhooks => Ok(sign_standard_webhooks(keys, input)),
    }
}

fn sign_jwt(key: &[u8], input: &SignInput) -> Result<Signed, SignError> {
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

fn sign_standard_webhooks(keys: &[&[u8]], input: &SignInput) -> Signed {
    let body = input.body.as_bytes();
    let signatures = keys
        .iter()
        .map(|key| {
            let tag = whsec_mac(key, input.event_id, input.timestamp, body).finalize();
            format!("v1,{}", STANDARD.encode(tag.into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ");
    Signed {
        body: body.to_vec(),
        headers: vec![
            (WEBHOOK_ID, input.event_id.to_owned()),
            (WEBHOOK_TIMESTAMP, input.timestamp.to_string()),
            (WEBHOOK_SIGNATURE, signatures),
        ],
    }
}

/// HMAC-SHA256 over `{id}.{timestamp}.{body}`, the Standard Webhooks signed content.
fn whsec_mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length (RFC 2104 §2)");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    mac
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

/// Turns a configured secret into key bytes, refusing one that is malformed or too weak.
///
/// Standard Webhooks: `whsec_<base64>`, at least 24 bytes once decoded. JWT: the secret's UTF-8
/// bytes, at least 32 of them.
pub fn decode_secret(scheme: Scheme, secret: &str) -> Result<Vec<u8>, SignError> {
    match scheme {
        Scheme::Jwt if secret.len() < JWT_MIN_KEY_BYTES => {
            Err(SignError::JwtKeyTooShort(secret.len()))
        }
        Scheme::Jwt => Ok(secret.as_bytes().to_vec()),
        Scheme::StandardWebhooks => {
            let encoded = secret
                .strip_prefix(WHSEC_PREFIX)
                .ok_or(SignError::BadWhsec("this one does not start with whsec_"))?;
            let key = STANDARD
                .decode(encoded)
                .map_err(|_| SignError::BadWhsec("the part after whsec_ is not base64"))?;
            if key.len() < WHSEC_MIN_KEY_BYTES {
                return Err(SignError::BadWhsec("this one is shorter"));
            }
            Ok(key)
        }
    }
}

/// A fresh random secret in the form [`decode_secret`] accepts.
///
/// Standard Webhooks: `whsec_` and the base64 of 24 random bytes. JWT: 48 url-safe characters
/// (36 random bytes).
pub fn generate_secret(scheme: Scheme) -> String {
    let mut bytes = [0u8; 36];
    // ThreadRng is a CSPRNG seeded from the OS.
    rand::rng().fill_bytes(&mut bytes);
    match scheme {
        Scheme::Jwt => URL_SAFE_NO_PAD.encode(bytes),
        Scheme::StandardWebhooks => {
            format!(
                "{WHSEC_PREFIX}{}",
                STANDARD.encode(&bytes[..WHSEC_MIN_KEY_BYTES])
            )
        }
    }
}

/// Checks a received request as its receiver would.
///
/// `headers` names match case-insensitively; `keys` are every key the endpoint may be using.
/// Standard Webhooks: some `v1` signature must match some key (constant-time), and
/// `webhook-timestamp` must be within `tolerance_secs` of `now`. JWT: the body must be
/// `{"data": "<JWT>"}`, the token HS256 under some key, with `exp` not past `now` (give or take
/// 60 s of leeway); `tolerance_secs` does not apply, the token carries its own window.
pub fn verify(
    scheme: Scheme,
    keys: &[&[u8]],
    headers: &[(String, String)],
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<Verified, VerifyError> {
    if keys.is_empty() {
        return Err(VerifyError::NoKey);
    }
    match scheme {
        Scheme::Jwt => verify_jwt(keys, body, now),
        Scheme::StandardWebhooks => {
            verify_standard_webhooks(keys, headers, body, now, tolerance_secs)
        }
    }
}

fn verify_standard_webhooks(
    keys: &[&[u8]],
    headers: &[(String, String)],
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<Verified, VerifyError> {
    let id = header(headers, WEBHOOK_ID)?;
    let raw_timestamp = header(headers, WEBHOOK_TIMESTAMP)?;
    let signatures = header(headers, WEBHOOK_SIGNATURE)?;
    let timestamp: i64 = raw_timestamp
        .parse()
        .map_err(|_| VerifyError::BadTimestamp(raw_timestamp.to_owned()))?;

    let age = now.saturating_sub(timestamp);
    if age > tolerance {
        return Err(VerifyError::TimestampTooOld { age, tolerance });
    }
    let ahead = timestamp.saturating_sub(now);
    if ahead > tolerance {
        return Err(VerifyError::TimestampTooNew { ahead, tolerance });
    }

    // Undecodable entries and other versions (`v1a`, asymmetric) are skipped, not fatal: the
    // header may legitimately carry signatures this receiver cannot check.
    let candidates: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .collect();
    let matched = keys.iter().any(|key| {
        let mac = whsec_mac(key, id, timestamp, body);
        candidates
            .iter()
            .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    });
    if !matched {
        return Err(VerifyError::NoSignatureMatched);
    }

    Ok(Verified {
        id: id.to_owned(),
        timestamp,
        event: event_of(body)?,
    })
}

/// The event a verified body carries: its JSON, or (a body that opens with `<`, an endpoint with
/// `format = "xml"`) the `<event>` read back by the xmltodict convention, all values strings.
fn event_of(body: &[u8]) -> Result<Value, VerifyError> {
    let xml = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'<');
    if !xml {
        return serde_json::from_slice(body).map_err(VerifyError::BodyNotJson);
    }
    let text = std::str::from_utf8(body).map_err(|e| VerifyError::BodyNotXml(e.to_string()))?;
    match crate::decode::xml(text).map_err(VerifyError::BodyNotXml)? {
        Value::Object(mut root) => root
            .remove("event")
            .ok_or_else(|| VerifyError::BodyNotXml("its root element is not <event>".into())),
        _ => Err(VerifyError::BodyNotXml("no root element".into())),
    }
}

fn verify_jwt(keys: &[&[u8]], body: &[u8], now: i64) -> Result<Verified, VerifyError> {
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

/// The value of header `name`, matched case-insensitively as HTTP does.
fn header<'h>(headers: &'h [(String, String)], name: &'static str) -> Result<&'h str, VerifyError> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .ok_or(VerifyError::MissingHeader(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks spec's published vector, also pinned by the official libraries' tests.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    const JWT_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn spec_input() -> SignInput<'static> {
        SignInput {
            endpoint_name: "erp",
            url: "https://erp.example.com/hooks/pollhook",
            event_id: SPEC_ID,
            body: SPEC_BODY,
            timestamp: SPEC_TIMESTAMP,
        }
    }

    fn owned(headers: &[(&'static str, String)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect()
    }

    fn signature_header(signed: &Signed) -> &str {
        signed
            .headers
            .iter()
            .find(|(n, _)| *n == WEBHOOK_SIGNATURE)
            .map(|(_, v)| v.as_str())
            .expect("a webhook-signature header")
    }

    #[test]
    fn standard_webhooks_reproduces_the_spec_test_vector() {
        let key = decode_secret(Scheme::StandardWebhooks, SPEC_SECRET).unwrap();
        let signed = sign(Scheme::StandardWebhooks, &[&key], &spec_input()).unwrap();

        assert_eq!(signed.body, SPEC_BODY.as_bytes());
        assert_eq!(
            signed.headers,
            vec![
                ("webhook-id", SPEC_ID.to_owned()),
                ("webhook-timestamp", SPEC_TIMESTAMP.to_string()),
                ("webhook-signature", SPEC_SIGNATURE.to_owned()),
            ]
        );
    }

    #[test]
    fn an_xml_body_is_signed_over_its_bytes_and_verifies() {
        let key = decode_secret(Scheme::StandardWebhooks, SPEC_SECRET).unwrap();
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><event><id>evt_1</id><type>orders.created</type><data id="7"/></event>"#;
        let input = SignInput {
            body: xml,
            ..spec_input()
        };
        let signed = sign(Scheme::StandardWebhooks, &[&key], &input).unwrap();
        assert_eq!(signed.body, xml.as_bytes());
        let headers: Vec<(String, String)> = signed
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        let verified = verify(
            Scheme::StandardWebhooks,
            &[&key],
            &headers,
            &signed.body,
            SPEC_TIMESTAMP,
            300,
        )
        .unwrap();
        assert_eq!(verified.event["type"], "orders.created");
        assert_eq!(verified.event["data"]["@id"], "7");
        let err = verify(
            Scheme::StandardWebhooks,
            &[&key],
            &headers,
            b"<event><id>evt_1</id></event>",
            SPEC_TIMESTAMP,
            300,
        )
        .unwrap_err();
        assert!(matches!(err, VerifyError::NoSignatureMatched), "{err}");
    }

    #[test]
    fn standard_webhooks_verifies_the_spec_test_vector() {
        let key = decode_secret(Scheme::StandardWebhooks, SPEC_SECRET).unwrap();
        let headers = owned(&[
            ("Webhook-Id", SPEC_ID.to_owned()),
            ("WEBHOOK-TIMESTAMP", SPEC_TIMESTAMP.to_string()),
            (
                "webhook-signature",
                format!("v1a,c2tpcHBlZA== {SPEC_SIGNATURE}"),
            ),
        ]);
        let verified = verify(
            Scheme::StandardWebhooks,
            &[&key],
            &headers,
            SPEC_BODY.as_bytes(),
            SPEC_TIMESTAMP,
            300,
        )
        .unwrap();

        assert_eq!(verified.id, SPEC_ID);
        assert_eq!(verified.timestamp, SPEC_TIMESTAMP);
        assert_eq!(
            verified.event,
            serde_json::json!({ "test": 2_432_232_314_u64 })
        );
    }

    #[test]
    fn rotation_signs_with_every_key_and_verify_accepts_either() {
        let new = decode_secret(
            Scheme::StandardWebhooks,
            &generate_secret(Scheme::StandardWebhooks),
        )
        .unwrap();
        let old = decode_secret(Scheme::StandardWebhooks, SPEC_SECRET).unwrap();
        let signed = sign(Scheme::StandardWebhooks, &[&new, &old], &spec_input()).unwrap();

        let signatures: Vec<&str> = signature_header(&signed).split(' ').collect();
        assert_eq!(signatures.len(), 2);
        assert_eq!(signatures[1], SPEC_SIGNATURE);

        let headers = owned(&signed.headers);
        for key in [&new, &old] {
            verify(
                Scheme::StandardWebhooks,
                &[key],
                &headers,
                &signed.body,
                SPEC_TIMESTAMP,
                300,
            )
            .unwrap();
        }
    }

    #[test]
    fn standard_webhooks_refuses_a_tampered_body() {
        let key = decode_secret(Scheme::StandardWebhooks, SPEC_SECRET).unwrap();
        let signed = sign(Scheme::StandardWebhooks, &[&key], &spec_input()).unwrap();
        let err = verify(
            Scheme::StandardWebhooks,
            &[&key],
            &owned(&signed.headers),
            br#"{"test": 2432232315}"#,
            SPEC_TIMESTAMP,
            300,
        )
        .unwrap_err();
        assert!(matches!(err, VerifyError::NoSignatureMatched), "{err}");
    }

    #[test]
    fn standard_webhooks_refuses_a_timestamp_outside_the_tolerance() {
        let key = decode_secret(Scheme::StandardWebhooks, SPEC_SECRET).unwrap();
        let signed = sign(Scheme::StandardWebhooks, &[&key], &spec_input()).unwrap();
        let headers = owned(&signed.headers);
        let check = |now| {
            verify(
                Scheme::StandardWebhooks,
                &[&key],
                &headers,
                &signed.body,
                now,
                300,
            )
        };

        assert!(check(SPEC_TIMESTAMP + 300).is_ok());
        assert!(matches!(
            check(SPEC_TIMESTAMP + 301),
            Err(VerifyError::TimestampTooOld { age: 301, .. })
        ));
        assert!(matches!(
            check(SPEC_TIMESTAMP - 301),
            Err(VerifyError::TimestampTooNew { ahead: 301, .. })
        ));
    }

    #[test]
    fn standard_webhooks_names_a_missing_header() {
        let key = decode_secret(Scheme::StandardWebhooks, SPEC_SECRET).unwrap();
        let headers = owned(&[("webhook-id", SPEC_ID.to_owned())]);
        let err = verify(Scheme::StandardWebhooks, &[&key], &headers, b"{}", 0, 300).unwrap_err();
        assert_eq!(err.to_string(), "missing header webhook-timestamp");
    }

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

    #[test]
    fn jwt_claims_are_serialized_in_the_documented_order() {
        let signed = sign(Scheme::Jwt, &[JWT_KEY], &spec_input()).unwrap();
        let body: Value = serde_json::from_slice(&signed.body).unwrap();
        let token = body["data"].as_str().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(
            json,
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
        let signed = sign(Scheme::Jwt, &[JWT_KEY], &input).unwrap();
        let body: Value = serde_json::from_slice(&signed.body).unwrap();
        let token = body["data"].as_str().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(
            json,
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

    #[test]
    fn a_short_jwt_key_is_refused() {
        let err = decode_secret(Scheme::Jwt, "too-short").unwrap_err();
        assert_eq!(
            err.to_string(),
            "a jwt key must be at least 32 bytes (HS256); this one has 9"
        );
        let short: &[u8] = b"too-short";
        assert!(matches!(
            sign(Scheme::Jwt, &[short], &spec_input()),
            Err(SignError::JwtKeyTooShort(9))
        ));
    }

    #[test]
    fn a_standard_webhooks_secret_must_be_whsec_base64() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
            "whsec_c2hvcnQ=",
        ] {
            let err = decode_secret(Scheme::StandardWebhooks, bad).unwrap_err();
            assert!(err.to_string().contains("whsec_"), "{err}");
        }
    }

    #[test]
    fn generated_secrets_decode() {
        for scheme in [Scheme::Jwt, Scheme::StandardWebhooks] {
            let secret = generate_secret(scheme);
            assert!(decode_secret(scheme, &secret).is_ok(), "{scheme}: {secret}");
            assert_ne!(secret, generate_secret(scheme));
        }
        assert_eq!(generate_secret(Scheme::Jwt).len(), 48);
    }

    #[test]
    fn scheme_names_agree_across_serde_fromstr_and_display() {
        for scheme in [Scheme::Jwt, Scheme::StandardWebhooks] {
            let json = serde_json::to_string(&scheme).unwrap();
            assert_eq!(json, format!("\"{scheme}\""));
            assert_eq!(scheme.to_string().parse::<Scheme>().unwrap(), scheme);
        }
        assert!("hmac".parse::<Scheme>().is_err());
    }
}
