//! The verifier: trusted issuers, the verified-token cache, revocation.

use super::cache::TokenCache;
use super::issuer::{Issuer, IssuerConfigError};
use super::{claims, token, Algorithm, Claims, JwtError, MAX_TOKEN_BYTES};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, Copy)]
pub struct CacheOptions {
    /// 0 disables the cache.
    pub max_entries: usize,
    /// Upper bound on how long a verdict is reused, in seconds.
    pub max_ttl_secs: u64,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            max_entries: 100_000,
            max_ttl_secs: 300,
        }
    }
}

pub struct Verifier {
    issuers: HashMap<String, Issuer>,
    cache: TokenCache,
    revoked: RwLock<HashSet<String>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuers", &self.issuers.values())
            .finish_non_exhaustive()
    }
}

/// The all-zero ECDSA signature ("psychic signature", CVE-2022-21449) and
/// anything with `r = 0` or `s = 0` is refused here as well as by p256/p384.
fn ecdsa_signature_ok(alg: Algorithm, sig: &[u8]) -> bool {
    let half = match alg {
        Algorithm::ES256 => 32,
        Algorithm::ES384 => 48,
        _ => return true,
    };
    sig.len() == 2 * half
        && sig[..half].iter().any(|b| *b != 0)
        && sig[half..].iter().any(|b| *b != 0)
}

impl Verifier {
    pub fn new(issuers: Vec<Issuer>, cache: CacheOptions) -> Result<Verifier, IssuerConfigError> {
        let mut map = HashMap::new();
        for issuer in issuers {
            if map.contains_key(&issuer.issuer) {
                return Err(IssuerConfigError::DuplicateIssuer(issuer.issuer));
            }
            map.insert(issuer.issuer.clone(), issuer);
        }
        Ok(Verifier {
            issuers: map,
            cache: TokenCache::new(cache.max_entries, cache.max_ttl_secs),
            revoked: RwLock::new(HashSet::new()),
        })
    }

