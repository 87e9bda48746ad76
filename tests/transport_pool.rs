//! The upstream connection pool: connections are reused across requests,
//! an upstream that closes idle connections costs no failed request, and a
//! response dropped half-read does not poison the pool.
mod common;
use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A raw HTTP/1.1 upstream. Every connection answers requests (200, body
/// `ok`, keep-alive) until `close_after` answers, then closes the socket
/// without a `Connection: close` header, as an upstream whose keep-alive
/// timeout ran out does. Counts connections and answers.
struct RawUpstream {
    url: String,
    connections: Arc<AtomicUsize>,
    answers: Arc<AtomicUsize>,
}

async fn raw_upstream(close_after: usize) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(AtomicUsize::new(0));
    let (c, a) = (connections.clone(), answers.clone());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let a = a.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut served = 0;
                let mut chunk = [0u8; 4096];
                while served < close_after {
                    let Ok(n) = tcp.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    // Requests here have no body: a head ends the request.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if tcp.write_all(resp).await.is_err() {
                            return;
                        }
                        a.fetch_add(1, Ordering::SeqCst);
                        served += 1;
                    }
                }
                // Let the gateway see the answer before the close.
                tokio::time::sleep(Duration::from_millis(20)).await;
            });
        }
    });
    RawUpstream {
        url,
        connections,
        answers,
    }
}

fn body(up_url: &str) -> String {
    model_route_body(up_url, "{ namespace: models, actions: [read] }")
}

#[tokio::test]
async fn keep_alive_connections_are_reused() {
    let up = raw_upstream(usize::MAX).await;
    let gw = Gateway::start(&body(&up.url));
    let auth = basic("K1", SECRET);
    for _ in 0..20 {
        let a = get(&gw, "/model/x", &[("authorization", &auth)]).await;
        assert_eq!(a.status, 200, "{}", gw.logs());
        assert_eq!(&a.body[..], b"ok");
    }
    assert_eq!(up.answers.load(Ordering::SeqCst), 20);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "sequential requests should share one upstream connection"
    );
}

#[tokio::test]
async fn an_upstream_closing_idle_connections_costs_no_request() {
    // One answer per connection, then the upstream hangs up.
    let up = raw_upstream(1).await;
    let gw = Gateway::start(&body(&up.url));
    let auth = basic("K1", SECRET);
    for i in 0..10 {
        let a = get(&gw, "/model/x", &[("authorization", &auth)]).await;
        assert_eq!(a.status, 200, "request {i}: {a:?}\n{}", gw.logs());
        // Give the close time to arrive, so the pooled connection is stale.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(up.answers.load(Ordering::SeqCst), 10);
    assert_eq!(up.connections.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn a_dead_upstream_is_502_and_a_recovered_one_works_again() {
    // Nothing listens there, and nothing else can take the port meanwhile.
    let (hold, addr) = refusing_addr();
    let gw = Gateway::start(&body(&format!("http://{addr}")));
    let auth = basic("K1", SECRET);
    let a = get(&gw, "/model/x", &[("authorization", &auth)]).await;
    assert_eq!(a.status, 502);
    assert!(
        String::from_utf8_lossy(&a.body).contains("upstream_unavailable"),
        "{a:?}"
    );
    // The upstream comes up on that port: the next request gets through.
    drop(hold);
    let listener = TcpListener::bind(addr).await.expect("rebind");
    tokio::spawn(async move {
        if let Ok((mut tcp, _)) = listener.accept().await {
            let mut chunk = [0u8; 4096];
            let _ = tcp.read(&mut chunk).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let a = get(&gw, "/model/x", &[("authorization", &auth)]).await;
    assert_eq!(a.status, 200, "{a:?}");
}
