//! In-memory nonce store: sharded hash tables of fingerprints, each entry
//! carrying its own expiry, bounded.
//!
//! * Identity: a 64-bit SipHash-1-3 fingerprint (random key per store) of
//!   `len(key_id) as u64 LE || key_id || 0x00 || nonce`. Strings are not
//!   stored. The gateway's prefetch works it out and hands it to the check
//!   ([`PendingNonce`]), so a request hashes its nonce once.
//! * 64 shards (`std::sync::Mutex`), picked by the fingerprint's low 6
//!   bits. Each shard is one [`Table`] whose 8-byte entries pack the
//!   fingerprint's top 48 bits with a 16-bit expiry tick. The shard's 6
//!   bits and the stored 48 make a 54-bit identity: a fresh nonce is
//!   wrongly called a replay with probability `live / 2^54` (5e-10 with
//!   10M live nonces).
//! * A nonce is looked up once, in its shard's one table, whatever the
//!   timestamp it comes with: a nonce stays used for its key until its
//!   expiry. The lookup and the insert touch one cache line (see
//!   `table.rs`). Until 2026-11-23 each shard had a ring of eight tables
//!   by expiry time, and a fresh nonce was looked up in each live one:
//!   about four lookups, and tables allocated and freed as time moved on.
//! * Expiry: an entry found past its expiry counts as absent and is
//!   overwritten. Each shard is swept every `window / 4` (at least 1 s),
//!   on access or by [`MemoryNonceStore::purge`], the shards staggered
//!   across that interval so that they are not all swept at once. An
//!   expired entry therefore stays in memory at most a quarter of the
//!   window, but is never refused past its expiry. A sweep that leaves a
//!   table mostly empty shrinks it, so memory goes back after a burst.
//! * Ticks: `unit` seconds each (1 s unless the window is over about
//!   2 hours 16 minutes), expiry rounded up, compared modulo 2^16. Every
//!   entry a request can still be checked against (timestamp within the
//!   window, so expiry within `[now, now + 2 * window]`) is less than
//!   2^15 ticks away, so the comparison is exact for them whatever the
//!   clock did in between.
//! * Bounded by `max_nonces` (atomic counter of entries, expired ones not
//!   yet swept included). When full, every shard is swept (at most once
//!   per second); if still full → `Full`. Live nonces are never evicted.
//! * Memory: 64-byte buckets of 7 entries, tables between 7/16 and 7/8
//!   full: 10.5–21 bytes per nonce, measured by `memory_per_nonce` with
//!   1M nonces; see [`MemoryNonceStore::heap_bytes`].

use super::table::{Outcome, Table, FP_MASK};
use super::{NonceStore, PendingNonce, ReplayError, StoreFuture};
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Number of shards.
pub const SHARDS: usize = 64;

#[derive(Default)]
struct Shard {
    table: Table,
    /// When (seconds) the next sweep is due; 0 before the first access.
    next_sweep: u64,
}

/// A shard on its own cache line, so that threads working on neighbouring
/// shards do not share one.
#[repr(align(64))]
#[derive(Default)]
struct Padded(Mutex<Shard>);

/// Bounded in-memory [`NonceStore`] for a single gateway instance.
pub struct MemoryNonceStore {
    shards: Box<[Padded]>,
    count: AtomicUsize,
    /// `now` of the last full purge triggered by a full store (at most one
    /// per second, so a flood at capacity does not lock every shard on
    /// every request).
    last_full_purge: AtomicU64,
    max_nonces: usize,
    window: u64,
    /// Seconds per expiry tick.
    unit: u64,
    /// Seconds between two sweeps of a shard.
    sweep_every: u64,
    k0: u64,
    k1: u64,
}

impl MemoryNonceStore {
    /// `window_secs`: the timestamp window (entries live until
    /// `timestamp + window_secs`); `max_nonces`: hard cap on live entries.
    pub fn new(window_secs: u64, max_nonces: usize) -> Self {
        // Live entries span at most 2 * window (+ rounding) ticks ahead of
        // now, swept ones at most a sweep interval behind: both well
        // inside the 2^15 ticks the modular comparison can tell apart.
        let unit = window_secs
            .saturating_mul(2)
            .saturating_add(2)
            .div_ceil(1 << 14)
            .max(1);
        MemoryNonceStore {
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
            count: AtomicUsize::new(0),
            last_full_purge: AtomicU64::new(0),
            max_nonces,
            window: window_secs,
            unit,
            sweep_every: (window_secs / 4).max(1),
            k0: rand::random(),
            k1: rand::random(),
        }
    }

    /// SipHash-1-3 of `len(key_id) as u64 LE || key_id || 0x00 || nonce`.
    /// Usual sizes are gathered on the stack and hashed as one slice: the
    /// hasher's `write` buffers every piece that does not end on a word
    /// (about 427 instructions a fingerprint piece by piece, about 320
    /// gathered, under callgrind). The result is the same either way.
    fn fingerprint(&self, key_id: &str, nonce: &str) -> u64 {
        const GATHER: usize = 128;
        let len = 8 + key_id.len() + 1 + nonce.len();
        if len > GATHER {
            return self.fingerprint_streamed(key_id, nonce);
        }
        let mut buf = [0u8; GATHER];
        let (head, rest) = buf.split_at_mut(8);
        head.copy_from_slice(&(key_id.len() as u64).to_le_bytes());
        let (id, rest) = rest.split_at_mut(key_id.len());
        id.copy_from_slice(key_id.as_bytes());
        // rest[0] is the 0x00 separator already.
        rest[1..1 + nonce.len()].copy_from_slice(nonce.as_bytes());
        SipHasher13::new_with_keys(self.k0, self.k1).hash(&buf[..len])
    }

