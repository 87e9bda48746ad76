//! Credential headers, one builder per mode.
//!
//! Everything that does not change between requests is computed once in
//! [`AuthShared`]. Each connection gets its own [`AuthGen`] (its own RNG and
//! scratch buffer), so producing a header never touches shared state. Only
//! OAuth 1.0 does per-request work: a nonce, a timestamp and one HMAC-SHA1
//! over precomputed pieces of the signature base string.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use percent_encoding::{percent_decode, percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha1::Sha1;

use crate::cli::Credential;

/// RFC 5849 §3.6 / RFC 3986: everything except `A-Za-z0-9-._~` is `%XX`
/// (upper-case hex) on the UTF-8 bytes.
const OAUTH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Appends the RFC 5849 §3.6 encoding of `bytes` to `out`.
pub fn encode_into(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in percent_encode(bytes, OAUTH_ENCODE) {
        out.extend_from_slice(chunk.as_bytes());
    }
}

/// RFC 5849 §3.6 encoding of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    percent_encode(bytes, OAUTH_ENCODE).to_string()
}

/// Length of the hex nonce: 16 random bytes.
const NONCE_LEN: usize = 32;

/// The request-independent parts of an OAuth 1.0 HMAC-SHA1 signature.
///
/// The base string is `METHOD&enc(uri)&enc(normalized params)`; because §3.6
/// encoding works byte by byte, `enc(a + b) == enc(a) + enc(b)`, and the hex
/// nonce and decimal timestamp encode to themselves. So the base string is
/// `pieces[0] + nonce + pieces[1] + timestamp + pieces[2]`, and the HMAC is
/// fed those five slices without building the string.
pub struct OAuthTemplate {
    /// HMAC keyed with `enc(consumer_secret) + "&"`; cloned per request.
    mac: Hmac<Sha1>,
    pieces: [Vec<u8>; 3],
    /// `OAuth oauth_consumer_key="..", oauth_nonce="`
    header_prefix: Vec<u8>,
}

/// A parameter of the normalised list: a literal `(name, value)`, or the
/// nonce / timestamp slot.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Literal(String),
    Nonce,
    Timestamp,
}

impl OAuthTemplate {
    /// `scheme` is `http`/`https`, `host` the `Host` header value sent,
    /// `path_and_query` the request target as written.
    pub fn new(
        method: &str,
        scheme: &str,
        host: &str,
        path_and_query: &str,
        consumer_key: &str,
        consumer_secret: &str,
    ) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, q),
            None => (path_and_query, ""),
        };
        let uri = base_string_uri(scheme, host, path);

        let mut params: Vec<(String, Value)> = query_pairs(query)
            .map(|(n, v)| (encode(&n), Value::Literal(encode(&v))))
            .collect();
        let literal = |n: &str, v: &str| (n.to_owned(), Value::Literal(encode(v.as_bytes())));
        params.push(literal("oauth_consumer_key", consumer_key));
        params.push(("oauth_nonce".to_owned(), Value::Nonce));
        params.push(literal("oauth_signature_method", "HMAC-SHA1"));
        params.push(("oauth_timestamp".to_owned(), Value::Timestamp));
        params.push(literal("oauth_version", "1.0"));
        // Sort by encoded name, then encoded value (§3.4.1.3.2). The two
        // slots have unique names (the CLI refuses oauth_* query parameters),
        // so their order against literals never depends on their value.
        params.sort();

        let mut pieces: [Vec<u8>; 3] = Default::default();
        let mut cur = 0;
        encode_into(&mut pieces[0], method.to_ascii_uppercase().as_bytes());
        pieces[0].push(b'&');
        encode_into(&mut pieces[0], uri.as_bytes());
        pieces[0].push(b'&');
        for (i, (name, value)) in params.iter().enumerate() {
            if i > 0 {
                encode_into(&mut pieces[cur], b"&");
            }
            encode_into(&mut pieces[cur], name.as_bytes());
            encode_into(&mut pieces[cur], b"=");
            match value {
                Value::Literal(v) => encode_into(&mut pieces[cur], v.as_bytes()),
                Value::Nonce | Value::Timestamp => cur += 1,
            }
        }
        debug_assert_eq!(cur, 2);

        let mut key = Vec::new();
        encode_into(&mut key, consumer_secret.as_bytes());
        key.push(b'&');
        let mac = Hmac::<Sha1>::new_from_slice(&key).expect("HMAC takes keys of any length");

        let mut header_prefix = b"OAuth oauth_consumer_key=\"".to_vec();
        encode_into(&mut header_prefix, consumer_key.as_bytes());
        header_prefix.extend_from_slice(b"\", oauth_nonce=\"");
        OAuthTemplate {
            mac,
            pieces,
            header_prefix,
        }
    }

    /// The full signature base string (tests compare it with oauthlib's).
    #[cfg(test)]
    pub fn base_string(&self, nonce: &[u8], timestamp: &[u8]) -> Vec<u8> {
        [
            &self.pieces[0][..],
            nonce,
            &self.pieces[1],
            timestamp,
            &self.pieces[2],
        ]
        .concat()
    }

    /// Raw HMAC-SHA1 signature.
    pub fn sign(&self, nonce: &[u8], timestamp: &[u8]) -> [u8; 20] {
        let mut mac = self.mac.clone();
        mac.update(&self.pieces[0]);
        mac.update(nonce);
        mac.update(&self.pieces[1]);
        mac.update(timestamp);
        mac.update(&self.pieces[2]);
        mac.finalize().into_bytes().into()
    }

    /// Writes the complete `Authorization` header value into `out` (cleared first).
    pub fn header_into(&self, out: &mut Vec<u8>, nonce: &[u8], timestamp: &[u8]) {
        let sig = self.sign(nonce, timestamp);
        let mut b64 = [0u8; 28];
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(sig, &mut b64)
            .expect("20 bytes are 28 base64 characters");
        out.clear();
        out.extend_from_slice(&self.header_prefix);
        out.extend_from_slice(nonce);
        out.extend_from_slice(b"\", oauth_signature=\"");
        encode_into(out, &b64[..n]);
        out.extend_from_slice(b"\", oauth_signature_method=\"HMAC-SHA1\", oauth_timestamp=\"");
        out.extend_from_slice(timestamp);
        out.extend_from_slice(b"\", oauth_version=\"1.0\"");
    }
}

