"""OAuth 1.0 (two-legged) as requests-oauthlib and oauthlib send it.

The gateway is right when these clients say so: every request here is
signed by the library, never by portcullis' own signer.
"""

import json
import os
import subprocess

import pytest
import requests
from oauthlib.oauth1 import (
    SIGNATURE_HMAC_SHA1,
    SIGNATURE_HMAC_SHA256,
    SIGNATURE_PLAINTEXT,
    SIGNATURE_TYPE_AUTH_HEADER,
    SIGNATURE_TYPE_BODY,
    SIGNATURE_TYPE_QUERY,
    Client,
)
from requests_oauthlib import OAuth1

from conftest import BIN, assert_refused, default_route, fresh_nonce, new_secret

K1, S1 = "K1", new_secret()
# a key allowed to use PLAINTEXT
KP, SP = "KP", new_secret()
# a secret full of characters that RFC 5849 §3.6 must percent-encode
KX, SX = "KX", "s3cr3t+/=&%~ !*'()é€"

SIG_TYPES = [SIGNATURE_TYPE_AUTH_HEADER, SIGNATURE_TYPE_QUERY, SIGNATURE_TYPE_BODY]
HMACS = [SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256]


@pytest.fixture(scope="module")
def gw(gateway_factory, upstream_server):
    return gateway_factory(
        routes=[
            default_route(upstream_server.url),
            default_route(upstream_server.url, name="hashed",
                          match={"path_prefix": "/hashed"}, require_body_hash=True),
        ],
        keys=[
            {"id": K1, "owner": "alice", "secret": S1},
            {"id": KP, "owner": "pat", "secret": SP, "allow_plaintext": True},
            {"id": KX, "owner": "xavier", "secret": SX},
        ],
    )


def auth(key=K1, secret=S1, method=SIGNATURE_HMAC_SHA1, sig_type=SIGNATURE_TYPE_AUTH_HEADER, **kw):
    return OAuth1(key, client_secret=secret, signature_method=method, signature_type=sig_type, **kw)


def authz(resp):
    """The Authorization header the client sent (requests-oauthlib gives bytes)."""
    v = resp.request.headers["Authorization"]
    return v.decode() if isinstance(v, bytes) else v


def assert_clean(rec, key=K1, owner="alice"):
    """The credential went no further than the gateway."""
    assert not rec.has_header("Authorization"), rec.headers
    names = [n for n, _ in rec.query_pairs()]
    assert not [n for n in names if n.startswith("oauth_")], rec.target
    assert "oauth_" not in (rec.query or "")
    assert rec.header("X-Auth-Scheme") == "oauth1"
    assert rec.header("X-Auth-Key-Id") == key
    assert rec.header("X-Auth-Subject") == owner


# ----------------------------------------------------------------- GET


@pytest.mark.parametrize("method", HMACS)
@pytest.mark.parametrize("sig_type", [SIGNATURE_TYPE_AUTH_HEADER, SIGNATURE_TYPE_QUERY])
def test_get_with_repeated_query_params(gw, upstream, sig_type, method):
    r = gw.get("/model/ABC-1?a=1&a=2&b=x y", auth=auth(method=method, sig_type=sig_type))
    assert r.status_code == 200, r.text
    sent_in_query = "oauth_signature=" in r.request.url
    assert sent_in_query == (sig_type == SIGNATURE_TYPE_QUERY)
    rec = upstream.last()
    assert rec.method == "GET" and rec.path == "/model/ABC-1"
    assert rec.query_pairs() == [("a", "1"), ("a", "2"), ("b", "x y")]
    assert_clean(rec)


@pytest.mark.parametrize("sig_type", [SIGNATURE_TYPE_AUTH_HEADER, SIGNATURE_TYPE_QUERY])
def test_get_without_query(gw, upstream, sig_type):
    r = gw.get("/model/ABC-1", auth=auth(sig_type=sig_type))
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.target in ("/model/ABC-1", "/model/ABC-1?")
    assert_clean(rec)


