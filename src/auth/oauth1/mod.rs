//! OAuth 1.0 two-legged request verification (RFC 5849).
//!
//! Pure logic: the gateway hands in a [`SignedRequest`] (strings exactly as
//! received), [`parse`] extracts and validates the protocol parameters, and
//! [`verify`] checks the signature (and `oauth_body_hash`) against the
//! consumer secret. Timestamp window and nonce replay checks live in
//! `crate::replay`.
//!
//! Decisions (documented so that they stay deliberate):
//! * Query and form-body parameters are decoded as
//!   `application/x-www-form-urlencoded` (`+` is a space), as RFC 5849
//!   §3.4.1.3.1 requires and oauthlib does (`urllib.parse.parse_qsl`).
//!   Header values are plain percent-decoded (§3.5.1): `+` stays `+`.
//! * Only `realm` from the Authorization header is excluded from the base
//!   string; a `realm` query/body parameter is an ordinary parameter (RFC,
//!   oauthlib).
//! * Two-legged only: `oauth_token` must be absent or empty;
//!   `oauth_callback` and `oauth_verifier` (three-legged flow parameters)
//!   and any other unknown `oauth_*` name are `unsupported_parameter`.
//! * `oauth_body_hash` (draft-eaton-oauth-bodyhash-00): SHA-1 for HMAC-SHA1
//!   and PLAINTEXT, SHA-256 for HMAC-SHA256, SHA-512 for HMAC-SHA512 when
//!   signing. oauthlib 4.0.1 always uses SHA-1, so verification of
//!   HMAC-SHA256/512 requests also accepts a 20-byte SHA-1 body hash
//!   (selected by the decoded length, compared in constant time).
//! * PLAINTEXT signature = `enc(consumer_secret) & enc("")`, compared in
//!   constant time; only accepted when the caller allows it.

use std::borrow::Cow;

mod base_string;
mod params;
mod signature;

#[cfg(test)]
mod oauthlib_vectors;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_encoding;
#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_oauthlib;
#[cfg(test)]
mod tests_parse;

pub use base_string::{base_string_uri, encode};
pub use params::{has_oauth_params, MAX_HEADER_LEN, MAX_HEADER_PARAMS, MAX_PARAMS};
/// [`verify`] with the key's HMAC-SHA1 state prepared in advance
/// ([`KeyedSha1::new`] of the same secret), when there is one; the answer
/// is the same.
pub use signature::verify as verify_keyed;
pub use signature::{body_hash, sign, sign_request, KeyedSha1, SignInput};

/// Where the protocol (`oauth_*`) parameters were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Header,
    Query,
    Body,
}

/// Supported `oauth_signature_method` values (RSA-SHA1 is not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMethod {
    HmacSha1,
    HmacSha256,
    HmacSha512,
    Plaintext,
}

impl SignatureMethod {
    /// The wire name, e.g. `"HMAC-SHA1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureMethod::HmacSha1 => "HMAC-SHA1",
            SignatureMethod::HmacSha256 => "HMAC-SHA256",
            SignatureMethod::HmacSha512 => "HMAC-SHA512",
            SignatureMethod::Plaintext => "PLAINTEXT",
        }
    }

    /// Parses a wire name (case-sensitive, as in RFC 5849).
    pub fn from_wire(name: &str) -> Option<Self> {
        match name {
            "HMAC-SHA1" => Some(SignatureMethod::HmacSha1),
            "HMAC-SHA256" => Some(SignatureMethod::HmacSha256),
            "HMAC-SHA512" => Some(SignatureMethod::HmacSha512),
            "PLAINTEXT" => Some(SignatureMethod::Plaintext),
            _ => None,
        }
    }
}

/// What the gateway hands in. All strings are as received on the wire.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// Request method as sent, e.g. "GET" (upper-cased for the base string).
    pub method: &'a str,
    /// "https://Host:Port"; scheme and host are lower-cased and the default
    /// port dropped. A trailing `/` is ignored; a path after the authority
    /// is kept as a prefix of `raw_path`. Without "://", https is assumed.
    pub origin: &'a str,
    /// The request path exactly as sent (still percent-encoded).
    pub raw_path: &'a str,
    /// Raw query string without '?'.
    pub query: Option<&'a str>,
    /// The Authorization header value if its scheme is OAuth, else None.
    pub authorization: Option<&'a str>,
    /// Raw body if Content-Type is application/x-www-form-urlencoded.
    pub form_body: Option<&'a [u8]>,
}

