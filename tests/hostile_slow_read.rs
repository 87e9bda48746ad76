//! A client that asks for a large answer and stops reading is cut off after
//! `limits.send_timeout`, over HTTP/1.1 and HTTP/2, and the gateway goes on
//! serving others; over HTTP/2, so is a single stream the client grants no
//! window to.

mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// 64 MiB: far more than the kernel's socket buffers on both sides hold.
const BIG: usize = 64 << 20;

/// A 1 s send timeout, public routes `/big` and `/drip` (the test upstream
/// answers `/big/N` with N bytes, `/drip/MS` with 1 KiB, a pause, 1 KiB)
/// and the common `/model` route with key `K1`.
fn config(up: &Upstream) -> String {
    let body = model_route_body(&up.url(), "{ namespace: models, actions: [read] }");
    let mut big = "routes:\n".to_string();
    for name in ["big", "drip"] {
        big += &format!(
            "  - name: {name}\n    match: {{ path_prefix: /{name} }}\n    upstream: {}\n    public: true\n",
            up.url()
        );
    }
    // A long idle timeout: an HTTP/2 connection with no request in flight
    // gets GOAWAY after it, and the slowest test here takes about 5 s.
    format!(
        "limits: {{ send_timeout: 1s, header_read_timeout: 30s }}\n{}",
        body.replacen("routes:\n", &big, 1)
    )
}

/// Reads what is left until the gateway closes the connection (EOF or an
/// error), within 30 s; the bytes read, or None if it stayed open.
async fn drain<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<usize> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(total),
            Ok(Ok(n)) => total += n,
        }
    }
}

async fn still_serves(gw: &Gateway) {
    let a = get(
        gw,
        "/model/ABC-1",
        &[("authorization", &basic("K1", SECRET))],
    )
    .await;
    assert_eq!(a.status, 200, "the gateway stopped serving: {}", a.error());
}

/// Sends `request` on `s`, reads nothing for four send timeouts, then
/// expects the gateway to have cut the connection before the whole answer
/// went out, to have closed the upstream connection that served it, and to
/// serve the next client.
async fn stall_and_expect_cut<S>(gw: &Gateway, up: &Upstream, mut s: S, request: &[u8])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(request).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = drain(&mut s)
        .await
        .expect("the gateway kept the connection of a client that read nothing");
    assert!(
        got < BIG,
        "the whole answer arrived ({got} bytes): the connection was not cut"
    );
    assert_eq!(up.count(), 1, "the upstream was asked once");
    // The upstream connection that served the cut answer is closed too
    // (its answer was not finished, so it cannot go back to the pool).
    wait_upstream_closed(up, "the cut answer").await;
    still_serves(gw).await;
    // And the count is live: the next answer's connection is kept, pooled.
    assert_eq!(up.open_connections(), 1);
}

#[tokio::test]
async fn http1_client_that_stops_reading_is_cut_off() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&up));
    let s = connect(&gw, &[b"http/1.1"]).await;
    let request = format!("GET /big/{BIG} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stall_and_expect_cut(&gw, &up, s, request.as_bytes()).await;
}

/// A client that stops reading is reset, not closed: the gateway's end of
/// the connection is gone from the kernel at once, instead of lingering
/// in FIN_WAIT1 with the unread answer queued while the client answers the
/// kernel's zero-window probes, and the client's next reads end in
/// "connection reset".
#[tokio::test]
async fn a_client_cut_off_is_reset_and_its_unread_data_dropped() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&up));
    let mut s = connect(&gw, &[b"http/1.1"]).await;
    let client = s.get_ref().0.local_addr().unwrap();
    let request = format!("GET /big/{BIG} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    // Cut after 1 s of stalled writes (send_timeout), well within this.
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut last = tcp_entry(gw.https, client);
    while last.is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = tcp_entry(gw.https, client);
    }
    assert!(
        last.is_none(),
        "the gateway's end of the cut connection is still there: {last:?}"
    );
    // What the client's kernel had received can still be read; then the
    // reset, not an end of stream.
    let mut buf = vec![0u8; 1 << 20];
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Err(_) => panic!("the connection stayed open"),
            Ok(Ok(0)) => break None,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => break Some(e.kind()),
        }
    };
    assert_eq!(end, Some(std::io::ErrorKind::ConnectionReset));
    still_serves(&gw).await;
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;

