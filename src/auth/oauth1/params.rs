//! Collecting and validating request parameters (§3.4.1.3.1, §3.5).

use super::{base_string, Location, OAuth1Error, OAuthParams, SignatureMethod, SignedRequest};
use std::borrow::Cow;

/// Longest accepted Authorization header value (bytes); longer is refused
/// before any parsing.
pub const MAX_HEADER_LEN: usize = 8 * 1024;
/// Most parameters accepted in the Authorization header.
pub const MAX_HEADER_PARAMS: usize = 64;
/// Most parameters accepted in query + form body together.
pub const MAX_PARAMS: usize = 1024;

/// A decoded name/value pair: borrowed from the request when there was
/// nothing to decode (most names and values), owned otherwise.
pub(crate) type Pair<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

type Error = OAuth1Error;

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict percent-decoding: `%` must be followed by two hex digits.
/// With `plus_is_space`, `+` decodes to a space (form encoding).
pub(crate) fn percent_decode(input: &[u8], plus_is_space: bool) -> Option<Cow<'_, [u8]>> {
    // Nonces, timestamps, keys and most values have nothing to decode:
    // they are used in place.
    let found = if plus_is_space {
        memchr::memchr2(b'%', b'+', input)
    } else {
        memchr::memchr(b'%', input)
    };
    let Some(plain) = found else {
        return Some(Cow::Borrowed(input));
    };
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..plain]);
    let mut iter = input[plain..].iter();
    while let Some(&b) = iter.next() {
        match b {
            b'%' => {
                let hi = iter.next().copied().and_then(hex_val)?;
                let lo = iter.next().copied().and_then(hex_val)?;
                out.push(hi << 4 | lo);
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    Some(Cow::Owned(out))
}

/// A header name or value: percent-decoded when the scan saw a `%`, else
/// used in place.
fn decode_if(escaped: bool, raw: &[u8]) -> Result<Cow<'_, [u8]>, Error> {
    if escaped {
        percent_decode(raw, false).ok_or(Error::Malformed("bad percent-encoding"))
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

/// RFC 9110 `tchar`, as a table: names are scanned a byte at a time.
const TCHAR: [bool; 256] = base_string::alnum_and(b"!#$%&'*+-.^_`|~");

fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

fn skip_ows(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// Parses an `OAuth name="value", ...` Authorization header value.
/// Names and values are percent-decoded (`+` is literal).
pub(crate) fn parse_header(header: &str) -> Result<Vec<Pair<'_>>, Error> {
    if header.len() > MAX_HEADER_LEN {
        return Err(Error::Malformed("authorization header too long"));
    }
    let bytes = header.as_bytes();
    let (scheme, rest) = bytes.split_at(5.min(bytes.len()));
    if !scheme.eq_ignore_ascii_case(b"oauth") {
        return Err(Error::Malformed("authorization scheme is not OAuth"));
    }
    if rest.first().is_some_and(|&c| c != b' ' && c != b'\t') {
        return Err(Error::Malformed("authorization scheme is not OAuth"));
    }
    let n = rest.len();
    let mut out: Vec<Pair> = Vec::with_capacity(8);
    let mut i = 0;
    loop {
        // Empty list elements (",,") are allowed, as in RFC 7230 #rule.
        while i < n && matches!(rest[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        if i >= n {
            break;
        }
        let start = i;
        let mut escaped_name = false;
        while i < n && is_tchar(rest[i]) {
            escaped_name |= rest[i] == b'%';
            i += 1;
        }
        let name = &rest[start..i];
        if name.is_empty() {
            return Err(Error::Malformed("bad authorization parameter name"));
        }
        i = skip_ows(rest, i);
        if i >= n || rest[i] != b'=' {
            return Err(Error::Malformed("authorization parameter without value"));
        }
        i = skip_ows(rest, i + 1);
        if i >= n || rest[i] != b'"' {
            return Err(Error::Malformed("authorization parameter value not quoted"));
        }
        i += 1;
        let vstart = i;
        // One scan finds the closing quote and whether there is anything
        // to decode before it.
        let mut escaped_value = false;
        i = match memchr::memchr2(b'"', b'%', &rest[i..]) {
            Some(q) if rest[i + q] == b'%' => {
                escaped_value = true;
                memchr::memchr(b'"', &rest[i + q..]).map_or(n, |e| i + q + e)
            }
            Some(q) => i + q,
            None => n,
        };
        if i >= n {
            return Err(Error::Malformed(
                "unterminated authorization parameter value",
            ));
        }
        let value = &rest[vstart..i];
        i = skip_ows(rest, i + 1);
        if i < n && rest[i] != b',' {
            return Err(Error::Malformed(
                "expected ',' between authorization parameters",
            ));
        }
        if out.len() >= MAX_HEADER_PARAMS {
            return Err(Error::Malformed("too many authorization parameters"));
        }
        let name = decode_if(escaped_name, name)?;
        let value = decode_if(escaped_value, value)?;
        out.push((name, value));
    }
    Ok(out)
}

/// Parses `application/x-www-form-urlencoded` data (query or body) into
/// `out`: split on `&` then the first `=`, `+` is a space, empty values and
/// repeated names kept, empty segments skipped (as `parse_qsl`).
pub(crate) fn parse_form<'a>(
    input: &'a [u8],
    out: &mut Vec<Pair<'a>>,
    limit: usize,
) -> Result<(), Error> {
    for seg in input.split(|&c| c == b'&') {
        if seg.is_empty() {
            continue;
        }
        if out.len() >= limit {
            return Err(Error::Malformed("too many parameters"));
        }
        let (name, value) = match seg.iter().position(|&c| c == b'=') {
            Some(p) => {
                let (n, v) = seg.split_at(p);
                (n, v.get(1..).unwrap_or_default())
            }
            None => (seg, &b""[..]),
        };
        let name = percent_decode(name, true).ok_or(Error::Malformed("bad percent-encoding"))?;
        let value = percent_decode(value, true).ok_or(Error::Malformed("bad percent-encoding"))?;
        out.push((name, value));
    }
    Ok(())
}

/// Cheap check: does this query string or form body carry any `oauth_*`
/// parameter (also when the name itself is percent-encoded)?
pub fn has_oauth_params(query_or_body: &[u8]) -> bool {
    query_or_body.split(|&c| c == b'&').any(|seg| {
        let name = seg.split(|&c| c == b'=').next().unwrap_or(seg);
        name.starts_with(b"oauth_")
            || (name.contains(&b'%')
                && percent_decode(name, true).is_some_and(|d| d.starts_with(b"oauth_")))
    })
}

fn is_oauth(name: &[u8]) -> bool {
    name.starts_with(b"oauth_")
}

/// Parameters from the three sources, decoded, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct Collected<'a> {
    pub header: Vec<Pair<'a>>,
    pub query: Vec<Pair<'a>>,
    pub body: Vec<Pair<'a>>,
}

impl<'a> Collected<'a> {
    pub(crate) fn from_request(req: &SignedRequest<'a>) -> Result<Self, Error> {
        let mut c = Collected::default();
        if let Some(h) = req.authorization {
            c.header = parse_header(h)?;
        }
        c.parse_query_and_body(req.query.map(str::as_bytes), req.form_body)?;
        Ok(c)
    }

    pub(crate) fn parse_query_and_body(
        &mut self,
        query: Option<&'a [u8]>,
        body: Option<&'a [u8]>,
    ) -> Result<(), Error> {
        if let Some(q) = query {
            parse_form(q, &mut self.query, MAX_PARAMS)?;
        }
        if let Some(b) = body {
            parse_form(
                b,
                &mut self.body,
                MAX_PARAMS.saturating_sub(self.query.len()),
            )?;
        }
        Ok(())
    }

    /// Duplicate rules; returns where the `oauth_*` parameters are.
    pub(crate) fn check_duplicates(&self) -> Result<Option<Location>, Error> {
        // Header: no name may repeat.
        for (i, (name, _)) in self.header.iter().enumerate() {
            if self.header[..i].iter().any(|(n, _)| n == name) {
                return Err(Error::DuplicateParameter(
                    "repeated authorization header parameter",
                ));
            }
        }
        // Query / body: no oauth_* name may repeat.
        for list in [&self.query, &self.body] {
            let mut seen: Vec<&[u8]> = list
                .iter()
                .map(|(n, _)| n.as_ref())
                .filter(|n| is_oauth(n))
                .collect();
            let before = seen.len();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != before {
                return Err(Error::DuplicateParameter("repeated oauth parameter"));
            }
        }
        // No name in both query and body.
        // A sorted list and binary search: no hashing for these few names.
        if !self.query.is_empty() && !self.body.is_empty() {
            let mut names: Vec<&[u8]> = self.query.iter().map(|(n, _)| n.as_ref()).collect();
            names.sort_unstable();
            if self
                .body
                .iter()
                .any(|(n, _)| names.binary_search(&n.as_ref()).is_ok())
            {
                return Err(Error::DuplicateParameter(
                    "parameter in both query and body",
                ));
            }
        }
        // oauth_* in exactly one place.
        let mut location = None;
        for (loc, list) in [
            (Location::Header, &self.header),
            (Location::Query, &self.query),
            (Location::Body, &self.body),
        ] {
            if list.iter().any(|(n, _)| is_oauth(n)) {
                if location.is_some() {
                    return Err(Error::DuplicateParameter(
                        "oauth parameters in more than one place",
                    ));
                }
                location = Some(loc);
            }
        }
        Ok(location)
    }

    /// Normalised parameters: everything except `oauth_signature` and the
    /// header's `realm`.
    pub(crate) fn normalized(self) -> String {
        base_string::normalize_sorted(&self.into_signed())
    }

    /// The parameters the signature covers (everything except
    /// `oauth_signature` and the header's `realm`), in base-string order.
    /// The header's list is reused: no copy of any name or value.
    pub(crate) fn into_signed(self) -> Vec<Pair<'a>> {
        let unsigned = |n: &[u8]| n == b"oauth_signature".as_slice();
        let mut all = self.header;
        all.retain(|(n, _)| !unsigned(n) && n.as_ref() != b"realm".as_slice());
        for list in [self.query, self.body] {
            if !list.is_empty() {
                all.extend(list.into_iter().filter(|(n, _)| !unsigned(n)));
            }
        }
        base_string::sort_pairs(&mut all);
        all
    }
}

/// The `oauth_*` values as text, borrowed from the request when they were
/// used in place.
#[derive(Default)]
struct Fields<'a> {
    consumer_key: Option<Cow<'a, str>>,
    token: Option<Cow<'a, str>>,
    signature_method: Option<Cow<'a, str>>,
    signature: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    nonce: Option<Cow<'a, str>>,
    version: Option<Cow<'a, str>>,
    body_hash: Option<Cow<'a, str>>,
}

/// A decoded value as text.
fn text(value: Cow<'_, [u8]>) -> Result<Cow<'_, str>, Error> {
    const NOT_UTF8: Error = Error::Malformed("oauth parameter is not UTF-8");
    match value {
        Cow::Borrowed(b) => std::str::from_utf8(b)
            .map(Cow::Borrowed)
            .map_err(|_| NOT_UTF8),
        Cow::Owned(v) => String::from_utf8(v).map(Cow::Owned).map_err(|_| NOT_UTF8),
    }
}

fn required<'a>(v: Option<Cow<'a, str>>, what: &'static str) -> Result<Cow<'a, str>, Error> {
    v.filter(|s| !s.is_empty()).ok_or(Error::Malformed(what))
}

pub(crate) fn parse<'a>(req: &SignedRequest<'a>) -> Result<OAuthParams<'a>, Error> {
    let mut c = Collected::from_request(req)?;
    let location = c
        .check_duplicates()?
        .ok_or(Error::Malformed("missing oauth parameters"))?;
    let source = match location {
        Location::Header => &mut c.header,
        Location::Query => &mut c.query,
        Location::Body => &mut c.body,
    };

    let mut f = Fields::default();
    for (name, value) in source.iter_mut().filter(|(n, _)| is_oauth(n)) {
        let slot = match name.get(6..).unwrap_or_default() {
            b"consumer_key" => &mut f.consumer_key,
            b"token" => &mut f.token,
            b"signature_method" => &mut f.signature_method,
            b"signature" => &mut f.signature,
            b"timestamp" => &mut f.timestamp,
            b"nonce" => &mut f.nonce,
            b"version" => &mut f.version,
            b"body_hash" => &mut f.body_hash,
            _ => return Err(Error::UnsupportedParameter("unknown oauth parameter")),
        };
        // The signature is not signed: its value is moved out (a decoded
        // one is not copied). Every other value stays for the base string.
        let value = if name.as_ref() == b"oauth_signature" {
            std::mem::take(value)
        } else {
            value.clone()
        };
        *slot = Some(text(value)?);
    }
    if f.version.as_deref().is_some_and(|v| v != "1.0") {
        return Err(Error::UnsupportedParameter("oauth_version is not 1.0"));
    }
    if f.token.as_deref().is_some_and(|t| !t.is_empty()) {
        return Err(Error::UnsupportedParameter(
            "oauth_token (three-legged) not supported",
        ));
    }
    let consumer_key = required(f.consumer_key, "missing oauth_consumer_key")?;
    let signature = required(f.signature, "missing oauth_signature")?;
    let method = required(f.signature_method, "missing oauth_signature_method")?;
    let timestamp = required(f.timestamp, "missing oauth_timestamp")?;
    let nonce = required(f.nonce, "missing oauth_nonce")?;
    if timestamp.len() > 20 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Malformed("oauth_timestamp is not a decimal integer"));
    }
    let timestamp: u64 = timestamp
        .parse()
        .map_err(|_| Error::Malformed("oauth_timestamp is not a decimal integer"))?;
    let signature_method =
        SignatureMethod::from_wire(&method).ok_or(Error::UnsupportedSignatureMethod)?;
    let body_hash = f.body_hash;
    let realm = c
        .header
        .iter()
        .find(|(n, _)| n.as_ref() == b"realm".as_slice())
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned());

    Ok(OAuthParams {
        consumer_key,
        nonce,
        timestamp,
        signature_method,
        signature,
        body_hash,
        location,
        realm,
        signed: c.into_signed(),
    })
}

#[cfg(test)]
mod table_tests {
    #[test]
    fn tchar_table_is_rfc_9110_tchar() {
        for b in 0..=255u8 {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(super::is_tchar(b), tchar, "byte {b:#04x}");
        }
    }
}
