//! A read-side guard for HTTP/1 connections that sees what hyper hides.
//!
//! hyper follows RFC 9112 section 6.3 for a request with both
//! `Content-Length` and `Transfer-Encoding`: it drops `Content-Length`, lets
//! the transfer coding frame the body, and closes the connection afterwards.
//! That leaves no desync, but the request itself would still be forwarded,
//! and the service never sees that it was ambiguous. This guard follows the
//! message framing on the raw bytes as hyper reads them and raises a flag on
//! a request head with both headers, or with `Content-Length` twice; the
//! pipeline refuses a flagged request with 400 before anything is forwarded.
//!
//! The guard never changes the bytes. When it meets something it does not
//! follow (HTTP/2, a head too large, a malformed length), it stops watching
//! and leaves the verdict to hyper, which refuses all of those itself.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

pub struct FramingGuard<IO> {
    inner: IO,
    state: State,
    flag: Arc<AtomicBool>,
}

impl<IO> FramingGuard<IO> {
    pub fn new(inner: IO, flag: Arc<AtomicBool>) -> Self {
        FramingGuard {
            inner,
            state: State::Head(Vec::new()),
            flag,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Off => return,
                State::Head(buf) => {
                    buf.extend_from_slice(data);
                    data = &[];
                    // Empty lines before a request line are allowed (RFC 9112 2.2).
                    let start = buf
                        .iter()
                        .position(|b| *b != b'\r' && *b != b'\n')
                        .unwrap_or(buf.len());
                    let Some(end) = find(&buf[start..], b"\r\n\r\n") else {
                        if buf.len() > MAX_HEAD {
                            self.state = State::Off;
                        }
                        continue;
                    };
                    let head_end = start + end + 4;
                    let rest = buf.split_off(head_end);
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
        for line in head.split(|b| *b == b'\n').skip(1) {
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
        if content_lengths.len() > 1
            || (!content_lengths.is_empty() && !transfer_encodings.is_empty())
        {
            self.flag.store(true, Ordering::Release);
        }
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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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

    fn run(chunks: &[&[u8]]) -> (bool, bool) {
        let flag = Arc::new(AtomicBool::new(false));
        let mut g = FramingGuard::new((), flag.clone());
        for c in chunks {
            g.feed(c);
        }
        let off = matches!(g.state, State::Off);
        (flag.load(Ordering::Acquire), off)
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
    fn http2_is_left_alone() {
        let (flag, off) = run(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]);
        assert!(!flag && off);
    }
}
