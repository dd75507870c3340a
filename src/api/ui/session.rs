//! The dashboard's session: a cookie that stands for the admin token, so the browser never
//! keeps the token itself and no URL ever carries it.
//!
//! In: the admin token, a clock, the cookie a browser sends. Out: a `Set-Cookie` value on login
//! and logout, and whether a request's cookie is a valid session.
//!
//! Invariant: the cookie is stateless, `<expiry>.<HMAC-SHA256(expiry) keyed by the token>`, so
//! it holds on every replica, expires by itself, and a changed token logs everyone out. It is
//! `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends it) and
//! `Secure` when the request came over https through a proxy.

use axum::http::{HeaderMap, header};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// The cookie's name.
pub(crate) const COOKIE: &str = "pollhook_session";

/// How long a login lasts.
const LIFETIME_SECS: i64 = 12 * 60 * 60;

/// Separates the MAC's input from any other use of the token as a key.
const CONTEXT: &[u8] = b"pollhook dashboard session v1\n";

fn mac(token: &Secret, expiry: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.expose().as_bytes())
        .expect("HMAC takes a key of any length (RFC 2104 §2)");
    mac.update(CONTEXT);
    mac.update(expiry.to_string().as_bytes());
    mac
}

/// A session value valid until `now + LIFETIME_SECS`.
fn issue(token: &Secret, now: i64) -> String {
    let expiry = now + LIFETIME_SECS;
    let tag = mac(token, expiry).finalize().into_bytes();
    format!("{expiry}.{}", hex::encode(tag))
}

/// Whether `value` is a session issued with `token` that has not expired at `now`.
fn valid(token: &Secret, value: &str, now: i64) -> bool {
    let Some((expiry, tag)) = value.split_once('.') else {
        return false;
    };
    let (Ok(expiry), Ok(tag)) = (expiry.parse::<i64>(), hex::decode(tag)) else {
        return false;
    };
    // `verify_slice` compares in constant time.
    expiry > now && mac(token, expiry).verify_slice(&tag).is_ok()
}

/// Whether the request carries a valid session cookie.
pub(crate) fn has_session(token: &Secret, headers: &HeaderMap) -> bool {
    let now = chrono::Utc::now().timestamp();
    cookie(headers).is_some_and(|value| valid(token, value, now))
}

/// The value of our cookie, if the request sent one.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// `Set-Cookie` for a new session.
pub(crate) fn login_cookie(token: &Secret, headers: &HeaderMap) -> String {
    let value = issue(token, chrono::Utc::now().timestamp());
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={LIFETIME_SECS}; HttpOnly; SameSite=Strict{}",
        secure(headers)
    )
}

/// `Set-Cookie` that ends the session.
pub(crate) fn logout_cookie(headers: &HeaderMap) -> String {
    format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        secure(headers)
    )
}

/// `; Secure` behind a proxy that terminated https (pollhook itself speaks plain HTTP, so a
/// cookie marked `Secure` on a direct connection would never come back).
fn secure(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    if https { "; Secure" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_until_it_expires() {
        let token = Secret::new("admin-token-1");
        let value = issue(&token, 1_000);
        assert!(valid(&token, &value, 1_000));
        assert!(valid(&token, &value, 1_000 + LIFETIME_SECS - 1));
        assert!(!valid(&token, &value, 1_000 + LIFETIME_SECS));
    }

    #[test]
    fn another_token_or_a_forged_expiry_is_refused() {
        let token = Secret::new("admin-token-1");
        let value = issue(&token, 1_000);
        assert!(!valid(&Secret::new("admin-token-2"), &value, 1_000));
        let (_, tag) = value.split_once('.').unwrap();
        let forged = format!("{}.{tag}", 1_000 + 10 * LIFETIME_SECS);
        assert!(!valid(&token, &forged, 1_000));
        for junk in ["", ".", "x.y", "123", "123.zz"] {
            assert!(!valid(&token, junk, 0), "{junk:?}");
        }
    }

    #[test]
    fn the_cookie_is_found_among_others_and_marked_secure_behind_https() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; pollhook_session=5.ab; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers), Some("5.ab"));
        let token = Secret::new("t");
        assert!(!login_cookie(&token, &headers).contains("Secure"));
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        let set = login_cookie(&token, &headers);
        assert!(set.contains("HttpOnly; SameSite=Strict; Secure"), "{set}");
    }
}
