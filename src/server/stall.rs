//! `limits.send_timeout` for each HTTP/2 stream: an answer that has waited
//! that long for the client to take more of it (to grant flow-control
//! window) is reset, and the upstream connection behind it closed.
//!
//! The client socket's own timer ([`super::socket`]) covers a client that
//! stops reading altogether. Over HTTP/2 a client can also go on reading
//! (answering pings, taking other streams' frames) while it grants no
//! window to one stream: hyper then never asks that stream's body for more,
//! and the stream, its buffers and its upstream connection would wait for
//! good. nginx applies `send_timeout` to each HTTP/2 stream the same way;
//! Envoy's `stream_idle_timeout` covers it too.
//!
//! hyper runs each stream as a future of its own, handed to the
//! connection's executor right after the service has made the stream's
//! answer future. The service leaves a [`StreamWatch`] for the executor
//! ([`StreamExecutor`]), which runs the stream inside a [`Guarded`],
//! and the answer's body ([`Watched`]) records on the watch each time it
//! hands out data and each time it is asked again. A stream whose body
//! handed out data and was not asked again for the timeout is dropped:
//! h2 resets a stream dropped before its end (RST_STREAM, CANCEL), and the
//! upstream body, dropped half-read, closes its connection.
//!
//! Only a stream waiting on its client is timed: one waiting for its
//! upstream (a slow answer, a quiet event stream) is not, and nothing here
//! reads the clock or sets a timer until a stream waits on its client.

use crate::proxy::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Body as HttpBody;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a stream's answer body has done, as its guard sees it. The body
/// and the guard are polled by the same task; atomics only make it `Sync`.
#[derive(Debug, Default)]
pub struct StreamWatch {
    /// Data frames handed out so far (wrapping).
    sent: AtomicU32,
    /// The body handed out data and has not been asked for more since:
    /// the stream waits for room to send (the client's window).
    waiting: AtomicBool,
}

/// Where the service leaves the watch of the stream it has just made, for
/// the executor to take when hyper hands it that stream.
pub type NextWatch = Arc<Mutex<Option<Arc<StreamWatch>>>>;

/// An answer body that reports to its stream's watch (over HTTP/2) or
/// passes through (HTTP/1.1, whose socket timer is enough).
pub struct Watched {
    body: Body,
    watch: Option<Arc<StreamWatch>>,
}

impl Watched {
    pub fn new(body: Body, watch: Option<Arc<StreamWatch>>) -> Watched {
        Watched { body, watch }
    }
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.body).poll_frame(cx);
        if let Some(w) = &self.watch {
            let data = matches!(&r, Poll::Ready(Some(Ok(f))) if f.is_data());
            if data {
                w.sent.fetch_add(1, Ordering::Relaxed);
            }
            w.waiting.store(data, Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The HTTP/2 connection's executor: runs each stream the service left a
/// watch for inside a [`Guarded`], as a tokio task like hyper's default.
#[derive(Clone)]
pub struct StreamExecutor {
    pub next: NextWatch,
    pub timeout: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let watch = self.next.lock().unwrap_or_else(|e| e.into_inner()).take();
        match watch {
            Some(watch) => {
                tokio::spawn(Guarded {
                    stream: fut,
                    watch,
                    timeout: self.timeout,
                    timer: None,
                    seen: 0,
                });
            }
            None => {
                tokio::spawn(fut);
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A stream run until it ends, or until its answer has waited
    /// `timeout` (to twice that) for its client to take more; then it is
    /// dropped. A struct rather than an `async fn`, which would move the
    /// stream once more before its first poll.
    pub struct Guarded<F> {
        #[pin]
        stream: F,
        watch: Arc<StreamWatch>,
        timeout: Duration,
        // Made the first time the stream waits on its client.
        timer: Option<Pin<Box<Sleep>>>,
        // The watch's `sent` when the timer was last set.
        seen: u32,
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.stream.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if !this.watch.waiting.load(Ordering::Relaxed) {
            // Waiting for its upstream or its request body, or not yet
            // answered: not timed here. A timer already set is looked at
            // again when the stream next waits on its client.
            return Poll::Pending;
        }
        let sent = this.watch.sent.load(Ordering::Relaxed);
        let seen = this.seen;
        let timeout = *this.timeout;
        let timer = this.timer.get_or_insert_with(|| {
            *seen = sent;
            Box::pin(tokio::time::sleep(timeout))
        });
        while timer.as_mut().poll(cx).is_ready() {
            if sent == *seen {
                // Nothing handed out since the timer was set, and the body
                // still waits to be asked: the client took nothing for a
                // whole timeout.
                tracing::debug!("HTTP/2 stream waited send_timeout for its client: reset");
                return Poll::Ready(());
            }
            *seen = sent;
            timer.as_mut().reset(Instant::now() + timeout);
        }
        Poll::Pending
    }
}
