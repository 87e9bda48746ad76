//! The listeners as a client sees them: TLS versions, ALPN, handshake and
//! header timeouts, header size, connection limit, graceful shutdown, and
//! the plain-HTTP redirect.

mod common;
use common::*;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

fn body(up: &Upstream, limits: &str) -> String {
    format!(
        "{limits}{std}",
        std = standard_body(up).replace(
            "keys:\n",
            &format!(
                "  - name: slow\n    match: {{ path_prefix: /slow }}\n    upstream: {}\n    public: true\nkeys:\n",
                up.url()
            )
        )
    )
}

/// A client restricted to one TLS version.
fn versioned(
    gw: &Gateway,
    version: &'static rustls::SupportedProtocolVersion,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(gw.cert_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(portcullis::tls::provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

async fn handshake(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// One HTTP/1.1 GET with K1's credentials over an established stream.
async fn h1_get(stream: TlsStream<TcpStream>, host: &str, path: &str) -> (u16, Bytes) {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http/1.1 handshake");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", host)
        .header("authorization", basic("K1", SECRET))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

#[tokio::test]
async fn tls13_works() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, ""));
    let s = handshake(
        gw.https,
        versioned(&gw, &rustls::version::TLS13, &[b"http/1.1"]),
    )
    .await
    .expect("TLS 1.3 handshake");
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let (status, body) = h1_get(s, &gw.host(), "/model/ABC-1").await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"ok");
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn tls12_works() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, ""));
    let s = handshake(
        gw.https,
        versioned(&gw, &rustls::version::TLS12, &[b"http/1.1"]),
    )
    .await
    .expect("TLS 1.2 handshake");
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let (status, _) = h1_get(s, &gw.host(), "/model/ABC-1").await;
    assert_eq!(status, 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn alpn_h2_negotiated_and_served() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, ""));
    let s = connect(&gw, &[b"h2", b"http/1.1"]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    for i in 0..3 {
        let req = http::Request::get(format!("https://{}/model/ABC-{i}?h2=1", gw.host()))
            .header("authorization", basic("K1", SECRET))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.expect("h2 response");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert!(resp.headers().get("x-request-id").is_some());
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&b[..], b"ok");
    }
    assert_eq!(up.count(), 3);
    let r = up.last();
    assert_eq!(r.target, "/model/ABC-2?h2=1");
    assert_eq!(r.header("x-auth-subject").as_deref(), Some("bob"));
    assert_eq!(r.header("x-forwarded-host"), Some(gw.host()));
    assert!(!r.has_header("authorization"));
}

#[tokio::test]
async fn alpn_h2_without_credentials_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, ""));
    let s = connect(&gw, &[b"h2"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = http::Request::get(format!("https://{}/model/ABC-1", gw.host()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.expect("h2 response");
    assert_eq!(resp.status(), 401);
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["error"], "missing_credentials");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn alpn_http11_and_no_alpn_served() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, ""));
    let s = connect(&gw, &[b"http/1.1"]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, _) = h1_get(s, &gw.host(), "/model/ABC-1").await;
    assert_eq!(status, 200);
    let s = connect(&gw, &[]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), None);
    let (status, _) = h1_get(s, &gw.host(), "/model/ABC-1").await;
    assert_eq!(status, 200);
    assert_eq!(up.count(), 2);
}

/// HTTP/2 over TLS is negotiated with ALPN (RFC 9113, section 3.2). A
/// client that offered no ALPN and sends the HTTP/2 preface anyway is
/// answered as HTTP/1.1, refused, and nothing reaches the upstream.
#[tokio::test]
async fn h2_preface_without_alpn_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, ""));
    let mut s = connect(&gw, &[]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), None);
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("write");
    s.flush().await.expect("flush");
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "still connected after 10 s");
    let text = String::from_utf8_lossy(&out);
    assert!(
        out.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
        "answered {text:?}"
    );
    assert_eq!(up.count(), 0);
}

/// Run `openssl s_client` with `args`; None when it cannot be run.
fn s_client(port: u16, args: &[&str]) -> Option<(bool, String)> {
    let mut child = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
        ])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

