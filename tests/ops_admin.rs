//! The admin listener: health, readiness, Prometheus metrics.
mod common;
use common::*;

const ALLOWED: &str =
    "portcullis_requests_total{route=\"models\",decision=\"allowed\",status=\"200\"}";
const INVALID: &str = "portcullis_auth_failures_total{code=\"invalid_credentials\"}";
const MISSING: &str = "portcullis_auth_failures_total{code=\"missing_credentials\"}";
const DENIED_401: &str =
    "portcullis_requests_total{route=\"models\",decision=\"denied\",status=\"401\"}";
const DENIED_403: &str =
    "portcullis_requests_total{route=\"models\",decision=\"denied\",status=\"403\"}";
const GRANT: &str = "portcullis_auth_failures_total{code=\"insufficient_grant\"}";

#[tokio::test]
async fn health_and_readiness() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    let (status, body) = admin_get(gw.admin, "/healthz").expect("admin answers");
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin_get(gw.admin, "/readyz").expect("admin answers");
    assert_eq!(status, 200, "{body}");
    let (status, _) = admin_get(gw.admin, "/nope").expect("admin answers");
    assert_eq!(status, 404);
    let (status, _) = admin_get(gw.admin, "/metrics/extra").expect("admin answers");
    assert_eq!(status, 404);
    // The admin endpoints are not on the public listener.
    let a = get(&gw, "/metrics", &[]).await;
    assert_eq!(a.status, 404, "{:?}", a.body);
    assert_eq!(a.error(), "no_route");
}

#[tokio::test]
async fn metrics_count_requests_failures_and_latency() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    let (status, text) = admin_get(gw.admin, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE portcullis_requests counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE portcullis_auth_failures counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE portcullis_config_reloads counter"),
        "{text}"
    );
    let allowed0 = gw.metric(ALLOWED).unwrap_or(0.0);
    let invalid0 = gw.metric(INVALID).unwrap_or(0.0);

    let ok = basic("K1", SECRET);
    for _ in 0..3 {
        assert_eq!(
            get(&gw, "/model/ABC-1", &[("authorization", &ok)])
                .await
                .status,
            200
        );
    }
    for _ in 0..2 {
        let a = get(
            &gw,
            "/model/ABC-1",
            &[("authorization", &basic("K1", "wrong"))],
        )
        .await;
        assert_eq!(a.status, 401);
    }
    assert_eq!(get(&gw, "/model/ABC-1", &[]).await.status, 401);
    assert_eq!(
        get(&gw, "/model/XYZ", &[("authorization", &ok)])
            .await
            .status,
        403
    );

    assert_eq!(gw.metric(ALLOWED), Some(allowed0 + 3.0));
    assert_eq!(gw.metric(INVALID), Some(invalid0 + 2.0));
    assert_eq!(gw.metric(MISSING), Some(1.0));
    assert_eq!(gw.metric(DENIED_401), Some(3.0));
    assert_eq!(gw.metric(DENIED_403), Some(1.0));
    assert_eq!(gw.metric(GRANT), Some(1.0));

    let (_, text) = admin_get(gw.admin, "/metrics").expect("metrics");
    assert!(
        text.contains("portcullis_request_duration_seconds_bucket{le=\""),
        "{text}"
    );
    let count = gw
        .metric("portcullis_request_duration_seconds_count")
        .expect("histogram count");
    assert!(count >= 7.0, "{count}\n{text}");
    let inf = gw
        .metric("portcullis_request_duration_seconds_bucket{le=\"+Inf\"}")
        .expect("+Inf bucket");
    assert_eq!(inf, count);
    assert!(
        gw.metric("portcullis_request_duration_seconds_sum")
            .is_some(),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_count_reloads() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    let success = "portcullis_config_reloads_total{result=\"success\"}";
    let failure = "portcullis_config_reloads_total{result=\"failure\"}";
    let s0 = gw.metric(success).unwrap_or(0.0);
    gw.signal("HUP");
    let mut seen = false;
    for _ in 0..50 {
        if gw.metric(success).unwrap_or(0.0) > s0 {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(seen, "no successful reload counted; logs:\n{}", gw.logs());
    let f0 = gw.metric(failure).unwrap_or(0.0);
    gw.rewrite_config("bogus_top_level_field: 1\n");
    let mut seen = false;
    for _ in 0..50 {
        if gw.metric(failure).unwrap_or(0.0) > f0 {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(seen, "no failed reload counted; logs:\n{}", gw.logs());
}
