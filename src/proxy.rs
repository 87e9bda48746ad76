//! Forwarding to the upstream: one pooled hyper client, bodies streamed in
//! both directions.

use crate::config::Upstream;
use crate::error::{err, Code, GatewayError};
use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of everything the gateway sends, either way.
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn incoming(b: Incoming) -> Body {
    b.map_err(BoxError::from).boxed()
}

#[derive(Clone)]
pub struct Upstreams {
    client: Client<HttpConnector, Body>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(512)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Upstreams { client }
    }

    /// The upstream URI for a normalised path and the (rewritten) query.
    pub fn target(
        upstream: &Upstream,
        path: &str,
        query: Option<&str>,
    ) -> Result<Uri, GatewayError> {
        let mut pq = String::with_capacity(upstream.base_path.len() + path.len() + 1);
        pq.push_str(&upstream.base_path);
        pq.push_str(path);
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            pq.push('?');
            pq.push_str(q);
        }
        let pq = PathAndQuery::try_from(pq)
            .map_err(|_| err(Code::InvalidPath, "the path cannot be forwarded"))?;
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(upstream.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|_| err(Code::Internal, "the upstream URL cannot be built"))
    }

    /// Send the request; the response head must arrive within `timeout`.
    pub async fn send(
        &self,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, GatewayError> {
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, connect = e.is_connect(), "upstream request failed");
                Err(err(
                    Code::UpstreamUnavailable,
                    "the upstream service could not be reached",
                ))
            }
            Err(_) => Err(err(
                Code::UpstreamTimeout,
                "the upstream service did not answer in time",
            )),
        }
    }
}
