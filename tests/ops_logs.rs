//! Access logs: one line per request, text or JSON.
mod common;
use common::*;
use std::time::{Duration, Instant};

/// Wait (at most 5 s) until the logs hold `n` lines that satisfy `pred`.
fn wait_lines(gw: &Gateway, n: usize, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<String> = gw
            .logs()
            .lines()
            .filter(|l| pred(l))
            .map(String::from)
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The text without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Logs go to a pipe here (as to journald, a file or a log shipper): they
/// must be plain text, without terminal colour codes.
#[tokio::test]
async fn no_colour_codes_when_not_a_terminal() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    let a = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &basic("K1", SECRET))],
    )
    .await;
    assert_eq!(a.status, 200);
    let lines = wait_lines(&gw, 1, |l| l.contains("portcullis::access"));
    assert_eq!(lines.len(), 1, "{}", gw.logs());
    let logs = gw.logs();
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI escape codes in logs written to a pipe:\n{logs:?}"
    );
}

#[tokio::test]
async fn text_access_log_has_one_line_per_request() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    let ok = get(
        &gw,
        "/model/ABC-1",
        &[
            ("authorization", &basic("K1", SECRET)),
            ("x-request-id", "rid-text-ok"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-request-id").as_deref(), Some("rid-text-ok"));
    let bad = get(
        &gw,
        "/model/ABC-1",
        &[
            ("authorization", &basic("K1", "wrong")),
            ("x-request-id", "rid-text-bad"),
        ],
    )
    .await;
    assert_eq!(bad.status, 401);
    let lines = wait_lines(&gw, 2, |l| l.contains("portcullis::access"));
    assert_eq!(
        lines.len(),
        2,
        "expected exactly two access lines:\n{}",
        gw.logs()
    );
    // Judged on the text without terminal colours (see `no_colour_codes_when_not_a_terminal`).
    let lines: Vec<String> = lines.iter().map(|l| strip_ansi(l)).collect();

    let ok_line = lines
        .iter()
        .find(|l| l.contains("rid-text-ok"))
        .expect("line of the good request");
    for needle in [
        "route=\"models\"",
        "key_id=\"K1\"",
        "scheme=\"api_key\"",
        "decision=\"allowed\"",
        "status=200",
        "latency_us=",
        "method=GET",
        "path=/model/ABC-1",
    ] {
        let plain = needle.replace('"', "");
        assert!(
            ok_line.contains(needle) || ok_line.contains(&plain),
            "`{needle}` missing from: {ok_line}"
        );
    }
    let bad_line = lines
        .iter()
        .find(|l| l.contains("rid-text-bad"))
        .expect("line of the refused request");
    for needle in [
        "decision=\"denied\"",
        "status=401",
        "error=\"invalid_credentials\"",
    ] {
        let plain = needle.replace('"', "");
        assert!(
            bad_line.contains(needle) || bad_line.contains(&plain),
            "`{needle}` missing from: {bad_line}"
        );
    }
}

#[tokio::test]
async fn json_access_log_lines_parse_and_carry_the_fields() {
    let up = Upstream::start().await;
    let body = format!("{}log: {{ format: json }}\n", standard_body(&up));
    let gw = Gateway::start(&body);
    let a = get(
        &gw,
        "/model/ABC-1",
        &[
            ("authorization", &basic("K1", SECRET)),
            ("x-request-id", "rid-json-ok"),
        ],
    )
    .await;
    assert_eq!(a.status, 200);
    let a = get(&gw, "/model/ABC-1", &[("x-request-id", "rid-json-missing")]).await;
    assert_eq!(a.status, 401);
    let a = get(&gw, "/elsewhere", &[("x-request-id", "rid-json-noroute")]).await;
    assert_eq!(a.status, 404);
    let lines = wait_lines(&gw, 3, |l| l.contains("portcullis::access"));
    assert_eq!(
        lines.len(),
        3,
        "expected three access lines:\n{}",
        gw.logs()
    );

    // Every line the gateway writes is JSON.
    for l in gw.logs().lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_ok(),
            "not JSON: {l}"
        );
    }
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |rid: &str| {
        parsed
            .iter()
            .find(|v| v["request_id"] == rid)
            .unwrap_or_else(|| panic!("no line for {rid}: {parsed:?}"))
            .clone()
    };
    let ok = find("rid-json-ok");
    assert_eq!(ok["route"], "models", "{ok}");
    assert_eq!(ok["key_id"], "K1", "{ok}");
    assert_eq!(ok["scheme"], "api_key", "{ok}");
    assert_eq!(ok["decision"], "allowed", "{ok}");
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(ok["method"], "GET", "{ok}");
    assert_eq!(ok["path"], "/model/ABC-1", "{ok}");
    assert!(ok["latency_us"].is_u64(), "{ok}");
    assert_eq!(ok["target"], "portcullis::access", "{ok}");

    let missing = find("rid-json-missing");
    assert_eq!(missing["status"], 401, "{missing}");
    assert_eq!(missing["decision"], "denied", "{missing}");
    assert_eq!(missing["error"], "missing_credentials", "{missing}");
    assert_eq!(missing["key_id"], "-", "{missing}");

    let noroute = find("rid-json-noroute");
    assert_eq!(noroute["status"], 404, "{noroute}");
    assert_eq!(noroute["route"], "-", "{noroute}");
}

