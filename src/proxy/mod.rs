//! Forwarding to the upstream: a pool of HTTP/1.1 keep-alive connections per
//! upstream, bodies streamed in both directions.
//!
//! The HTTP/1.1 client is our own (`h1` for the wire format, `conn` for the
//! socket work) rather than hyper's: upstreams here are a handful of plain
//! HTTP/1.1 origins, and hyper's client runs each connection in a task of its
//! own, reached through channels, which cost several task wake-ups per
//! request. Here the task serving the client writes the request and reads
//! the answer itself.
//!
//! * A connection goes back to its idle list when the response body has been
//!   read to the end, the request body was sent whole, and the upstream did
//!   not ask to close; a response dropped half-read closes its connection.
//! * Checkout takes the most recently used connection (LIFO: warm sockets,
//!   and the oldest ones age out), skipping ones the upstream has closed and
//!   ones idle longer than [`IDLE_TIMEOUT`]; at most
//!   [`MAX_IDLE_PER_UPSTREAM`] are kept.
//! * When a reused connection turns out closed before any answer (the
//!   upstream dropped it while idle), the request goes again on a new
//!   connection if that is safe: it has no body (a body, once read from the
//!   client, cannot be sent again) and its method is idempotent (RFC 9110
//!   section 9.2.2).

mod conn;
pub mod h1;

use crate::config::Upstream;
use crate::error::{err, Code, GatewayError};
use bytes::Bytes;
use conn::{BodyWriter, Conn, GiveBack, UpstreamBody};
use h1::ReqFraming;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, Method, Request, Response};
use http_body::Body as HttpBody;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

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

/// A client's request body. Most requests have none: those get a
/// zero-sized body, which boxes without an allocation.
pub fn incoming(b: Incoming) -> Body {
    if b.is_end_stream() {
        return empty();
    }
    b.map_err(BoxError::from).boxed()
}

/// No body: zero-sized, boxed without an allocation.
pub fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// Idle lists keyed by the upstream's authority as configured
/// (`Authority`'s own hash folds case byte by byte, which cost more than
/// the rest of a checkout).
type IdleMap = HashMap<Box<str>, Vec<Idle>, foldhash::fast::RandomState>;

#[derive(Default)]
pub struct Pools {
    idle: Mutex<IdleMap>,
}

impl Pools {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleMap> {
        // Nothing panics while the map is locked; if it did, the lists are
        // still valid.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used open connection to `to`, if any. `now` is
    /// the time the caller read last (a clock read less per request).
    fn checkout(&self, to: &Authority, now: Instant) -> Option<Conn> {
        let mut map = self.lock();
        let list = map.get_mut(to.as_str())?;
        while let Some(mut c) = list.pop() {
            if now.saturating_duration_since(c.since) < IDLE_TIMEOUT && c.conn.is_usable() {
                return Some(c.conn);
            }
        }
        None
    }

