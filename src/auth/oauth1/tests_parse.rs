//! Parsing edge cases, body-hash compatibility and a fuzz-style test.

use super::tests_errors::{code, header, req, signed_header, with, BASIC, SECRET};
use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn valid_header_variants_verify() {
    let r = req(None, Some("q=1"), None);
    let h = signed_header(r, BASIC);
    assert_eq!(code(&req(Some(&h), Some("q=1"), None)), "ok");
    // Scheme case, tabs, no spaces, empty list elements, trailing comma.
    let squeezed = h.replacen("OAuth ", "oauth\t", 1).replace(", ", ",");
    assert_eq!(code(&req(Some(&squeezed), Some("q=1"), None)), "ok");
    let loose = h.replace(", ", " ,\t, ").replace("=\"", " = \"") + ",";
    assert_eq!(code(&req(Some(&loose), Some("q=1"), None)), "ok");
    // Empty oauth_token and oauth_version=1.0 are accepted (and signed).
    let h = signed_header(r, &with(&[("oauth_token", ""), ("oauth_version", "1.0")]));
    assert_eq!(code(&req(Some(&h), Some("q=1"), None)), "ok");
    // Realm is excluded from the base string: changing it keeps it valid.
    let h = signed_header(r, &with(&[("realm", "a")])).replace("realm=\"a\"", "realm=\"b\"");
    assert_eq!(code(&req(Some(&h), Some("q=1"), None)), "ok");
}

#[test]
fn nonce_is_decoded() {
    let r = req(None, None, None);
    let h = header(&[
        ("oauth_consumer_key", "k"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "1"),
        ("oauth_signature", "x"),
    ]);
    let auth = format!("{h}, oauth_nonce=\"%61bc\"");
    let p = parse(&req(Some(&auth), None, None)).expect("parse");
    assert_eq!(p.nonce, "abc");
    // '+' is literal in the header, a space in query and body.
    let auth = format!("{h}, oauth_nonce=\"a+b\"");
    let p = parse(&req(Some(&auth), None, None)).expect("parse");
    assert_eq!(p.nonce, "a+b");
    let q = "oauth_consumer_key=k&oauth_signature_method=HMAC-SHA1&oauth_timestamp=1&oauth_signature=x&oauth_nonce=a+b%2B";
    let p = parse(&req(None, Some(q), None)).expect("parse");
    assert_eq!((&*p.nonce, p.location), ("a b+", Location::Query));
    let p = parse(&req(None, None, Some(q.as_bytes()))).expect("parse");
    assert_eq!((&*p.nonce, p.location), ("a b+", Location::Body));
    // A query `realm` is an ordinary, signed parameter.
    assert!(parse(&SignedRequest {
        query: Some("realm=x"),
        ..r
    })
    .is_err());
    let auth = format!("{h}, oauth_nonce=\"n\"");
    let p = parse(&req(Some(&auth), Some("realm=x"), None)).expect("parse");
    assert!(
        p.normalized_params().starts_with("oauth_consumer_key")
            && p.normalized_params().ends_with("&realm=x")
    );
}

#[test]
fn body_hash_sha1_accepted_for_sha256_and_sha512() {
    let json = b"{}";
    for m in ["HMAC-SHA256", "HMAC-SHA512"] {
        let method = SignatureMethod::from_wire(m).expect("method");
        for hash in [
            body_hash(SignatureMethod::HmacSha1, json),
            body_hash(method, json),
        ] {
            let pairs: Vec<_> = BASIC
                .iter()
                .map(|&(n, v)| {
                    if n == "oauth_signature_method" {
                        (n, m)
                    } else {
                        (n, v)
                    }
                })
                .chain([("oauth_body_hash", hash.as_str())])
                .collect();
            let h = signed_header(req(None, None, None), &pairs);
            let r = req(Some(&h), None, None);
            let p = parse(&r).expect("parse");
            assert_eq!(
                verify(&r, &p, SECRET, false, Some(json), true),
                Ok(()),
                "{m} {hash}"
            );
            assert!(verify(&r, &p, SECRET, false, Some(b"[]"), true).is_err());
        }
    }
}

#[test]
fn has_oauth_params_detection() {
    assert!(has_oauth_params(b"oauth_consumer_key=x"));
    assert!(has_oauth_params(b"a=1&oauth_nonce=2"));
    assert!(has_oauth_params(b"a=1&oauth%5Fnonce=2"));
    assert!(has_oauth_params(b"%6Fauth_signature"));
    assert!(!has_oauth_params(b""));
    assert!(!has_oauth_params(b"a=oauth_x&b=1"));
    assert!(!has_oauth_params(b"xoauth_nonce=1"));
    assert!(!has_oauth_params(b"%zz=1&%"));
}

#[test]
fn fuzz_never_panics() {
    const TOKENS: &[&str] = &[
        "OAuth ",
        "oauth ",
        "oauth_nonce",
        "oauth_consumer_key",
        "oauth_signature",
        "oauth_signature_method",
        "oauth_timestamp",
        "oauth_version",
        "oauth_body_hash",
        "realm",
        "=",
        "\"",
        ",",
        " ",
        "\t",
        "%",
        "%2",
        "%41",
        "%FF",
        "%E2%9D%A6",
        "+",
        "&",
        "HMAC-SHA1",
        "HMAC-SHA256",
        "PLAINTEXT",
        "1700000000",
        "1.0",
        "\u{2766}",
        "\\",
        "\0",
        "AAAA",
        "=\"",
        "\", ",
    ];
    let mut rng = StdRng::seed_from_u64(0x5eed_0a17);
    let valid = sign(
        "GET",
        "https://h/p?a=1",
        None,
        "k",
        SECRET,
        SignatureMethod::HmacSha1,
        "n",
        1,
    )
    .expect("sign");
    for i in 0..6000 {
        let input: String = match i % 3 {
            0 => (0..rng.gen_range(0..40))
                .map(|_| TOKENS[rng.gen_range(0..TOKENS.len())])
                .collect(),
            1 => {
                let mut b = valid.clone().into_bytes();
                for _ in 0..rng.gen_range(1..5) {
                    let idx = rng.gen_range(0..b.len());
                    let pool = b"\"=, %+&oauth_\x00\xff";
                    let byte = pool[rng.gen_range(0..pool.len())];
                    match rng.gen_range(0..3) {
                        0 => b[idx] = byte,
                        1 => {
                            b.remove(idx);
                        }
                        _ => b.insert(idx, byte),
                    }
                }
                String::from_utf8_lossy(&b).into_owned()
            }
            _ => (0..rng.gen_range(0..120))
                .map(|_| char::from(rng.gen_range(0u8..128)))
                .collect(),
        };
        let bytes = input.as_bytes();
        let r = SignedRequest {
            method: if i % 7 == 0 { &input } else { "GET" },
            origin: if i % 11 == 0 { &input } else { "https://h" },
            raw_path: "/p",
            query: if i % 2 == 0 {
                Some("a=1")
            } else {
                Some(&input)
            },
            authorization: if i % 5 == 4 { None } else { Some(&input) },
            form_body: if i % 3 == 0 { Some(bytes) } else { None },
        };
        if let Ok(p) = parse(&r) {
            let _ = signature_base_string(&r, &p);
            let _ = verify(&r, &p, SECRET, i % 2 == 0, Some(bytes), i % 4 == 0);
        }
        let _ = has_oauth_params(bytes);
        let _ = base_string_uri(&input, &input);
    }
}
