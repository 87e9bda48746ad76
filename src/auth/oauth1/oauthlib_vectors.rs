// @generated with oauthlib 4.0.1 by the script below -- do not edit by hand.
/* gen_oauthlib_vectors.py
"""Generate cross-check vectors with oauthlib; prints a Rust const array.

Run: python3 gen_oauthlib_vectors.py > src/auth/oauth1/oauthlib_vectors.rs && cargo fmt
(the script is embedded in the generated file; copy it out to re-run)
"""
import json
from urllib.parse import urlsplit
import oauthlib
from oauthlib.oauth1 import (Client, SIGNATURE_TYPE_AUTH_HEADER as H, SIGNATURE_TYPE_QUERY as Q,
                             SIGNATURE_TYPE_BODY as B, SIGNATURE_HMAC_SHA1 as S1,
                             SIGNATURE_HMAC_SHA256 as S256, SIGNATURE_HMAC_SHA512 as S512,
                             SIGNATURE_PLAINTEXT as PT)

FORM = "application/x-www-form-urlencoded"
KEY = "portcullis-key-1"
SECRET = "s3cr3t/k3y+~!"

cases = [
    # name, method, url, sig_method, sig_type, body, content_type, realm
    ("get_header_sha1_repeated_query", "GET", "https://api.example.com/model/ABC-1?b=2&a=3&a=1&empty=", S1, H, None, None, None),
    ("get_header_sha256_port_plus_utf8", "GET", "https://API.Example.com:8443/v1/search?q=hello+world&r=%E2%9D%A6&s=a%2Bb&t=%7E", S256, H, None, None, None),
    ("get_query_sha1", "GET", "https://api.example.com/items?limit=10&offset=20", S1, Q, None, None, None),
    ("get_query_sha256", "GET", "https://api.example.com/items/%C3%A9t%C3%A9?x=1&x=1", S256, Q, None, None, None),
    ("post_body_sha1_form", "POST", "https://api.example.com/users", S1, B, "name=Alice+Smith&role=user&note=a%26b", FORM, None),
    ("post_header_sha256_form", "POST", "https://api.example.com/users?dry_run=1", S256, H, "name=Bob&tags=x&tags=y+z", FORM, None),
    ("post_header_sha1_json_body_hash", "POST", "https://api.example.com/orders", S1, H, '{"item":"widget","qty":2}', "application/json", None),
    ("put_header_sha256_json_body_hash", "PUT", "https://api.example.com/orders/42", S256, H, '{"qty":3}', "application/json", None),
    ("get_header_sha512_realm", "GET", "https://api.example.com/", S512, H, None, None, "Photos"),
    ("get_header_sha1_http_default_port", "GET", "http://API.example.com:80/a/b%2Fc?z=%20", S1, H, None, None, None),
    ("get_header_plaintext", "GET", "https://api.example.com/plain", PT, H, None, None, None),
    ("delete_header_sha1_empty_path", "DELETE", "https://api.example.com", S1, H, None, None, None),
]

print("// @generated with oauthlib %s by the script below -- do not edit by hand." % oauthlib.__version__)
print("/* gen_oauthlib_vectors.py\n" + open(__file__).read().rstrip() + "\n*/
")
print(" // Each vector is a request signed by oauthlib.oauth1.Client, split the way the gateway sees it.")
print("""
pub(super) struct Vector {
    pub name: &'static str,
    pub method: &'static str,
    pub origin: &'static str,
    pub raw_path: &'static str,
    pub query: Option<&'static str>,
    pub authorization: Option<&'static str>,
    pub body: Option<&'static str>,
    pub form: bool,
    pub secret: &'static str,
}
""")
print("#[rustfmt::skip]")
print("pub(super) const VECTORS: &[Vector] = &[")
for i, (name, method, url, sm, st, body, ct, realm) in enumerate(cases):
    c = Client(KEY, client_secret=SECRET, signature_method=sm, signature_type=st,
               nonce="nonce%02d%%x" % i if st == H else "nonce%02d" % i, timestamp="1700000%03d" % i)
    headers = {"Content-Type": ct} if ct else {}
    uri, hdrs, b = c.sign(url, http_method=method, body=body, headers=headers, realm=realm)
    parts = urlsplit(uri)
    origin = "%s://%s" % (parts.scheme, parts.netloc)
    path = parts.path
    query = parts.query if "?" in uri else None
    auth = hdrs.get("Authorization")
    def r(s):
        return "None" if s is None else "Some(%s)" % json.dumps(s)
    print("    Vector { name: %s, method: %s, origin: %s, raw_path: %s, query: %s, authorization: %s, body: %s, form: %s, secret: %s }," % (
        json.dumps(name), json.dumps(method), json.dumps(origin), json.dumps(path), r(query), r(auth), r(b),
        "true" if ct == FORM else "false", json.dumps(SECRET)))
