//! The optional plain-HTTP listener: it answers every request with a 308 to
//! the same path over HTTPS and never forwards anything.

use crate::proxy::{full, Body};
use crate::state::Gateway;
use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, stop: watch::Receiver<bool>) {
    crate::server::serve_plain(gw, listener, stop, false, redirect).await
}

fn redirect(gw: &Gateway, req: &Request<Incoming>) -> Response<Body> {
    let snap = gw.snapshot();
    let settings = &snap.settings;
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let origin = match &settings.public_origin {
        Some(o) => Some(o.clone()),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| super::pipeline_valid_host(h))
            .map(|h| {
                let host = crate::routes::host_without_port(h);
                match settings.listen.https.port() {
                    443 => format!("https://{host}"),
                    p => format!("https://{host}:{p}"),
                }
            }),
    };
    let mut resp = Response::new(full(""));
    match origin.and_then(|o| http::HeaderValue::from_str(&format!("{o}{pq}")).ok()) {
        Some(loc) => {
            *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
            resp.headers_mut().insert(header::LOCATION, loc);
        }
        None => *resp.status_mut() = StatusCode::BAD_REQUEST,
    }
    resp.headers_mut()
        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    resp
}
