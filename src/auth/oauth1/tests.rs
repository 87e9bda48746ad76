//! Published vectors (RFC 5849, OAuth Core 1.0, oauth.net wiki), oauthlib
//! cross-checks and sign/verify round trips.

use super::base_string::{self, normalize};
use super::params::Collected;
use super::signature::{compute_signature, signing_key};
use super::*;

fn collected_base_string(req: &SignedRequest) -> String {
    let c = Collected::from_request(req).expect("collect");
    base_string::build(req.method, req.origin, req.raw_path, &c.normalized())
}

// RFC 5849 §3.4.1.1 (the request of §3.4.1 with form body "c2&a3=2+q").
const RFC_3411_AUTH: &str = "OAuth realm=\"Example\",\
    oauth_consumer_key=\"9djdj82h48djs9d2\",\
    oauth_token=\"kkk9d7dh3k39sjv7\",\
    oauth_signature_method=\"HMAC-SHA1\",\
    oauth_timestamp=\"137131201\",\
    oauth_nonce=\"7d8f3e4a\",\
    oauth_signature=\"bYT5CMsGcbgUdFHObYMEfcx6bsw%3D\"";
const RFC_3411_BASE: &str = "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
    %26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26o\
    auth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oa\
    uth_token%3Dkkk9d7dh3k39sjv7";

fn rfc_3411_request() -> SignedRequest<'static> {
    SignedRequest {
        method: "POST",
        origin: "http://example.com",
        raw_path: "/request",
        query: Some("b5=%3D%253D&a3=a&c%40=&a2=r%20b"),
        authorization: Some(RFC_3411_AUTH),
        form_body: Some(b"c2&a3=2+q"),
    }
}

#[test]
fn rfc5849_3411_base_string_and_signature() {
    let req = rfc_3411_request();
    assert_eq!(collected_base_string(&req), RFC_3411_BASE);
    // Erratum 2550: the RFC's printed signature is wrong; this is the
    // value for client secret j49sk3j29djd and token secret dh893hdasih9.
    let key = signing_key(b"j49sk3j29djd", b"dh893hdasih9");
    assert_eq!(key, "j49sk3j29djd&dh893hdasih9");
    let sig = compute_signature(SignatureMethod::HmacSha1, &key, RFC_3411_BASE);
    assert_eq!(sig, "r6/TJjbCOr97/+UU0NsvSne7s5g=");
    // Our policy refuses this request: `a3` is in both query and body.
    assert_eq!(
        parse(&req).map(|_| ()).unwrap_err().code(),
        "duplicate_parameter"
    );
}

#[test]
fn rfc5849_photos_example() {
    // RFC 5849 §1.2 / §3.1 example.
    let auth = "OAuth realm=\"Photos\", oauth_consumer_key=\"dpf43f3p2l4k3l03\", \
        oauth_token=\"nnch734d00sl2jdk\", oauth_signature_method=\"HMAC-SHA1\", \
        oauth_timestamp=\"137131202\", oauth_nonce=\"chapoH\", \
        oauth_signature=\"MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D\"";
    let req = SignedRequest {
        method: "GET",
        origin: "http://photos.example.net",
        raw_path: "/photos",
        query: Some("file=vacation.jpg&size=original"),
        authorization: Some(auth),
        form_body: None,
    };
    let base = collected_base_string(&req);
    let key = signing_key(b"kd94hf93k423kf44", b"pfkkdhi9sl3r4s00");
    assert_eq!(
        compute_signature(SignatureMethod::HmacSha1, &key, &base),
        "MdpQcU8iPSUjWoN/UDMsK2sui9I="
    );
    // Two-legged policy: a non-empty oauth_token is refused.
    assert_eq!(
        parse(&req).map(|_| ()).unwrap_err().code(),
        "unsupported_parameter"
    );
}

#[test]
fn oauth_core_10_photos_example() {
    // OAuth Core 1.0 Appendix A.5 (same photo request, older parameters).
    let auth = "OAuth oauth_consumer_key=\"dpf43f3p2l4k3l03\", oauth_token=\"nnch734d00sl2jdk\", \
        oauth_signature_method=\"HMAC-SHA1\", oauth_signature=\"tR3%2BTy81lMeYAr%2FFid0kMTYa%2FWM%3D\", \
        oauth_timestamp=\"1191242096\", oauth_nonce=\"kllo9940pd9333jh\", oauth_version=\"1.0\"";
    let req = SignedRequest {
        method: "GET",
        origin: "http://photos.example.net",
        raw_path: "/photos",
        query: Some("file=vacation.jpg&size=original"),
        authorization: Some(auth),
        form_body: None,
    };
    let base = collected_base_string(&req);
    assert_eq!(
        base,
        "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3Dkllo9940pd9333jh%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1191242096%26oauth_token%3Dnnch734d00sl2jdk%26oauth_version%3D1.0%26size%3Doriginal"
    );
    let key = signing_key(b"kd94hf93k423kf44", b"pfkkdhi9sl3r4s00");
    assert_eq!(
        compute_signature(SignatureMethod::HmacSha1, &key, &base),
        "tR3+Ty81lMeYAr/Fid0kMTYa/WM="
    );
}

