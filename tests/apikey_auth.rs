//! API keys as a client sees them: HTTP Basic and `X-Api-Key`, the refusals
//! and their codes, grants, and secrets never leaking.
mod common;
use common::*;

const COLON_SECRET: &str = "colon:in:the-secret-0123456789";
const DISABLED_SECRET: &str = "disabled-secret-0123456789abcdef";
const EXPIRED_SECRET: &str = "expired-secret-0123456789abcdefg";
const DELETER_SECRET: &str = "deleter-secret-0123456789abcdefg";

/// Routes: `/model` (all schemes), `/oauthonly` (oauth1 only), `/basiconly`
/// (api_key only), `/purge` (PURGE means delete). Keys: K1 (standard), KC
/// (secret with colons), KD (disabled), KE (expired), KDEL (delete on /purge).
fn body(up: &Upstream) -> String {
    format!(
        "routes:
  - name: models
    match: {{ path_prefix: /model }}
    upstream: {up}
    namespace: models
  - name: oauthonly
    match: {{ path_prefix: /oauthonly }}
    upstream: {up}
    namespace: models
    schemes: [oauth1]
  - name: basiconly
    match: {{ path_prefix: /basiconly }}
    upstream: {up}
    namespace: models
    schemes: [api_key]
  - name: purge
    match: {{ path_prefix: /purge }}
    upstream: {up}
    namespace: models
    method_actions: {{ PURGE: delete }}
keys:
  - id: K1
    owner: bob
    secret_hash: {h1}
    grants:
      - {{ namespace: models, actions: [create, read], resources: [\"/model/ABC-*\", \"/basiconly/**\"] }}
  - id: KC
    owner: carol
    secret_hash: {hc}
    grants:
      - {{ namespace: models, actions: [read] }}
  - id: KD
    owner: dave
    secret_hash: {hd}
    disabled: true
    grants:
      - {{ namespace: models, actions: [read] }}
  - id: KE
    owner: eve
    secret_hash: {he}
    expires_at: 2020-01-01T00:00:00Z
    grants:
      - {{ namespace: models, actions: [read] }}
  - id: KDEL
    owner: dan
    secret_hash: {hdel}
    grants:
      - {{ namespace: models, actions: [delete], resources: [\"/purge/**\"] }}
",
        up = up.url(),
        h1 = secret_hash(SECRET),
        hc = secret_hash(COLON_SECRET),
        hd = secret_hash(DISABLED_SECRET),
        he = secret_hash(EXPIRED_SECRET),
        hdel = secret_hash(DELETER_SECRET),
    )
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn challenges(a: &Answer) -> Vec<String> {
    a.headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn basic_credentials_reach_the_upstream_with_identity_headers() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let a = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &basic("K1", SECRET))],
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(&a.body[..], b"ok");
    let r = up.last();
    assert_eq!(r.target, "/model/ABC-1");
    assert_eq!(r.header("x-auth-subject").as_deref(), Some("bob"));
    assert_eq!(r.header("x-auth-key-id").as_deref(), Some("K1"));
    assert_eq!(r.header("x-auth-scheme").as_deref(), Some("api_key"));
    assert_eq!(
        r.header("x-auth-grants").as_deref(),
        Some("models:create models:read")
    );
    assert!(
        !r.has_header("authorization"),
        "the credential reached the upstream"
    );
    assert!(a.header("x-request-id").is_some());
}

#[tokio::test]
async fn secret_with_colons_splits_on_the_first_colon() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let a = get(
        &gw,
        "/model/anything",
        &[("authorization", &basic("KC", COLON_SECRET))],
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let r = up.last();
    assert_eq!(r.header("x-auth-subject").as_deref(), Some("carol"));
    assert_eq!(r.header("x-auth-key-id").as_deref(), Some("KC"));
}

#[tokio::test]
async fn x_api_key_header_works_and_is_stripped() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let a = get(&gw, "/model/ABC-2", &[("x-api-key", SECRET)]).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let r = up.last();
    assert_eq!(r.header("x-auth-key-id").as_deref(), Some("K1"));
    assert_eq!(r.header("x-auth-subject").as_deref(), Some("bob"));
    assert_eq!(r.header("x-auth-scheme").as_deref(), Some("api_key"));
    assert!(!r.has_header("x-api-key"));
    let a = get(&gw, "/model/ABC-2", &[("x-api-key", "not-a-known-secret")]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.error(), "invalid_credentials");
}

#[tokio::test]
async fn wrong_secret_and_unknown_key_are_indistinguishable() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let rid = [("x-request-id", "same-request-id")];
    let wrong_auth = basic("K1", "wrong-secret");
    let unknown_auth = basic("NOPE", SECRET);
    let wrong = get(
        &gw,
        "/model/ABC-1",
        &[rid[0], ("authorization", &wrong_auth)],
    )
    .await;
    let unknown = get(
        &gw,
        "/model/ABC-1",
        &[rid[0], ("authorization", &unknown_auth)],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.error(), "invalid_credentials");
    assert_eq!(wrong.body, unknown.body, "the bodies tell the two apart");
    assert_eq!(wrong.json()["request_id"], "same-request-id");
    assert_eq!(
        wrong.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(challenges(&wrong), challenges(&unknown));
    // Without a fixed request id, the bodies differ only in request_id.
    let mut a = get(&gw, "/model/ABC-1", &[("authorization", &wrong_auth)])
        .await
        .json();
    let mut b = get(&gw, "/model/ABC-1", &[("authorization", &unknown_auth)])
        .await
        .json();
    a.as_object_mut().unwrap().remove("request_id");
    b.as_object_mut().unwrap().remove("request_id");
    assert_eq!(a, b);
    assert_eq!(up.count(), 0, "a refused request reached the upstream");
}

#[tokio::test]
async fn challenges_follow_the_route_schemes() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    // All schemes: one challenge each for Basic, OAuth and Bearer.
    let a = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &basic("K1", "bad"))],
    )
    .await;
    assert_eq!(a.status, 401);
    let c = challenges(&a);
    assert_eq!(c.len(), 3, "{c:?}");
    assert!(c.iter().any(|v| v.starts_with("Basic realm=")), "{c:?}");
    assert!(c.iter().any(|v| v.starts_with("OAuth realm=")), "{c:?}");
    assert!(c.iter().any(|v| v.starts_with("Bearer realm=")), "{c:?}");
    // api_key only: only Basic.
    let a = get(&gw, "/basiconly/x", &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.error(), "missing_credentials");
    let c = challenges(&a);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("Basic realm="), "{c:?}");
    // oauth1 only: only OAuth.
    let a = get(&gw, "/oauthonly/x", &[]).await;
    assert_eq!(a.status, 401);
    let c = challenges(&a);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("OAuth realm="), "{c:?}");
}