/// A GET of `path` on `stream`: HEADERS with END_STREAM | END_HEADERS,
/// `:method GET` (static 2), `:scheme https` (static 7), then `:path` and
/// `:authority` as literals without indexing on static names 4 and 1 (no
/// Huffman).
fn get_frame(out: &mut Vec<u8>, stream: u32, path: &str) {
    let mut block = vec![0x82, 0x87];
    for (name, value) in [(4u8, path), (1u8, "localhost")] {
        block.push(name);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    frame(out, HEADERS, 0x5, stream, &block);
}

/// A raw HTTP/2 client: the preface, SETTINGS with the largest stream
/// window, a connection WINDOW_UPDATE to match, and one GET, so flow
/// control never stops the gateway: only the socket does.
fn h2_request(path: &str) -> Vec<u8> {
    const MAX_WINDOW: u32 = (1 << 31) - 1;
    let mut out = PREFACE.to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE (4).
    let mut settings = vec![0, 4];
    settings.extend_from_slice(&MAX_WINDOW.to_be_bytes());
    frame(&mut out, SETTINGS, 0, 0, &settings);
    frame(
        &mut out,
        WINDOW_UPDATE,
        0,
        0,
        &(MAX_WINDOW - 65_535).to_be_bytes(),
    );
    get_frame(&mut out, 1, path);
    out
}

/// One frame read from the gateway: type, flags, stream, payload; None at
/// the end of the connection or after `within`.
async fn read_frame<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    within: Duration,
) -> Option<(u8, u8, u32, Vec<u8>)> {
    let read = async {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.ok()?;
        Some((head[3], head[4], stream, payload))
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

#[tokio::test]
async fn http2_client_that_stops_reading_is_cut_off() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&up));
    let s = connect(&gw, &[b"h2"]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    stall_and_expect_cut(&gw, &up, s, &h2_request(&format!("/big/{BIG}"))).await;
}

