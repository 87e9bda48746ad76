//! One upstream connection and one exchange on it, driven inline by the
//! task that serves the client: no connection task, no channel between the
//! request and the socket. The request body is written while the response
//! head is awaited, and afterwards while the response body is read, so an
//! upstream that answers before it has read the whole request (an early
//! 413, a streaming echo) works as it would with a direct client.

use super::h1::{self, Chunked, Head, ProtoError, ReqFraming, RespFraming, Step};
use super::{Body, BoxError, Pools};
use bytes::{Bytes, BytesMut};
use http::uri::Authority;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

/// Bytes asked of the kernel per read.
const READ_SIZE: usize = 16 * 1024;

/// An open connection and what it has read ahead.
pub struct Conn {
    io: TcpStream,
    rbuf: BytesMut,
    /// Request heads are encoded here; kept to save an allocation per request.
    wbuf: Vec<u8>,
    /// Requests already carried: a failure on a reused connection before any
    /// answer may be the upstream closing it while idle.
    pub reused: bool,
    /// The upstream timeout's sleep, kept armed across the requests this
    /// connection carries (see `crate::timer`).
    timer: crate::timer::Armed,
}

impl Conn {
    pub fn new(io: TcpStream) -> Self {
        Conn {
            io,
            rbuf: BytesMut::new(),
            wbuf: Vec::with_capacity(512),
            reused: false,
            timer: None,
        }
    }

    /// Read more into `rbuf`: `Ok(0)` is the upstream's end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_SIZE / 4 {
            self.rbuf.reserve(READ_SIZE);
        }
        // `read_buf` fills uninitialised capacity without unsafe code here.
        let read = self.io.read_buf(&mut self.rbuf);
        std::pin::pin!(read).poll(cx)
    }

    /// Whether an idle connection can carry a request: not closed by the
    /// upstream, and nothing unasked-for waiting to be read. Costs no system
    /// call unless the socket has become readable since it was last read.
    pub fn is_usable(&mut self) -> bool {
        let mut probe = [0u8; 1];
        self.rbuf.is_empty()
            && matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    pub fn encode_head(
        &mut self,
        method: &http::Method,
        target: &[u8],
        host: h1::HostLine<'_>,
        headers: &http::HeaderMap,
        added: &[u8],
        framing: ReqFraming,
    ) {
        h1::encode_head(
            &mut self.wbuf,
            method,
            target,
            host,
            headers,
            added,
            framing,
        );
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Failure {
    /// The connection failed before any byte of an answer arrived.
    Io(io::Error),
    /// The answer could not be understood.
    Proto(ProtoError),
    /// No response head by the deadline.
    TimedOut,
}

impl Failure {
    /// Closed or reset before anything was answered: on a reused connection
    /// this is the upstream dropping it while idle.
    pub fn is_stale(&self) -> bool {
        match self {
            Failure::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ),
            Failure::Proto(_) | Failure::TimedOut => false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Proto(e) => write!(f, "{e}"),
            Failure::TimedOut => f.write_str("no response head in time"),
        }
    }
}

/// The request body on its way out, framed as the head announced.
pub struct BodyWriter {
    body: Body,
    chunked: bool,
    /// Bytes still to write from `pending`, then more from `body`.
    pending: Bytes,
    /// Data sent so far, checked against an announced length.
    sent: u64,
    announced: Option<u64>,
    /// The body has ended (its last bytes may still be in `pending`).
    ended: bool,
    /// Whether a frame has been taken from the body: after that, the request
    /// cannot be sent again elsewhere.
    pub started: bool,
    /// A write or the client's body failed: every later call fails too, so
    /// a broken body is never finished off (a chunked one with `0\r\n\r\n`)
    /// as if it were whole.
    failed: bool,
    /// It was the client's body that failed (not the upstream socket).
    pub client_failed: bool,
}

impl BodyWriter {
    pub fn new(body: Body, framing: ReqFraming) -> Option<Self> {
        let (chunked, announced) = match framing {
            ReqFraming::Empty => return None,
            ReqFraming::Length(n) => (false, Some(n)),
            ReqFraming::Chunked => (true, None),
        };
        Some(BodyWriter {
            body,
            chunked,
            pending: Bytes::new(),
            sent: 0,
            announced,
            ended: false,
            started: false,
            failed: false,
            client_failed: false,
        })
    }

    /// The whole body has been written.
    pub fn is_done(&self) -> bool {
        self.ended && self.pending.is_empty() && !self.failed
    }

    /// Write until the body is done (Ready(Ok)), the socket or the body
    /// blocks (Pending), or something fails (for good).
    fn poll_write(&mut self, io: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.failed {
            return Poll::Ready(Err(io::Error::other("the request body was cut short")));
        }
        let r = self.poll_write_inner(io, cx);
        if let Poll::Ready(Err(_)) = r {
            self.failed = true;
        }
        r
    }

    fn poll_write_inner(
        &mut self,
        io: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.pending))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                let _ = self.pending.split_to(n);
                continue;
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            self.started = true;
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers are not forwarded (hyper's client did not either).
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    self.sent += data.len() as u64;
                    if self.announced.is_some_and(|n| self.sent > n) {
                        return Poll::Ready(Err(io::Error::other(
                            "the request body is longer than its Content-Length",
                        )));
                    }
                    self.pending = if self.chunked {
                        let mut b = BytesMut::with_capacity(data.len() + 20);
                        b.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                        b.extend_from_slice(&data);
                        b.extend_from_slice(b"\r\n");
                        b.freeze()
                    } else {
                        data
                    };
                }
                Some(Err(e)) => {
                    self.client_failed = true;
                    return Poll::Ready(Err(io::Error::other(format!(
                        "the client's request body failed: {e}"
                    ))));
                }
                None => {
                    self.ended = true;
                    if self.chunked {
                        self.pending = Bytes::from_static(b"0\r\n\r\n");
                    } else if self.announced.is_some_and(|n| self.sent != n) {
                        return Poll::Ready(Err(io::Error::other(
                            "the request body is shorter than its Content-Length",
                        )));
                    }
                }
            }
        }
    }
}