    /// [`fingerprint`](Self::fingerprint) written piece by piece.
    fn fingerprint_streamed(&self, key_id: &str, nonce: &str) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(&(key_id.len() as u64).to_le_bytes());
        h.write(key_id.as_bytes());
        h.write(&[0]);
        h.write(nonce.as_bytes());
        h.finish()
    }

    /// The shard of a fingerprint, and the bits its entry carries (expiry
    /// bits zero).
    fn identity(fp: u64) -> (usize, u64) {
        // Never all zero bits: 0 marks a free slot.
        ((fp % SHARDS as u64) as usize, (fp & FP_MASK).max(1 << 16))
    }

    fn lock(&self, idx: usize) -> MutexGuard<'_, Shard> {
        // Nothing panics while a shard is locked; if it ever did, the table
        // is still structurally valid, so keep going.
        self.shards[idx].0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tick of `now` (rounded up, like expiries: an entry is live while
    /// its tick is at or after this one).
    fn tick(&self, secs: u64) -> u16 {
        secs.div_ceil(self.unit) as u16
    }

    /// Drops the shard's expired entries if its sweep is due (or `force`),
    /// and schedules the next sweep.
    fn sweep(&self, idx: usize, shard: &mut Shard, now: u64, force: bool) {
        if shard.next_sweep == 0 {
            // First use: stagger the shards over one interval.
            shard.next_sweep = now + self.sweep_every * (idx as u64 + 1) / SHARDS as u64;
        }
        if !force && now < shard.next_sweep {
            return;
        }
        shard.next_sweep = now + self.sweep_every;
        let dropped = shard.table.sweep(self.tick(now));
        self.count.fetch_sub(dropped, Ordering::AcqRel);
    }

    /// Drops expired entries from every shard whose sweep is due.
    pub fn purge(&self, now: u64) {
        self.purge_all(now, false);
    }

    fn purge_all(&self, now: u64, force: bool) {
        for idx in 0..SHARDS {
            let mut shard = self.lock(idx);
            self.sweep(idx, &mut shard, now, force);
        }
    }

    fn try_reserve(&self) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c < self.max_nonces).then_some(c + 1)
            })
            .is_ok()
    }

    /// Starts loading the table line that a check of `(key_id, nonce)`
    /// will look at; the answer carries the nonce's fingerprint to that
    /// check ([`NonceStore::check_and_insert_now`]).
    pub fn prefetch<'a>(&self, key_id: &'a str, nonce: &'a str) -> PendingNonce<'a> {
        let fp = self.fingerprint(key_id, nonce);
        let (idx, id) = Self::identity(fp);
        self.lock(idx).table.prefetch(id);
        PendingNonce::new(key_id, nonce).with_fingerprint(self.k0, fp)
    }

    /// Synchronous check-and-insert (the trait methods wrap this).
    pub fn check_and_insert_sync(
        &self,
        key_id: &str,
        nonce: &str,
        timestamp: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        self.check_and_insert_fingerprint(self.fingerprint(key_id, nonce), timestamp, now)
    }

    fn check_and_insert_fingerprint(
        &self,
        fingerprint: u64,
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
        let (idx, id) = Self::identity(fingerprint);
        let entry = id | u64::from(self.tick(expiry));
        let now_tick = self.tick(now);
        for attempt in 0..2 {
            {
                let mut shard = self.lock(idx);
                self.sweep(idx, &mut shard, now, false);
                match shard
                    .table
                    .check_insert(entry, now_tick, || self.try_reserve())
                {
                    Outcome::Live => return Err(ReplayError::Replayed),
                    // Renewed: expired, not yet swept, used again from now on.
                    Outcome::Renewed | Outcome::Added => return Ok(()),
                    Outcome::Refused => {}
                }
            }
            if attempt > 0 || self.last_full_purge.fetch_max(now, Ordering::AcqRel) >= now {
                break;
            }
            self.purge_all(now, true);
        }
        Err(ReplayError::Full)
    }

    /// Heap bytes held by the shard tables.
    pub fn heap_bytes(&self) -> usize {
        (0..SHARDS)
            .map(|idx| self.lock(idx).table.heap_bytes())
            .sum()
    }

    /// Fixed size of the store structure itself (not per nonce).
    pub fn fixed_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + SHARDS * std::mem::size_of::<Padded>()
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

    fn check_and_insert_now(
        &self,
        nonce: &PendingNonce<'_>,
        timestamp: u64,
        now: u64,
    ) -> Option<Result<(), ReplayError>> {
        let fp = nonce
            .fingerprint(self.k0)
            .unwrap_or_else(|| self.fingerprint(nonce.key_id(), nonce.nonce()));
        Some(self.check_and_insert_fingerprint(fp, timestamp, now))
    }

    fn prefetch<'a>(&self, key_id: &'a str, nonce: &'a str) -> PendingNonce<'a> {
        MemoryNonceStore::prefetch(self, key_id, nonce)
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