#[tokio::test]
async fn oauth1_only_route_refuses_basic() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let a = get(
        &gw,
        "/oauthonly/x",
        &[("authorization", &basic("K1", SECRET))],
    )
    .await;
    assert_eq!(a.status, 401, "{:?}", a.body);
    let c = challenges(&a);
    assert!(c.iter().all(|v| v.starts_with("OAuth ")), "{c:?}");
    let a = get(&gw, "/oauthonly/x", &[("x-api-key", SECRET)]).await;
    assert_eq!(a.status, 401, "{:?}", a.body);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn disabled_and_expired_keys() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let a = get(
        &gw,
        "/model/x",
        &[("authorization", &basic("KD", DISABLED_SECRET))],
    )
    .await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (401, "key_disabled"),
        "{:?}",
        a.body
    );
    let a = get(&gw, "/model/x", &[("x-api-key", DISABLED_SECRET)]).await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (401, "key_disabled"),
        "{:?}",
        a.body
    );
    let a = get(
        &gw,
        "/model/x",
        &[("authorization", &basic("KE", EXPIRED_SECRET))],
    )
    .await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (401, "key_expired"),
        "{:?}",
        a.body
    );
    let a = get(&gw, "/model/x", &[("x-api-key", EXPIRED_SECRET)]).await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (401, "key_expired"),
        "{:?}",
        a.body
    );
    // A wrong secret on a disabled key says nothing about its state.
    let a = get(&gw, "/model/x", &[("authorization", &basic("KD", "wrong"))]).await;
    assert_eq!((a.status, a.error().as_str()), (401, "invalid_credentials"));
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn query_string_keys_are_never_accepted() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    for q in ["api_key", "key", "apikey", "x-api-key"] {
        let a = get(&gw, &format!("/model/ABC-1?{q}={SECRET}"), &[]).await;
        assert_eq!(
            (a.status, a.error().as_str()),
            (401, "missing_credentials"),
            "?{q}="
        );
    }
    let a = get(&gw, &format!("/model/ABC-1?key=K1:{SECRET}"), &[]).await;
    assert_eq!((a.status, a.error().as_str()), (401, "missing_credentials"));
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn two_credentials_are_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let b = basic("K1", SECRET);
    let a = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &b), ("x-api-key", SECRET)],
    )
    .await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (400, "multiple_credentials"),
        "{:?}",
        a.body
    );
    let a = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &b), ("authorization", &b)],
    )
    .await;
    assert_eq!(a.status, 400, "{:?}", a.body);
    assert_eq!(a.error(), "multiple_credentials");
    let a = get(
        &gw,
        "/model/ABC-1",
        &[("x-api-key", SECRET), ("x-api-key", SECRET)],
    )
    .await;
    assert_eq!(a.status, 400, "{:?}", a.body);
    // Basic next to OAuth 1.0 query parameters, X-Api-Key next to a Bearer token.
    let a = get(
        &gw,
        "/model/ABC-1?oauth_consumer_key=K1&oauth_nonce=n",
        &[("authorization", &b)],
    )
    .await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (400, "multiple_credentials"),
        "{:?}",
        a.body
    );
    let a = get(
        &gw,
        "/model/ABC-1",
        &[
            ("authorization", "Bearer abc.def.ghi"),
            ("x-api-key", SECRET),
        ],
    )
    .await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (400, "multiple_credentials"),
        "{:?}",
        a.body
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn malformed_basic_is_400() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let no_colon = format!("Basic {}", b64("K1-without-colon"));
    let empty_id = format!("Basic {}", b64(&format!(":{SECRET}")));
    for v in [
        "Basic !!!not-base64!!!",
        no_colon.as_str(),
        "Basic ",
        empty_id.as_str(),
    ] {
        let a = get(&gw, "/model/ABC-1", &[("authorization", v)]).await;
        assert_eq!(a.status, 400, "{v}: {:?}", a.body);
        assert_eq!(a.error(), "malformed_credentials", "{v}");
        assert_eq!(
            a.header("content-type").as_deref(),
            Some("application/json")
        );
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn grants_decide_by_action_and_resource() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let k1 = basic("K1", SECRET);
    // DELETE needs `delete`, which K1 lacks.
    let a = send(&gw, "DELETE", "/model/ABC-1", &[("authorization", &k1)], "").await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (403, "insufficient_grant"),
        "{:?}",
        a.body
    );
    assert!(a.headers.get("www-authenticate").is_none());
    // PUT needs `update`.
    let a = send(&gw, "PUT", "/model/ABC-1", &[("authorization", &k1)], "x").await;
    assert_eq!((a.status, a.error().as_str()), (403, "insufficient_grant"));
    // Outside the resources.
    let a = get(&gw, "/model/XYZ-1", &[("authorization", &k1)]).await;
    assert_eq!((a.status, a.error().as_str()), (403, "insufficient_grant"));
    // `*` stays within one segment.
    let a = get(&gw, "/model/ABC-1/deeper", &[("authorization", &k1)]).await;
    assert_eq!((a.status, a.error().as_str()), (403, "insufficient_grant"));
    assert_eq!(up.count(), 0);
    // POST is create, which K1 holds.
    let a = send(
        &gw,
        "POST",
        "/model/ABC-1",
        &[("authorization", &k1)],
        "payload",
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(up.last().method, "POST");
    assert_eq!(up.last().body, b"payload");
}

#[tokio::test]
async fn method_actions_override() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&body(&up));
    let del = basic("KDEL", DELETER_SECRET);
    let a = send(
        &gw,
        "PURGE",
        "/purge/cache/1",
        &[("authorization", &del)],
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let r = up.last();
    assert_eq!(r.method, "PURGE");
    assert_eq!(r.header("x-auth-grants").as_deref(), Some("models:delete"));
    // K1 has no delete: PURGE is refused on that route.
    let k1 = basic("K1", SECRET);
    let a = send(
        &gw,
        "PURGE",
        "/purge/cache/1",
        &[("authorization", &k1)],
        "",
    )
    .await;
    assert_eq!((a.status, a.error().as_str()), (403, "insufficient_grant"));
    // On a route without the override, PURGE maps to no action.
    let a = send(&gw, "PURGE", "/model/ABC-1", &[("authorization", &k1)], "").await;
    assert_eq!((a.status, a.error().as_str()), (403, "insufficient_grant"));
    assert_eq!(up.count(), 1);
}
