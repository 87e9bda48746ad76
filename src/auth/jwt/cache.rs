//! Verified-token cache: a repeated RS256/ES256 token is verified once.
//!
//! Keyed by SHA-256 of the compact token; an entry is valid from the moment
//! it was verified until `min(exp, verified_at + max_ttl)` (without leeway:
//! a token inside its leeway window is simply verified again). When full,
//! new entries are not cached (live ones are never evicted); expired entries
//! are swept at most once per [`SWEEP_INTERVAL_SECS`] when the cache is full,
//! and an expired entry is removed when it is looked up.

use super::Claims;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) const SWEEP_INTERVAL_SECS: u64 = 10;

struct Entry {
    claims: Arc<Claims>,
    verified_at: u64,
    valid_until: u64,
}

pub(crate) struct TokenCache {
    map: DashMap<[u8; 32], Entry>,
    max_entries: usize,
    max_ttl: u64,
    /// `now` of the last sweep, plus one (0: never swept).
    last_sweep: AtomicU64,
}

impl TokenCache {
    pub fn new(max_entries: usize, max_ttl: u64) -> Self {
        TokenCache {
            map: DashMap::new(),
            max_entries,
            max_ttl,
            last_sweep: AtomicU64::new(0),
        }
    }

    pub fn get(&self, hash: &[u8; 32], now: u64) -> Option<Arc<Claims>> {
        let expired = {
            let entry = self.map.get(hash)?;
            // A clock that went backwards does not revive a cached verdict.
            if now >= entry.verified_at && now < entry.valid_until {
                return Some(entry.claims.clone());
            }
            now >= entry.valid_until
        };
        if expired {
            self.map.remove_if(hash, |_, e| now >= e.valid_until);
        }
        None
    }

    pub fn insert(&self, claims: &Claims, now: u64) {
        if self.max_entries == 0 || self.max_ttl == 0 {
            return;
        }
        let bound = now.saturating_add(self.max_ttl);
        let valid_until = claims.exp.map_or(bound, |exp| exp.min(bound));
        if valid_until <= now {
            return;
        }
        if self.map.len() >= self.max_entries {
            self.sweep(now);
            if self.map.len() >= self.max_entries {
                return;
            }
        }
        self.map.insert(
            claims.token_hash,
            Entry {
                claims: Arc::new(claims.clone()),
                verified_at: now,
                valid_until,
            },
        );
    }

    fn sweep(&self, now: u64) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if last != 0 && now < (last - 1).saturating_add(SWEEP_INTERVAL_SECS) {
            return;
        }
        let stamp = now.saturating_add(1);
        if self
            .last_sweep
            .compare_exchange(last, stamp, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.map.retain(|_, e| now < e.valid_until);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(n: u8, exp: Option<u64>) -> Claims {
        Claims {
            issuer: "i".into(),
            subject: "s".into(),
            scopes: vec![],
            jti: None,
            exp,
            key_id: None,
            token_hash: [n; 32],
        }
    }

    #[test]
    fn validity_window() {
        let c = TokenCache::new(10, 300);
        c.insert(&claims(1, Some(1100)), 1000);
        c.insert(&claims(2, None), 1000);
        c.insert(&claims(3, Some(1000)), 1000); // already at exp: not cached
        assert_eq!(c.len(), 2);
        assert!(c.get(&[1; 32], 1099).is_some());
        assert!(c.get(&[1; 32], 999).is_none(), "clock went backwards");
        assert!(c.get(&[1; 32], 1100).is_none(), "past exp");
        assert!(c.get(&[2; 32], 1299).is_some());
        assert!(c.get(&[2; 32], 1300).is_none(), "past the bound");
        assert_eq!(c.len(), 0, "expired entries are dropped on lookup");
        assert!(c.get(&[3; 32], 1000).is_none());
    }

    #[test]
    fn full_cache_stops_caching_then_sweeps() {
        let c = TokenCache::new(2, 300);
        c.insert(&claims(1, Some(1010)), 1000);
        c.insert(&claims(2, Some(2000)), 1000);
        c.insert(&claims(3, Some(2000)), 1000);
        assert_eq!(c.len(), 2);
        assert!(c.get(&[1; 32], 1001).is_some(), "live entries are kept");
        assert!(c.get(&[3; 32], 1001).is_none(), "new entry not cached");
        // Entry 1 expires at 1010; the next insert after that sweeps it.
        c.insert(&claims(4, Some(2000)), 1020);
        assert!(c.get(&[4; 32], 1021).is_some());
        assert!(c.get(&[2; 32], 1021).is_some());
        // Sweeps are rate limited: nothing expired, so 5 is not cached.
        c.insert(&claims(5, Some(2000)), 1021);
        assert!(c.get(&[5; 32], 1022).is_none());
    }

    #[test]
    fn disabled() {
        let c = TokenCache::new(0, 300);
        c.insert(&claims(1, None), 1000);
        assert_eq!(c.len(), 0);
    }
}