def test_query_signature_keeps_other_params_verbatim(gw, upstream):
    # requests-oauthlib re-encodes the whole query when it appends oauth_*
    # (spaces become '+'); the gateway drops only the oauth_* pairs.
    r = gw.get("/model/ABC-1?z=last&q=%7Etilde&empty=&plus=a%2Bb",
               auth=auth(sig_type=SIGNATURE_TYPE_QUERY))
    assert r.status_code == 200, r.text
    sent = r.request.url.split("?", 1)[1]
    kept = "&".join(p for p in sent.split("&") if not p.startswith("oauth_"))
    rec = upstream.last()
    assert rec.query == kept
    assert rec.query_pairs() == [("z", "last"), ("q", "~tilde"), ("empty", ""), ("plus", "a+b")]
    assert_clean(rec)


def test_header_with_realm(gw, upstream):
    # realm is sent in the header but is not part of the base string
    r = gw.get("/model/ABC-1?x=1", auth=auth(realm="portcullis"))
    assert "realm=" in authz(r)
    assert r.status_code == 200, r.text
    assert_clean(upstream.last())


def test_percent_encoded_path(gw, upstream):
    r = gw.get("/model/ABC-1/a%20b~c", auth=auth())
    assert r.status_code == 200, r.text
    assert_clean(upstream.last())


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_other_methods(gw, upstream, method):
    r = gw.request(method, "/model/ABC-1?v=1", auth=auth())
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.method == method
    assert_clean(rec)


@pytest.mark.parametrize("method", HMACS)
def test_secret_with_reserved_characters(gw, upstream, method):
    r = gw.get("/model/ABC-1?a=1", auth=auth(KX, SX, method=method))
    assert r.status_code == 200, r.text
    assert_clean(upstream.last(), KX, "xavier")


# ------------------------------------------------------------ form POST


FORM = {"name": "José & Co", "q": "a+b=c", "empty": "", "list": ["1", "2"], "sp ace": "~*'"}


@pytest.mark.parametrize("method", HMACS)
@pytest.mark.parametrize("sig_type", SIG_TYPES)
def test_form_post(gw, upstream, sig_type, method):
    r = gw.post("/model/ABC-1?a=1&a=2&b=x y", data=FORM, auth=auth(method=method, sig_type=sig_type))
    assert r.status_code == 200, r.text
    rec = upstream.last()
    sent = r.request.body
    sent = sent.encode() if isinstance(sent, str) else sent
    # the form body arrives byte for byte as the client sent it
    assert rec.body == sent
    assert rec.header("Content-Type") == "application/x-www-form-urlencoded"
    assert rec.query_pairs() == [("a", "1"), ("a", "2"), ("b", "x y")]
    assert_clean(rec)
    if sig_type == SIGNATURE_TYPE_BODY:
        # oauth_* in a form body are part of the body, which is not rewritten
        assert b"oauth_signature=" in rec.body


def test_form_post_body_is_signed(gw, upstream):
    """Changing one form byte after signing breaks the signature."""
    req = requests.Request("POST", gw.url("/model/ABC-1"), data={"role": "user"}, auth=auth())
    prepared = req.prepare()
    prepared.body = prepared.body.replace(b"user", b"admn")
    r = gw.session.send(prepared, timeout=10, verify=gw.cert)
    assert_refused(r, 401, "invalid_signature")
    assert upstream.records == []


# ---------------------------------------------------- JSON + body hash


DOC = json.dumps({"model": "ABC-1", "values": [1, 2, 3], "note": "x y&z"})
JSON = {"Content-Type": "application/json"}


def test_requests_oauthlib_json_without_body_hash(gw, upstream):
    # By default requests-oauthlib leaves a non-form body out of the signature.
    r = gw.post("/model/ABC-1", data=DOC, headers=JSON, auth=auth())
    assert "oauth_body_hash" not in authz(r)
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.body == DOC.encode()
    assert_clean(rec)


@pytest.mark.parametrize("method", HMACS)
def test_requests_oauthlib_json_with_body_hash(gw, upstream, method):
    # force_include_body=True hands the body to oauthlib, which adds
    # oauth_body_hash (SHA-1, whatever the signature method).
    r = gw.post("/hashed/ABC-1", data=DOC, headers=JSON,
                auth=auth(method=method, force_include_body=True))
    assert "oauth_body_hash" in authz(r)
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.body == DOC.encode()
    assert_clean(rec)


def test_require_body_hash_refuses_json_without_hash(gw, upstream):
    r = gw.post("/hashed/ABC-1", data=DOC, headers=JSON, auth=auth())
    assert_refused(r, 401, "invalid_signature")
    assert upstream.records == []


