//! Listeners: HTTPS (the gateway), the optional plain-HTTP redirect, and the
//! admin endpoints. SIGTERM/SIGINT stop accepting and drain; SIGHUP reloads.

mod authenticate;
mod framing;
mod graceful;
mod h1;
mod pipeline;
mod redirect;
mod socket;
mod stall;
mod token;

pub(crate) use pipeline::valid_host as pipeline_valid_host;
pub use pipeline::{handle, handle_with};

use crate::state::Gateway;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Bound listeners, so callers (and tests) know the real addresses.
pub struct Listeners {
    pub https: TcpListener,
    pub http: Option<TcpListener>,
    pub admin: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(gw: &Gateway) -> std::io::Result<Listeners> {
        let snap = gw.snapshot();
        let s = &snap.settings;
        let https = TcpListener::bind(s.listen.https).await?;
        let http = match s.listen.http {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        let admin = match &s.admin {
            Some(a) => Some(TcpListener::bind(a.listen).await?),
            None => None,
        };
        Ok(Listeners { https, http, admin })
    }
}

/// Run until `stop` fires, then drain within `limits.shutdown_grace`.
pub async fn run(gw: Arc<Gateway>, listeners: Listeners, mut stop: watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let (admin_tx, admin_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(accept_https(
        gw.clone(),
        listeners.https,
        rx.clone(),
    )));
    if let Some(l) = listeners.http {
        tasks.push(tokio::spawn(redirect::serve(gw.clone(), l, rx.clone())));
    }
    // The admin listener outlives the drain, so /readyz answers 503 meanwhile.
    let admin = listeners
        .admin
        .map(|l| tokio::spawn(crate::admin::serve(gw.clone(), l, admin_rx)));
    let watcher = tokio::spawn(crate::state::watch_files(
        gw.clone(),
        Duration::from_secs(1),
    ));
    let purger = tokio::spawn(housekeeping(gw.clone()));
    let jwks = tokio::spawn(crate::state::refresh_jwks(gw.clone()));
    gw.set_ready(true);
    let _ = stop.wait_for(|s| *s).await;
    tracing::info!("shutting down: no new connections; draining in-flight requests");
    gw.set_ready(false);
    watcher.abort();
    purger.abort();
    jwks.abort();
    let _ = tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = admin_tx.send(true);
    if let Some(a) = admin {
        let _ = a.await;
    }
    tracing::info!("stopped");
}

/// Wait for SIGTERM or SIGINT; reload on SIGHUP meanwhile.
pub async fn signals(gw: Arc<Gateway>, stop: watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading configuration");
                let _ = gw.reload();
            }
        }
    }
    let _ = stop.send(true);
}

/// What the binary gives back freed memory with (its allocator's
/// collection), set once at start; the library itself has none.
static COLLECTOR: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets the function housekeeping calls every 5 s to give memory freed by
/// the gateway back to the kernel (the binary's: mimalloc's `mi_collect`).
pub fn set_collector(collect: fn()) {
    let _ = COLLECTOR.set(collect);
}

/// Expire nonces in bulk even when no request touches the store.
/// Every 5 s: expired nonces out of the replay store, timed-out idle
/// connections out of the upstream pool, and freed memory back to the
/// kernel ([`set_collector`]; with one runtime thread, the thread that
/// freed it).
async fn housekeeping(gw: Arc<Gateway>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        gw.upstreams.reap();
        gw.replay.purge(crate::auth::now_unix() as u64);
        gw.metrics.nonces.set(gw.replay.len() as i64);
        if let Some(collect) = COLLECTOR.get() {
            collect();
        }
    }
}

/// The HTTP/1 side of a client connection. Each connection gets its own
/// builder: the timer in it must not be shared (see [`crate::timer::ConnTimer`]).
///
/// hyper's `pipeline_flush` is left off. It would write the answers to
/// pipelined requests together (11.0 against 17.2 µs of CPU a request
/// with eight requests in flight per connection), but while a pipelined
/// request waits in the read buffer it never flushes and never stops
/// taking body chunks: one client that pipelined two requests for a
/// 300 MB download and read nothing took the gateway to 1.37 GB of RSS
/// (19 MiB without it).
fn http1_builder(limits: &crate::config::Limits) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(crate::timer::ConnTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b
}

fn http2_builder(
    limits: &crate::config::Limits,
    next: stall::NextWatch,
) -> http2::Builder<stall::StreamExecutor> {
    let mut b = http2::Builder::new(stall::StreamExecutor {
        next,
        timeout: limits.send_timeout,
    });
    // No keep-alive PINGs (hyper's default): TCP keepalive ([`KEEPALIVE`])
    // finds a vanished client with no per-request cost, where hyper's ping
    // bookkeeping cost about 1,200 instructions a request.
    b.timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_concurrent_streams(256);
    b
}

