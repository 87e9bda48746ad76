//! Every public error code (helpers shared with `tests_parse.rs`).

use super::signature::{compute_signature, signing_key};
use super::*;

pub(super) const SECRET: &[u8] = b"secret";
pub(super) const BASIC: &[(&str, &str)] = &[
    ("oauth_consumer_key", "key"),
    ("oauth_nonce", "n1"),
    ("oauth_signature_method", "HMAC-SHA1"),
    ("oauth_timestamp", "1700000000"),
];

pub(super) fn req<'a>(
    auth: Option<&'a str>,
    query: Option<&'a str>,
    body: Option<&'a [u8]>,
) -> SignedRequest<'a> {
    SignedRequest {
        method: "POST",
        origin: "https://api.example.com",
        raw_path: "/r",
        query,
        authorization: auth,
        form_body: body,
    }
}

/// `OAuth n="v", ...` with values §3.6-encoded.
pub(super) fn header(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(n, v)| format!("{n}=\"{}\"", encode(v.as_bytes())))
        .collect();
    format!("OAuth {}", parts.join(", "))
}

/// A correctly signed header for `pairs` on request `r` (HMAC methods).
pub(super) fn signed_header(r: SignedRequest, pairs: &[(&str, &str)]) -> String {
    let mut all = pairs.to_vec();
    all.push(("oauth_signature", "placeholder"));
    let tmp = header(&all);
    let p = parse(&SignedRequest {
        authorization: Some(&tmp),
        ..r
    })
    .expect("parse");
    let base = signature_base_string(
        &SignedRequest {
            authorization: Some(&tmp),
            ..r
        },
        &p,
    );
    let sig = compute_signature(p.signature_method, &signing_key(SECRET, b""), &base);
    all.pop();
    all.push(("oauth_signature", &sig));
    header(&all)
}

pub(super) fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    BASIC.iter().chain(extra.iter()).copied().collect()
}

/// Runs parse + verify (plaintext disallowed, body hash not required).
pub(super) fn outcome<'a>(r: &SignedRequest<'a>) -> Result<OAuthParams<'a>, OAuth1Error> {
    let p = parse(r)?;
    let plain = verify(r, &p, SECRET, false, Some(b""), false);
    // The gateway's path, with the HMAC-SHA1 state keyed at load: it must
    // give the same answer for every case these tests cover.
    let keyed = KeyedSha1::new(SECRET).expect("an HMAC key of any length");
    let prepared = verify_keyed(r, &p, SECRET, Some(&keyed), false, Some(b""), false);
    assert_eq!(plain, prepared, "the keyed HMAC-SHA1 path disagrees");
    plain?;
    Ok(p)
}

#[test]
fn keyed_hmac_sha1_with_a_signing_key_longer_than_a_block() {
    // A 100-byte secret makes a 101-byte signing key, which HMAC hashes
    // first (RFC 2104): the prepared state must do the same.
    let secret = [b'k'; 100];
    let keyed = KeyedSha1::new(&secret).expect("key");
    let r = req(None, None, None);
    let mut all = with(&[]);
    all.push(("oauth_signature", "placeholder"));
    let tmp = header(&all);
    let signed = SignedRequest {
        authorization: Some(&tmp),
        ..r
    };
    let p = parse(&signed).expect("parse");
    let base = signature_base_string(&signed, &p);
    let sig = compute_signature(p.signature_method, &signing_key(&secret, b""), &base);
    all.pop();
    all.push(("oauth_signature", &sig));
    let good = header(&all);
    let good_req = SignedRequest {
        authorization: Some(&good),
        ..r
    };
    let p = parse(&good_req).expect("parse");
    assert_eq!(
        verify_keyed(&good_req, &p, &secret, Some(&keyed), false, None, false),
        Ok(())
    );
    assert_eq!(verify(&good_req, &p, &secret, false, None, false), Ok(()));
    let other = KeyedSha1::new(b"another secret").expect("key");
    assert_eq!(
        verify_keyed(&good_req, &p, &secret, Some(&other), false, None, false)
            .map_err(|e| e.code()),
        Err("invalid_signature")
    );
}

