//! A client that asks for a large answer and stops reading is cut off after
//! `limits.send_timeout`, over HTTP/1.1 and HTTP/2, and the gateway goes on
//! serving others.

mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 64 MiB: far more than the kernel's socket buffers on both sides hold.
const BIG: usize = 64 << 20;

/// A 1 s send timeout, a public route `/big` (the test upstream answers
/// `/big/N` with N bytes) and the common `/model` route with key `K1`.
fn config(up: &Upstream) -> String {
    let body = model_route_body(&up.url(), "{ namespace: models, actions: [read] }");
    let big = format!(
        "routes:\n  - name: big\n    match: {{ path_prefix: /big }}\n    upstream: {}\n    public: true\n",
        up.url()
    );
    format!(
        "limits: {{ send_timeout: 1s }}\n{}",
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
    let end = Instant::now() + Duration::from_secs(5);
    while up.open_connections() > 0 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        up.open_connections(),
        0,
        "the gateway still holds the upstream connection of the cut answer"
    );
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

/// A raw HTTP/2 client: the preface, SETTINGS with the largest stream
/// window, a connection WINDOW_UPDATE to match, and one GET (HPACK
/// literals, no Huffman), so flow control never stops the gateway: only
/// the socket does.
fn h2_request(path: &str) -> Vec<u8> {
    fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
    }
    const MAX_WINDOW: u32 = (1 << 31) - 1;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE (4).
    let mut settings = vec![0, 4];
    settings.extend_from_slice(&MAX_WINDOW.to_be_bytes());
    frame(&mut out, 0x4, 0, 0, &settings);
    frame(&mut out, 0x8, 0, 0, &(MAX_WINDOW - 65_535).to_be_bytes());
    // :method GET (static 2), :scheme https (static 7), then :path and
    // :authority as literals without indexing on static names 4 and 1.
    let mut block = vec![0x82, 0x87];
    for (name, value) in [(4u8, path), (1u8, "localhost")] {
        block.push(name);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    // HEADERS with END_STREAM | END_HEADERS on stream 1.
    frame(&mut out, 0x1, 0x5, 1, &block);
    out
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
