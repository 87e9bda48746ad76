//! The harness itself, end to end: a granted request reaches the upstream.
mod common;
use common::*;

#[tokio::test]
async fn granted_request_reaches_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    let a = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &basic("K1", SECRET))],
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let r = up.last();
    assert_eq!(r.target, "/model/ABC-1");
    assert_eq!(r.header("x-auth-subject").as_deref(), Some("bob"));
    let a = get(&gw, "/model/ABC-1", &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.error(), "missing_credentials");
}
