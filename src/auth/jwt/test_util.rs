//! Test helpers: throw-away keys generated at run time (no private key is
//! stored in the source) and raw token assembly for attack tests.

use super::issuer::{Issuer, IssuerSpec, KeySource};
use super::pyjwt_vectors as py;
use super::{CacheOptions, Verifier};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use rand::RngCore;
use serde_json::json;
use serde_json::Value;
use std::time::Duration;

pub const ISS: &str = "https://idp.example";
/// 2023-11-14T22:15:00Z, inside the PyJWT vectors' validity window.
pub const NOW: u64 = 1_700_000_100;
pub const HS_SECRET: &[u8] = b"unit-test-hs256-secret-000000000000000000";

pub fn spec(algs: &[&str], key: KeySource) -> IssuerSpec {
    IssuerSpec {
        issuer: ISS.into(),
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

pub fn hs_issuer() -> Issuer {
    Issuer::new(spec(&["HS256"], KeySource::HsSecret(HS_SECRET.to_vec()))).unwrap()
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `b64(header).b64(payload).sig` with the exact JSON texts given.
pub fn sign_raw(header: &str, payload: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{sig}")
}

pub fn hs_token(payload: Value) -> String {
    sign_raw(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &payload.to_string(),
        &EncodingKey::from_secret(HS_SECRET),
        Algorithm::HS256,
    )
}

pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// PKCS#8 DER of a fresh Ed25519 key.
pub fn ed25519_pkcs8() -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&random32());
    der
}

/// A fresh P-256 private scalar (top bit cleared, so below the group order).
pub fn p256_scalar() -> [u8; 32] {
    let mut d = random32();
    d[0] &= 0x7f;
    d[31] |= 1;
    d
}

/// PKCS#8 DER of a P-256 key (ECPrivateKey without the optional members).
pub fn p256_pkcs8(d: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
        0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25,
        0x02, 0x01, 0x01, 0x04, 0x20,
    ];
    der.extend_from_slice(d);
    der
}

/// SEC1 `EC PRIVATE KEY` DER of a P-256 key, with the curve parameters.
pub fn p256_sec1(d: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
    der.extend_from_slice(d);
    der.extend_from_slice(&[
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ]);
    der
}

pub fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

pub fn verifier(issuers: Vec<Issuer>) -> Verifier {
    Verifier::new(issuers, CacheOptions::default()).unwrap()
}

pub fn rsa_verifier() -> Verifier {
    let mut s = spec(
        &["RS256", "RS512", "PS256"],
        KeySource::PublicKeyPem(py::RSA_PUB_PEM.into()),
    );
    s.audiences = vec!["portcullis".into()];
    verifier(vec![Issuer::new(s).unwrap()])
}

pub fn es_verifier() -> Verifier {
    verifier(vec![Issuer::new(spec(
        &["ES256"],
        KeySource::PublicKeyPem(py::EC_PUB_PEM.into()),
    ))
    .unwrap()])
}

pub fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_string).collect()
}

pub fn valid_claims() -> serde_json::Value {
    json!({"iss": ISS, "sub": "mallory", "exp": NOW + 600})
}
