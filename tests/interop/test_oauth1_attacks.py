"""Attacks on OAuth 1.0 verification: replays, stale timestamps, forged and
mis-targeted signatures, parameter smuggling, oversized input, races.

Each refusal is checked for its status, its error code and that the
upstream saw nothing.
"""

import json
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, SIGNATURE_TYPE_QUERY
from requests_oauthlib import OAuth1

from conftest import (
    BIN,
    TIMEOUT,
    assert_refused,
    error_of,
    fresh_nonce,
    new_secret,
    oauth_header,
    raw_https,
    sha256_hash,
)

K1, S1 = "K1", new_secret()
K2, S2 = "K2", new_secret()
KR, SR = "KR", new_secret()  # may read /model/ABC-* only
KH, SH = "KH", new_secret()  # stores only secret_hash
KD, SD = "KD", new_secret()  # disabled
KE, SE = "KE", new_secret()  # expired

KEYS = [
    {"id": K1, "owner": "alice", "secret": S1},
    {"id": K2, "owner": "bob", "secret": S2},
    {"id": KR, "owner": "rita", "secret": SR,
     "grants": [{"namespace": "models", "actions": ["read"], "resources": ["/model/ABC-*"]}]},
    {"id": KH, "owner": "hank", "secret_hash": sha256_hash(SH)},
    {"id": KD, "owner": "dora", "secret": SD, "disabled": True},
    {"id": KE, "owner": "eve", "secret": SE, "expires_at": "2020-01-01T00:00:00Z"},
]


@pytest.fixture(scope="module")
def gw(gateway_factory):
    return gateway_factory(keys=KEYS, limits={"max_form_body": "1KiB"})


def auth(key=K1, secret=S1, **kw):
    return OAuth1(key, client_secret=secret, signature_method=SIGNATURE_HMAC_SHA1, **kw)


def signed(gw, method="GET", path="/model/ABC-1", data=None, key=K1, secret=S1, **kw):
    """A prepared request signed by requests-oauthlib, ready to send (again)."""
    req = requests.Request(method, gw.url(path), data=data, auth=auth(key, secret, **kw))
    return req.prepare()


def send(gw, prepared):
    r = gw.session.send(prepared, timeout=TIMEOUT, verify=gw.cert)
    gw.bodies.append(r.content)
    return r


def hget(gw, path, header, **kw):
    """GET with a hand-built Authorization header."""
    headers = dict(kw.pop("headers", {}))
    headers["Authorization"] = header
    return gw.get(path, headers=headers, **kw)


# --------------------------------------------------------------- replay


def test_identical_replay(gw, upstream):
    p = signed(gw)
    first = send(gw, p)
    assert first.status_code == 200, first.text
    again = send(gw, p)
    assert_refused(again, 401, "nonce_replayed")
    assert len(upstream.records) == 1


def test_replay_of_form_post(gw, upstream):
    p = signed(gw, "POST", data={"a": "1"})
    assert send(gw, p).status_code == 200
    assert_refused(send(gw, p), 401, "nonce_replayed")
    assert len(upstream.records) == 1


def test_replay_of_query_signed_request(gw, upstream):
    p = signed(gw, path="/model/ABC-1?x=1", signature_type=SIGNATURE_TYPE_QUERY)
    assert send(gw, p).status_code == 200
    assert_refused(send(gw, p), 401, "nonce_replayed")
    assert len(upstream.records) == 1


def test_hand_built_header_is_valid(gw, upstream):
    """Control for the tests below: the hand-built header passes."""
    r = hget(gw, "/model/ABC-1?q=1", oauth_header("GET", gw.url("/model/ABC-1?q=1"), K1, S1))
    assert r.status_code == 200, r.text
    assert upstream.last().query_pairs() == [("q", "1")]


