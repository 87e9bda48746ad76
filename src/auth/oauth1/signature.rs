//! HMAC-SHA1/SHA256/SHA512 and PLAINTEXT signatures (§3.4.2, §3.4.4),
//! `oauth_body_hash`, verification and signing.

use super::base_string::{self, encode_into};
use super::params::Collected;
use super::{Location, OAuth1Error, OAuthParams, SignatureMethod, SignedRequest};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

type Error = OAuth1Error;

/// Signing key / PLAINTEXT signature: `enc(consumer_secret)&enc(token_secret)`.
pub(crate) fn signing_key(consumer_secret: &[u8], token_secret: &[u8]) -> String {
    let mut key = Vec::with_capacity(consumer_secret.len() + token_secret.len() + 1);
    encode_into(&mut key, consumer_secret);
    key.push(b'&');
    encode_into(&mut key, token_secret);
    base_string::ascii_string(key)
}

fn mac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let mut m = <M as KeyInit>::new_from_slice(key).ok()?;
    m.update(data);
    Some(m.finalize().into_bytes().to_vec())
}

fn mac_verify<M: Mac + KeyInit>(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    match <M as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.verify_slice(tag).is_ok()
        }
        Err(_) => false,
    }
}

/// Raw HMAC of `data` under `key` (None for PLAINTEXT).
pub(crate) fn hmac(method: SignatureMethod, key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    match method {
        SignatureMethod::HmacSha1 => mac::<Hmac<Sha1>>(key, data),
        SignatureMethod::HmacSha256 => mac::<Hmac<Sha256>>(key, data),
        SignatureMethod::HmacSha512 => mac::<Hmac<Sha512>>(key, data),
        SignatureMethod::Plaintext => None,
    }
}

/// Constant-time HMAC check of a decoded signature.
fn hmac_verify(method: SignatureMethod, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    match method {
        SignatureMethod::HmacSha1 => mac_verify::<Hmac<Sha1>>(key, data, tag),
        SignatureMethod::HmacSha256 => mac_verify::<Hmac<Sha256>>(key, data, tag),
        SignatureMethod::HmacSha512 => mac_verify::<Hmac<Sha512>>(key, data, tag),
        SignatureMethod::Plaintext => false,
    }
}

/// The signature value (before §3.6 encoding) for a base string.
pub(crate) fn compute_signature(method: SignatureMethod, key: &str, base: &str) -> String {
    match hmac(method, key.as_bytes(), base.as_bytes()) {
        Some(tag) => STANDARD.encode(tag),
        None => key.to_owned(),
    }
}

/// `oauth_body_hash` value for `body`: base64 of SHA-1 (HMAC-SHA1,
/// PLAINTEXT), SHA-256 (HMAC-SHA256) or SHA-512 (HMAC-SHA512).
pub fn body_hash(method: SignatureMethod, body: &[u8]) -> String {
    match method {
        SignatureMethod::HmacSha1 | SignatureMethod::Plaintext => {
            STANDARD.encode(Sha1::digest(body))
        }
        SignatureMethod::HmacSha256 => STANDARD.encode(Sha256::digest(body)),
        SignatureMethod::HmacSha512 => STANDARD.encode(Sha512::digest(body)),
    }
}

/// Checks a claimed body hash. A 20-byte value is SHA-1 for every method
/// (oauthlib always uses SHA-1); otherwise the method's own digest.
fn body_hash_matches(method: SignatureMethod, claimed: &str, body: &[u8]) -> bool {
    let Ok(claimed) = STANDARD.decode(claimed) else {
        return false;
    };
    let expected: Vec<u8> = match (method, claimed.len()) {
        (_, 20) => Sha1::digest(body).to_vec(),
        (SignatureMethod::HmacSha256, 32) => Sha256::digest(body).to_vec(),
        (SignatureMethod::HmacSha512, 64) => Sha512::digest(body).to_vec(),
        _ => return false,
    };
    expected.ct_eq(&claimed).into()
}

