//! oauthlib cross-checks (vectors in `oauthlib_vectors.rs`) and sign/verify
//! round trips.

use super::oauthlib_vectors::{Vector, VECTORS};
use super::*;

fn vector_request(v: &Vector) -> SignedRequest<'_> {
    SignedRequest {
        method: v.method,
        origin: v.origin,
        raw_path: v.raw_path,
        query: v.query,
        authorization: v.authorization,
        form_body: if v.form {
            v.body.map(str::as_bytes)
        } else {
            None
        },
    }
}

fn raw_body(v: &Vector) -> Option<&[u8]> {
    Some(v.body.map(str::as_bytes).unwrap_or_default())
}

fn check<'a>(
    req: &SignedRequest<'a>,
    v: &Vector,
    body: Option<&[u8]>,
) -> Result<OAuthParams<'a>, OAuth1Error> {
    let p = parse(req)?;
    verify(req, &p, v.secret.as_bytes(), true, body, true)?;
    Ok(p)
}

#[test]
fn oauthlib_vectors_verify() {
    assert!(VECTORS.len() >= 12);
    for v in VECTORS {
        let req = vector_request(v);
        let p = check(&req, v, raw_body(v)).unwrap_or_else(|e| panic!("{}: {e:?}", v.name));
        assert_eq!(p.consumer_key, "portcullis-key-1", "{}", v.name);
        assert!(p.nonce.starts_with("nonce"), "{}", v.name);
        if v.authorization.is_some() {
            // Header nonces were "nonceNN%x": returned decoded.
            assert!(p.nonce.ends_with("%x"), "{}", v.name);
        }
        let want_loc = match (v.authorization, v.form, v.query) {
            (Some(_), _, _) => Location::Header,
            (None, true, _) => Location::Body,
            _ => Location::Query,
        };
        assert_eq!(p.location, want_loc, "{}", v.name);
        assert_eq!(
            p.body_hash.is_some(),
            v.body.is_some() && !v.form,
            "{}",
            v.name
        );
    }
    let realm = VECTORS
        .iter()
        .find(|v| v.name.contains("realm"))
        .and_then(|v| parse(&vector_request(v)).ok());
    assert_eq!(realm.and_then(|p| p.realm).as_deref(), Some("Photos"));
}

#[test]
fn oauthlib_vectors_reject_any_change() {
    for v in VECTORS {
        let base = vector_request(v);
        let body = raw_body(v);
        let expect_invalid = |req: SignedRequest, body: Option<&[u8]>, what: &str| {
            let err = check(&req, v, body).map(|_| ()).unwrap_err();
            assert_eq!(
                err.code(),
                "invalid_signature",
                "{} / {what}: {err:?}",
                v.name
            );
        };
        let other_secret = v.secret.replace('s', "S");
        let p = parse(&base).expect("parse");
        let err = verify(&base, &p, other_secret.as_bytes(), true, body, true).unwrap_err();
        assert_eq!(err.code(), "invalid_signature", "{} / secret", v.name);
        if v.name.contains("plaintext") {
            // PLAINTEXT signs nothing but the secret.
            assert!(check(
                &SignedRequest {
                    method: "PATCH",
                    ..base
                },
                v,
                body
            )
            .is_ok());
            expect_invalid(base, Some(b"{}"), "added raw body");
            continue;
        }
        expect_invalid(
            SignedRequest {
                method: "PATCH",
                ..base
            },
            body,
            "method",
        );
        expect_invalid(
            SignedRequest {
                origin: "https://evil.example.com",
                ..base
            },
            body,
            "host",
        );
        expect_invalid(
            SignedRequest {
                origin: "https://api.example.com:444",
                ..base
            },
            body,
            "port",
        );
        expect_invalid(
            SignedRequest {
                raw_path: "/other",
                ..base
            },
            body,
            "path",
        );
        let query = match v.query {
            Some(q) => format!("{q}&extra=1"),
            None => "extra=1".to_owned(),
        };
        expect_invalid(
            SignedRequest {
                query: Some(&query),
                ..base
            },
            body,
            "query",
        );
        if let Some(q) = v.query.filter(|q| q.contains("=1")) {
            let changed = q.replacen("=1", "=2", 1);
            expect_invalid(
                SignedRequest {
                    query: Some(&changed),
                    ..base
                },
                body,
                "query value",
            );
        }
        match (v.body, v.form) {
            (Some(b), true) => {
                let changed = format!("{b}&extra=1");
                expect_invalid(
                    SignedRequest {
                        form_body: Some(changed.as_bytes()),
                        ..base
                    },
                    None,
                    "form body",
                );
            }
            (Some(b), false) => {
                let changed = b.replace('2', "3").replace("3}", "4}");
                expect_invalid(base, Some(changed.as_bytes()), "json body");
                // Dropping the body hash check by claiming a form body fails too.
                expect_invalid(
                    SignedRequest {
                        form_body: Some(b.as_bytes()),
                        ..base
                    },
                    body,
                    "as form",
                );
            }
            (None, _) => {
                expect_invalid(
                    SignedRequest {
                        form_body: Some(b"extra=1"),
                        ..base
                    },
                    body,
                    "added form body",
                );
                // A body smuggled onto a body-less request needs a body hash.
                expect_invalid(base, Some(b"{}"), "added raw body");
            }
        }
    }
}

