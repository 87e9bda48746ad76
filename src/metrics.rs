//! Prometheus metrics, served as text on the admin listener's `/metrics`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's name (`Route::label`), or `-`.
    pub route: RouteLabel,
    pub decision: &'static str,
    pub status: u16,
}

/// A route's name, shared: counting a request clones a pointer instead of
/// allocating a copy of the name.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RouteLabel(pub Arc<str>);

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Histogram,
    pub auth_failures: Family<CodeLabels, Counter>,
    pub reloads: Family<ResultLabels, Counter>,
    pub connections: Gauge,
    pub nonces: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by route, decision (allowed, denied, public, error) and status",
            requests.clone(),
        );
        // 100 µs to ~6.5 s.
        let latency = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head",
            latency.clone(),
        );
        let auth_failures = Family::<CodeLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Refused credentials by error code",
            auth_failures.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result (success, failure)",
            reloads.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client TLS connections being served",
            connections.clone(),
        );
        let nonces = Gauge::default();
        registry.register(
            "replay_nonces",
            "OAuth 1.0 nonces held by the replay store",
            nonces.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stderr was not read fast enough",
            crate::logging::dropped_lines(),
        );
        Metrics {
            registry,
            requests,
            latency,
            auth_failures,
            reloads,
            connections,
            nonces,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
