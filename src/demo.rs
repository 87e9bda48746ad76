//! `portcullis demo`: an echo upstream, a certificate, the gateway, and curl
//! commands to paste.

use crate::proxy::{full, Body};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

/// The demo configuration, written to `config/demo.yaml` when it is missing.
pub const DEMO_YAML: &str = include_str!("../config/demo.yaml");

/// Serve an echo upstream: every request is answered with a JSON account of
/// what arrived (method, path, headers, body length).
pub async fn echo_upstream(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc =
                service_fn(
                    |req: Request<Incoming>| async move { Ok::<_, Infallible>(echo(req).await) },
                );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn echo(req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let len = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into()),
            )
        })
        .collect();
    let body = serde_json::json!({
        "upstream": "portcullis demo echo",
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
        "body_bytes": len,
    });
    let mut r = Response::new(full(format!("{body:#}\n")));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// The commands printed once the demo is up.
pub fn instructions(https_port: u16, admin: Option<u16>, secret: &str, exe: &str) -> String {
    let base = format!("https://localhost:{https_port}");
    let ca = "--cacert certs/gateway.crt";
    let mut s = String::new();
    s.push_str("\nportcullis demo is running. In another terminal, from this folder:\n\n");
    s.push_str("# 200: the key holds models:read on /model/ABC-*; the echo shows what the upstream received\n");
    s.push_str(&format!(
        "curl {ca} https://demo-key:{secret}@localhost:{https_port}/model/ABC-123\n\n"
    ));
    s.push_str("# 200: the same key as X-Api-Key\n");
    s.push_str(&format!(
        "curl {ca} -H 'X-Api-Key: {secret}' {base}/model/ABC-123\n\n"
    ));
    s.push_str("# 401 missing_credentials: no key\n");
    s.push_str(&format!("curl -i {ca} {base}/model/ABC-123\n\n"));
    s.push_str("# 401 invalid_credentials: wrong secret\n");
    s.push_str(&format!(
        "curl -i {ca} https://demo-key:wrong@localhost:{https_port}/model/ABC-123\n\n"
    ));
    s.push_str("# 403 insufficient_grant: the key may read and create, not delete\n");
    s.push_str(&format!(
        "curl -i {ca} -X DELETE https://demo-key:{secret}@localhost:{https_port}/model/ABC-123\n\n"
    ));
    s.push_str("# 403 insufficient_grant: outside the key's resources (/model/ABC-*)\n");
    s.push_str(&format!(
        "curl -i {ca} https://demo-key:{secret}@localhost:{https_port}/model/XYZ-9\n\n"
    ));
    s.push_str("# 200 with OAuth 1.0: `sign` makes a fresh HMAC-SHA1 signature and nonce each time; sending the same header twice gets 401 nonce_replayed\n");
    s.push_str(&format!(
        "curl {ca} -H \"Authorization: $({exe} sign --key demo-key --secret {secret} {base}/model/ABC-123)\" {base}/model/ABC-123\n\n"
    ));
    s.push_str("# 200 with a JWT: exchange the key for a token (60 minutes), then use it\n");
    s.push_str(&format!(
        "TOKEN=$(curl -s {ca} -u demo-key:{secret} -d grant_type=client_credentials {base}/auth/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')\n"
    ));
    s.push_str(&format!(
        "curl {ca} -H \"Authorization: Bearer $TOKEN\" {base}/model/ABC-123\n\n"
    ));
    s.push_str("# 200 without credentials: a public route\n");
    s.push_str(&format!("curl {ca} {base}/status\n\n"));
    if let Some(p) = admin {
        s.push_str(&format!("# metrics\ncurl http://127.0.0.1:{p}/metrics\n\n"));
    }
    s.push_str("Press Ctrl-C to stop.\n");
    s
}
