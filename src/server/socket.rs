//! The client's TCP socket as rustls sees it: a single buffer goes out with
//! `send`, not `writev`; and a client that takes no data for
//! `limits.send_timeout` is cut off.
//!
//! rustls hands its encrypted records to the socket with `write_vectored`
//! even when there is one record, which is every answer that fits in one
//! (most of them). Linux's `writev` takes the file-system path to the socket
//! (`vfs_writev`, copying and checking the iovec array) before it reaches
//! the same `tcp_sendmsg` that `send` calls directly. With one buffer the
//! bytes on the wire are the same; only the way there is shorter.
//! Several buffers still go out in one `writev`.
//!
//! A write that cannot proceed (the client stopped reading and the kernel's
//! send buffer is full) arms a timer; the next write that proceeds disarms
//! it. If it fires first, writes fail with `TimedOut` and the connection
//! ends with a reset (RST), whichever protocol it speaks. Without it a
//! client that asked for a large answer and never read held its
//! connection, the upstream's and their buffers for good. Only a write
//! that waits costs anything: the timer is allocated at the first and
//! reset at the later ones.
//!
//! It watches the socket only. An HTTP/2 client that keeps reading but
//! grants one stream no more flow-control window (no WINDOW_UPDATE) leaves
//! the socket writable: that stream is timed by [`super::stall`].

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

pub struct ClientSocket {
    tcp: TcpStream,
    send_timeout: Duration,
    /// Set while writes wait for the client to take data.
    armed: bool,
    /// Made at the first wait and reset at each later one.
    timer: Option<Pin<Box<Sleep>>>,
}

impl ClientSocket {
    pub fn new(tcp: TcpStream, send_timeout: Duration) -> ClientSocket {
        ClientSocket {
            tcp,
            send_timeout,
            armed: false,
            timer: None,
        }
    }

    /// A write's result, after the send timeout: a write that proceeded
    /// disarms it, one that waits arms it (and fails once it has fired).
    fn timed<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.armed = false;
            return r;
        }
        let timeout = self.send_timeout;
        if !self.armed {
            self.armed = true;
            if let Some(timer) = self.timer.as_mut() {
                timer.as_mut().reset(tokio::time::Instant::now() + timeout);
            }
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                // Reset rather than close: closed, the socket would keep
                // what the client left unread (up to the send buffer, some
                // MiB) as an orphan in FIN_WAIT1 for as long as the client
                // answers the kernel's zero-window probes, no longer counted
                // by `max_connections`. With a zero linger the close sends
                // RST and frees it at once (nginx's
                // `reset_timedout_connection`).
                let _ = socket2::SockRef::from(&self.tcp).set_linger(Some(Duration::ZERO));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took no data for limits.send_timeout",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for ClientSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write(cx, data);
        this.timed(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = match only_buffer(bufs) {
            Some(one) => Pin::new(&mut this.tcp).poll_write(cx, one),
            None => Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs),
        };
        this.timed(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The one non-empty buffer among `bufs`, when there is exactly one
/// (`write_vectored` writes from the first non-empty buffer onwards).
fn only_buffer<'a>(bufs: &'a [IoSlice<'_>]) -> Option<&'a [u8]> {
    let mut found: Option<&[u8]> = None;
    for b in bufs {
        if b.is_empty() {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some(b);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn one_buffer_among_empties_is_found() {
        let (a, b, e) = (*b"ab", *b"cd", [0u8; 0]);
        let one = [IoSlice::new(&e), IoSlice::new(&a), IoSlice::new(&e)];
        assert_eq!(only_buffer(&one), Some(&b"ab"[..]));
        let two = [IoSlice::new(&a), IoSlice::new(&e), IoSlice::new(&b)];
        assert_eq!(only_buffer(&two), None);
        assert_eq!(only_buffer(&[IoSlice::new(&e)]), None);
        assert_eq!(only_buffer(&[]), None);
    }

    /// Every byte of a vectored write arrives, in order, whether it went
    /// out with `send` (one buffer) or `writev` (several).
    #[tokio::test]
    async fn vectored_writes_arrive_whole() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut sock = ClientSocket::new(
            TcpStream::connect(addr).await.unwrap(),
            Duration::from_secs(60),
        );
        let e = [0u8; 0];
        let mut want = Vec::new();
        for bufs in [
            vec![&b"one"[..]],
            vec![&e[..], &b"two"[..], &e[..]],
            vec![&b"three"[..], &b"four"[..]],
        ] {
            let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
            let all: Vec<u8> = bufs.concat();
            // A short write is allowed; the rest goes out plainly.
            let n = sock.write_vectored(&slices).await.unwrap();
            assert!(n > 0);
            sock.write_all(&all[n..]).await.unwrap();
            want.extend(bufs.concat());
        }
        sock.shutdown().await.unwrap();
        drop(sock);
        assert_eq!(reader.await.unwrap(), want);
    }
}
