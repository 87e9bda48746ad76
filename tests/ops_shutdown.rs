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
