//! In-memory nonce store: sharded, bucketed by expiry time, bounded.
//!
//! * Identity: a 64-bit SipHash-1-3 fingerprint (random key per store) of
//!   `len(key_id) as u64 LE || key_id || 0x00 || nonce`. Strings are not
//!   stored. A false "replayed" needs a 64-bit collision: with 1M live
//!   nonces the probability is ~3e-8 per request.
//! * 64 shards (`std::sync::Mutex`), picked by fingerprint bits 32..38 (the
//!   per-shard hash sets use the low bits for slots and the top 7 bits for
//!   control tags, so those are left independent). The sets use the
//!   fingerprint itself as hash (no rehashing).
//! * Each shard has a ring of [`RING_BUCKETS`] hash sets; an entry goes to
//!   the set for `expiry = timestamp + window` (bucket `expiry / width`,
//!   `width = ceil(2 * window / (RING_BUCKETS - 2))`). Whole sets are
//!   dropped once every expiry they can hold has passed, lazily on access
//!   (the shard being touched) or via [`MemoryNonceStore::purge`]. Entries
//!   can therefore stay live up to one bucket width (a third of the
//!   window) past their expiry.
//! * A fresh nonce is looked up in every set of its shard, since a nonce
//!   stays used for its key whatever timestamp it comes back with. Eight
//!   buckets keep that at about four live sets; with 32 (before
//!   2026-11-23) it was about sixteen, 0.3 µs of a request. The price is
//!   the longer stay past expiry: with traffic at the current time, about
//!   a sixth of the window more nonces are live (measured in the soak).
//! * Bounded by `max_nonces` (atomic counter). When full, all shards are
//!   purged (at most once per second); if still full → `Full`. Live
//!   nonces are never evicted.
//! * Memory: 14-18 bytes per live nonce (8-byte fingerprint + 1 control
//!   byte per hash-table slot at 7/8 max load, tables grow by doubling),
//!   measured by `memory_per_nonce` with 1M nonces; see
//!   [`MemoryNonceStore::heap_bytes`].

use super::{NonceStore, ReplayError, StoreFuture};
use siphasher::sip::SipHasher13;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Number of shards.
pub const SHARDS: usize = 64;
/// Time buckets per shard.
pub const RING_BUCKETS: usize = 8;

/// The fingerprints are already uniformly distributed: use them as hashes.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type FingerprintSet = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

#[derive(Default)]
struct Bucket {
    /// `expiry / width` of the entries in `set` (meaningless when empty).
    id: u64,
    set: FingerprintSet,
}

struct Shard {
    buckets: [Bucket; RING_BUCKETS],
}

/// Bounded in-memory [`NonceStore`] for a single gateway instance.
pub struct MemoryNonceStore {
    shards: Box<[Mutex<Shard>]>,
    count: AtomicUsize,
    /// `now` of the last full purge triggered by a full store (at most one
    /// per second, so a flood at capacity does not lock every shard on
    /// every request).
    last_full_purge: AtomicU64,
    max_nonces: usize,
    window: u64,
    width: u64,
    k0: u64,
    k1: u64,
}

