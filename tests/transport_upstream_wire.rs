//! The upstream hop on the wire: every way an HTTP/1.1 upstream may frame
//! its answer (length, chunked, until close, none for HEAD/204/304), interim
//! 1xx answers, early answers to uploads, full-duplex echo, and broken or
//! hostile answers (502, never a hang). Each upstream here is a raw socket
//! script, so the bytes are exactly what the test says.

mod common;
use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Script = Arc<dyn Fn(TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// An upstream that runs `script` on each connection; counts connections.
struct Scripted {
    url: String,
    connections: Arc<AtomicUsize>,
}

async fn scripted(script: Script) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(script(tcp));
        }
    });
    Scripted { url, connections }
}

/// Read one request head (through its blank line) into a string; the bytes
/// after it stay in `buf`. None when the gateway closed the connection.
async fn read_head(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut chunk = [0u8; 8192];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Answer every request on a connection with `answer(head)`.
fn each_request(answer: fn(&str) -> Vec<u8>) -> Script {
    Arc::new(move |mut tcp| {
        Box::pin(async move {
            let mut buf = Vec::new();
            while let Some(head) = read_head(&mut tcp, &mut buf).await {
                if tcp.write_all(&answer(&head)).await.is_err() {
                    return;
                }
            }
        })
    })
}

fn config(up: &str) -> String {
    model_route_body(
        up,
        "{ namespace: models, actions: [create, read, update, delete] }",
    )
}

fn auth() -> String {
    basic("K1", SECRET)
}

/// GET with a client that reports a broken answer (the common helper reads
/// a broken body as empty): the status and body, or what went wrong.
async fn try_get(gw: &Gateway, path: &str) -> Result<(u16, Bytes), String> {
    let stream = connect(gw, &[b"http/1.1"]).await;
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", gw.host())
        .header("authorization", auth())
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let answer = async {
        let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, body.to_bytes()))
    };
    tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
}

