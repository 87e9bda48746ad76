"""JWT issuer keys fetched from a `jwks_url` over HTTPS.

A threaded Python HTTPS server (certificate from `portcullis gen-cert`,
trusted by the gateway through `SSL_CERT_FILE`) serves a mutable JWKS
document and records every request (path, headers, time). Switches make it
answer 500, invalid JSON, a document over 1 MiB, hang, or stop listening.
Keys are generated at run time; every request has a timeout and every wait
is bounded.

Contract under test:
- fetch at start (5 s timeout), background refresh every `jwks_refresh`,
  re-fetch on an unknown `kid` at most once every `jwks_min_refetch` (the
  triggering token is refused, a retry after the re-fetch succeeds);
- a failed fetch keeps the last good keys;
- the gateway starts with the identity provider down; `/readyz` is 503 until
  the first fetch attempt finished, then 200 with
  `"jwks": {url: "ok" | "unavailable: <reason>"}`;
- requests carry `User-Agent: portcullis/...`; `jku`/`x5u` are never fetched;
- `http://` URLs are a config error naming `jwt.issuers[0].jwks_url`.
"""

from __future__ import annotations

import json
import math
import os
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import BIN, TIMEOUT, assert_refused, free_port, new_secret
from jwt_helpers import (
    assert_forwarded_jwt,
    bearer,
    claims,
    ec_key,
    jwt_gateway_factory,  # noqa: F401  (fixture)
    mint,
    rsa_key,
    wait_until,
)

BOTH = {"models:read", "models:create"}
JWKS_PATH = "/jwks.json"
#: Longest a "hang" answer holds a connection (the gateway gives up after 5 s).
HANG_MAX = 20
#: How long a "slow" answer takes.
SLOW_DELAY = 1.5
#: Longest wait for a refresh / re-fetch to show (refresh intervals are 1-2 s).
REFRESH_WAIT = 10

# Keys generated once per run (never committed).
RSA_A = rsa_key()
EC_B = ec_key("P-256")
RSA_C = rsa_key()
EC_D = ec_key("P-256")
RSA_E = rsa_key()


# ------------------------------------------------------------ JWKS server


class Fetch:
    """One request the JWKS server received."""

    def __init__(self, method, path, headers, at, mode):
        self.method = method
        self.path = path
        self.headers = headers
        self.at = at
        self.mode = mode

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"Fetch({self.method} {self.path} at={self.at:.3f} mode={self.mode} headers={self.headers!r})"


class _JwksHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "test-jwks"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status, payload, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _handle(self):
        owner = self.server.owner
        mode, doc = owner._record(self)
        path = self.path.split("?", 1)[0]
        if mode == "hang":
            owner.release.wait(HANG_MAX)
            self.close_connection = True
            return
        if mode == "slow":
            # answer with the document as it was when the request arrived
            time.sleep(SLOW_DELAY)
            mode = "ok"
        if path != JWKS_PATH:
            self._send(404, b'{"error":"not found"}')
            return
        if mode == "500":
            self._send(500, b'{"error":"internal"}')
        elif mode == "garbage":
            self._send(200, b'{"keys": [ {"kty": "RSA", "n": this is not json')
        elif mode == "huge":
            self._send(200, owner.huge_doc)
        else:
            self._send(200, doc)

    do_GET = do_HEAD = do_POST = _handle


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, ctx, owner):
        self.ctx = ctx
        self.owner = owner
        super().__init__(addr, _JwksHandler)

    def finish_request(self, request, client_address):
        # TLS handshake in the per-connection thread, not in accept().
        request.settimeout(HANG_MAX + 10)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        self.owner._track(tls, True)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            self.owner._track(tls, False)
            try:
                tls.close()
            except OSError:
                pass