/// A client that reads slowly but steadily gets the whole answer, although
/// it takes longer than the send timeout: each write that proceeds starts
/// the timeout again.
#[tokio::test]
async fn slow_steady_reader_gets_the_whole_answer() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&up));
    let mut s = connect(&gw, &[b"http/1.1"]).await;
    let n = 32 << 20;
    s.write_all(
        format!("GET /big/{n} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        // 1 MiB every 100 ms: about 3 s for the answer, a pause of 100 ms
        // at most between writes the gateway can make.
        let mut chunk = 0;
        while chunk < buf.len() {
            match s.read(&mut buf[chunk..]).await {
                Ok(0) | Err(_) => break,
                Ok(k) => chunk += k,
            }
        }
        total += chunk;
        if chunk < buf.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The 32 pauses alone take 3.2 s, three send timeouts: the gateway's
    // writes waited on this client again and again and were not cut off.
    assert!(
        total > n,
        "the slow reader got {total} bytes of a {n}-byte body and its head"
    );
}

/// What a raw HTTP/2 client saw of one stream.
#[derive(Debug, Default)]
struct Seen {
    /// DATA bytes.
    data: usize,
    /// The RST_STREAM error code, if it came.
    reset: Option<u32>,
    /// The stream ended normally (END_STREAM).
    ended: bool,
}

/// How the raw client grants flow-control window.
struct Grants {
    /// The connection's window, for every DATA frame as it comes (else
    /// never).
    connection: bool,
    /// The streams granted window of their own: after each `chunk` bytes
    /// of one, `pause`, then that much more.
    streams: &'static [u32],
    chunk: usize,
    pause: Duration,
}

const NO_GRANTS: Grants = Grants {
    connection: false,
    streams: &[],
    chunk: 0,
    pause: Duration::ZERO,
};

/// Reads frames, acknowledging the gateway's SETTINGS and PINGs and
/// granting window as `grants` says, until each of `streams` has ended or
/// been reset, the connection ends or 10 s pass.
async fn read_streams<S>(s: &mut S, streams: &[u32], grants: &Grants) -> Vec<Seen>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut seen: Vec<Seen> = streams.iter().map(|_| Seen::default()).collect();
    let mut unacked = vec![0usize; streams.len()];
    let end = Instant::now() + Duration::from_secs(10);
    while let Some((kind, flags, stream, payload)) =
        read_frame(s, end.saturating_duration_since(Instant::now())).await
    {
        let mut reply = Vec::new();
        let at = streams.iter().position(|&id| id == stream);
        match (kind, at) {
            (SETTINGS, _) if flags & 1 == 0 => frame(&mut reply, SETTINGS, 1, 0, &[]),
            (PING, _) if flags & 1 == 0 => frame(&mut reply, PING, 1, 0, &payload),
            (DATA, Some(i)) => {
                seen[i].data += payload.len();
                seen[i].ended |= flags & 1 != 0;
                if grants.connection && !payload.is_empty() {
                    let n = payload.len() as u32;
                    frame(&mut reply, WINDOW_UPDATE, 0, 0, &n.to_be_bytes());
                }
                unacked[i] += payload.len();
                if grants.streams.contains(&stream) && unacked[i] >= grants.chunk && !seen[i].ended
                {
                    tokio::time::sleep(grants.pause).await;
                    let n = unacked[i] as u32;
                    frame(&mut reply, WINDOW_UPDATE, 0, stream, &n.to_be_bytes());
                    unacked[i] = 0;
                }
            }
            (RST_STREAM, Some(i)) => {
                seen[i].reset = Some(u32::from_be_bytes(payload[..4].try_into().unwrap()));
            }
            (GOAWAY, _) => break,
            _ => {}
        }
        if !reply.is_empty() {
            s.write_all(&reply).await.unwrap();
        }
        if seen.iter().all(|x| x.ended || x.reset.is_some()) {
            break;
        }
    }
    seen
}

/// The preface, empty SETTINGS (the default window: 65,535 bytes) and a
/// GET of each `(stream, path)`.
fn h2_hello(gets: &[(u32, &str)]) -> Vec<u8> {
    let mut hello = PREFACE.to_vec();
    frame(&mut hello, SETTINGS, 0, 0, &[]);
    for &(stream, path) in gets {
        get_frame(&mut hello, stream, path);
    }
    hello
}

/// An upstream, a gateway with [`config`], and a raw HTTP/2 client
/// connected to it that has sent [`h2_hello`] with `gets`.
async fn h2_client(gets: &[(u32, &str)]) -> (Upstream, Gateway, TlsStream<TcpStream>) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&up));
    let mut s = connect(&gw, &[b"h2"]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    s.write_all(&h2_hello(gets)).await.unwrap();
    (up, gw, s)
}

/// The stream ended normally with `n` bytes of data, not reset.
fn assert_whole(seen: &Seen, n: usize) {
    assert_eq!(seen.reset, None, "the stream was reset: {seen:?}");
    assert!(seen.ended, "the stream did not end within 10 s: {seen:?}");
    assert_eq!(seen.data, n);
}

/// Waits up to 5 s for the gateway to close its connections to `up`, the
/// one that served `what` among them.
async fn wait_upstream_closed(up: &Upstream, what: &str) {
    let end = Instant::now() + Duration::from_secs(5);
    while up.open_connections() > 0 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        up.open_connections(),
        0,
        "the gateway still holds the upstream connection of {what}"
    );
}

