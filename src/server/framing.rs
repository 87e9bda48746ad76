//! A read-side guard for HTTP/1 connections that sees what hyper hides.
//!
//! hyper follows RFC 9112 section 6.3 for a request with both
//! `Content-Length` and `Transfer-Encoding`: it drops `Content-Length`, lets
//! the transfer coding frame the body, and closes the connection afterwards.
//! That leaves no desync, but the request itself would still be forwarded,
//! and the service never sees that it was ambiguous. This guard follows the
//! message framing on the raw bytes as hyper reads them and records a verdict
//! for every request head, in order: ambiguous when it has both headers, or
//! `Content-Length` twice. The pipeline takes one verdict per request and
//! refuses an ambiguous one with 400 before anything is forwarded.
//!
//! The guard never changes the bytes. When it meets something it does not
//! follow (HTTP/2, a head too large, a malformed length), it stops watching
//! and leaves the verdict to hyper, which refuses all of those itself.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const MAX_HEAD: usize = 1 << 20;

enum State {
    Head(Vec<u8>),
    Body(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    ChunkEnd(u8),
    Trailers(Vec<u8>),
    Off,
}

/// One verdict per request head seen on a connection, oldest first:
/// `true` when the head framed its body two ways.
#[derive(Clone, Default)]
pub struct Verdicts(Arc<Mutex<VecDeque<bool>>>);

impl Verdicts {
    fn push(&self, ambiguous: bool) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(ambiguous);
    }

    /// The verdict for the next request hyper dispatches (HTTP/1 requests
    /// are dispatched in order). None when the guard is not watching.
    pub fn next(&self) -> bool {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        q.pop_front().unwrap_or(false)
    }
}

pub struct FramingGuard<IO> {
    inner: IO,
    state: State,
    verdicts: Verdicts,
}

impl<IO> FramingGuard<IO> {
    pub fn new(inner: IO, verdicts: Verdicts) -> Self {
        FramingGuard {
            inner,
            state: State::Head(Vec::new()),
            verdicts,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Off => return,
                // The common case: a whole head in one read, nothing held
                // back from the last one. Parsed in place, not copied.
                State::Head(buf) if buf.is_empty() => {
                    let start = data
                        .iter()
                        .position(|b| *b != b'\r' && *b != b'\n')
                        .unwrap_or(data.len());
                    match head_end(&data[start..]) {
                        Some(end) => {
                            let end_at = start + end;
                            self.state = self.after_head(&data[start..end_at]);
                            data = &data[end_at..];
                        }
                        None => {
                            buf.extend_from_slice(data);
                            if buf.len() > MAX_HEAD {
                                self.state = State::Off;
                            }
                            return;
                        }
                    }
                }
                State::Head(buf) => {
                    buf.extend_from_slice(data);
                    data = &[];
                    // Empty lines before a request line are allowed (RFC 9112 2.2).
                    let start = buf
                        .iter()
                        .position(|b| *b != b'\r' && *b != b'\n')
                        .unwrap_or(buf.len());
                    let Some(end) = head_end(&buf[start..]) else {
                        if buf.len() > MAX_HEAD {
                            self.state = State::Off;
                        }
                        continue;
                    };
                    let end_at = start + end;
                    let rest = buf.split_off(end_at);
                    let head = std::mem::take(buf);
                    self.state = self.after_head(&head[start..]);
                    // Bytes after the head belong to the body or the next request.
                    self.feed(&rest);
                    return;
                }
                State::Body(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.state = State::Head(Vec::new());
                    }
                }
                State::ChunkSize(line) => match data.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&data[..i]);
                        data = &data[i + 1..];
                        let size = std::str::from_utf8(line)
                            .ok()
                            .map(|l| l.split(';').next().unwrap_or("").trim())
                            .and_then(|h| u64::from_str_radix(h, 16).ok());
                        self.state = match size {
                            Some(0) => State::Trailers(Vec::new()),
                            Some(n) => State::ChunkData(n),
                            None => State::Off,
                        };
                    }
                    None => {
                        line.extend_from_slice(data);
                        data = &[];
                        if line.len() > 4096 {
                            self.state = State::Off;
                        }
                    }
                },
                State::ChunkData(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.state = State::ChunkEnd(0);
                    }
                }
                State::ChunkEnd(seen) => {
                    // The CRLF after chunk data.
                    let need = 2 - *seen as usize;
                    let take = need.min(data.len());
                    *seen += take as u8;
                    data = &data[take..];
                    if *seen == 2 {
                        self.state = State::ChunkSize(Vec::new());
                    }
                }
                State::Trailers(line) => match data.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&data[..i]);
                        data = &data[i + 1..];
                        let empty = line.iter().all(|b| *b == b'\r');
                        line.clear();
                        if empty {
                            self.state = State::Head(Vec::new());
                        }
                    }
                    None => {
                        line.extend_from_slice(data);
                        data = &[];
                        if line.len() > MAX_HEAD {
                            self.state = State::Off;
                        }
                    }
                },
            }
        }
    }

    /// Look at one request head: raise the flag on ambiguous framing and
    /// say how its body is framed.
    fn after_head(&self, head: &[u8]) -> State {
        if head.starts_with(b"PRI * HTTP/2.0") {
            return State::Off;
        }
        let mut content_lengths = Vec::new();
        let mut transfer_encodings = Vec::new();
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', head).chain(std::iter::once(head.len())) {
            let line = &head[start..nl];
            let first = start == 0;
            start = nl + 1;
            // The request line, and every field but the two wanted here.
            if first || !matches!(line.first(), Some(b'c' | b'C' | b't' | b'T')) {
                continue;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let name = &line[..colon];
            let value = line[colon + 1..].trim_ascii();
            if name.eq_ignore_ascii_case(b"content-length") {
                content_lengths.push(value);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                transfer_encodings.push(value);
            }
        }
        self.verdicts.push(
            content_lengths.len() > 1
                || (!content_lengths.is_empty() && !transfer_encodings.is_empty()),
        );
        if let Some(te) = transfer_encodings.last() {
            return if te.eq_ignore_ascii_case(b"chunked") {
                State::ChunkSize(Vec::new())
            } else {
                State::Off
            };
        }
        match content_lengths.first() {
            None => State::Head(Vec::new()),
            Some(v) => match std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(0) => State::Head(Vec::new()),
                Some(n) => State::Body(n),
                None => State::Off,
            },
        }
    }
}

