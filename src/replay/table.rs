//! The nonce store's hash table: one cache line per lookup.
//!
//! Entries are non-zero `u64`s: a fingerprint in the top 48 bits and an
//! expiry tick in the low 16. Buckets are 64-byte cache lines of seven
//! entries and a flag word; an entry lives in its home bucket or, when
//! that is full, in the next bucket with room (linear probing by bucket).
//! A bucket's `overflow` flag says that some entry went past it, so a
//! lookup goes on to the next bucket only then. Checking a fresh nonce and
//! inserting it therefore touch one cache line in the common case, where a
//! general hash table (hashbrown, std) touches two: its control bytes and
//! its slot. With millions of nonces neither fits in cache, so each line is
//! a memory access (measured in `benches/replay.rs`).
//!
//! Nothing is deleted one entry at a time: [`Table::sweep`] drops every
//! expired entry in one pass, moves entries that had overflowed back
//! towards their home bucket where room was freed, and recomputes the
//! flags. It also shrinks a table left mostly empty.

/// Entries per bucket (the eighth word of the line is the flag).
const SLOTS: usize = 7;
/// Buckets in a table's first allocation.
const MIN_BUCKETS: usize = 16;

/// The fingerprint part of an entry.
pub(super) const FP_MASK: u64 = !0xFFFF;

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    slots: [u64; SLOTS],
    /// Non-zero when an insert went past this bucket because it was full.
    overflow: u64,
}

/// What [`Table::check_insert`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The fingerprint is there and live.
    Live,
    /// It was there but expired: the entry now carries the new expiry.
    Renewed,
    /// It was not there and has been added.
    Added,
    /// It was not there and `reserve` refused to add it.
    Refused,
}

#[derive(Default)]
pub(super) struct Table {
    buckets: Vec<Bucket>,
    len: usize,
}

/// Whether the entry's expiry tick is at or after `now` (mod 2^16).
pub(super) fn live(entry: u64, now: u16) -> bool {
    (entry as u16).wrapping_sub(now) < 0x8000
}

fn same_fingerprint(a: u64, b: u64) -> bool {
    (a ^ b) & FP_MASK == 0
}

/// Home bucket of an entry among `n`: the fingerprint bits multiplied (a
/// Fibonacci hash), then scaled to `0..n` by the high bits of the product.
fn home(entry: u64, n: usize) -> usize {
    let h = (entry >> 16).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((u128::from(h) * n as u128) >> 64) as usize
}

/// Most entries a table of `n` buckets holds before it grows (7/8 full).
fn max_len(n: usize) -> usize {
    n * SLOTS / 8 * 7
}