class JwksServer:
    """HTTPS JWKS server on 127.0.0.1:<port> with a mutable document.

    `mode`: "ok" (serve the document), "500", "garbage" (invalid JSON),
    "huge" (valid JSON over 1 MiB holding other keys), "hang" (read the
    request, never answer until released or HANG_MAX), "slow" (answer
    SLOW_DELAY seconds late with the document as it was when asked).
    """

    def __init__(self, cert_dir, port=0):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(os.path.join(cert_dir, "gateway.crt"),
                                 os.path.join(cert_dir, "gateway.key"))
        self.lock = threading.Lock()
        self.records = []
        self.mode = "ok"
        self.doc = json.dumps({"keys": []}).encode()
        self.huge_doc = json.dumps({
            "keys": [RSA_E.jwk(kid="huge-e", alg="RS256")],
            "padding": "x" * (1024 * 1024 + 4096),
        }).encode()
        self.release = threading.Event()
        self.conns = set()
        self.port = port
        self.server = None
        self.thread = None

    # -- lifecycle
    def start(self):
        self.release.clear()
        self.server = _TLSServer(("127.0.0.1", self.port), self.ctx, self)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Stop listening and drop every open connection."""
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.server = None
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(2)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass

    def _track(self, conn, add):
        with self.lock:
            (self.conns.add if add else self.conns.discard)(conn)

    def _record(self, handler):
        with self.lock:
            self.records.append(Fetch(handler.command, handler.path,
                                      list(handler.headers.items()), time.time(), self.mode))
            return self.mode, self.doc

    # -- content
    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}{JWKS_PATH}"

    def set_keys(self, *jwks):
        with self.lock:
            self.doc = json.dumps({"keys": list(jwks)}).encode()

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode
        if mode != "hang":
            self.release.set()
        else:
            self.release.clear()

    # -- inspection
    def fetches(self, path=JWKS_PATH):
        with self.lock:
            return [r for r in self.records if r.path.split("?", 1)[0] == path]

    def all_records(self):
        with self.lock:
            return list(self.records)

    def wait_fetches(self, n, timeout=REFRESH_WAIT):
        """Wait until the JWKS path has been requested at least `n` times."""
        return wait_until(lambda: len(self.fetches()) >= n, timeout=timeout, interval=0.05)


@pytest.fixture(scope="module")
def jwks_cert_dir():
    d = tempfile.mkdtemp(prefix="portcullis-jwks-")
    out = subprocess.run([BIN, "gen-cert", "--out", os.path.join(d, "certs")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"gen-cert failed: {out.stderr}"
    yield os.path.join(d, "certs")
    import shutil
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def jwks_server(jwks_cert_dir):
    servers = []

    def make(port=0, start=True):
        s = JwksServer(jwks_cert_dir, port=port)
        servers.append(s)
        return s.start() if start else s

    yield make
    for s in servers:
        s.stop()


# ------------------------------------------------------------ helpers


_made = []


@pytest.fixture(autouse=True)
def _stop_gateways():
    """Stop this test's gateways at its end (not the module's): no gateway
    keeps polling a JWKS server that is gone."""
    yield
    while _made:
        _made.pop().stop()


def make_gateway(factory, cert_dir, issuers, keys=(), start=True):
    """A gateway trusting the JWKS server's certificate via SSL_CERT_FILE."""
    g = factory(env={"SSL_CERT_FILE": os.path.join(cert_dir, "gateway.crt")}, keys=keys)
    _made.append(g)
    g.config["jwt"] = {"issuers": issuers}
    return g.start() if start else g


def issuer_cfg(iss, url, algorithms=("RS256", "ES256"), **extra):
    d = {"issuer": iss, "jwks_url": url, "algorithms": list(algorithms)}
    d.update(extra)
    return d


def readyz(g):
    return requests.get(f"http://127.0.0.1:{g.admin_port}/readyz", timeout=TIMEOUT)


def jwks_status(g, url):
    r = readyz(g)
    try:
        body = r.json()
    except ValueError:
        body = None
    status = (body or {}).get("jwks", {}).get(url) if isinstance(body, dict) else None
    return r, body, status


def get_tok(g, token):
    return g.get("/model/ABC-1", headers=bearer(token))


def status_is(code, fn):
    """A probe for wait_until: the response when its status is `code`."""
    def probe():
        r = fn()
        return r if r.status_code == code else None
    return probe


def fail_msg(g, server, what):
    return f"{what}\nJWKS requests: {server.all_records()!r}\ngateway stderr:\n{g.stderr()[-4000:]}"


# ------------------------------------------------------ 1. basic verification


