//! Route matching as a client sees it: segment boundaries, longest prefix,
//! host-specific routes, public routes, and the 404 body.

mod common;
use common::*;

struct Ups {
    model: Upstream,
    admin: Upstream,
    host: Upstream,
    public: Upstream,
}

async fn setup() -> (Ups, Gateway) {
    let ups = Ups {
        model: Upstream::start().await,
        admin: Upstream::start().await,
        host: Upstream::start().await,
        public: Upstream::start().await,
    };
    let body = format!(
        "routes:
  - name: models
    match: {{ path_prefix: /model }}
    upstream: {m}
    namespace: models
  - name: model-admin
    match: {{ path_prefix: /model/admin }}
    upstream: {a}
    namespace: models
  - name: host-models
    match: {{ host: stl.test, path_prefix: /model }}
    upstream: {h}
    namespace: models
  - name: status
    match: {{ path_prefix: /status }}
    upstream: {p}
    public: true
keys:
  - id: K1
    owner: bob
    secret_hash: {hash}
    grants:
      - {{ namespace: models, actions: [create, read] }}
",
        m = ups.model.url(),
        a = ups.admin.url(),
        h = ups.host.url(),
        p = ups.public.url(),
        hash = secret_hash(SECRET)
    );
    let gw = Gateway::start(&body);
    (ups, gw)
}

fn auth() -> String {
    basic("K1", SECRET)
}

fn total(u: &Ups) -> usize {
    u.model.count() + u.admin.count() + u.host.count() + u.public.count()
}

#[tokio::test]
async fn prefix_matches_on_segment_boundary() {
    let (u, gw) = setup().await;
    let a = get(&gw, "/model", &[("authorization", &auth())]).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(u.model.last().target, "/model");
    let a = get(&gw, "/model/x", &[("authorization", &auth())]).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(u.model.last().target, "/model/x");
    let a = get(&gw, "/model/", &[("authorization", &auth())]).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(u.model.last().target, "/model/");
    assert_eq!(u.model.count(), 3);
}

#[tokio::test]
async fn no_route_past_segment_boundary() {
    let (u, gw) = setup().await;
    for p in [
        "/modelx",
        "/model_private",
        "/model.json",
        "/models/x",
        "/",
        "/statusx",
    ] {
        let a = get(&gw, p, &[("authorization", &auth())]).await;
        assert_eq!(
            (a.status, a.error()),
            (404, "no_route".to_string()),
            "{p}: {a:?}"
        );
    }
    assert_eq!(total(&u), 0);
}

#[tokio::test]
async fn longest_prefix_wins() {
    let (u, gw) = setup().await;
    let a = get(&gw, "/model/admin/x", &[("authorization", &auth())]).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(u.admin.count(), 1);
    assert_eq!(u.admin.last().target, "/model/admin/x");
    let a = get(&gw, "/model/admin", &[("authorization", &auth())]).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(u.admin.count(), 2);
    // `/model/administrator` is not under `/model/admin`.
    let a = get(&gw, "/model/administrator", &[("authorization", &auth())]).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(u.admin.count(), 2);
    assert_eq!(u.model.last().target, "/model/administrator");
}

#[tokio::test]
async fn host_specific_route_case_insensitive_port_ignored() {
    let (u, gw) = setup().await;
    for host in ["stl.test", "STL.Test", "stl.test:8443", "STL.TEST:1"] {
        let a = get(
            &gw,
            "/model/x",
            &[("host", host), ("authorization", &auth())],
        )
        .await;
        assert_eq!(a.status, 200, "{host}: {a:?}");
    }
    assert_eq!(u.host.count(), 4);
    assert_eq!(u.model.count(), 0);
    // Other hosts fall back to the host-less route.
    for host in ["other.test", "stl.test.evil", "xstl.test", &gw.host()] {
        let a = get(
            &gw,
            "/model/x",
            &[("host", host), ("authorization", &auth())],
        )
        .await;
        assert_eq!(a.status, 200, "{host}: {a:?}");
    }
    assert_eq!(u.host.count(), 4);
    assert_eq!(u.model.count(), 4);
}