/// The end of a request head (just past its blank line). Lines may end in
/// CRLF or a bare LF, as httparse accepts both.
fn head_end(buf: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', buf).find_map(|nl| match (buf.get(nl + 1), buf.get(nl + 2)) {
        (Some(b'\n'), _) => Some(nl + 2),
        (Some(b'\r'), Some(b'\n')) => Some(nl + 3),
        _ => None,
    })
}

impl<IO: AsyncRead + Unpin> AsyncRead for FramingGuard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            if !matches!(this.state, State::Off) {
                this.feed(&buf.filled()[before..]);
            }
        }
        res
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FramingGuard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (any head ambiguous, guard stopped watching)
    fn run(chunks: &[&[u8]]) -> (bool, bool) {
        let v = verdicts(chunks);
        (v.0.iter().any(|x| *x), v.1)
    }

    fn verdicts(chunks: &[&[u8]]) -> (Vec<bool>, bool) {
        let verdicts = Verdicts::default();
        let mut g = FramingGuard::new((), verdicts.clone());
        for c in chunks {
            g.feed(c);
        }
        let off = matches!(g.state, State::Off);
        let all = verdicts.0.lock().unwrap().iter().copied().collect();
        (all, off)
    }

    #[test]
    fn one_verdict_per_request_in_order() {
        let (v, _) = verdicts(&[b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]);
        assert_eq!(v, vec![false, true]);
    }

    #[test]
    fn bare_lf_heads() {
        let (v, _) =
            verdicts(&[b"POST / HTTP/1.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n"]);
        assert_eq!(v, vec![true]);
        let (v, _) = verdicts(&[b"GET / HTTP/1.1\nHost: a\n\nGET /b HTTP/1.1\r\n\r\n"]);
        assert_eq!(v, vec![false, false]);
    }

    #[test]
    fn plain_requests_pass() {
        let (flag, off) = run(&[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel",
            b"lo",
            b"POST /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"GET /z HTTP/1.1\r\nHost: a\r\n\r\n",
        ]);
        assert!(!flag);
        assert!(!off);
    }

    #[test]
    fn body_bytes_are_not_read_as_heads() {
        // A body that looks like a smuggling head is data, not a request.
        let (flag, _) = run(&[b"POST /x HTTP/1.1\r\nContent-Length: 56\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"]);
        assert!(!flag);
    }

    #[test]
    fn cl_and_te_flagged_in_either_order_and_split_reads() {
        assert!(run(&[b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]).0);
        assert!(
            run(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n"]).0
        );
        assert!(
            run(&[
                b"POST / HTTP/1.1\r\nTransfer-Enc",
                b"oding: chunked\r\nContent-Length: 5\r",
                b"\n\r\n"
            ])
            .0
        );
        // On a later request of a keep-alive connection.
        assert!(run(&[b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"]).0);
    }

    #[test]
    fn same_verdicts_however_the_reads_are_split() {
        let stream: &[u8] = b"\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
            POST /c HTTP/1.1\nContent-Length: 2\nContent-Length: 2\n\nxy\
            POST /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n\
            GET /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n0\r\n\r\n\
            GET /f HTTP/1.1\r\n\r\n";
        let whole = verdicts(&[stream]);
        assert_eq!(whole.0, vec![false, false, true, false, true, false]);
        assert!(!whole.1);
        for size in 1..stream.len() {
            let chunks: Vec<&[u8]> = stream.chunks(size).collect();
            assert_eq!(verdicts(&chunks), whole, "reads of {size} bytes");
        }
    }

    #[test]
    fn http2_is_left_alone() {
        let (flag, off) = run(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]);
        assert!(!flag && off);
    }
}
