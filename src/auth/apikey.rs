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
    let decoded = BASE64
        .decode(basic_payload(value)?)
        .map_err(|_| malformed("the Basic credentials are not valid base64"))?;
    let (id, secret) = split_basic(&decoded)?;
    Ok((id.to_string(), secret.to_string()))
}

/// The base64 text after `Basic `.
fn basic_payload(value: &HeaderValue) -> Result<&[u8], GatewayError> {
    value
        .as_bytes()
        .get(6..)
        .map(|s| s.trim_ascii())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("the Basic credentials are empty"))
}

/// Base64-decode `payload` into `stack` when it fits (any usual id and
/// secret), else into `heap`: the secret is not copied to the heap three
/// times per request.
fn decode_payload<'b>(
    payload: &[u8],
    stack: &'b mut [u8],
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], GatewayError> {
    let bad = || malformed("the Basic credentials are not valid base64");
    match BASE64.decode_slice(payload, stack) {
        Ok(n) => Ok(stack.get(..n).unwrap_or_default()),
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            *heap = BASE64.decode(payload).map_err(|_| bad())?;
            Ok(heap.as_slice())
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => Err(bad()),
    }
}

/// `id:secret` split on the first colon.
fn split_basic(decoded: &[u8]) -> Result<(&str, &str), GatewayError> {
    let text = std::str::from_utf8(decoded)
        .map_err(|_| malformed("the Basic credentials are not UTF-8"))?;
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(|| malformed("the Basic credentials are not id:secret"))?;
    if id.is_empty() {
        return Err(malformed("the Basic credentials have no key id"));
    }
    Ok((id, secret))
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
    let payload = basic_payload(value)?;
    let mut stack = [0u8; 384];
    let mut heap = Vec::new();
    let decoded = decode_payload(payload, &mut stack, &mut heap)?;
    let (id, secret) = split_basic(decoded)?;
    identity(verify_id_secret(keys, id, secret)?, now)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_payloads_decode_alike_on_the_stack_and_the_heap() {
        for len in [1usize, 10, 200, 287, 288, 289, 400, 2000] {
            let text = format!("key-{len}:{}", "s".repeat(len));
            let encoded = base64::engine::general_purpose::STANDARD.encode(&text);
            let (mut stack, mut heap) = ([0u8; 384], Vec::new());
            let got = decode_payload(encoded.as_bytes(), &mut stack, &mut heap).unwrap();
            assert_eq!(got, text.as_bytes(), "length {len}");
            let unpadded = encoded.trim_end_matches('=');
            let (mut stack, mut heap) = ([0u8; 384], Vec::new());
            let got = decode_payload(unpadded.as_bytes(), &mut stack, &mut heap).unwrap();
            assert_eq!(got, text.as_bytes(), "length {len}, unpadded");
        }
        for bad in ["a", "!!!!", "YWJj*", &"A".repeat(1001)] {
            let (mut stack, mut heap) = ([0u8; 384], Vec::new());
            let e = decode_payload(bad.as_bytes(), &mut stack, &mut heap).unwrap_err();
            assert_eq!(e.code, Code::MalformedCredentials, "{bad}");
        }
    }

    #[test]
    fn basic_credentials_split_on_the_first_colon() {
        assert_eq!(split_basic(b"id:se:cret").unwrap(), ("id", "se:cret"));
        assert_eq!(split_basic(b"id:").unwrap(), ("id", ""));
        for bad in [&b":secret"[..], b"nocolon", b"\xff:x"] {
            assert_eq!(
                split_basic(bad).unwrap_err().code,
                Code::MalformedCredentials
            );
        }
    }
}