/// TCP keepalive on every client connection, whatever its protocol: after
/// 30 s without traffic the kernel probes the client every 10 s, and after
/// three probes without an answer the connection fails and closes. That
/// finds a client whose host vanished or whose network dropped it without
/// a FIN or RST (a pulled cable, a NAT that forgot the connection) while
/// its request waits for a slow or streaming upstream: nothing else would
/// end such a connection. It costs nothing per request: the kernel does
/// it, and only on a connection that has been quiet for 30 s (nginx's
/// `so_keepalive=30s:10s:3`). A client that is alive but stops reading is
/// `limits.send_timeout`'s; an idle one is `header_read_timeout`'s.
const KEEPALIVE: socket2::TcpKeepalive = socket2::TcpKeepalive::new()
    .with_time(Duration::from_secs(30))
    .with_interval(Duration::from_secs(10))
    .with_retries(3);

/// The requests of one HTTP/2 connection, for its idle timeout: how many
/// are waiting for their answer, and when the last one was answered.
struct Activity {
    in_flight: AtomicUsize,
    /// When the last request was answered, in nanoseconds after `epoch`.
    /// Read only while none is in flight, so a request's start needs no
    /// clock read.
    last: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::SeqCst);
    }

    /// A request begins; it ends when the returned guard is dropped (its
    /// answer's head is ready, or the request was cancelled).
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Since when no request has been waiting for its answer; None while
    /// one is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(self.epoch + Duration::from_nanos(self.last.load(Ordering::SeqCst)))
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request's answer, boxed, with the request counted in flight (over
/// HTTP/2) until it is ready. A struct rather than an `async fn`: the
/// generator would hold the 4 KiB answer twice, as argument and as awaitee.
/// Over HTTP/2 the answer's body reports to the stream's watch (see
/// [`stall`]).
struct Counted<F> {
    answer: std::pin::Pin<Box<F>>,
    _in_flight: Option<InFlight>,
    watch: Option<Arc<stall::StreamWatch>>,
}

type Answer<B> = Result<http::Response<B>, std::convert::Infallible>;

impl<F: Future<Output = Answer<crate::proxy::Body>>> Future for Counted<F> {
    type Output = Answer<stall::Watched>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Answer<stall::Watched>> {
        let Poll::Ready(Ok(resp)) = self.answer.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        let watch = self.watch.take();
        Poll::Ready(Ok(resp.map(|body| stall::Watched::new(body, watch))))
    }
}

/// Serves one client connection until it ends. Until its first request is
/// dispatched (`dispatched`), `timeout` bounds the wait: that covers a
/// client that completes the handshake and then says nothing, whichever
/// protocol it chose. Returns None when that deadline passed first.
///
/// After that, an HTTP/2 connection (`activity`) with no request waiting
/// for its answer for `timeout` is told to finish (GOAWAY; answers still
/// streaming complete first), as hyper closes an idle HTTP/1 connection
/// after its header read timeout.
async fn serve_client<C>(
    conn: graceful::Watched<C>,
    dispatched: &AtomicBool,
    timeout: Duration,
    activity: Option<&Activity>,
) -> Option<Result<(), C::Error>>
where
    C: hyper_util::server::graceful::GracefulConnection,
{
    let mut conn = std::pin::pin!(conn);
    let mut timer = std::pin::pin!(tokio::time::sleep(timeout));
    let mut finishing = false;
    // Over HTTP/1 the sleep is looked at only until the first request is
    // dispatched: polling it on every wake-up of a busy connection (about
    // three a request) cost more than the rest of this task.
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = conn.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        if !dispatched.load(Ordering::Relaxed) {
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            return Poll::Pending;
        }
        let Some(activity) = activity.filter(|_| !finishing) else {
            return Poll::Pending;
        };
        while timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            match activity.idle_since() {
                Some(since) if now.saturating_duration_since(since) >= timeout => {
                    tracing::debug!("HTTP/2 connection idle for header_read_timeout: GOAWAY");
                    conn.as_mut().get_mut().finish();
                    finishing = true;
                    // The connection is polled again to send it.
                    cx.waker().wake_by_ref();
                    break;
                }
                Some(since) => timer.as_mut().reset((since + timeout).into()),
                None => timer.as_mut().reset((now + timeout).into()),
            }
        }
        Poll::Pending
    })
    .await
}

