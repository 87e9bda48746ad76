//! Path safety: hostile request targets sent byte for byte. Each one is
//! either refused (400 `invalid_path`, or refused by the authorisation of the
//! normalised path) or forwarded with a normalised path that stays inside
//! what was authorised.

mod common;
use common::*;

/// `/model` (K1 holds models:create,read on `/model/ABC-*`) and `/admin`
/// (namespace admin, for which K1 holds nothing), both to the same upstream.
fn body(up: &Upstream) -> String {
    format!(
        "{std}  - id: ADM
    owner: root
    secret_hash: {hash}
    grants:
      - {{ namespace: admin, actions: [read] }}
",
        std = standard_body(up).replace(
            "keys:\n",
            &format!(
                "  - name: admin\n    match: {{ path_prefix: /admin }}\n    upstream: {}\n    namespace: admin\nkeys:\n",
                up.url()
            )
        ),
        hash = secret_hash("another-secret-0123456789abcdefghijklmnop"),
    )
}

struct Seen {
    status: Option<u16>,
    error: String,
    raw: String,
}

/// Send `GET <target>` with K1's credentials, byte for byte.
async fn hit(gw: &Gateway, target: &[u8]) -> Seen {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            basic("K1", SECRET)
        )
        .as_bytes(),
    );
    let raw = raw(gw, &req).await;
    let error = raw
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(b).ok())
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_default();
    Seen {
        status: raw_status(&raw),
        error,
        raw,
    }
}

/// Nothing outside `/model/ABC-*` ever reached the upstream.
fn assert_inside(up: &Upstream) {
    for r in up.requests() {
        assert!(
            r.target.starts_with("/model/ABC-"),
            "the upstream received a path outside the grant: {r:?}"
        );
        let path = r.target.split('?').next().unwrap_or_default();
        assert!(!path.contains(".."), "dot segments forwarded: {r:?}");
    }
}

async fn expect_invalid_path(target: &[u8]) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let seen = hit(&gw, target).await;
    assert_eq!(
        seen.status,
        Some(400),
        "{}: {}",
        String::from_utf8_lossy(target),
        seen.raw
    );
    // hyper itself may refuse a target it cannot parse (no JSON body then).
    if !seen.error.is_empty() {
        assert_eq!(seen.error, "invalid_path", "{}", seen.raw);
    }
    assert_eq!(up.count(), 0, "forwarded: {:?}", up.requests());
}

async fn expect_status_nothing_forwarded(target: &[u8], status: u16, error: &str) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let seen = hit(&gw, target).await;
    assert_eq!(
        (seen.status, seen.error.as_str()),
        (Some(status), error),
        "{}: {}",
        String::from_utf8_lossy(target),
        seen.raw
    );
    assert_eq!(up.count(), 0, "forwarded: {:?}", up.requests());
}

async fn expect_forwarded_as(target: &[u8], forwarded: &str) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let seen = hit(&gw, target).await;
    assert_eq!(
        seen.status,
        Some(200),
        "{}: {}",
        String::from_utf8_lossy(target),
        seen.raw
    );
    assert_eq!(up.count(), 1);
    assert_eq!(up.last().target, forwarded);
    assert_inside(&up);
}

#[tokio::test]
async fn dot_dot_climbs_to_admin_route_and_is_refused_there() {
    // Normalised to /admin: authorised against the admin route, where K1
    // holds nothing.
    expect_status_nothing_forwarded(b"/model/../admin", 403, "insufficient_grant").await;
}

#[tokio::test]
async fn encoded_dot_dot_is_resolved_before_authorisation() {
    expect_status_nothing_forwarded(b"/model/%2e%2e/admin", 403, "insufficient_grant").await;
    expect_status_nothing_forwarded(b"/model/%2E%2E/admin", 403, "insufficient_grant").await;
}

#[tokio::test]
async fn mixed_encoded_dot_dot_lands_outside_any_route() {
    expect_status_nothing_forwarded(b"/model/.%2E/x", 404, "no_route").await;
}

#[tokio::test]
async fn encoded_slash_refused() {
    expect_invalid_path(b"/model%2f..%2fadmin").await;
    expect_invalid_path(b"/model/ABC-1%2F..%2F..%2Fadmin").await;
}