def test_rs256_and_es256_from_jwks_url(jwt_gateway_factory, jwks_server, jwks_cert_dir, upstream):
    s = jwks_server()
    s.set_keys(RSA_A.jwk(kid="rsa-1", alg="RS256"), EC_B.jwk(kid="ec-1", alg="ES256"))
    iss = "https://basic.jwks-url.test"
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir, [issuer_cfg(iss, s.url)])
    assert s.fetches(), fail_msg(g, s, "ready, but the JWKS server saw no fetch")

    r = get_tok(g, mint(claims(iss, sub="rs-user"), RSA_A, "RS256", kid="rsa-1"))
    assert r.status_code == 200, fail_msg(g, s, r.text)
    assert_forwarded_jwt(upstream.last(), "rs-user", iss, BOTH)

    upstream.clear()
    r = get_tok(g, mint(claims(iss, sub="es-user"), EC_B, "ES256", kid="ec-1"))
    assert r.status_code == 200, fail_msg(g, s, r.text)
    assert_forwarded_jwt(upstream.last(), "es-user", iss, BOTH)

    # a key not in the document, and one signed by b claiming kid rsa-1
    assert_refused(get_tok(g, mint(claims(iss), RSA_C, "RS256", kid="rsa-1")), 401, "invalid_token")
    assert_refused(get_tok(g, mint(claims(iss), EC_B, "ES256", kid="rsa-1")), 401, "invalid_token")

    # every request the JWKS server saw is a GET of the URL with our User-Agent
    recs = s.all_records()
    assert recs
    for rec in recs:
        assert rec.method == "GET", rec
        assert rec.path == JWKS_PATH, rec
        ua = rec.header("User-Agent") or ""
        assert ua.startswith("portcullis/"), rec

    r, body, st = jwks_status(g, s.url)
    assert r.status_code == 200, (r.status_code, r.text)
    assert st == "ok", body


def test_untrusted_jwks_certificate_is_unavailable(jwt_gateway_factory, jwks_server, jwks_cert_dir,
                                                   tmp_path):
    """Without SSL_CERT_FILE pointing at the server's certificate the fetch
    fails TLS verification: tokens of that issuer are refused."""
    s = jwks_server()
    s.set_keys(RSA_A.jwk(kid="rsa-1", alg="RS256"))
    other = tmp_path / "other"
    out = subprocess.run([BIN, "gen-cert", "--out", str(other)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    iss = "https://untrusted.jwks-url.test"
    g = jwt_gateway_factory(env={"SSL_CERT_FILE": str(other / "gateway.crt")})
    _made.append(g)
    g.config["jwt"] = {"issuers": [issuer_cfg(iss, s.url)]}
    g.start()
    r, body, st = jwks_status(g, s.url)
    assert r.status_code == 200, (r.status_code, r.text)
    assert isinstance(st, str) and st.startswith("unavailable"), body
    assert_refused(get_tok(g, mint(claims(iss), RSA_A, "RS256", kid="rsa-1")), 401, "invalid_token")


# ------------------------------------------------------------ 2. rotation


def test_rotation_by_refresh(jwt_gateway_factory, jwks_server, jwks_cert_dir, upstream):
    s = jwks_server()
    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"), EC_B.jwk(kid="b", alg="ES256"))
    iss = "https://rotating.jwks-url.test"
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir,
                     [issuer_cfg(iss, s.url, jwks_refresh="2s")])
    tok_a = mint(claims(iss, sub="via-a"), RSA_A, "RS256", kid="a")
    tok_b = mint(claims(iss, sub="via-b"), EC_B, "ES256", kid="b")
    for tok, sub in ((tok_a, "via-a"), (tok_b, "via-b")):
        upstream.clear()
        r = get_tok(g, tok)
        assert r.status_code == 200, fail_msg(g, s, r.text)
        assert_forwarded_jwt(upstream.last(), sub, iss, BOTH)
    tok_c = mint(claims(iss, sub="via-c"), RSA_C, "RS256", kid="c")

    # drop a, add c
    s.set_keys(EC_B.jwk(kid="b", alg="ES256"), RSA_C.jwk(kid="c", alg="RS256"))
    t0 = time.time()
    r = wait_until(status_is(200, lambda: get_tok(g, tok_c)), timeout=REFRESH_WAIT)
    assert r is not None, fail_msg(g, s, "kid-c token still refused 10 s after c was published")
    upstream.clear()
    r = get_tok(g, mint(claims(iss, sub="via-c2"), RSA_C, "RS256", kid="c"))
    assert r.status_code == 200, r.text
    assert_forwarded_jwt(upstream.last(), "via-c2", iss, BOTH)

    # key a is gone: a fresh kid-a token is refused, and the one accepted before
    # (possibly in the verified-token cache) within the same bound
    fresh_a = mint(claims(iss), RSA_A, "RS256", kid="a")
    assert_refused(get_tok(g, fresh_a), 401, "invalid_token")
    r = wait_until(status_is(401, lambda: get_tok(g, tok_a)),
                   timeout=max(0.5, REFRESH_WAIT - (time.time() - t0)))
    assert r is not None, fail_msg(g, s, "previously accepted kid-a token still accepted after a left the JWKS")
    assert_refused(r, 401, "invalid_token")

    # b survived the rotation
    upstream.clear()
    r = get_tok(g, tok_b)
    assert r.status_code == 200, r.text
    assert_forwarded_jwt(upstream.last(), "via-b", iss, BOTH)
    r, body, st = jwks_status(g, s.url)
    assert st == "ok", body


def test_background_refresh_interval(jwt_gateway_factory, jwks_server, jwks_cert_dir):
    """With `jwks_refresh: 2s` and nothing asking, the server sees periodic
    fetches (at least 2 more within ~6 s) and not a flood."""
    s = jwks_server()
    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"))
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir,
                     [issuer_cfg("https://periodic.jwks-url.test", s.url, jwks_refresh="2s")])
    n0 = len(s.fetches())
    assert n0 >= 1
    time.sleep(6.5)
    n = len(s.fetches()) - n0
    assert 2 <= n <= 5, fail_msg(g, s, f"{n} background fetches in 6.5 s with jwks_refresh 2s")


