//! Path normalisation, done before routing and before checking grants.
//!
//! The path the upstream receives is the normalised one, so what was
//! authorised is what is served. Anything that could be read two ways is
//! refused instead: encoded slashes and backslashes, `;` path parameters,
//! double percent-encoding, control characters, bytes that are not UTF-8
//! (overlong encodings among them), and `..` that climbs above the root.

use std::borrow::Cow;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
pub enum PathError {
    #[error("the path must start with /")]
    NotAbsolute,
    #[error("the path holds a malformed percent-encoding")]
    BadEscape,
    #[error("the path holds an encoded slash or a backslash")]
    Slash,
    #[error("the path holds a `;` path parameter")]
    Parameter,
    #[error("the path is percent-encoded twice")]
    DoubleEncoding,
    #[error("the path holds a control character")]
    Control,
    #[error("the path is not valid UTF-8 once decoded")]
    NotUtf8,
    #[error("the path climbs above the root")]
    AboveRoot,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalise a raw (still percent-encoded) request path.
///
/// Unreserved characters are decoded (`%2e` is `.`, `%41` is `A`), other
/// escapes are kept with upper-case hex, repeated slashes are merged, `.`
/// and `..` segments are resolved, and a trailing slash is kept.
/// A path that is already normal (most are) is returned as it is, not copied.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if is_canonical(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    normalize_slow(raw).map(Cow::Owned)
}

/// A path that normalising would leave as it is: visible ASCII without
/// `%`, `\` or `;`, and no empty, `.` or `..` segment (a trailing slash
/// is kept, so the last segment may be empty). Most requests are such
/// paths, and they skip the two passes.
fn is_canonical(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else {
        return false;
    };
    let plain = raw
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b'\\' | b';'));
    if !plain {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg == "." || seg == ".." || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

fn normalize_slow(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Pass 1: canonical escapes, and the fully decoded bytes for the UTF-8 check.
    let mut canon = String::with_capacity(raw.len());
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (h, l) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => (hex(h), hex(l)),
                    _ => return Err(PathError::BadEscape),
                };
                let (Some(h), Some(l)) = (h, l) else {
                    return Err(PathError::BadEscape);
                };
                let v = h * 16 + l;
                match v {
                    b'/' | b'\\' => return Err(PathError::Slash),
                    b'%' => {
                        let next_is_escape = matches!(
                            (
                                bytes.get(i + 3).copied().and_then(hex),
                                bytes.get(i + 4).copied().and_then(hex)
                            ),
                            (Some(_), Some(_))
                        );
                        if next_is_escape {
                            return Err(PathError::DoubleEncoding);
                        }
                    }
                    0..=0x1f | 0x7f => return Err(PathError::Control),
                    _ => {}
                }
                if is_unreserved(v) {
                    canon.push(v as char);
                } else {
                    canon.push('%');
                    canon.push(char::from(b"0123456789ABCDEF"[(v >> 4) as usize]));
                    canon.push(char::from(b"0123456789ABCDEF"[(v & 15) as usize]));
                }
                decoded.push(v);
                i += 3;
            }
            b'\\' => return Err(PathError::Slash),
            b';' => return Err(PathError::Parameter),
            0..=0x1f | 0x7f => return Err(PathError::Control),
            _ => {
                // Non-ASCII bytes never reach here through hyper, but the
                // function must stay total: keep them escaped.
                if b >= 0x80 {
                    canon.push_str(&format!("%{b:02X}"));
                } else {
                    canon.push(b as char);
                }
                decoded.push(b);
                i += 1;
            }
        }
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(PathError::NotUtf8);
    }
    // Pass 2: segments.
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in canon.split('/').skip(1) {
        match seg {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing = true;
            }
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut path = String::with_capacity(canon.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || trailing {
        path.push('/');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_agrees_with_the_full_normalisation() {
        let parts = [
            "", "/", "a", ".", "..", "//", "%2e", "%41", ";", "\\", "b-c_d~e", "é", " ", "?",
        ];
        let mut checked = 0;
        let mut fast = 0;
        // Every path of up to four parts from the list, after a leading `/`.
        let mut paths = vec![String::from("/")];
        for _ in 0..4 {
            let mut next = Vec::new();
            for p in &paths {
                for part in parts {
                    next.push(format!("{p}{part}"));
                }
            }
            paths.extend(next);
            paths.sort();
            paths.dedup();
        }
        for p in paths.iter().chain([&String::new(), &"a/b".to_string()]) {
            assert_eq!(
                normalize(p).map(Cow::into_owned),
                normalize_slow(p),
                "{p:?}"
            );
            fast += usize::from(is_canonical(p));
            checked += 1;
        }
        assert!(
            checked > 10_000 && fast > 100,
            "{checked} paths, {fast} on the fast path"
        );
    }

    #[test]
    fn keeps_plain_paths() {
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/model/ABC-123").unwrap(), "/model/ABC-123");
        assert_eq!(normalize("/model/").unwrap(), "/model/");
        assert_eq!(normalize("/a%20b").unwrap(), "/a%20b");
        assert_eq!(normalize("/a%c3%a9").unwrap(), "/a%C3%A9");
    }

    #[test]
    fn resolves_dots_and_slashes() {
        assert_eq!(normalize("/model/../admin").unwrap(), "/admin");
        assert_eq!(normalize("/model/./x").unwrap(), "/model/x");
        assert_eq!(normalize("//model///x").unwrap(), "/model/x");
        assert_eq!(normalize("/model/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(normalize("/model/.%2E/admin").unwrap(), "/admin");
        assert_eq!(normalize("/model/x/..").unwrap(), "/model/");
        assert_eq!(normalize("/mod%65l").unwrap(), "/model");
    }

    #[test]
    fn refuses_ambiguous_paths() {
        assert_eq!(normalize("/.."), Err(PathError::AboveRoot));
        assert_eq!(normalize("/a/../../etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(normalize("/model%2f..%2fadmin"), Err(PathError::Slash));
        assert_eq!(normalize("/model%5c..%5cadmin"), Err(PathError::Slash));
        assert_eq!(normalize("/model\\..\\admin"), Err(PathError::Slash));
        assert_eq!(normalize("/model;x=1/../admin"), Err(PathError::Parameter));
        assert_eq!(
            normalize("/model/%252e%252e/admin"),
            Err(PathError::DoubleEncoding)
        );
        assert_eq!(
            normalize("/model/%c0%ae%c0%ae/admin"),
            Err(PathError::NotUtf8)
        );
        assert_eq!(normalize("/model/%e0%80%ae"), Err(PathError::NotUtf8));
        assert_eq!(normalize("/model/%00"), Err(PathError::Control));
        assert_eq!(normalize("/model/%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("/model/%2"), Err(PathError::BadEscape));
        assert_eq!(normalize("model"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn never_panics_on_garbage() {
        for s in ["/%", "/%%", "/%%%%", "/\u{7f}", "/é/..", "/%ff%fe"] {
            let _ = normalize(s);
        }
    }
}
