//! Graceful shutdown of client connections.
//!
//! The same design as hyper-util's `GracefulShutdown`: every connection
//! holds a receiver of one watch channel; shutdown sends on it, each
//! connection is told to finish (`graceful_shutdown`), and shutdown waits
//! until every receiver is gone. hyper-util's wrapper polls the channel's
//! `changed()` future on every wake-up of its connection, which locks the
//! channel's list of waiters each time: 0.55 % of the gateway's CPU under
//! load (about three wake-ups a request). Here it is polled only when it
//! can matter: once shutdown has begun, or when the task's waker is not
//! the one it was registered with.

use hyper_util::server::graceful::GracefulConnection;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::sync::watch;

/// Tells connections to finish, and waits until they have.
pub(crate) struct Shutdown {
    tx: watch::Sender<()>,
    /// Set before the channel is sent on.
    begun: Arc<AtomicBool>,
}

impl Shutdown {
    pub(crate) fn new() -> Self {
        let (tx, _) = watch::channel(());
        Shutdown {
            tx,
            begun: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A handle for one connection (made before its task is spawned).
    pub(crate) fn watcher(&self) -> Watcher {
        Watcher::new(self.tx.subscribe(), self.begun.clone())
    }

    /// Tells every watched connection to finish, then waits for them all.
    pub(crate) async fn shutdown(self) {
        self.begun.store(true, Ordering::SeqCst);
        let _ = self.tx.send(());
        self.tx.closed().await;
    }
}

impl Drop for Shutdown {
    /// Dropped without [`Shutdown::shutdown`] (its task was cancelled), the
    /// channel closes, which wakes every connection: they must look, and
    /// finish, as hyper-util's watcher would have them.
    fn drop(&mut self) {
        self.begun.store(true, Ordering::SeqCst);
    }
}

/// Watches one connection for a [`Shutdown`].
pub(crate) struct Watcher {
    /// Ready when shutdown has begun; `None` once it was.
    signal: Option<Signal>,
    /// The waker `signal` was last polled with.
    registered: Option<Waker>,
    begun: Arc<AtomicBool>,
    /// The receiver, kept until the connection ends, so that shutdown
    /// waits for it.
    _guard: Option<watch::Receiver<()>>,
}

type Signal = Pin<Box<dyn Future<Output = watch::Receiver<()>> + Send>>;

impl Watcher {
    fn new(mut rx: watch::Receiver<()>, begun: Arc<AtomicBool>) -> Watcher {
        Watcher {
            signal: Some(Box::pin(async move {
                let _ = rx.changed().await;
                rx
            })),
            registered: None,
            begun,
            _guard: None,
        }
    }

    /// Ready once shutdown has begun (and from then on). The task's waker
    /// is registered with the channel at the first call and again only
    /// when it changes; after that the channel is looked at only once the
    /// shared flag says shutdown has begun.
    pub(crate) fn poll_begun(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(signal) = self.signal.as_mut() else {
            return Poll::Ready(());
        };
        let same_waker = self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if !same_waker || self.begun.load(Ordering::SeqCst) {
            if !same_waker {
                self.registered = Some(cx.waker().clone());
            }
            if let Poll::Ready(rx) = signal.as_mut().poll(cx) {
                self._guard = Some(rx);
                self.signal = None;
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }

    /// Whether shutdown has begun, without registering for it.
    pub(crate) fn begun(&self) -> bool {
        self.signal.is_none() || self.begun.load(Ordering::SeqCst)
    }

    /// `conn`, told to finish when [`Shutdown::shutdown`] is called (at
    /// once if it already was).
    pub(crate) fn watch<C: GracefulConnection>(self, conn: C) -> Watched<C> {
        Watched {
            conn: Box::pin(conn),
            watcher: self,
            told: false,
        }
    }
}

/// A connection watched by a [`Shutdown`].
pub(crate) struct Watched<C> {
    conn: Pin<Box<C>>,
    watcher: Watcher,
    /// Whether the connection was told to finish.
    told: bool,
}

impl<C: GracefulConnection> Watched<C> {
    /// Tells the connection to finish now, as shutdown would: HTTP/2 sends
    /// GOAWAY, and requests already received are still answered.
    pub(crate) fn finish(&mut self) {
        self.conn.as_mut().graceful_shutdown();
    }
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        if !this.told && this.watcher.poll_begun(cx).is_ready() {
            this.told = true;
            this.conn.as_mut().graceful_shutdown();
        }
        this.conn.as_mut().poll(cx)
    }
}
