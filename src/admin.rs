//! The admin listener: `/healthz` (the process is up), `/readyz` (it accepts
//! traffic; 503 while starting or draining) and `/metrics` (Prometheus text).
//! Bind it to loopback or a private interface: it has no authentication.

use crate::proxy::{full, Body};
use crate::state::Gateway;
use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, stop: watch::Receiver<bool>) {
    crate::server::serve_plain(gw, listener, stop, true, answer).await
}

fn json(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Ready once listening and once every `jwks_url` has had its first fetch
/// attempt; an identity provider that is down is reported, not fatal (API
/// keys and other issuers keep working).
fn readyz(gw: &Gateway) -> Response<Body> {
    let remote = gw.remote_issuers();
    let urls = || remote.iter().map(|r| r.url.as_str());
    let ready = gw.is_ready() && gw.jwks.attempted_all(urls());
    let jwks: serde_json::Map<String, serde_json::Value> = gw
        .jwks
        .status(urls())
        .into_iter()
        .map(|(u, s)| (u, serde_json::Value::String(s)))
        .collect();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "jwks": jwks,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &body.to_string())
}

fn answer(gw: &Gateway, req: &Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/healthz" => json(StatusCode::OK, r#"{"status":"ok"}"#),
        "/readyz" => readyz(gw),
        "/metrics" => {
            gw.metrics.nonces.set(gw.replay.len() as i64);
            let mut r = Response::new(full(gw.metrics.render()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"error":"no_route","message":"not an admin endpoint"}"#,
        ),
    }
}