/// Base string URI (§3.4.1.2): `scheme://host[:port]path`, scheme and host
/// lower-cased, the default port (80 for http, 443 for https) dropped, an
/// empty path is `/`; the path is used exactly as sent.
pub fn base_string_uri(scheme: &str, host: &str, path: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let (name, port) = split_host_port(host);
    let default = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => "",
    };
    let mut out = format!("{scheme}://{}", name.to_ascii_lowercase());
    if let Some(p) = port.filter(|p| !p.is_empty() && *p != default) {
        out.push(':');
        out.push_str(p);
    }
    out.push_str(if path.is_empty() { "/" } else { path });
    out
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => (&authority[..=end], authority[end + 1..].strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    }
}

/// Decoded query pairs, `application/x-www-form-urlencoded` style (`+` is a
/// space), as oauthlib and the gateway read them. A name without `=` has an
/// empty value; empty segments are skipped.
fn query_pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query.split('&').filter(|s| !s.is_empty()).map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(n), form_decode(v))
    })
}

fn form_decode(s: &str) -> Vec<u8> {
    let plus_as_space = s.replace('+', " ");
    percent_decode(plus_as_space.as_bytes()).collect()
}

/// Everything needed to make credential headers, shared by all connections.
pub enum AuthShared {
    None,
    Static(HeaderName, HeaderValue),
    RoundRobin(Arc<[HeaderValue]>),
    OAuth1(OAuthTemplate),
}

impl AuthShared {
    pub fn new(
        cred: &Credential,
        method: &str,
        scheme: &str,
        host: &str,
        path_and_query: &str,
    ) -> Result<Self, String> {
        let value = |s: String| {
            HeaderValue::try_from(s)
                .map_err(|_| "credential is not a valid header value".to_owned())
        };
        Ok(match cred {
            Credential::None => AuthShared::None,
            Credential::Basic { id, secret } => {
                let b64 =
                    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
                AuthShared::Static(AUTHORIZATION, value(format!("Basic {b64}"))?)
            }
            Credential::ApiKeyHeader { secret } => {
                AuthShared::Static(HeaderName::from_static("x-api-key"), value(secret.clone())?)
            }
            Credential::Bearer { tokens } => AuthShared::RoundRobin(
                tokens
                    .iter()
                    .map(|t| value(format!("Bearer {t}")))
                    .collect::<Result<Vec<_>, _>>()?
                    .into(),
            ),
            Credential::OAuth1 { key, secret } => AuthShared::OAuth1(OAuthTemplate::new(
                method,
                scheme,
                host,
                path_and_query,
                key,
                secret,
            )),
        })
    }
}

