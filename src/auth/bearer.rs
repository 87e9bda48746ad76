//! Bearer tokens: the JWT state built from `jwt:` (issuers, the gateway's
//! own minter, revoked ids), and the authenticator that turns a verified
//! token into an [`Identity`].
//!
//! A token the gateway minted names its API key (`pc_key`). Every request
//! with it checks that key again: removed, disabled or expired keys stop the
//! token at once, and the key's current grants cap what the token may do.

use super::jwks::{JwksCache, Schedule};
use super::jwt::{self, CacheOptions, IssuerSpec, JwtError, KeySource, Minter, Scope, Verifier};
use super::{Identity, Scheme};
use crate::authorize::Grant;
use crate::config::{IssuerConfig, JwtConfig, TokensConfig};
use crate::error::{err, Code, GatewayError};
use crate::keys::{Key, KeyStore};
use dashmap::DashMap;
use http::HeaderValue;
use std::sync::Arc;
use std::time::Duration;

/// Leeway for the gateway's own tokens (clock skew between replicas).
const OWN_LEEWAY: Duration = Duration::from_secs(30);

pub struct JwtState {
    pub verifier: Verifier,
    pub minter: Option<Minter>,
    pub tokens: Option<TokensConfig>,
    /// Key sets fetched from `jwks_url`s (shared with the refresher).
    pub jwks: Arc<JwksCache>,
    /// Issuers configured with a `jwks_url`.
    pub remote: Vec<RemoteIssuer>,
    /// Compiled grants of verified tokens, by token hash: compiling the
    /// resource globs costs ~50 µs a scope item, which a repeated token
    /// must not pay on every request. Only read after the token verified
    /// again (signature or verified-token cache, expiry, revocation).
    grants: GrantsCache,
}

/// Bounded map from token hash to the grants its scope compiles to. When
/// full it is emptied (the verified-token cache has the same bound, so a
/// legitimate working set fits).
struct GrantsCache {
    map: DashMap<[u8; 32], Arc<Vec<Grant>>>,
    max_entries: usize,
}

impl GrantsCache {
    fn get_or_compile(&self, claims: &jwt::Claims) -> Arc<Vec<Grant>> {
        if let Some(g) = self.map.get(&claims.token_hash) {
            return g.clone();
        }
        let grants = Arc::new(grants_of(&claims.scopes));
        if self.map.len() >= self.max_entries {
            self.map.clear();
        }
        self.map.insert(claims.token_hash, grants.clone());
        grants
    }
}

/// An issuer whose keys come from a URL.
#[derive(Clone, Debug)]
pub struct RemoteIssuer {
    pub url: String,
    pub schedule: Schedule,
}

impl JwtState {
    /// Build from the config and the key sets fetched so far. An issuer whose
    /// URL has not answered yet, or answered with keys that do not fit its
    /// algorithms, is left out until a good fetch: its tokens are refused.
    pub fn build(cfg: &JwtConfig, jwks: &Arc<JwksCache>) -> Result<JwtState, String> {
        let mut issuers = Vec::new();
        let mut remote = Vec::new();
        for (i, ic) in cfg.issuers.iter().enumerate() {
            let place = format!("jwt.issuers[{i}]");
            if let Some(url) = &ic.jwks_url {
                remote.push(RemoteIssuer {
                    url: url.clone(),
                    schedule: Schedule {
                        refresh: ic.jwks_refresh,
                        min_refetch: ic.jwks_min_refetch,
                    },
                });
                let Some(text) = jwks.get(url) else {
                    continue;
                };
                match jwt::Issuer::new(spec(ic, KeySource::Jwks(text.to_string()))) {
                    Ok(issuer) => issuers.push(issuer),
                    Err(e) => {
                        tracing::warn!(url = %url, error = %e, "the fetched key set does not fit this issuer")
                    }
                }
                continue;
            }
            let key = if let Some(s) = &ic.hs_secret {
                KeySource::HsSecret(s.expose().as_bytes().to_vec())
            } else if let Some(p) = &ic.public_key_pem {
                // Inline PEM text, or the path of a PEM file.
                if p.trim_start().starts_with("-----BEGIN") {
                    KeySource::PublicKeyPem(p.clone())
                } else {
                    KeySource::PublicKeyPem(
                        std::fs::read_to_string(p)
                            .map_err(|e| format!("{place}.public_key_pem: {p}: {e}"))?,
                    )
                }
            } else if let Some(f) = &ic.jwks_file {
                KeySource::Jwks(
                    std::fs::read_to_string(f)
                        .map_err(|e| format!("{place}.jwks_file: {}: {e}", f.display()))?,
                )
            } else {
                return Err(format!("{place}: no key source"));
            };
            let issuer = jwt::Issuer::new(spec(ic, key)).map_err(|e| format!("{place}: {e}"))?;
            issuers.push(issuer);
        }
        let minter = match &cfg.tokens {
            Some(t) => {
                let m = Minter::new(&t.issuer, t.signing_key.expose())
                    .map_err(|e| format!("jwt.tokens.signing_key: {e}"))?;
                issuers.push(
                    m.verifying_issuer(OWN_LEEWAY)
                        .map_err(|e| format!("jwt.tokens: {e}"))?,
                );
                Some(m)
            }
            None => None,
        };
        let verifier = Verifier::new(issuers, cache_options()).map_err(|e| format!("jwt: {e}"))?;
        let mut revoked = cfg.revoked_jti.clone();
        if let Some(f) = &cfg.revoked_jti_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("jwt.revoked_jti_file: {}: {e}", f.display()))?;
            revoked.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        verifier.set_revoked(revoked);
        Ok(JwtState {
            verifier,
            minter,
            tokens: cfg.tokens.clone(),
            jwks: jwks.clone(),
            remote,
            grants: GrantsCache {
                map: DashMap::new(),
                max_entries: cache_options().max_entries,
            },
        })
    }
}

