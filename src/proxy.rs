//! Forwarding to the upstream: a pool of HTTP/1.1 keep-alive connections per
//! upstream, bodies streamed in both directions.
//!
//! The pool is hyper's connection-level client (`hyper::client::conn::http1`)
//! with a small idle list per upstream, rather than hyper-util's
//! general-purpose pooled client: upstreams here are a handful of plain
//! HTTP/1.1 origins, and the general client's per-request work (cloning the
//! client, keyed checkout and check-in, its retry and upgrade machinery) was
//! about a tenth of the gateway's CPU per request in the load bench.
//!
//! * A connection goes back to its idle list when the response body has been
//!   read to the end; a response dropped half-read closes its connection.
//! * Checkout takes the most recently used connection (LIFO: warm sockets,
//!   and the oldest ones age out), skipping closed ones and ones idle longer
//!   than [`IDLE_TIMEOUT`]; at most [`MAX_IDLE_PER_UPSTREAM`] are kept.
//! * A request that could not be written to a pooled connection (the
//!   upstream closed it while it sat idle) is sent again on a new one; a
//!   request that was written is never resent.

use crate::config::Upstream;
use crate::error::{err, Code, GatewayError};
use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of everything the gateway sends, either way.
pub type Body = BoxBody<Bytes, BoxError>;

/// Idle connections kept per upstream.
pub const MAX_IDLE_PER_UPSTREAM: usize = 512;
/// An idle connection older than this is closed instead of reused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed to open a TCP connection to an upstream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn incoming(b: Incoming) -> Body {
    b.map_err(BoxError::from).boxed()
}

struct Idle {
    tx: SendRequest<Body>,
    since: Instant,
}

#[derive(Default)]
struct Pools {
    idle: Mutex<HashMap<Authority, Vec<Idle>>>,
}

impl Pools {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Authority, Vec<Idle>>> {
        // Nothing panics while the map is locked; if it did, the lists are
        // still valid.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used open connection to `to`, if any.
    fn checkout(&self, to: &Authority) -> Option<SendRequest<Body>> {
        let mut map = self.lock();
        let list = map.get_mut(to)?;
        while let Some(c) = list.pop() {
            if !c.tx.is_closed() && c.since.elapsed() < IDLE_TIMEOUT {
                return Some(c.tx);
            }
        }
        None
    }

