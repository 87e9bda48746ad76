//! TCP keepalive on client connections: the gateway's end of a quiet
//! client connection has the kernel's keepalive timer running, set to fire
//! 30 s after the last traffic, over HTTP/1.1 and HTTP/2 alike. (A vanished
//! client cannot be simulated on loopback, where the kernel answers the
//! probes; the timer is what the kernel shows of the setting.)

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The timer of the TCP socket from `local` to `remote`, as
/// `/proc/net/tcp` shows it: which timer runs (2: keepalive) and in how
/// many clock ticks (1/100 s) it fires.
fn socket_timer(local: SocketAddr, remote: SocketAddr) -> Option<(u32, u64)> {
    // `0100007F:1F90`: the address as the kernel's u32 in host order, the
    // port big-endian, both in hex.
    let hex = |a: SocketAddr| {
        let SocketAddr::V4(a) = a else {
            panic!("{a} is not IPv4")
        };
        format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        )
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] != local || f[2] != remote {
            return None;
        }
        let (timer, when) = f[5].split_once(':')?;
        Some((
            u32::from_str_radix(timer, 16).ok()?,
            u64::from_str_radix(when, 16).ok()?,
        ))
    })
}

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
    let (timer, when) = socket_timer(gw.https, client)
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
