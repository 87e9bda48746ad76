//! Route lookup: optional host, then the longest path prefix that matches on
//! a segment boundary (`/model` matches `/model` and `/model/x`, never
//! `/modelx`).

use crate::auth::Scheme;
use crate::config::RouteConfig;

/// A route with what is derived from it once, at load time.
#[derive(Debug)]
pub struct Route {
    pub config: RouteConfig,

    /// `WWW-Authenticate` challenges for the schemes this route accepts.
    pub challenges: Vec<&'static str>,

    /// The name as a metrics label: shared, so counting a request
    /// allocates nothing.
    pub label: crate::metrics::RouteLabel,

    /// This route's `decision="allowed", status="200"` series, the one
    /// nearly every request counts in, looked up once: the label-set hash
    /// and lock of a lookup cost more than the count.
    pub allowed_200: std::sync::OnceLock<prometheus_client::metrics::counter::Counter>,
}

impl Route {
    pub fn accepts(&self, scheme: Scheme) -> bool {
        self.config.schemes.contains(&scheme)
    }
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Longest prefix first; for equal prefixes, host-specific first.
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(configs: &[RouteConfig]) -> Self {
        let mut routes: Vec<Route> = configs
            .iter()
            .map(|c| Route {
                challenges: c.schemes.iter().filter_map(|s| s.challenge()).collect(),
                label: crate::metrics::RouteLabel(c.name.as_str().into()),
                allowed_200: std::sync::OnceLock::new(),
                config: c.clone(),
            })
            .collect();
        // A stable sort keeps file order among equals: the first one written wins.
        routes.sort_by(|a, b| {
            b.config
                .path_prefix
                .len()
                .cmp(&a.config.path_prefix.len())
                .then(b.config.host.is_some().cmp(&a.config.host.is_some()))
        });
        RouteTable { routes }
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// `host` is lower-case without a port; `path` is normalised.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| {
            let host_ok = match (&r.config.host, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want == got,
                (Some(_), None) => false,
            };
            host_ok && prefix_matches(&r.config.path_prefix, path)
        })
    }
}

/// Segment-boundary prefix match.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The host a request names, lower-case and without the port.
pub fn host_without_port(host: &str) -> std::borrow::Cow<'_, str> {
    let h = if host.starts_with('[') {
        match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let h = h.trim_end_matches('.');
    // Copied only when there is something to lower-case.
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(h.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteConfig;

    fn route(name: &str, host: Option<&str>, prefix: &str) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            host: host.map(Into::into),
            path_prefix: prefix.into(),
            upstream: None,
            namespace: "ns".into(),
            schemes: Scheme::ALL.to_vec(),
            public: false,
            require_body_hash: false,
            method_actions: Default::default(),
            preserve_host: false,
        }
    }

    #[test]
    fn segment_boundaries() {
        assert!(prefix_matches("/model", "/model"));
        assert!(prefix_matches("/model", "/model/"));
        assert!(prefix_matches("/model", "/model/x"));
        assert!(!prefix_matches("/model", "/modelx"));
        assert!(!prefix_matches("/model", "/model_private"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn longest_prefix_and_host() {
        let t = RouteTable::new(&[
            route("root", None, "/"),
            route("model", None, "/model"),
            route("model-admin", None, "/model/admin"),
            route("model-host", Some("stl.test"), "/model"),
        ]);
        let name = |h: Option<&str>, p: &str| t.lookup(h, p).map(|r| r.config.name.clone());
        assert_eq!(name(None, "/model/x").as_deref(), Some("model"));
        assert_eq!(
            name(Some("stl.test"), "/model/x").as_deref(),
            Some("model-host")
        );
        assert_eq!(
            name(Some("other"), "/model/admin/x").as_deref(),
            Some("model-admin")
        );
        assert_eq!(name(None, "/modelx").as_deref(), Some("root"));
    }

    #[test]
    fn hosts() {
        assert_eq!(host_without_port("API.Example.com:8443"), "api.example.com");
        assert_eq!(host_without_port("[::1]:8443"), "[::1]");
        assert_eq!(host_without_port("localhost"), "localhost");
    }
}
