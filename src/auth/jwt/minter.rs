//! Minting the gateway's own tokens (token endpoint) and publishing the
//! public key (JWKS endpoint).

use super::issuer::{Issuer, IssuerConfigError, IssuerSpec, KeySource};
use super::keys::{contains, pem_decode, OID_EC, OID_ED25519, OID_P256, OID_RSA};
use super::{Algorithm, KEY_ID_CLAIM};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header};
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MinterError {
    #[error("token issuer must not be empty")]
    EmptyIssuer,
    #[error("HS256 signing secret must be at least 32 bytes")]
    SecretTooShort,
    #[error("signing key PEM is not valid")]
    InvalidPem,
    #[error("encrypted private keys are not supported; decrypt it first")]
    EncryptedKey,
    #[error(
        "unsupported signing key (Ed25519 or P-256 private key, or an HS256 secret, expected)"
    )]
    UnsupportedKey,
    #[error("token ttl must be at least one second")]
    InvalidTtl,
    #[error("signing failed")]
    Signing,
}

/// Signs the gateway's tokens with HS256, EdDSA (Ed25519) or ES256 (P-256).
pub struct Minter {
    issuer: String,
    alg: Algorithm,
    key: EncodingKey,
    kid: String,
    /// The public JWK (with `kid`), for asymmetric keys.
    public_jwk: Option<Value>,
    /// The HS256 secret, kept to build the verifying issuer.
    hs_secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn der_len(len: usize, out: &mut Vec<u8>) {
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        _ => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
    }
}

/// Wrap a SEC1 `EC PRIVATE KEY` (P-256) as PKCS#8, which jsonwebtoken needs.
fn sec1_p256_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00, 0x30, 0x13];
    body.extend_from_slice(OID_EC);
    body.extend_from_slice(OID_P256);
    body.push(0x04);
    der_len(sec1.len(), &mut body);
    body.extend_from_slice(sec1);
    let mut out = vec![0x30];
    der_len(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// RFC 7638 thumbprint (SHA-256, base64url) of an EC or OKP public JWK:
/// the required members in lexicographic order, no whitespace. Computed
/// here because jsonwebtoken 10.3's OKP thumbprint builds invalid JSON.
fn thumbprint_kid(jwk: &Value) -> String {
    let m = |k: &str| jwk[k].as_str().unwrap_or_default().to_string();
    let canonical = if jwk["kty"] == "EC" {
        json!({"crv": m("crv"), "kty": "EC", "x": m("x"), "y": m("y")})
    } else {
        json!({"crv": m("crv"), "kty": m("kty"), "x": m("x")})
    };
    // serde_json's Map is a BTreeMap (no preserve_order): keys come out sorted.
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.to_string().as_bytes()))
}

