//! Loading verification keys: PEM sniffing and JWKS parsing, each key pinned
//! to one algorithm family.

use super::issuer::IssuerConfigError as E;
use super::{parse_algorithm, strict_json, Algorithm};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::DecodingKey;
use serde_json::Value;

pub(crate) const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
pub(crate) const OID_EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub(crate) const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
pub(crate) const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// The key type an algorithm needs. A key verifies only algorithms of its
/// own family, so an RSA public key can never be used as an HMAC secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Hmac,
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyFamily {
    pub fn of(alg: Algorithm) -> KeyFamily {
        use Algorithm::*;
        match alg {
            HS256 | HS384 | HS512 => KeyFamily::Hmac,
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => KeyFamily::Rsa,
            ES256 => KeyFamily::EcP256,
            ES384 => KeyFamily::EcP384,
            EdDSA => KeyFamily::Ed25519,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyFamily::Hmac => "HMAC secret",
            KeyFamily::Rsa => "RSA key",
            KeyFamily::EcP256 => "EC P-256 key",
            KeyFamily::EcP384 => "EC P-384 key",
            KeyFamily::Ed25519 => "Ed25519 key",
        }
    }
}

/// One verification key.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    pub kid: Option<String>,
    pub family: KeyFamily,
    /// A JWK's own `alg`, when it names one: then only that algorithm.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl VerifyKey {
    pub fn accepts(&self, alg: Algorithm) -> bool {
        KeyFamily::of(alg) == self.family && self.alg.is_none_or(|a| a == alg)
    }
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// One PEM block: its label and DER bytes. Several blocks are refused.
pub(crate) fn pem_decode(text: &str) -> Option<(String, Vec<u8>)> {
    let text = text.trim();
    let rest = text.strip_prefix("-----BEGIN ")?;
    let (label, rest) = rest.split_once("-----")?;
    let end = format!("-----END {label}-----");
    let (body, tail) = rest.split_once(end.as_str())?;
    if !tail.trim().is_empty() {
        return None;
    }
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(b64).ok()?;
    Some((label.to_string(), der))
}

/// A public key in PEM (SPKI `PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY`).
pub(crate) fn pem_public_key(pem: &str) -> Result<(KeyFamily, DecodingKey), E> {
    let (label, der) = pem_decode(pem).ok_or(E::InvalidPem)?;
    if label.contains("PRIVATE") {
        return Err(E::PrivateKeyPem);
    }
    let family = match label.as_str() {
        "RSA PUBLIC KEY" => KeyFamily::Rsa,
        "PUBLIC KEY" if contains(&der, OID_RSA) => KeyFamily::Rsa,
        "PUBLIC KEY" if contains(&der, OID_ED25519) => KeyFamily::Ed25519,
        "PUBLIC KEY" if contains(&der, OID_EC) && contains(&der, OID_P256) => KeyFamily::EcP256,
        "PUBLIC KEY" if contains(&der, OID_EC) && contains(&der, OID_P384) => KeyFamily::EcP384,
        _ => return Err(E::UnsupportedKey),
    };
    let bytes = pem.trim().as_bytes();
    let key = match family {
        KeyFamily::Rsa => DecodingKey::from_rsa_pem(bytes),
        KeyFamily::Ed25519 => DecodingKey::from_ed_pem(bytes),
        KeyFamily::EcP256 | KeyFamily::EcP384 => DecodingKey::from_ec_pem(bytes),
        KeyFamily::Hmac => unreachable!("no PEM maps to HMAC"),
    }
    .map_err(|_| E::InvalidPem)?;
    if family == KeyFamily::Rsa && rsa_modulus_len(key.as_bytes()).ok_or(E::InvalidPem)? < 256 {
        return Err(E::WeakRsaKey);
    }
    Ok((family, key))
}