pub(super) fn code(r: &SignedRequest) -> &'static str {
    match outcome(r) {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[test]
fn codes_and_statuses() {
    let all = [
        (OAuth1Error::Malformed("x"), "malformed_credentials", 400),
        (
            OAuth1Error::DuplicateParameter("x"),
            "duplicate_parameter",
            400,
        ),
        (
            OAuth1Error::UnsupportedParameter("x"),
            "unsupported_parameter",
            400,
        ),
        (
            OAuth1Error::UnsupportedSignatureMethod,
            "unsupported_signature_method",
            401,
        ),
        (OAuth1Error::InvalidSignature("x"), "invalid_signature", 401),
    ];
    for (e, c, s) in all {
        assert_eq!((e.code(), e.status()), (c, s));
    }
}

#[test]
fn malformed_credentials() {
    let good = header(&with(&[("oauth_signature", "AAAA")]));
    let cases: Vec<String> = vec![
        String::new(),
        "Basic abc".into(),
        "OAuthx oauth_nonce=\"a\"".into(),
        "OAuth garbage".into(),
        "OAuth oauth_nonce=abc".into(),
        "OAuth oauth_nonce=\"abc".into(),
        "OAuth oauth_nonce=\"a\" oauth_timestamp=\"1\"".into(),
        "OAuth =\"a\"".into(),
        "OAuth realm=\"only\"".into(),
        "OAuth ".into(),
        good.replace("n1", "%zz"),
        good.replace("n1", "n1%4"),
        good.replace("n1", "%FF"),
        good.replace("oauth_nonce=\"n1\"", "oauth_nonce=\"\""),
        "OAuth ".to_owned() + &"a".repeat(MAX_HEADER_LEN),
        format!("{good}{}", ", x=\"y\"".repeat(MAX_HEADER_PARAMS)),
    ];
    for h in &cases {
        assert_eq!(
            code(&req(Some(h), None, None)),
            "malformed_credentials",
            "{h:.80}"
        );
    }
    for missing in [
        "oauth_consumer_key",
        "oauth_nonce",
        "oauth_signature_method",
        "oauth_timestamp",
        "oauth_signature",
    ] {
        let pairs: Vec<_> = with(&[("oauth_signature", "AAAA")])
            .into_iter()
            .filter(|(n, _)| *n != missing)
            .collect();
        assert_eq!(
            code(&req(Some(&header(&pairs)), None, None)),
            "malformed_credentials",
            "{missing}"
        );
    }
    for ts in [
        "12a",
        "-1",
        "+5",
        "1.5",
        "",
        " 1",
        "0x10",
        "18446744073709551616",
        "123456789012345678901",
    ] {
        let h = good.replace("1700000000", &encode(ts.as_bytes()));
        assert_eq!(
            code(&req(Some(&h), None, None)),
            "malformed_credentials",
            "{ts:?}"
        );
    }
    assert_eq!(code(&req(None, Some("a=1"), None)), "malformed_credentials");
    assert_eq!(code(&req(None, None, None)), "malformed_credentials");
    assert_eq!(
        code(&req(Some(&good), Some("a=%G1"), None)),
        "malformed_credentials"
    );
    assert_eq!(
        code(&req(Some(&good), None, Some(b"a=%"))),
        "malformed_credentials"
    );
    let many = "a=1&".repeat(MAX_PARAMS + 1);
    assert_eq!(
        code(&req(Some(&good), Some(&many), None)),
        "malformed_credentials"
    );
    // A huge header is refused by length before any parsing.
    let huge = format!("OAuth {}", "oauth_x=\"y\", ".repeat(100_000));
    let start = std::time::Instant::now();
    assert_eq!(
        parse(&req(Some(&huge), None, None)),
        Err(OAuth1Error::Malformed("authorization header too long"))
    );
    assert!(start.elapsed() < std::time::Duration::from_millis(50));
}

#[test]
fn duplicate_parameter() {
    let good = header(&with(&[("oauth_signature", "AAAA")]));
    let q = "oauth_consumer_key=k&oauth_signature_method=HMAC-SHA1&oauth_timestamp=1&oauth_signature=x&oauth_nonce=n";
    let cases: Vec<(String, Option<String>, Option<String>)> = vec![
        (format!("{good}, oauth_nonce=\"n2\""), None, None),
        (format!("{good}, oauth_nonce=\"n1\""), None, None),
        (
            format!("OAuth realm=\"a\", realm=\"b\", {}", &good[6..]),
            None,
            None,
        ),
        (good.clone(), Some("oauth_nonce=n2".into()), None),
        (good.clone(), None, Some("oauth_nonce=n2".into())),
        (good.clone(), Some("x=1".into()), Some("oauth_foo=1".into())),
        (
            good.clone(),
            Some("role=user".into()),
            Some("role=admin".into()),
        ),
        (
            good.clone(),
            Some("role=user".into()),
            Some("a=1&r%6Fle=admin".into()),
        ),
    ];
    for (h, query, body) in &cases {
        let r = req(
            Some(h),
            query.as_deref(),
            body.as_deref().map(str::as_bytes),
        );
        assert_eq!(code(&r), "duplicate_parameter", "{h} {query:?} {body:?}");
    }
    for (query, body) in [
        (Some(format!("{q}&oauth_nonce=m")), None),
        (Some(format!("{q}&oauth%5Fnonce=m")), None),
        (None, Some(format!("{q}&oauth_nonce=n"))),
        (Some(q.to_owned()), Some("oauth_body_hash=x".to_owned())),
        (Some("a=1".to_owned()), Some(format!("{q}&a=2"))),
    ] {
        let r = req(None, query.as_deref(), body.as_deref().map(str::as_bytes));
        assert_eq!(code(&r), "duplicate_parameter", "{query:?} {body:?}");
    }
}

#[test]
fn unsupported_parameter() {
    for (name, value) in [
        ("oauth_version", "2.0"),
        ("oauth_version", "1.0a"),
        ("oauth_version", ""),
        ("oauth_token", "abc"),
        ("oauth_callback", "oob"),
        ("oauth_verifier", "v"),
        ("oauth_foo", "1"),
        ("oauth_", "1"),
    ] {
        let h = header(&with(&[(name, value), ("oauth_signature", "AAAA")]));
        assert_eq!(
            code(&req(Some(&h), None, None)),
            "unsupported_parameter",
            "{name}={value}"
        );
    }
}

#[test]
fn unsupported_signature_method() {
    for m in ["RSA-SHA1", "hmac-sha1", "HMAC-SHA384", "HMAC-SHA1 "] {
        let pairs: Vec<_> = with(&[("oauth_signature", "AAAA")])
            .into_iter()
            .map(|(n, v)| {
                if n == "oauth_signature_method" {
                    (n, m)
                } else {
                    (n, v)
                }
            })
            .collect();
        let h = header(&pairs);
        let r = req(Some(&h), None, None);
        assert_eq!(
            parse(&r),
            Err(OAuth1Error::UnsupportedSignatureMethod),
            "{m}"
        );
    }
    let h = sign(
        "POST",
        "https://api.example.com/r",
        None,
        "key",
        SECRET,
        SignatureMethod::Plaintext,
        "n",
        1,
    )
    .expect("sign");
    let r = req(Some(&h), None, None);
    let p = parse(&r).expect("parse");
    assert_eq!(
        verify(&r, &p, SECRET, false, None, false),
        Err(OAuth1Error::UnsupportedSignatureMethod)
    );
    assert_eq!(verify(&r, &p, SECRET, true, None, false), Ok(()));
    assert_eq!(
        verify(&r, &p, b"other", true, None, false).map_err(|e| e.code()),
        Err("invalid_signature")
    );
}

#[test]
fn invalid_signature() {
    let r = req(None, None, None);
    let sig = |s: &'static str| header(&with(&[("oauth_signature", s)]));
    for s in [
        "AAAA",
        "!!!",
        "Zm9v",
        "QUFB=",
        "tR3+Ty81lMeYAr/Fid0kMTYa/WM=",
    ] {
        assert_eq!(
            code(&req(Some(&sig(s)), None, None)),
            "invalid_signature",
            "{s}"
        );
    }
    // An unencoded '+' in a query signature becomes a space: not base64.
    let q = "oauth_consumer_key=k&oauth_signature_method=HMAC-SHA1&oauth_timestamp=1&oauth_nonce=n&oauth_signature=ab+c";
    assert_eq!(code(&req(None, Some(q), None)), "invalid_signature");

    // Body hash rules.
    let json = br#"{"a":1}"#;
    let with_hash = signed_header(
        r,
        &with(&[(
            "oauth_body_hash",
            &body_hash(SignatureMethod::HmacSha1, json),
        )]),
    );
    let hr = req(Some(&with_hash), None, None);
    let p = parse(&hr).expect("parse");
    assert_eq!(verify(&hr, &p, SECRET, false, Some(json), true), Ok(()));
    let check = |r: &SignedRequest, p: &OAuthParams, body: Option<&[u8]>, require: bool| {
        verify(r, p, SECRET, false, body, require).map_err(|e| e.code())
    };
    assert_eq!(
        check(&hr, &p, Some(br#"{"a":2}"#), false),
        Err("invalid_signature"),
        "mismatch"
    );
    assert_eq!(
        check(&hr, &p, None, false),
        Err("invalid_signature"),
        "body not buffered"
    );
    let form_with_hash = signed_header(
        req(None, None, Some(b"x=1")),
        &with(&[("oauth_body_hash", "2jmj7l5rSw0yVb/vlWAYkK/YBwk=")]),
    );
    let fr = req(Some(&form_with_hash), None, Some(b"x=1"));
    let fp = parse(&fr).expect("parse");
    assert_eq!(
        check(&fr, &fp, Some(b"x=1"), false),
        Err("invalid_signature"),
        "hash on form body"
    );
    // Required but absent.
    let plain = signed_header(r, BASIC);
    let pr = req(Some(&plain), None, None);
    let pp = parse(&pr).expect("parse");
    assert_eq!(
        check(&pr, &pp, Some(json), true),
        Err("invalid_signature"),
        "required"
    );
    assert_eq!(
        check(&pr, &pp, None, true),
        Err("invalid_signature"),
        "required, body unknown"
    );
    assert_eq!(
        check(&pr, &pp, Some(b""), true),
        Ok(()),
        "required, no body"
    );
    assert_eq!(check(&pr, &pp, Some(json), false), Ok(()), "not required");
    // Form bodies are covered by the signature itself.
    let form = signed_header(req(None, None, Some(b"x=1")), BASIC);
    let fr = req(Some(&form), None, Some(b"x=1"));
    let fp = parse(&fr).expect("parse");
    assert!(!fp.needs_raw_body(&fr, true));
    assert_eq!(check(&fr, &fp, None, true), Ok(()), "form body");
    // Body hash with the wrong length / not base64.
    for bad in ["AAAA", "%%%", ""] {
        let h = signed_header(r, &with(&[("oauth_body_hash", bad)]));
        let br = req(Some(&h), None, None);
        let bp = parse(&br).expect("parse");
        assert_eq!(
            check(&br, &bp, Some(json), false),
            Err("invalid_signature"),
            "{bad}"
        );
    }
}
