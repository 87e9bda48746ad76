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
        Watcher {
            rx: self.tx.subscribe(),
            begun: self.begun.clone(),
        }
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
    rx: watch::Receiver<()>,
    begun: Arc<AtomicBool>,
}

impl Watcher {
    /// `conn`, told to finish when [`Shutdown::shutdown`] is called.
    pub(crate) fn watch<C: GracefulConnection>(self, conn: C) -> Watched<C> {
        let Watcher { mut rx, begun } = self;
        Watched {
            conn: Box::pin(conn),
            signal: Some(Box::pin(async move {
                let _ = rx.changed().await;
                rx
            })),
            registered: None,
            begun,
            _guard: None,
        }
    }
}

type Signal = Pin<Box<dyn Future<Output = watch::Receiver<()>> + Send>>;

/// A connection watched by a [`Shutdown`].
pub(crate) struct Watched<C> {
    conn: Pin<Box<C>>,
    /// Ready when shutdown has begun; `None` once it was.
    signal: Option<Signal>,
    /// The waker `signal` was last polled with.
    registered: Option<Waker>,
    begun: Arc<AtomicBool>,
    /// The receiver, kept until the connection ends, so that shutdown
    /// waits for it.
    _guard: Option<watch::Receiver<()>>,
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
        if let Some(signal) = this.signal.as_mut() {
            let same_waker = this
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()));
            if !same_waker || this.begun.load(Ordering::SeqCst) {
                if !same_waker {
                    this.registered = Some(cx.waker().clone());
                }
                if let Poll::Ready(rx) = signal.as_mut().poll(cx) {
                    this._guard = Some(rx);
                    this.signal = None;
                    this.conn.as_mut().graceful_shutdown();
                }
            }
        }
        this.conn.as_mut().poll(cx)
    }
}