# ------------------------------------------------- 3. unknown kid re-fetch


def test_unknown_kid_triggers_refetch_rate_limited(jwt_gateway_factory, jwks_server, jwks_cert_dir,
                                                   upstream):
    s = jwks_server()
    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"))
    iss = "https://refetch.jwks-url.test"
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir,
                     [issuer_cfg(iss, s.url, jwks_refresh="1h", jwks_min_refetch="1s")])
    assert get_tok(g, mint(claims(iss), RSA_A, "RS256", kid="a")).status_code == 200
    n0 = len(s.fetches())
    assert n0 >= 1
    # let the min-refetch window opened by the start-up fetch pass
    since = time.time() - s.fetches()[-1].at
    if since < 1.3:
        time.sleep(1.3 - since)

    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"), EC_D.jwk(kid="d", alg="ES256"))
    tok_d = mint(claims(iss, sub="via-d"), EC_D, "ES256", kid="d")
    # the token that triggers the re-fetch is refused
    assert_refused(get_tok(g, tok_d), 401, "invalid_token")
    assert s.wait_fetches(n0 + 1, timeout=3), fail_msg(
        g, s, "an unknown kid did not trigger a re-fetch within 3 s")
    time.sleep(1.5)
    upstream.clear()
    r = get_tok(g, tok_d)
    assert r.status_code == 200, fail_msg(g, s, f"retry after the re-fetch: {r.status_code} {r.text}")
    assert_forwarded_jwt(upstream.last(), "via-d", iss, BOTH)

    # rate limit: 20 tokens with unknown kids within 1 s → at most 2 more fetches
    time.sleep(1.2)
    before = len(s.fetches())
    toks = [mint(claims(iss), EC_D, "ES256", kid=f"nope-{uuid.uuid4().hex[:8]}") for _ in range(20)]
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(lambda t: get_tok(g, t), toks))
    elapsed = time.time() - t0
    for r in results:
        assert_refused(r, 401, "invalid_token")
    time.sleep(0.5)  # let a triggered fetch land
    extra = len(s.fetches()) - before
    allowed = 2 if elapsed <= 1.0 else 1 + math.ceil(elapsed)
    assert 1 <= extra <= allowed, fail_msg(
        g, s, f"{extra} fetches for 20 unknown-kid tokens in {elapsed:.2f} s (allowed 1..{allowed})")


# ------------------------------------------- 4. failed refresh keeps keys


