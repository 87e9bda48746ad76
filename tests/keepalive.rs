//! TCP keepalive on client connections: the gateway's end of a quiet
//! client connection has the kernel's keepalive timer running, set to fire
//! 30 s after the last traffic, over HTTP/1.1 and HTTP/2 alike. (A vanished
//! client cannot be simulated on loopback, where the kernel answers the
//! probes; the timer is what the kernel shows of the setting.)

mod common;
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn keepalive_timer_runs(alpn: &[u8]) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&model_route_body(
        &up.url(),
        "{ namespace: models, actions: [read] }",
    ));
    let mut s = connect(&gw, &[alpn]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(alpn));
    if alpn == b"http/1.1" {
        // A request and its answer first: the timer runs between requests.
        s.write_all(b"GET /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 401"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    // Whatever was in flight is acknowledged well within this.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = s.get_ref().0.local_addr().unwrap();
    let TcpEntry { timer, when, .. } = tcp_entry(gw.https, client)
        .expect("the gateway's end of the connection is in /proc/net/tcp");
    assert_eq!(
        timer, 2,
        "no keepalive timer on the gateway's end (timer {timer}, {when} ticks)"
    );
    // Set for 30 s when the connection was accepted, under a second ago
    // (when it fires, the kernel probes only if nothing came in 30 s).
    assert!(
        (2_800..=3_000).contains(&when),
        "the keepalive timer fires in {when} ticks, not about 30 s"
    );
}

#[tokio::test]
async fn quiet_http1_connection_has_a_keepalive_timer() {
    keepalive_timer_runs(b"http/1.1").await;
}

#[tokio::test]
async fn quiet_http2_connection_has_a_keepalive_timer() {
    keepalive_timer_runs(b"h2").await;
}
