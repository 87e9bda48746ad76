//! What the upstream sees (SPEC section 4): hop-by-hop headers go first,
//! then anything a client could use to impersonate the gateway, then the
//! credential; then the gateway adds its own headers.

use crate::auth::Identity;
use http::header::{Entry, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST};
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
    // One pass over the (few) names present rather than a hash lookup for
    // each of the nine hop-by-hop names: this runs twice per request, and
    // most answers carry `Connection: keep-alive` and nothing else of the
    // kind.
    let (mut any, mut connection) = (false, false);
    for name in headers.keys() {
        if is_hop_by_hop(name.as_str()) {
            any = true;
            connection |= *name == CONNECTION;
        }
    }
    if !any {
        return;
    }
    if connection {
        // Names listed in `Connection` that are not hop-by-hop anyway
        // (those go below): rare, so only then is anything allocated.
        let mut listed: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(CONNECTION) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',').map(str::trim) {
                if token.is_empty() || names_hop_by_hop(token.as_bytes()) {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(token.as_bytes()) {
                    if n != CONTENT_LENGTH && n != HOST {
                        listed.push(n);
                    }
                }
            }
        }
        for name in listed {
            headers.remove(name);
        }
    }
    // Removing one name at a time needs no list of names (a clone of a
    // standard name is free).
    while let Some(name) = headers.keys().find(|n| is_hop_by_hop(n.as_str())).cloned() {
        headers.remove(name);
    }
}

/// For each of `names`: how many times it occurs in `headers`, and its
/// first value. One pass over the (few) headers present, rather than a
/// hash lookup per name.
pub fn scan<'h, const N: usize>(
    headers: &'h HeaderMap,
    names: [&HeaderName; N],
) -> [(usize, Option<&'h HeaderValue>); N] {
    let mut seen = [(0, None); N];
    for (name, value) in headers {
        if let Some(i) = names.iter().position(|n| *n == name) {
            seen[i].0 += 1;
            seen[i].1.get_or_insert(value);
        }
    }
    seen
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1, plus common non-standard ones).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// One of [`HOP_BY_HOP`] (`name` is lower-case, as header names are).
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
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

/// A token of a `Connection` value (any case) that names a hop-by-hop
/// header.
pub(crate) fn names_hop_by_hop(token: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| token.eq_ignore_ascii_case(h.as_bytes()))
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
    // One name at a time, looked for again after each removal: a request
    // usually carries one (its `Authorization`), and no list is allocated.
    while let Some(name) = headers.keys().find(|n| untrusted(n.as_str())).cloned() {
        headers.remove(name);
    }
}

fn untrusted(s: &str) -> bool {
    // Every name below starts with `x`, `f` or `a`: most headers (host,
    // accept, user-agent, content-*) stop here.
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
}

/// What the gateway adds for the upstream.
const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// The request id's header name, as a `HeaderName`: a lookup by `&str`
/// parses the name again each time.
pub const X_REQUEST_ID_NAME: HeaderName = HeaderName::from_static("x-request-id");

pub struct Forwarding<'a> {
    pub identity: Option<&'a Identity>,
    /// The `X-Auth-Grants` value.
    pub grants: Option<&'a str>,
    pub client_ip: IpAddr,
    /// The host the client asked for, as sent.
    pub host: Option<&'a str>,
    pub request_id: &'a HeaderValue,
}

/// A byte `HeaderValue::from_str` accepts: visible ASCII, space or tab.
fn plain_value_byte(b: u8) -> bool {
    (b' '..0x7f).contains(&b) | (b == b'\t')
}

/// Appends `name: value\r\n`. Owners, key ids and subjects are validated
/// at load time; a value that still cannot be a header (a control
/// character, non-ASCII) is sent percent-encoded rather than dropped, so
/// nothing can end the line early.
fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    // Every byte is looked at, without stopping at the first bad one: a
    // check the compiler can do many bytes at a time, and values are short.
    if value.iter().fold(true, |ok, &b| ok & plain_value_byte(b)) {
        out.extend_from_slice(value);
    } else {
        // Every byte from 0x80 up is encoded as well, so the result is
        // visible ASCII.
        for chunk in percent_encoding::percent_encode(value, percent_encoding::CONTROLS) {
            out.extend_from_slice(chunk.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The client address, without going through `fmt` for IPv4.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let n = crate::textfmt::ipv4(v4, &mut buf);
            out.extend_from_slice(&buf[..n]);
        }
        IpAddr::V6(v6) => out.extend_from_slice(v6.to_string().as_bytes()),
    }
}