/// One DER TLV at the start of `der`: (tag, content, rest).
fn der_tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (
            rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize),
            &rest[n..],
        )
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Significant bytes of the modulus of a PKCS#1 `RSAPublicKey`.
fn rsa_modulus_len(pkcs1: &[u8]) -> Option<usize> {
    let (0x30, seq, _) = der_tlv(pkcs1)? else {
        return None;
    };
    let (0x02, n, _) = der_tlv(seq)? else {
        return None;
    };
    Some(n.iter().skip_while(|b| **b == 0).count())
}

fn b64_field(jwk: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<u8>, E> {
    match jwk.get(name) {
        Some(Value::String(s)) => URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| E::InvalidJwks("bad base64url")),
        _ => Err(E::InvalidJwks("missing key member")),
    }
}

fn str_field<'a>(
    jwk: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, E> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(E::InvalidJwks("member is not a string")),
    }
}

/// The signing keys of a JWKS usable with `allowed`. Keys for encryption,
/// of unknown type, or whose family/`alg` no allowed algorithm uses, are
/// skipped; symmetric (`oct`) keys and short RSA moduli are refused.
pub(crate) fn jwks_keys(json: &str, allowed: &[Algorithm]) -> Result<Vec<VerifyKey>, E> {
    let doc = strict_json::parse_object(json.as_bytes())
        .map_err(|_| E::InvalidJwks("not a JSON object"))?;
    let Some(Value::Array(list)) = doc.get("keys") else {
        return Err(E::InvalidJwks("no keys array"));
    };
    let mut out: Vec<VerifyKey> = Vec::new();
    for item in list {
        let Value::Object(jwk) = item else {
            return Err(E::InvalidJwks("key is not an object"));
        };
        if str_field(jwk, "use")?.is_some_and(|u| u != "sig") {
            continue;
        }
        let crv = str_field(jwk, "crv")?;
        let (family, key) = match (str_field(jwk, "kty")?, crv) {
            (Some("RSA"), _) => {
                let n = b64_field(jwk, "n")?;
                let e = b64_field(jwk, "e")?;
                let n_len = n.iter().skip_while(|b| **b == 0).count();
                if n_len < 256 {
                    return Err(E::WeakRsaKey);
                }
                (KeyFamily::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
            }
            (Some("EC"), Some(c @ ("P-256" | "P-384"))) => {
                let (family, len) = if c == "P-256" {
                    (KeyFamily::EcP256, 32)
                } else {
                    (KeyFamily::EcP384, 48)
                };
                let (x, y) = (b64_field(jwk, "x")?, b64_field(jwk, "y")?);
                if x.len() != len || y.len() != len {
                    return Err(E::InvalidJwks("bad EC coordinates"));
                }
                let mut point = vec![0x04];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (family, DecodingKey::from_ec_der(&point))
            }
            (Some("OKP"), Some("Ed25519")) => {
                let x = b64_field(jwk, "x")?;
                if x.len() != 32 {
                    return Err(E::InvalidJwks("bad Ed25519 key"));
                }
                (KeyFamily::Ed25519, DecodingKey::from_ed_der(&x))
            }
            (Some("oct"), _) => return Err(E::SymmetricKeyInJwks),
            _ => continue,
        };
        let alg = match str_field(jwk, "alg")? {
            None => None,
            Some(name) => match parse_algorithm(name) {
                Some(a) if KeyFamily::of(a) == family => Some(a),
                Some(_) => return Err(E::InvalidJwks("key alg does not match its type")),
                None => continue,
            },
        };
        let vk = VerifyKey {
            kid: str_field(jwk, "kid")?.map(str::to_owned),
            family,
            alg,
            key,
        };
        if !allowed.iter().any(|a| vk.accepts(*a)) {
            continue;
        }
        if vk.kid.is_some() && out.iter().any(|k| k.kid == vk.kid) {
            return Err(E::DuplicateKid);
        }
        out.push(vk);
    }
    if out.is_empty() {
        return Err(E::NoUsableKeys);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::pyjwt_vectors as v;

    // Public halves of a throw-away 1024-bit key (cryptography 48).
    const RSA1024_SPKI: &str = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCz13oCYATp2hp4uYgsALeS2ObL\nlJ0ZAFW1QscWfwVa+6217ZsjVGZE6RWEo4lCmsMTidnM+TxnUdBs3AM6h5sckl2z\nB3jHLjQXMiv99BZhkT821W2SL1xQnVYuU6MsBEz221PMgJ4IcAci2u8HN9gS8kMQ\niRu7N+vV+Ch0qe837QIDAQAB\n-----END PUBLIC KEY-----\n";
    const RSA1024_PKCS1: &str = "-----BEGIN RSA PUBLIC KEY-----\nMIGJAoGBALPXegJgBOnaGni5iCwAt5LY5suUnRkAVbVCxxZ/BVr7rbXtmyNUZkTp\nFYSjiUKawxOJ2cz5PGdR0GzcAzqHmxySXbMHeMcuNBcyK/30FmGRPzbVbZIvXFCd\nVi5ToywETPbbU8yAnghwByLa7wc32BLyQxCJG7s369X4KHSp7zftAgMBAAE=\n-----END RSA PUBLIC KEY-----\n";

    #[test]
    fn sniffs_pem_families() {
        assert_eq!(pem_public_key(v::RSA_PUB_PEM).unwrap().0, KeyFamily::Rsa);
        assert_eq!(pem_public_key(v::EC_PUB_PEM).unwrap().0, KeyFamily::EcP256);
        assert_eq!(pem_public_key(v::ED_PUB_PEM).unwrap().0, KeyFamily::Ed25519);
        assert_eq!(pem_public_key("nope").err(), Some(E::InvalidPem));
        let private =
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        assert_eq!(pem_public_key(private).err(), Some(E::PrivateKeyPem));
        let two = format!("{}{}", v::RSA_PUB_PEM, v::EC_PUB_PEM);
        assert_eq!(pem_public_key(&two).err(), Some(E::InvalidPem));
    }

    #[test]
    fn short_rsa_pem_refused() {
        assert_eq!(pem_public_key(RSA1024_SPKI).err(), Some(E::WeakRsaKey));
        assert_eq!(pem_public_key(RSA1024_PKCS1).err(), Some(E::WeakRsaKey));
    }

    #[test]
    fn jwks_filters_and_refuses() {
        let keys = jwks_keys(v::RS256_JWKS_JSON, &[Algorithm::RS256]).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("rsa-1"));
        // An RSA-only JWKS has nothing for ES256.
        assert_eq!(
            jwks_keys(v::RS256_JWKS_JSON, &[Algorithm::ES256]).err(),
            Some(E::NoUsableKeys)
        );
        let oct = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
        assert_eq!(
            jwks_keys(oct, &[Algorithm::HS256]).err(),
            Some(E::SymmetricKeyInJwks)
        );
        let weak = r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#;
        assert_eq!(
            jwks_keys(weak, &[Algorithm::RS256]).err(),
            Some(E::WeakRsaKey)
        );
        let enc_only = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","use":"enc","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}"#;
        assert_eq!(
            jwks_keys(enc_only, &[Algorithm::EdDSA]).err(),
            Some(E::NoUsableKeys)
        );
        let dup = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","kid":"a"},
                              {"kty":"OKP","crv":"Ed25519","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","kid":"a"}]}"#;
        assert_eq!(
            jwks_keys(dup, &[Algorithm::EdDSA]).err(),
            Some(E::DuplicateKid)
        );
        let dup_member = r#"{"keys":[],"keys":[]}"#;
        assert!(matches!(
            jwks_keys(dup_member, &[Algorithm::EdDSA]),
            Err(E::InvalidJwks(_))
        ));
        let wrong_alg = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"HS256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}"#;
        assert!(matches!(
            jwks_keys(wrong_alg, &[Algorithm::EdDSA]),
            Err(E::InvalidJwks(_))
        ));
    }
}
