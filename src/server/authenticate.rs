//! The authentication step of the pipeline: find the one credential, verify
//! it with its scheme's authenticator, and buffer a body only when a
//! signature needs it.

use crate::auth::oauth1::{self, OAuth1Error, SignedRequest};
use crate::auth::{self, apikey, bearer, Credential, Identity, Scheme};
use crate::error::{err, Code, GatewayError};
use crate::proxy::{self, Body};
use crate::replay::{self, ReplayError, TimestampError};
use crate::routes::Route;
use crate::state::{Gateway, Snapshot};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::HeaderValue;
use http_body_util::BodyExt;

impl From<OAuth1Error> for GatewayError {
    fn from(e: OAuth1Error) -> Self {
        let code = match e {
            OAuth1Error::Malformed(_) => Code::MalformedCredentials,
            OAuth1Error::DuplicateParameter(_) => Code::DuplicateParameter,
            OAuth1Error::UnsupportedParameter(_) => Code::UnsupportedParameter,
            OAuth1Error::UnsupportedSignatureMethod => Code::UnsupportedSignatureMethod,
            OAuth1Error::InvalidSignature(_) => Code::InvalidSignature,
        };
        // The variants carry constant reasons only, never request data.
        err(code, e.to_string())
    }
}

impl From<ReplayError> for GatewayError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Replayed => err(Code::NonceReplayed, "this nonce has been used already"),
            ReplayError::Full => err(
                Code::ReplayStoreUnavailable,
                "the replay store is full; the request is refused rather than risk a replay",
            ),
            ReplayError::Unavailable(_) => err(
                Code::ReplayStoreUnavailable,
                "the replay store cannot be reached; the request is refused rather than risk a replay",
            ),
        }
    }
}

impl From<TimestampError> for GatewayError {
    fn from(e: TimestampError) -> Self {
        err(Code::TimestampOutOfWindow, e.to_string())
    }
}

/// The request as the authenticators see it.
pub struct AuthRequest<'a> {
    pub parts: &'a Parts,
    /// The host the client named (with port), if any.
    pub host: Option<&'a str>,
    /// When the request arrived: credentials are checked against this time.
    pub arrived: std::time::Instant,
}

/// What the synchronous look at the request decided.
enum Plan {
    /// Verified without touching the body (API keys).
    Done(Identity),
    /// OAuth 1.0 with this `Authorization` value (if any): needs the body
    /// when it is a form, and the nonce store.
    OAuth1(Option<HeaderValue>),
    /// No credential in the headers or query; a form body may hold OAuth 1.0 parameters.
    FormBody,
}

fn plan(snap: &Snapshot, route: &Route, parts: &Parts, now: i64) -> Result<Plan, GatewayError> {
    let cred = match auth::detect(parts)? {
        Some(c) => c,
        None if route.accepts(Scheme::OAuth1) && is_form(parts) => return Ok(Plan::FormBody),
        None => return Err(missing()),
    };
    let scheme = cred.scheme();
    if !route.accepts(scheme) {
        return Err(err(
            Code::InvalidCredentials,
            format!("this route does not accept {} credentials", scheme.as_str()),
        ));
    }
    match cred {
        Credential::Basic(v) => apikey::basic(&snap.keys, v, now).map(Plan::Done),
        Credential::ApiKeyHeader(v) => apikey::header(&snap.keys, v, now).map(Plan::Done),
        Credential::OAuth1 { header } => Ok(Plan::OAuth1(header.cloned())),
        Credential::Bearer(v) => {
            bearer::authenticate(snap.jwt.as_deref(), &snap.keys, v, now).map(Plan::Done)
        }
        Credential::SignedUrl => Err(err(
            Code::MalformedCredentials,
            "signed URLs are not enabled on this gateway",
        )),
    }
}

/// Verify the request's one credential. `body` is replaced by a buffered
/// copy when a signature covered it; the upstream gets the same bytes.
pub async fn authenticate(
    gw: &Gateway,
    snap: &Snapshot,
    route: &Route,
    req: &AuthRequest<'_>,
    body: &mut Body,
) -> Result<Identity, GatewayError> {
    let now = crate::clock::unix_secs(req.arrived);
    let parts = req.parts;
    let limits = &snap.settings.limits;
    match plan(snap, route, parts, now)? {
        Plan::Done(identity) => Ok(identity),
        Plan::OAuth1(header) => {
            let form = if is_form(parts) {
                Some(buffer(body, limits, parts).await?)
            } else {
                None
            };
            oauth1_verify(gw, snap, route, req, header, form, body, now).await
        }
        Plan::FormBody => {
            let bytes = buffer(body, limits, parts).await?;
            if !oauth1::has_oauth_params(&bytes) {
                return Err(missing());
            }
            oauth1_verify(gw, snap, route, req, None, Some(bytes), body, now).await
        }
    }
}

fn missing() -> GatewayError {
    err(Code::MissingCredentials, "this route needs credentials")
}