impl MemoryNonceStore {
    /// `window_secs`: the timestamp window (entries live until
    /// `timestamp + window_secs`); `max_nonces`: hard cap on live entries.
    pub fn new(window_secs: u64, max_nonces: usize) -> Self {
        let span = window_secs.saturating_mul(2);
        let slots = (RING_BUCKETS - 2) as u64;
        let width = span.div_ceil(slots).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    buckets: std::array::from_fn(|_| Bucket::default()),
                })
            })
            .collect();
        MemoryNonceStore {
            shards,
            count: AtomicUsize::new(0),
            last_full_purge: AtomicU64::new(0),
            max_nonces,
            window: window_secs,
            width,
            k0: rand::random(),
            k1: rand::random(),
        }
    }

    fn fingerprint(&self, key_id: &str, nonce: &str) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(&(key_id.len() as u64).to_le_bytes());
        h.write(key_id.as_bytes());
        h.write(&[0]);
        h.write(nonce.as_bytes());
        h.finish()
    }

    fn shard(&self, fp: u64) -> MutexGuard<'_, Shard> {
        let idx = ((fp >> 32) as usize) % SHARDS;
        let mutex = &self.shards[idx];
        // Nothing panics while a shard is locked; if it ever did, the sets
        // are still structurally valid, so keep going.
        mutex.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expired(&self, bucket_id: u64, now: u64) -> bool {
        bucket_id.saturating_add(1).saturating_mul(self.width) <= now
    }

    fn purge_shard(&self, shard: &mut Shard, now: u64) {
        for b in shard.buckets.iter_mut() {
            if !b.set.is_empty() && self.expired(b.id, now) {
                self.count.fetch_sub(b.set.len(), Ordering::AcqRel);
                b.set = FingerprintSet::default();
            }
        }
    }

    /// Drops every expired bucket in every shard.
    pub fn purge(&self, now: u64) {
        for mutex in self.shards.iter() {
            let mut shard = mutex.lock().unwrap_or_else(|e| e.into_inner());
            self.purge_shard(&mut shard, now);
        }
    }

    fn try_reserve(&self) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c < self.max_nonces).then_some(c + 1)
            })
            .is_ok()
    }

    /// Synchronous check-and-insert (the trait method wraps this).
    pub fn check_and_insert_sync(
        &self,
        key_id: &str,
        nonce: &str,
        timestamp: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        // Outside the window the entry could not be kept live for as long
        // as the timestamp is acceptable: fail closed.
        let expiry = timestamp
            .checked_add(self.window)
            .ok_or(ReplayError::Replayed)?;
        if expiry < now || timestamp > now.saturating_add(self.window) {
            return Err(ReplayError::Replayed);
        }
        let fp = self.fingerprint(key_id, nonce);
        let bucket_id = expiry / self.width;
        let slot_idx = (bucket_id % RING_BUCKETS as u64) as usize;
        for attempt in 0..2 {
            {
                let mut shard = self.shard(fp);
                self.purge_shard(&mut shard, now);
                if shard.buckets.iter().any(|b| b.set.contains(&fp)) {
                    return Err(ReplayError::Replayed);
                }
                let Some(slot) = shard.buckets.get_mut(slot_idx) else {
                    return Err(ReplayError::Full);
                };
                if slot.id != bucket_id && !slot.set.is_empty() {
                    // Only possible if `now` jumped backwards by more than a
                    // bucket width; never evict a live bucket.
                    return Err(ReplayError::Full);
                }
                if self.try_reserve() {
                    slot.id = bucket_id;
                    slot.set.insert(fp);
                    return Ok(());
                }
            }
            if attempt > 0 || self.last_full_purge.fetch_max(now, Ordering::AcqRel) >= now {
                break;
            }
            self.purge(now);
        }
        Err(ReplayError::Full)
    }

    /// Estimated heap bytes held by the fingerprint sets (capacity based,
    /// std `HashSet` layout: 8-byte slot + 1 control byte per bucket, 7/8
    /// max load, plus one 16-byte control group per table).
    pub fn heap_bytes(&self) -> usize {
        let mut total = 0usize;
        for mutex in self.shards.iter() {
            let shard = mutex.lock().unwrap_or_else(|e| e.into_inner());
            for b in shard.buckets.iter() {
                let cap = b.set.capacity();
                if cap == 0 {
                    continue;
                }
                let buckets = if cap < 8 {
                    (cap + 1).next_power_of_two()
                } else {
                    (cap.saturating_mul(8) / 7).next_power_of_two()
                };
                total += buckets * (std::mem::size_of::<u64>() + 1) + 16;
            }
        }
        total
    }

    /// Fixed size of the store structure itself (not per nonce).
    pub fn fixed_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + SHARDS * std::mem::size_of::<Mutex<Shard>>()
    }
}

impl NonceStore for MemoryNonceStore {
    fn check_and_insert<'a>(
        &'a self,
        key_id: &'a str,
        nonce: &'a str,
        timestamp: u64,
        now: u64,
    ) -> StoreFuture<'a> {
        let result = self.check_and_insert_sync(key_id, nonce, timestamp, now);
        Box::pin(std::future::ready(result))
    }

    fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn purge(&self, now: u64) {
        MemoryNonceStore::purge(self, now)
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