print("];")
*/
// Each vector is a request signed by oauthlib.oauth1.Client, split the way the gateway sees it.

pub(super) struct Vector {
    pub name: &'static str,
    pub method: &'static str,
    pub origin: &'static str,
    pub raw_path: &'static str,
    pub query: Option<&'static str>,
    pub authorization: Option<&'static str>,
    pub body: Option<&'static str>,
    pub form: bool,
    pub secret: &'static str,
}

#[rustfmt::skip]
pub(super) const VECTORS: &[Vector] = &[
    Vector { name: "get_header_sha1_repeated_query", method: "GET", origin: "https://api.example.com", raw_path: "/model/ABC-1", query: Some("b=2&a=3&a=1&empty="), authorization: Some("OAuth oauth_nonce=\"nonce00%25x\", oauth_timestamp=\"1700000000\", oauth_version=\"1.0\", oauth_signature_method=\"HMAC-SHA1\", oauth_consumer_key=\"portcullis-key-1\", oauth_signature=\"Qa7qDzQjuQC8lWkAYHxiSBFKb1g%3D\""), body: None, form: false, secret: "s3cr3t/k3y+~!" },
    Vector { name: "get_header_sha256_port_plus_utf8", method: "GET", origin: "https://API.Example.com:8443", raw_path: "/v1/search", query: Some("q=hello+world&r=%E2%9D%A6&s=a%2Bb&t=%7E"), authorization: Some("OAuth oauth_nonce=\"nonce01%25x\", oauth_timestamp=\"1700000001\", oauth_version=\"1.0\", oauth_signature_method=\"HMAC-SHA256\", oauth_consumer_key=\"portcullis-key-1\", oauth_signature=\"E0VYNwgD3WkPPG5Ks98P%2BB8oRXtAjvZ09gOYPup32bU%3D\""), body: None, form: false, secret: "s3cr3t/k3y+~!" },
    Vector { name: "get_query_sha1", method: "GET", origin: "https://api.example.com", raw_path: "/items", query: Some("limit=10&offset=20&oauth_nonce=nonce02&oauth_timestamp=1700000002&oauth_version=1.0&oauth_signature_method=HMAC-SHA1&oauth_consumer_key=portcullis-key-1&oauth_signature=EK%2BO7ylsHvezfzihVB9phLmPMjs%3D"), authorization: None, body: None, form: false, secret: "s3cr3t/k3y+~!" },
    Vector { name: "get_query_sha256", method: "GET", origin: "https://api.example.com", raw_path: "/items/%C3%A9t%C3%A9", query: Some("x=1&x=1&oauth_nonce=nonce03&oauth_timestamp=1700000003&oauth_version=1.0&oauth_signature_method=HMAC-SHA256&oauth_consumer_key=portcullis-key-1&oauth_signature=Qwi7xHrYvpXDvy8K0GjZW8xpXSwkRO2Hui3oElO8G3E%3D"), authorization: None, body: None, form: false, secret: "s3cr3t/k3y+~!" },
    Vector { name: "post_body_sha1_form", method: "POST", origin: "https://api.example.com", raw_path: "/users", query: None, authorization: None, body: Some("name=Alice+Smith&role=user&note=a%26b&oauth_nonce=nonce04&oauth_timestamp=1700000004&oauth_version=1.0&oauth_signature_method=HMAC-SHA1&oauth_consumer_key=portcullis-key-1&oauth_signature=KWstapL8wdbjte%2B299yrX1KKv%2Bg%3D"), form: true, secret: "s3cr3t/k3y+~!" },
    Vector { name: "post_header_sha256_form", method: "POST", origin: "https://api.example.com", raw_path: "/users", query: Some("dry_run=1"), authorization: Some("OAuth oauth_nonce=\"nonce05%25x\", oauth_timestamp=\"1700000005\", oauth_version=\"1.0\", oauth_signature_method=\"HMAC-SHA256\", oauth_consumer_key=\"portcullis-key-1\", oauth_signature=\"pvvClaJ32IwoOYAjfxLZ8nYvmqVl%2BYskIHjZ5VRCKLg%3D\""), body: Some("name=Bob&tags=x&tags=y+z"), form: true, secret: "s3cr3t/k3y+~!" },
    Vector { name: "post_header_sha1_json_body_hash", method: "POST", origin: "https://api.example.com", raw_path: "/orders", query: None, authorization: Some("OAuth oauth_nonce=\"nonce06%25x\", oauth_timestamp=\"1700000006\", oauth_version=\"1.0\", oauth_signature_method=\"HMAC-SHA1\", oauth_consumer_key=\"portcullis-key-1\", oauth_body_hash=\"%2BZp6bfDgqn0zVzEtAHvkIy0%2Bkj0%3D\", oauth_signature=\"VVpOadxXp4r%2Bphk%2BaZMn3jpWExQ%3D\""), body: Some("{\"item\":\"widget\",\"qty\":2}"), form: false, secret: "s3cr3t/k3y+~!" },
    Vector { name: "put_header_sha256_json_body_hash", method: "PUT", origin: "https://api.example.com", raw_path: "/orders/42", query: None, authorization: Some("OAuth oauth_nonce=\"nonce07%25x\", oauth_timestamp=\"1700000007\", oauth_version=\"1.0\", oauth_signature_method=\"HMAC-SHA256\", oauth_consumer_key=\"portcullis-key-1\", oauth_body_hash=\"zRv2vc9j5OYBc0U0unTFYVPo%2F9Q%3D\", oauth_signature=\"1pnAFEUl2vxPoutSHTKxv7tZ9DTVWKIF2IVRWqTX10c%3D\""), body: Some("{\"qty\":3}"), form: false, secret: "s3cr3t/k3y+~!" },
    Vector { name: "get_header_sha512_realm", method: "GET", origin: "https://api.example.com", raw_path: "/", query: None, authorization: Some("OAuth realm=\"Photos\", oauth_nonce=\"nonce08%25x\", oauth_timestamp=\"1700000008\", oauth_version=\"1.0\", oauth_signature_method=\"HMAC-SHA512\", oauth_consumer_key=\"portcullis-key-1\", oauth_signature=\"bTjtgkXGLS%2Bnc%2FEMMg0pkLMlZllxnWvUsStVGdR7pUKcYG9dBl5ovYYTfJPBQiM3m4sxOhFHEG6bg0T7hv1KWg%3D%3D\""), body: None, form: false, secret: "s3cr3t/k3y+~!" },
    Vector { name: "get_header_sha1_http_default_port", method: "GET", origin: "http://API.example.com:80", raw_path: "/a/b%2Fc", query: Some("z=%20"), authorization: Some("OAuth oauth_nonce=\"nonce09%25x\", oauth_timestamp=\"1700000009\", oauth_version=\"1.0\", oauth_signature_method=\"HMAC-SHA1\", oauth_consumer_key=\"portcullis-key-1\", oauth_signature=\"lUeEFoxpgHYfsP2falTfKw2LGXc%3D\""), body: None, form: false, secret: "s3cr3t/k3y+~!" },
    Vector { name: "get_header_plaintext", method: "GET", origin: "https://api.example.com", raw_path: "/plain", query: None, authorization: Some("OAuth oauth_nonce=\"nonce10%25x\", oauth_timestamp=\"1700000010\", oauth_version=\"1.0\", oauth_signature_method=\"PLAINTEXT\", oauth_consumer_key=\"portcullis-key-1\", oauth_signature=\"s3cr3t%252Fk3y%252B~%2521%26\""), body: None, form: false, secret: "s3cr3t/k3y+~!" },
    Vector { name: "delete_header_sha1_empty_path", method: "DELETE", origin: "https://api.example.com", raw_path: "", query: None, authorization: Some("OAuth oauth_nonce=\"nonce11%25x\", oauth_timestamp=\"1700000011\", oauth_version=\"1.0\", oauth_signature_method=\"HMAC-SHA1\", oauth_consumer_key=\"portcullis-key-1\", oauth_signature=\"f0z3%2FJiTIjVJhSrswKia4epXEwU%3D\""), body: None, form: false, secret: "s3cr3t/k3y+~!" },
];