/// HMAC-SHA1 already keyed with a key's signing key: the two key-pad
/// compressions (and the hashing of a signing key longer than 64 bytes) are
/// done once at load instead of on every request.
#[derive(Clone)]
pub struct KeyedSha1(Hmac<Sha1>);

impl KeyedSha1 {
    pub fn new(consumer_secret: &[u8]) -> Option<Self> {
        let key = signing_key(consumer_secret, b"");
        <Hmac<Sha1> as KeyInit>::new_from_slice(key.as_bytes())
            .ok()
            .map(KeyedSha1)
    }
}

impl std::fmt::Debug for KeyedSha1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedSha1([redacted])")
    }
}

pub fn verify(
    req: &SignedRequest,
    p: &OAuthParams,
    consumer_secret: &[u8],
    keyed: Option<&KeyedSha1>,
    allow_plaintext: bool,
    raw_body: Option<&[u8]>,
    require_body_hash: bool,
) -> Result<(), Error> {
    match p.signature_method {
        SignatureMethod::Plaintext => {
            if !allow_plaintext {
                return Err(Error::UnsupportedSignatureMethod);
            }
            let key = signing_key(consumer_secret, b"");
            if !bool::from(p.signature.as_bytes().ct_eq(key.as_bytes())) {
                return Err(Error::InvalidSignature("signature mismatch"));
            }
        }
        method => {
            // Decoded on the stack when it can be an HMAC tag at all (up to
            // 64 bytes; 88 characters never decode to more than 66).
            let mut stack = [0u8; 66];
            let heap;
            const NOT_BASE64: Error = Error::InvalidSignature("signature is not base64");
            let tag: &[u8] = if p.signature.len() <= 88 {
                let n = STANDARD
                    .decode_slice(p.signature.as_bytes(), &mut stack)
                    .map_err(|_| NOT_BASE64)?;
                stack.get(..n).unwrap_or_default()
            } else {
                heap = STANDARD
                    .decode(p.signature.as_bytes())
                    .map_err(|_| NOT_BASE64)?;
                &heap
            };
            let ok =
                base_string::with_built(req.method, req.origin, req.raw_path, &p.signed, |base| {
                    match (method, keyed) {
                        (SignatureMethod::HmacSha1, Some(k)) => {
                            let mut m = k.0.clone();
                            m.update(base);
                            m.verify_slice(tag).is_ok()
                        }
                        _ => {
                            let key = signing_key(consumer_secret, b"");
                            hmac_verify(method, key.as_bytes(), base, tag)
                        }
                    }
                });
            if !ok {
                return Err(Error::InvalidSignature("signature mismatch"));
            }
        }
    }

    // Body hash extension (draft-eaton-oauth-bodyhash-00), checked after
    // the signature so unauthenticated requests cannot make us hash bodies.
    match (&p.body_hash, req.form_body.is_some()) {
        (Some(_), true) => Err(Error::InvalidSignature(
            "oauth_body_hash on a form-encoded body",
        )),
        (Some(claimed), false) => match raw_body {
            Some(body) if body_hash_matches(p.signature_method, claimed, body) => Ok(()),
            Some(_) => Err(Error::InvalidSignature("oauth_body_hash mismatch")),
            None => Err(Error::InvalidSignature(
                "body not available for oauth_body_hash",
            )),
        },
        (None, false) if require_body_hash && raw_body.is_none_or(|b| !b.is_empty()) => {
            Err(Error::InvalidSignature("oauth_body_hash required"))
        }
        _ => Ok(()),
    }
}

/// Input for [`sign_request`].
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    pub method: &'a str,
    /// Full URL: `scheme://host[:port]/path[?query]` (fragment ignored).
    pub url: &'a str,
    /// A form-encoded body (its parameters are signed).
    pub form_body: Option<&'a [u8]>,
    /// A non-form body: produces `oauth_body_hash`.
    pub hashed_body: Option<&'a [u8]>,
    pub consumer_key: &'a str,
    pub consumer_secret: &'a [u8],
    pub signature_method: SignatureMethod,
    pub nonce: &'a str,
    pub timestamp: u64,
}

