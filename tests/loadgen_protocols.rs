//! The bench's load generator (`tools/loadgen`, `portcullis-load`) against
//! the real gateway over real TLS, HTTP/1.1 and HTTP/2 (`--http2`): every
//! request it sends is answered 200 and reaches the upstream. The bench
//! rows depend on it speaking each protocol and signing OAuth 1.0 the way
//! the gateway verifies, and on `--new-connection` opening a connection for
//! every request.
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const OA_SECRET: &str = "loadgen-oauth-secret-0123456789abcdef";

/// `target/<profile>/portcullis-load`, beside the gateway. `cargo test`
/// builds another package's binary only as a test harness, so
/// `scripts/test` builds it first (`cargo build --workspace --bins`).
fn loadgen() -> PathBuf {
    let p = PathBuf::from(BIN).with_file_name("portcullis-load");
    assert!(
        p.exists(),
        "{} is missing: cargo build --workspace --bins (scripts/test does)",
        p.display()
    );
    p
}

/// One short closed-loop run against the gateway at `host`; its `--json`
/// summary.
fn run(host: &str, cert: &Path, mode: &str, extra: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(loadgen());
    cmd.args(["--url", &format!("https://{host}/model/ABC-1")])
        .arg("--cacert")
        .arg(cert)
        .args([
            "--mode", mode, "-c", "2", "-d", "1s", "--warmup", "0s", "--json",
        ]);
    match mode {
        "api_key" => cmd.args(["--key-id", "K1", "--secret", SECRET]),
        _ => cmd.args(["--key-id", "OA1", "--secret", OA_SECRET]),
    };
    cmd.args(extra);
    let out = cmd.output().expect("run portcullis-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "portcullis-load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn every_request_answered_over_http1_and_http2() {
    let up = Upstream::start().await;
    let body = format!(
        "{}  - id: OA1\n    owner: olga\n    secret: ${{OA1_SECRET}}\n    grants:\n      - {{ namespace: models, actions: [read] }}\n",
        standard_body(&up)
    );
    let gw = Gateway::start_with_env(&body, &[("OA1_SECRET", OA_SECRET)]);
    for mode in ["api_key", "oauth1"] {
        for http2 in [false, true] {
            let before = up.count();
            // Off the test's runtime, which serves the upstream meanwhile.
            let (host, cert) = (gw.host(), gw.cert_path());
            let extra: &[&str] = if http2 { &["--http2"] } else { &[] };
            let v = tokio::task::spawn_blocking(move || run(&host, &cert, mode, extra))
                .await
                .unwrap();
            let what = format!("{mode}, http2 {http2}: {v}");
            let n = v["requests"].as_u64().expect("requests");
            assert!(n > 0, "{what}");
            assert_eq!(v["errors"], 0, "{what}");
            assert_eq!(v["status"]["200"].as_u64(), Some(n), "{what}");
            let over_h2 = if http2 { n } else { 0 };
            assert_eq!(v["http2_responses"].as_u64(), Some(over_h2), "{what}");
            // The warm-up's and the last in-flight requests reach the
            // upstream too: at least as many as were counted.
            assert!(up.count() - before >= n as usize, "{what}");
        }
    }
    let last = up.last();
    assert_eq!(last.header("x-auth-key-id").as_deref(), Some("OA1"));
    assert_eq!(last.header("x-auth-scheme").as_deref(), Some("oauth1"));
}

/// A TCP relay in front of the gateway that counts the connections it
/// accepts: what the gateway saw, not what the load generator says.
async fn counting_relay(to: std::net::SocketAddr) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut gw) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut gw).await;
                }
            });
        }
    });
    (port, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connection_mode_opens_a_connection_per_request() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    let (port, accepted) = counting_relay(gw.https).await;
    for http2 in [false, true] {
        for (new_connection, resume) in [(false, false), (true, false), (true, true)] {
            let before = accepted.load(Ordering::SeqCst);
            let cert = gw.cert_path();
            let mut extra = vec![];
            if http2 {
                extra.push("--http2");
            }
            if new_connection {
                extra.push("--new-connection");
            }
            if resume {
                extra.push("--resume");
            }
            let v = tokio::task::spawn_blocking(move || {
                run(&format!("localhost:{port}"), &cert, "api_key", &extra)
            })
            .await
            .unwrap();
            let opened = accepted.load(Ordering::SeqCst) - before;
            let what = format!(
                "http2 {http2}, new connection {new_connection}, resume {resume}: {opened} accepted, {v}"
            );
            let n = v["requests"].as_u64().expect("requests");
            assert!(n > 10, "{what}");
            assert_eq!(v["errors"], 0, "{what}");
            assert_eq!(v["status"]["200"].as_u64(), Some(n), "{what}");
            if new_connection {
                assert_eq!(v["connections_opened"].as_u64(), Some(n), "{what}");
                assert!(opened as u64 >= n, "{what}");
                let resumed = v["connections_resumed"]
                    .as_u64()
                    .expect("connections_resumed");
                if resume {
                    // All but the first few, made before any ticket came.
                    assert!(resumed + 4 >= n, "{what}");
                } else {
                    assert_eq!(resumed, 0, "{what}");
                }
            } else {
                // Two keep-alive connections, `-c 2`, for the whole run.
                assert_eq!(opened, 2, "{what}");
            }
        }
    }
}
