//! Every refusal the gateway makes is a [`GatewayError`]: an error code from
//! the contract (SPEC section 6) plus a human sentence. [`GatewayError::into_response`]
//! is the one place that turns it into an HTTP answer.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use std::borrow::Cow;

/// The error codes of the contract, plus `invalid_path`, `malformed_request`
/// and `request_timeout`
/// (README: "Error codes beyond the spec").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    MalformedCredentials,
    MultipleCredentials,
    DuplicateParameter,
    UnsupportedParameter,
    InvalidPath,
    MalformedRequest,
    MissingCredentials,
    InvalidCredentials,
    UnknownKey,
    KeyDisabled,
    KeyExpired,
    InvalidSignature,
    TimestampOutOfWindow,
    NonceReplayed,
    UnsupportedSignatureMethod,
    InvalidToken,
    TokenExpired,
    UrlExpired,
    InsufficientGrant,
    NoRoute,
    BodyTooLarge,
    RequestTimeout,
    UpstreamUnavailable,
    UpstreamTimeout,
    ReplayStoreUnavailable,
    Internal,
}

impl Code {
    pub const ALL: [Code; 26] = [
        Code::MalformedCredentials,
        Code::MultipleCredentials,
        Code::DuplicateParameter,
        Code::UnsupportedParameter,
        Code::InvalidPath,
        Code::MalformedRequest,
        Code::MissingCredentials,
        Code::InvalidCredentials,
        Code::UnknownKey,
        Code::KeyDisabled,
        Code::KeyExpired,
        Code::InvalidSignature,
        Code::TimestampOutOfWindow,
        Code::NonceReplayed,
        Code::UnsupportedSignatureMethod,
        Code::InvalidToken,
        Code::TokenExpired,
        Code::UrlExpired,
        Code::InsufficientGrant,
        Code::NoRoute,
        Code::BodyTooLarge,
        Code::RequestTimeout,
        Code::UpstreamUnavailable,
        Code::UpstreamTimeout,
        Code::ReplayStoreUnavailable,
        Code::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::MalformedCredentials => "malformed_credentials",
            Code::MultipleCredentials => "multiple_credentials",
            Code::DuplicateParameter => "duplicate_parameter",
            Code::UnsupportedParameter => "unsupported_parameter",
            Code::InvalidPath => "invalid_path",
            Code::MalformedRequest => "malformed_request",
            Code::MissingCredentials => "missing_credentials",
            Code::InvalidCredentials => "invalid_credentials",
            Code::UnknownKey => "unknown_key",
            Code::KeyDisabled => "key_disabled",
            Code::KeyExpired => "key_expired",
            Code::InvalidSignature => "invalid_signature",
            Code::TimestampOutOfWindow => "timestamp_out_of_window",
            Code::NonceReplayed => "nonce_replayed",
            Code::UnsupportedSignatureMethod => "unsupported_signature_method",
            Code::InvalidToken => "invalid_token",
            Code::TokenExpired => "token_expired",
            Code::UrlExpired => "url_expired",
            Code::InsufficientGrant => "insufficient_grant",
            Code::NoRoute => "no_route",
            Code::BodyTooLarge => "body_too_large",
            Code::RequestTimeout => "request_timeout",
            Code::UpstreamUnavailable => "upstream_unavailable",
            Code::UpstreamTimeout => "upstream_timeout",
            Code::ReplayStoreUnavailable => "replay_store_unavailable",
            Code::Internal => "internal_error",
        }
    }

    pub fn status(self) -> StatusCode {
        use Code::*;
        match self {
            MalformedCredentials | MultipleCredentials | DuplicateParameter
            | UnsupportedParameter | InvalidPath | MalformedRequest => StatusCode::BAD_REQUEST,
            MissingCredentials
            | InvalidCredentials
            | UnknownKey
            | KeyDisabled
            | KeyExpired
            | InvalidSignature
            | TimestampOutOfWindow
            | NonceReplayed
            | UnsupportedSignatureMethod
            | InvalidToken
            | TokenExpired
            | UrlExpired => StatusCode::UNAUTHORIZED,
            InsufficientGrant => StatusCode::FORBIDDEN,
            NoRoute => StatusCode::NOT_FOUND,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ReplayStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Is this a failure to authenticate (counted in `portcullis_auth_failures_total`)?
    pub fn is_auth_failure(self) -> bool {
        matches!(
            self.status(),
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) && !matches!(self, Code::InvalidPath | Code::MalformedRequest)
    }
}

/// A refusal: a code and a sentence for a human. The sentence must never hold
/// a secret, a signature or a token: build it from constants and names only.
#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct GatewayError {
    pub code: Code,
    pub message: Cow<'static, str>,
}

impl GatewayError {
    pub fn new(code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        GatewayError {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The JSON answer of SPEC section 6. `challenges` are the
    /// `WWW-Authenticate` values of the schemes the route accepts; they are
    /// sent with 401 answers only.
    pub fn into_response(self, request_id: &str, challenges: &[&'static str]) -> Response<Bytes> {
        let body = serde_json::json!({
            "error": self.code.as_str(),
            "message": self.message,
            "request_id": request_id,
        });
        let mut resp = Response::new(Bytes::from(body.to_string()));
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status() == StatusCode::UNAUTHORIZED {
            for c in challenges {
                headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
            }
        }
        resp
    }
}

/// Shorthand constructor: `err(Code::NoRoute, "no route matches")`.
pub fn err(code: Code, message: impl Into<Cow<'static, str>>) -> GatewayError {
    GatewayError::new(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins every code to the status of SPEC section 6.
    #[test]
    fn status_of_every_code() {
        let expected: &[(&str, u16)] = &[
            ("malformed_credentials", 400),
            ("multiple_credentials", 400),
            ("duplicate_parameter", 400),
            ("unsupported_parameter", 400),
            ("invalid_path", 400),
            ("malformed_request", 400),
            ("missing_credentials", 401),
            ("invalid_credentials", 401),
            ("unknown_key", 401),
            ("key_disabled", 401),
            ("key_expired", 401),
            ("invalid_signature", 401),
            ("timestamp_out_of_window", 401),
            ("nonce_replayed", 401),
            ("unsupported_signature_method", 401),
            ("invalid_token", 401),
            ("token_expired", 401),
            ("url_expired", 401),
            ("insufficient_grant", 403),
            ("no_route", 404),
            ("body_too_large", 413),
            ("request_timeout", 408),
            ("upstream_unavailable", 502),
            ("upstream_timeout", 504),
            ("replay_store_unavailable", 503),
            ("internal_error", 500),
        ];
        assert_eq!(expected.len(), Code::ALL.len());
        for (code, (name, status)) in Code::ALL.iter().zip(expected) {
            assert_eq!(code.as_str(), *name);
            assert_eq!(code.status().as_u16(), *status, "{name}");
        }
    }

    #[test]
    fn response_shape() {
        let resp = err(Code::InvalidCredentials, "wrong")
            .into_response("rid-1", &["Basic realm=\"portcullis\""]);
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"portcullis\""
        );
        let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(v["error"], "invalid_credentials");
        assert_eq!(v["request_id"], "rid-1");
        let resp = err(Code::InsufficientGrant, "no").into_response("r", &["Basic x"]);
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