def test_nonce_reencoded_is_the_same_nonce(gw, upstream):
    nonce = "a" + fresh_nonce()  # the first character can be sent as %61
    ts = int(time.time())
    url1, url2 = gw.url("/model/ABC-1"), gw.url("/model/ABC-2")
    r = hget(gw, "/model/ABC-1", oauth_header("GET", url1, K1, S1, nonce=nonce, timestamp=ts))
    assert r.status_code == 200, r.text
    # A different request (another path, so another valid signature) that
    # sends the same nonce percent-encoded differently.
    h2 = oauth_header("GET", url2, K1, S1, nonce=nonce, timestamp=ts,
                      raw={"oauth_nonce": "%61" + nonce[1:]})
    assert '"%61' in h2
    assert_refused(hget(gw, "/model/ABC-2", h2), 401, "nonce_replayed")
    assert len(upstream.records) == 1


def test_nonce_reencoded_first_then_plain(gw, upstream):
    nonce = "a" + fresh_nonce()
    ts = int(time.time())
    h1 = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1, nonce=nonce, timestamp=ts,
                      raw={"oauth_nonce": "%61" + nonce[1:]})
    r = hget(gw, "/model/ABC-1", h1)
    assert r.status_code == 200, r.text  # the encoded form is a valid nonce
    h2 = oauth_header("GET", gw.url("/model/ABC-2"), K1, S1, nonce=nonce, timestamp=ts)
    assert_refused(hget(gw, "/model/ABC-2", h2), 401, "nonce_replayed")
    assert len(upstream.records) == 1


def test_nonce_reused_with_new_timestamp(gw, upstream):
    nonce = fresh_nonce()
    now = int(time.time())
    r = hget(gw, "/model/ABC-1", oauth_header("GET", gw.url("/model/ABC-1"), K1, S1,
                                              nonce=nonce, timestamp=now))
    assert r.status_code == 200, r.text
    h2 = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1, nonce=nonce, timestamp=now + 1)
    assert_refused(hget(gw, "/model/ABC-1", h2), 401, "nonce_replayed")
    assert len(upstream.records) == 1


def test_concurrent_replays(gw, upstream):
    """The same signed request from 20 threads at once: exactly one wins."""
    n, rounds = 20, 5

    def fire(prepared, barrier):
        barrier.wait(timeout=TIMEOUT)
        r = requests.Session().send(prepared.copy(), timeout=TIMEOUT, verify=gw.cert)
        return r.status_code, error_of(r) if r.status_code != 200 else None

    with ThreadPoolExecutor(max_workers=n) as pool:
        for _ in range(rounds):
            upstream.clear()
            p = signed(gw, "POST", path="/model/ABC-1?r=1", data={"v": "1"})
            barrier = threading.Barrier(n)
            results = list(pool.map(lambda _: fire(p, barrier), range(n), timeout=3 * TIMEOUT))
            oks = [r for r in results if r[0] == 200]
            replays = [r for r in results if r == (401, "nonce_replayed")]
            assert len(oks) == 1, results
            assert len(replays) == n - 1, results
            assert len(upstream.records) == 1


def test_concurrent_distinct_requests(gw, upstream):
    """Control for the race above: 20 different signed requests at once all pass."""
    n = 20
    barrier = threading.Barrier(n)

    def fire(i):
        p = signed(gw, path=f"/model/ABC-1?i={i}")
        barrier.wait(timeout=TIMEOUT)
        return requests.Session().send(p, timeout=TIMEOUT, verify=gw.cert).status_code

    with ThreadPoolExecutor(max_workers=n) as pool:
        codes = list(pool.map(fire, range(n), timeout=3 * TIMEOUT))
    assert codes == [200] * n
    assert sorted(r.query for r in upstream.records) == sorted(f"i={i}" for i in range(n))


# ------------------------------------------------------------ timestamps


@pytest.mark.parametrize("offset", [-600, 600])
def test_timestamp_out_of_window(gw, upstream, offset):
    ts = str(int(time.time()) + offset)
    r = gw.get("/model/ABC-1", auth=auth(timestamp=ts))
    assert_refused(r, 401, "timestamp_out_of_window")
    assert upstream.records == []