    /// Verify a compact JWS at time `now` (seconds since the epoch).
    /// Shared with the cache: a cached token costs no copy of its claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<Claims>, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.cache.get(&hash, now) {
            self.check_revoked(&claims)?;
            return Ok(claims);
        }
        let claims = Arc::new(self.verify_uncached(token, hash, now)?);
        self.check_revoked(&claims)?;
        self.cache.insert(&claims, now);
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str, hash: [u8; 32], now: u64) -> Result<Claims, JwtError> {
        let parsed = token::parse(token)?;
        let issuer = match parsed.payload.get("iss") {
            Some(Value::String(iss)) => self.issuers.get(iss).ok_or(JwtError::UnknownIssuer)?,
            Some(_) => return Err(JwtError::InvalidClaim),
            None => return Err(JwtError::UnknownIssuer),
        };
        let key = issuer.select_key(parsed.kid.as_deref(), parsed.alg)?;
        if !ecdsa_signature_ok(parsed.alg, &parsed.signature) {
            return Err(JwtError::BadSignature);
        }
        let valid = jsonwebtoken::crypto::verify(
            parsed.signature_b64,
            parsed.signing_input.as_bytes(),
            &key.key,
            parsed.alg,
        )
        .unwrap_or(false);
        if !valid {
            return Err(JwtError::BadSignature);
        }
        claims::validate(issuer, &parsed.payload, now, hash)
    }

    fn check_revoked(&self, claims: &Claims) -> Result<(), JwtError> {
        let Some(jti) = &claims.jti else {
            return Ok(());
        };
        let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        if revoked.contains(jti) {
            Err(JwtError::Revoked)
        } else {
            Ok(())
        }
    }

    /// Revoke one `jti` (takes effect on the next call, cached or not).
    pub fn revoke(&self, jti: &str) {
        let mut set = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        set.insert(jti.to_string());
    }

    /// Replace the whole revoked set atomically (config or file reload).
    pub fn set_revoked(&self, jtis: impl IntoIterator<Item = String>) {
        let fresh: HashSet<String> = jtis.into_iter().collect();
        *self.revoked.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(jti)
    }

    pub fn issuer(&self, iss: &str) -> Option<&Issuer> {
        self.issuers.get(iss)
    }

    /// Number of cached verdicts (for metrics).
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::test_util::{hs_issuer, hs_token, ISS, NOW};
    use serde_json::json;

    fn verifier(cache: CacheOptions) -> Verifier {
        Verifier::new(vec![hs_issuer()], cache).unwrap()
    }

    #[test]
    fn verifies_and_caches() {
        let v = verifier(CacheOptions::default());
        let t = hs_token(json!({"iss": ISS, "sub": "a", "exp": NOW + 60, "jti": "j1"}));
        let c = v.verify(&t, NOW).unwrap();
        assert_eq!(&*c.subject, "a");
        assert_eq!(c.token_hash, <[u8; 32]>::from(Sha256::digest(t.as_bytes())));
        assert_eq!(v.cached_tokens(), 1);
        assert_eq!(v.verify(&t, NOW + 1).unwrap(), c);
        // Past exp the cache no longer answers, and leeway (30 s) still applies.
        assert!(v.verify(&t, NOW + 60).is_ok());
        assert_eq!(v.verify(&t, NOW + 90).err(), Some(JwtError::Expired));
    }

    #[test]
    fn revocation_applies_to_cached_tokens() {
        let v = verifier(CacheOptions::default());
        let t = hs_token(json!({"iss": ISS, "sub": "a", "exp": NOW + 60, "jti": "j2"}));
        assert!(v.verify(&t, NOW).is_ok());
        v.revoke("j2");
        assert!(v.is_revoked("j2"));
        assert_eq!(v.verify(&t, NOW + 1).err(), Some(JwtError::Revoked));
        v.set_revoked(vec!["other".to_string()]);
        assert!(v.verify(&t, NOW + 2).is_ok());
        let fresh = hs_token(json!({"iss": ISS, "sub": "a", "exp": NOW + 60, "jti": "j3"}));
        v.set_revoked(vec!["j3".to_string()]);
        assert_eq!(v.verify(&fresh, NOW).err(), Some(JwtError::Revoked));
    }

    #[test]
    fn cache_disabled_and_errors_not_cached() {
        let v = verifier(CacheOptions {
            max_entries: 0,
            max_ttl_secs: 300,
        });
        let t = hs_token(json!({"iss": ISS, "sub": "a", "exp": NOW + 60}));
        assert!(v.verify(&t, NOW).is_ok());
        assert_eq!(v.cached_tokens(), 0);
        let v = verifier(CacheOptions::default());
        let bad = hs_token(json!({"iss": ISS, "exp": NOW + 60}));
        assert_eq!(v.verify(&bad, NOW).err(), Some(JwtError::MissingSubject));
        assert_eq!(v.cached_tokens(), 0);
    }

    #[test]
    fn duplicate_issuers_refused() {
        let err =
            Verifier::new(vec![hs_issuer(), hs_issuer()], CacheOptions::default()).unwrap_err();
        assert!(matches!(err, IssuerConfigError::DuplicateIssuer(_)));
    }

    #[test]
    fn ecdsa_shape() {
        assert!(!ecdsa_signature_ok(Algorithm::ES256, &[0; 64]));
        assert!(!ecdsa_signature_ok(Algorithm::ES256, &[1; 63]));
        let mut s = [1u8; 64];
        s[32..].fill(0);
        assert!(!ecdsa_signature_ok(Algorithm::ES256, &s));
        assert!(ecdsa_signature_ok(Algorithm::ES256, &[1; 64]));
        assert!(!ecdsa_signature_ok(Algorithm::ES384, &[0; 96]));
        assert!(ecdsa_signature_ok(Algorithm::RS256, &[0; 256]));
    }
}