impl Minter {
    /// `signing_key`: an Ed25519 or P-256 private key in PEM (PKCS#8
    /// `PRIVATE KEY`, or SEC1 `EC PRIVATE KEY`), else an HS256 secret.
    pub fn new(issuer: &str, signing_key: &str) -> Result<Minter, MinterError> {
        if issuer.is_empty() {
            return Err(MinterError::EmptyIssuer);
        }
        let trimmed = signing_key.trim();
        if !trimmed.starts_with("-----BEGIN") {
            let secret = signing_key.as_bytes();
            if secret.len() < 32 {
                return Err(MinterError::SecretTooShort);
            }
            let mut h = Sha256::new();
            h.update(b"portcullis jwt kid\0");
            h.update(secret);
            let kid = format!("hs-{}", URL_SAFE_NO_PAD.encode(&h.finalize()[..12]));
            return Ok(Minter {
                issuer: issuer.to_string(),
                alg: Algorithm::HS256,
                key: EncodingKey::from_secret(secret),
                kid,
                public_jwk: None,
                hs_secret: Some(secret.to_vec()),
            });
        }
        let (label, der) = pem_decode(trimmed).ok_or(MinterError::InvalidPem)?;
        let (alg, pkcs8) = match label.as_str() {
            "PRIVATE KEY" if contains(&der, OID_ED25519) => (Algorithm::EdDSA, der),
            "PRIVATE KEY" if contains(&der, OID_EC) && contains(&der, OID_P256) => {
                (Algorithm::ES256, der)
            }
            "EC PRIVATE KEY" if contains(&der, OID_P256) => {
                (Algorithm::ES256, sec1_p256_to_pkcs8(&der))
            }
            "PRIVATE KEY" if contains(&der, OID_RSA) => return Err(MinterError::UnsupportedKey),
            "ENCRYPTED PRIVATE KEY" => return Err(MinterError::EncryptedKey),
            _ => return Err(MinterError::UnsupportedKey),
        };
        let (key, mut jwk) = if alg == Algorithm::EdDSA {
            let sk = ed25519_dalek::SigningKey::from_pkcs8_der(&pkcs8)
                .map_err(|_| MinterError::InvalidPem)?;
            let x = URL_SAFE_NO_PAD.encode(sk.verifying_key().to_bytes());
            (
                EncodingKey::from_ed_der(&pkcs8),
                json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            )
        } else {
            let key = EncodingKey::from_ec_der(&pkcs8);
            // jsonwebtoken derives x/y for EC (its Ed25519 branch is `unimplemented!()`).
            let jwk = Jwk::from_encoding_key(&key, alg).map_err(|_| MinterError::InvalidPem)?;
            let v = serde_json::to_value(&jwk).map_err(|_| MinterError::InvalidPem)?;
            (
                key,
                json!({"kty": "EC", "crv": "P-256", "x": v["x"], "y": v["y"]}),
            )
        };
        let kid = thumbprint_kid(&jwk);
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(if alg == Algorithm::EdDSA {
            "EdDSA"
        } else {
            "ES256"
        });
        let minter = Minter {
            issuer: issuer.to_string(),
            alg,
            key,
            kid,
            public_jwk: Some(jwk),
            hs_secret: None,
        };
        // Prove the key signs (a malformed key fails here, not on first use).
        minter.mint(
            "startup-check",
            "startup-check",
            "",
            Duration::from_secs(1),
            0,
        )?;
        Ok(minter)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Mint a token: returns `(token, jti, exp)`.
    pub fn mint(
        &self,
        sub: &str,
        key_id: &str,
        scope: &str,
        ttl: Duration,
        now: u64,
    ) -> Result<(String, String, u64), MinterError> {
        if ttl.as_secs() == 0 {
            return Err(MinterError::InvalidTtl);
        }
        let exp = now.saturating_add(ttl.as_secs());
        let mut raw = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let jti = URL_SAFE_NO_PAD.encode(raw);
        let claims = json!({
            "iss": self.issuer, "sub": sub, KEY_ID_CLAIM: key_id, "scope": scope,
            "iat": now, "exp": exp, "jti": jti,
        });
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.key).map_err(|_| MinterError::Signing)?;
        Ok((token, jti, exp))
    }

    /// `{"keys":[...]}` with the public key, or `None` for HS256.
    pub fn jwks_json(&self) -> Option<String> {
        self.public_jwk
            .as_ref()
            .map(|jwk| json!({ "keys": [jwk] }).to_string())
    }

