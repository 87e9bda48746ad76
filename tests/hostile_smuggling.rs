//! Request smuggling: requests whose framing two HTTP parsers could read
//! two ways, sent byte for byte over TLS. Each must be refused (400 or the
//! connection closed) and nothing smuggled may ever reach the upstream.

mod common;
use common::*;

fn auth() -> String {
    basic("K1", SECRET)
}

/// No recorded request carries the smuggled path.
fn assert_nothing_smuggled(up: &Upstream) {
    for r in up.requests() {
        assert!(
            !r.target.contains("SMUGGLED"),
            "the upstream received the smuggled request: {r:?}"
        );
        assert!(
            !String::from_utf8_lossy(&r.body).contains("SMUGGLED"),
            "a smuggled request reached the upstream inside a body: {r:?}"
        );
    }
}

/// Refused: 400 or closed without an answer, and the upstream saw nothing.
async fn assert_refused(gw: &Gateway, up: &Upstream, bytes: &[u8]) {
    let answer = raw(gw, bytes).await;
    let status = raw_status(&answer);
    assert!(
        status == Some(400) || answer.is_empty(),
        "expected 400 or a closed connection, got: {answer:?}"
    );
    assert_eq!(
        up.count(),
        0,
        "the upstream received a request: {:?}",
        up.requests()
    );
    assert_nothing_smuggled(up);
}

fn smuggled_tail() -> String {
    format!(
        "GET /model/SMUGGLED HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\r\n",
        auth()
    )
}

async fn setup() -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    (up, gw)
}

