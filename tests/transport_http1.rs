//! HTTP/1.1 connections as the client sees them, through both of the
//! gateway's readers: its own loop, which answers body-less `GET`s, and
//! hyper's server, which takes the connection over at the first request of
//! any other kind (server/h1.rs). Answers are compared byte for byte where
//! they must agree, sent pipelined in one write where the hand-over must
//! not lose or reorder anything.

mod common;
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup() -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    (up, gw)
}

/// Writes `bytes` on one connection and reads until the gateway closes it
/// (failing if it has not within 10 s).
async fn exchange(gw: &Gateway, bytes: &[u8]) -> String {
    let mut s = connect(gw, &[b"http/1.1"]).await;
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the gateway did not close the connection within 10 s")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// One answer: status, header lines (names in lower case) and body, taken
/// off the front of `raw` (bodies framed by `content-length`).
fn next_answer(raw: &mut &str) -> (u16, Vec<(String, String)>, String) {
    let end = raw.find("\r\n\r\n").expect("a whole head");
    let head = &raw[..end];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("a header line");
            (n.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .expect("content-length");
    let body = raw[end + 4..end + 4 + len].to_string();
    *raw = &raw[end + 4 + len..];
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn get_line(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n{extra}\r\n",
        basic("K1", SECRET)
    )
}

#[tokio::test]
async fn pipelined_gets_and_a_post_are_answered_in_order_across_the_hand_over() {
    let (up, gw) = setup().await;
    let post = format!(
        "POST /model/ABC-3 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Length: 5\r\n\r\nhello",
        basic("K1", SECRET)
    );
    let all = [
        get_line("/model/ABC-1", ""),
        get_line("/model/ABC-2", ""),
        post,
        get_line("/model/ABC-4", "Connection: close\r\n"),
    ]
    .concat();
    let answer = exchange(&gw, all.as_bytes()).await;
    let mut rest = answer.as_str();
    let mut ids = Vec::new();
    for i in 0..4 {
        let (status, headers, body) = next_answer(&mut rest);
        assert_eq!(status, 200, "answer {i}: {answer}");
        assert_eq!(header(&headers, "x-upstream"), Some("yes"), "answer {i}");
        ids.push(header(&headers, "x-request-id").unwrap().to_string());
        if i == 2 {
            assert_eq!(body, "hello", "the POST's echoed body");
        } else {
            assert_eq!(body, "ok", "answer {i}");
        }
    }
    assert_eq!(rest, "", "nothing after the fourth answer");
    let targets: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        [
            "/model/ABC-1",
            "/model/ABC-2",
            "/model/ABC-3",
            "/model/ABC-4"
        ]
    );
    assert_eq!(up.requests()[2].body, b"hello");
    // Each answer carries its own request's id (the upstream saw the same).
    for (i, r) in up.requests().iter().enumerate() {
        assert_eq!(r.header("x-request-id").as_deref(), Some(ids[i].as_str()));
    }
}

/// A `GET` with `Content-Length: 0` is hyper's; without it, the loop's. The
/// two answers have the same status line, the same header lines (but for
/// the values of `date` and `x-request-id`) and the same body, for an
/// answer from the upstream and for the gateway's own refusal.
#[tokio::test]
async fn both_readers_answer_a_get_alike() {
    let (_up, gw) = setup().await;
    for (path, auth) in [
        (
            "/model/ABC-1",
            format!("Authorization: {}\r\n", basic("K1", SECRET)),
        ),
        ("/model/ABC-1", String::new()),
        (
            "/model/XYZ-1",
            format!("Authorization: {}\r\n", basic("K1", SECRET)),
        ),
        ("/nowhere", String::new()),
    ] {
        let head = |extra: &str| {
            format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}{extra}Connection: close\r\n\r\n"
            )
        };
        let ours = exchange(&gw, head("").as_bytes()).await;
        let hypers = exchange(&gw, head("Content-Length: 0\r\n").as_bytes()).await;
        let normalise = |raw: &str| {
            let (status, headers, body) = next_answer(&mut &raw[..]);
            let mut headers: Vec<(String, String)> = headers
                .into_iter()
                .map(|(n, v)| match n.as_str() {
                    "date" | "x-request-id" => (n, String::new()),
                    _ => (n, v),
                })
                .collect();
            headers.sort();
            let body = body.replace(
                |c: char| c.is_ascii_hexdigit(),
                "", // the request id inside an error body
            );
            (status, headers, body)
        };
        let (a, b) = (normalise(&ours), normalise(&hypers));
        assert_eq!(a, b, "{path} {auth:?}:\nloop:  {ours}\nhyper: {hypers}");
        assert_eq!(ours.lines().next(), hypers.lines().next());
    }
}

#[tokio::test]
async fn connection_close_is_answered_then_closed() {
    let (up, gw) = setup().await;
    let answer = exchange(
        &gw,
        get_line("/model/ABC-1", "Connection: close\r\n").as_bytes(),
    )
    .await;
    let mut rest = answer.as_str();
    let (status, headers, body) = next_answer(&mut rest);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert!(header(&headers, "date").is_some(), "{answer}");
    assert_eq!(body, "ok");
    assert_eq!(rest, "");
    assert_eq!(up.count(), 1);
}