def test_timestamp_inside_window(gw, upstream):
    # 100 s in the future is inside the 300 s window
    r = gw.get("/model/ABC-1", auth=auth(timestamp=str(int(time.time()) + 100)))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("ts", ["", "12x", "-5", "1e9", "99999999999999999999999"])
def test_timestamp_not_a_number(gw, upstream, ts):
    h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1, timestamp=ts)
    assert_refused(hget(gw, "/model/ABC-1", h), 400, "malformed_credentials")
    assert upstream.records == []


def test_timestamp_before_gateway_start(gateway_factory, upstream):
    """A timestamp from before the start is refused even inside the window:
    a restarted gateway has forgotten the nonces seen before it."""
    g = gateway_factory(keys=KEYS)
    ts = str(int(g.started_at) - 5)
    r = g.get("/model/ABC-1", auth=auth(timestamp=ts))
    assert_refused(r, 401, "timestamp_out_of_window")
    assert upstream.records == []
    g.stop()


def test_replay_across_restart(gateway_factory, upstream):
    g = gateway_factory(keys=KEYS)
    p = signed(g, path="/model/ABC-1?restart=1")
    assert send(g, p).status_code == 200
    header = p.headers["Authorization"]
    header = header.decode() if isinstance(header, bytes) else header
    ts = int(header.split('oauth_timestamp="')[1].split('"')[0])
    while time.time() < ts + 1.05:  # the new process must start in a later second
        time.sleep(0.05)
    g.restart()
    r = send(g, p)
    assert_refused(r, 401, "timestamp_out_of_window")
    assert len(upstream.records) == 1
    g.stop()


# ------------------------------------------------------- keys and secrets


def test_wrong_secret(gw, upstream):
    r = gw.get("/model/ABC-1", auth=auth(K1, S1 + "x"))
    assert_refused(r, 401, "invalid_signature")
    assert upstream.records == []


def test_tampered_signature(gw, upstream):
    h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1)
    sig = h.split('oauth_signature="')[1].split('"')[0]
    forged = h.replace(sig, ("A" if sig[0] != "A" else "B") + sig[1:])
    assert_refused(hget(gw, "/model/ABC-1", forged), 401, "invalid_signature")
    bad_b64 = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1, signature="not base64!")
    assert_refused(hget(gw, "/model/ABC-1", bad_b64), 401, "invalid_signature")
    assert upstream.records == []


def test_unknown_consumer_key(gw, upstream):
    r = gw.get("/model/ABC-1", auth=auth("nobody", S1))
    assert_refused(r, 401, "unknown_key")
    assert upstream.records == []


def test_hash_only_key_cannot_sign(gw, upstream):
    r = gw.get("/model/ABC-1", auth=auth(KH, SH))
    assert r.status_code == 401, r.text
    assert error_of(r) == "invalid_credentials"
    assert upstream.records == []
    # the same key still works as an API key
    assert gw.get("/model/ABC-1", auth=(KH, SH)).status_code == 200


def test_check_warns_about_hash_only_key(gw):
    out = subprocess.run([BIN, "check", "-c", str(gw.config_path)], cwd=gw.dir,
                         env={**os.environ, **gw.env},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stdout.splitlines() if line.startswith("warning:")]
    assert any(f"`{KH}`" in w and "secret hash" in w for w in warnings), out.stdout
    assert not any(f"`{K1}`" in w for w in warnings), out.stdout


def test_disabled_key(gw, upstream):
    r = gw.get("/model/ABC-1", auth=auth(KD, SD))
    assert_refused(r, 401, "key_disabled")
    # without the secret, a disabled key looks like any bad signature
    r = gw.get("/model/ABC-1", auth=auth(KD, SD + "x"))
    assert_refused(r, 401, "invalid_signature")
    assert upstream.records == []


def test_expired_key(gw, upstream):
    r = gw.get("/model/ABC-1", auth=auth(KE, SE))
    assert_refused(r, 401, "key_expired")
    assert upstream.records == []


# ----------------------------------------------- signed for something else


