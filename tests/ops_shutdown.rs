//! SIGTERM: stop accepting, finish what is in flight, exit 0.
mod common;
use common::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let up = Upstream::start().await;
    let body = standard_body(&up).replace("/model/ABC-*", "/**").replace(
        "keys:\n",
        &format!(
            "  - name: slow\n    match: {{ path_prefix: /slow }}\n    upstream: {}\n    namespace: models\nkeys:\n",
            up.url()
        ),
    );
    let gw = std::sync::Arc::new(Gateway::start(&body));
    let g = gw.clone();
    let slow = tokio::spawn(async move {
        get(&g, "/slow/1", &[("authorization", &basic("K1", SECRET))]).await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.count() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.count(), 1, "the slow request never reached the upstream");
    gw.signal("TERM");
    // Draining: no longer ready, and new connections are not served.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut ready = true;
    while Instant::now() < deadline {
        if admin_get(gw.admin, "/readyz").map(|r| r.0) != Some(200) {
            ready = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!ready, "still ready while draining");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut refused = false;
    while !refused && Instant::now() < deadline {
        refused = tokio::net::TcpStream::connect(gw.https).await.is_err();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a = slow.await.unwrap();
    assert_eq!(a.status, 200, "the in-flight request was cut: {:?}", a.body);
    assert!(refused, "new connections were accepted while draining");
    let mut gw = std::sync::Arc::into_inner(gw).expect("one owner");
    assert_eq!(
        gw.wait_exit(Duration::from_secs(10)),
        Some(0),
        "logs:\n{}",
        gw.logs()
    );
}

/// An idle keep-alive connection is closed as soon as draining starts, not
/// left open until `shutdown_grace` (30 s) runs out.
#[tokio::test]
async fn sigterm_closes_idle_keep_alive_connections_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start().await;
    let mut gw = Gateway::start(&standard_body(&up));
    let mut conn = connect(&gw, &[b"http/1.1"]).await;
    let request = format!(
        "GET /model/ABC-1 HTTP/1.1\r\nhost: {}\r\nauthorization: {}\r\n\r\n",
        gw.host(),
        basic("K1", SECRET)
    );
    conn.write_all(request.as_bytes()).await.expect("write");
    // Read the whole answer (the upstream's body is short), leaving the
    // connection open and idle.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    assert_eq!(raw_status(&String::from_utf8_lossy(&answer)), Some(200));
    let began = Instant::now();
    gw.signal("TERM");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the idle connection was still open 5 s into the drain"
    );
    assert_eq!(
        gw.wait_exit(Duration::from_secs(5)),
        Some(0),
        "logs:\n{}",
        gw.logs()
    );
    assert!(began.elapsed() < Duration::from_secs(10));
}