@pytest.mark.parametrize("mode", ["500", "garbage", "huge", "hang"])
def test_failed_refresh_keeps_last_good_keys(jwt_gateway_factory, jwks_server, jwks_cert_dir,
                                             upstream, mode):
    s = jwks_server()
    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"), EC_B.jwk(kid="b", alg="ES256"))
    iss = f"https://keep-{mode}.jwks-url.test"
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir,
                     [issuer_cfg(iss, s.url, jwks_refresh="2s", jwks_min_refetch="1s")])
    r = get_tok(g, mint(claims(iss), RSA_A, "RS256", kid="a"))
    assert r.status_code == 200, fail_msg(g, s, r.text)

    s.set_mode(mode)
    n0 = len(s.fetches())
    # "hang": one fetch held for HANG_MAX; others: several failed refreshes
    want = 1 if mode == "hang" else 3
    deadline = time.time() + 2 * want + 6
    while time.time() < deadline:
        for key, kid, alg in ((RSA_A, "a", "RS256"), (EC_B, "b", "ES256")):
            t0 = time.time()
            r = get_tok(g, mint(claims(iss, sub=f"{mode}-{kid}"), key, alg, kid=kid))
            assert r.status_code == 200, fail_msg(
                g, s, f"kid {kid} refused while the JWKS server is in mode {mode}: {r.text}")
            assert time.time() - t0 < 2, "a token check waited on the JWKS fetch"
        if len([f for f in s.fetches()[n0:] if f.mode == mode]) >= want:
            break
        time.sleep(0.3)
    failed = [f for f in s.fetches()[n0:] if f.mode == mode]
    assert len(failed) >= want, fail_msg(g, s, f"only {len(failed)} fetches in mode {mode}")
    if mode == "hang":
        time.sleep(2.5)
    # a few more checks after the failures, the gateway still serving
    for _ in range(3):
        r = get_tok(g, mint(claims(iss), RSA_A, "RS256", kid="a"))
        assert r.status_code == 200, fail_msg(g, s, r.text)
    assert g.alive()
    if mode == "huge":
        # the over-sized document's key was not taken
        assert_refused(get_tok(g, mint(claims(iss), RSA_E, "RS256", kid="huge-e")),
                       401, "invalid_token")
    assert readyz(g).status_code == 200

    # back to good: a new key is picked up again
    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"), RSA_C.jwk(kid="c", alg="RS256"))
    s.set_mode("ok")
    tok_c = mint(claims(iss), RSA_C, "RS256", kid="c")
    r = wait_until(status_is(200, lambda: get_tok(g, tok_c)), timeout=REFRESH_WAIT + 5)
    assert r is not None, fail_msg(g, s, "new key not picked up after the server recovered")


# ------------------------------------------------- 5. IdP down at start


def test_idp_down_at_start(jwt_gateway_factory, jwks_server, jwks_cert_dir, upstream):
    port = free_port()  # reserved, then closed: nothing listens there
    url = f"https://127.0.0.1:{port}{JWKS_PATH}"
    iss = "https://down.jwks-url.test"
    key_id, secret = "K-jwks-down", new_secret()
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir,
                     [issuer_cfg(iss, url, jwks_refresh="2s", jwks_min_refetch="1s")],
                     keys=[{"id": key_id, "secret": secret}], start=False)
    g.start()  # waits for /readyz 200 (at most 15 s)
    took = time.time() - g.started_at
    assert took <= 10, f"/readyz took {took:.1f} s with the JWKS server down"

    r, body, st = jwks_status(g, url)
    assert r.status_code == 200, (r.status_code, r.text)
    assert isinstance(st, str) and st.startswith("unavailable"), body

    # API keys work, the issuer's tokens do not
    upstream.clear()
    r = g.get("/model/ABC-1", auth=(key_id, secret))
    assert r.status_code == 200, r.text
    assert upstream.last().header("X-Auth-Key-Id") == key_id
    tok = mint(claims(iss, sub="late"), RSA_A, "RS256", kid="a")
    assert_refused(get_tok(g, tok), 401, "invalid_token")

    # the identity provider comes up on that port
    s = jwks_server(port=port, start=False)
    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"))
    s.start()
    t0 = time.time()
    r = wait_until(status_is(200, lambda: get_tok(g, tok)), timeout=REFRESH_WAIT)
    assert r is not None, fail_msg(g, s, "token still refused 10 s after the JWKS server came up")
    assert time.time() - t0 <= 2 + 3, f"keys fetched only after {time.time() - t0:.1f} s (refresh 2s)"
    upstream.clear()
    r = get_tok(g, mint(claims(iss, sub="late2"), RSA_A, "RS256", kid="a"))
    assert r.status_code == 200, r.text
    assert_forwarded_jwt(upstream.last(), "late2", iss, BOTH)
    st = wait_until(lambda: jwks_status(g, url)[2] == "ok", timeout=5)
    assert st, jwks_status(g, url)[1]