/// The issuer `ic` with the key set `text` fetched from its URL.
pub fn issuer_from_jwks(ic: &IssuerConfig, text: &str) -> Result<jwt::Issuer, String> {
    jwt::Issuer::new(spec(ic, KeySource::Jwks(text.to_string()))).map_err(|e| e.to_string())
}

/// A cached token holds its claims (at most 8 KiB of token): 10,000 entries
/// bound the cache to tens of megabytes whatever clients send.
fn cache_options() -> CacheOptions {
    CacheOptions {
        max_entries: 10_000,
        ..CacheOptions::default()
    }
}

fn spec(ic: &IssuerConfig, key: KeySource) -> IssuerSpec {
    IssuerSpec {
        issuer: ic.issuer.clone(),
        audiences: ic.audiences.clone(),
        algorithms: ic.algorithms.clone(),
        key,
        subject_claim: ic.subject_claim.clone(),
        scope_claim: ic.scope_claim.clone(),
        key_id_claim: None,
        leeway: ic.leeway,
        require_exp: ic.require_exp,
    }
}

fn token_error(e: JwtError) -> GatewayError {
    let code = if e.code() == "token_expired" {
        Code::TokenExpired
    } else {
        Code::InvalidToken
    };
    err(code, e.to_string())
}

fn grants_of(scopes: &[Scope]) -> Vec<Grant> {
    scopes
        .iter()
        .map(|s| {
            Grant::new(
                &s.namespace,
                std::slice::from_ref(&s.action),
                s.resource.as_ref().map(std::slice::from_ref),
            )
        })
        .collect()
}

/// Verify `Authorization: Bearer <jwt>`.
pub fn authenticate(
    state: Option<&JwtState>,
    keys: &KeyStore,
    value: &HeaderValue,
    now: i64,
) -> Result<Identity, GatewayError> {
    let Some(state) = state else {
        return Err(err(Code::InvalidToken, "no JWT issuer is configured"));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.get(7..))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| err(Code::InvalidToken, "the bearer token is empty or not ASCII"))?;
    let claims = match state.verifier.verify(token, now.max(0) as u64) {
        Ok(c) => c,
        Err(e) => {
            if matches!(e, JwtError::UnknownKey | JwtError::UnknownIssuer)
                && !state.remote.is_empty()
            {
                // Perhaps the identity provider rotated its keys.
                state.jwks.request_refetch();
            }
            return Err(token_error(e));
        }
    };
    let grants = state.grants.get_or_compile(&claims);
    let ceiling = match &claims.key_id {
        None => None,
        Some(id) => {
            let key: &Arc<Key> = keys.get(id).ok_or_else(|| {
                err(
                    Code::InvalidToken,
                    "the key this token was issued to no longer exists",
                )
            })?;
            key.check_usable(now)?;
            Some(key.grants.clone())
        }
    };
    Ok(Identity {
        scheme: Scheme::Jwt,
        subject: claims.subject.clone(),
        key_id: claims.key_id.clone(),
        issuer: Some(claims.issuer.clone()),
        grants,
        ceiling,
    })
}

/// The scope items (`ns:action[:resource]`) a key's grants stand for.
pub fn key_scope(grants: &[Grant]) -> Vec<String> {
    let mut out = Vec::new();
    for g in grants {
        for a in &g.actions {
            match &g.resources {
                None => out.push(format!("{}:{a}", g.namespace)),
                Some(rs) => out.extend(
                    rs.iter()
                        .map(|r| format!("{}:{a}:{}", g.namespace, r.glob().glob())),
                ),
            }
        }
    }
    out
}

/// Is a requested scope item within what the key may grant?
pub fn scope_covered(requested: &str, key_items: &[String]) -> bool {
    let Some(want) = jwt::parse_scope_item(requested) else {
        return false;
    };
    key_items
        .iter()
        .filter_map(|k| jwt::parse_scope_item(k))
        .any(|have| {
            have.namespace == want.namespace
                && (have.action == "*" || have.action == want.action)
                && (have.resource.is_none() || have.resource == want.resource)
        })
}