def test_signed_for_another_host(gw, upstream):
    for other in (f"https://evil.example:{gw.port}", f"https://127.0.0.1:{gw.port}",
                  "https://localhost", f"http://localhost:{gw.port}"):
        h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1, sign_url=other + "/model/ABC-1")
        assert_refused(hget(gw, "/model/ABC-1", h), 401, "invalid_signature")
    assert upstream.records == []


def test_signed_for_another_path(gw, upstream):
    h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1, sign_url=gw.url("/model/ABC-2"))
    assert_refused(hget(gw, "/model/ABC-1", h), 401, "invalid_signature")
    assert upstream.records == []


def test_signed_for_another_query(gw, upstream):
    h = oauth_header("GET", gw.url("/model/ABC-1?amount=1"), K1, S1)
    assert_refused(hget(gw, "/model/ABC-1?amount=1000", h), 401, "invalid_signature")
    assert_refused(hget(gw, "/model/ABC-1?amount=1&amount=1000",
                        oauth_header("GET", gw.url("/model/ABC-1?amount=1"), K1, S1)),
                   401, "invalid_signature")
    assert upstream.records == []


def test_signed_for_another_method(gw, upstream):
    h = oauth_header("POST", gw.url("/model/ABC-1"), K1, S1)
    assert_refused(hget(gw, "/model/ABC-1", h), 401, "invalid_signature")
    h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1)
    r = gw.request("DELETE", "/model/ABC-1", headers={"Authorization": h})
    assert_refused(r, 401, "invalid_signature")
    assert upstream.records == []


@pytest.mark.parametrize("path", ["/model/ABC-1/../XYZ-1", "/model/ABC-1/%2E%2E/XYZ-1",
                                  "/model/ABC-1/%2e%2e/XYZ-1", "/model/ABC-1/.%2e/XYZ-1",
                                  "/model/ABC-1%2F..%2FXYZ-1", "/model//ABC-1/../../model/XYZ-1"])
def test_signed_path_traversal_does_not_escape_grant(gw, upstream, path):
    """A valid signature over a path that climbs out of the granted
    resources is refused; the upstream never sees the other resource.
    (Sent raw: requests/urllib3 would rewrite these paths.)"""
    h = oauth_header("GET", gw.url(path), KR, SR)
    head = (f"GET {path} HTTP/1.1\r\nHost: localhost:{gw.port}\r\n"
            f"Authorization: {h}\r\nConnection: close\r\n\r\n").encode()
    status, headers, body = raw_https(gw, head)
    assert status in (400, 403), body
    assert json.loads(body)["error"] in ("invalid_path", "insufficient_grant"), body
    assert upstream.records == []


def test_restricted_key_inside_its_grant(gw, upstream):
    r = gw.get("/model/ABC-9", auth=auth(KR, SR))
    assert r.status_code == 200, r.text
    r = gw.get("/model/XYZ-9", auth=auth(KR, SR))
    assert_refused(r, 403, "insufficient_grant")
    r = gw.post("/model/ABC-9", data={"a": "1"}, auth=auth(KR, SR))
    assert_refused(r, 403, "insufficient_grant")
    assert [rec.path for rec in upstream.records] == ["/model/ABC-9"]


# -------------------------------------------------- parameter smuggling


def test_duplicate_nonce_in_header(gw, upstream):
    h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1, extra=[("oauth_nonce", fresh_nonce())])
    assert h.count("oauth_nonce=") == 2
    assert_refused(hget(gw, "/model/ABC-1", h), 400, "duplicate_parameter")
    assert upstream.records == []


def test_duplicate_oauth_param_in_query(gw, upstream):
    p = signed(gw, path="/model/ABC-1", signature_type=SIGNATURE_TYPE_QUERY)
    p.url = p.url + "&oauth_nonce=" + fresh_nonce()
    assert_refused(send(gw, p), 400, "duplicate_parameter")
    assert upstream.records == []


