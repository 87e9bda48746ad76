//! Timers that stay armed: the one behind HTTP/1's `header_read_timeout`
//! ([`ConnTimer`], one per client connection) and the upstream timeout
//! (one per pooled upstream connection, through [`poll_deadline`]).
//!
//! hyper asks its timer for a new sleep each time it starts waiting for a
//! request head, and drops it when the head has arrived. With tokio's timer
//! each of those is a boxed timer-wheel entry, registered when the
//! connection goes idle between requests and removed again when the next
//! request comes: about 0.2 µs per request, measured under load.
//!
//! Here a connection keeps one tokio sleep for its whole life, and the
//! sleeps handed to hyper only carry their deadline and point at it. A
//! deadline later than the armed one leaves it as it is: it fires early,
//! the waiting sleep sees that its own deadline is still ahead, and re-arms
//! it then (at most one extra wake-up per `header_read_timeout` on a busy
//! connection). The wheel is touched only when the armed sleep fires or has
//! to be moved earlier.
//!
//! Only for HTTP/1, where hyper waits for one head at a time on a
//! connection, so one task polls the shared sleep. HTTP/2 keeps tokio's
//! timer.
//!
//! The upstream timeout works the same way: each pooled upstream connection
//! keeps one sleep, and each request on it waits for its own deadline on
//! that sleep, instead of a `tokio::time::timeout` per request.

use hyper::rt::{Sleep, Timer};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A sleep kept armed across waits; `None` until the first one.
pub type Armed = Option<Pin<Box<tokio::time::Sleep>>>;

/// Ready once `at` has passed, waiting on `armed` (armed for `at` when
/// first used). An armed deadline earlier than `at` is left to fire and
/// then moved to `at`; a later one is moved earlier at once.
///
/// The sleep is polled outside tokio's per-task budget, as
/// `tokio::time::timeout` polls its own: the work it bounds (socket reads
/// and writes) may have spent the budget, and a sleep polled without
/// budget never reports that it has fired.
pub fn poll_deadline(
    armed: &mut Armed,
    at: tokio::time::Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let sleep = armed.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
    loop {
        if sleep.deadline() > at {
            sleep.as_mut().reset(at);
        }
        match Pin::new(&mut tokio::task::unconstrained(sleep.as_mut())).poll(cx) {
            Poll::Ready(()) if sleep.deadline() >= at => return Poll::Ready(()),
            // An earlier deadline passed: arm this one.
            Poll::Ready(()) => sleep.as_mut().reset(at),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// `deadline`, or when that is past what a clock can hold, a year from now
/// (tokio's timer does not go further than about two years anyway).
fn far_or(deadline: Option<Instant>) -> Instant {
    deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600))
}

/// The deadline `timeout` from now on tokio's clock, saturating as
/// `tokio::time::timeout` does instead of overflowing.
pub fn deadline_in(timeout: Duration) -> tokio::time::Instant {
    deadline_from(tokio::time::Instant::now(), timeout)
}

/// [`deadline_in`] from a time the caller has already read.
pub fn deadline_from(now: tokio::time::Instant, timeout: Duration) -> tokio::time::Instant {
    now.checked_add(timeout)
        .unwrap_or_else(|| tokio::time::Instant::from_std(far_or(None)))
}

/// A connection's timer (see the module notes). Each connection must have
/// its own: one task at a time may wait on it. Not `Clone` for that
/// reason; `server::http1_builder` makes a builder, and with it a
/// timer, per connection (a cloned builder would share it).
#[derive(Default)]
pub struct ConnTimer {
    armed: Arc<Mutex<Armed>>,
}

impl ConnTimer {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(far_or(self.now().checked_add(duration)))
    }

    /// tokio's clock (the same as the system's, except in tests that pause it).
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(Deadline {
            at: tokio::time::Instant::from_std(deadline),
            armed: self.armed.clone(),
        })
    }
}

/// One of hyper's sleeps: ready once `at` has passed.
struct Deadline {
    at: tokio::time::Instant,
    armed: Arc<Mutex<Armed>>,
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        poll_deadline(&mut armed, self.at, cx)
    }
}

impl Sleep for Deadline {}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadline(timer: &ConnTimer, ms: u64) -> Pin<Box<dyn Sleep>> {
        timer.sleep(Duration::from_millis(ms))
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_its_deadline() {
        let t = ConnTimer::new();
        let start = tokio::time::Instant::now();
        deadline(&t, 1000).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(1000), "{waited:?}");
        assert!(waited < Duration::from_millis(1100), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_survives_an_earlier_armed_one() {
        let t = ConnTimer::new();
        // The first wait arms the shared sleep for 1 s and is dropped early,
        // as when a request head arrives in time.
        let mut first = deadline(&t, 1000);
        assert!(futures_poll(&mut first).is_pending());
        drop(first);
        tokio::time::sleep(Duration::from_millis(600)).await;
        // The next wait has 1.6 s from the start: the armed 1 s must not end it.
        let start = tokio::time::Instant::now();
        deadline(&t, 1000).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(1000), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_armed_one() {
        let t = ConnTimer::new();
        let mut long = deadline(&t, 60_000);
        assert!(futures_poll(&mut long).is_pending());
        drop(long);
        let start = tokio::time::Instant::now();
        deadline(&t, 500).await;
        let waited = start.elapsed();
        assert!(waited < Duration::from_millis(600), "{waited:?}");
    }

    /// Polled the way an exchange against a socket that always has data
    /// polls it: after the work has spent the task's whole budget.
    #[tokio::test]
    async fn fires_when_the_work_it_bounds_has_spent_the_budget() {
        fn busy(cx: &mut Context<'_>) -> Poll<()> {
            loop {
                match tokio::task::coop::poll_proceed(cx) {
                    Poll::Ready(r) => r.made_progress(),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
        let at = tokio::time::Instant::now() + Duration::from_millis(50);
        let mut armed: Armed = None;
        let fired = tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| match busy(cx) {
                Poll::Pending => poll_deadline(&mut armed, at, cx),
                Poll::Ready(()) => Poll::Pending,
            }),
        );
        // The outer timeout polls its own sleep outside the budget, so it
        // ends the test if the deadline above never fires.
        assert!(fired.await.is_ok(), "the deadline never fired");
    }

    #[test]
    fn a_timeout_too_large_for_the_clock_saturates() {
        let huge = Duration::from_secs(u64::MAX / 4);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let d = deadline_in(huge);
            assert!(d > tokio::time::Instant::now() + Duration::from_secs(300 * 24 * 3600));
            let t = ConnTimer::new();
            drop(t.sleep(huge));
        });
    }

    fn futures_poll(s: &mut Pin<Box<dyn Sleep>>) -> Poll<()> {
        let waker = std::task::Waker::noop();
        s.as_mut().poll(&mut Context::from_waker(waker))
    }
}
