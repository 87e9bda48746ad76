//! Memory a burst of connections leaves behind: once they close, the
//! gateway gives it back to the kernel by itself (its housekeeping asks
//! the allocator every 5 s), with no further traffic to prompt it.

mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn memory_of_closed_connections_is_given_back_without_traffic() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    let before = rss_kib(gw.pid());
    // Each connection is answered once, so it holds its buffers while idle.
    let req = format!(
        "GET /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\r\n",
        basic("K1", SECRET)
    );
    let mut held = Vec::new();
    for _ in 0..1500 {
        let mut s = connect(&gw, &[b"http/1.1"]).await;
        s.write_all(req.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while !got.ends_with(b"\r\n\r\nok") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before the answer");
            got.extend_from_slice(&buf[..n]);
        }
        held.push(s);
    }
    let peak = rss_kib(gw.pid());
    let grown = peak.saturating_sub(before);
    assert!(
        grown > 10 * 1024,
        "1,500 idle connections grew RSS by only {grown} KiB"
    );
    drop(held);
    // Housekeeping runs every 5 s; allow three runs.
    let deadline = Instant::now() + Duration::from_secs(16);
    let mut now = rss_kib(gw.pid());
    while now > before + grown / 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        now = rss_kib(gw.pid());
    }
    assert!(
        now <= before + grown / 2,
        "RSS {now} KiB 16 s after the connections closed (before them {before}, with them {peak})"
    );
}
