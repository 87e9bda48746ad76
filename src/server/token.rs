//! The gateway's own endpoints, served when `jwt.tokens` is configured:
//! `POST /auth/token`, an OAuth 2.0 client-credentials grant (RFC 6749
//! section 4.4), and `GET /.well-known/jwks.json`, the token signer's public
//! key when it is asymmetric.

use super::authenticate::{buffer, is_form};
use crate::auth::apikey;
use crate::auth::bearer::{key_scope, scope_covered, JwtState};
use crate::error::{err, Code, GatewayError};
use crate::keys::Key;
use crate::proxy::{full, Body};
use crate::state::Snapshot;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;

pub const TOKEN_PATH: &str = "/auth/token";
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Is this request for one of the gateway's endpoints?
pub fn is_endpoint(snap: &Snapshot, path: &str) -> bool {
    (path == TOKEN_PATH || path == JWKS_PATH)
        && snap.jwt.as_ref().is_some_and(|j| j.minter.is_some())
}

/// Answer a gateway endpoint; the decision label goes to the access log.
pub async fn serve(
    snap: &Snapshot,
    req: Request<Body>,
    now: i64,
) -> Result<(Response<Body>, &'static str), GatewayError> {
    let Some(jwt) = snap.jwt.as_deref() else {
        return Err(err(Code::NoRoute, "no route matches this host and path"));
    };
    if req.uri().path() == JWKS_PATH {
        return jwks(jwt, req.method());
    }
    Ok(match token(snap, jwt, req, now).await {
        Ok(r) => (r, "token_issued"),
        Err(e) => (e.response(), "denied"),
    })
}

fn jwks(jwt: &JwtState, method: &Method) -> Result<(Response<Body>, &'static str), GatewayError> {
    let body = jwt
        .minter
        .as_ref()
        .and_then(|m| m.jwks_json())
        .ok_or_else(|| {
            err(
                Code::NoRoute,
                "the token signer is symmetric: it has no public key",
            )
        })?;
    if method != Method::GET && method != Method::HEAD {
        return Err(err(Code::NoRoute, "the key set is read with GET"));
    }
    let mut r = Response::new(full(body));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok((r, "public"))
}

/// An RFC 6749 section 5.2 error.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: &'static str) -> Self {
        OAuthError {
            status,
            error,
            description,
        }
    }

    fn request(d: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }

    fn client(d: &'static str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }

    fn response(&self) -> Response<Body> {
        let body =
            serde_json::json!({ "error": self.error, "error_description": self.description });
        let mut r = Response::new(full(body.to_string()));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert("pragma", HeaderValue::from_static("no-cache"));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"portcullis\", charset=\"UTF-8\""),
            );
        }
        r
    }
}

/// `application/x-www-form-urlencoded` pairs; a repeated name is an error
/// (RFC 6749 section 3.2).
fn form(body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let mut it = pair.splitn(2, |b| *b == b'=');
        let decode = |raw: &[u8]| -> Result<String, OAuthError> {
            let spaced: Vec<u8> = raw
                .iter()
                .map(|b| if *b == b'+' { b' ' } else { *b })
                .collect();
            percent_encoding::percent_decode(&spaced)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| OAuthError::request("the form is not valid UTF-8"))
        };
        let name = decode(it.next().unwrap_or_default())?;
        let value = decode(it.next().unwrap_or_default())?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(OAuthError::request("a parameter is repeated"));
        }
        out.push((name, value));
    }
    Ok(out)
}

async fn token(
    snap: &Snapshot,
    jwt: &JwtState,
    req: Request<Body>,
    now: i64,
) -> Result<Response<Body>, OAuthError> {
    let (Some(minter), Some(tokens)) = (&jwt.minter, &jwt.tokens) else {
        return Err(OAuthError::request("this gateway does not issue tokens"));
    };
    if req.method() != Method::POST {
        return Err(OAuthError::request("the token endpoint takes POST"));
    }
    let (parts, body) = req.into_parts();
    if !is_form(&parts) {
        return Err(OAuthError::request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut body = body;
    let bytes = buffer(&mut body, &snap.settings.limits, &parts)
        .await
        .map_err(|_| OAuthError::request("the body is too large or unreadable"))?;
    let params = form(&bytes)?;
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    match get("grant_type") {
        None => return Err(OAuthError::request("grant_type is missing")),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            ))
        }
    }
    let key = client(snap, &parts, get("client_id"), get("client_secret"))?;
    key.check_usable(now)
        .map_err(|_| OAuthError::client("the key is disabled or expired"))?;
    let allowed = key_scope(&key.grants);
    let scope = match get("scope") {
        None => allowed.join(" "),
        Some(requested) => narrow(requested, &allowed)?,
    };
    let (token, _jti, exp) = minter
        .mint(&key.owner, &key.id, &scope, tokens.ttl, now.max(0) as u64)
        .map_err(|_| {
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the token could not be signed",
            )
        })?;
    let body = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": exp.saturating_sub(now.max(0) as u64),
        "scope": scope,
    });
    let mut r = Response::new(full(body.to_string()));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("pragma", HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// The requested scope, if every item is within what the key holds. RFC 6749
/// section 3.3 syntax only (items of %x21 / %x23-5B / %x5D-7E, one space
/// between), so what is checked is exactly what is minted.
fn narrow(requested: &str, allowed: &[String]) -> Result<String, OAuthError> {
    let invalid = |d| OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", d);
    let well_formed = !requested.is_empty()
        && requested
            .bytes()
            .all(|b| b == b' ' || (b'\x21'..=b'\x7e').contains(&b) && b != b'"' && b != b'\\')
        && requested.split(' ').all(|s| !s.is_empty());
    if !well_formed {
        return Err(invalid("the scope is not space-separated scope tokens"));
    }
    let mut items: Vec<&str> = Vec::new();
    for item in requested.split(' ') {
        if !items.contains(&item) {
            items.push(item);
        }
    }
    if items.len() > crate::auth::jwt::MAX_SCOPE_ITEMS {
        return Err(invalid("the scope has too many items"));
    }
    if !items.iter().all(|s| scope_covered(s, allowed)) {
        return Err(invalid("the scope asks for more than the key is granted"));
    }
    Ok(items.join(" "))
}

/// The client's key, from HTTP Basic or from `client_id`/`client_secret` in
/// the form; never both (RFC 6749 section 2.3).
fn client(
    snap: &Snapshot,
    parts: &http::request::Parts,
    id: Option<&str>,
    secret: Option<&str>,
) -> Result<Arc<Key>, OAuthError> {
    let basic = parts
        .headers
        .get(AUTHORIZATION)
        .filter(|v| v.as_bytes().len() > 6 && v.as_bytes()[..6].eq_ignore_ascii_case(b"basic "));
    let (id, secret) = match (basic, id, secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(OAuthError::request(
                "give the client credentials once: Basic or the form",
            ))
        }
        (Some(v), None, None) => apikey::decode_basic(v)
            .map_err(|_| OAuthError::client("the Basic credentials are malformed"))?,
        (None, Some(i), Some(s)) => (i.to_string(), s.to_string()),
        _ => return Err(OAuthError::client("client authentication is required")),
    };
    apikey::verify_id_secret(&snap.keys, &id, &secret)
        .map_err(|_| OAuthError::client("the client id or secret is not valid"))
}
