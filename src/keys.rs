//! The key store: keys by id (HTTP Basic, OAuth 1.0) and by secret hash
//! (`X-Api-Key`, which carries no id).

use crate::authorize::Grant;
use crate::config::{KeyConfig, KeySecret};
use crate::error::{err, Code, GatewayError};
use crate::secret::{sha256, Secret};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct Key {
    /// Shared with every request's identity (a pointer copy, not a string copy).
    pub id: Arc<str>,
    pub owner: Arc<str>,
    pub name: Option<String>,
    pub secret_hash: [u8; 32],
    /// The plaintext, when the config gives it (needed to verify signatures).
    pub secret: Option<Secret>,
    /// HMAC-SHA1 keyed with the OAuth 1.0 signing key, when there is a secret.
    pub oauth_sha1: Option<crate::auth::oauth1::KeyedSha1>,
    pub grants: Arc<Vec<Grant>>,
    pub allow_plaintext: bool,
    pub disabled: bool,
    pub expires_at: Option<i64>,
}

impl Key {
    fn new(c: &KeyConfig) -> Self {
        let (secret_hash, secret) = match &c.secret {
            KeySecret::Hash(h) => (*h, None),
            KeySecret::Plain(s) => (sha256(s.expose().as_bytes()), Some(s.clone())),
        };
        Key {
            id: c.id.as_str().into(),
            owner: c.owner.as_str().into(),
            name: c.name.clone(),
            secret_hash,
            oauth_sha1: secret
                .as_ref()
                .and_then(|s| crate::auth::oauth1::KeyedSha1::new(s.expose().as_bytes())),
            secret,
            grants: Arc::new(
                c.grants
                    .iter()
                    .map(|g| Grant::new(&g.namespace, &g.actions, g.resources.as_deref()))
                    .collect(),
            ),
            allow_plaintext: c.allow_plaintext,
            disabled: c.disabled,
            expires_at: c.expires_at,
        }
    }

    /// Refuse a disabled or expired key. Call only after the caller has
    /// proved it knows the secret, so the answer tells nothing to others.
    pub fn check_usable(&self, now: i64) -> Result<(), GatewayError> {
        if self.disabled {
            return Err(err(Code::KeyDisabled, "this key is disabled"));
        }
        if self.expires_at.is_some_and(|t| now >= t) {
            return Err(err(Code::KeyExpired, "this key has expired"));
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct KeyStore {
    by_id: HashMap<String, Arc<Key>>,
    by_hash: HashMap<[u8; 32], Arc<Key>>,
}

impl KeyStore {
    pub fn new(configs: &[KeyConfig]) -> Self {
        let mut store = KeyStore::default();
        for c in configs {
            let k = Arc::new(Key::new(c));
            store
                .by_hash
                .entry(k.secret_hash)
                .or_insert_with(|| k.clone());
            store.by_id.insert(k.id.to_string(), k);
        }
        store
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Key>> {
        self.by_id.get(id)
    }

    pub fn by_secret_hash(&self, hash: &[u8; 32]) -> Option<&Arc<Key>> {
        self.by_hash.get(hash)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
