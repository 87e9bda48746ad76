//! A trusted issuer: its keys, algorithms and claim names.

use super::keys::{self, KeyFamily, VerifyKey};
use super::{parse_algorithm, Algorithm, JwtError};
use jsonwebtoken::DecodingKey;
use std::fmt;
use std::time::Duration;

/// Where an issuer's verification keys come from.
#[derive(Clone)]
pub enum KeySource {
    /// A shared HMAC secret (HS256/384/512 only).
    HsSecret(Vec<u8>),
    /// One public key in PEM (SPKI, or PKCS#1 for RSA).
    PublicKeyPem(String),
    /// A JWKS document (the text of `jwks_file`, or a fetched `jwks_url`).
    Jwks(String),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::HsSecret(_) => f.write_str("HsSecret([redacted])"),
            KeySource::PublicKeyPem(_) => f.write_str("PublicKeyPem(..)"),
            KeySource::Jwks(_) => f.write_str("Jwks(..)"),
        }
    }
}

/// Everything an [`Issuer`] is built from (mirrors `IssuerConfig`).
#[derive(Debug, Clone)]
pub struct IssuerSpec {
    pub issuer: String,
    /// Empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// JWA names, case-sensitive (`RS256`, `EdDSA`, ...).
    pub algorithms: Vec<String>,
    pub key: KeySource,
    pub subject_claim: String,
    pub scope_claim: String,
    /// Claim copied into `Claims::key_id`; set only for the gateway's own
    /// tokens (`Some(KEY_ID_CLAIM)`), so a foreign issuer cannot name an API key.
    pub key_id_claim: Option<String>,
    pub leeway: Duration,
    pub require_exp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerConfigError {
    #[error("issuer must not be empty")]
    EmptyIssuer,
    #[error("at least one algorithm is required")]
    NoAlgorithms,
    #[error("algorithm `none` is never accepted")]
    NoneAlgorithm,
    #[error("unknown algorithm {0:?} (names are case-sensitive, e.g. RS256, EdDSA)")]
    UnknownAlgorithm(String),
    #[error("algorithm {algorithm} needs a different key type than the configured {key}")]
    AlgorithmKeyMismatch {
        algorithm: String,
        key: &'static str,
    },
    #[error("HMAC secret is shorter than the hash output of {0} (32/48/64 bytes)")]
    HsSecretTooShort(String),
    #[error("public key is not a valid PEM public key")]
    InvalidPem,
    #[error("a private key was given where a public key is expected")]
    PrivateKeyPem,
    #[error("unsupported key type (RSA, EC P-256/P-384 or Ed25519 expected)")]
    UnsupportedKey,
    #[error("invalid JWKS: {0}")]
    InvalidJwks(&'static str),
    #[error("a JWKS must not carry symmetric (oct) keys; use hs_secret")]
    SymmetricKeyInJwks,
    #[error("RSA keys must be at least 2048 bits")]
    WeakRsaKey,
    #[error("two JWKS keys share a kid")]
    DuplicateKid,
    #[error("no key in the JWKS is usable with the configured algorithms")]
    NoUsableKeys,
    #[error("{0} must not be empty")]
    EmptyClaimName(&'static str),
    #[error("issuer {0:?} is configured twice")]
    DuplicateIssuer(String),
}

/// A trusted issuer, ready to verify tokens.
pub struct Issuer {
    pub(crate) issuer: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) keys: Vec<VerifyKey>,
    pub(crate) subject_claim: String,
    pub(crate) scope_claim: String,
    pub(crate) key_id_claim: Option<String>,
    pub(crate) leeway: u64,
    pub(crate) require_exp: bool,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("algorithms", &self.algorithms)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

fn hmac_min_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

impl Issuer {
    pub fn new(spec: IssuerSpec) -> Result<Issuer, IssuerConfigError> {
        use IssuerConfigError as E;
        if spec.issuer.is_empty() {
            return Err(E::EmptyIssuer);
        }
        if spec.subject_claim.is_empty() {
            return Err(E::EmptyClaimName("subject_claim"));
        }
        if spec.scope_claim.is_empty() {
            return Err(E::EmptyClaimName("scope_claim"));
        }
        if spec.key_id_claim.as_deref() == Some("") {
            return Err(E::EmptyClaimName("key_id_claim"));
        }
        let mut algorithms = Vec::new();
        for name in &spec.algorithms {
            if name.trim().eq_ignore_ascii_case("none") {
                return Err(E::NoneAlgorithm);
            }
            let alg = parse_algorithm(name).ok_or_else(|| E::UnknownAlgorithm(name.clone()))?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        if algorithms.is_empty() {
            return Err(E::NoAlgorithms);
        }
        let mismatch = |alg: Algorithm, family: KeyFamily| E::AlgorithmKeyMismatch {
            algorithm: format!("{alg:?}"),
            key: family.name(),
        };
        let keys = match &spec.key {
            KeySource::HsSecret(secret) => {
                for &alg in &algorithms {
                    if KeyFamily::of(alg) != KeyFamily::Hmac {
                        return Err(mismatch(alg, KeyFamily::Hmac));
                    }
                    if secret.len() < hmac_min_len(alg) {
                        return Err(E::HsSecretTooShort(format!("{alg:?}")));
                    }
                }
                vec![VerifyKey {
                    kid: None,
                    family: KeyFamily::Hmac,
                    alg: None,
                    key: DecodingKey::from_secret(secret),
                }]
            }
            KeySource::PublicKeyPem(pem) => {
                let (family, key) = keys::pem_public_key(pem)?;
                if let Some(&alg) = algorithms.iter().find(|a| KeyFamily::of(**a) != family) {
                    return Err(mismatch(alg, family));
                }
                vec![VerifyKey {
                    kid: None,
                    family,
                    alg: None,
                    key,
                }]
            }
            KeySource::Jwks(json) => {
                if let Some(&alg) = algorithms
                    .iter()
                    .find(|a| KeyFamily::of(**a) == KeyFamily::Hmac)
                {
                    return Err(E::AlgorithmKeyMismatch {
                        algorithm: format!("{alg:?}"),
                        key: "JWKS (public keys only)",
                    });
                }
                keys::jwks_keys(json, &algorithms)?
            }
        };
        Ok(Issuer {
            issuer: spec.issuer,
            audiences: spec.audiences,
            algorithms,
            keys,
            subject_claim: spec.subject_claim,
            scope_claim: spec.scope_claim,
            key_id_claim: spec.key_id_claim,
            leeway: spec.leeway.as_secs(),
            require_exp: spec.require_exp,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The key for a token's `kid` and `alg`. A matching `kid` wins; a token
    /// without one (or with one we do not know) is accepted only when the
    /// issuer has exactly one key and that key has no `kid` of its own.
    pub(crate) fn select_key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<&VerifyKey, JwtError> {
        if !self.algorithms.contains(&alg) {
            return Err(JwtError::AlgorithmRejected);
        }
        let key = match kid.and_then(|k| self.keys.iter().find(|v| v.kid.as_deref() == Some(k))) {
            Some(key) => key,
            None => match self.keys.as_slice() {
                [only] if only.kid.is_none() || kid.is_none() => only,
                _ => return Err(JwtError::UnknownKey),
            },
        };
        if !key.accepts(alg) {
            return Err(JwtError::AlgorithmRejected);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::pyjwt_vectors as v;
    use IssuerConfigError as E;

    pub(crate) fn spec(algs: &[&str], key: KeySource) -> IssuerSpec {
        IssuerSpec {
            issuer: "https://idp.example".into(),
            audiences: vec![],
            algorithms: algs.iter().map(|s| s.to_string()).collect(),
            key,
            subject_claim: "sub".into(),
            scope_claim: "scope".into(),
            key_id_claim: None,
            leeway: Duration::from_secs(30),
            require_exp: true,
        }
    }

    fn err(algs: &[&str], key: KeySource) -> IssuerConfigError {
        Issuer::new(spec(algs, key)).unwrap_err()
    }

    #[test]
    fn key_type_is_pinned_to_algorithm_family() {
        let rsa = || KeySource::PublicKeyPem(v::RSA_PUB_PEM.into());
        let hs = || KeySource::HsSecret(vec![7; 64]);
        assert!(Issuer::new(spec(&["RS256", "PS512"], rsa())).is_ok());
        assert!(matches!(
            err(&["HS256"], rsa()),
            E::AlgorithmKeyMismatch { .. }
        ));
        assert!(matches!(
            err(&["RS256", "HS256"], rsa()),
            E::AlgorithmKeyMismatch { .. }
        ));
        assert!(matches!(
            err(&["RS256"], hs()),
            E::AlgorithmKeyMismatch { .. }
        ));
        assert!(matches!(
            err(&["ES384"], KeySource::PublicKeyPem(v::EC_PUB_PEM.into())),
            E::AlgorithmKeyMismatch { .. }
        ));
        assert!(matches!(
            err(&["ES256"], KeySource::PublicKeyPem(v::ED_PUB_PEM.into())),
            E::AlgorithmKeyMismatch { .. }
        ));
        assert!(matches!(
            err(&["HS256"], KeySource::Jwks(v::RS256_JWKS_JSON.into())),
            E::AlgorithmKeyMismatch { .. }
        ));
        assert!(Issuer::new(spec(
            &["EdDSA"],
            KeySource::PublicKeyPem(v::ED_PUB_PEM.into())
        ))
        .is_ok());
    }

    #[test]
    fn algorithm_list_errors() {
        let hs = || KeySource::HsSecret(vec![7; 64]);
        assert_eq!(err(&[], hs()), E::NoAlgorithms);
        assert_eq!(err(&["none"], hs()), E::NoneAlgorithm);
        assert_eq!(err(&["NONE"], hs()), E::NoneAlgorithm);
        assert_eq!(err(&["hs256"], hs()), E::UnknownAlgorithm("hs256".into()));
        assert_eq!(
            err(&["HS256"], KeySource::HsSecret(vec![1; 31])),
            E::HsSecretTooShort("HS256".into())
        );
        assert_eq!(
            err(&["HS512"], KeySource::HsSecret(vec![1; 48])),
            E::HsSecretTooShort("HS512".into())
        );
        let mut s = spec(&["HS256"], hs());
        s.issuer.clear();
        assert_eq!(Issuer::new(s).unwrap_err(), E::EmptyIssuer);
        let mut s = spec(&["HS256"], hs());
        s.scope_claim.clear();
        assert_eq!(
            Issuer::new(s).unwrap_err(),
            E::EmptyClaimName("scope_claim")
        );
    }

    #[test]
    fn kid_selection() {
        let one = Issuer::new(spec(
            &["RS256"],
            KeySource::PublicKeyPem(v::RSA_PUB_PEM.into()),
        ))
        .unwrap();
        assert!(one.select_key(None, Algorithm::RS256).is_ok());
        assert!(one.select_key(Some("whatever"), Algorithm::RS256).is_ok());
        assert_eq!(
            one.select_key(None, Algorithm::PS256).err(),
            Some(JwtError::AlgorithmRejected)
        );
        let jwks =
            Issuer::new(spec(&["RS256"], KeySource::Jwks(v::RS256_JWKS_JSON.into()))).unwrap();
        assert!(jwks.select_key(Some("rsa-1"), Algorithm::RS256).is_ok());
        assert!(jwks.select_key(None, Algorithm::RS256).is_ok());
        assert_eq!(
            jwks.select_key(Some("rsa-2"), Algorithm::RS256).err(),
            Some(JwtError::UnknownKey)
        );
    }
}
