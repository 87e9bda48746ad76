//! HTTP/1.1 client connections, read and written here for the requests
//! that make up nearly all of a gateway's traffic, handed to hyper for the
//! rest.
//!
//! A `GET` with no body, in origin form, over HTTP/1.1 (no `Content-Length`,
//! `Transfer-Encoding`, `Expect` or `Upgrade`, and no `Connection` token
//! but `keep-alive` and `close`) is parsed here with httparse, answered by
//! the same pipeline as every other request, and its answer written here,
//! framed as hyper frames it. The first request that is anything else (a
//! body, another method, HTTP/1.0, a head httparse refuses or one over the
//! size limit) ends this loop: the connection goes to hyper's HTTP/1
//! server, which reads the bytes already buffered first, then the rest of
//! the connection. Every refusal (400, 431, 501), body and upgrade is
//! still hyper's, and the framing guard still watches what hyper reads.
//!
//! Why: under load hyper's HTTP/1 server was about 11,000 of the 52,600
//! user-space instructions of an OAuth 1.0 request (its dispatcher, read
//! and write buffers, head parsing into its own types, the response head
//! encoded from a map, the date cache read on every poll of a connection),
//! and the request's future, about 4 KiB, was boxed and moved for each
//! request. Here the future lives in the connection's task, the head is
//! parsed once, and the answer's head and body go out in one write.
//! BENCHMARKS.md has the figures.
//!
//! While a request is answered the client is read, as hyper's server
//! reads it: what it pipelines meanwhile is kept (up to the head limit) for
//! the next turn, and a client that closes its side or whose connection
//! fails has its request dropped, which cancels the call to the upstream
//! (or a streamed answer's wait for its next chunk). An answer's chunks
//! that are ready at once are written a chunk's size at a time, so the
//! connection's answer buffer stays small.
//!
//! Timeouts are the same as hyper's: `header_read_timeout` bounds each
//! wait for a head, the first and the idle ones between requests included
//! (the connection is closed without an answer when it passes);
//! `send_timeout` is the socket's ([`super::socket`]). Graceful shutdown
//! closes an idle connection at once and answers a request in progress
//! with `connection: close`.

use super::graceful::Watcher;
use crate::config::Limits;
use crate::proxy::Body;
use crate::state::Gateway;
use crate::timer::{self, Armed};
use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body as HttpBody;
use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Header lines a request may have (hyper's default; more is hyper's 431).
const MAX_HEADERS: usize = 100;

/// A body chunk up to this size is copied behind the head (or the chunk
/// before it) so that both go out in one write; a larger one is written
/// on its own.
const COALESCE: usize = 16 * 1024;

/// The answer's buffer is dropped after an answer that left it larger than
/// this.
const MAX_KEPT: usize = 64 * 1024;

/// How [`serve`] ended.
pub(super) enum Ending {
    /// The connection is finished (closed by the client, timed out, told
    /// to close, or failed).
    Closed,
    /// The next request is one for hyper; these bytes of it were read
    /// already.
    HandOff(BytesMut),
}