#[tokio::test]
async fn chunked_answers_are_decoded_and_the_connection_reused() {
    let up = scripted(each_request(|_| {
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-up: 1\r\n\r\n\
          5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: dropped\r\n\r\n"
            .to_vec()
    }))
    .await;
    let gw = Gateway::start(&config(&up.url));
    for _ in 0..3 {
        let a = get(&gw, "/model/x", &[("authorization", &auth())]).await;
        assert_eq!(a.status, 200, "{a:?}\n{}", gw.logs());
        assert_eq!(&a.body[..], b"hello world");
        assert_eq!(a.header("x-up").as_deref(), Some("1"));
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn hop_by_hop_answer_headers_stop_at_the_gateway_and_the_connection_is_reused() {
    let up = scripted(each_request(|_| {
        b"HTTP/1.1 200 OK\r\nconnection: keep-alive, x-private\r\nx-private: 1\r\n\
          keep-alive: timeout=5\r\ntrailer: x-t\r\nupgrade: h2c\r\n\
          proxy-connection: keep-alive\r\ncontent-length: 2\r\nx-kept: yes\r\n\r\nok"
            .to_vec()
    }))
    .await;
    let gw = Gateway::start(&config(&up.url));
    for _ in 0..3 {
        let a = get(&gw, "/model/x", &[("authorization", &auth())]).await;
        assert_eq!(a.status, 200, "{a:?}\n{}", gw.logs());
        assert_eq!(&a.body[..], b"ok");
        assert_eq!(a.header("x-kept").as_deref(), Some("yes"));
        for name in [
            "connection",
            "x-private",
            "keep-alive",
            "trailer",
            "upgrade",
            "proxy-connection",
        ] {
            assert!(a.header(name).is_none(), "{name} reached the client: {a:?}");
        }
    }
    // `keep-alive` in `Connection` is not `close`: one connection carried all three.
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_answer_delimited_by_close_arrives_whole_and_is_not_reused() {
    let script: Script = Arc::new(|mut tcp| {
        Box::pin(async move {
            let mut buf = Vec::new();
            if read_head(&mut tcp, &mut buf).await.is_some() {
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\n\r\nno length, ").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tcp.write_all(b"ends at close").await;
            }
        })
    });
    let up = scripted(script).await;
    let gw = Gateway::start(&config(&up.url));
    for _ in 0..2 {
        let a = get(&gw, "/model/x", &[("authorization", &auth())]).await;
        assert_eq!(a.status, 200, "{a:?}\n{}", gw.logs());
        assert_eq!(&a.body[..], b"no length, ends at close");
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn head_204_and_304_answers_have_no_body_and_keep_the_connection() {
    let up = scripted(each_request(|head| {
        if head.starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n".to_vec()
        } else if head.contains("/model/204") {
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
        } else if head.contains("/model/304") {
            b"HTTP/1.1 304 Not Modified\r\netag: \"e\"\r\n\r\n".to_vec()
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
        }
    }))
    .await;
    let gw = Gateway::start(&config(&up.url));
    let h = [("authorization", auth())];
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = send(&gw, "HEAD", "/model/x", &h, Bytes::new()).await;
    assert_eq!(a.status, 200, "{a:?}\n{}", gw.logs());
    assert_eq!(a.header("content-length").as_deref(), Some("1234"));
    assert!(a.body.is_empty());
    let a = get(&gw, "/model/204", &h).await;
    assert_eq!(a.status, 204, "{a:?}");
    let a = get(&gw, "/model/304", &h).await;
    assert_eq!(a.status, 304, "{a:?}");
    assert_eq!(a.header("etag").as_deref(), Some("\"e\""));
    let a = get(&gw, "/model/x", &h).await;
    assert_eq!((a.status, &a.body[..]), (200, &b"ok"[..]));
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn interim_answers_are_skipped() {
    let up = scripted(each_request(|_| {
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\n\
          HTTP/1.1 201 Created\r\ncontent-length: 7\r\n\r\ncreated"
            .to_vec()
    }))
    .await;
    let gw = Gateway::start(&config(&up.url));
    let a = send(&gw, "POST", "/model/x", &[("authorization", &auth())], "{}").await;
    assert_eq!(a.status, 201, "{a:?}\n{}", gw.logs());
    assert_eq!(&a.body[..], b"created");
}

#[tokio::test]
async fn broken_or_hostile_answers_are_502() {
    let up = scripted(each_request(|head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        match path {
            "/model/garbage" => b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec(),
            "/model/two-lengths" => {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok".to_vec()
            }
            "/model/bad-chunk" => {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec()
            }
            "/model/upgrade" => b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n".to_vec(),
            "/model/huge-head" => {
                let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
                for i in 0..3000 {
                    v.extend_from_slice(format!("x-h{i}: {}\r\n", "v".repeat(30)).as_bytes());
                }
                v.extend_from_slice(b"\r\n");
                v
            }
            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        }
    }))
    .await;
    let gw = Gateway::start(&config(&up.url));
    for path in [
        "/model/garbage",
        "/model/two-lengths",
        "/model/upgrade",
        "/model/huge-head",
    ] {
        let a = get(&gw, path, &[("authorization", &auth())]).await;
        assert_eq!(a.status, 502, "{path}: {a:?}\n{}", gw.logs());
        assert_eq!(a.error(), "upstream_unavailable", "{path}");
    }
    // A bad chunk after the head: the client sees a broken answer (the
    // head may or may not have gone out), never a whole one.
    let r = try_get(&gw, "/model/bad-chunk").await;
    assert!(r.is_err(), "{r:?}");
    // The gateway is still fine.
    let a = get(&gw, "/model/x", &[("authorization", &auth())]).await;
    assert_eq!((a.status, &a.body[..]), (200, &b"ok"[..]), "{}", gw.logs());
    assert!(!gw.logs().contains("panicked"), "{}", gw.logs());
}

#[tokio::test]
async fn an_answer_cut_short_is_not_passed_off_as_whole() {
    let script: Script = Arc::new(|mut tcp| {
        Box::pin(async move {
            let mut buf = Vec::new();
            if read_head(&mut tcp, &mut buf).await.is_some() {
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten..")
                    .await;
            }
        })
    });
    let up = scripted(script).await;
    let gw = Gateway::start(&config(&up.url));
    let r = try_get(&gw, "/model/x").await;
    assert!(
        r.is_err(),
        "a truncated body must surface as an error: {r:?}"
    );
    // The broken connection is not reused: the next request opens another.
    let r = try_get(&gw, "/model/x").await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_early_answer_to_an_upload_reaches_the_client() {
    // The upstream refuses the upload after its head, reads none of the
    // body, and closes: the client gets the 413, not a 502.
    let script: Script = Arc::new(|mut tcp| {
        Box::pin(async move {
            let mut buf = Vec::new();
            if read_head(&mut tcp, &mut buf).await.is_some() {
                let _ = tcp
                    .write_all(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big\n")
                    .await;
                let _ = tcp.shutdown().await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    });
    let up = scripted(script).await;
    let gw = Gateway::start(&config(&up.url));
    let data = vec![b'x'; 4 << 20];
    let a = send(&gw, "PUT", "/model/x", &[("authorization", &auth())], data).await;
    assert_eq!(a.status, 413, "{a:?}\n{}", gw.logs());
    assert_eq!(&a.body[..], b"too big\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_echo_upstream_works_full_duplex() {
    // hyper's server answers at once with a body that reads the request:
    // the response head comes before the request body has been sent.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(req.into_body()))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let gw = Gateway::start(&config(&url));
    // A request body that arrives in pieces, without a length (chunked).
    let body = Pieces((0..64u8).map(|i| Bytes::from(vec![i; 64 * 1024])).collect());
    let stream = connect(&gw, &[b"http/1.1"]).await;
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::post("/model/echo")
        .header("host", gw.host())
        .header("authorization", auth())
        .body(body)
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(20), async {
        let resp = tx.send_request(req).await.expect("response head");
        let status = resp.status();
        (
            status,
            resp.into_body().collect().await.expect("body").to_bytes(),
        )
    })
    .await
    .expect("full duplex must not deadlock");
    assert_eq!(resp.0, 200, "{}", gw.logs());
    assert_eq!(resp.1.len(), 64 * 64 * 1024);
    for (i, chunk) in resp.1.chunks(64 * 1024).enumerate() {
        assert!(chunk.iter().all(|&b| b == i as u8), "piece {i} differs");
    }
}

/// A request body handed out in pieces, with no length announced.
struct Pieces(std::collections::VecDeque<Bytes>);

impl http_body::Body for Pieces {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[tokio::test]
async fn a_stale_pooled_connection_is_retried_for_idempotent_requests_only_when_safe() {
    // Each connection answers one request and then closes without saying
    // so, and without the gateway having a chance to notice: the close
    // comes right when the next request is written.
    let answered = Arc::new(AtomicUsize::new(0));
    let a2 = answered.clone();
    let script: Script = Arc::new(move |mut tcp| {
        let a2 = a2.clone();
        Box::pin(async move {
            let mut buf = Vec::new();
            if read_head(&mut tcp, &mut buf).await.is_some() {
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                a2.fetch_add(1, Ordering::SeqCst);
                // Wait for the next request, then drop it unanswered.
                let _ = read_head(&mut tcp, &mut buf).await;
            }
        })
    });
    let up = scripted(script).await;
    let gw = Gateway::start(&config(&up.url));
    let h = [("authorization", auth())];
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for i in 0..4 {
        let a = get(&gw, "/model/x", &h).await;
        assert_eq!(a.status, 200, "GET {i}: {a:?}\n{}", gw.logs());
    }
    // A POST is not idempotent: it is not sent twice.
    let a = send(&gw, "POST", "/model/x", &h, "{}").await;
    assert_eq!(a.status, 502, "{a:?}");
    assert_eq!(a.error(), "upstream_unavailable");
    assert_eq!(answered.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_put_with_a_body_is_never_sent_twice() {
    // As above, but the request on the stale connection is a PUT with a
    // body: idempotent, yet its body has gone out, so it is not resent (a
    // resend could only repeat the head, with no body to follow).
    let heads = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let h2 = heads.clone();
    let script: Script = Arc::new(move |mut tcp| {
        let h2 = h2.clone();
        Box::pin(async move {
            let mut buf = Vec::new();
            if let Some(head) = read_head(&mut tcp, &mut buf).await {
                h2.lock().unwrap().push(head);
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                if let Some(head) = read_head(&mut tcp, &mut buf).await {
                    h2.lock().unwrap().push(head);
                }
            }
        })
    });
    let up = scripted(script).await;
    let gw = Gateway::start(&config(&up.url));
    let h = [("authorization", auth())];
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(get(&gw, "/model/x", &h).await.status, 200);
    let a = send(&gw, "PUT", "/model/x", &h, "{\"v\":1}").await;
    assert_eq!(a.status, 502, "{a:?}\n{}", gw.logs());
    let puts = heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.starts_with("PUT"))
        .count();
    assert_eq!(puts, 1, "the PUT reached the upstream {puts} times");
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_ipv6_literal_upstream_is_reached() {
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while read_head(&mut tcp, &mut buf).await.is_some() {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nv6ok")
                        .await;
                }
            });
        }
    });
    let gw = Gateway::start(&config(&format!("http://[::1]:{port}")));
    let a = get(&gw, "/model/x", &[("authorization", &auth())]).await;
    assert_eq!(
        (a.status, &a.body[..]),
        (200, &b"v6ok"[..]),
        "{a:?}\n{}",
        gw.logs()
    );
}

/// The upstream timeout on a pooled connection: each request gets the full
/// `upstream_timeout` for its head, counted from its own start, not from an
/// earlier request's (the connection keeps one armed sleep for all of
/// them), and a request that gets no head in time is 504 and its
/// connection is not reused.
#[tokio::test]
async fn each_request_on_a_pooled_connection_gets_its_own_upstream_timeout() {
    // The first request on a connection is answered at once; the second
    // after 600 ms; the third never.
    let up = scripted(Arc::new(|mut tcp: TcpStream| {
        Box::pin(async move {
            let mut buf = Vec::new();
            let mut n = 0;
            while read_head(&mut tcp, &mut buf).await.is_some() {
                n += 1;
                match n {
                    1 => {}
                    2 => tokio::time::sleep(Duration::from_millis(600)).await,
                    _ => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                }
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if tcp.write_all(ok).await.is_err() {
                    return;
                }
            }
        })
    }))
    .await;
    let gw = Gateway::start(&format!(
        "limits: {{ upstream_timeout: 1s }}\n{}",
        config(&up.url)
    ));
    let a = get(&gw, "/model/x", &[("authorization", &auth())]).await;
    assert_eq!(a.status, 200, "{a:?}");
    // 400 ms later, a request that takes 600 ms: past the first request's
    // deadline, inside its own.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let a = get(&gw, "/model/x", &[("authorization", &auth())]).await;
    assert_eq!(a.status, 200, "{a:?}\n{}", gw.logs());
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    let started = std::time::Instant::now();
    let a = get(&gw, "/model/x", &[("authorization", &auth())]).await;
    let waited = started.elapsed();
    assert_eq!(a.status, 504, "{a:?}");
    assert_eq!(a.error(), "upstream_timeout");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "504 after {waited:?}"
    );
    // The timed-out connection is closed, not pooled: a new one next time.
    let a = get(&gw, "/model/x", &[("authorization", &auth())]).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

/// An upstream that sends interim answers without end gets 502 at once,
/// not after `upstream_timeout` of reading them.
#[tokio::test]
async fn endless_interim_answers_are_502_at_once() {
    let up = scripted(Arc::new(|mut tcp: TcpStream| {
        Box::pin(async move {
            let mut buf = Vec::new();
            if read_head(&mut tcp, &mut buf).await.is_none() {
                return;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while tokio::time::Instant::now() < deadline {
                if tcp
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    }))
    .await;
    let gw = Gateway::start(&format!(
        "limits: {{ upstream_timeout: 15s }}\n{}",
        config(&up.url)
    ));
    let started = std::time::Instant::now();
    let a = get(&gw, "/model/x", &[("authorization", &auth())]).await;
    assert_eq!(a.status, 502, "{a:?}");
    assert_eq!(a.error(), "upstream_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
