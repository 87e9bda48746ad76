//! A type for secrets: its `Debug` and `Display` never print the value.

use sha2::{Digest, Sha256};
use std::fmt;

/// A secret string (an API key secret, a signing key, a token).
///
/// Formatting prints `[redacted]`, so a secret that ends up in a log line or
/// an error message by accident stays secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself. Call sites are easy to audit with `grep expose`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// SHA-256 of a secret, the form stored as `secret_hash: sha256:<hex>`.
pub fn sha256(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// `sha256:<hex>` for a secret.
pub fn hash_string(secret: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha256(secret)))
}

/// Parse `sha256:<64 hex digits>`.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let hex_part = s.strip_prefix("sha256:")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn hash_round_trip() {
        let h = hash_string(b"s3cret");
        assert_eq!(parse_hash(&h), Some(sha256(b"s3cret")));
        assert_eq!(parse_hash("sha256:zz"), None);
        assert_eq!(parse_hash("md5:00"), None);
    }
}