def test_oauth_params_in_header_and_query(gw, upstream):
    q = signed(gw, path="/model/ABC-1", signature_type=SIGNATURE_TYPE_QUERY)
    query = q.url.split("?", 1)[1]
    h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1)
    r = hget(gw, "/model/ABC-1?" + query, h)
    assert_refused(r, 400, "duplicate_parameter")
    # one oauth_* parameter in the query is enough
    h = oauth_header("GET", gw.url("/model/ABC-1?oauth_extra=1"), K1, S1)
    assert_refused(hget(gw, "/model/ABC-1?oauth_extra=1", h), 400, "duplicate_parameter")
    assert upstream.records == []


def test_oauth_params_in_header_and_form_body(gw, upstream):
    body = [("oauth_nonce", fresh_nonce()), ("a", "1")]
    h = oauth_header("POST", gw.url("/model/ABC-1"), K1, S1, body_params=body)
    r = gw.post("/model/ABC-1", data=body,
                headers={"Authorization": h})
    assert_refused(r, 400, "duplicate_parameter")
    assert upstream.records == []


def test_oauth_params_in_query_and_body(gw, upstream):
    q = signed(gw, path="/model/ABC-1", signature_type=SIGNATURE_TYPE_QUERY)
    query = q.url.split("?", 1)[1]
    b = signed(gw, "POST", path="/model/ABC-1", data={"x": "1"}, signature_type="BODY")
    r = gw.post("/model/ABC-1?" + query, data=b.body,
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_refused(r, 400, "duplicate_parameter")
    assert upstream.records == []


def test_param_in_query_and_form_body(gw, upstream):
    url = gw.url("/model/ABC-1?role=user")
    h = oauth_header("POST", url, K1, S1, body_params=[("role", "admin")])
    r = gw.post("/model/ABC-1?role=user", data="role=admin",
                headers={"Authorization": h, "Content-Type": "application/x-www-form-urlencoded"})
    assert_refused(r, 400, "duplicate_parameter")
    assert upstream.records == []


def test_oauth_version_2(gw, upstream):
    h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1, drop=["oauth_version"],
                     extra=[("oauth_version", "2.0")])
    assert_refused(hget(gw, "/model/ABC-1", h), 400, "unsupported_parameter")
    assert upstream.records == []


def test_oauth_version_may_be_absent(gw, upstream):
    h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1, drop=["oauth_version"])
    r = hget(gw, "/model/ABC-1", h)
    assert r.status_code == 200, r.text


def test_oauth_token_non_empty(gw, upstream):
    # three-legged: requests-oauthlib with a resource owner key
    r = gw.get("/model/ABC-1", auth=OAuth1(K1, client_secret=S1, resource_owner_key="tok",
                                           resource_owner_secret="tsecret"))
    assert_refused(r, 400, "unsupported_parameter")
    assert upstream.records == []


def test_oauth_token_empty_is_accepted(gw, upstream):
    h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1, extra=[("oauth_token", "")])
    r = hget(gw, "/model/ABC-1", h)
    assert r.status_code == 200, r.text
    assert not upstream.last().has_header("Authorization")


@pytest.mark.parametrize("name", ["oauth_callback", "oauth_verifier", "oauth_whatever"])
def test_three_legged_and_unknown_params(gw, upstream, name):
    h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1, extra=[(name, "x")])
    assert_refused(hget(gw, "/model/ABC-1", h), 400, "unsupported_parameter")
    assert upstream.records == []


@pytest.mark.parametrize("header", [
    "OAuth garbage",
    "OAuth",
    'OAuth oauth_consumer_key="K1", oauth_nonce="unterminated',
    'OAuth oauth_consumer_key=K1',
    'OAuth oauth_consumer_key="%zz"',
])
def test_malformed_header(gw, upstream, header):
    assert_refused(hget(gw, "/model/ABC-1", header), 400, "malformed_credentials")
    assert upstream.records == []


@pytest.mark.parametrize("missing", ["oauth_consumer_key", "oauth_nonce", "oauth_timestamp",
                                     "oauth_signature_method"])
