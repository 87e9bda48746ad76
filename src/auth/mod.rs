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

/// The scheme word of an `Authorization` value (compared ignoring case).
fn auth_scheme(v: &HeaderValue) -> &[u8] {
    let b = v.as_bytes();
    let end = b.iter().position(|c| *c == b' ').unwrap_or(b.len());
    &b[..end]
}

/// Find the credential in the headers and query. A form body that may hold
/// OAuth 1.0 parameters is looked at later, once buffered.
pub fn detect<'a>(parts: &'a Parts) -> Result<Option<Credential<'a>>, GatewayError> {
    // The credential found last, and how many were found: more than one
    // is refused below.
    let mut found: Option<Credential<'a>> = None;
    let mut count = 0;
    let mut add = |c: Credential<'a>, found: &mut Option<Credential<'a>>| {
        count += 1;
        *found = Some(c);
    };
    // A `HeaderName`, not a `&str`: a `&str` is parsed again on every lookup.
    const X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");
    let [auth, api] = crate::rewrite::scan(&parts.headers, [&AUTHORIZATION, &X_API_KEY]);
    let authorization = auth.1;
    if auth.0 > 1 {
        return Err(err(
            Code::MultipleCredentials,
            "the request carries more than one Authorization header",
        ));
    }
    let query = parts.uri.query().unwrap_or("").as_bytes();
    let oauth_query = has_param_prefix(query, "oauth_");
    if let Some(v) = authorization {
        let scheme = auth_scheme(v);
        if scheme.eq_ignore_ascii_case(b"basic") {
            add(Credential::Basic(v), &mut found);
        } else if scheme.eq_ignore_ascii_case(b"bearer") {
            add(Credential::Bearer(v), &mut found);
        } else if scheme.eq_ignore_ascii_case(b"oauth") {
            add(Credential::OAuth1 { header: Some(v) }, &mut found);
        } else {
            return Err(err(
                Code::InvalidCredentials,
                "the Authorization scheme is not one this gateway accepts",
            ));
        }
    }
    if let Some(v) = api.1 {
        if api.0 > 1 {
            return Err(err(
                Code::MultipleCredentials,
                "the request carries more than one X-Api-Key header",
            ));
        }
        add(Credential::ApiKeyHeader(v), &mut found);
    }
    if oauth_query && !matches!(found, Some(Credential::OAuth1 { .. })) {
        // OAuth parameters in both header and query are the OAuth 1.0
        // verifier's to refuse (duplicate_parameter); next to another scheme
        // they are a second credential.
        add(Credential::OAuth1 { header: None }, &mut found);
    }
    if has_param_prefix(query, "pc_") {
        add(Credential::SignedUrl, &mut found);
    }
    match count {
        0 | 1 => Ok(found),
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