/// Serves requests on `io` until the connection ends or a request needs
/// hyper.
pub(super) async fn serve<S>(
    io: &mut S,
    gw: &Arc<Gateway>,
    peer: SocketAddr,
    limits: &Limits,
    watcher: &mut Watcher,
) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // hyper's `max_buf_size` as the gateway sets it: a head that does not
    // fit is hyper's to refuse (431).
    let max_head = limits.max_header_bytes.max(8192);
    // Allocated at the first read and write: a connection that says
    // nothing holds no buffers.
    let mut buf = BytesMut::new();
    let mut armed: Armed = None;
    let mut out: Vec<u8> = Vec::new();
    let mut lines = Vec::new();
    loop {
        // The wait for a head starts when it is first needed: when the
        // bytes are there already, no clock is read.
        let mut deadline = None;
        let (req, close) = loop {
            if !buf.is_empty() {
                match take_request(&mut buf, max_head, &mut lines) {
                    Taken::Request(req, close) => break (req, close),
                    Taken::Partial if buf.len() < max_head => {}
                    Taken::Partial | Taken::NotMine => return Ending::HandOff(buf),
                }
            }
            let idle = buf.is_empty();
            let wait = read_more(
                io,
                &mut buf,
                &mut armed,
                &mut deadline,
                limits,
                watcher,
                idle,
            );
            match wait.await {
                Wait::Data => {}
                Wait::Eof => return Ending::Closed,
                Wait::TimedOut => {
                    tracing::debug!(%peer, "no whole request head within header_read_timeout; closing");
                    return Ending::Closed;
                }
                Wait::Shutdown => return Ending::Closed,
                Wait::Failed(e) => {
                    tracing::debug!(%peer, error = %e, "client connection failed");
                    return Ending::Closed;
                }
            }
        };
        // The client is read while its request is answered, as hyper's
        // server reads it: what it pipelines is kept for the next turn, and
        // when it closes (or the connection fails) the request is dropped,
        // which cancels the call to the upstream.
        let mut client = Client {
            io: &mut *io,
            buf: &mut buf,
            room: max_head,
        };
        let mut handled = pin!(super::pipeline::handle(gw.clone(), peer, false, req));
        let answered = poll_fn(|cx| {
            if let Poll::Ready(Ok(resp)) = handled.as_mut().poll(cx) {
                return Poll::Ready(Some(resp));
            }
            client.poll_gone(cx).map(|()| None)
        })
        .await;
        let Some(resp) = answered else {
            tracing::debug!(%peer, "the client closed the connection before its answer");
            return Ending::Closed;
        };
        let mut keep_alive = !close && !watcher.begun();
        let written = write_answer(&mut client, &mut out, resp, &mut keep_alive).await;
        // A large answer's buffer is not kept for the connection's life.
        if out.capacity() > MAX_KEPT {
            out = Vec::new();
        }
        if let Err(e) = written {
            tracing::debug!(%peer, error = %e, "writing the answer failed");
            return Ending::Closed;
        }
        if !keep_alive {
            let _ = io.shutdown().await;
            return Ending::Closed;
        }
    }
}

enum Wait {
    Data,
    Eof,
    TimedOut,
    Shutdown,
    Failed(io::Error),
}

/// Reads more of a request head into `buf`, until `header_read_timeout`
/// after the wait began (`deadline`, set at the first wait), or, while the
/// connection is idle, until shutdown begins.
async fn read_more<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    armed: &mut Armed,
    deadline: &mut Option<tokio::time::Instant>,
    limits: &Limits,
    watcher: &mut Watcher,
    idle: bool,
) -> Wait {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(8192);
    }
    let mut read = pin!(io.read_buf(buf));
    poll_fn(|cx| {
        match read.as_mut().poll(cx) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Wait::Eof),
            Poll::Ready(Ok(_)) => return Poll::Ready(Wait::Data),
            Poll::Ready(Err(e)) => return Poll::Ready(Wait::Failed(e)),
            Poll::Pending => {}
        }
        if idle && watcher.poll_begun(cx).is_ready() {
            return Poll::Ready(Wait::Shutdown);
        }
        let at = *deadline.get_or_insert_with(|| timer::deadline_in(limits.header_read_timeout));
        if timer::poll_deadline(armed, at, cx).is_ready() {
            return Poll::Ready(Wait::TimedOut);
        }
        Poll::Pending
    })
    .await
}

/// The client's connection while its request is answered, and the buffer
/// that keeps what it sends meanwhile.
struct Client<'a, S> {
    io: &'a mut S,
    buf: &'a mut BytesMut,
    /// What `buf` may hold before the rest is left in the socket.
    room: usize,
}

impl<S: AsyncRead + Unpin> Client<'_, S> {
    /// Reads what the client sends while its request is answered into
    /// `buf`, up to `room` bytes (the rest waits in the socket, as it does
    /// once hyper's read buffer is full). Ready when the client has closed
    /// its side or the connection has failed: then nobody is left to
    /// answer.
    fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.buf.len() < self.room {
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(8192);
            }
            match pin!(self.io.read_buf(self.buf)).poll(cx) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Pending
    }
}