/// The gateway's own headers for the upstream, `X-Auth-*`, `X-Forwarded-*`
/// and `X-Request-Id`, as `name: value\r\n` lines that go into the request
/// head after the client's headers. Call after the strips. The client's
/// `X-Forwarded-For` is taken out of `headers` (its addresses lead ours in
/// the new value), and so is its `X-Request-Id` (ours replaces it). Written
/// straight as bytes, appended to `out` (the request target's buffer,
/// [`crate::proxy::Outbound::lines`]): no header-map inserts, no value
/// copies.
pub fn forwarding_lines(headers: &mut HeaderMap, f: &Forwarding, out: &mut Vec<u8>) {
    if let Some(id) = f.identity {
        line(out, "x-auth-subject", id.subject.as_bytes());
        if let Some(k) = &id.key_id {
            line(out, "x-auth-key-id", k.as_bytes());
        }
        line(out, "x-auth-scheme", id.scheme.as_str().as_bytes());
        if let Some(iss) = &id.issuer {
            line(out, "x-auth-issuer", iss.as_bytes());
        }
        if let Some(g) = f.grants {
            line(out, "x-auth-grants", g.as_bytes());
        }
    }
    // Whether the client sent either header the gateway replaces, from one
    // pass over the names present: most requests carry neither, and then
    // there is nothing to look up by hash.
    let (mut forwarded_for, mut request_id) = (false, false);
    for name in headers.keys() {
        let name = name.as_str();
        if name.starts_with('x') {
            forwarded_for |= name == X_FORWARDED_FOR;
            request_id |= name == X_REQUEST_ID_NAME.as_str();
        }
    }
    // A `HeaderName` constant, not the `&str`: `entry` turns a `&str` into
    // an owned name (a copy of its bytes) when the header is absent.
    let mut prior = None;
    if forwarded_for {
        if let Entry::Occupied(e) = headers.entry(HeaderName::from_static(X_FORWARDED_FOR)) {
            let mut xff = Vec::with_capacity(48);
            for p in e.remove_entry_mult().1 {
                if let Ok(p) = p.to_str() {
                    xff.extend_from_slice(p.as_bytes());
                    xff.extend_from_slice(b", ");
                }
            }
            prior = Some(xff);
        }
    }
    match prior {
        Some(mut xff) => {
            push_ip(&mut xff, f.client_ip);
            line(out, X_FORWARDED_FOR, &xff);
        }
        None => {
            // An address's text needs no encoding.
            out.extend_from_slice(b"x-forwarded-for: ");
            push_ip(out, f.client_ip);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"x-forwarded-proto: https\r\n");
    if let Some(h) = f.host {
        line(out, "x-forwarded-host", h.as_bytes());
    }
    if request_id {
        headers.remove(X_REQUEST_ID_NAME);
    }
    line(out, X_REQUEST_ID_NAME.as_str(), f.request_id.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{AUTHORIZATION, TRANSFER_ENCODING};

    #[test]
    fn scan_counts_each_name_and_keeps_its_first_value() {
        let h = map(&[
            ("content-length", "5"),
            ("x-a", "1"),
            ("content-length", "6"),
            ("authorization", "Basic x"),
        ]);
        let [cl, te, auth] = scan(&h, [&CONTENT_LENGTH, &TRANSFER_ENCODING, &AUTHORIZATION]);
        assert_eq!((cl.0, cl.1.map(|v| v.as_bytes())), (2, Some(&b"5"[..])));
        assert_eq!((te.0, te.1), (0, None));
        assert_eq!(
            (auth.0, auth.1.map(|v| v.as_bytes())),
            (1, Some(&b"Basic x"[..]))
        );
    }

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
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
        for n in 0..=255u8 {
            let ip = IpAddr::from([n, n / 3, 255 - n, 7]);
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
    }

    #[test]
    fn hop_by_hop_list_and_match_agree() {
        for h in HOP_BY_HOP {
            assert!(is_hop_by_hop(h), "{h}");
        }
        assert!(!is_hop_by_hop("accept"));
    }

    #[test]
    fn every_header_connection_names_goes_whatever_its_case() {
        let mut h = map(&[
            ("connection", "Close, , X-Secret ,KEEP-ALIVE"),
            ("connection", "x-other"),
            ("close", "x"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("host", "up"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["accept", "host"]);
    }

    fn identity(subject: &str) -> Identity {
        Identity {
            scheme: crate::auth::Scheme::ApiKey,
            subject: subject.into(),
            key_id: Some("k1".into()),
            issuer: None,
            grants: Default::default(),
            ceiling: None,
        }
    }

    fn lines(headers: &mut HeaderMap, subject: &str, host: Option<&str>) -> String {
        let id = identity(subject);
        let rid = HeaderValue::from_static("rid-1");
        let f = Forwarding {
            identity: Some(&id),
            grants: Some("models:read"),
            client_ip: IpAddr::from([10, 0, 0, 9]),
            host,
            request_id: &rid,
        };
        let mut out = Vec::new();
        forwarding_lines(headers, &f, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn forwarding_lines_as_sent() {
        let mut h = map(&[("accept", "*/*")]);
        assert_eq!(
            lines(&mut h, "alice", Some("api.example:8443")),
            "x-auth-subject: alice\r\nx-auth-key-id: k1\r\nx-auth-scheme: api_key\r\n\
             x-auth-grants: models:read\r\nx-forwarded-for: 10.0.0.9\r\n\
             x-forwarded-proto: https\r\nx-forwarded-host: api.example:8443\r\n\
             x-request-id: rid-1\r\n"
        );
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn forwarding_lines_merge_and_replace_the_clients() {
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
            ("x-request-id", "client-id"),
            ("accept", "*/*"),
        ]);
        let out = lines(&mut h, "alice", None);
        assert!(out.contains("x-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9\r\n"));
        assert!(out.ends_with("x-request-id: rid-1\r\n"));
        assert!(!out.contains("x-forwarded-host"));
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["accept"]);
    }

    #[test]
    fn forwarding_values_cannot_break_the_head() {
        let mut h = HeaderMap::new();
        let out = lines(&mut h, "ev\r\nil: 1\u{e9}", None);
        assert!(
            out.starts_with("x-auth-subject: ev%0D%0Ail: 1%C3%A9\r\n"),
            "{out}"
        );
        assert_eq!(out.matches("\r\n").count(), 7);
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