    /// The idle time starts now, read from the clock. (Counting it from the
    /// request's send instead saves the read, but was tried twice and taken
    /// back both times, 019e12c and 79dfd9e: an exchange that outlasts
    /// [`IDLE_TIMEOUT`] would check its connection in already expired.)
    fn checkin(&self, to: &Authority, conn: Conn) {
        let mut map = self.lock();
        let list = match map.get_mut(to.as_str()) {
            Some(l) => l,
            None => map.entry(to.as_str().into()).or_default(),
        };
        if list.len() < MAX_IDLE_PER_UPSTREAM {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Close idle connections past [`IDLE_TIMEOUT`] or closed by the upstream.
    fn reap(&self) {
        let mut map = self.lock();
        for list in map.values_mut() {
            list.retain_mut(|c| c.since.elapsed() < IDLE_TIMEOUT && c.conn.is_usable());
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

    /// Where a request goes upstream: the upstream's authority, and the
    /// request target for a normalised path and the (rewritten) query.
    pub fn outbound(
        upstream: &Upstream,
        path: &str,
        query: Option<&str>,
    ) -> Result<Outbound, GatewayError> {
        let query = query.filter(|q| !q.is_empty());
        let len = upstream.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1);
        // The gateway's header lines follow in the same buffer (about 250
        // bytes with an identity): one allocation for both.
        let mut head = Vec::with_capacity(len + 320);
        head.extend_from_slice(upstream.base_path.as_bytes());
        head.extend_from_slice(path.as_bytes());
        if let Some(q) = query {
            head.push(b'?');
            head.extend_from_slice(q.as_bytes());
        }
        // It goes into the request line as is. Visible ASCII without `#`
        // (what the normalised path and a query usually are) passes at
        // once; anything else must be what `http` accepts in a request
        // target, which also bounds the length. `http` would cut a `#` off
        // its own copy, not ours, so a `#` is refused outright.
        let plain = head.len() < usize::from(u16::MAX)
            && head.iter().all(|&b| b.is_ascii_graphic() && b != b'#');
        let valid =
            plain || (!head.contains(&b'#') && PathAndQuery::try_from(head.as_slice()).is_ok());
        if !valid {
            return Err(err(Code::InvalidPath, "the path cannot be forwarded"));
        }
        Ok(Outbound {
            to: upstream.authority.clone(),
            target_len: head.len(),
            head,
            preserve_host: false,
        })
    }

    /// Close idle connections that timed out (called every 5 s).
    pub fn reap(&self) {
        self.pools.reap();
    }

    /// Idle connections held, over all upstreams.
    pub fn idle_connections(&self) -> usize {
        self.pools.idle_count()
    }

    /// Send `req` to `out.to` with the request target `out.target` (from
    /// [`Upstreams::outbound`]; the request's own URI is not used) and the
    /// header lines `out.added` after its own headers; the response head
    /// must arrive within `timeout`. Sets `Host` to the upstream's
    /// authority unless the request already has one.
    pub async fn send(
        &self,
        req: Request<Body>,
        out: Outbound,
        timeout: Duration,
    ) -> Result<Response<Body>, GatewayError> {
        let (parts, body) = req.into_parts();
        let Outbound {
            to,
            head,
            target_len,
            preserve_host,
        } = out;
        let (target, added) = head.split_at(target_len);
        let framing = if body.is_end_stream() {
            ReqFraming::Empty
        } else if let Some(n) = declared_length(&parts.headers) {
            ReqFraming::Length(n)
        } else if let Some(n) = body.size_hint().exact() {
            ReqFraming::Length(n)
        } else {
            ReqFraming::Chunked
        };
        let out = Outgoing {
            method: &parts.method,
            target,
            headers: &parts.headers,
            added,
            framing,
            preserve_host,
        };
        let now = tokio::time::Instant::now();
        let deadline = crate::timer::deadline_from(now, timeout);
        self.round_trip(to, out, body, now.into_std(), deadline)
            .await
    }

    /// The response head must arrive by `deadline`: a new connection waits
    /// for it with its own timer, a pooled one on the sleep it keeps armed
    /// (no timer-wheel entry per request; see `crate::timer`).
    async fn round_trip(
        &self,
        to: Authority,
        out: Outgoing<'_>,
        body: Body,
        now: Instant,
        deadline: tokio::time::Instant,
    ) -> Result<Response<Body>, GatewayError> {
        let mut writer = BodyWriter::new(body, out.framing);
        let idempotent = out.method.is_idempotent();
        let mut pooled = self.pools.checkout(&to, now);
        loop {
            let mut conn = match pooled.take() {
                Some(c) => c,
                None => match tokio::time::timeout_at(deadline, connect(&to)).await {
                    Ok(io) => Conn::new(io?),
                    Err(_) => return Err(timed_out()),
                },
            };
            let host = match out.preserve_host {
                true => h1::HostLine::Preserve(to.as_str()),
                false => h1::HostLine::Upstream(to.as_str()),
            };
            conn.encode_head(
                out.method,
                out.target,
                host,
                out.headers,
                out.added,
                out.framing,
            );
            match conn::exchange(&mut conn, &mut writer, out.method, deadline).await {
                Ok(head) => return Ok(self.response(to, conn, writer, head)),
                Err(conn::Failure::TimedOut) => return Err(timed_out()),
                Err(e) => {
                    let unsent = writer.as_ref().is_none_or(|w| !w.started);
                    let retry = conn.reused && e.is_stale() && unsent && idempotent;
                    if !retry {
                        tracing::warn!(upstream = %to, error = %e, "upstream request failed");
                        return Err(unreachable());
                    }
                    // The upstream closed this idle connection: the next
                    // pooled one, else a new one.
                    pooled = self.pools.checkout(&to, now);
                }
            }
        }
    }

    fn response(
        &self,
        to: Authority,
        conn: Conn,
        writer: Option<BodyWriter>,
        head: h1::Head,
    ) -> Response<Body> {
        let give_back = GiveBack {
            to,
            pools: self.pools.clone(),
        };
        let body = UpstreamBody::new(conn, writer, &head, Some(give_back));
        let mut resp = Response::new(body.boxed());
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        resp
    }
}

/// Where a request goes and the gateway's own header lines for it.
#[derive(Debug)]
pub struct Outbound {
    pub to: Authority,
    /// The request target (origin form, already checked), then the
    /// gateway's header lines, `name: value\r\n` each
    /// ([`crate::rewrite::forwarding_lines`]).
    head: Vec<u8>,
    target_len: usize,
    /// Send the request's own `Host` (a route's `preserve_host`) rather than
    /// the upstream's authority.
    pub preserve_host: bool,
}

impl Outbound {
    /// The request target, as it goes into the request line.
    pub fn target(&self) -> &[u8] {
        &self.head[..self.target_len]
    }

    /// The gateway's header lines so far.
    pub fn added(&self) -> &[u8] {
        &self.head[self.target_len..]
    }

    /// Where [`crate::rewrite::forwarding_lines`] appends the lines. Only
    /// append: the target is the buffer's first `target_len` bytes.
    pub fn lines(&mut self) -> &mut Vec<u8> {
        &mut self.head
    }
}

/// What goes on the wire for one request.
struct Outgoing<'a> {
    method: &'a Method,
    target: &'a [u8],
    headers: &'a HeaderMap,
    /// The gateway's own header lines, already `name: value\r\n`.
    added: &'a [u8],
    framing: ReqFraming,
    preserve_host: bool,
}

/// A request's own `Content-Length` (the framing guard has made sure there
/// is at most one, and that it is a number).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

async fn connect(to: &Authority) -> Result<TcpStream, GatewayError> {
    // `[::1]` in a URL is `::1` to the resolver.
    let host = to.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addr = (host, to.port_u16().unwrap_or(80));
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => {
            let _ = tcp.set_nodelay(true);
            Ok(tcp)
        }
        Ok(Err(e)) => {
            tracing::warn!(upstream = %to, error = %e, "cannot connect to the upstream");
            Err(unreachable())
        }
        Err(_) => {
            tracing::warn!(upstream = %to, "connecting to the upstream timed out");
            Err(unreachable())
        }
    }
}

fn timed_out() -> GatewayError {
    err(
        Code::UpstreamTimeout,
        "the upstream service did not answer in time",
    )
}

fn unreachable() -> GatewayError {
    err(
        Code::UpstreamUnavailable,
        "the upstream service could not be reached",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(base_path: &str) -> Upstream {
        Upstream {
            authority: Authority::from_static("127.0.0.1:9000"),
            base_path: base_path.to_string(),
        }
    }

    #[test]
    fn outbound_targets_join_base_path_path_and_query() {
        let out = Upstreams::outbound(&upstream("/api"), "/model/x", Some("a=1&b")).unwrap();
        assert_eq!(out.target(), b"/api/model/x?a=1&b");
        assert_eq!(out.to.as_str(), "127.0.0.1:9000");
        assert_eq!(out.added(), b"");
        let mut out = Upstreams::outbound(&upstream(""), "/m", Some("")).unwrap();
        out.lines().extend_from_slice(b"x: y\r\n");
        assert_eq!(out.target(), b"/m");
        assert_eq!(out.added(), b"x: y\r\n");
        // Raw UTF-8 in a query (hyper lets it through) is forwarded as before.
        let out = Upstreams::outbound(&upstream(""), "/m", Some("q=\u{e9}")).unwrap();
        assert_eq!(out.target(), "/m?q=\u{e9}".as_bytes());
    }

    #[test]
    fn outbound_targets_that_could_break_the_request_line_are_refused() {
        for query in ["a b", "a\r\nx: y", "a\nb", "a\u{7f}", "frag#x", "a\tb"] {
            let e = Upstreams::outbound(&upstream(""), "/m", Some(query)).unwrap_err();
            assert_eq!(e.code, Code::InvalidPath, "{query:?}");
        }
    }
}
