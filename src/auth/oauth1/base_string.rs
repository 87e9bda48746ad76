//! Parameter encoding (§3.6), base string URI (§3.4.1.2), normalised
//! parameters (§3.4.1.3.2) and the signature base string (§3.4.1.1).

use super::params::Pair;
use std::borrow::Cow;
use std::cell::Cell;
use std::cmp::Ordering;

/// The unreserved set `A-Za-z0-9-._~`: kept as is by §3.6, every other
/// byte is `%XX` encoded. A table, as encoding looks at every byte.
const UNRESERVED: [bool; 256] = alnum_and(b"-._~");

/// A byte table: ASCII letters and digits, and `extra`, are `true`.
pub(crate) const fn alnum_and(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn is_unreserved(b: u8) -> bool {
    UNRESERVED[usize::from(b)]
}

/// RFC 5849 §3.6 percent-encoding of raw bytes.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    encode_into(&mut out, bytes);
    ascii_string(out)
}

/// Appends the §3.6 encoding of `bytes` (UTF-8 or not) to `out`, upper-case
/// hex. Runs of unreserved bytes, most of the input, are copied at once.
/// Bytes rather than a `String`: safe code would otherwise re-check every
/// run as UTF-8.
pub(crate) fn encode_into(out: &mut Vec<u8>, bytes: &[u8]) {
    escape_into(out, bytes, b"%");
}

/// Appends `encode(encode(bytes))`: a parameter of the normalised
/// parameters as the signature base string carries it (§3.4.1.1 encodes
/// the already encoded list once more). Unreserved bytes stay as they
/// are; any other byte's `%XX` becomes `%25XX`.
fn encode_twice_into(out: &mut Vec<u8>, bytes: &[u8]) {
    escape_into(out, bytes, b"%25");
}

/// Unreserved bytes as they are, every other byte as `escape` followed by
/// its two upper-case hex digits. (`escape` is a fixed-size array so that
/// each escape is a few stores rather than a call to copy memory.)
fn escape_into<const N: usize>(out: &mut Vec<u8>, bytes: &[u8], escape: &[u8; N]) {
    let mut rest = bytes;
    loop {
        let run = rest
            .iter()
            .position(|&b| !is_unreserved(b))
            .unwrap_or(rest.len());
        let (plain, tail) = rest.split_at(run);
        out.extend_from_slice(plain);
        let Some((&b, tail)) = tail.split_first() else {
            return;
        };
        out.extend_from_slice(escape);
        out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        rest = tail;
    }
}

/// The `String` of encoded output, which is all ASCII (one check of the
/// whole, instead of one per piece).
pub(crate) fn ascii_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Orders raw byte strings as their §3.6 encodings would be ordered,
/// without encoding them. Encoding maps a byte to itself (unreserved) or to
/// `%` and two upper-case hex digits; `%` sorts below every unreserved
/// byte, upper-case hex sorts as the byte's value, and no encoded byte is a
/// prefix of another's encoding. So the first differing raw byte decides,
/// ranked by (unreserved, value); otherwise the shorter string is first.
fn cmp_encoded(a: &[u8], b: &[u8]) -> Ordering {
    match a.iter().zip(b).find(|(x, y)| x != y) {
        Some((&x, &y)) => (is_unreserved(x), x).cmp(&(is_unreserved(y), y)),
        None => a.len().cmp(&b.len()),
    }
}

/// Base string URI (§3.4.1.2) from the origin and the raw path:
/// `scheme://host[:port]path`, scheme and host lower-cased, default port
/// (80 for http, 443 for https) dropped, empty path → `/`. The path is
/// used exactly as sent.
pub fn base_string_uri(origin: &str, raw_path: &str) -> String {
    let mut out = String::with_capacity(origin.len() + raw_path.len() + 1);
    write_base_string_uri(origin, raw_path, |piece| out.push_str(piece));
    out
}

/// [`base_string_uri`], handed to `put` piece by piece, so that the
/// signature base string can encode it without a copy of its own.
fn write_base_string_uri(origin: &str, raw_path: &str, mut put: impl FnMut(&str)) {
    // A scheme has no ':', so only the first one can start "://" (a
    // one-byte search rather than a substring search).
    let (scheme, rest) = match origin.find(':') {
        Some(i) if origin.get(i..).is_some_and(|r| r.starts_with("://")) => (
            origin.get(..i).unwrap_or(""),
            origin.get(i + 3..).unwrap_or(""),
        ),
        _ => ("https", origin),
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

    put(&lower(scheme));
    put("://");
    put(&lower(host));
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        let numeric = port
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| port.parse::<u16>().ok())
            .flatten();
        match numeric {
            Some(n) if Some(n) == default_port => {}
            Some(n) => {
                put(":");
                put(itoa::Buffer::new().format(n));
            }
            None => {
                put(":");
                put(port);
            }
        }
    }
    put(prefix);
    if raw_path.is_empty() {
        if prefix.is_empty() {
            put("/");
        }
    } else {
        put(raw_path);
    }
}

