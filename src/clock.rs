//! Wall-clock time from a monotonic reading the caller already has.
//!
//! A request reads the monotonic clock when it arrives and when it is done
//! (for its latency). Its other times (the Unix seconds credentials are
//! checked against, the access line's timestamp) are derived from those
//! readings instead of reading the wall clock again: each read costs about
//! 30 ns here, and a request took seven.
//!
//! Each thread keeps one pair of readings of both clocks and takes a new
//! pair once the old one is a second away from the time asked for. A
//! derived time is therefore off by what the wall clock was slewed within
//! that second (at most 0.5 ms under NTP's limit), and a step of the wall
//! clock (or a suspend, which the monotonic clock does not count) shows up
//! to a second late: for that second an expiry can be judged against the
//! old time, as with any clock read a second earlier.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How far from its anchor a time is derived before both clocks are read
/// again.
const REANCHOR: Duration = Duration::from_secs(1);

thread_local! {
    static ANCHOR: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
}

/// `base` moved by the signed distance from `from` to `to`.
fn shift(base: SystemTime, from: Instant, to: Instant) -> Option<SystemTime> {
    match to.checked_duration_since(from) {
        Some(ahead) => base.checked_add(ahead),
        None => base.checked_sub(from.duration_since(to)),
    }
}

/// The wall-clock time at the monotonic instant `at`.
pub fn wall(at: Instant) -> SystemTime {
    ANCHOR.with(|anchor| {
        if let Some((mono, sys)) = anchor.get() {
            let near = at
                .checked_duration_since(mono)
                .unwrap_or_else(|| mono.duration_since(at))
                < REANCHOR;
            if let Some(t) = shift(sys, mono, at).filter(|_| near) {
                return t;
            }
        }
        let (mono, sys) = (Instant::now(), SystemTime::now());
        anchor.set(Some((mono, sys)));
        shift(sys, mono, at).unwrap_or(sys)
    })
}

/// [`wall`] as time since the Unix epoch (zero before it).
pub fn since_epoch(at: Instant) -> Duration {
    wall(at).duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// [`wall`] in whole Unix seconds.
pub fn unix_secs(at: Instant) -> i64 {
    since_epoch(at).as_secs() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apart(a: SystemTime, b: SystemTime) -> Duration {
        a.duration_since(b).unwrap_or_else(|e| e.duration())
    }

    #[test]
    fn derived_times_agree_with_the_wall_clock() {
        // Loose enough for a loaded machine, tight enough to catch a
        // shift the wrong way or not at all (the shortest is 0.5 s).
        let slack = Duration::from_millis(100);
        for _ in 0..3 {
            let now = Instant::now();
            assert!(apart(wall(now), SystemTime::now()) < slack);
            // Earlier and later than the anchor, near and far.
            for secs in [0.5, 0.9, 1.5, 30.0] {
                let d = Duration::from_secs_f64(secs);
                // A monotonic clock younger than `d` has no such instant.
                if let Some(past) = Instant::now().checked_sub(d) {
                    assert!(apart(wall(past), SystemTime::now() - d) < slack, "-{secs}s");
                }
                let future = Instant::now() + d;
                assert!(
                    apart(wall(future), SystemTime::now() + d) < slack,
                    "+{secs}s"
                );
            }
            std::thread::sleep(Duration::from_millis(600));
        }
    }

    #[test]
    fn derived_times_keep_the_monotonic_order_and_microseconds() {
        let a = Instant::now();
        let b = a + Duration::from_micros(7);
        let (wa, wb) = (wall(a), wall(b));
        assert_eq!(wb.duration_since(wa).ok(), Some(Duration::from_micros(7)));
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        assert!((unix_secs(Instant::now()) - unix).abs() <= 1);
    }
}
