//! The `standard-webhooks` scheme: the body is the event's bytes as they are, signed with
//! HMAC-SHA256 over `{id}.{timestamp}.{body}` under every key, in the `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` headers.
//!
//! In: the endpoint's keys (newest first) and a [`SignInput`] (signing), or the keys, headers and
//! body of a received request (verifying). Out: a [`Signed`] body and headers, or [`Verified`].
//!
//! Invariant: the spec's published test vector signs and verifies byte for byte; a request
//! verifies only if some `v1` signature matches some key (constant-time) within the tolerance.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{SignInput, Signed, Verified, VerifyError};

/// Standard Webhooks: "Random. At least 24 bytes".
pub(super) const WHSEC_MIN_KEY_BYTES: usize = 24;

const WEBHOOK_ID: &str = "webhook-id";
const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// Signs with each of `keys`, so that a receiver holding any of them accepts.
pub(super) fn sign(keys: &[&[u8]], input: &SignInput) -> Signed {
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

/// Checks the headers and body against every key, and the timestamp against `now`.
pub(super) fn verify(
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
    use crate::sign::tests::{
        SPEC_BODY, SPEC_ID, SPEC_SECRET, SPEC_SIGNATURE, SPEC_TIMESTAMP, spec_input,
    };
    use crate::sign::{Scheme, decode_secret, generate_secret, sign, verify};

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
}