#[tokio::test]
async fn old_tls_versions_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, ""));
    let port = gw.https.port();
    // The control: this openssl must be able to talk TLS 1.2 to the gateway.
    let control = tokio::task::spawn_blocking(move || s_client(port, &["-tls1_2"]))
        .await
        .unwrap();
    let Some((ok, text)) = control else {
        eprintln!("openssl not available: skipped");
        return;
    };
    if !ok || !text.contains("TLSv1.2") {
        eprintln!("openssl cannot do TLS 1.2 here: skipped\n{text}");
        return;
    }
    for flag in ["-tls1_1", "-tls1"] {
        let res = tokio::task::spawn_blocking(move || {
            s_client(port, &[flag, "-cipher", "DEFAULT@SECLEVEL=0"])
        })
        .await
        .unwrap();
        let Some((ok, text)) = res else { continue };
        if text.contains("unknown option")
            || text.contains("Unknown option")
            || text.contains("no protocols available")
        {
            eprintln!("openssl does not know {flag}: skipped");
            continue;
        }
        // A refused handshake ends with `Cipher is (NONE)` and a failure exit.
        let negotiated = text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
        assert!(!ok && !negotiated, "{flag} was accepted:\n{text}");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn silent_tcp_client_disconnected_after_handshake_timeout() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, "limits: { tls_handshake_timeout: 1s }\n"));
    let mut tcp = TcpStream::connect(gw.https).await.expect("tcp connect");
    let mut buf = [0u8; 64];
    // Closed (EOF or reset) well before this bound.
    let r = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut buf)).await;
    match r {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("the gateway sent {n} bytes to a silent client"),
        Err(_) => panic!("the gateway kept a silent TCP connection open"),
    }
    // The gateway still serves others.
    let a = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &basic("K1", SECRET))],
    )
    .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn partial_request_head_cut_off_after_header_read_timeout() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, "limits: { header_read_timeout: 1s }\n"));
    let mut s = connect(&gw, &[b"http/1.1"]).await;
    let head = format!(
        "GET /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nX-Slow: ",
        basic("K1", SECRET)
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.flush().await.expect("flush");
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "the connection was still open after 15 s");
    let text = String::from_utf8_lossy(&out);
    assert!(
        out.is_empty() || raw_status(&text) == Some(408),
        "expected a close or 408, got {text:?}"
    );
    assert_eq!(up.count(), 0, "{:?}", up.requests());
}

/// Read one response with a `content-length` body off a keep-alive connection.
async fn read_response(s: &mut TlsStream<TcpStream>) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.expect("read");
        assert_eq!(n, 1, "closed mid-head: {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.expect("body");
    head
}

/// header_read_timeout also bounds the idle time between keep-alive
/// requests, one wait at a time: requests 0.6 s apart on a 1 s timeout all
/// pass, though together they take longer than the timeout, and the idle
/// connection is closed about a second after the last answer.
#[tokio::test]
async fn keep_alive_requests_inside_header_read_timeout_pass_then_idle_closes() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, "limits: { header_read_timeout: 1s }\n"));
    let mut s = connect(&gw, &[b"http/1.1"]).await;
    let req = format!(
        "GET /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\r\n",
        basic("K1", SECRET)
    );
    for i in 0..4 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        s.write_all(req.as_bytes()).await.expect("write");
        let head = read_response(&mut s).await;
        assert_eq!(raw_status(&head), Some(200), "request {i}: {head}");
    }
    assert_eq!(up.count(), 4);
    let idle = std::time::Instant::now();
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "the idle connection was still open after 10 s");
    let waited = idle.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

/// An HTTP/2 connection to `gw`, with its end reported on the returned
/// channel (when the client's connection driver finished, and how).
async fn h2_on(
    gw: &Gateway,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::sync::oneshot::Receiver<(std::time::Instant, Result<(), hyper::Error>)>,
) {
    let s = connect(gw, &[b"h2"]).await;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .expect("h2 handshake");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let r = conn.await;
        let _ = tx.send((std::time::Instant::now(), r));
    });
    (sender, rx)
}