#[tokio::test]
async fn cl_and_te_with_smuggled_request_refused() {
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn cl_te_desync_long_content_length_refused() {
    // CL covers the whole thing; chunked ends early: a CL-reading hop would
    // see one request, a TE-reading hop two.
    let (up, gw) = setup().await;
    let body = format!("0\r\n\r\n{}", smuggled_tail());
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nContent-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        a = auth(),
        n = body.len()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn te_cl_desync_refused() {
    // TE first, short CL: a CL-reading hop would see the chunk as a request.
    let (up, gw) = setup().await;
    let tail = smuggled_tail();
    let body = format!("{:x}\r\n{tail}\r\n0\r\n\r\n", tail.len());
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{body}",
        a = auth()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn duplicate_content_length_different_values_refused() {
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn duplicate_content_length_same_values_never_smuggles() {
    // Identical duplicates are allowed by RFC 9112 section 6.3 to be read as
    // one value; either way, only the declared 5 bytes may be the body and
    // the bytes after them must not become a request with the smuggled path
    // unless read as a request of their own on a well-framed connection.
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        a = auth()
    );
    let answer = raw(&gw, req.as_bytes()).await;
    match raw_status(&answer) {
        Some(400) => assert_eq!(up.count(), 0, "refused but forwarded: {:?}", up.requests()),
        Some(200) => {
            assert_eq!(up.count(), 1);
            let r = up.last();
            assert_eq!(r.body, b"hello");
            assert_eq!(
                r.headers
                    .iter()
                    .filter(|(n, _)| n == "content-length")
                    .count(),
                1
            );
        }
        other => panic!("unexpected answer {other:?}: {answer:?}"),
    }
    assert_nothing_smuggled(&up);
}

#[tokio::test]
async fn duplicate_content_length_in_one_line_refused() {
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nContent-Length: 5, 6\r\n\r\nhello{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn content_length_plus_sign_refused() {
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nContent-Length: +5\r\n\r\nhello{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn content_length_non_numeric_variants_refused() {
    let (up, gw) = setup().await;
    for cl in ["5x", "0x5", "-5", "5 5", "5.0", "05 ,5"] {
        let req = format!(
            "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nContent-Length: {cl}\r\n\r\nhello{tail}",
            a = auth(),
            tail = smuggled_tail()
        );
        let answer = raw(&gw, req.as_bytes()).await;
        assert!(
            raw_status(&answer) == Some(400) || answer.is_empty(),
            "Content-Length {cl:?}: expected 400, got {answer:?}"
        );
    }
    assert_eq!(up.count(), 0, "forwarded: {:?}", up.requests());
}

#[tokio::test]
async fn content_length_trailing_space_is_one_clean_request() {
    // `5 ` is `5` with optional whitespace: the body is exactly 5 bytes and
    // the following bytes are never forwarded as part of it.
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nContent-Length: 5 \r\nConnection: close\r\n\r\nhello",
        a = auth()
    );
    let answer = raw(&gw, req.as_bytes()).await;
    match raw_status(&answer) {
        Some(400) => assert_eq!(up.count(), 0),
        Some(200) => {
            assert_eq!(up.count(), 1);
            assert_eq!(up.last().body, b"hello");
        }
        other => panic!("unexpected answer {other:?}: {answer:?}"),
    }
    assert_nothing_smuggled(&up);
}

#[tokio::test]
async fn te_chunked_identity_refused() {
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn te_identity_chunked_refused() {
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn te_two_lines_refused() {
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn te_xchunked_refused() {
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn te_space_before_colon_refused() {
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn te_obs_fold_refused() {
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn te_on_http10_refused() {
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.0\r\nHost: localhost\r\nAuthorization: {a}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn well_framed_pipelined_request_with_bad_second_is_not_smuggled() {
    // A clean first request followed by a malformed second one on the same
    // connection: the first is served, the second never reaches the upstream.
    let (up, gw) = setup().await;
    let req = format!(
        "GET /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\n\r\nPOST /model/SMUGGLED HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nContent-Length: 3\r\nTransfer-Encoding: xchunked\r\n\r\nabc",
        a = auth()
    );
    let answer = raw(&gw, req.as_bytes()).await;
    assert_eq!(raw_status(&answer), Some(200), "{answer:?}");
    assert_eq!(up.count(), 1, "{:?}", up.requests());
    assert_eq!(up.last().target, "/model/ABC-1");
    assert_nothing_smuggled(&up);
}

#[tokio::test]
async fn cl_and_te_with_bare_lf_line_endings_refused() {
    // HTTP/1 parsers accept a bare LF as a line end; a guard that only
    // looks for CRLF CRLF must not lose track of this head.
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\nHost: localhost\nAuthorization: {a}\nContent-Length: 5\nTransfer-Encoding: chunked\n\n0\r\n\r\n{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn cl_and_te_with_mixed_line_endings_refused() {
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\n0\r\n\r\n{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    assert_refused(&gw, &up, req.as_bytes()).await;
}

#[tokio::test]
async fn duplicate_content_length_with_bare_lf_refused() {
    let (up, gw) = setup().await;
    let req = format!(
        "POST /model/ABC-1 HTTP/1.1\nHost: localhost\nAuthorization: {a}\nContent-Length: 5\nContent-Length: 5\n\nhello{tail}",
        a = auth(),
        tail = smuggled_tail()
    );
    let answer = raw(&gw, req.as_bytes()).await;
    let status = raw_status(&answer);
    // Same contract as with CRLF: refused like its CRLF twin.
    assert!(
        status == Some(400) || answer.is_empty(),
        "expected 400 or a closed connection, got: {answer:?}"
    );
    assert_eq!(up.count(), 0, "{:?}", up.requests());
}

/// Send `parts` over one TLS connection with a pause between them, and read
/// the answer until the server closes or 5 s pass.
async fn raw_in_parts(gw: &Gateway, parts: &[&[u8]]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect(gw, &[b"http/1.1"]).await;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        }
        if s.write_all(p).await.is_err() {
            break;
        }
        let _ = s.flush().await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn cl_and_te_bare_lf_head_then_late_body_refused() {
    // The head (bare LF line ends, no CRLF CRLF anywhere) arrives first; the
    // body only later. The request must be refused before anything is
    // forwarded, not once the body shows up.
    let (up, gw) = setup().await;
    let head = format!(
        "POST /model/ABC-1 HTTP/1.1\nHost: localhost\nAuthorization: {a}\nContent-Length: 5\nTransfer-Encoding: chunked\n\n",
        a = auth()
    );
    let answer = raw_in_parts(
        &gw,
        &[head.as_bytes(), b"0\r\n\r\n", smuggled_tail().as_bytes()],
    )
    .await;
    assert!(
        raw_status(&answer) == Some(400) || answer.is_empty(),
        "expected 400 or a closed connection, got: {answer:?}"
    );
    assert_eq!(up.count(), 0, "forwarded: {:?}", up.requests());
    assert_nothing_smuggled(&up);
}

#[tokio::test]
async fn cl_and_te_crlf_head_then_late_body_refused() {
    let (up, gw) = setup().await;
    let head = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {a}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        a = auth()
    );
    let answer = raw_in_parts(
        &gw,
        &[head.as_bytes(), b"0\r\n\r\n", smuggled_tail().as_bytes()],
    )
    .await;
    assert!(
        raw_status(&answer) == Some(400) || answer.is_empty(),
        "expected 400 or a closed connection, got: {answer:?}"
    );
    assert_eq!(up.count(), 0, "forwarded: {:?}", up.requests());
    assert_nothing_smuggled(&up);
}