def test_oauthlib_client_body_hash(gw, upstream):
    client = Client(K1, client_secret=S1)
    url = gw.url("/hashed/ABC-1?x=1")
    uri, headers, body = client.sign(url, "POST", body=DOC, headers=dict(JSON))
    assert "oauth_body_hash" in headers["Authorization"]
    r = gw.post(uri, data=body.encode(), headers=headers)
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.body == DOC.encode()
    assert rec.query_pairs() == [("x", "1")]
    assert_clean(rec)


def test_body_hash_mismatch(gw, upstream):
    client = Client(K1, client_secret=S1)
    uri, headers, _ = client.sign(gw.url("/hashed/ABC-1"), "POST", body=DOC, headers=dict(JSON))
    tampered = DOC.replace("ABC-1", "ABC-2").encode()
    r = gw.post(uri, data=tampered, headers=headers)
    assert_refused(r, 401, "invalid_signature")
    assert upstream.records == []


def test_body_hash_checked_on_routes_that_do_not_require_it(gw, upstream):
    client = Client(K1, client_secret=S1)
    uri, headers, _ = client.sign(gw.url("/model/ABC-1"), "POST", body=DOC, headers=dict(JSON))
    r = gw.post(uri, data=b"{}", headers=headers)
    assert_refused(r, 401, "invalid_signature")
    r2_uri, h2, body2 = Client(K1, client_secret=S1).sign(
        gw.url("/model/ABC-1"), "POST", body=DOC, headers=dict(JSON))
    r2 = gw.post(r2_uri, data=body2.encode(), headers=h2)
    assert r2.status_code == 200, r2.text
    assert upstream.last().body == DOC.encode()


def test_require_body_hash_allows_empty_body(gw, upstream):
    r = gw.get("/hashed/ABC-1", auth=auth())
    assert r.status_code == 200, r.text
    assert_clean(upstream.last())


def test_require_body_hash_allows_signed_form(gw, upstream):
    r = gw.post("/hashed/ABC-1", data={"a": "b"}, auth=auth())
    assert r.status_code == 200, r.text
    assert upstream.last().body == b"a=b"


# ------------------------------------------------------------ PLAINTEXT


@pytest.mark.parametrize("sig_type", [SIGNATURE_TYPE_AUTH_HEADER, SIGNATURE_TYPE_QUERY])
def test_plaintext_refused_by_default(gw, upstream, sig_type):
    r = gw.get("/model/ABC-1", auth=auth(method=SIGNATURE_PLAINTEXT, sig_type=sig_type))
    assert_refused(r, 401, "unsupported_signature_method")
    assert upstream.records == []


@pytest.mark.parametrize("sig_type", [SIGNATURE_TYPE_AUTH_HEADER, SIGNATURE_TYPE_QUERY])
def test_plaintext_allowed_for_key(gw, upstream, sig_type):
    r = gw.get("/model/ABC-1?a=1", auth=auth(KP, SP, method=SIGNATURE_PLAINTEXT, sig_type=sig_type))
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.query_pairs() == [("a", "1")]
    assert_clean(rec, KP, "pat")


def test_plaintext_wrong_secret(gw, upstream):
    r = gw.get("/model/ABC-1", auth=auth(KP, SP + "x", method=SIGNATURE_PLAINTEXT))
    assert_refused(r, 401, "invalid_signature")
    assert upstream.records == []


def test_plaintext_allowed_key_still_does_hmac(gw, upstream):
    r = gw.get("/model/ABC-1", auth=auth(KP, SP, method=SIGNATURE_HMAC_SHA256))
    assert r.status_code == 200, r.text
    assert_clean(upstream.last(), KP, "pat")


# ------------------------------------------- portcullis sign vs oauthlib


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("sig_method", HMACS)
def test_portcullis_sign_agrees_with_oauthlib(gw, upstream, method, sig_method):
    """`portcullis sign` and oauthlib compute the same signature."""
    nonce, ts = fresh_nonce(), "1700000000"
    url = gw.url("/model/ABC-1?a=1&a=2&b=x%20y&c=%7E")
    form = "f=1&g=x+y&h=%26" if method == "POST" else None
    args = [BIN, "sign", "--key", KX, "-X", method, "--method", sig_method,
            "--nonce", nonce, "--timestamp", ts, url]
    if form:
        args[2:2] = ["-d", form]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PORTCULLIS_SECRET": SX})
    assert out.returncode == 0, out.stderr
    ours = out.stdout.strip()
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else {}
    _, theirs, _ = Client(KX, client_secret=SX, signature_method=sig_method, nonce=nonce,
                          timestamp=ts).sign(url, method, body=form, headers=headers)

    def sig(h):
        return h.split('oauth_signature="')[1].split('"')[0]

    assert sig(ours) == sig(theirs["Authorization"]), (ours, theirs)