async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    gw: &Gateway,
    path: &str,
) -> (u16, Bytes) {
    let req = http::Request::get(format!("https://{}{path}", gw.host()))
        .header("authorization", basic("K1", SECRET))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.expect("h2 response");
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// As over HTTP/1: an HTTP/2 connection with no request for
/// header_read_timeout is told to finish (GOAWAY) and closed, about a
/// second after its last answer, where before it stayed open for good.
#[tokio::test]
async fn h2_idle_connection_finishes_after_header_read_timeout() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(
        &up,
        "limits: { header_read_timeout: 1s }
",
    ));
    let (mut sender, ended) = h2_on(&gw).await;
    assert_eq!(h2_get(&mut sender, &gw, "/model/ABC-1").await.0, 200);
    let answered = std::time::Instant::now();
    let (at, how) = tokio::time::timeout(Duration::from_secs(10), ended)
        .await
        .expect("the idle HTTP/2 connection was still open after 10 s")
        .expect("driver");
    assert!(how.is_ok(), "closed uncleanly: {how:?}");
    let waited = at.duration_since(answered);
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert!(sender.is_closed());
    assert_eq!(up.count(), 1);
}

/// Requests 0.6 s apart keep an HTTP/2 connection on a 1 s timeout open,
/// and an answer that takes 3 s is not cut off: the timeout counts only
/// while no request waits for its answer.
#[tokio::test]
async fn h2_busy_connection_stays_open_through_a_slow_answer() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(
        &up,
        "limits: { header_read_timeout: 1s }
",
    ));
    let (mut sender, mut ended) = h2_on(&gw).await;
    for i in 0..4 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        assert_eq!(
            h2_get(&mut sender, &gw, "/model/ABC-1").await.0,
            200,
            "request {i}"
        );
    }
    let started = std::time::Instant::now();
    let (status, body) = h2_get(&mut sender, &gw, "/slow/1").await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"ok");
    assert!(started.elapsed() >= Duration::from_millis(2900));
    assert!(
        ended.try_recv().is_err(),
        "the connection ended while in use"
    );
    assert!(!sender.is_closed());
    assert_eq!(up.count(), 5);
}