/// The default window, and no WINDOW_UPDATE ever: the client goes on
/// reading (the socket never stalls, so the socket's timer cannot help),
/// but the gateway can send stream 1 nothing past its first window. The
/// stream is reset after the send timeout, its upstream connection closed,
/// and the same connection serves the next stream.
#[tokio::test]
async fn http2_stream_the_client_grants_no_window_is_reset() {
    let (up, gw, mut s) = h2_client(&[(1, &format!("/big/{BIG}"))]).await;
    let seen = read_streams(&mut s, &[1], &NO_GRANTS).await;
    assert_eq!(
        seen[0].reset,
        Some(0x8),
        "stream 1 was not reset (CANCEL) within 10 s: {:?}",
        seen[0]
    );
    assert_eq!(seen[0].data, 65_535, "stream 1 got more than its window");
    assert_eq!(up.count(), 1, "the upstream was asked once");
    wait_upstream_closed(&up, "the reset stream").await;

    // The connection itself is fine: stream 3 gets its answer's head
    // (HEADERS need no window; `:status: 200` is static entry 8).
    let mut next = Vec::new();
    get_frame(&mut next, 3, "/big/10");
    s.write_all(&next).await.unwrap();
    let mut status = None;
    while let Some((kind, _, stream, payload)) = read_frame(&mut s, Duration::from_secs(5)).await {
        if (kind, stream) == (HEADERS, 3) {
            status = payload.first().copied();
            break;
        }
    }
    assert_eq!(
        status,
        Some(0x88),
        "no 200 for stream 3 on the same connection"
    );
    still_serves(&gw).await;
}

/// Two streams at once on one connection, the connection's window always
/// granted: stream 3 is granted its own window as it reads and gets its
/// whole answer; stream 1 is granted none and is reset. Each stream is
/// timed on its own.
#[tokio::test]
async fn http2_only_the_stream_without_window_is_reset() {
    let n = 1 << 20;
    let (_up, _gw, mut s) =
        h2_client(&[(1, &format!("/big/{BIG}")), (3, &format!("/big/{n}"))]).await;
    let grants = Grants {
        connection: true,
        streams: &[3],
        chunk: 32 << 10,
        pause: Duration::ZERO,
    };
    let seen = read_streams(&mut s, &[1, 3], &grants).await;
    assert_eq!(seen[0].reset, Some(0x8), "stream 1: {:?}", seen[0]);
    assert_eq!(seen[0].data, 65_535);
    assert_whole(&seen[1], n);
}

/// A client that grants window slowly but steadily (32 KiB at a time, each
/// after 150 ms) gets the whole answer, although it takes several send
/// timeouts: only a stream that takes nothing for a whole timeout is reset.
#[tokio::test]
async fn http2_stream_granted_window_slowly_gets_the_whole_answer() {
    let n = 1 << 20;
    let (_up, _gw, mut s) = h2_client(&[(1, &format!("/big/{n}"))]).await;
    // 32 grants of 32 KiB, 150 ms apart: about 4.8 s, nearly five timeouts.
    let grants = Grants {
        connection: true,
        streams: &[1],
        chunk: 32 << 10,
        pause: Duration::from_millis(150),
    };
    let seen = read_streams(&mut s, &[1], &grants).await;
    assert_whole(&seen[0], n);
}

/// A stream waiting for its upstream is not timed: the upstream sends
/// 1 KiB, pauses 2.5 s (more than twice the send timeout), then sends the
/// rest, and the client, which has window to spare, gets it all.
#[tokio::test]
async fn http2_stream_waiting_for_its_upstream_is_not_reset() {
    let (_up, _gw, mut s) = h2_client(&[(1, "/drip/2500")]).await;
    let seen = read_streams(&mut s, &[1], &NO_GRANTS).await;
    assert_whole(&seen[0], 2048);
}

/// An HTTP/2 client that resets a stream whose answer waits on the
/// upstream (a quiet stream after its first chunk) has the request dropped:
/// the upstream connection serving it is closed, while the client's
/// connection stays open.
#[tokio::test]
async fn http2_stream_the_client_resets_cancels_its_upstream_call() {
    let (up, _gw, mut s) = h2_client(&[(1, "/drip/30000")]).await;
    let end = Instant::now() + Duration::from_secs(5);
    while up.count() == 0 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.count(), 1, "the upstream never got the request");
    assert_eq!(up.open_connections(), 1);
    let mut rst = Vec::new();
    frame(&mut rst, RST_STREAM, 0, 1, &8u32.to_be_bytes()); // CANCEL
    s.write_all(&rst).await.unwrap();
    wait_upstream_closed(&up, "the reset stream").await;
}