# ----------------------------------------------------- more client shapes


def test_unicode_and_valueless_query_params(gw, upstream):
    r = gw.get("/model/ABC-1?flag&a=1", params={"name": "José €", "emoji": "😀"}, auth=auth())
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.query_pairs() == [("flag", ""), ("a", "1"), ("name", "José €"), ("emoji", "😀")]
    assert_clean(rec)


def test_unicode_form_body(gw, upstream):
    r = gw.post("/model/ABC-1", data={"name": "Zoë ☃", "x": "1"}, auth=auth(method=SIGNATURE_HMAC_SHA256))
    assert r.status_code == 200, r.text
    assert upstream.last().body == r.request.body


def test_curl_http2_with_oauthlib_header(gw, upstream):
    """HTTP/2: the host signed is the :authority."""
    url = gw.url("/model/ABC-1?a=1&b=x%20y")
    _, headers, _ = Client(K1, client_secret=S1).sign(url, "GET")
    code, version, body = gw.curl("--http2", "-H", "Authorization: " + headers["Authorization"],
                                  url_path="/model/ABC-1?a=1&b=x%20y")
    assert (code, version, body) == (200, "2", b"ok"), body
    rec = upstream.last()
    assert rec.query_pairs() == [("a", "1"), ("b", "x y")]
    assert_clean(rec)


def test_curl_http2_form_post_signed_by_oauthlib(gw, upstream):
    url = gw.url("/model/ABC-1")
    form = "a=1&b=x+y&c=%E2%98%83"
    _, headers, body = Client(K1, client_secret=S1).sign(
        url, "POST", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    code, version, _ = gw.curl("--http2", "-H", "Authorization: " + headers["Authorization"],
                               "-H", "Content-Type: application/x-www-form-urlencoded",
                               "--data-binary", body)
    assert (code, version) == (200, "2")
    assert upstream.last().body == body.encode()


def test_header_shapes_other_clients_send(gw, upstream):
    """Lower-case scheme and no space after commas are the same header."""
    _, headers, _ = Client(K1, client_secret=S1).sign(gw.url("/model/ABC-1"), "GET")
    h = headers["Authorization"]
    assert h.startswith("OAuth ")
    r = gw.get("/model/ABC-1", headers={"Authorization": "oauth " + h[6:].replace(", ", ",")})
    assert r.status_code == 200, r.text


def test_public_origin_is_what_clients_sign(gateway_factory, upstream):
    """Behind a load balancer: clients sign the public URL, not the
    gateway's own address."""
    public = "https://API.Example.test"
    g = gateway_factory(keys=[{"id": K1, "owner": "alice", "secret": S1}], public_origin=public)
    # signed for the public origin (host case and default port do not matter)
    _, h, _ = Client(K1, client_secret=S1).sign("https://api.example.test:443/model/ABC-1?a=1", "GET")
    r = g.get("/model/ABC-1?a=1", headers=h)
    assert r.status_code == 200, r.text
    # signed for the address the request really went to
    r = g.get("/model/ABC-1?a=1", auth=auth())
    assert_refused(r, 401, "invalid_signature")
    assert [rec.query for rec in upstream.records] == ["a=1"]
    g.stop()


@pytest.mark.parametrize("proto", ["--http1.1", "--http2"])
def test_curl_signed_form_with_expect_100_continue(gw, upstream, proto):
    url = gw.url("/model/ABC-1")
    form = "blob=" + "x" * 1500 + "&n=1"
    _, headers, body = Client(K1, client_secret=S1).sign(
        url, "POST", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    code, _, _ = gw.curl(proto, "-H", "Expect: 100-continue",
                         "-H", "Authorization: " + headers["Authorization"],
                         "-H", "Content-Type: application/x-www-form-urlencoded",
                         "--data-binary", body)
    assert code == 200
    assert upstream.last().body == body.encode()