/// Connect over TLS, send `bytes` (maybe none) and stall: the gateway must
/// close the connection (header_read_timeout: 1s) well within 15 s.
async fn stall_is_cut_off(bytes: &[u8], alpn: &[&[u8]]) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, "limits: { header_read_timeout: 1s }\n"));
    let mut s = connect(&gw, alpn).await;
    if !bytes.is_empty() {
        s.write_all(bytes).await.expect("write");
        s.flush().await.expect("flush");
    }
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
    assert!(
        r.is_ok(),
        "a TLS client that sent {:?} and stalled was still connected after 15 s",
        String::from_utf8_lossy(bytes)
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn silent_tls_client_cut_off_after_header_read_timeout() {
    // Handshake done, then not a single byte: a slowloris that would
    // otherwise hold a connection slot for ever.
    stall_is_cut_off(b"", &[b"http/1.1"]).await;
}

#[tokio::test]
async fn one_byte_then_stall_cut_off() {
    stall_is_cut_off(b"G", &[b"http/1.1"]).await;
}

#[tokio::test]
async fn partial_h2_preface_then_stall_cut_off() {
    stall_is_cut_off(b"PRI * HTTP/2.0\r\n", &[b"http/1.1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tls_clients_cannot_hold_every_connection_slot() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(
        &up,
        "limits: { max_connections: 2, header_read_timeout: 1s }\n",
    ));
    // Two clients finish the handshake and then say nothing.
    let idle1 = connect(&gw, &[b"http/1.1"]).await;
    let idle2 = connect(&gw, &[b"http/1.1"]).await;
    let a = tokio::time::timeout(
        Duration::from_secs(20),
        get(
            &gw,
            "/model/ABC-1",
            &[("authorization", &basic("K1", SECRET))],
        ),
    )
    .await
    .expect("two idle TLS clients locked everyone else out");
    assert_eq!(a.status, 200);
    drop((idle1, idle2));
}

/// Write bytes over TLS ignoring write errors (the server may close first);
/// read what comes back within 10 s.
async fn raw_lenient(gw: &Gateway, bytes: &[u8]) -> String {
    let mut s = connect(gw, &[b"http/1.1"]).await;
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn oversized_headers_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, "limits: { max_header_bytes: 16KiB }\n"));
    let auth = basic("K1", SECRET);
    // A modest header passes.
    let ok = format!(
        "GET /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(2000)
    );
    assert_eq!(
        raw_status(&raw_lenient(&gw, ok.as_bytes()).await),
        Some(200)
    );
    assert_eq!(up.count(), 1);
    // One huge header.
    let big = format!(
        "GET /model/ABC-2 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let answer = raw_lenient(&gw, big.as_bytes()).await;
    assert!(
        answer.is_empty() || raw_status(&answer) == Some(431),
        "expected 431 or a close, got {answer:?}"
    );
    // Many headers that add up.
    let mut many =
        format!("GET /model/ABC-3 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\n");
    for i in 0..90 {
        many.push_str(&format!("X-H{i}: {}\r\n", "b".repeat(400)));
    }
    many.push_str("Connection: close\r\n\r\n");
    let answer = raw_lenient(&gw, many.as_bytes()).await;
    assert!(
        answer.is_empty() || raw_status(&answer) == Some(431),
        "expected 431 or a close, got {answer:?}"
    );
    assert_eq!(
        up.count(),
        1,
        "{:?}",
        up.requests().iter().map(|r| &r.target).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_third_until_one_closes() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, "limits: { max_connections: 2 }\n"));
    let c1 = connect(&gw, &[b"http/1.1"]).await;
    let c2 = connect(&gw, &[b"http/1.1"]).await;
    // Both are really being served: a request on one of them works.
    let (mut s1, conn1) = hyper::client::conn::http1::handshake(TokioIo::new(c1))
        .await
        .unwrap();
    let conn1 = tokio::spawn(conn1);
    let req = http::Request::get("/model/ABC-1")
        .header("host", gw.host())
        .header("authorization", basic("K1", SECRET))
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(s1.send_request(req).await.unwrap().status(), 200);

    let cfg = tls_config(&gw, &[b"http/1.1"]);
    let (addr, host) = (gw.https, gw.host());
    let third = tokio::spawn(async move {
        let s = handshake(addr, cfg).await.expect("third handshake");
        h1_get(s, &host, "/model/ABC-3").await.0
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served beyond max_connections: 2"
    );
    assert_eq!(up.count(), 1);

    // Close the first connection: the third is served.
    drop(s1);
    conn1.abort();
    let _ = conn1.await;
    let status = tokio::time::timeout(Duration::from_secs(20), third)
        .await
        .expect("the third connection was never served")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(up.last().target, "/model/ABC-3");
    drop(c2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_and_refuses_new() {
    let up = Upstream::start().await;
    let mut gw = Gateway::start(&body(&up, "limits: { shutdown_grace: 10s }\n"));
    let inflight = get(&gw, "/slow/in-flight", &[]);
    let control = async {
        for _ in 0..200 {
            if up.count() >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(up.count(), 1, "the slow request never reached the upstream");
        gw.signal("TERM");
        let mut refused = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if TcpStream::connect(gw.https).await.is_err() {
                refused = true;
                break;
            }
        }
        refused
    };
    let (answer, refused) = tokio::join!(inflight, control);
    assert_eq!(
        answer.status, 200,
        "the in-flight request was cut: {answer:?}"
    );
    assert_eq!(&answer.body[..], b"ok");
    assert!(refused, "new connections were still accepted after SIGTERM");
    let code = gw.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(0), "logs:\n{}", gw.logs());
    assert_eq!(up.count(), 1);
}

async fn plain(addr: std::net::SocketAddr, req: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect http");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn header_of(answer: &str, name: &str) -> Option<String> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

#[tokio::test]
async fn plain_http_redirect_stays_on_the_named_host() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, ""));
    let sp = gw.https.port();
    let a = plain(
        gw.http,
        "GET //evil.test/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&a), Some(308), "{a}");
    let loc = header_of(&a, "location").unwrap_or_default();
    assert!(
        loc.starts_with(&format!("https://localhost:{sp}/")),
        "{loc}"
    );
    let a = plain(
        gw.http,
        "GET http://localhost/model/ABC-1?q=1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&a), Some(308), "{a}");
    assert_eq!(
        header_of(&a, "location"),
        Some(format!("https://localhost:{sp}/model/ABC-1?q=1"))
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn plain_http_redirects_and_never_forwards() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, ""));
    let hp = gw.http.port();
    let sp = gw.https.port();
    let a = plain(
        gw.http,
        &format!("GET /model/ABC-1?x=1&y=%20z HTTP/1.1\r\nHost: localhost:{hp}\r\n\r\n"),
    )
    .await;
    assert_eq!(raw_status(&a), Some(308), "{a}");
    assert_eq!(
        header_of(&a, "location"),
        Some(format!("https://localhost:{sp}/model/ABC-1?x=1&y=%20z")),
        "{a}"
    );
    // A credentialed POST with a body is redirected too, not forwarded.
    let a = plain(
        gw.http,
        &format!(
            "POST /model/ABC-1 HTTP/1.1\r\nHost: localhost:{hp}\r\nAuthorization: {}\r\nContent-Length: 5\r\n\r\nhello",
            basic("K1", SECRET)
        ),
    )
    .await;
    assert_eq!(raw_status(&a), Some(308), "{a}");
    assert_eq!(
        header_of(&a, "location"),
        Some(format!("https://localhost:{sp}/model/ABC-1")),
        "{a}"
    );
    assert_eq!(up.count(), 0, "{:?}", up.requests());
}