// Taken once a request and moved straight into the pipeline: boxing the
// request would cost an allocation a request.
#[allow(clippy::large_enum_variant)]
enum Taken {
    /// A request for the loop, and whether it asked to close afterwards.
    Request(Request<Body>, bool),
    /// Not a whole head yet.
    Partial,
    /// A request for hyper (`buf` is as it was).
    NotMine,
}

/// Where a header line's name and value are in the head.
#[derive(Clone, Copy)]
struct Line {
    name: (usize, usize),
    value: (usize, usize),
}

/// The request at the front of `buf`, taken off it, when it is one for
/// this loop.
/// `lines` is scratch space, kept by the connection (an array on the stack
/// would be zeroed for every request).
fn take_request(buf: &mut BytesMut, max_head: usize, lines: &mut Vec<Line>) -> Taken {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    lines.clear();
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let (len, path, close) = {
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, &mut slots) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Taken::Partial,
            Err(_) => return Taken::NotMine,
        };
        let (Some("GET"), Some(1), Some(path)) = (req.method, req.version, req.path) else {
            return Taken::NotMine;
        };
        if len > max_head || !path.starts_with('/') {
            return Taken::NotMine;
        }
        let mut close = false;
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"connection") {
                for token in h.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                        return Taken::NotMine;
                    }
                }
            } else if name.eq_ignore_ascii_case(b"content-length")
                || name.eq_ignore_ascii_case(b"transfer-encoding")
                || name.eq_ignore_ascii_case(b"expect")
                || name.eq_ignore_ascii_case(b"upgrade")
            {
                return Taken::NotMine;
            }
            lines.push(Line {
                name: at(name),
                value: at(h.value),
            });
        }
        (len, at(path.as_bytes()), close)
    };
    let head = buf.split_to(len).freeze();
    match build(&head, path, lines) {
        Some(req) => Taken::Request(req, close),
        None => {
            // A name or target hyper's types refuse: hyper answers it.
            let mut whole = BytesMut::with_capacity(head.len() + buf.len());
            whole.extend_from_slice(&head);
            whole.extend_from_slice(buf);
            *buf = whole;
            Taken::NotMine
        }
    }
}

fn build(head: &Bytes, path: (usize, usize), lines: &[Line]) -> Option<Request<Body>> {
    let slice = |(at, len): (usize, usize)| head.slice(at..at + len);
    let uri = Uri::from_maybe_shared(slice(path)).ok()?;
    let mut headers = HeaderMap::with_capacity(lines.len());
    for line in lines {
        let (at, len) = line.name;
        let name = HeaderName::from_bytes(&head[at..at + len]).ok()?;
        let value = HeaderValue::from_maybe_shared(slice(line.value)).ok()?;
        headers.append(name, value);
    }
    let mut req = Request::new(crate::proxy::empty());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Some(req)
}

/// How an answer's body is framed on the wire.
#[derive(Clone, Copy, PartialEq)]
enum Framing {
    /// This many bytes, announced by `content-length`.
    Length(u64),
    Chunked,
}