/// Validated protocol parameters of one request. Names and values borrow
/// from the request unless they had to be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthParams<'a> {
    pub consumer_key: Cow<'a, str>,
    /// Decoded nonce (`%61bc` and `abc` are the same nonce).
    pub nonce: Cow<'a, str>,
    pub timestamp: u64,
    pub signature_method: SignatureMethod,
    /// Decoded signature (base64 text for HMAC methods).
    pub signature: Cow<'a, str>,
    /// Decoded `oauth_body_hash` (base64 text), if sent.
    pub body_hash: Option<Cow<'a, str>>,
    pub location: Location,
    /// Decoded header `realm`, if sent (not part of the base string).
    pub realm: Option<String>,
    /// The parameters the signature covers (all but `oauth_signature` and
    /// the header's `realm`), decoded, in normalised order (§3.4.1.3.2).
    pub(crate) signed: Vec<params::Pair<'a>>,
}

impl OAuthParams<'_> {
    /// Whether [`verify`] needs the raw body (`raw_body: Some(..)`): when
    /// the request carries `oauth_body_hash` or the route requires one.
    /// Pass `Some(&[])` for a request without a body.
    pub fn needs_raw_body(&self, req: &SignedRequest, require_body_hash: bool) -> bool {
        req.form_body.is_none() && (self.body_hash.is_some() || require_body_hash)
    }

    /// The normalised request parameters (§3.4.1.3.2), before the base
    /// string encodes them once more.
    pub fn normalized_params(&self) -> String {
        base_string::normalize_sorted(&self.signed)
    }
}

/// Verification failures. `code()`/`status()` are the public error codes.
/// The `&'static str` payloads are internal reasons for logs; they never
/// contain request data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuth1Error {
    #[error("malformed OAuth credentials: {0}")]
    Malformed(&'static str),
    #[error("duplicate OAuth parameter: {0}")]
    DuplicateParameter(&'static str),
    #[error("unsupported OAuth parameter: {0}")]
    UnsupportedParameter(&'static str),
    #[error("unsupported OAuth signature method")]
    UnsupportedSignatureMethod,
    #[error("invalid OAuth signature: {0}")]
    InvalidSignature(&'static str),
}

impl OAuth1Error {
    pub fn code(&self) -> &'static str {
        match self {
            OAuth1Error::Malformed(_) => "malformed_credentials",
            OAuth1Error::DuplicateParameter(_) => "duplicate_parameter",
            OAuth1Error::UnsupportedParameter(_) => "unsupported_parameter",
            OAuth1Error::UnsupportedSignatureMethod => "unsupported_signature_method",
            OAuth1Error::InvalidSignature(_) => "invalid_signature",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            OAuth1Error::Malformed(_)
            | OAuth1Error::DuplicateParameter(_)
            | OAuth1Error::UnsupportedParameter(_) => 400,
            OAuth1Error::UnsupportedSignatureMethod | OAuth1Error::InvalidSignature(_) => 401,
        }
    }
}

/// Extracts and validates the OAuth parameters of a request.
pub fn parse<'a>(req: &SignedRequest<'a>) -> Result<OAuthParams<'a>, OAuth1Error> {
    params::parse(req)
}

/// The signature base string (§3.4.1): `METHOD&enc(base_uri)&enc(params)`.
pub fn signature_base_string(req: &SignedRequest, p: &OAuthParams) -> String {
    base_string::build_sorted(req.method, req.origin, req.raw_path, &p.signed)
}

/// Verifies the signature and `oauth_body_hash` of a parsed request.
///
/// `consumer_secret` is the key's plaintext secret; the token secret is
/// always empty (two-legged). `raw_body` is the raw body if the caller
/// buffered it: it must be `Some` (use `Some(&[])` for no body) whenever
/// [`OAuthParams::needs_raw_body`] is true, otherwise a present body hash
/// cannot be checked and verification fails closed (`invalid_signature`).
/// With `require_body_hash`, a non-form request with a non-empty (or
/// unknown) body must carry `oauth_body_hash`.
pub fn verify(
    req: &SignedRequest,
    p: &OAuthParams,
    consumer_secret: &[u8],
    allow_plaintext: bool,
    raw_body: Option<&[u8]>,
    require_body_hash: bool,
) -> Result<(), OAuth1Error> {
    verify_keyed(
        req,
        p,
        consumer_secret,
        None,
        allow_plaintext,
        raw_body,
        require_body_hash,
    )
}
