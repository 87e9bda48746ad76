//! Authentication: find the one credential a request carries, and verify it
//! with the authenticator of its scheme (one module a scheme).

pub mod apikey;
pub mod bearer;
pub mod jwks;
pub mod jwt;
pub mod oauth1;

use crate::authorize::Grant;
use crate::error::{err, Code, GatewayError};
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::HeaderValue;
use std::sync::Arc;

/// The credential schemes of SPEC section 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    OAuth1,
    ApiKey,
    Jwt,
    SignedUrl,
}

impl Scheme {
    pub const ALL: [Scheme; 4] = [
        Scheme::OAuth1,
        Scheme::ApiKey,
        Scheme::Jwt,
        Scheme::SignedUrl,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::OAuth1 => "oauth1",
            Scheme::ApiKey => "api_key",
            Scheme::Jwt => "jwt",
            Scheme::SignedUrl => "signed_url",
        }
    }

    pub fn parse(s: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The `WWW-Authenticate` challenge for this scheme, if it has one.
    pub fn challenge(self) -> Option<&'static str> {
        match self {
            Scheme::ApiKey => Some("Basic realm=\"portcullis\", charset=\"UTF-8\""),
            Scheme::OAuth1 => Some("OAuth realm=\"portcullis\""),
            Scheme::Jwt => Some("Bearer realm=\"portcullis\""),
            Scheme::SignedUrl => None,
        }
    }
}

/// Who is calling, as established by an authenticator.
#[derive(Debug, Clone)]
pub struct Identity {
    pub scheme: Scheme,
    /// Shared with the key (API keys, OAuth 1.0) where there is one.
    pub subject: Arc<str>,
    pub key_id: Option<Arc<str>>,
    pub issuer: Option<Arc<str>>,
    pub grants: Arc<Vec<Grant>>,
    /// For a token the gateway minted: the current grants of its key, which
    /// cap what the token may do (a key narrowed since applies at once).
    pub ceiling: Option<Arc<Vec<Grant>>>,
}

/// The one credential a request carries.
#[derive(Debug)]
pub enum Credential<'a> {
    /// `Authorization: Basic ...`
    Basic(&'a HeaderValue),
    /// `X-Api-Key: <secret>`
    ApiKeyHeader(&'a HeaderValue),
    /// `Authorization: OAuth ...` and/or `oauth_*` query parameters.
    OAuth1 { header: Option<&'a HeaderValue> },
    /// `Authorization: Bearer <jwt>`
    Bearer(&'a HeaderValue),
    /// `pc_*` query parameters.
    SignedUrl,
}

impl Credential<'_> {
    pub fn scheme(&self) -> Scheme {
        match self {
            Credential::Basic(_) | Credential::ApiKeyHeader(_) => Scheme::ApiKey,
            Credential::OAuth1 { .. } => Scheme::OAuth1,
            Credential::Bearer(_) => Scheme::Jwt,
            Credential::SignedUrl => Scheme::SignedUrl,
        }
    }
}

/// Does a query string (or form body) hold a parameter whose name starts
/// with `prefix`? Names are compared after percent-decoding.
pub fn has_param_prefix(query: &[u8], prefix: &str) -> bool {
    query.split(|b| *b == b'&').any(|pair| {
        let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
        let decoded: Vec<u8> = percent_encoding::percent_decode(name).collect();
        decoded.starts_with(prefix.as_bytes())
    })
}

/// The scheme word of an `Authorization` value, lower-cased.
fn auth_scheme(v: &HeaderValue) -> String {
    let b = v.as_bytes();
    let end = b.iter().position(|c| *c == b' ').unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).to_ascii_lowercase()
}

/// Find the credential in the headers and query. A form body that may hold
/// OAuth 1.0 parameters is looked at later, once buffered.
pub fn detect<'a>(parts: &'a Parts) -> Result<Option<Credential<'a>>, GatewayError> {
    let mut found: Vec<Credential<'a>> = Vec::new();
    let mut auth = parts.headers.get_all(AUTHORIZATION).iter();
    let authorization = auth.next();
    if auth.next().is_some() {
        return Err(err(
            Code::MultipleCredentials,
            "the request carries more than one Authorization header",
        ));
    }
    let query = parts.uri.query().unwrap_or("").as_bytes();
    let oauth_query = has_param_prefix(query, "oauth_");
    if let Some(v) = authorization {
        match auth_scheme(v).as_str() {
            "basic" => found.push(Credential::Basic(v)),
            "bearer" => found.push(Credential::Bearer(v)),
            "oauth" => found.push(Credential::OAuth1 { header: Some(v) }),
            _ => {
                return Err(err(
                    Code::InvalidCredentials,
                    "the Authorization scheme is not one this gateway accepts",
                ))
            }
        }
    }
    let mut api = parts.headers.get_all("x-api-key").iter();
    if let Some(v) = api.next() {
        if api.next().is_some() {
            return Err(err(
                Code::MultipleCredentials,
                "the request carries more than one X-Api-Key header",
            ));
        }
        found.push(Credential::ApiKeyHeader(v));
    }
    if oauth_query && !matches!(found.last(), Some(Credential::OAuth1 { .. })) {
        // OAuth parameters in both header and query are the OAuth 1.0
        // verifier's to refuse (duplicate_parameter); next to another scheme
        // they are a second credential.
        found.push(Credential::OAuth1 { header: None });
    }
    if has_param_prefix(query, "pc_") {
        found.push(Credential::SignedUrl);
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(err(
            Code::MultipleCredentials,
            "the request carries more than one credential",
        )),
    }
}

/// Unix seconds now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
