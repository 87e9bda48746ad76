//! Keys from identity providers' `jwks_url`s: fetched over HTTPS (system
//! roots, or `SSL_CERT_FILE`), with a timeout and a size cap, refreshed in the
//! background, re-fetched (rate-limited) when a token names an unknown key.
//! A failed fetch keeps the last good key set. The cache outlives reloads.

use bytes::Bytes;
use dashmap::DashMap;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1 << 20;

/// An error and its causes, `outer: inner: innermost`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

#[derive(Default)]
struct Entry {
    text: Option<Arc<str>>,
    /// `ok`, or `unavailable: <reason>`; empty before the first attempt.
    status: String,
    last_attempt: Option<Instant>,
    refetch_requested: bool,
}

/// When an issuer's keys are due for a fetch.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub refresh: Duration,
    pub min_refetch: Duration,
}

pub struct JwksCache {
    entries: DashMap<String, Entry>,
    client: Result<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>, String>,
}

impl Default for JwksCache {
    fn default() -> Self {
        Self::new()
    }
}

impl JwksCache {
    pub fn new() -> Self {
        let client = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(crate::tls::provider())
            .map(|b| {
                let https = b.https_only().enable_http1().build();
                Client::builder(TokioExecutor::new()).build(https)
            })
            .map_err(|e| format!("no CA certificates to verify identity providers: {e}"));
        JwksCache {
            entries: DashMap::new(),
            client,
        }
    }

    /// The last good key set of `url`, if any.
    pub fn get(&self, url: &str) -> Option<Arc<str>> {
        self.entries.get(url).and_then(|e| e.text.clone())
    }

    /// A token named a key no issuer has: fetch again (within each
    /// issuer's `min_refetch`).
    pub fn request_refetch(&self) {
        for mut e in self.entries.iter_mut() {
            e.refetch_requested = true;
        }
    }

    /// Has every URL had its first fetch attempt?
    pub fn attempted_all<'a>(&self, urls: impl IntoIterator<Item = &'a str>) -> bool {
        urls.into_iter().all(|u| {
            self.entries
                .get(u)
                .is_some_and(|e| e.last_attempt.is_some())
        })
    }

    /// `ok` or `unavailable: <reason>` for each URL (empty before the first attempt).
    pub fn status<'a>(&self, urls: impl IntoIterator<Item = &'a str>) -> Vec<(String, String)> {
        urls.into_iter()
            .map(|u| {
                let s = self
                    .entries
                    .get(u)
                    .map(|e| e.status.clone())
                    .unwrap_or_default();
                (
                    u.to_string(),
                    if s.is_empty() { "pending".into() } else { s },
                )
            })
            .collect()
    }

    fn due(&self, url: &str, schedule: Schedule, now: Instant) -> bool {
        let e = self.entries.entry(url.to_string()).or_default();
        match e.last_attempt {
            None => true,
            Some(t) => {
                let since = now.duration_since(t);
                since >= schedule.refresh || (e.refetch_requested && since >= schedule.min_refetch)
            }
        }
    }

    /// Fetch `url` if it is due. True when its key set changed.
    pub async fn refresh(&self, url: &str, schedule: Schedule) -> bool {
        if !self.due(url, schedule, Instant::now()) {
            return false;
        }
        let result = self.fetch(url).await;
        let mut e = self.entries.entry(url.to_string()).or_default();
        e.last_attempt = Some(Instant::now());
        e.refetch_requested = false;
        match result {
            Ok(text) => {
                e.status = "ok".into();
                let changed = e.text.as_deref() != Some(text.as_str());
                if changed {
                    tracing::info!(url, "fetched identity provider keys");
                    e.text = Some(text.into());
                }
                changed
            }
            Err(reason) => {
                tracing::warn!(url, %reason, "cannot fetch identity provider keys; keeping the last good ones");
                e.status = format!("unavailable: {reason}");
                false
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<String, String> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        let req = Request::get(url)
            .header(
                header::USER_AGENT,
                concat!("portcullis/", env!("CARGO_PKG_VERSION")),
            )
            .header(header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let work = async {
            let resp = client.request(req).await.map_err(|e| chain(&e))?;
            if resp.status() != StatusCode::OK {
                return Err(format!("status {}", resp.status()));
            }
            let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|_| "the key set is larger than 1 MiB or unreadable".to_string())?
                .to_bytes();
            let text = String::from_utf8(body.to_vec()).map_err(|_| "not UTF-8".to_string())?;
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .filter(|v| v.get("keys").is_some_and(|k| k.is_array()))
                .ok_or_else(|| "not a JWK set".to_string())?;
            Ok(text)
        };
        tokio::time::timeout(FETCH_TIMEOUT, work)
            .await
            .map_err(|_| "timed out".to_string())?
    }
}