def test_missing_required_param(gw, upstream, missing):
    h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1, drop=[missing])
    assert_refused(hget(gw, "/model/ABC-1", h), 400, "malformed_credentials")
    assert upstream.records == []


def test_unsupported_signature_method(gw, upstream):
    h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1, signature_method="RSA-SHA1")
    assert_refused(hget(gw, "/model/ABC-1", h), 401, "unsupported_signature_method")
    assert upstream.records == []


def test_oauth_next_to_another_credential(gw, upstream):
    q = signed(gw, path="/model/ABC-1", signature_type=SIGNATURE_TYPE_QUERY)
    r = gw.get(q.url, auth=(K1, S1))
    assert_refused(r, 400, "multiple_credentials")
    h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1)
    r = hget(gw, "/model/ABC-1", h, headers={"X-Api-Key": S1})
    assert_refused(r, 400, "multiple_credentials")
    assert upstream.records == []


def test_percent_encoded_oauth_names_in_query(gw, upstream):
    """`%6Fauth_signature` is oauth_signature: verified, and not forwarded."""
    p = signed(gw, path="/model/ABC-1?keep=1", signature_type=SIGNATURE_TYPE_QUERY)
    p.url = p.url.replace("oauth_signature=", "%6Fauth_signature=").replace(
        "oauth_nonce=", "oauth%5Fnonce=")
    r = send(gw, p)
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.query_pairs() == [("keep", "1")], rec.target


def test_same_nonce_for_different_keys(gw, upstream):
    nonce = fresh_nonce()
    for key, secret in ((K1, S1), (K2, S2)):
        h = oauth_header("GET", gw.url("/model/ABC-1"), key, secret, nonce=nonce)
        r = hget(gw, "/model/ABC-1", h)
        assert r.status_code == 200, r.text
    assert len(upstream.records) == 2


# ------------------------------------------------------------ big input


def test_10kb_oauth_header(gw, upstream):
    # over the verifier's 8 KiB limit for an OAuth header, under the 64 KiB
    # header limit of the HTTP server
    big = 'OAuth oauth_consumer_key="K1", oauth_nonce="' + "a" * 10_000 + '"'
    assert_refused(hget(gw, "/model/ABC-1", big), 400, "malformed_credentials")
    assert upstream.records == []


@pytest.mark.parametrize("name", ["Authorization", "X-Padding"])
def test_100kb_header_http1(gw, upstream, name):
    value = ('OAuth oauth_nonce="' + "a" * 100_000 + '"') if name == "Authorization" else "p" * 100_000
    head = (f"GET /model/ABC-1 HTTP/1.1\r\nHost: localhost:{gw.port}\r\n"
            f"{name}: {value}\r\n\r\n").encode()
    status, _, _ = raw_https(gw, head)
    assert 400 <= status < 500, status
    assert gw.alive(), gw.stderr()
    assert gw.get("/model/ABC-1", auth=auth()).status_code == 200
    assert len(upstream.records) == 1


