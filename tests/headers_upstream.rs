//! What the upstream sees (SPEC section 4): spoofed identity headers,
//! method overrides, credentials and hop-by-hop headers are removed; the
//! gateway's own `X-Auth-*`, `X-Forwarded-*` and `X-Request-Id` are set.

mod common;
use common::*;

async fn setup() -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    (up, gw)
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn spoofed_identity_headers_replaced() {
    let (up, gw) = setup().await;
    let auth = basic("K1", SECRET);
    let a = get(
        &gw,
        "/model/ABC-1",
        &[
            ("authorization", &auth),
            ("X-Auth-Subject", "admin"),
            ("X_Auth_Subject", "admin"),
            ("X.Auth.Grants", "models:delete"),
            ("X-Auth-Grants", "models:delete"),
            ("X-Auth-Key-Id", "ROOT"),
            ("X-Auth-Scheme", "jwt"),
            ("X-Auth-Issuer", "https://evil.test"),
            ("x-auth-whatever", "1"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let r = up.last();
    let values = |name: &str| -> Vec<String> {
        r.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    assert_eq!(values("x-auth-subject"), ["bob"]);
    assert_eq!(values("x-auth-key-id"), ["K1"]);
    assert_eq!(values("x-auth-scheme"), ["api_key"]);
    assert_eq!(values("x-auth-grants"), ["models:create models:read"]);
    assert!(values("x-auth-issuer").is_empty(), "{r:?}");
    assert!(!r.has_header("x_auth_subject"), "{r:?}");
    assert!(!r.has_header("x.auth.grants"), "{r:?}");
    assert!(!r.has_header("x-auth-whatever"), "{r:?}");
}

#[tokio::test]
async fn exact_gateway_identity_headers() {
    let (up, gw) = setup().await;
    let a = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &basic("K1", SECRET))],
    )
    .await;
    assert_eq!(a.status, 200);
    let r = up.last();
    assert_eq!(r.header("x-auth-subject").as_deref(), Some("bob"));
    assert_eq!(r.header("x-auth-key-id").as_deref(), Some("K1"));
    assert_eq!(r.header("x-auth-scheme").as_deref(), Some("api_key"));
    assert_eq!(
        r.header("x-auth-grants").as_deref(),
        Some("models:create models:read")
    );
}

#[tokio::test]
async fn x_api_key_scheme_and_header_removed() {
    let (up, gw) = setup().await;
    let a = get(&gw, "/model/ABC-1", &[("x-api-key", SECRET)]).await;
    // The contract accepts `X-Api-Key: <secret>`; the secret never reaches
    // the upstream.
    assert_eq!(a.status, 200, "{a:?}");
    let r = up.last();
    assert!(!r.has_header("x-api-key"), "{r:?}");
    assert_eq!(r.header("x-auth-scheme").as_deref(), Some("api_key"));
    assert_eq!(r.header("x-auth-key-id").as_deref(), Some("K1"));
    for r in up.requests() {
        for (_, v) in &r.headers {
            assert!(!String::from_utf8_lossy(v).contains(SECRET), "{r:?}");
        }
    }
}

#[tokio::test]
async fn method_override_headers_removed() {
    let (up, gw) = setup().await;
    let auth = basic("K1", SECRET);
    let a = get(
        &gw,
        "/model/ABC-1",
        &[
            ("authorization", &auth),
            ("X-HTTP-Method-Override", "DELETE"),
            ("X-HTTP-Method", "DELETE"),
            ("X-Method-Override", "DELETE"),
            ("X_HTTP_Method_Override", "DELETE"),
            ("X_HTTP_Method", "DELETE"),
            ("X_Method_Override", "DELETE"),
            ("X.HTTP.Method.Override", "DELETE"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let r = up.last();
    assert_eq!(r.method, "GET");
    for (n, _) in &r.headers {
        let folded = n.replace(['_', '.'], "-");
        assert!(
            !matches!(
                folded.as_str(),
                "x-http-method-override" | "x-http-method" | "x-method-override"
            ),
            "method override {n} reached the upstream: {r:?}"
        );
    }
}

#[tokio::test]
async fn credentials_removed() {
    let (up, gw) = setup().await;
    let a = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &basic("K1", SECRET))],
    )
    .await;
    assert_eq!(a.status, 200);
    let r = up.last();
    assert!(!r.has_header("authorization"), "{r:?}");
    assert!(!r.has_header("x-api-key"), "{r:?}");
}

/// The secret of key `KO`.
const KO_SECRET: &str = "ko-secret-abcdefghijklmnopqrstuvwxyz0123456789";

/// The standard config plus key `KO` with a plaintext secret (OAuth 1.0).
fn oauth_body(up: &Upstream) -> String {
    format!(
        "{}  - id: KO
    owner: olivia
    secret: ${{PC_TEST_KO_SECRET}}
    grants:
      - {{ namespace: models, actions: [read] }}
",
        standard_body(up)
    )
}

/// `oauth_*` parameters for a GET of `url`, from `portcullis sign`, as a
/// query-string fragment (the values are already percent-encoded).
fn signed_query(key: &str, url: &str) -> String {
    let out = std::process::Command::new(BIN)
        .args([
            "sign", "--key", key, "--secret", KO_SECRET, "-X", "GET", url,
        ])
        .output()
        .expect("run portcullis sign");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = String::from_utf8(out.stdout).unwrap();
    let params = header
        .trim()
        .strip_prefix("OAuth ")
        .expect("an OAuth header");
    params
        .split(", ")
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            format!("{k}={}", v.trim_matches('"'))
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn oauth_query_params_removed_others_kept() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with_env(&oauth_body(&up), &[("PC_TEST_KO_SECRET", KO_SECRET)]);
    let path = "/model/ABC-1?a=1&b=two%20x&c=";
    let q = signed_query("KO", &format!("https://{}{path}", gw.host()));
    let a = get(&gw, &format!("{path}&{q}"), &[]).await;
    assert_eq!(a.status, 200, "{a:?} {}", gw.logs());
    let r = up.last();
    assert_eq!(r.header("x-auth-scheme").as_deref(), Some("oauth1"));
    assert_eq!(r.header("x-auth-key-id").as_deref(), Some("KO"));
    assert_eq!(r.target, "/model/ABC-1?a=1&b=two%20x&c=", "{r:?}");
    assert!(!r.target.contains("oauth_"), "{r:?}");
}

#[tokio::test]
async fn credential_query_params_beside_basic_refused() {
    let (up, gw) = setup().await;
    for q in ["a=1&oauth_consumer_key=K1", "a=1&pc_key=K1&pc_sig=00"] {
        let a = get(
            &gw,
            &format!("/model/ABC-1?{q}"),
            &[("authorization", &basic("K1", SECRET))],
        )
        .await;
        assert_eq!(a.status, 400, "{q}: {a:?}");
        assert_eq!(a.error(), "multiple_credentials", "{q}");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn plain_query_params_kept_verbatim() {
    let (up, gw) = setup().await;
    let a = get(
        &gw,
        "/model/ABC-1?q=a%20b&x=1&x=2&oauthish=3&pcx=4",
        &[("authorization", &basic("K1", SECRET))],
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        up.last().target,
        "/model/ABC-1?q=a%20b&x=1&x=2&oauthish=3&pcx=4"
    );
}

#[tokio::test]
async fn hop_by_hop_removed() {
    let (up, gw) = setup().await;
    let auth = basic("K1", SECRET);
    let req = format!(
        "GET /model/ABC-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nConnection: close, X-Foo\r\nX-Foo: secret-hop\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n"
    );
    let answer = raw(&gw, req.as_bytes()).await;
    assert_eq!(raw_status(&answer), Some(200), "{answer}");
    let r = up.last();
    for h in [
        "x-foo",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(!r.has_header(h), "{h} reached the upstream: {r:?}");
    }
    if let Some(c) = r.header("connection") {
        assert!(!c.to_ascii_lowercase().contains("x-foo"), "{r:?}");
    }
    assert_eq!(r.header("x-kept").as_deref(), Some("yes"));
}

#[tokio::test]
async fn forwarded_headers_set_by_gateway() {
    let (up, gw) = setup().await;
    let a = get(
        &gw,
        "/model/ABC-1",
        &[
            ("authorization", &basic("K1", SECRET)),
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "evil.test"),
            ("X_Forwarded_Proto", "http"),
            ("X_Forwarded_For", "6.6.6.6"),
            ("Forwarded", "for=1.1.1.1;proto=http;host=evil.test"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let r = up.last();
    let all = |name: &str| -> Vec<String> {
        r.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    assert_eq!(all("x-forwarded-for"), ["203.0.113.7, 127.0.0.1"], "{r:?}");
    assert_eq!(all("x-forwarded-proto"), ["https"], "{r:?}");
    assert_eq!(all("x-forwarded-host"), [gw.host()], "{r:?}");
    assert!(!r.has_header("x_forwarded_proto"), "{r:?}");
    assert!(!r.has_header("x_forwarded_for"), "{r:?}");
    for (_, v) in &r.headers {
        assert!(!String::from_utf8_lossy(v).contains("evil.test"), "{r:?}");
    }
}

#[tokio::test]
async fn forwarded_for_set_when_client_sends_none() {
    let (up, gw) = setup().await;
    let a = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &basic("K1", SECRET))],
    )
    .await;
    assert_eq!(a.status, 200);
    let r = up.last();
    assert_eq!(r.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(r.header("x-forwarded-host"), Some(gw.host()));
}

#[tokio::test]
async fn request_id_kept_and_echoed() {
    let (up, gw) = setup().await;
    let a = get(
        &gw,
        "/model/ABC-1",
        &[
            ("authorization", &basic("K1", SECRET)),
            ("X-Request-Id", "trace-abc-123"),
        ],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-request-id").as_deref(), Some("trace-abc-123"));
    let r = up.last();
    let ids: Vec<_> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "x-request-id")
        .collect();
    assert_eq!(ids.len(), 1, "{r:?}");
    assert_eq!(r.header("x-request-id").as_deref(), Some("trace-abc-123"));
}

#[tokio::test]
async fn request_id_generated_when_absent() {
    let (up, gw) = setup().await;
    let a = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &basic("K1", SECRET))],
    )
    .await;
    assert_eq!(a.status, 200);
    let client = a
        .header("x-request-id")
        .expect("x-request-id to the client");
    assert!(is_hex32(&client), "{client}");
    assert_eq!(up.last().header("x-request-id"), Some(client));
    // Two requests, two ids.
    let b = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &basic("K1", SECRET))],
    )
    .await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[tokio::test]
