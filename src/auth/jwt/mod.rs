//! JWT verification and minting.
//!
//! * [`Issuer`]: one trusted issuer (its keys, algorithm allow-list, claim
//!   names), built from an [`IssuerSpec`]; the key type is pinned to the
//!   algorithm family at build time, so RS/HS confusion cannot happen.
//! * [`Verifier`]: the trusted issuers, a verified-token cache and the
//!   revoked-`jti` set; [`Verifier::verify`] turns a compact JWS into
//!   [`Claims`].
//! * [`Minter`]: signs the gateway's own tokens (HS256, EdDSA or ES256) and
//!   publishes the public key as a JWKS.
//!
//! Policy decisions (all refusals are `invalid_token` except expiry):
//! * tokens larger than [`MAX_TOKEN_BYTES`] or not exactly three non-empty
//!   base64url (unpadded, canonical) parts are refused; JWE (five parts or an
//!   `enc` header) is refused;
//! * `alg` must be in the issuer's allow-list, `none` in any spelling is
//!   refused before any issuer is looked at;
//! * any `crit` header is refused (we understand no extension);
//! * a header carrying `jku`, `jwk`, `x5u` or `x5c` is refused: keys come
//!   only from configuration, never from the token;
//! * duplicate member names anywhere in the header or payload are refused;
//! * the issuer is chosen by exact `iss`, and only its keys are tried; with
//!   several keys the `kid` must match one;
//! * the signature is checked before any claim, so `token_expired` is only
//!   ever said of an authentic token.

mod cache;
mod claims;
mod issuer;
mod keys;
mod minter;
mod strict_json;
mod token;
mod verifier;

#[cfg(test)]
mod attack_tests;
#[cfg(test)]
mod attack_tests_claims;
#[cfg(test)]
mod pyjwt_vectors;
#[cfg(test)]
mod test_util;

pub(crate) use claims::parse_scope_item;
pub use issuer::{Issuer, IssuerConfigError, IssuerSpec, KeySource};
pub use minter::{Minter, MinterError};
pub use verifier::{CacheOptions, Verifier};

pub use jsonwebtoken::Algorithm;
use std::sync::Arc;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The claim the gateway's own tokens carry to name the API key they were
/// minted for.
pub const KEY_ID_CLAIM: &str = "pc_key";

/// At most this many scope items in a token; more is `invalid_token` (and
/// the token endpoint will not mint more).
pub const MAX_SCOPE_ITEMS: usize = 64;

/// One `ns:action[:resource]` item of the scope claim.
///
/// Maps onto the gateway's `Grant::new(&namespace, &[action], resource)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub namespace: String,
    /// Lower-cased; `*` means every action.
    pub action: String,
    /// A resource glob; `None` means every path.
    pub resource: Option<String>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The `iss` claim (equal to the configured issuer string).
    pub issuer: Arc<str>,
    /// The issuer's `subject_claim`.
    pub subject: Arc<str>,
    /// Parsed from the issuer's `scope_claim`; items that are not of the
    /// form `ns:action[:resource]` grant nothing and are dropped.
    pub scopes: Vec<Scope>,
    pub jti: Option<String>,
    pub exp: Option<u64>,
    /// The issuer's `key_id_claim` (for the gateway's own tokens `pc_key`);
    /// always `None` for issuers without one.
    pub key_id: Option<Arc<str>>,
    /// SHA-256 of the compact token (the cache key; safe to log).
    pub token_hash: [u8; 32],
}

/// Why a token was refused. Messages are constant strings and never contain
/// anything from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is too large")]
    TooLarge,
    #[error("token is malformed")]
    Malformed,
    #[error("token contains a duplicate member name")]
    DuplicateKey,
    #[error("token is encrypted (JWE), which is not accepted")]
    Encrypted,
    #[error("token algorithm is not accepted")]
    AlgorithmRejected,
    #[error("token header carries a critical extension")]
    CriticalHeader,
    #[error("token header carries key material or a key URL")]
    EmbeddedKey,
    #[error("token issuer is not trusted")]
    UnknownIssuer,
    #[error("token key id does not match a trusted key")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has no expiry")]
    MissingExpiry,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token audience is not accepted")]
    BadAudience,
    #[error("token claim has the wrong type")]
    InvalidClaim,
    #[error("token has no subject")]
    MissingSubject,
    #[error("token has been revoked")]
    Revoked,
}

impl JwtError {
    /// The OAuth 2 bearer error code for `WWW-Authenticate` / JSON bodies.
    pub fn code(&self) -> &'static str {
        match self {
            JwtError::Expired => "token_expired",
            _ => "invalid_token",
        }
    }
}

/// The algorithm named exactly as in JWA (`alg` is case-sensitive).
/// `none` is not an [`Algorithm`] and is never returned.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(JwtError::Expired.code(), "token_expired");
        assert_eq!(JwtError::NotYetValid.code(), "invalid_token");
        assert_eq!(JwtError::BadSignature.code(), "invalid_token");
        assert_eq!(JwtError::Revoked.code(), "invalid_token");
    }

    #[test]
    fn algorithm_names_are_exact() {
        assert_eq!(parse_algorithm("RS256"), Some(Algorithm::RS256));
        assert_eq!(parse_algorithm("EdDSA"), Some(Algorithm::EdDSA));
        for bad in ["rs256", "none", "None", "", "ES512", "HS256 "] {
            assert_eq!(parse_algorithm(bad), None, "{bad}");
        }
    }
}