/// With one worker thread (`PORTCULLIS_THREADS=1`, as when the gateway is
/// given one CPU) the batched log lines still reach stderr within a fraction
/// of a second of the request, not only when 64 KiB have gathered or at
/// shutdown.
#[tokio::test]
async fn single_threaded_runtime_writes_lines_promptly() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with_env(&standard_body(&up), &[("PORTCULLIS_THREADS", "1")]);
    for i in 1..=3 {
        let a = get(
            &gw,
            "/model/ABC-1",
            &[("authorization", &basic("K1", SECRET))],
        )
        .await;
        assert_eq!(a.status, 200);
        let lines = wait_lines(&gw, i, |l| l.contains("portcullis::access"));
        assert_eq!(lines.len(), i, "{}", gw.logs());
    }
    assert_eq!(up.count(), 3);
}

/// `n` GET requests for `/model/ABC-1` with K1's Basic credentials over one
/// keep-alive connection; their statuses.
async fn keep_alive_gets(gw: &Gateway, n: usize) -> Vec<u16> {
    use http_body_util::{BodyExt, Empty};
    let stream = connect(gw, &[b"http/1.1"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("http handshake");
    tokio::spawn(conn);
    let auth = basic("K1", SECRET);
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        let req = http::Request::get("/model/ABC-1")
            .header("host", gw.host())
            .header("authorization", &auth)
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        sender.ready().await.expect("connection ready");
        let resp = sender.send_request(req).await.expect("send request");
        statuses.push(resp.status().as_u16());
        let _ = resp.into_body().collect().await;
    }
    statuses
}

/// A stderr nobody reads (a stuck log shipper, a terminal paused with ^S)
/// does not stop the gateway: requests are still served, the lines that do
/// not fit the gateway's buffer are dropped and counted, a warning says so
/// once stderr is read again, and the gateway still shuts down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unread_stderr_does_not_stop_the_gateway() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    gw.pause_logs(true);
    // About 250 bytes an access line: 8,000 lines are about 2 MB, more than
    // the pipe (64 KiB) and the gateway's buffer (1 MiB) hold together.
    let (conns, each) = (4, 2000);
    let gw = std::sync::Arc::new(gw);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(60), keep_alive_gets(&gw, each))
                .await
                .expect("requests stalled while stderr was not read")
        }));
    }
    for t in tasks {
        let statuses = t.await.unwrap();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    assert_eq!(up.count(), conns * each);
    let dropped = gw
        .metric("portcullis_log_lines_dropped_total")
        .expect("the dropped-lines counter");
    assert!(dropped > 0.0, "no lines dropped with stderr unread");
    assert!(dropped < (conns * each) as f64, "{dropped}");

    gw.pause_logs(false);
    let warned = wait_lines(&gw, 1, |l| l.contains("log lines dropped"));
    assert_eq!(warned.len(), 1, "{}", gw.logs());
    let kept = wait_lines(&gw, 1000, |l| l.contains("portcullis::access"));
    assert!(kept.len() >= 1000, "{} access lines", kept.len());
    // No line is torn: every access line that arrived is whole.
    for l in &kept {
        let latency = l.rsplit_once(" latency_us=").map(|(_, v)| v);
        assert!(
            latency.is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())),
            "torn line: {l}"
        );
    }
    let mut gw = std::sync::Arc::into_inner(gw).expect("one owner");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Shutdown does not wait forever for a stderr nobody reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_with_unread_stderr_exits() {
    let up = Upstream::start().await;
    let mut gw = Gateway::start(&standard_body(&up));
    gw.pause_logs(true);
    let statuses = tokio::time::timeout(Duration::from_secs(60), keep_alive_gets(&gw, 1500))
        .await
        .expect("requests stalled while stderr was not read");
    assert!(statuses.iter().all(|s| *s == 200));
    // The gateway waits a bounded time (2 s) for stderr, not for ever.
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(15)), Some(0));
}