async fn odd_request_id_spellings_and_bad_values_not_forwarded() {
    let (up, gw) = setup().await;
    let a = get(
        &gw,
        "/model/ABC-1",
        &[
            ("authorization", &basic("K1", SECRET)),
            ("X_Request_Id", "spoofed-underscore"),
            ("X.Request.Id", "spoofed-dot"),
            ("X-Request-Id", "has space"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let r = up.last();
    let ids: Vec<String> = r
        .headers
        .iter()
        .filter(|(n, _)| n.replace(['_', '.'], "-") == "x-request-id")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{r:?}");
    assert!(is_hex32(&ids[0]), "{ids:?}");
    assert_eq!(a.header("x-request-id").as_deref(), Some(ids[0].as_str()));
}

#[tokio::test]
async fn request_id_on_errors_matches_body() {
    let (up, gw) = setup().await;
    let a = get(&gw, "/model/ABC-1", &[("X-Request-Id", "err-trace-1")]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.error(), "missing_credentials");
    assert_eq!(a.header("x-request-id").as_deref(), Some("err-trace-1"));
    assert_eq!(a.json()["request_id"], "err-trace-1");
    assert_eq!(up.count(), 0);
}

/// `Host`: the upstream's own authority by default; with `preserve_host`
/// the client's, whether it came as a `Host` header (even one the client
/// also named in `Connection`) or only in an absolute-form request target.
#[tokio::test]
async fn host_is_the_upstreams_unless_the_route_preserves_the_clients() {
    let up = Upstream::start().await;
    let auth = basic("K1", SECRET);
    let upstream_authority = up.url().trim_start_matches("http://").to_string();

    let gw = Gateway::start(&standard_body(&up));
    let a = get(&gw, "/model/ABC-1", &[("authorization", &auth)]).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(up.last().header("host"), Some(upstream_authority));
    assert_eq!(up.last().header("x-forwarded-host"), Some(gw.host()));

    let body = standard_body(&up).replace(
        "    namespace: models\n",
        "    namespace: models\n    preserve_host: true\n",
    );
    assert!(body.contains("preserve_host: true"));
    let gw = Gateway::start(&body);
    let a = get(&gw, "/model/ABC-1", &[("authorization", &auth)]).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(up.last().header("host"), Some(gw.host()));

    let a = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &auth), ("connection", "host")],
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(up.last().header("host"), Some(gw.host()));

    let host = gw.host();
    let answer = raw(
        &gw,
        format!(
            "GET https://{host}/model/ABC-1 HTTP/1.1\r\nauthorization: {auth}\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&answer), Some(200), "{answer}");
    assert_eq!(up.last().header("host"), Some(host));
}
