//! The YAML as written. Strings stay strings here (any of them may be
//! `${ENV}`); `validate` types them.
//!
//! Unknown fields are errors, but they are found with `serde_ignored` rather
//! than `#[serde(deny_unknown_fields)]`: serde stops at the first unknown
//! field, and `portcullis check` must list every error, unknown fields and
//! the rest, in one run.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
pub struct RawConfig {
    pub listen: RawListen,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub public_origin: Option<String>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub replay: RawReplay,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub jwt: Option<RawJwt>,
}

#[derive(Debug, Deserialize)]
pub struct RawListen {
    pub https: String,
    pub tls: RawTls,
    #[serde(default)]
    pub http: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
pub struct RawAdmin {
    pub listen: String,
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLimits {
    pub max_form_body: Option<String>,
    pub header_read_timeout: Option<String>,
    pub upstream_timeout: Option<String>,
    pub tls_handshake_timeout: Option<String>,
    pub send_timeout: Option<String>,
    pub max_header_bytes: Option<String>,
    pub max_connections: Option<u64>,
    pub shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawReplay {
    pub window: Option<String>,
    pub store: Option<String>,
    pub max_nonces: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawRoute {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub schemes: Option<Vec<String>>,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub require_body_hash: bool,
    #[serde(default)]
    pub method_actions: BTreeMap<String, String>,
    #[serde(default)]
    pub preserve_host: bool,
}

#[derive(Debug, Deserialize)]
pub struct RawMatch {
    #[serde(default)]
    pub host: Option<String>,
    pub path_prefix: String,
}

#[derive(Debug, Deserialize)]
pub struct RawKey {
    pub id: String,
    pub owner: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub secret_hash: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_file: Option<String>,
    #[serde(default)]
    pub grants: Vec<RawGrant>,
    #[serde(default)]
    pub allow_plaintext: bool,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawGrant {
    pub namespace: String,
    pub actions: Vec<String>,
    #[serde(default)]
    pub resources: Option<Vec<String>>,
}

/// An included key file: a list of keys, one key, or `keys: [...]`.
#[derive(Debug, Deserialize)]
pub struct RawKeyFile {
    pub keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
pub struct RawJwt {
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub revoked_jti: Vec<String>,
    #[serde(default)]
    pub revoked_jti_file: Option<String>,
    #[serde(default)]
    pub tokens: Option<RawTokens>,
}

#[derive(Debug, Deserialize)]
pub struct RawIssuer {
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub jwks_file: Option<String>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default)]
    pub hs_secret: Option<String>,
    #[serde(default)]
    pub public_key_pem: Option<String>,
    #[serde(default)]
    pub subject_claim: Option<String>,
    #[serde(default)]
    pub scope_claim: Option<String>,
    #[serde(default)]
    pub leeway: Option<String>,
    #[serde(default)]
    pub require_exp: Option<bool>,
    #[serde(default)]
    pub jwks_refresh: Option<String>,
    #[serde(default)]
    pub jwks_min_refetch: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawTokens {
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub signing_key: Option<String>,
}