/// ASCII lower-case, copied only when there is an upper-case letter (the
/// scheme and host usually have none).
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
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
/// with `&`. The pairs are sorted raw ([`cmp_encoded`]) and encoded once,
/// straight into the result.
#[cfg(test)]
pub(crate) fn normalize<'a, I>(pairs: I) -> String
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let mut sorted: Vec<Pair> = pairs
        .into_iter()
        .map(|(n, v)| (Cow::Borrowed(n), Cow::Borrowed(v)))
        .collect();
    sort_pairs(&mut sorted);
    normalize_sorted(&sorted)
}

/// Sorts decoded pairs in normalised-parameter order: by encoded name,
/// then encoded value.
pub(crate) fn sort_pairs(pairs: &mut [Pair]) {
    pairs.sort_unstable_by(|x, y| cmp_encoded(&x.0, &y.0).then_with(|| cmp_encoded(&x.1, &y.1)));
}

/// [`normalize`] of pairs already in order ([`sort_pairs`]).
pub(crate) fn normalize_sorted(sorted: &[Pair]) -> String {
    let raw: usize = sorted.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(raw + raw / 2);
    for (i, (name, value)) in sorted.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        encode_into(&mut out, name);
        out.push(b'=');
        encode_into(&mut out, value);
    }
    ascii_string(out)
}

/// Signature base string: `enc(METHOD)&enc(base_uri)&enc(normalized)`.
pub(crate) fn build(method: &str, origin: &str, raw_path: &str, normalized: &str) -> String {
    let mut out = Vec::new();
    build_with(
        &mut out,
        method,
        origin,
        raw_path,
        normalized.len(),
        |out| encode_into(out, normalized.as_bytes()),
    );
    ascii_string(out)
}

/// The signature base string of sorted pairs ([`sort_pairs`]): the
/// normalised parameters go straight into it, encoded twice, without a
/// normalised string of their own.
pub(crate) fn build_sorted(method: &str, origin: &str, raw_path: &str, sorted: &[Pair]) -> String {
    let mut out = Vec::new();
    build_sorted_into(&mut out, method, origin, raw_path, sorted);
    ascii_string(out)
}

fn build_sorted_into(
    out: &mut Vec<u8>,
    method: &str,
    origin: &str,
    raw_path: &str,
    sorted: &[Pair],
) {
    let raw: usize = sorted.iter().map(|(n, v)| n.len() + v.len() + 6).sum();
    build_with(out, method, origin, raw_path, raw, |out| {
        for (i, (name, value)) in sorted.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"%26");
            }
            encode_twice_into(out, name);
            out.extend_from_slice(b"%3D");
            encode_twice_into(out, value);
        }
    });
}

/// `enc(METHOD)&enc(base_uri)&` then what `params` appends (about
/// `params_len` bytes), into `out`.
fn build_with(
    out: &mut Vec<u8>,
    method: &str,
    origin: &str,
    raw_path: &str,
    params_len: usize,
    params: impl FnOnce(&mut Vec<u8>),
) {
    // Most bytes are unreserved; `%XX` escapes take the rest of the slack.
    out.reserve(method.len() + 3 * (origin.len() + raw_path.len() + params_len) / 2 + 4);
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        encode_into(out, method.to_ascii_uppercase().as_bytes());
    } else {
        encode_into(out, method.as_bytes());
    }
    out.push(b'&');
    write_base_string_uri(origin, raw_path, |piece| encode_into(out, piece.as_bytes()));
    out.push(b'&');
    params(out);
}

/// Runs `f` on the signature base string of sorted pairs, built in a
/// per-thread buffer: verifying a request only hashes it, so it needs no
/// allocation of its own.
pub(crate) fn with_built<R>(
    method: &str,
    origin: &str,
    raw_path: &str,
    sorted: &[Pair],
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    /// A larger buffer (a request with a huge query or form body) is freed
    /// rather than kept for the thread's lifetime.
    const KEEP: usize = 16 * 1024;
    thread_local! {
        static BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    }
    // Taken out while in use, so a nested call would simply start afresh.
    let mut buf = BUF.take();
    buf.clear();
    build_sorted_into(&mut buf, method, origin, raw_path, sorted);
    let r = f(&buf);
    if buf.capacity() <= KEEP {
        BUF.set(buf);
    }
    r
}