#[tokio::test]
async fn encoded_backslash_refused() {
    expect_invalid_path(b"/model/ABC-1%5c..%5cadmin").await;
}

#[tokio::test]
async fn raw_backslash_refused() {
    expect_invalid_path(b"/model/ABC-1\\..\\admin").await;
}

#[tokio::test]
async fn path_parameter_refused() {
    expect_invalid_path(b"/model/ABC-1;jsessionid=x").await;
    expect_invalid_path(b"/model;x=1/../admin").await;
}

#[tokio::test]
async fn overlong_utf8_dots_refused() {
    expect_invalid_path(b"/model/%c0%ae%c0%ae/admin").await;
    expect_invalid_path(b"/model/%e0%80%ae%e0%80%ae/admin").await;
}

#[tokio::test]
async fn double_encoding_refused() {
    expect_invalid_path(b"/model/%252e%252e/admin").await;
    expect_invalid_path(b"/model/ABC-1/%252e%252e/XYZ-1").await;
}

#[tokio::test]
async fn control_characters_and_bad_escapes_refused() {
    expect_invalid_path(b"/model/ABC-1%00").await;
    expect_invalid_path(b"/model/ABC-1%0d%0aX-Injected:%201").await;
    expect_invalid_path(b"/model/ABC-1%zz").await;
}

#[tokio::test]
async fn climbing_above_root_refused() {
    expect_invalid_path(b"/../model/ABC-1").await;
    expect_invalid_path(b"/model/../../etc/passwd").await;
}

#[tokio::test]
async fn repeated_slashes_normalised() {
    expect_forwarded_as(b"//model//ABC-1", "/model/ABC-1").await;
}

#[tokio::test]
async fn dot_segments_inside_the_grant_normalised() {
    expect_forwarded_as(b"/model/ABC-2/../ABC-3", "/model/ABC-3").await;
    expect_forwarded_as(b"/model/./ABC-1", "/model/ABC-1").await;
    expect_forwarded_as(b"/mod%65l/ABC-%31", "/model/ABC-1").await;
}

#[tokio::test]
async fn trailing_dot_dot_leaves_the_grant() {
    // /model/ABC-1/.. is /model/, which /model/ABC-* does not cover.
    expect_status_nothing_forwarded(b"/model/ABC-1/..", 403, "insufficient_grant").await;
}

#[tokio::test]
async fn dot_dot_escape_to_other_resource_refused() {
    for t in [
        &b"/model/ABC-1/../XYZ-1"[..],
        b"/model/ABC-1/%2e%2e/XYZ-1",
        b"/model/ABC-1/.%2e/XYZ-1",
        b"/model/ABC-1/./../XYZ-1",
        b"//model//ABC-1//..//XYZ-1",
    ] {
        expect_status_nothing_forwarded(t, 403, "insufficient_grant").await;
    }
}

#[tokio::test]
async fn query_is_not_taken_as_path() {
    expect_forwarded_as(
        b"/model/ABC-1?next=../../admin",
        "/model/ABC-1?next=../../admin",
    )
    .await;
}

#[tokio::test]
async fn h2_dot_segments_normalised_before_authorisation() {
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let s = connect(&gw, &[b"h2"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    for (path, want) in [
        ("/model/ABC-1/../XYZ-1", 403),
        ("/model/ABC-1/%2e%2e/XYZ-1", 403),
        ("/model/%2e%2e/admin", 403),
        ("/model%2f..%2fadmin", 400),
        ("/model/ABC-1;x=1", 400),
        ("//model//ABC-7", 200),
    ] {
        let req = http::Request::get(format!("https://{}{path}", gw.host()))
            .header("authorization", basic("K1", SECRET))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let status = sender
            .send_request(req)
            .await
            .expect("h2 response")
            .status();
        assert_eq!(status.as_u16(), want, "{path}");
    }
    assert_eq!(up.count(), 1, "{:?}", up.requests());
    assert_eq!(up.last().target, "/model/ABC-7");
    assert_inside(&up);
}