#[test]
fn sign_matches_oauthlib() {
    for (name, url, method, body) in [
        (
            "get_header_sha1_repeated_query",
            "https://api.example.com/model/ABC-1?b=2&a=3&a=1&empty=",
            SignatureMethod::HmacSha1,
            None,
        ),
        (
            "get_header_sha256_port_plus_utf8",
            "https://API.Example.com:8443/v1/search?q=hello+world&r=%E2%9D%A6&s=a%2Bb&t=%7E",
            SignatureMethod::HmacSha256,
            None,
        ),
        (
            "post_header_sha1_json_body_hash",
            "https://api.example.com/orders",
            SignatureMethod::HmacSha1,
            Some(&b"{\"item\":\"widget\",\"qty\":2}"[..]),
        ),
    ] {
        let v = VECTORS.iter().find(|v| v.name == name).expect("vector");
        let theirs = parse(&vector_request(v)).expect("parse");
        let header = sign_request(&SignInput {
            method: v.method,
            url,
            form_body: None,
            hashed_body: body,
            consumer_key: "portcullis-key-1",
            consumer_secret: v.secret.as_bytes(),
            signature_method: method,
            nonce: &theirs.nonce,
            timestamp: theirs.timestamp,
        })
        .expect("sign");
        let ours = parse(&SignedRequest {
            authorization: Some(&header),
            ..vector_request(v)
        })
        .expect("parse ours");
        assert_eq!(ours.signature, theirs.signature, "{name}");
        assert_eq!(
            ours.normalized_params(),
            theirs.normalized_params(),
            "{name}"
        );
    }
}

#[test]
fn sign_verify_round_trip_all_methods() {
    let secret = b"s e/c+r%e\xc3\xa9t";
    for method in [
        SignatureMethod::HmacSha1,
        SignatureMethod::HmacSha256,
        SignatureMethod::HmacSha512,
        SignatureMethod::Plaintext,
    ] {
        let form = b"b=2+2&a=%E2%9D%A6&a=";
        let header = sign(
            "post",
            "https://Host.Example:443/p/a%2Fb?x=1&y=%20#frag",
            Some(form),
            "key id",
            secret,
            method,
            "n 1/+",
            42,
        )
        .expect("sign");
        assert!(
            header
                .starts_with("OAuth oauth_consumer_key=\"key%20id\", oauth_nonce=\"n%201%2F%2B\""),
            "{header}"
        );
        let req = SignedRequest {
            method: "POST",
            origin: "https://host.example",
            raw_path: "/p/a%2Fb",
            query: Some("x=1&y=%20"),
            authorization: Some(&header),
            form_body: Some(form),
        };
        let p = parse(&req).expect("parse");
        assert_eq!(
            (&*p.nonce, p.timestamp, p.signature_method),
            ("n 1/+", 42, method)
        );
        assert_eq!(
            verify(&req, &p, secret, true, None, true),
            Ok(()),
            "{method:?}"
        );
        let tampered = SignedRequest {
            form_body: Some(b"b=2+3&a=%E2%9D%A6&a="),
            ..req
        };
        let expected = if method == SignatureMethod::Plaintext {
            Ok(())
        } else {
            Err(OAuth1Error::InvalidSignature("signature mismatch"))
        };
        assert_eq!(
            verify(
                &tampered,
                &parse(&tampered).expect("parse"),
                secret,
                true,
                None,
                true
            ),
            expected
        );
    }
}

#[test]
fn sign_with_body_hash_round_trip() {
    let body = br#"{"role":"admin"}"#;
    for method in [
        SignatureMethod::HmacSha1,
        SignatureMethod::HmacSha256,
        SignatureMethod::HmacSha512,
    ] {
        let input = SignInput {
            method: "PUT",
            url: "https://api.example.com/u/1",
            form_body: None,
            hashed_body: Some(body),
            consumer_key: "k",
            consumer_secret: b"secret",
            signature_method: method,
            nonce: "abc",
            timestamp: 7,
        };
        let header = sign_request(&input).expect("sign");
        let req = SignedRequest {
            method: "PUT",
            origin: "https://api.example.com",
            raw_path: "/u/1",
            query: None,
            authorization: Some(&header),
            form_body: None,
        };
        let p = parse(&req).expect("parse");
        assert_eq!(
            p.body_hash.as_deref(),
            Some(body_hash(method, body).as_str())
        );
        assert!(p.needs_raw_body(&req, false));
        assert_eq!(verify(&req, &p, b"secret", false, Some(body), true), Ok(()));
        let err = verify(
            &req,
            &p,
            b"secret",
            false,
            Some(br#"{"role":"user"}"#),
            true,
        )
        .unwrap_err();
        assert_eq!(
            err,
            OAuth1Error::InvalidSignature("oauth_body_hash mismatch")
        );
    }
    assert_eq!(
        body_hash(SignatureMethod::HmacSha1, b"Hello World!"),
        "Lve95gjOVATpfV8EL5X4nxwjKHE="
    );
}