/// Write the encoded head, then the body while waiting for the response
/// head, which must come by `deadline`. The head bytes are in `conn.wbuf`.
pub async fn exchange(
    conn: &mut Conn,
    writer: &mut Option<BodyWriter>,
    method: &http::Method,
    deadline: tokio::time::Instant,
) -> Result<Head, Failure> {
    let mut progress = Progress {
        written: 0,
        write_failed: None,
        interim: 0,
    };
    std::future::poll_fn(
        |cx| match poll_exchange(conn, writer, method, &mut progress, cx) {
            Poll::Pending => match crate::timer::poll_deadline(&mut conn.timer, deadline, cx) {
                Poll::Ready(()) => Poll::Ready(Err(Failure::TimedOut)),
                Poll::Pending => Poll::Pending,
            },
            done => done,
        },
    )
    .await
}

/// How far an exchange has got.
struct Progress {
    /// Bytes of the head written.
    written: usize,
    /// The body could not be written; an answer may still come.
    write_failed: Option<io::Error>,
    /// Interim (1xx) responses skipped.
    interim: u32,
}

fn poll_exchange(
    conn: &mut Conn,
    writer: &mut Option<BodyWriter>,
    method: &http::Method,
    p: &mut Progress,
    cx: &mut Context<'_>,
) -> Poll<Result<Head, Failure>> {
    while p.written < conn.wbuf.len() {
        match Pin::new(&mut conn.io).poll_write(cx, &conn.wbuf[p.written..]) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Err(Failure::Io(io::ErrorKind::WriteZero.into())))
            }
            Poll::Ready(Ok(n)) => p.written += n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Failure::Io(e))),
            Poll::Pending => return Poll::Pending,
        }
    }
    // The writer stays in place when done: whether any of the body went
    // out decides whether the request may be sent again.
    if let Some(w) = writer
        .as_mut()
        .filter(|w| !w.is_done() && p.write_failed.is_none())
    {
        if let Poll::Ready(Err(e)) = w.poll_write(&mut conn.io, cx) {
            if w.client_failed {
                // Nothing to wait for: the request cannot be completed.
                return Poll::Ready(Err(Failure::Io(e)));
            }
            p.write_failed = Some(e);
        }
    }
    loop {
        match h1::parse_response(&mut conn.rbuf, method, &mut p.interim) {
            Ok(Some(head)) => return Poll::Ready(Ok(head)),
            Ok(None) => {}
            Err(e) => return Poll::Ready(Err(Failure::Proto(e))),
        }
        match conn.poll_fill(cx) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Err(Failure::Io(if conn.rbuf.is_empty() {
                    p.write_failed
                        .take()
                        .unwrap_or_else(|| io::ErrorKind::UnexpectedEof.into())
                } else {
                    io::Error::other("the upstream closed the connection inside a response head")
                })))
            }
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Failure::Io(e))),
            // A body that could not be written: an answer may still be on
            // its way (an early 413 before the upstream closed), so keep
            // reading until it comes, the connection ends or the deadline
            // passes.
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Where the connection goes when the response body ends.
pub struct GiveBack {
    pub to: Authority,
    pub pools: Arc<Pools>,
}

