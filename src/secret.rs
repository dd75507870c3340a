//! A secret value: an endpoint's signing key, a source's token, a database URL with its
//! password. A leaf: it imports nothing of pollhook.
//!
//! Invariant: `Debug` and `Display` print `***`; only [`Secret::expose`] gives the value, at the
//! one place that needs it (a header, a signature, a connection).

use std::fmt;

/// The prefix of a Standard Webhooks secret (`whsec_<base64>`).
pub const WHSEC_PREFIX: &str = "whsec_";

/// A string that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that needs it (a header, a signature).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// A hint safe to show an operator: `…wxyz`, the last four characters at most (a key's
    /// start is often a fixed header, a JWT's `eyJh`), behind `whsec_` for a Standard Webhooks
    /// secret; a secret shorter than 12 characters shows none.
    pub fn hint(&self) -> String {
        let (prefix, key) = match self.0.strip_prefix(WHSEC_PREFIX) {
            Some(key) => (WHSEC_PREFIX, key),
            None => ("", self.0.as_str()),
        };
        let chars = key.chars().count();
        let tail: String = if chars < 12 {
            String::new()
        } else {
            key.chars().skip(chars - 4).collect()
        };
        format!("{prefix}…{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