/// Splits a URL into (origin, raw path, query).
fn split_url(url: &str) -> Result<(&str, &str, Option<&str>), Error> {
    let url = url.split('#').next().unwrap_or(url);
    let scheme_end = url
        .find("://")
        .ok_or(Error::Malformed("url has no scheme"))?;
    let after = scheme_end + 3;
    let rest = url.get(after..).unwrap_or("");
    let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
    if scheme_end == 0 || authority_len == 0 {
        return Err(Error::Malformed("url has no scheme or host"));
    }
    let origin = url.get(..after + authority_len).unwrap_or(url);
    let path_query = rest.get(authority_len..).unwrap_or("");
    Ok(match path_query.split_once('?') {
        Some((path, query)) => (origin, path, Some(query)),
        None => (origin, path_query, None),
    })
}

/// For `portcullis sign`: the full Authorization header value
/// (`OAuth oauth_consumer_key="...", ...`). `form_body` is a form body
/// (included in the signature); see [`sign_request`] for non-form bodies.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &str,
    url: &str,
    form_body: Option<&[u8]>,
    consumer_key: &str,
    consumer_secret: &[u8],
    sig_method: SignatureMethod,
    nonce: &str,
    timestamp: u64,
) -> Result<String, Error> {
    sign_request(&SignInput {
        method,
        url,
        form_body,
        hashed_body: None,
        consumer_key,
        consumer_secret,
        signature_method: sig_method,
        nonce,
        timestamp,
    })
}

/// Signs a request (optionally with `oauth_body_hash` for a non-form
/// body); returns the Authorization header value.
pub fn sign_request(input: &SignInput) -> Result<String, Error> {
    if input.consumer_key.is_empty() || input.nonce.is_empty() {
        return Err(Error::Malformed("consumer key and nonce must not be empty"));
    }
    if input.form_body.is_some() && input.hashed_body.is_some() {
        return Err(Error::InvalidSignature(
            "oauth_body_hash on a form-encoded body",
        ));
    }
    let (origin, raw_path, query) = split_url(input.url)?;
    let mut oauth: Vec<(&str, String)> = Vec::with_capacity(7);
    if let Some(body) = input.hashed_body {
        oauth.push(("oauth_body_hash", body_hash(input.signature_method, body)));
    }
    oauth.push(("oauth_consumer_key", input.consumer_key.to_owned()));
    oauth.push(("oauth_nonce", input.nonce.to_owned()));
    oauth.push((
        "oauth_signature_method",
        input.signature_method.as_str().to_owned(),
    ));
    oauth.push(("oauth_timestamp", input.timestamp.to_string()));
    oauth.push(("oauth_version", "1.0".to_owned()));

    let mut collected = Collected {
        header: oauth
            .iter()
            .map(|(n, v)| (n.as_bytes().into(), v.as_bytes().into()))
            .collect(),
        ..Collected::default()
    };
    collected.parse_query_and_body(query.map(str::as_bytes), input.form_body)?;
    if collected.check_duplicates()? != Some(Location::Header) {
        return Err(Error::DuplicateParameter(
            "oauth parameters in more than one place",
        ));
    }
    let base = base_string::build(input.method, origin, raw_path, &collected.normalized());
    let key = signing_key(input.consumer_secret, b"");
    let signature = compute_signature(input.signature_method, &key, &base);
    oauth.push(("oauth_signature", signature));
    oauth.sort_by(|a, b| a.0.cmp(b.0));

    let mut header = String::from("OAuth ");
    for (i, (name, value)) in oauth.iter().enumerate() {
        if i > 0 {
            header.push_str(", ");
        }
        header.push_str(name);
        header.push_str("=\"");
        header.push_str(&base_string::encode(value.as_bytes()));
        header.push('"');
    }
    Ok(header)
}