/// Writes `resp` as hyper's HTTP/1.1 server would answer a `GET`: its
/// status line and headers, `content-length` from the body when the
/// headers have no framing of their own (chunked when the length is not
/// known), a `date` when there is none, `connection: close` when the
/// connection ends after it. `keep_alive` is cleared when the answer asks
/// to close.
async fn write_answer<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<'_, S>,
    out: &mut Vec<u8>,
    resp: Response<Body>,
    keep_alive: &mut bool,
) -> io::Result<()> {
    let (parts, body) = resp.into_parts();
    out.clear();
    let status = parts.status;
    if status.is_informational() {
        // hyper cannot send a 1xx as an answer either: it sends 500.
        *keep_alive = false;
        out.extend_from_slice(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n");
        out.extend_from_slice(b"connection: close\r\n");
        push_date(out);
        out.extend_from_slice(b"\r\n");
        client.io.write_all(out).await?;
        return client.io.flush().await;
    }
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let can_have_body = !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let empty = body.is_end_stream();
    let mut framing = None;
    let mut wrote_date = false;
    let mut says_close = false;
    for (name, value) in &parts.headers {
        if *name == CONTENT_LENGTH {
            // hyper's rules: an empty body is announced as `content-length:
            // 0` below; otherwise the first length line frames the body.
            if empty || framing.is_some() {
                continue;
            }
            let Some(n) = crate::proxy::h1::parse_length(value.as_bytes()) else {
                return Err(io::Error::other(
                    "the answer's content-length is not a number",
                ));
            };
            if !can_have_body {
                continue;
            }
            framing = Some(Framing::Length(n));
        } else if *name == TRANSFER_ENCODING {
            if !can_have_body || framing.is_some() {
                continue;
            }
            framing = Some(Framing::Chunked);
            if !is_chunked(value.as_bytes()) {
                push_header(out, name.as_str(), value.as_bytes());
                out.truncate(out.len() - 2);
                out.extend_from_slice(b", chunked\r\n");
                continue;
            }
        } else if *name == CONNECTION {
            says_close |= value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if *name == DATE {
            wrote_date = true;
        }
        push_header(out, name.as_str(), value.as_bytes());
    }
    if framing.is_none() && can_have_body {
        match body.size_hint().exact() {
            _ if empty => out.extend_from_slice(b"content-length: 0\r\n"),
            Some(n) => {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                out.extend_from_slice(b"\r\n");
                framing = Some(Framing::Length(n));
            }
            None => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                framing = Some(Framing::Chunked);
            }
        }
    }
    if says_close {
        *keep_alive = false;
    } else if !*keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !wrote_date {
        push_date(out);
    }
    out.extend_from_slice(b"\r\n");
    match framing {
        Some(framing) if can_have_body && !empty => write_body(client, out, body, framing).await,
        _ => {
            client.io.write_all(out).await?;
            client.io.flush().await
        }
    }
}

/// Writes what is in `out` (the head), then the body, chunk by chunk. A
/// chunk that is ready at once goes out in the same write as what precedes
/// it, up to [`COALESCE`] bytes buffered; when the body has to wait, what
/// is buffered is written first, so a slow or streaming upstream's head
/// reaches the client without delay. While the body waits, the client is
/// read ([`Client::poll_gone`]): if it leaves, the body is dropped.
async fn write_body<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<'_, S>,
    out: &mut Vec<u8>,
    body: Body,
    framing: Framing,
) -> io::Result<()> {
    let mut body = pin!(body);
    let mut left = match framing {
        Framing::Length(n) => n,
        Framing::Chunked => u64::MAX,
    };
    while left > 0 {
        let polled = poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await;
        let frame = match polled {
            Poll::Ready(f) => f,
            Poll::Pending => {
                if !out.is_empty() {
                    client.io.write_all(out).await?;
                    out.clear();
                    client.io.flush().await?;
                }
                let next = poll_fn(|cx| {
                    if let Poll::Ready(f) = body.as_mut().poll_frame(cx) {
                        return Poll::Ready(Some(f));
                    }
                    client.poll_gone(cx).map(|()| None)
                })
                .await;
                let Some(frame) = next else {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the client closed the connection during the answer",
                    ));
                };
                frame
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(io::Error::other(e)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) if !d.is_empty() => d,
                // Trailers are not sent (hyper sends only declared ones, and
                // the `Trailer` header is hop-by-hop).
                _ => continue,
            },
        };
        if framing == Framing::Chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        } else if data.len() as u64 > left {
            return Err(io::Error::other(
                "the answer's body is longer than its content-length",
            ));
        } else {
            left -= data.len() as u64;
        }
        if data.len() <= COALESCE {
            out.extend_from_slice(&data);
        } else {
            if !out.is_empty() {
                client.io.write_all(out).await?;
                out.clear();
            }
            client.io.write_all(&data).await?;
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
        // A fast upstream's chunks are all ready at once: what is buffered
        // goes out once it reaches a chunk's size, so the buffer stays
        // small whatever the answer's length.
        if out.len() >= COALESCE {
            client.io.write_all(out).await?;
            out.clear();
        }
    }
    match framing {
        Framing::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
        Framing::Length(0) => {}
        Framing::Length(_) if left == 0 => {}
        Framing::Length(_) => {
            return Err(io::Error::other(
                "the answer's body ended before its content-length",
            ))
        }
    }
    if !out.is_empty() {
        client.io.write_all(out).await?;
        out.clear();
    }
    client.io.flush().await
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether the last transfer coding listed is `chunked`.
fn is_chunked(v: &[u8]) -> bool {
    v.rsplit(|b| *b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

thread_local! {
    /// The `date` header line of the current second, formatted once a
    /// second per thread.
    static DATE_LINE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

fn push_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE_LINE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            cached.0 = secs;
            cached.1.clear();
            cached.1.extend_from_slice(b"date: ");
            cached
                .1
                .extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
            cached.1.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&cached.1);
    });
}