async fn accept_https(gw: Arc<Gateway>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let graceful = graceful::Shutdown::new();
    let max = gw.snapshot().settings.limits.max_connections;
    let permits = Arc::new(Semaphore::new(max));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let Some((tcp, peer)) = accept(&listener, &mut stop).await else {
            break;
        };
        let gw = gw.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let snap = gw.snapshot();
            let limits = snap.settings.limits.clone();
            let acceptor = snap.tls.clone();
            drop(snap);
            let _ = tcp.set_nodelay(true);
            let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&KEEPALIVE);
            let tls = match tokio::time::timeout(
                limits.tls_handshake_timeout,
                acceptor.accept(socket::ClientSocket::new(tcp, limits.send_timeout)),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            gw.metrics.connections.inc();
            // The protocol is the one ALPN chose. A client that offered no
            // ALPN speaks HTTP/1.1: HTTP/2 over TLS is only ever negotiated
            // (RFC 9113, section 3.2), so nothing is sniffed.
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let mut watcher = watcher;
            // HTTP/1.1: this loop first, hyper from the first request it
            // leaves to hyper (see [`h1`]).
            let mut tls = tls;
            let mut handed = None;
            if !h2 {
                match h1::serve(&mut tls, &gw, peer, &limits, &mut watcher).await {
                    h1::Ending::Closed => {
                        gw.metrics.connections.dec();
                        return;
                    }
                    h1::Ending::HandOff(read) => handed = Some(read),
                }
            }
            let svc_gw = gw.clone();
            let verdicts = framing::Verdicts::default();
            let conn_verdicts = verdicts.clone();
            let dispatched = Arc::new(AtomicBool::new(false));
            let seen = dispatched.clone();
            let activity = h2.then(Activity::new);
            let requests = activity.clone();
            let next_watch = h2.then(stall::NextWatch::default);
            let leave_watch = next_watch.clone();
            let svc = service_fn(move |req| {
                seen.store(true, Ordering::Relaxed);
                let in_flight = requests.as_ref().map(Activity::begin);
                // hyper hands this request's stream to the executor next,
                // which takes the watch from where it is left.
                let watch = leave_watch.as_ref().map(|next| {
                    let watch = Arc::new(stall::StreamWatch::default());
                    let left = next
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .replace(watch.clone());
                    // The last stream's was taken by its executor call.
                    debug_assert!(left.is_none(), "a stream's watch was not taken");
                    watch
                });
                // Boxed: the request's future is about 4 KiB, and hyper
                // moves it by value several times before it runs (over
                // HTTP/2 into a task of its own): one copy into the heap
                // instead of five on the stack. Under callgrind, 4,900
                // instructions a request fewer over HTTP/2, 840 over
                // HTTP/1.
                Counted {
                    answer: Box::pin(handle(
                        svc_gw.clone(),
                        peer,
                        conn_verdicts.next(),
                        req.map(crate::proxy::incoming),
                    )),
                    _in_flight: in_flight,
                    watch,
                }
            });
            let first = limits.header_read_timeout;
            let result = if let Some(read) = handed {
                let io = TokioIo::new(framing::FramingGuard::new(
                    h1::Rewind::new(tls, read),
                    verdicts,
                ));
                let conn = watcher.watch(http1_builder(&limits).serve_connection(io, svc));
                serve_client(conn, &dispatched, first, None).await
            } else {
                let io = TokioIo::new(framing::FramingGuard::new(tls, verdicts));
                let conn = watcher.watch(
                    http2_builder(&limits, next_watch.unwrap_or_default())
                        .serve_connection(io, svc),
                );
                serve_client(conn, &dispatched, first, activity.as_deref()).await
            };
            let Some(result) = result else {
                tracing::debug!(%peer, "no request within header_read_timeout; closing");
                gw.metrics.connections.dec();
                return;
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            gw.metrics.connections.dec();
        });
    }
    drop(listener);
    drain(graceful, &gw).await;
}

/// A plain-HTTP/1 listener whose every answer comes from `answer` (the
/// admin endpoints, the HTTPS redirect). Accept errors are survived with a
/// short back-off; connections drain like the gateway's own.
pub(crate) async fn serve_plain(
    gw: Arc<Gateway>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    keep_alive: bool,
    answer: fn(
        &Gateway,
        &http::Request<hyper::body::Incoming>,
    ) -> http::Response<crate::proxy::Body>,
) {
    let graceful = graceful::Shutdown::new();
    loop {
        let Some((tcp, _)) = accept(&listener, &mut stop).await else {
            break;
        };
        let gw = gw.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let timeout = gw.snapshot().settings.limits.header_read_timeout;
            let mut b = http1::Builder::new();
            b.timer(crate::timer::ConnTimer::new())
                .header_read_timeout(timeout)
                .keep_alive(keep_alive);
            let svc = service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&gw, &req)) }
            });
            let _ = watcher
                .watch(b.serve_connection(TokioIo::new(tcp), svc))
                .await;
        });
    }
    drop(listener);
    drain(graceful, &gw).await;
}

/// The next connection, or None once `stop` fires. Accept errors (out of
/// file descriptors and the like) are survived with a short back-off.
async fn accept(
    listener: &TcpListener,
    stop: &mut watch::Receiver<bool>,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => return Some(x),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return None,
        }
    }
}

pub(crate) async fn drain(graceful: graceful::Shutdown, gw: &Gateway) {
    let grace = gw.snapshot().settings.limits.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "grace period over; closing the remaining connections"
        );
    }
}

/// The address a listener is bound to (for logs).
pub fn local(l: &TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}
