//! Replay protection: the timestamp window check and the nonce store.
//!
//! Order in the gateway: verify the signature, then [`check_timestamp`],
//! then [`NonceStore::check_and_insert`] with the *decoded* nonce. Stores
//! may assume the timestamp already passed [`check_timestamp`]; the memory
//! store fails closed (`Replayed`) for timestamps outside the window.

use std::future::Future;
use std::pin::Pin;

mod memory;
mod table;

pub use memory::{MemoryNonceStore, SHARDS};

/// Future returned by [`NonceStore::check_and_insert`].
pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ReplayError>> + Send + 'a>>;

/// A store of recently seen (key id, nonce) pairs.
pub trait NonceStore: Send + Sync + 'static {
    /// Atomically: if (key_id, nonce) was seen and is still live →
    /// `Err(Replayed)`; else record it until `timestamp + window` and `Ok`.
    fn check_and_insert<'a>(
        &'a self,
        key_id: &'a str,
        nonce: &'a str,
        timestamp: u64,
        now: u64,
    ) -> StoreFuture<'a>;

    /// [`check_and_insert`](Self::check_and_insert) for a store that can
    /// answer at once (the memory store): the answer without a boxed
    /// future. `None`: await `check_and_insert`.
    fn check_and_insert_now(
        &self,
        _nonce: &PendingNonce<'_>,
        _timestamp: u64,
        _now: u64,
    ) -> Option<Result<(), ReplayError>> {
        None
    }

    /// A hint that `(key_id, nonce)` is about to be checked: the memory
    /// store starts loading the line of its table that the check will
    /// touch, so that the load (a memory access once the store outgrows
    /// the caches) overlaps the signature check instead of following it.
    /// What it worked out on the way (the nonce's fingerprint) travels in
    /// the answer, for [`check_and_insert_now`](Self::check_and_insert_now).
    fn prefetch<'a>(&self, key_id: &'a str, nonce: &'a str) -> PendingNonce<'a> {
        PendingNonce::new(key_id, nonce)
    }

    /// Live entries (approximate).
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop what has expired by `now`; stores that expire by themselves
    /// (Redis) need not do anything.
    fn purge(&self, _now: u64) {}
}

/// A nonce about to be checked, with what the store's
/// [`prefetch`](NonceStore::prefetch) worked out about it: the memory
/// store's fingerprint of it, tagged with the store it belongs to, so that
/// the check does not hash the nonce a second time. Only this module and
/// the stores can attach one, and the key id and nonce cannot be changed
/// once it is attached; a store ignores a fingerprint it did not make.
#[derive(Clone, Copy, Debug)]
pub struct PendingNonce<'a> {
    key_id: &'a str,
    nonce: &'a str,
    /// (the store's tag, its fingerprint of `key_id` and `nonce`)
    fingerprint: Option<(u64, u64)>,
}

impl<'a> PendingNonce<'a> {
    /// A nonce with nothing worked out yet.
    pub fn new(key_id: &'a str, nonce: &'a str) -> Self {
        PendingNonce {
            key_id,
            nonce,
            fingerprint: None,
        }
    }

    pub fn key_id(&self) -> &'a str {
        self.key_id
    }

    pub fn nonce(&self) -> &'a str {
        self.nonce
    }

    fn with_fingerprint(self, store: u64, fingerprint: u64) -> Self {
        PendingNonce {
            fingerprint: Some((store, fingerprint)),
            ..self
        }
    }

    /// The fingerprint the store tagged `store` attached, if it did.
    fn fingerprint(&self, store: u64) -> Option<u64> {
        self.fingerprint
            .and_then(|(tag, fp)| (tag == store).then_some(fp))
    }
}

/// Nonce store outcome other than success.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    /// The nonce was already used (401 `nonce_replayed`).
    #[error("nonce already used")]
    Replayed,
    /// The store is at capacity; fail closed (503).
    #[error("replay store full")]
    Full,
    /// The store cannot be reached (503).
    #[error("replay store unavailable: {0}")]
    Unavailable(String),
}

impl ReplayError {
    pub fn code(&self) -> &'static str {
        match self {
            ReplayError::Replayed => "nonce_replayed",
            ReplayError::Full | ReplayError::Unavailable(_) => "replay_store_unavailable",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ReplayError::Replayed => 401,
            ReplayError::Full | ReplayError::Unavailable(_) => 503,
        }
    }
}

/// Why a timestamp was refused (all map to 401 `timestamp_out_of_window`).
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampError {
    #[error("timestamp older than the allowed window")]
    TooOld,
    #[error("timestamp further in the future than the allowed window")]
    TooNew,
    #[error("timestamp before the gateway started")]
    BeforeStart,
}

impl TimestampError {
    pub fn code(&self) -> &'static str {
        "timestamp_out_of_window"
    }

    pub fn status(&self) -> u16 {
        401
    }
}

/// `|now - ts| <= window_secs` and `ts >= not_before` (the gateway's start
/// time: after a restart, timestamps from before the start are refused so
/// a nonce seen before the restart cannot be replayed).
pub fn check_timestamp(
    ts: u64,
    now: u64,
    window_secs: u64,
    not_before: u64,
) -> Result<(), TimestampError> {
    if ts < not_before {
        return Err(TimestampError::BeforeStart);
    }
    if ts < now && now - ts > window_secs {
        return Err(TimestampError::TooOld);
    }
    if ts > now && ts - now > window_secs {
        return Err(TimestampError::TooNew);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_window() {
        assert_eq!(check_timestamp(1000, 1000, 300, 0), Ok(()));
        assert_eq!(check_timestamp(700, 1000, 300, 0), Ok(()));
        assert_eq!(check_timestamp(1300, 1000, 300, 0), Ok(()));
        assert_eq!(
            check_timestamp(699, 1000, 300, 0),
            Err(TimestampError::TooOld)
        );
        assert_eq!(
            check_timestamp(1301, 1000, 300, 0),
            Err(TimestampError::TooNew)
        );
        assert_eq!(
            check_timestamp(0, u64::MAX, 300, 0),
            Err(TimestampError::TooOld)
        );
        assert_eq!(
            check_timestamp(u64::MAX, 0, 300, 0),
            Err(TimestampError::TooNew)
        );
        assert_eq!(check_timestamp(0, 0, 0, 0), Ok(()));
    }

    #[test]
    fn timestamp_before_start() {
        assert_eq!(
            check_timestamp(999, 1000, 300, 1000),
            Err(TimestampError::BeforeStart)
        );
        assert_eq!(check_timestamp(1000, 1000, 300, 1000), Ok(()));
        let e = TimestampError::BeforeStart;
        assert_eq!((e.code(), e.status()), ("timestamp_out_of_window", 401));
    }

    #[test]
    fn error_codes() {
        assert_eq!(ReplayError::Replayed.code(), "nonce_replayed");
        assert_eq!(ReplayError::Replayed.status(), 401);
        assert_eq!(ReplayError::Full.code(), "replay_store_unavailable");
        assert_eq!(ReplayError::Full.status(), 503);
        let u = ReplayError::Unavailable("redis down".into());
        assert_eq!((u.code(), u.status()), ("replay_store_unavailable", 503));
    }
}
