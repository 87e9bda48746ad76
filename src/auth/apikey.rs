//! API keys: `Authorization: Basic base64(id:secret)` or `X-Api-Key: secret`.
//!
//! Unknown key and wrong secret give the same `invalid_credentials`, after
//! the same work, so neither the answer nor its timing tells them apart.

use super::{Identity, Scheme};
use crate::error::{err, Code, GatewayError};
use crate::keys::{Key, KeyStore};
use crate::secret::sha256;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use http::HeaderValue;
use std::sync::Arc;
use subtle::ConstantTimeEq;

const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn invalid() -> GatewayError {
    err(
        Code::InvalidCredentials,
        "the key id or secret is not valid",
    )
}

fn malformed(what: &'static str) -> GatewayError {
    err(Code::MalformedCredentials, what)
}

/// Decode `Authorization: Basic base64(id:secret)`, split on the first colon.
pub fn decode_basic(value: &HeaderValue) -> Result<(String, String), GatewayError> {
    let b = value.as_bytes();
    let encoded = b
        .get(6..)
        .map(|s| s.trim_ascii())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("the Basic credentials are empty"))?;
    let decoded = BASE64
        .decode(encoded)
        .map_err(|_| malformed("the Basic credentials are not valid base64"))?;
    let text =
        String::from_utf8(decoded).map_err(|_| malformed("the Basic credentials are not UTF-8"))?;
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(|| malformed("the Basic credentials are not id:secret"))?;
    if id.is_empty() {
        return Err(malformed("the Basic credentials have no key id"));
    }
    Ok((id.to_string(), secret.to_string()))
}

/// The key with this id, if `secret` is its secret (compared in constant
/// time; an unknown id costs the same and answers the same).
pub fn verify_id_secret(keys: &KeyStore, id: &str, secret: &str) -> Result<Arc<Key>, GatewayError> {
    let presented = sha256(secret.as_bytes());
    match keys.get(id) {
        Some(k) if bool::from(k.secret_hash.ct_eq(&presented)) => Ok(k.clone()),
        Some(_) => Err(invalid()),
        None => {
            let _ = [0u8; 32].ct_eq(&presented);
            Err(invalid())
        }
    }
}

/// Verify `Authorization: Basic ...`.
pub fn basic(keys: &KeyStore, value: &HeaderValue, now: i64) -> Result<Identity, GatewayError> {
    let (id, secret) = decode_basic(value)?;
    identity(verify_id_secret(keys, &id, &secret)?, now)
}

/// Verify `X-Api-Key: <secret>`.
pub fn header(keys: &KeyStore, value: &HeaderValue, now: i64) -> Result<Identity, GatewayError> {
    let secret = value.as_bytes().trim_ascii();
    if secret.is_empty() {
        return Err(malformed("the X-Api-Key header is empty"));
    }
    let presented = sha256(secret);
    match keys.by_secret_hash(&presented) {
        // The map lookup is by the SHA-256 of the secret, which tells an
        // observer nothing about the secret itself.
        Some(k) => identity(k.clone(), now),
        None => Err(invalid()),
    }
}

fn identity(key: Arc<Key>, now: i64) -> Result<Identity, GatewayError> {
    key.check_usable(now)?;
    Ok(Identity {
        scheme: Scheme::ApiKey,
        subject: key.owner.clone(),
        key_id: Some(key.id.clone()),
        issuer: None,
        grants: key.grants.clone(),
        ceiling: None,
    })
}