/// An upstream answer of unknown length goes out chunked, and its head
/// reaches the client while the upstream is still sending (the second
/// KiB comes 3 s after the first).
#[tokio::test]
async fn streamed_answer_is_chunked_and_its_head_is_not_held_back() {
    let up = Upstream::start().await;
    let body = standard_body(&up);
    let drip = format!(
        "routes:\n  - name: drip\n    match: {{ path_prefix: /drip }}\n    upstream: {}\n    public: true\n",
        up.url()
    );
    let gw = Gateway::start(&body.replacen("routes:\n", &drip, 1));
    let mut s = connect(&gw, &[b"http/1.1"]).await;
    s.write_all(get_line("/drip/3000", "Connection: close\r\n").as_bytes())
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut byte = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(2000), async {
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = s.read(&mut byte).await.expect("read");
            assert!(n > 0, "closed before the head");
            got.extend_from_slice(&byte[..n]);
        }
    })
    .await;
    assert!(
        early.is_ok(),
        "no head within 2 s: {:?}",
        String::from_utf8_lossy(&got)
    );
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the rest within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&got);
    let head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(text.ends_with("0\r\n\r\n"), "the last chunk: {text:?}");
}

/// Heads the loop does not take are hyper's, refusals included.
#[tokio::test]
async fn malformed_and_old_requests_are_hypers_to_answer() {
    let (up, gw) = setup().await;
    let bad = format!(
        "GET /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nBad Header: x\r\n\r\n",
        basic("K1", SECRET)
    );
    let answer = exchange(&gw, bad.as_bytes()).await;
    assert_eq!(raw_status(&answer), Some(400), "{answer}");
    assert_eq!(up.count(), 0);

    let old = format!(
        "GET /model/ABC-1 HTTP/1.0\r\nHost: localhost\r\nAuthorization: {}\r\n\r\n",
        basic("K1", SECRET)
    );
    let answer = exchange(&gw, old.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    assert_eq!(up.count(), 1);

    // A good GET first, then a malformed one: the first is answered, the
    // second refused, and the connection closed.
    let both = [get_line("/model/ABC-2", ""), bad].concat();
    let answer = exchange(&gw, both.as_bytes()).await;
    let mut rest = answer.as_str();
    let (status, _, body) = next_answer(&mut rest);
    assert_eq!((status, body.as_str()), (200, "ok"), "{answer}");
    assert_eq!(raw_status(rest), Some(400), "{answer}");
    assert_eq!(up.count(), 2);
}

/// Many keep-alive requests one after another on one connection, each
/// answered whole before the next is sent.
#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let (up, gw) = setup().await;
    let mut s = connect(&gw, &[b"http/1.1"]).await;
    for i in 0..50 {
        s.write_all(get_line(&format!("/model/ABC-{i}"), "").as_bytes())
            .await
            .expect("write");
        let mut got = Vec::new();
        let mut byte = [0u8; 4096];
        while !(got.ends_with(b"\r\n\r\nok")) {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
                .await
                .expect("an answer within 10 s")
                .expect("read");
            assert!(n > 0, "closed after {i} answers");
            got.extend_from_slice(&byte[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{i}");
    }
    assert_eq!(up.count(), 50);
}

/// Polls `done` every 20 ms until it holds or `within` has passed.
async fn eventually(within: Duration, done: impl Fn() -> bool) -> bool {
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// A new connection that has sent `GET target` (no credentials).
async fn sent_get(
    gw: &Gateway,
    target: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut s = connect(gw, &[b"http/1.1"]).await;
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    s
}

fn with_public_route(up: &Upstream, prefix: &str) -> Gateway {
    let route = format!(
        "routes:\n  - name: pub\n    match: {{ path_prefix: {prefix} }}\n    upstream: {}\n    public: true\n",
        up.url()
    );
    Gateway::start(&standard_body(up).replacen("routes:\n", &route, 1))
}

/// A client that leaves before its answer has its request dropped, as
/// hyper's server drops it: the call to the upstream is cancelled and its
/// connection closed, instead of running to its end and being answered to
/// nobody. (`/slow` answers after 3 s; an answered call's connection would
/// stay open in the gateway's pool.)
#[tokio::test]
async fn a_client_that_leaves_before_its_answer_cancels_the_upstream_call() {
    let up = Upstream::start().await;
    let gw = with_public_route(&up, "/slow");
    let s = sent_get(&gw, "/slow/x").await;
    assert!(
        eventually(Duration::from_secs(5), || up.count() == 1).await,
        "the upstream never got the request"
    );
    assert_eq!(up.open_connections(), 1);
    drop(s);
    assert!(
        eventually(Duration::from_secs(5), || up.open_connections() == 0).await,
        "the upstream connection was still open 5 s after the client left"
    );
}

/// The same while a streamed answer waits for its upstream: the client
/// reads the first chunk and leaves; the stream is dropped and its
/// upstream connection closed, not held until the upstream next sends.
#[tokio::test]
async fn a_client_that_leaves_a_quiet_stream_releases_its_upstream() {
    let up = Upstream::start().await;
    let gw = with_public_route(&up, "/drip");
    let mut s = sent_get(&gw, "/drip/30000").await;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while got.iter().filter(|b| **b == b'a').count() < 1024 {
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before the first chunk");
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the first chunk within 10 s");
    assert_eq!(up.open_connections(), 1);
    drop(s);
    assert!(
        eventually(Duration::from_secs(5), || up.open_connections() == 0).await,
        "the upstream connection was still open 5 s after the client left"
    );
}

/// What a client pipelines while its request is answered is kept and
/// answered next, also when the first answer waits on the upstream.
#[tokio::test]
async fn a_request_sent_while_the_previous_waits_is_answered_after_it() {
    let up = Upstream::start().await;
    let gw = with_public_route(&up, "/slow");
    let mut s = sent_get(&gw, "/slow/1").await;
    assert!(eventually(Duration::from_secs(5), || up.count() == 1).await);
    s.write_all(b"GET /slow/2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("both answers within 20 s")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    let mut rest = text.as_ref();
    for i in 0..2 {
        let (status, _, body) = next_answer(&mut rest);
        assert_eq!((status, body.as_str()), (200, "ok"), "answer {i}: {text}");
    }
    let targets: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/slow/1", "/slow/2"]);
}
