//! A client that announces a signed form body and then stalls is answered
//! 408 `request_timeout` within `upstream_timeout`; nothing is forwarded.
mod common;
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn stalled_signed_body_times_out() {
    let up = Upstream::start().await;
    let body = format!("limits: {{ upstream_timeout: 1s }}\n{}", standard_body(&up));
    let gw = Gateway::start(&body);
    let mut s = connect(&gw, &[b"http/1.1"]).await;
    let head = format!(
        "POST /model/ABC-1 HTTP/1.1\r\nHost: {}\r\nAuthorization: OAuth oauth_consumer_key=\"K1\"\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\na=1&b=2",
        gw.host()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert_eq!(raw_status(&answer), Some(408), "{answer}");
    assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");
    assert_eq!(up.count(), 0, "nothing reaches the upstream");
}
