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
    /// When the last fetch began.
    last_attempt: Option<Instant>,
    /// When a token last named an unknown key, if no fetch began since.
    refetch_requested: Option<Instant>,
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
        let now = Instant::now();
        for mut e in self.entries.iter_mut() {
            // The latest request counts: one made during a fetch outlives it.
            e.refetch_requested = Some(now);
        }
    }

    /// Has the first fetch of every URL finished (well or not)?
    pub fn attempted_all<'a>(&self, urls: impl IntoIterator<Item = &'a str>) -> bool {
        urls.into_iter()
            .all(|u| self.entries.get(u).is_some_and(|e| !e.status.is_empty()))
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

    /// Is `url` due for a fetch?
    pub fn due(&self, url: &str, schedule: Schedule) -> bool {
        let e = self.entries.entry(url.to_string()).or_default();
        match e.last_attempt {
            None => true,
            Some(t) => {
                let since = t.elapsed();
                since >= schedule.refresh
                    || (e.refetch_requested.is_some() && since >= schedule.min_refetch)
            }
        }
    }

    /// Fetch `url` now. When its key set changed, the previous one is
    /// returned (for [`JwksCache::revert`] if the new one proves unusable).
    pub async fn refresh(&self, url: &str) -> Option<Option<Arc<str>>> {
        let started = Instant::now();
        if let Some(mut e) = self.entries.get_mut(url) {
            e.last_attempt = Some(started);
        }
        let result = self.fetch(url).await;
        let mut e = self.entries.entry(url.to_string()).or_default();
        e.last_attempt = Some(started);
        // A request made while this fetch ran may want keys it did not get.
        if e.refetch_requested.is_some_and(|t| t <= started) {
            e.refetch_requested = None;
        }
        match result {
            Ok(text) => {
                e.status = "ok".into();
                if e.text.as_deref() == Some(text.as_str()) {
                    return None;
                }
                tracing::info!(url, "fetched identity provider keys");
                Some(e.text.replace(text.into()))
            }
            Err(reason) => {
                tracing::warn!(url, %reason, "cannot fetch identity provider keys; keeping the last good ones");
                e.status = format!("unavailable: {reason}");
                None
            }
        }
    }

    /// Put back the previous key set: the fetched one does not fit the issuer.
    pub fn revert(&self, url: &str, previous: Option<Arc<str>>, reason: &str) {
        tracing::warn!(url, %reason, "the fetched key set is unusable; keeping the last good one");
        let mut e = self.entries.entry(url.to_string()).or_default();
        e.text = previous;
        e.status = format!("unavailable: unusable key set: {reason}");
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