/// A response body read straight from the upstream connection; the
/// connection goes back to the pool at its end when it can carry another
/// request. Dropped half-read, the connection is closed.
pub struct UpstreamBody {
    conn: Option<Conn>,
    writer: Option<BodyWriter>,
    state: State,
    keep_alive: bool,
    give_back: Option<GiveBack>,
}

enum State {
    Length(u64),
    Chunked(Chunked),
    Close,
    Done,
}

impl UpstreamBody {
    pub fn new(
        conn: Conn,
        writer: Option<BodyWriter>,
        head: &Head,
        give_back: Option<GiveBack>,
    ) -> Self {
        let state = match head.framing {
            RespFraming::Length(0) => State::Done,
            RespFraming::Length(n) => State::Length(n),
            RespFraming::Chunked => State::Chunked(Chunked::Size),
            RespFraming::Close => State::Close,
        };
        let mut b = UpstreamBody {
            conn: Some(conn),
            writer,
            state,
            keep_alive: head.keep_alive,
            give_back,
        };
        if matches!(b.state, State::Done) {
            b.finish();
        }
        b
    }

    /// The response has been read whole: pool the connection if the request
    /// went out whole too and nothing else arrived.
    fn finish(&mut self) {
        self.state = State::Done;
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let body_unsent = self.writer.as_ref().is_some_and(|w| !w.is_done());
        if !self.keep_alive || body_unsent || !conn.rbuf.is_empty() {
            return;
        }
        if let Some(g) = self.give_back.take() {
            conn.reused = true;
            g.pools.checkin(&g.to, conn);
        }
    }

    fn fail(&mut self, e: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = State::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e.into())))
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        // The rest of the request body, if the upstream answered early.
        if let Some(w) = this.writer.as_mut() {
            match w.poll_write(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => this.writer = None,
                // The upstream may have stopped reading because it has
                // answered: its answer still comes through, but the
                // connection is not reused.
                Poll::Ready(Err(_)) => {
                    this.writer = None;
                    this.keep_alive = false;
                }
                Poll::Pending => {}
            }
        }
        loop {
            let data = match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    if conn.rbuf.is_empty() {
                        None
                    } else {
                        let n = (conn.rbuf.len() as u64).min(*left) as usize;
                        *left -= n as u64;
                        Some(conn.rbuf.split_to(n).freeze())
                    }
                }
                State::Chunked(ch) => match ch.step(&mut conn.rbuf) {
                    Ok(Step::Data(d)) => Some(d),
                    Ok(Step::Done) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::NeedMore) => None,
                    Err(e) => return this.fail(e),
                },
                State::Close => (!conn.rbuf.is_empty()).then(|| conn.rbuf.split().freeze()),
            };
            if let Some(data) = data {
                if matches!(this.state, State::Length(0)) {
                    this.finish();
                }
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.state, State::Close) => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return this.fail(
                        "the upstream closed the connection before the end of the response body",
                    )
                }
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