impl Table {
    /// Entries held (live or expired and not yet swept).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes.
    pub(super) fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }

    fn next(&self, i: usize) -> usize {
        // Bucket counts are powers of two.
        (i + 1) & (self.buckets.len() - 1)
    }

    /// Starts loading `entry`'s home bucket into the cache without waiting
    /// for it, so that a [`check_insert`](Self::check_insert) a little
    /// later finds it there. A no-op where there is no prefetch
    /// instruction.
    pub(super) fn prefetch(&self, entry: u64) {
        if self.buckets.is_empty() {
            return;
        }
        let bucket = &self.buckets[home(entry, self.buckets.len())];
        #[cfg(all(
            any(target_arch = "x86_64", target_arch = "x86"),
            target_feature = "sse"
        ))]
        safe_arch::prefetch_t0(bucket);
        #[cfg(not(all(
            any(target_arch = "x86_64", target_arch = "x86"),
            target_feature = "sse"
        )))]
        let _ = bucket;
    }

    /// Looks `entry`'s fingerprint up. Live → [`Outcome::Live`]; expired →
    /// replaced by `entry`; absent → added if `reserve()` agrees.
    pub(super) fn check_insert(
        &mut self,
        entry: u64,
        now: u16,
        reserve: impl FnOnce() -> bool,
    ) -> Outcome {
        debug_assert!(entry & FP_MASK != 0);
        let mut free = None;
        if !self.buckets.is_empty() {
            let mut i = home(entry, self.buckets.len());
            loop {
                let bucket = &mut self.buckets[i];
                for (s, slot) in bucket.slots.iter_mut().enumerate() {
                    if *slot == 0 {
                        free = free.or(Some((i, s)));
                    } else if same_fingerprint(*slot, entry) {
                        if live(*slot, now) {
                            return Outcome::Live;
                        }
                        *slot = entry;
                        return Outcome::Renewed;
                    }
                }
                if bucket.overflow == 0 {
                    break;
                }
                i = self.next(i);
            }
        }
        if !reserve() {
            return Outcome::Refused;
        }
        match free {
            // A free slot on the lookup's own path: the lookup finds it.
            Some((i, s)) if self.len < max_len(self.buckets.len()) => {
                self.buckets[i].slots[s] = entry;
                self.len += 1;
            }
            _ => {
                if self.len >= max_len(self.buckets.len()) {
                    self.resize((self.buckets.len() * 2).max(MIN_BUCKETS));
                }
                self.add(entry);
            }
        }
        Outcome::Added
    }

    /// Adds an entry known to be absent: the first free slot from its home
    /// on, flagging every full bucket it passes.
    fn add(&mut self, entry: u64) {
        let mut i = home(entry, self.buckets.len());
        loop {
            let bucket = &mut self.buckets[i];
            if let Some(slot) = bucket.slots.iter_mut().find(|s| **s == 0) {
                *slot = entry;
                self.len += 1;
                return;
            }
            bucket.overflow = 1;
            i = self.next(i);
        }
    }

    /// Rebuilds the table with `n` buckets (a power of two; 0 frees it).
    fn resize(&mut self, n: usize) {
        let old = std::mem::replace(&mut self.buckets, vec![Bucket::default(); n]);
        self.len = 0;
        for entry in old.iter().flat_map(|b| b.slots).filter(|&e| e != 0) {
            self.add(entry);
        }
    }

    /// Drops every entry that expired before `now`; returns how many.
    pub(super) fn sweep(&mut self, now: u16) -> usize {
        let n = self.buckets.len();
        if n == 0 {
            return 0;
        }
        // One pass over every slot: drop the expired entries, clear the
        // flags, and note the buckets that may hold an entry away from its
        // home. Such an entry's home and every bucket after it up to its
        // own are flagged, so only a bucket whose predecessor was flagged
        // can hold one: at most 7/8 full, that is a small fraction.
        let before = self.len;
        let mut displaced = Vec::new();
        let mut prev_flagged = self.buckets[n - 1].overflow != 0;
        for (i, bucket) in self.buckets.iter_mut().enumerate() {
            let mut kept = 0;
            for slot in bucket.slots.iter_mut().filter(|e| **e != 0) {
                if live(*slot, now) {
                    kept += 1;
                } else {
                    *slot = 0;
                    self.len -= 1;
                }
            }
            if prev_flagged && kept > 0 {
                displaced.push(i);
            }
            prev_flagged = bucket.overflow != 0;
            bucket.overflow = 0;
        }
        let dropped = before - self.len;
        if self.len < max_len(n) / 8 && n > MIN_BUCKETS {
            // Mostly empty (traffic fell): a table about a quarter full.
            if self.len == 0 {
                self.buckets = Vec::new();
            } else {
                self.resize((self.len * 4 / SLOTS).next_power_of_two().max(MIN_BUCKETS));
            }
        } else {
            self.compact(&displaced);
        }
        dropped
    }

    /// After a sweep (which cleared every flag): moves each entry of the
    /// `displaced` buckets that sits past its home to the first free slot
    /// on the way from its home, and flags every full bucket it passes on
    /// that way, which are exactly the buckets a lookup must go past to
    /// find it. An entry never moves once it has been placed, except when
    /// its own bucket comes up in `displaced`, so the flags stay right.
    /// (An entry moved lands in its home or in another `displaced` bucket:
    /// every bucket from its home to where it was had been flagged.)
    fn compact(&mut self, displaced: &[usize]) {
        let n = self.buckets.len();
        for &i in displaced {
            for s in 0..SLOTS {
                let entry = self.buckets[i].slots[s];
                if entry == 0 {
                    continue;
                }
                let mut j = home(entry, n);
                while j != i {
                    if let Some(free) = self.buckets[j].slots.iter_mut().find(|x| **x == 0) {
                        *free = entry;
                        self.buckets[i].slots[s] = 0;
                        break;
                    }
                    self.buckets[j].overflow = 1;
                    j = self.next(j);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Entries with random fingerprints and the given tick.
    fn entry(rng: &mut u64, tick: u16) -> u64 {
        // xorshift64*
        *rng ^= *rng >> 12;
        *rng ^= *rng << 25;
        *rng ^= *rng >> 27;
        let fp = rng.wrapping_mul(0x2545_F491_4F6C_DD1D) & FP_MASK;
        fp.max(1 << 16) | u64::from(tick)
    }

    /// Where every entry is, checked against a model.
    fn check_against(t: &Table, model: &HashMap<u64, u16>) {
        assert_eq!(t.len(), model.len());
        let stored: usize = t
            .buckets
            .iter()
            .map(|b| b.slots.iter().filter(|&&e| e != 0).count())
            .sum();
        assert_eq!(stored, model.len());
        // Every entry is reachable from its home along flagged buckets.
        let n = t.buckets.len();
        for i in 0..n {
            for &e in t.buckets[i].slots.iter().filter(|&&e| e != 0) {
                assert_eq!(model.get(&(e & FP_MASK)), Some(&(e as u16)));
                let mut j = home(e, n);
                while j != i {
                    assert_ne!(
                        t.buckets[j].overflow, 0,
                        "entry in {i} unreachable from {j}"
                    );
                    j = (j + 1) % n;
                }
            }
        }
    }

    #[test]
    fn matches_a_model_through_growth_expiry_and_shrinking() {
        let mut rng = 0x1234_5678_9abc_def1u64;
        let mut t = Table::default();
        let mut model: HashMap<u64, u16> = HashMap::new();
        let mut kept = Vec::new();
        // Ticks advance across a 16-bit wrap; entries live 300 ticks.
        let start: u16 = 65_000;
        for step in 0..2_000u16 {
            let now = start.wrapping_add(step);
            for _ in 0..40 {
                let e = entry(&mut rng, now.wrapping_add(300));
                let fp = e & FP_MASK;
                assert_eq!(t.check_insert(e, now, || true), Outcome::Added);
                model.insert(fp, e as u16);
                kept.push(e);
            }
            // Every so often replay a recent entry, and an expired one.
            if step % 7 == 0 {
                let recent = kept[kept.len() - 1 - (step as usize % 30)];
                let renewed = (recent & FP_MASK) | u64::from(now.wrapping_add(300));
                assert_eq!(t.check_insert(renewed, now, || true), Outcome::Live);
            }
            if step > 400 && step % 11 == 0 {
                // Entries from 350 steps ago expired 50 ticks ago.
                let old = kept[(step as usize - 350) * 40];
                let fresh = (old & FP_MASK) | u64::from(now.wrapping_add(300));
                let was_swept = !model.contains_key(&(old & FP_MASK));
                let want = if was_swept {
                    Outcome::Added
                } else {
                    Outcome::Renewed
                };
                assert_eq!(t.check_insert(fresh, now, || true), want);
                model.insert(old & FP_MASK, fresh as u16);
            }
            if step % 50 == 0 {
                let dropped = t.sweep(now);
                let before = model.len();
                model.retain(|_, tick| live(u64::from(*tick), now));
                assert_eq!(dropped, before - model.len());
                check_against(&t, &model);
            }
        }
        check_against(&t, &model);
        // Traffic stops: everything expires and the table is freed.
        let later = start.wrapping_add(2_000 + 301);
        t.sweep(later);
        assert_eq!(t.len(), 0);
        assert_eq!(t.heap_bytes(), 0);
    }

    #[test]
    fn chains_wrap_around_the_end_of_the_table() {
        // Entries whose home is the last bucket: they overflow into the
        // first ones and are still found.
        let mut rng = 99u64;
        let mut t = Table::default();
        t.resize(MIN_BUCKETS);
        let mut last = Vec::new();
        while last.len() < 3 * SLOTS {
            let e = entry(&mut rng, 500);
            if home(e, MIN_BUCKETS) == MIN_BUCKETS - 1 {
                last.push(e);
            }
        }
        for &e in &last {
            assert_eq!(t.check_insert(e, 100, || true), Outcome::Added);
        }
        assert_eq!(t.buckets.len(), MIN_BUCKETS);
        assert!(t.buckets[0].slots.iter().any(|&e| e != 0));
        for &e in &last {
            assert_eq!(t.check_insert(e, 100, || true), Outcome::Live);
        }
        // Expire the ones in the home bucket: the rest move back into it.
        let home_entries: Vec<u64> = t.buckets[MIN_BUCKETS - 1].slots.to_vec();
        for b in t.buckets.iter_mut() {
            for s in b.slots.iter_mut() {
                if home_entries.contains(s) {
                    *s = (*s & FP_MASK) | 50;
                }
            }
        }
        assert_eq!(t.sweep(100), SLOTS);
        assert!(t.buckets[MIN_BUCKETS - 1].slots.iter().all(|&e| e != 0));
        for &e in last.iter().filter(|e| !home_entries.contains(e)) {
            assert_eq!(t.check_insert(e, 100, || true), Outcome::Live);
        }
        for &e in &home_entries {
            let again = (e & FP_MASK) | 500;
            assert_eq!(t.check_insert(again, 100, || true), Outcome::Added);
        }
    }

    #[test]
    fn refused_inserts_change_nothing() {
        let mut t = Table::default();
        let mut rng = 7u64;
        let e = entry(&mut rng, 10);
        assert_eq!(t.check_insert(e, 5, || false), Outcome::Refused);
        assert_eq!((t.len(), t.heap_bytes()), (0, 0));
        assert_eq!(t.check_insert(e, 5, || true), Outcome::Added);
        let f = entry(&mut rng, 10);
        assert_eq!(t.check_insert(f, 5, || false), Outcome::Refused);
        assert_eq!(t.len(), 1);
        assert_eq!(t.check_insert(f, 5, || true), Outcome::Added);
    }
}