def test_100kb_header_http2(gw, upstream):
    # HTTP/2 (h2 crate): the stream is refused; the gateway must survive it
    curl = shutil.which("curl")
    out = subprocess.run([curl, "-sS", "--http2", "--cacert", gw.cert, "--max-time", "10",
                          "-o", "/dev/null", "-w", "%{http_code}",
                          "-H", "X-Padding: " + "p" * 100_000, gw.url("/model/ABC-1")],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode != 0 or 400 <= int(out.stdout) < 500, out
    assert gw.alive(), gw.stderr()
    code, version, _ = gw.curl("--http2", "-H", "X-Api-Key: " + S1)
    assert (code, version) == (200, "2")
    assert len(upstream.records) == 1


def test_form_body_over_limit(gw, upstream):
    r = gw.post("/model/ABC-1", data={"blob": "x" * 2048}, auth=auth())
    assert_refused(r, 413, "body_too_large")
    assert upstream.records == []


def form_head(gw, h, length=None):
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST /model/ABC-1 HTTP/1.1\r\nHost: localhost:{gw.port}\r\n"
            f"Authorization: {h}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"{framing}\r\n\r\n").encode()


def test_chunked_form_body_over_limit_raw(gw, upstream):
    h = oauth_header("POST", gw.url("/model/ABC-1"), K1, S1)
    chunk = b"blob=" + b"x" * 300 + b"&"
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 8 + [b"0\r\n\r\n"]
    status, headers, body = raw_https(gw, form_head(gw, h), parts, delay=0.01)
    assert status == 413, body
    assert b'"body_too_large"' in body
    assert upstream.records == []


def test_chunked_form_body_over_limit_requests(gw, upstream):
    """What a requests user sees for a streamed form body over the limit:
    the 413, not a connection error (needs a lingering close)."""
    for _ in range(4):
        h = oauth_header("POST", gw.url("/model/ABC-1"), K1, S1)

        def chunks():
            for _ in range(256):
                yield b"blob=" + b"x" * 300 + b"&"

        r = gw.post("/model/ABC-1", data=chunks(),
                    headers={"Authorization": h, "Content-Type": "application/x-www-form-urlencoded"})
        assert_refused(r, 413, "body_too_large")
    assert upstream.records == []


def test_large_declared_form_body_over_limit_requests(gw, upstream):
    """A 1 MiB form body against a 1 KiB limit: requests must get the 413
    (today the gateway answers and closes while the body is still coming,
    and requests reports a connection error instead)."""
    for _ in range(3):
        h = oauth_header("POST", gw.url("/model/ABC-1"), K1, S1)
        r = gw.post("/model/ABC-1", data="blob=" + "x" * (1 << 20),
                    headers={"Authorization": h, "Content-Type": "application/x-www-form-urlencoded"})
        assert_refused(r, 413, "body_too_large")
    assert upstream.records == []


def test_large_declared_form_body_over_limit_raw(gw, upstream):
    h = oauth_header("POST", gw.url("/model/ABC-1"), K1, S1)
    body = b"blob=" + b"x" * (1 << 20)
    status, _, resp = raw_https(gw, form_head(gw, h, len(body)), [body[i:i + 16384] for i in range(0, len(body), 16384)])
    assert status == 413, resp
    assert b'"body_too_large"' in resp
    assert upstream.records == []


def test_body_hashed_json_over_limit(gw, upstream):
    # a body under oauth_body_hash is buffered too, within the same limit
    doc = '{"blob": "' + "x" * 2048 + '"}'
    r = gw.post("/model/ABC-1", data=doc, headers={"Content-Type": "application/json"},
                auth=auth(force_include_body=True))
    assert "oauth_body_hash" in r.request.headers["Authorization"].decode()
    assert_refused(r, 413, "body_too_large")
    assert upstream.records == []


def test_json_without_body_hash_is_not_limited(gw, upstream):
    # a body outside the signature streams through whatever its size
    doc = '{"blob": "' + "x" * 4096 + '"}'
    r = gw.post("/model/ABC-1", data=doc, headers={"Content-Type": "application/json"}, auth=auth())
    assert r.status_code == 200, r.text
    assert upstream.last().body == doc.encode()


def test_unsigned_form_body_over_limit_with_oauth_in_it(gw, upstream):
    # oauth_* only in the body: the gateway must buffer it, within the limit
    body = "oauth_consumer_key=K1&blob=" + "x" * 2048
    r = gw.post("/model/ABC-1", data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_refused(r, 413, "body_too_large")
    assert upstream.records == []


def test_form_body_under_limit(gw, upstream):
    r = gw.post("/model/ABC-1", data={"blob": "x" * 900}, auth=auth())
    assert r.status_code == 200, r.text
    assert len(upstream.last().body) == len(r.request.body)


def test_gateway_survived(gw):
    assert gw.alive(), gw.stderr()
    r = requests.get(f"http://127.0.0.1:{gw.admin_port}/healthz", timeout=TIMEOUT)
    assert r.status_code == 200