#[test]
fn wiki_hmac_sha1_cases() {
    assert_eq!(
        compute_signature(SignatureMethod::HmacSha1, &signing_key(b"cs", b""), "bs"),
        "egQqG5AJep5sJ7anhXju1unge2I="
    );
    assert_eq!(
        compute_signature(SignatureMethod::HmacSha1, &signing_key(b"cs", b"ts"), "bs"),
        "VZVjXceV7JgPq/dOTnNmEfO0Fv8="
    );
    assert_eq!(
        compute_signature(
            SignatureMethod::Plaintext,
            &signing_key(b"djr9rjt0jd78jf88", b""),
            "x"
        ),
        "djr9rjt0jd78jf88&"
    );
    assert_eq!(signing_key(b"a b+c", b""), "a%20b%2Bc&");
}

#[test]
fn wiki_parameter_encoding() {
    let cases: &[(&str, &str)] = &[
        ("abcABC123", "abcABC123"),
        ("-._~", "-._~"),
        ("%", "%25"),
        ("+", "%2B"),
        ("&=*", "%26%3D%2A"),
        ("\n", "%0A"),
        (" ", "%20"),
        ("\u{7F}", "%7F"),
        ("\u{80}", "%C2%80"),
        ("\u{3001}", "%E3%80%81"),
        ("\u{2766}", "%E2%9D%A6"),
        ("/?#[]@!$'()", "%2F%3F%23%5B%5D%40%21%24%27%28%29"),
    ];
    for (input, want) in cases {
        assert_eq!(encode(input.as_bytes()), *want, "{input:?}");
    }
}

#[test]
fn wiki_normalize_parameters() {
    fn norm(pairs: &[(&str, &str)]) -> String {
        normalize(pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }
    assert_eq!(norm(&[("name", "")]), "name=");
    assert_eq!(norm(&[("a", "b")]), "a=b");
    assert_eq!(norm(&[("a", "b"), ("c", "d")]), "a=b&c=d");
    assert_eq!(norm(&[("a", "x!y"), ("a", "x y")]), "a=x%20y&a=x%21y");
    assert_eq!(norm(&[("x!y", "a"), ("x", "a")]), "x=a&x%21y=a");
    // Sorted on encoded bytes: "%20" < "%2B" < "A" < "a".
    assert_eq!(
        norm(&[("k", "a"), ("k", "A"), ("k", "+"), ("k", " ")]),
        "k=%20&k=%2B&k=A&k=a"
    );
}

#[test]
fn base_string_uris() {
    let cases: &[(&str, &str, &str)] = &[
        ("http://EXAMPLE.COM:80", "/", "http://example.com/"),
        (
            "https://www.example.net:8080",
            "/",
            "https://www.example.net:8080/",
        ),
        (
            "HTTPS://Example.com:443",
            "/r%20v/X",
            "https://example.com/r%20v/X",
        ),
        ("https://example.com:80", "/", "https://example.com:80/"),
        ("http://example.com:443", "", "http://example.com:443/"),
        ("https://example.com/", "", "https://example.com/"),
        ("https://example.com:", "/a", "https://example.com/a"),
        ("https://[2001:DB8::1]:443", "/a", "https://[2001:db8::1]/a"),
        ("https://[::1]:8443", "/a", "https://[::1]:8443/a"),
        (
            "https://example.com/api",
            "/v1",
            "https://example.com/api/v1",
        ),
        ("api.example.com:443", "/x", "https://api.example.com/x"),
    ];
    for (origin, path, want) in cases {
        assert_eq!(base_string_uri(origin, path), *want, "{origin} {path}");
    }
}

#[test]
fn wiki_base_string() {
    let c = Collected {
        query: vec![(b"n".as_slice().into(), b"v".as_slice().into())],
        ..Collected::default()
    };
    assert_eq!(
        base_string::build("get", "http://example.com", "", &c.normalized()),
        "GET&http%3A%2F%2Fexample.com%2F&n%3Dv"
    );
}