pub(super) fn is_form(parts: &Parts) -> bool {
    parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn declared_length(parts: &Parts) -> Option<u64> {
    let v = parts.headers.get(CONTENT_LENGTH)?;
    v.to_str().ok()?.parse().ok()
}

fn too_large(limit: usize) -> GatewayError {
    err(
        Code::BodyTooLarge,
        format!("a signed body may be at most {limit} bytes"),
    )
}

/// How much of a refused body is read and thrown away before the 413, so
/// that a client still sending sees the answer instead of a reset
/// (RFC 9112 section 9.6); past either bound the connection just closes.
const DRAIN_BYTES: u64 = 16 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Read the whole body (at most `limit` bytes) and put a copy back for the
/// upstream. (Frames are read by hand: `http_body_util::Limited` inside this
/// future trips a rustc higher-ranked lifetime bug on its error bound.)
/// Read a body a signature covers, within `max_form_body` bytes and
/// `upstream_timeout`: a client trickling its body cannot hold a request open.
pub(super) async fn buffer(
    body: &mut Body,
    limits: &crate::config::Limits,
    parts: &Parts,
) -> Result<Bytes, GatewayError> {
    match tokio::time::timeout(
        limits.upstream_timeout,
        read_body(body, limits.max_form_body, parts),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(err(
            Code::RequestTimeout,
            "the request body did not arrive in time",
        )),
    }
}

async fn read_body(body: &mut Body, limit: usize, parts: &Parts) -> Result<Bytes, GatewayError> {
    let declared = declared_length(parts);
    if declared.is_some_and(|n| n > limit as u64) {
        if declared.is_some_and(|n| n <= DRAIN_BYTES) && !expects_continue(parts) {
            drain(body).await;
        }
        return Err(too_large(limit));
    }
    let mut taken = std::mem::replace(body, proxy::full(Bytes::new()));
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = taken.frame().await {
        let Ok(frame) = frame else {
            return Err(err(
                Code::MalformedRequest,
                "the request body could not be read",
            ));
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(&mut taken).await;
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    let bytes = buf.freeze();
    *body = proxy::full(bytes.clone());
    Ok(bytes)
}

fn expects_continue(parts: &Parts) -> bool {
    parts
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Read and discard what is left of a body, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
async fn drain(body: &mut Body) {
    let discard = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > DRAIN_BYTES {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// The origin the client signed: `public_origin`, else `https://` + Host
/// (the Host alone: an origin without a scheme is https).
fn origin<'a>(snap: &'a Snapshot, host: Option<&'a str>) -> Result<&'a str, GatewayError> {
    match (&snap.settings.public_origin, host) {
        (Some(o), _) => Ok(o),
        (None, Some(h)) => Ok(h),
        (None, None) => Err(err(
            Code::MalformedRequest,
            "an OAuth 1.0 request needs a Host header",
        )),
    }
}

/// Verify an OAuth 1.0 request: parameters, key, body hash and signature,
/// then the timestamp window, the key's state, and last the nonce (only
/// once the signature is good, so unauthenticated traffic cannot fill the
/// store).
#[allow(clippy::too_many_arguments)]
async fn oauth1_verify(
    gw: &Gateway,
    snap: &Snapshot,
    route: &Route,
    req: &AuthRequest<'_>,
    header: Option<HeaderValue>,
    form: Option<Bytes>,
    body: &mut Body,
    now: i64,
) -> Result<Identity, GatewayError> {
    let authorization = match &header {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| err(Code::MalformedCredentials, "the OAuth header is not ASCII"))?,
        ),
        None => None,
    };
    let origin = origin(snap, req.host)?;
    let signed = SignedRequest {
        method: req.parts.method.as_str(),
        origin,
        raw_path: req.parts.uri.path(),
        query: req.parts.uri.query(),
        authorization,
        form_body: form.as_deref(),
    };
    let params = oauth1::parse(&signed)?;
    let Some(key) = snap.keys.get(&params.consumer_key) else {
        return Err(err(Code::UnknownKey, "no key has this consumer key"));
    };
    let Some(secret) = &key.secret else {
        return Err(err(
            Code::InvalidCredentials,
            "this key stores only a secret hash and cannot verify OAuth 1.0 signatures",
        ));
    };
    let now_u = now.max(0) as u64;
    let require = route.config.require_body_hash;
    let raw = if params.needs_raw_body(&signed, require) {
        Some(buffer(body, &snap.settings.limits, req.parts).await?)
    } else {
        None
    };
    // The nonce store's line loads while the signature is computed.
    let pending = gw.replay.prefetch(&key.id, &params.nonce);
    oauth1::verify_keyed(
        &signed,
        &params,
        secret.expose().as_bytes(),
        key.oauth_sha1.as_ref(),
        key.allow_plaintext,
        raw.as_deref(),
        require,
    )?;
    // Only a caller that knows the secret learns about the window and the key.
    let window = snap.settings.replay.window.as_secs();
    replay::check_timestamp(params.timestamp, now_u, window, gw.started_at)?;
    key.check_usable(now)?;
    let store = &gw.replay;
    match store.check_and_insert_now(&pending, params.timestamp, now_u) {
        Some(answer) => answer?,
        None => {
            store
                .check_and_insert(&key.id, &params.nonce, params.timestamp, now_u)
                .await?
        }
    }
    Ok(Identity {
        scheme: Scheme::OAuth1,
        subject: key.owner.clone(),
        key_id: Some(key.id.clone()),
        issuer: None,
        grants: key.grants.clone(),
        ceiling: None,
    })
}