def test_readyz_503_until_first_fetch_finishes(jwt_gateway_factory, jwks_server, jwks_cert_dir):
    """The JWKS server accepts the connection and never answers: /readyz is
    503 while that first fetch is pending, then (5 s timeout) 200 with the
    URL reported unavailable; API-key traffic is served throughout."""
    s = jwks_server()
    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"))
    s.set_mode("hang")
    iss = "https://slow.jwks-url.test"
    key_id, secret = "K-jwks-slow", new_secret()
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir,
                     [issuer_cfg(iss, s.url, jwks_refresh="2s", jwks_min_refetch="1s")],
                     keys=[{"id": key_id, "secret": secret}], start=False)
    seen = []

    def wait_ready():
        deadline = time.time() + 15
        url = f"http://127.0.0.1:{g.admin_port}/readyz"
        while time.time() < deadline:
            if g.proc.poll() is not None:
                raise RuntimeError(f"portcullis exited with {g.proc.returncode}:\n{g.stderr()}")
            try:
                r = requests.get(url, timeout=1)
                seen.append((time.time(), r.status_code, r.text, len(s.fetches())))
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"portcullis not ready after 15 s:\n{g.stderr()}")

    g._wait_ready = wait_ready
    g.start()
    pending = [x for x in seen if x[1] == 503 and x[3] >= 1]
    assert pending, fail_msg(g, s, f"/readyz never 503 while the first fetch hung: {seen!r}")
    ready_at = seen[-1][0]
    first_fetch = s.fetches()[0].at
    assert ready_at - first_fetch >= 3.5, f"ready {ready_at - first_fetch:.1f} s after the fetch began"
    assert ready_at - first_fetch <= 9, f"ready only {ready_at - first_fetch:.1f} s after the fetch began"
    r, body, st = jwks_status(g, s.url)
    assert r.status_code == 200
    assert isinstance(st, str) and st.startswith("unavailable"), body
    assert g.get("/model/ABC-1", auth=(key_id, secret)).status_code == 200

    s.set_mode("ok")
    tok = mint(claims(iss), RSA_A, "RS256", kid="a")
    r = wait_until(status_is(200, lambda: get_tok(g, tok)), timeout=REFRESH_WAIT)
    assert r is not None, fail_msg(g, s, "token refused after the JWKS server started answering")
    assert wait_until(lambda: jwks_status(g, s.url)[2] == "ok", timeout=5), jwks_status(g, s.url)[1]


# ------------------------------------------------- 6. config and jku/x5u


def _check(tmp_path, jwt_cfg):
    cert = tmp_path / "certs"
    subprocess.run([BIN, "gen-cert", "--out", str(cert)], check=True,
                   capture_output=True, timeout=30)
    cfg = {
        "listen": {"https": "127.0.0.1:1", "tls": {"cert": str(cert / "gateway.crt"),
                                                   "key": str(cert / "gateway.key")}},
        "routes": [{"name": "m", "match": {"path_prefix": "/model"},
                    "upstream": "http://127.0.0.1:9", "namespace": "models"}],
        "jwt": jwt_cfg,
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(cfg, indent=2))
    return subprocess.run([BIN, "check", "-c", str(path)], capture_output=True, text=True,
                          timeout=30, cwd=tmp_path)


def test_http_jwks_url_is_a_config_error(tmp_path):
    out = _check(tmp_path, {"issuers": [{"issuer": "https://idp.test", "algorithms": ["RS256"],
                                          "jwks_url": "http://127.0.0.1:9/jwks.json"}]})
    assert out.returncode == 1, out
    assert "jwt.issuers[0].jwks_url" in out.stdout + out.stderr, out


def test_https_jwks_url_passes_check(tmp_path):
    out = _check(tmp_path, {"issuers": [{"issuer": "https://idp.test", "algorithms": ["RS256"],
                                          "jwks_url": "https://127.0.0.1:9/jwks.json",
                                          "jwks_refresh": "2s", "jwks_min_refetch": "1s"}]})
    assert out.returncode == 0, out


@pytest.mark.parametrize("header", ["jku", "x5u"])
def test_jku_x5u_never_fetched(jwt_gateway_factory, jwks_server, jwks_cert_dir, upstream, header):
    s = jwks_server()
    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"))
    iss = f"https://{header}.jwks-url.test"
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir,
                     [issuer_cfg(iss, s.url, jwks_min_refetch="1s")])
    evil_path = f"/evil-{header}.json"
    evil = f"https://127.0.0.1:{s.port}{evil_path}"
    # known kid + jku/x5u, and unknown kid + jku/x5u (which may re-fetch jwks_url only)
    time.sleep(1.2)
    for kid in ("a", "unknown-kid"):
        tok = mint(claims(iss), RSA_A, "RS256", kid=kid, headers={header: evil})
        assert_refused(get_tok(g, tok), 401, "invalid_token")
    time.sleep(2)
    assert not s.fetches(evil_path), fail_msg(g, s, f"the gateway fetched the token's {header}")
    assert all(r.path == JWKS_PATH for r in s.all_records()), s.all_records()
    assert not upstream.records


# ------------------------------------------------- beyond the basic contract