/// The connection as hyper gets it after [`serve`]: the bytes read already
/// first, then the connection's own.
pub(super) struct Rewind<S> {
    pre: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub(super) fn new(inner: S, pre: BytesMut) -> Self {
        Rewind {
            pre: pre.freeze(),
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(dst.remaining());
            let taken = self.pre.split_to(n);
            dst.put_slice(&taken);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, dst)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use http_body_util::BodyExt;

    /// `n` chunks of `size` bytes, every one ready at once, as a fast
    /// upstream's are.
    struct Chunks {
        n: usize,
        size: usize,
    }

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = crate::proxy::BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.n == 0 {
                return Poll::Ready(None);
            }
            self.n -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; self.size])))))
        }
    }

    /// Records every write; the client says nothing.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<usize>,
        bytes: Vec<u8>,
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.push(data.len());
            self.bytes.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Decodes a chunked body: the payload's length, and whether the last
    /// chunk closed it.
    fn dechunk(mut b: &[u8]) -> (usize, bool) {
        let mut total = 0;
        loop {
            let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
                return (total, false);
            };
            let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap(), 16).unwrap();
            if size == 0 {
                return (total, &b[eol..] == b"\r\n\r\n");
            }
            assert_eq!(&b[eol + 2 + size..eol + 4 + size], b"\r\n");
            total += size;
            b = &b[eol + 4 + size..];
        }
    }

    async fn answer(chunks: Chunks) -> (Recorder, Vec<u8>) {
        let mut io = Recorder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut keep_alive = true;
        let mut client = Client {
            io: &mut io,
            buf: &mut buf,
            room: 8192,
        };
        let resp = Response::new(chunks.map_err(|e| e).boxed());
        write_answer(&mut client, &mut out, resp, &mut keep_alive)
            .await
            .expect("written");
        assert!(keep_alive);
        (io, out)
    }

    /// A long answer whose chunks are all ready at once (a fast upstream)
    /// goes out in writes of about a chunk, and leaves the connection's
    /// answer buffer small: it had grown to the whole answer, megabytes
    /// kept for the connection's life.
    #[tokio::test]
    async fn a_long_answer_ready_at_once_is_written_in_pieces() {
        let (io, out) = answer(Chunks {
            n: 300,
            size: 16 * 1024,
        })
        .await;
        let head_end = io.bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&io.bytes[..head_end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert_eq!(dechunk(&io.bytes[head_end..]), (300 * 16 * 1024, true));
        let largest = io.writes.iter().max().copied().unwrap();
        assert!(
            largest <= 2 * COALESCE + 64,
            "a write of {largest} bytes ({} writes)",
            io.writes.len()
        );
        assert!(out.capacity() <= MAX_KEPT, "kept {} bytes", out.capacity());
    }

    /// Small chunks ready at once still share writes (up to a chunk's size).
    #[tokio::test]
    async fn small_chunks_ready_at_once_share_a_write() {
        let (io, _) = answer(Chunks { n: 8, size: 100 }).await;
        assert_eq!(io.writes.len(), 1, "{:?}", io.writes);
        let head_end = io.bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(dechunk(&io.bytes[head_end..]), (800, true));
    }
}
