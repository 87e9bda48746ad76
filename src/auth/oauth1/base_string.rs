//! Parameter encoding (§3.6), base string URI (§3.4.1.2), normalised
//! parameters (§3.4.1.3.2) and the signature base string (§3.4.1.1).

use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything except the unreserved set `A-Za-z0-9-._~` is `%XX` encoded
/// (upper-case hex) on the UTF-8 bytes.
const OAUTH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// RFC 5849 §3.6 percent-encoding of raw bytes.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    encode_into(&mut out, bytes);
    out
}

/// Appends the §3.6 encoding of `bytes` to `out`.
pub(crate) fn encode_into(out: &mut String, bytes: &[u8]) {
    for chunk in percent_encode(bytes, OAUTH_ENCODE) {
        out.push_str(chunk);
    }
}

/// Base string URI (§3.4.1.2) from the origin and the raw path:
/// `scheme://host[:port]path`, scheme and host lower-cased, default port
/// (80 for http, 443 for https) dropped, empty path → `/`. The path is
/// used exactly as sent.
pub fn base_string_uri(origin: &str, raw_path: &str) -> String {
    let (scheme, rest) = match origin.find("://") {
        Some(i) => (
            origin.get(..i).unwrap_or(""),
            origin.get(i + 3..).unwrap_or(""),
        ),
        None => ("https", origin),
    };
    let rest = rest.trim_end_matches('/');
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
        None => (rest, ""),
    };
    let (host, port) = split_host_port(authority);
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        Some(80u16)
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(443u16)
    } else {
        None
    };

    // Scheme and host are lower-cased in place, without copies of their own.
    let mut out = String::with_capacity(origin.len() + raw_path.len() + 1);
    out.push_str(scheme);
    out.push_str("://");
    out.push_str(host);
    out.make_ascii_lowercase();
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        let numeric = port
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| port.parse::<u16>().ok())
            .flatten();
        match numeric {
            Some(n) if Some(n) == default_port => {}
            Some(n) => {
                out.push(':');
                out.push_str(itoa::Buffer::new().format(n));
            }
            None => {
                out.push(':');
                out.push_str(port);
            }
        }
    }
    out.push_str(prefix);
    if raw_path.is_empty() {
        if prefix.is_empty() {
            out.push('/');
        }
    } else {
        out.push_str(raw_path);
    }
    out
}

/// Splits `host[:port]` / `[v6]:port`; the port is the text after the colon.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    // Drop userinfo if someone configured it.
    let authority = match authority.rfind('@') {
        Some(i) => authority.get(i + 1..).unwrap_or(""),
        None => authority,
    };
    if authority.starts_with('[') {
        if let Some(end) = authority.find(']') {
            let host = authority.get(..=end).unwrap_or(authority);
            let after = authority.get(end + 1..).unwrap_or("");
            return (host, after.strip_prefix(':'));
        }
        return (authority, None);
    }
    match authority.rfind(':') {
        Some(i) => (authority.get(..i).unwrap_or(""), authority.get(i + 1..)),
        None => (authority, None),
    }
}

/// Normalised parameters (§3.4.1.3.2) from decoded name/value pairs: each
/// encoded, sorted by encoded name then encoded value, `name=value` joined
/// with `&`.
pub(crate) fn normalize<'a, I>(pairs: I) -> String
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    // Every name and value encoded into one buffer; the pairs are sorted
    // as (name, value) ranges of it, then joined.
    // Room for a typical request's seven `oauth_*` parameters and a few
    // more, so neither grows on the common path.
    let mut buf = String::with_capacity(256);
    let mut spans: Vec<(usize, usize, usize)> = Vec::with_capacity(12);
    for (n, v) in pairs {
        let start = buf.len();
        encode_into(&mut buf, n);
        let mid = buf.len();
        encode_into(&mut buf, v);
        spans.push((start, mid, buf.len()));
    }
    let part = |a: usize, b: usize| buf.get(a..b).unwrap_or_default();
    spans.sort_unstable_by(|x, y| {
        (part(x.0, x.1), part(x.1, x.2)).cmp(&(part(y.0, y.1), part(y.1, y.2)))
    });
    let mut out = String::with_capacity(buf.len() + 2 * spans.len());
    for (i, &(a, m, b)) in spans.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(part(a, m));
        out.push('=');
        out.push_str(part(m, b));
    }
    out
}

/// Signature base string: `enc(METHOD)&enc(base_uri)&enc(normalized)`.
pub(crate) fn build(method: &str, origin: &str, raw_path: &str, normalized: &str) -> String {
    let uri = base_string_uri(origin, raw_path);
    let mut out = String::with_capacity(method.len() + 3 * (uri.len() + normalized.len()) / 2 + 2);
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        encode_into(&mut out, method.to_ascii_uppercase().as_bytes());
    } else {
        encode_into(&mut out, method.as_bytes());
    }
    out.push('&');
    encode_into(&mut out, uri.as_bytes());
    out.push('&');
    encode_into(&mut out, normalized.as_bytes());
    out
}
