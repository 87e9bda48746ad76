//! Configuration: YAML in, typed [`Settings`] out.
//!
//! All YAML parsing lives in this module (`raw` holds the serde structs), so
//! the YAML crate can be swapped here alone. Loading collects every error it
//! can, each with its file, line and field, before failing.

mod locate;
mod raw;
mod units;
mod validate;

pub use units::{parse_duration, parse_size};
pub use validate::{default_method_actions, expand_env};

use crate::auth::Scheme;
use crate::secret::Secret;
use http::Method;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The main config file.
    pub path: PathBuf,
    /// Every file this configuration was read from (config, includes,
    /// secret files, TLS files): a change to any of them triggers a reload.
    pub files: Vec<PathBuf>,
    /// Include patterns, resolved, so that new files matching them are seen.
    pub include_patterns: Vec<String>,
    pub listen: Listen,
    pub admin: Option<Admin>,
    pub public_origin: Option<String>,
    pub limits: Limits,
    pub replay: Replay,
    pub log: Log,
    pub routes: Vec<RouteConfig>,
    pub keys: Vec<KeyConfig>,
    pub jwt: Option<JwtConfig>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub https: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub http: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub listen: SocketAddr,
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_form_body: usize,
    pub header_read_timeout: Duration,
    pub upstream_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// How long a client may leave the gateway unable to write to it.
    pub send_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_form_body: 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayStoreKind {
    Memory,
    Redis(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub window: Duration,
    pub store: ReplayStoreKind,
    pub max_nonces: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default)]
pub struct Log {
    pub format: LogFormat,
    pub level: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    /// Lower-case, without port.
    pub host: Option<String>,
    /// Normalised: starts with `/`, no trailing `/` unless it is `/`.
    pub path_prefix: String,
    pub upstream: Option<Upstream>,
    pub namespace: String,
    pub schemes: Vec<Scheme>,
    pub public: bool,
    pub require_body_hash: bool,
    /// Method to action, defaults merged with the route's overrides.
    pub method_actions: BTreeMap<Method, String>,
    pub preserve_host: bool,
}

/// An `http://host:port[/base]` upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub authority: http::uri::Authority,
    /// Prepended to the forwarded path; empty when the URL has no path.
    pub base_path: String,
}

#[derive(Debug, Clone)]
pub enum KeySecret {
    /// Only the SHA-256 of the secret is known: API key only.
    Hash([u8; 32]),
    /// The plaintext (from `${ENV}` or `secret_file`): any scheme.
    Plain(Secret),
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub id: String,
    pub owner: String,
    pub name: Option<String>,
    pub secret: KeySecret,
    pub grants: Vec<GrantConfig>,
    pub allow_plaintext: bool,
    pub disabled: bool,
    /// Unix seconds.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantConfig {
    pub namespace: String,
    /// Lower-case action names, or `*`.
    pub actions: Vec<String>,
    pub resources: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub issuers: Vec<IssuerConfig>,
    pub revoked_jti: Vec<String>,
    pub revoked_jti_file: Option<PathBuf>,
    pub tokens: Option<TokensConfig>,
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<String>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub hs_secret: Option<Secret>,
    pub public_key_pem: Option<String>,
    pub subject_claim: String,
    pub scope_claim: String,
    pub leeway: Duration,
    pub require_exp: bool,
    /// How often keys from `jwks_url` are fetched again.
    pub jwks_refresh: Duration,
    /// At most one extra fetch this often when a token names an unknown key.
    pub jwks_min_refetch: Duration,
}

#[derive(Debug, Clone)]
pub struct TokensConfig {
    pub issuer: String,
    pub ttl: Duration,
    pub signing_key: Secret,
}

/// One problem in a configuration, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Load and validate a configuration file (and everything it includes).
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    validate::load(path)
}

/// The YAML entry `keys new` prints and writes (a one-item key list).
pub fn render_key_yaml(key: &KeyYaml) -> String {
    // Hand-formatted so the output is stable and readable; values are
    // validated identifiers and hashes, quoted where YAML needs it.
    let mut s = String::new();
    s.push_str(&format!("- id: {}\n", yaml_str(&key.id)));
    s.push_str(&format!("  owner: {}\n", yaml_str(&key.owner)));
    if let Some(n) = &key.name {
        s.push_str(&format!("  name: {}\n", yaml_str(n)));
    }
    s.push_str(&format!("  secret_hash: {}\n", key.secret_hash));
    if key.grants.is_empty() {
        s.push_str("  grants: []\n");
    } else {
        s.push_str("  grants:\n");
        for g in &key.grants {
            let actions: Vec<String> = g.actions.iter().map(|a| yaml_str(a)).collect();
            s.push_str(&format!(
                "    - {{ namespace: {}, actions: [{}]",
                yaml_str(&g.namespace),
                actions.join(", ")
            ));
            if let Some(r) = &g.resources {
                let r: Vec<String> = r.iter().map(|x| yaml_str(x)).collect();
                s.push_str(&format!(", resources: [{}]", r.join(", ")));
            }
            s.push_str(" }\n");
        }
    }
    s
}

/// What `keys new` prints.
pub struct KeyYaml {
    pub id: String,
    pub owner: String,
    pub name: Option<String>,
    pub secret_hash: String,
    pub grants: Vec<GrantConfig>,
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests;