/// Per-connection credential generator.
pub struct AuthGen {
    shared: Arc<AuthShared>,
    next: usize,
    rng: StdRng,
    buf: Vec<u8>,
}

impl AuthGen {
    /// `index` spreads round-robin tokens over connections.
    pub fn new(shared: Arc<AuthShared>, index: usize) -> Self {
        AuthGen {
            shared,
            next: index,
            rng: StdRng::from_entropy(),
            buf: Vec::with_capacity(256),
        }
    }

    /// The credential header for the next request, if the mode has one.
    pub fn next_header(&mut self) -> Option<(HeaderName, HeaderValue)> {
        match &*self.shared {
            AuthShared::None => None,
            AuthShared::Static(n, v) => Some((n.clone(), v.clone())),
            AuthShared::RoundRobin(values) => {
                let v = values[self.next % values.len()].clone();
                self.next = self.next.wrapping_add(1);
                Some((AUTHORIZATION, v))
            }
            AuthShared::OAuth1(t) => {
                let nonce = hex_nonce(&mut self.rng);
                let mut ts_buf = [0u8; 20];
                let ts = decimal(unix_now(), &mut ts_buf);
                t.header_into(&mut self.buf, &nonce, ts);
                // One copy into a `Bytes` that hyper can own.
                let v = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(&self.buf))
                    .expect("OAuth header is visible ASCII");
                Some((AUTHORIZATION, v))
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// 16 random bytes as 32 lower-case hex digits: unique per request with
/// overwhelming probability, across connections and runs.
fn hex_nonce(rng: &mut StdRng) -> [u8; NONCE_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let r: u128 = rng.gen();
    let mut out = [0u8; NONCE_LEN];
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((r >> (4 * i)) & 0xf) as usize];
    }
    out
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &[u8] = b"0123456789abcdef0123456789abcdef";
    const TS: &[u8] = b"1700000000";

    fn b64(sig: [u8; 20]) -> String {
        base64::engine::general_purpose::STANDARD.encode(sig)
    }

    /// Known answers from oauthlib 4.0.1 (`oauthlib.oauth1.Client(key,
    /// client_secret=secret, nonce=NONCE, timestamp=TS).sign(url, http_method=m)`).
    #[test]
    fn oauthlib_known_answers() {
        let cases = [
            (
                "lg-key",
                "lg-secret",
                "GET",
                "https",
                "127.0.0.1:8443",
                "/model/ABC-1",
                "l29VUf0S3x5Pp0WgHoSjmhfYzVc=",
            ),
            (
                "key with space&=",
                "s3cr3t/k3y+~!&",
                "GET",
                "https",
                "API.Example.com:443",
                "/v1/a%20b/search?q=hello+world&r=%E2%9D%A6&s=a%2Bb&t=%7E&empty=&b=2&b=1&a=z",
                "xuEKzVlxTJez6UEbWADV8bLNdfQ=",
            ),
            (
                "demo-key",
                "x",
                "POST",
                "http",
                "Example.COM:80",
                "/p?z=1",
                "6vwsGlOtJGRLnZriaujxh8HE45g=",
            ),
            (
                "demo-key",
                "x",
                "GET",
                "http",
                "example.com:8080",
                "/",
                "7PRQdfLBpyixQiwpbPXfAF/094A=",
            ),
        ];
        for (key, secret, method, scheme, host, pq, want) in cases {
            let t = OAuthTemplate::new(method, scheme, host, pq, key, secret);
            assert_eq!(b64(t.sign(NONCE, TS)), want, "{host}{pq}");
        }
    }

    #[test]
    fn base_string_matches_oauthlib() {
        let t = OAuthTemplate::new(
            "get",
            "https",
            "API.Example.com:443",
            "/v1/a%20b/search?q=hello+world&r=%E2%9D%A6&s=a%2Bb&t=%7E&empty=&b=2&b=1&a=z",
            "key with space&=",
            "s3cr3t/k3y+~!&",
        );
        let want = "GET&https%3A%2F%2Fapi.example.com%2Fv1%2Fa%2520b%2Fsearch&a%3Dz%26b%3D1%26b%3D2%26empty%3D%26oauth_consumer_key%3Dkey%2520with%2520space%2526%253D%26oauth_nonce%3D0123456789abcdef0123456789abcdef%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1700000000%26oauth_version%3D1.0%26q%3Dhello%2520world%26r%3D%25E2%259D%25A6%26s%3Da%252Bb%26t%3D~";
        assert_eq!(String::from_utf8(t.base_string(NONCE, TS)).unwrap(), want);
    }

    #[test]
    fn header_value() {
        let t = OAuthTemplate::new("GET", "http", "example.com:8080", "/", "demo-key", "x");
        let mut out = Vec::new();
        t.header_into(&mut out, NONCE, TS);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "OAuth oauth_consumer_key=\"demo-key\", oauth_nonce=\"0123456789abcdef0123456789abcdef\", \
             oauth_signature=\"7PRQdfLBpyixQiwpbPXfAF%2F094A%3D\", oauth_signature_method=\"HMAC-SHA1\", \
             oauth_timestamp=\"1700000000\", oauth_version=\"1.0\""
        );
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(encode(b"AZaz09-._~"), "AZaz09-._~");
        assert_eq!(
            encode(b" !*'();:@&=+$,/?#[]%"),
            "%20%21%2A%27%28%29%3B%3A%40%26%3D%2B%24%2C%2F%3F%23%5B%5D%25"
        );
        assert_eq!(encode("❦é".as_bytes()), "%E2%9D%A6%C3%A9");
        assert_eq!(encode(&[0x00, 0x7f, 0xff]), "%00%7F%FF");
        assert_eq!(form_decode("a+b%2Bc%7e"), b"a b+c~");
        assert_eq!(
            query_pairs("x&&y=&z=1=2").collect::<Vec<_>>(),
            vec![
                (b"x".to_vec(), vec![]),
                (b"y".to_vec(), vec![]),
                (b"z".to_vec(), b"1=2".to_vec())
            ]
        );
    }