    /// The issuer that verifies this minter's tokens (add it to the
    /// [`super::Verifier`]); `pc_key` becomes `Claims::key_id`.
    pub fn verifying_issuer(&self, leeway: Duration) -> Result<Issuer, IssuerConfigError> {
        let key = match (&self.hs_secret, self.jwks_json()) {
            (Some(secret), _) => KeySource::HsSecret(secret.clone()),
            (None, Some(jwks)) => KeySource::Jwks(jwks),
            (None, None) => unreachable!("a minter has a secret or a public key"),
        };
        Issuer::new(IssuerSpec {
            issuer: self.issuer.clone(),
            audiences: Vec::new(),
            algorithms: vec![format!("{:?}", self.alg)],
            key,
            subject_claim: "sub".into(),
            scope_claim: "scope".into(),
            key_id_claim: Some(KEY_ID_CLAIM.into()),
            leeway,
            require_exp: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::test_util::{ed25519_pkcs8, p256_pkcs8, p256_scalar, p256_sec1, pem};
    use crate::auth::jwt::{CacheOptions, JwtError, Scope, Verifier};

    const NOW: u64 = 1_800_000_000;

    fn round_trip(signing_key: &str, alg: Algorithm) {
        let m = Minter::new("https://gw.example", signing_key).unwrap();
        assert_eq!(m.algorithm(), alg);
        let v = Verifier::new(
            vec![m.verifying_issuer(Duration::from_secs(5)).unwrap()],
            CacheOptions::default(),
        )
        .unwrap();
        let (token, jti, exp) = m
            .mint(
                "alice",
                "key-1",
                "orders:read files:get:/f/*",
                Duration::from_secs(600),
                NOW,
            )
            .unwrap();
        assert_eq!(exp, NOW + 600);
        let c = v.verify(&token, NOW + 1).unwrap();
        assert_eq!(&*c.subject, "alice");
        assert_eq!(c.key_id.as_deref(), Some("key-1"));
        assert_eq!(c.jti.as_deref(), Some(jti.as_str()));
        assert_eq!(c.exp, Some(exp));
        assert_eq!(
            c.scopes[0],
            Scope {
                namespace: "orders".into(),
                action: "read".into(),
                resource: None
            }
        );
        assert_eq!(c.scopes[1].resource.as_deref(), Some("/f/*"));
        assert_eq!(v.verify(&token, exp + 5).err(), Some(JwtError::Expired));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(m.kid()));
        let (t2, jti2, _) = m
            .mint("alice", "key-1", "", Duration::from_secs(600), NOW)
            .unwrap();
        assert_ne!((t2, jti2), (token, jti), "jti is random");
    }

    #[test]
    fn hs256() {
        let m = Minter::new("gw", "0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(m.jwks_json(), None);
        assert!(m.kid().starts_with("hs-"));
        round_trip("0123456789abcdef0123456789abcdef", Algorithm::HS256);
        assert_eq!(
            Minter::new("gw", "short").err(),
            Some(MinterError::SecretTooShort)
        );
    }

    #[test]
    fn ed25519() {
        let pem = pem("PRIVATE KEY", &ed25519_pkcs8());
        round_trip(&pem, Algorithm::EdDSA);
        let m = Minter::new("gw", &pem).unwrap();
        let jwks: Value = serde_json::from_str(&m.jwks_json().unwrap()).unwrap();
        let k = &jwks["keys"][0];
        assert_eq!(
            (k["kty"].as_str(), k["crv"].as_str()),
            (Some("OKP"), Some("Ed25519"))
        );
        assert_eq!(k["kid"].as_str(), Some(m.kid()));
        assert!(k.get("d").is_none(), "no private part");
    }

    #[test]
    fn es256_pkcs8_and_sec1() {
        let d = p256_scalar();
        let a = pem("PRIVATE KEY", &p256_pkcs8(&d));
        let b = pem("EC PRIVATE KEY", &p256_sec1(&d));
        round_trip(&a, Algorithm::ES256);
        round_trip(&b, Algorithm::ES256);
        let (ma, mb) = (
            Minter::new("gw", &a).unwrap(),
            Minter::new("gw", &b).unwrap(),
        );
        assert_eq!(ma.jwks_json(), mb.jwks_json(), "same key either way");
        let jwks: Value = serde_json::from_str(&ma.jwks_json().unwrap()).unwrap();
        let k = &jwks["keys"][0];
        assert_eq!(
            (k["kty"].as_str(), k["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
        assert!(k["x"].is_string() && k["y"].is_string() && k.get("d").is_none());
    }

    #[test]
    fn rfc7638_thumbprint() {
        // RFC 8037 appendix A.3: the Ed25519 example key's thumbprint.
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        assert_eq!(
            thumbprint_kid(&jwk),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn refuses_other_keys() {
        let rsa_ish = pem(
            "PRIVATE KEY",
            &[
                0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
            ],
        );
        assert_eq!(
            Minter::new("gw", &rsa_ish).err(),
            Some(MinterError::UnsupportedKey)
        );
        assert_eq!(
            Minter::new("gw", &pem("ENCRYPTED PRIVATE KEY", &[1])).err(),
            Some(MinterError::EncryptedKey)
        );
        assert_eq!(
            Minter::new("gw", &pem("PUBLIC KEY", &[1])).err(),
            Some(MinterError::UnsupportedKey)
        );
        assert_eq!(
            Minter::new("gw", "-----BEGIN PRIVATE KEY-----\n!!\n").err(),
            Some(MinterError::InvalidPem)
        );
        assert_eq!(
            Minter::new("", "0123456789abcdef0123456789abcdef").err(),
            Some(MinterError::EmptyIssuer)
        );
        let m = Minter::new("gw", "0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            m.mint("a", "k", "", Duration::ZERO, NOW).err(),
            Some(MinterError::InvalidTtl)
        );
    }
}
