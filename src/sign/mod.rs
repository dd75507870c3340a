//! Signing: turns an event into the body and headers an endpoint's scheme asks for, and checks them
//! on the receiving side (`pollhook verify`, tests). This room is the dispatch: the [`Scheme`], the
//! facts a signature covers and what comes out, the errors, and the endpoint's secrets; each
//! scheme's own wire format lives in its file ([`jwt`], [`standard_webhooks`]).
//!
//! In: a [`Scheme`], the endpoint's keys (newest first) and a [`SignInput`]. Out: a [`Signed`] body
//! plus the scheme's own headers; the generic `Pollhook-*` headers are the sender's business.
//! Pure: the clock comes in as `timestamp` / `now`, so a signature is a function of its inputs.
//!
//! Invariant: whatever [`sign`] produces, [`verify`] with the same keys accepts, and so do the
//! receivers' libraries: the official Standard Webhooks libraries for `standard-webhooks`, any HS256
//! JWT library with default validation for `jwt` (which is why claims carry `exp` and no `aud`).

mod jwt;
mod standard_webhooks;

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use jwt::JWT_MIN_KEY_BYTES;
pub use jwt::compact_json;
use standard_webhooks::WHSEC_MIN_KEY_BYTES;

/// How a Standard Webhooks secret starts.
pub use crate::secret::WHSEC_PREFIX;

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
        Scheme::Jwt => jwt::sign(newest, input),
        Scheme::StandardWebhooks => Ok(standard_webhooks::sign(keys, input)),
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
        Scheme::Jwt => jwt::verify(keys, body, now),
        Scheme::StandardWebhooks => {
            standard_webhooks::verify(keys, headers, body, now, tolerance_secs)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks spec's published vector, also pinned by the official libraries' tests;
    // the schemes' own tests share it.
    pub(super) const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    pub(super) const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    pub(super) const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    pub(super) const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    pub(super) const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    pub(super) fn spec_input() -> SignInput<'static> {
        SignInput {
            endpoint_name: "erp",
            url: "https://erp.example.com/hooks/pollhook",
            event_id: SPEC_ID,
            body: SPEC_BODY,
            timestamp: SPEC_TIMESTAMP,
        }
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