    #[test]
    fn base_uris() {
        assert_eq!(
            base_string_uri("HTTPS", "Example.com:443", "/a"),
            "https://example.com/a"
        );
        assert_eq!(
            base_string_uri("https", "example.com:80", ""),
            "https://example.com:80/"
        );
        assert_eq!(
            base_string_uri("http", "example.com:80", "/%7E"),
            "http://example.com/%7E"
        );
        assert_eq!(
            base_string_uri("https", "[::1]:8443", "/a"),
            "https://[::1]:8443/a"
        );
        assert_eq!(base_string_uri("https", "[::1]", "/a"), "https://[::1]/a");
    }

    #[test]
    fn nonces_and_decimals() {
        let mut rng = StdRng::seed_from_u64(1);
        let a = hex_nonce(&mut rng);
        let b = hex_nonce(&mut rng);
        assert_ne!(a, b);
        assert!(a.iter().all(|c| c.is_ascii_hexdigit()));
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(1700000000, &mut buf), b"1700000000");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }

    #[test]
    fn generated_headers_verify() {
        // The per-connection generator produces headers whose signature
        // matches the template for the nonce and timestamp it put in them.
        let shared = Arc::new(
            AuthShared::new(
                &Credential::OAuth1 {
                    key: "k".into(),
                    secret: "s".into(),
                },
                "GET",
                "https",
                "h:8443",
                "/x?a=1",
            )
            .unwrap(),
        );
        let mut g = AuthGen::new(shared.clone(), 0);
        let (_, v1) = g.next_header().unwrap();
        let (_, v2) = g.next_header().unwrap();
        assert_ne!(v1, v2);
        let s = v1.to_str().unwrap();
        let field = |name: &str| {
            let start = s.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            &s[start..start + s[start..].find('"').unwrap()]
        };
        let AuthShared::OAuth1(t) = &*shared else {
            unreachable!()
        };
        let sig = b64(t.sign(
            field("oauth_nonce").as_bytes(),
            field("oauth_timestamp").as_bytes(),
        ));
        assert_eq!(field("oauth_signature"), encode(sig.as_bytes()));
    }
}
