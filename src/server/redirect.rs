//! The optional plain-HTTP listener: it answers every request with a 308 to
//! the same path over HTTPS and never forwards anything.

use crate::proxy::{full, Body};
use crate::state::Gateway;
use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = stop.changed() => break,
        };
        let gw = gw.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let timeout = gw.snapshot().settings.limits.header_read_timeout;
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .keep_alive(false);
            let svc = service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, Infallible>(redirect(&gw, &req)) }
            });
            let _ = watcher
                .watch(b.serve_connection(TokioIo::new(tcp), svc))
                .await;
        });
    }
    drop(listener);
    super::drain(graceful, &gw).await;
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
