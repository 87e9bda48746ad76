//! What the upstream sees (SPEC section 4): hop-by-hop headers go first,
//! then anything a client could use to impersonate the gateway, then the
//! credential; then the gateway adds its own headers.

use crate::auth::Identity;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST};
use http::HeaderMap;
use std::net::IpAddr;

/// Method-override headers, compared after folding `_` and `.` to `-`.
const METHOD_OVERRIDE: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Headers the gateway sets itself; any spelling of them from the client goes.
const GATEWAY_SET: [&str; 5] = [
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "x-real-ip",
];

/// Remove hop-by-hop headers, including every header named in `Connection`.
/// `Host` and `Content-Length` are never removed this way: they frame the
/// message, and the proxy rewrites them itself.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| *n != CONTENT_LENGTH && *n != HOST)
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    // One pass over the (few) names present rather than a hash lookup for
    // each of the nine hop-by-hop names: this runs twice per request.
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n.as_str()))
        .cloned()
        .collect();
    for name in present {
        headers.remove(name);
    }
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1, plus common non-standard ones).
fn is_hop_by_hop(name: &str) -> bool {
    // A match compiles to a switch on the length, then one comparison.
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// `name` (already lower-case) equals `want` once `_` and `.` read as `-`.
fn folded_eq(name: &str, want: &str) -> bool {
    name.len() == want.len() && folded_starts_with(name, want)
}

fn folded_starts_with(name: &str, prefix: &str) -> bool {
    let n = name.as_bytes();
    n.len() >= prefix.len()
        && n.iter().zip(prefix.as_bytes()).all(|(a, b)| {
            let a = if *a == b'_' || *a == b'.' { b'-' } else { *a };
            a == *b
        })
}

/// Remove what a client must not be able to send the upstream: every
/// `X-Auth-*` header in any spelling, method overrides, forwarding headers
/// the gateway sets itself, odd spellings of `X-Forwarded-For` and
/// `X-Request-Id`, and the credential headers.
pub fn strip_untrusted(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            let s = n.as_str();
            // Every name below starts with `x`, `f` or `a`: most headers
            // (host, accept, user-agent, content-*) stop here.
            if !matches!(s.as_bytes().first(), Some(b'x' | b'f' | b'a')) {
                return false;
            }
            folded_starts_with(s, "x-auth-")
                || METHOD_OVERRIDE.iter().any(|m| folded_eq(s, m))
                || GATEWAY_SET.iter().any(|m| folded_eq(s, m))
                || folded_eq(s, "x-api-key")
                || (folded_eq(s, "x-forwarded-for") && s != "x-forwarded-for")
                || (folded_eq(s, "x-request-id") && s != "x-request-id")
                || s == "authorization"
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// What the gateway adds for the upstream.
static X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
static X_AUTH_KEY_ID: HeaderName = HeaderName::from_static("x-auth-key-id");
static X_AUTH_SCHEME: HeaderName = HeaderName::from_static("x-auth-scheme");
static X_AUTH_ISSUER: HeaderName = HeaderName::from_static("x-auth-issuer");
static X_AUTH_GRANTS: HeaderName = HeaderName::from_static("x-auth-grants");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub struct Forwarding<'a> {
    pub identity: Option<&'a Identity>,
    /// The `X-Auth-Grants` value.
    pub grants: Option<&'a str>,
    pub client_ip: IpAddr,
    /// The host the client asked for, as sent.
    pub host: Option<&'a str>,
    pub request_id: &'a HeaderValue,
}

fn value(s: &str) -> HeaderValue {
    // Owners, key ids and subjects are validated at load time; a value that
    // still cannot be a header is sent percent-encoded rather than dropped.
    HeaderValue::from_str(s).unwrap_or_else(|_| {
        let enc = percent_encoding::utf8_percent_encode(s, percent_encoding::CONTROLS).to_string();
        HeaderValue::from_str(&enc).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    })
}

/// The client address as a header value, without going through `fmt`.
fn ip_value(ip: IpAddr) -> HeaderValue {
    if let IpAddr::V4(v4) = ip {
        let mut buf = [0u8; 15];
        let n = crate::textfmt::ipv4(v4, &mut buf);
        if let Ok(v) = HeaderValue::from_bytes(&buf[..n]) {
            return v;
        }
    }
    value(&ip.to_string())
}

/// Set `X-Auth-*`, `X-Forwarded-*` and `X-Request-Id`. Call after the strips.
pub fn add_forwarding(headers: &mut HeaderMap, f: &Forwarding) {
    // Room for the (up to) nine headers below without growing the map
    // several times over.
    headers.reserve(9);
    if let Some(id) = f.identity {
        headers.insert(X_AUTH_SUBJECT.clone(), value(&id.subject));
        if let Some(k) = &id.key_id {
            headers.insert(X_AUTH_KEY_ID.clone(), value(k));
        }
        headers.insert(
            X_AUTH_SCHEME.clone(),
            HeaderValue::from_static(id.scheme.as_str()),
        );
        if let Some(iss) = &id.issuer {
            headers.insert(X_AUTH_ISSUER.clone(), value(iss));
        }
        if let Some(g) = f.grants {
            headers.insert(X_AUTH_GRANTS.clone(), value(g));
        }
    }
    let ip = ip_value(f.client_ip);
    let xff = if headers.contains_key(&X_FORWARDED_FOR) {
        let prior: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if prior.is_empty() {
            ip
        } else {
            value(&format!(
                "{}, {}",
                prior.join(", "),
                ip.to_str().unwrap_or_default()
            ))
        }
    } else {
        ip
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
    if let Some(h) = f.host {
        headers.insert(X_FORWARDED_HOST.clone(), value(h));
    }
    headers.insert(X_REQUEST_ID.clone(), f.request_id.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn client_addresses_as_values() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "192.168.100.9",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip), ip.to_string().as_str());
        }
        for n in 0..=255u8 {
            let ip = IpAddr::from([n, n / 3, 255 - n, 7]);
            assert_eq!(ip_value(ip), ip.to_string().as_str());
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named() {
        let mut h = map(&[
            ("connection", "close, x-secret, content-length"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("content-length", "3"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("te").is_none());
        assert_eq!(h["content-length"], "3");
        assert_eq!(h["accept"], "*/*");
    }

    #[test]
    fn spoofing_aliases_go() {
        let mut h = map(&[
            ("x-auth-subject", "admin"),
            ("x_auth_subject", "admin"),
            ("x.auth.grants", "all:*"),
            ("x-http-method-override", "DELETE"),
            ("x_http_method", "DELETE"),
            ("x-forwarded-proto", "http"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-api-key", "s"),
            ("authorization", "Basic x"),
            ("x-authority", "kept"),
        ]);
        strip_untrusted(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["x-authority", "x-forwarded-for"]);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
    }
}