#[tokio::test]
async fn public_route_needs_no_credentials_and_sends_no_identity() {
    let (u, gw) = setup().await;
    let a = get(
        &gw,
        "/status/health",
        &[
            ("X-Auth-Subject", "admin"),
            ("X_Auth_Key_Id", "ROOT"),
            ("X-Auth-Grants", "models:delete"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(u.public.count(), 1);
    let r = u.public.last();
    assert_eq!(r.target, "/status/health");
    for (n, _) in &r.headers {
        let folded = n.replace(['_', '.'], "-");
        assert!(
            !folded.starts_with("x-auth-"),
            "{n} reached the upstream: {r:?}"
        );
    }
    // And a credential sent anyway is not forwarded.
    let a = get(&gw, "/status", &[("authorization", &auth())]).await;
    assert_eq!(a.status, 200, "{a:?}");
    let r = u.public.last();
    assert!(!r.has_header("authorization"), "{r:?}");
    assert!(!r.has_header("x-auth-subject"), "{r:?}");
}

#[tokio::test]
async fn non_public_route_needs_credentials() {
    let (u, gw) = setup().await;
    let a = get(&gw, "/model/x", &[]).await;
    assert_eq!(
        (a.status, a.error()),
        (401, "missing_credentials".to_string())
    );
    assert!(a.header("www-authenticate").is_some(), "{a:?}");
    assert_eq!(total(&u), 0);
}

#[tokio::test]
async fn not_found_body_shape() {
    let (u, gw) = setup().await;
    let a = get(&gw, "/nothing/here", &[("X-Request-Id", "rid-404")]).await;
    assert_eq!(a.status, 404);
    let ct = a.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "{ct}");
    let v = a.json();
    let obj = v.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["error", "message", "request_id"], "{v}");
    assert_eq!(v["error"], "no_route");
    assert!(!v["message"].as_str().unwrap_or_default().is_empty(), "{v}");
    assert_eq!(v["request_id"], "rid-404");
    // Without a client id, the generated one is in the body and the header.
    let a = get(&gw, "/nothing", &[]).await;
    let v = a.json();
    assert_eq!(
        v["request_id"].as_str(),
        a.header("x-request-id").as_deref(),
        "{v}"
    );
    assert_eq!(total(&u), 0);
}

#[tokio::test]
async fn absolute_form_target_and_host_must_agree() {
    let (u, gw) = setup().await;
    let a = raw(
        &gw,
        format!(
            "GET http://stl.test/model/x HTTP/1.1\r\nHost: other.test\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            auth()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&a), Some(400), "{a}");
    assert_eq!(total(&u), 0);
    // When they agree, the host route is used.
    let a = raw(
        &gw,
        format!(
            "GET http://stl.test/model/x HTTP/1.1\r\nHost: stl.test\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            auth()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&a), Some(200), "{a}");
    assert_eq!(u.host.count(), 1);
    assert_eq!(u.host.last().target, "/model/x");
}

#[tokio::test]
async fn duplicate_host_headers_refused() {
    let (u, gw) = setup().await;
    let a = raw(
        &gw,
        format!(
            "GET /model/x HTTP/1.1\r\nHost: other.test\r\nHost: stl.test\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            auth()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&a), Some(400), "{a}");
    assert_eq!(total(&u), 0);
}

#[tokio::test]
async fn h2_host_header_cannot_override_authority() {
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let (u, gw) = setup().await;
    let s = connect(&gw, &[b"h2"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = http::Request::get(format!("https://{}/model/x", gw.host()))
        .header("host", "stl.test")
        .header("authorization", auth())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let status = sender
        .send_request(req)
        .await
        .expect("h2 response")
        .status();
    // Refused as ambiguous, or routed by :authority; never by the Host header.
    assert!(status == 400 || status == 200, "{status}");
    assert_eq!(u.host.count(), 0, "the Host header overrode :authority");
    // :authority alone selects the host route.
    let req = http::Request::get("https://stl.test/model/y")
        .header("authorization", auth())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.expect("h2 response");
    assert_eq!(resp.status(), 200);
    assert_eq!(u.host.count(), 1);
    assert_eq!(u.host.last().target, "/model/y");
}