def test_document_just_under_1_mib_is_accepted(jwt_gateway_factory, jwks_server, jwks_cert_dir):
    """The cap refuses documents over 1 MiB, not documents near it."""
    s = jwks_server()
    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"))
    iss = "https://big.jwks-url.test"
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir,
                     [issuer_cfg(iss, s.url, jwks_refresh="2s")])
    base = json.dumps({"keys": [RSA_C.jwk(kid="c", alg="RS256")], "padding": ""})
    pad = 1024 * 1024 - 512 - len(base)
    doc = json.dumps({"keys": [RSA_C.jwk(kid="c", alg="RS256")], "padding": "x" * pad}).encode()
    assert 1024 * 1024 - 1024 < len(doc) < 1024 * 1024
    with s.lock:
        s.doc = doc
    tok_c = mint(claims(iss), RSA_C, "RS256", kid="c")
    r = wait_until(status_is(200, lambda: get_tok(g, tok_c)), timeout=REFRESH_WAIT)
    assert r is not None, fail_msg(g, s, f"a {len(doc)}-byte JWKS was not taken")


@pytest.mark.parametrize("bad", ["weak-rsa", "oct", "dup-kid"])
def test_unusable_key_set_keeps_last_good_keys(jwt_gateway_factory, jwks_server, jwks_cert_dir, bad):
    """The IdP publishes a JWK set the issuer cannot use (an extra 1024-bit RSA
    key, an extra symmetric key, a duplicate kid). For jwks_file such a
    document is a rejected reload (the running keys stay); for jwks_url it is a
    failed fetch, so the last good keys must stay too - not an outage of every
    token of that issuer."""
    s = jwks_server()
    good = [RSA_A.jwk(kid="a", alg="RS256"), EC_B.jwk(kid="b", alg="ES256")]
    s.set_keys(*good)
    iss = f"https://unusable-{bad}.jwks-url.test"
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir,
                     [issuer_cfg(iss, s.url, jwks_refresh="2s", jwks_min_refetch="1s")])
    assert get_tok(g, mint(claims(iss), RSA_A, "RS256", kid="a")).status_code == 200
    extra = {
        "weak-rsa": rsa_key(1024).jwk(kid="weak", alg="RS256"),
        "oct": {"kty": "oct", "kid": "sym", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
        "dup-kid": RSA_C.jwk(kid="a", alg="RS256"),
    }[bad]
    n0 = len(s.fetches())
    s.set_keys(*good, extra)
    assert s.wait_fetches(n0 + 2, timeout=REFRESH_WAIT)
    time.sleep(0.5)
    for key, kid, alg in ((RSA_A, "a", "RS256"), (EC_B, "b", "ES256")):
        r = get_tok(g, mint(claims(iss), key, alg, kid=kid))
        assert r.status_code == 200, fail_msg(
            g, s, f"kid {kid}: {r.status_code} {r.text} after the IdP published an unusable set ({bad})")


def test_hung_idp_does_not_delay_another(jwt_gateway_factory, jwks_server, jwks_cert_dir, upstream):
    """Issuer A's JWKS server never answers; issuer B's rotates. B's unknown-kid
    re-fetch must not wait behind A's 5 s timeouts: the retry ~1.5 s later
    (jwks_min_refetch 1s) succeeds, as with B alone."""
    sa, sb = jwks_server(), jwks_server()
    sa.set_keys(RSA_A.jwk(kid="a", alg="RS256"))
    sa.set_mode("hang")
    sb.set_keys(EC_B.jwk(kid="b", alg="ES256"))
    iss_a, iss_b = "https://hung-a.jwks-url.test", "https://live-b.jwks-url.test"
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir, [
        issuer_cfg(iss_a, sa.url, jwks_refresh="2s", jwks_min_refetch="1s"),
        issuer_cfg(iss_b, sb.url, jwks_refresh="1h", jwks_min_refetch="1s"),
    ])
    r = get_tok(g, mint(claims(iss_b), EC_B, "ES256", kid="b"))
    assert r.status_code == 200, fail_msg(g, sb, r.text)
    # line up with a fresh hung fetch of A, then rotate B
    na = len(sa.fetches())
    assert sa.wait_fetches(na + 1, timeout=REFRESH_WAIT), "A was not re-fetched"
    time.sleep(0.2)
    sb.set_keys(EC_B.jwk(kid="b", alg="ES256"), RSA_C.jwk(kid="c", alg="RS256"))
    tok_c = mint(claims(iss_b, sub="via-c"), RSA_C, "RS256", kid="c")
    assert_refused(get_tok(g, tok_c), 401, "invalid_token")
    t0 = time.time()
    r = wait_until(status_is(200, lambda: get_tok(g, tok_c)), timeout=REFRESH_WAIT)
    took = time.time() - t0
    assert r is not None, fail_msg(g, sb, "B's new key never picked up")
    assert took <= 3, fail_msg(
        g, sb, f"B's re-fetch took {took:.1f} s while A's fetch hung (min_refetch 1s)")