    fn checkin(&self, to: &Authority, tx: SendRequest<Body>) {
        if tx.is_closed() {
            return;
        }
        let mut map = self.lock();
        let list = match map.get_mut(to) {
            Some(l) => l,
            None => map.entry(to.clone()).or_default(),
        };
        if list.len() < MAX_IDLE_PER_UPSTREAM {
            list.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
    }

    /// Close idle connections past [`IDLE_TIMEOUT`] or already closed.
    fn reap(&self) {
        let mut map = self.lock();
        for list in map.values_mut() {
            list.retain(|c| !c.tx.is_closed() && c.since.elapsed() < IDLE_TIMEOUT);
        }
        map.retain(|_, l| !l.is_empty());
    }

    fn idle_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

#[derive(Clone, Default)]
pub struct Upstreams {
    pools: Arc<Pools>,
}

impl Upstreams {
    pub fn new() -> Self {
        Self::default()
    }

    /// The upstream URI for a normalised path and the (rewritten) query.
    pub fn target(
        upstream: &Upstream,
        path: &str,
        query: Option<&str>,
    ) -> Result<Uri, GatewayError> {
        let mut pq = String::with_capacity(upstream.base_path.len() + path.len() + 1);
        pq.push_str(&upstream.base_path);
        pq.push_str(path);
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            pq.push('?');
            pq.push_str(q);
        }
        let pq = PathAndQuery::try_from(pq)
            .map_err(|_| err(Code::InvalidPath, "the path cannot be forwarded"))?;
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(upstream.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|_| err(Code::Internal, "the upstream URL cannot be built"))
    }

    /// Close idle connections that timed out (called once a second).
    pub fn reap(&self) {
        self.pools.reap();
    }

    /// Idle connections held, over all upstreams.
    pub fn idle_connections(&self) -> usize {
        self.pools.idle_count()
    }

    /// Send `req` (absolute URI from [`Upstreams::target`]); the response
    /// head must arrive within `timeout`. Sets `Host` to the upstream's
    /// authority unless the request already has one.
    pub async fn send(
        &self,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Body>, GatewayError> {
        let (mut parts, body) = req.into_parts();
        let to = parts
            .uri
            .authority()
            .cloned()
            .ok_or_else(|| err(Code::Internal, "the upstream URL has no host"))?;
        if !parts.headers.contains_key(HOST) {
            let host = HeaderValue::from_str(to.as_str())
                .map_err(|_| err(Code::Internal, "the upstream host is not a header value"))?;
            parts.headers.insert(HOST, host);
        }
        // Origin form on the wire: `GET /path?query HTTP/1.1`.
        parts.uri = parts
            .uri
            .path_and_query()
            .cloned()
            .map_or_else(|| Uri::from_static("/"), Uri::from);
        let req = Request::from_parts(parts, body);
        match tokio::time::timeout(timeout, self.round_trip(&to, req)).await {
            Ok(r) => r,
            Err(_) => Err(err(
                Code::UpstreamTimeout,
                "the upstream service did not answer in time",
            )),
        }
    }

    async fn round_trip(
        &self,
        to: &Authority,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, GatewayError> {
        // Pooled connections first; each may turn out closed, in which case
        // the unsent request comes back and goes to the next one.
        while let Some(mut tx) = self.pools.checkout(to) {
            if tx.ready().await.is_err() {
                continue;
            }
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok(self.pooled_response(to, tx, resp)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(unavailable(e.error())),
                },
            }
        }
        let mut tx = self.connect(to).await?;
        match tx.send_request(req).await {
            Ok(resp) => Ok(self.pooled_response(to, tx, resp)),
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn connect(&self, to: &Authority) -> Result<SendRequest<Body>, GatewayError> {
        let addr = (to.host(), to.port_u16().unwrap_or(80));
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                tracing::warn!(upstream = %to, error = %e, "cannot connect to the upstream");
                return Err(unreachable());
            }
            Err(_) => {
                tracing::warn!(upstream = %to, "connecting to the upstream timed out");
                return Err(unreachable());
            }
        };
        let _ = tcp.set_nodelay(true);
        let (tx, conn) = http1::Builder::new()
            .handshake::<_, Body>(TokioIo::new(tcp))
            .await
            .map_err(|e| unavailable(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(tx)
    }

    /// The response with a body that puts the connection back in the pool
    /// once read to the end.
    fn pooled_response(
        &self,
        to: &Authority,
        tx: SendRequest<Body>,
        resp: Response<Incoming>,
    ) -> Response<Body> {
        let (parts, body) = resp.into_parts();
        let mut body = PooledBody {
            inner: body,
            give_back: Some((tx, to.clone(), self.pools.clone())),
        };
        if body.inner.is_end_stream() {
            body.release();
        }
        Response::from_parts(parts, body.boxed())
    }
}

fn unreachable() -> GatewayError {
    err(
        Code::UpstreamUnavailable,
        "the upstream service could not be reached",
    )
}

fn unavailable(e: &hyper::Error) -> GatewayError {
    tracing::warn!(error = %e, "upstream request failed");
    unreachable()
}

/// A response body that returns its connection to the pool at its end.
struct PooledBody {
    inner: Incoming,
    give_back: Option<(SendRequest<Body>, Authority, Arc<Pools>)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((tx, to, pools)) = self.give_back.take() {
            pools.checkin(&to, tx);
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            // A broken body: the connection is not reusable.
            Poll::Ready(Some(Err(_))) => self.give_back = None,
            _ => {}
        }
        polled.map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