/// A TLS 1.3 client that offers only `group` for the key exchange.
fn with_group(
    gw: &Gateway,
    group: &'static dyn rustls::crypto::SupportedKxGroup,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(gw.cert_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: vec![group],
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[tokio::test]
async fn every_key_exchange_group_is_served_post_quantum_included() {
    use rustls::crypto::aws_lc_rs::kx_group;
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, ""));
    for group in [
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
        kx_group::SECP384R1,
    ] {
        let name = group.name();
        let stream = handshake(gw.https, with_group(&gw, group))
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        let chosen = stream
            .get_ref()
            .1
            .negotiated_key_exchange_group()
            .map(|g| g.name());
        assert_eq!(chosen, Some(name));
        let (status, _) = h1_get(stream, &gw.host(), "/model/ABC-1").await;
        assert_eq!(status, 200, "{name:?}");
    }
    assert_eq!(up.count(), 4);
}

#[tokio::test]
async fn certificates_of_every_key_type_are_served() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, ""));
    let certs = gw.dir.path().join("certs");
    for alg in [
        &rcgen::PKCS_RSA_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ECDSA_P521_SHA512,
        &rcgen::PKCS_ED25519,
    ] {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.self_signed(&key).expect("certificate");
        std::fs::write(certs.join("gateway.key"), key.serialize_pem()).unwrap();
        std::fs::write(certs.join("gateway.crt"), cert.pem()).unwrap();
        gw.signal("HUP");
        // The reload is done when the new certificate is the one presented.
        let mut served = None;
        for _ in 0..100 {
            if let Ok(s) = handshake(gw.https, tls_config(&gw, &[b"http/1.1"])).await {
                served = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stream = served.unwrap_or_else(|| panic!("{alg:?} never served:\n{}", gw.logs()));
        let (status, _) = h1_get(stream, &gw.host(), "/model/ABC-1").await;
        assert_eq!(status, 200, "{alg:?}");
    }
    assert_eq!(up.count(), 4);
}

/// Connect with `cfg`, send one request and read its answer (the server's
/// TLS 1.3 session tickets come after the handshake; the client takes them
/// in while it reads). Whether the handshake resumed a session.
async fn request_and_resumed(gw: &Gateway, cfg: Arc<rustls::ClientConfig>) -> bool {
    let stream = handshake(gw.https, cfg).await.expect("handshake");
    let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let (status, _) = h1_get(stream, &gw.host(), "/model/ABC-1").await;
    assert_eq!(status, 200);
    resumed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_clients_resume_their_tls_session_beyond_a_cache_and_a_reload() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up, ""));
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        // More clients than rustls's default session cache holds (256),
        // each with its own session store, as separate processes would be.
        let clients: Vec<_> = (0..300)
            .map(|_| versioned(&gw, version, &[b"http/1.1"]))
            .collect();
        for cfg in &clients {
            assert!(
                !request_and_resumed(&gw, cfg.clone()).await,
                "{version:?}: resumed a first visit"
            );
        }
        let mut resumed = 0;
        for cfg in &clients {
            resumed += usize::from(request_and_resumed(&gw, cfg.clone()).await);
        }
        assert_eq!(
            resumed,
            clients.len(),
            "{version:?}: returning clients that resumed"
        );
        // Tickets stay good across a reload.
        let before = gw.logs().matches("configuration reloaded").count();
        gw.signal("HUP");
        for _ in 0..100 {
            if gw.logs().matches("configuration reloaded").count() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            request_and_resumed(&gw, clients[0].clone()).await,
            "{version:?}: after a reload"
        );
    }
}