def test_reload_adds_jwks_url_issuer(jwt_gateway_factory, jwks_server, jwks_cert_dir, upstream):
    """An issuer with a jwks_url added by a config reload is fetched and used."""
    from jwt_helpers import rewrite_config

    s = jwks_server()
    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"))
    iss1, iss2 = "https://first.jwks-url.test", "https://added.jwks-url.test"
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir, [issuer_cfg(iss1, s.url)])
    tok2 = mint(claims(iss2, sub="added"), RSA_A, "RS256", kid="a")
    assert_refused(get_tok(g, tok2), 401, "invalid_token")
    other = f"https://localhost:{s.port}{JWKS_PATH}"  # a second URL, same document
    rewrite_config(g, lambda c: c["jwt"]["issuers"].append(issuer_cfg(iss2, other)))
    r = wait_until(status_is(200, lambda: get_tok(g, tok2)), timeout=REFRESH_WAIT)
    assert r is not None, fail_msg(g, s, "issuer added by reload never accepted tokens")
    assert_forwarded_jwt(upstream.last(), "added", iss2, BOTH)
    r, body, st = jwks_status(g, other)
    assert r.status_code == 200 and st == "ok", body
    assert get_tok(g, mint(claims(iss1), RSA_A, "RS256", kid="a")).status_code == 200


def test_unknown_kid_during_inflight_fetch_is_not_forgotten(jwt_gateway_factory, jwks_server,
                                                            jwks_cert_dir, upstream):
    """A kid-d token arrives while a (slow) fetch that began before d was
    published is still in flight. That fetch brings the old document; the
    kid-d token's re-fetch request must still be honoured (after
    jwks_min_refetch), not cleared by the older fetch finishing - otherwise a
    retry after the re-fetch interval is still refused."""
    s = jwks_server()
    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"))
    iss = "https://inflight.jwks-url.test"
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir,
                     [issuer_cfg(iss, s.url, jwks_refresh="1h", jwks_min_refetch="1s")])
    time.sleep(1.3)
    s.set_mode("slow")
    n0 = len(s.fetches())
    # an unknown kid starts a slow fetch of the old document
    assert_refused(get_tok(g, mint(claims(iss), RSA_A, "RS256", kid="x")), 401, "invalid_token")
    assert s.wait_fetches(n0 + 1, timeout=3), fail_msg(g, s, "no re-fetch for an unknown kid")
    # while it is in flight, d is published and a kid-d token comes in
    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"), EC_D.jwk(kid="d", alg="ES256"))
    tok_d = mint(claims(iss, sub="via-d"), EC_D, "ES256", kid="d")
    assert_refused(get_tok(g, tok_d), 401, "invalid_token")
    # the old fetch ends at +1.5 s; the re-fetch for d is due 1 s later
    assert s.wait_fetches(n0 + 2, timeout=5), fail_msg(
        g, s, "no re-fetch for the kid-d token: its request was dropped when the "
              "older in-flight fetch finished")
    time.sleep(SLOW_DELAY + 0.7)
    upstream.clear()
    r = get_tok(g, tok_d)
    assert r.status_code == 200, fail_msg(g, s, f"kid-d retry after its re-fetch: {r.status_code} {r.text}")
    assert_forwarded_jwt(upstream.last(), "via-d", iss, BOTH)


def test_sigterm_does_not_wait_for_a_hung_fetch(jwt_gateway_factory, jwks_server, jwks_cert_dir):
    """A JWKS fetch in flight is no in-flight request: SIGTERM with the identity
    provider hanging exits promptly (well under the 5 s fetch timeout), code 0."""
    s = jwks_server()
    s.set_keys(RSA_A.jwk(kid="a", alg="RS256"))
    g = make_gateway(jwt_gateway_factory, jwks_cert_dir,
                     [issuer_cfg("https://sigterm.jwks-url.test", s.url, jwks_refresh="1s")])
    s.set_mode("hang")
    n = len(s.fetches())
    assert s.wait_fetches(n + 1, timeout=REFRESH_WAIT), "no refresh started"
    time.sleep(0.3)
    t0 = time.time()
    g.proc.terminate()
    try:
        code = g.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        code = None
    took = time.time() - t0
    assert code == 0, fail_msg(g, s, f"exit code {code} after SIGTERM ({took:.1f} s)")
    assert took < 3, fail_msg(g, s, f"SIGTERM took {took:.1f} s with a JWKS fetch hanging")
