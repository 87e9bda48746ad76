"""Secrets, signatures and raw credentials never show up in the gateway's
log or in any answer, whatever the request was (good, wrong secret,
tampered signature, replay, malformed, refused PLAINTEXT)."""

import base64
import time
import urllib.parse

import pytest
import requests
from oauthlib.oauth1 import (
    SIGNATURE_HMAC_SHA1,
    SIGNATURE_HMAC_SHA256,
    SIGNATURE_PLAINTEXT,
    SIGNATURE_TYPE_AUTH_HEADER,
    SIGNATURE_TYPE_BODY,
    SIGNATURE_TYPE_QUERY,
)
from requests_oauthlib import OAuth1

from conftest import TIMEOUT, new_secret, oauth_header

K1, S1 = "K1", new_secret()
KP, SP = "KP", new_secret()  # PLAINTEXT allowed: its signature *is* the secret
KD, SD = "KD", new_secret()  # disabled
WRONG = [new_secret(), S1[:-1], S1 + "x"]


def _sig_of(text):
    """oauth_signature values in a header, URL or body (encoded and decoded)."""
    out = []
    for sep in ('oauth_signature="', "oauth_signature="):
        for piece in text.split(sep)[1:]:
            raw = piece.split('"')[0] if sep.endswith('"') else piece.split("&")[0]
            out += [raw, urllib.parse.unquote(raw), urllib.parse.unquote_plus(raw)]
    return out


class Collector:
    """Sends requests and remembers every sensitive string it sent."""

    def __init__(self, gw):
        self.gw = gw
        self.sensitive = set(s for s in [S1, SP, SD, *WRONG])
        self.responses = []

    def remember_request(self, req):
        auth = req.headers.get("Authorization")
        if auth:
            auth = auth.decode() if isinstance(auth, bytes) else auth
            self.sensitive.add(auth)
            if auth.startswith("Basic "):
                self.sensitive.add(auth[6:])
            self.sensitive.update(_sig_of(auth))
        key = req.headers.get("X-Api-Key")
        if key:
            self.sensitive.add(key)
        self.sensitive.update(_sig_of(req.url))
        if req.body:
            body = req.body.decode() if isinstance(req.body, bytes) else str(req.body)
            self.sensitive.update(_sig_of(body))

    def send(self, method, path, **kw):
        try:
            r = self.gw.request(method, path, **kw)
        except requests.RequestException:
            return None
        self.remember_request(r.request)
        self.responses.append(r)
        return r

    def send_prepared(self, prepared):
        self.remember_request(prepared)
        r = self.gw.session.send(prepared, timeout=TIMEOUT, verify=self.gw.cert)
        self.gw.bodies.append(r.content)
        self.responses.append(r)
        return r


def oauth(key, secret, method=SIGNATURE_HMAC_SHA1, sig_type=SIGNATURE_TYPE_AUTH_HEADER):
    return OAuth1(key, client_secret=secret, signature_method=method, signature_type=sig_type)


def batch(gw):
    c = Collector(gw)
    # API keys: good and bad, every way they can be sent
    c.send("GET", f"https://{K1}:{S1}@localhost:{gw.port}/model/ABC-1")
    c.send("GET", "/model/ABC-1", auth=(K1, S1))
    c.send("GET", "/model/ABC-1", headers={"X-Api-Key": S1})
    for w in WRONG:
        c.send("GET", f"https://{K1}:{w}@localhost:{gw.port}/model/ABC-1")
        c.send("GET", "/model/ABC-1", headers={"X-Api-Key": w})
        c.send("GET", "/model/ABC-1", auth=(KD, w))
    c.send("GET", "/model/ABC-1", auth=(KD, SD))  # disabled
    c.send("GET", "/model/ABC-1", headers={"Authorization": "Basic " + base64.b64encode(
        f"{K1}:{S1}:extra".encode()).decode()})
    # OAuth 1.0: every signature type and method, good and bad secrets
    for sig_type in (SIGNATURE_TYPE_AUTH_HEADER, SIGNATURE_TYPE_QUERY):
        for method in (SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256):
            for secret in [S1, *WRONG]:
                c.send("GET", "/model/ABC-1?a=1", auth=oauth(K1, secret, method, sig_type))
    for secret in [S1, *WRONG]:
        c.send("POST", "/model/ABC-1", data={"f": "1"}, auth=oauth(K1, secret, sig_type=SIGNATURE_TYPE_BODY))
        c.send("POST", "/model/ABC-1", data={"f": "1"}, auth=oauth(K1, secret))
    # PLAINTEXT: refused for K1 (its signature is K1's secret), allowed for KP
    c.send("GET", "/model/ABC-1", auth=oauth(K1, S1, SIGNATURE_PLAINTEXT))
    c.send("GET", "/model/ABC-1?x=1", auth=oauth(K1, S1, SIGNATURE_PLAINTEXT, SIGNATURE_TYPE_QUERY))
    c.send("GET", "/model/ABC-1", auth=oauth(KP, SP, SIGNATURE_PLAINTEXT))
    c.send("GET", "/model/ABC-1", auth=oauth(KP, WRONG[0], SIGNATURE_PLAINTEXT))
    c.send("GET", "/model/ABC-1", auth=oauth(KD, SD))  # disabled, good signature
    # tampered signatures
    for i in range(3):
        h = oauth_header("GET", gw.url("/model/ABC-1"), K1, S1)
        sig = h.split('oauth_signature="')[1].split('"')[0]
        c.sensitive.update([sig, urllib.parse.unquote(sig)])
        forged = h.replace(sig, sig[::-1])
        c.send("GET", "/model/ABC-1", headers={"Authorization": forged})
    # replay of a good request
    p = requests.Request("GET", gw.url("/model/ABC-1?r=1"), auth=oauth(K1, S1)).prepare()
    c.send_prepared(p)
    c.send_prepared(p)
    # malformed headers carrying the secret
    c.send("GET", "/model/ABC-1", headers={"Authorization": f"OAuth garbage {S1}"})
    c.send("GET", "/model/ABC-1", headers={"Authorization": f'OAuth oauth_signature="{S1}'})
    c.send("GET", "/model/ABC-1", headers={"Authorization": f"Bearer {S1}"})
    c.send("GET", "/model/ABC-1", headers={"Authorization": f"Digest {S1}"})
    # a secret in the query is never a credential, and is not logged either
    c.send("GET", f"/model/ABC-1?api_key={S1}")
    # two credentials at once
    c.send("GET", "/model/ABC-1", auth=(K1, S1), headers={"X-Api-Key": S1})
    return c


@pytest.fixture(scope="module", params=["info", "debug"])
def leaky(request, gateway_factory):
    gw = gateway_factory(
        keys=[
            {"id": K1, "owner": "alice", "secret": S1},
            {"id": KP, "owner": "pat", "secret": SP, "allow_plaintext": True},
            {"id": KD, "owner": "dora", "secret": SD, "disabled": True},
        ],
        log_level=request.param,
    )
    c = batch(gw)
    time.sleep(1.0)  # log lines are written in batches, within ~200 ms
    return gw, c


def test_batch_did_what_it_should(leaky):
    gw, c = leaky
    codes = [r.status_code for r in c.responses]
    assert codes.count(200) >= 8, codes
    assert any(s == 401 for s in codes) and any(s == 400 for s in codes), codes
    errors = {r.json()["error"] for r in c.responses if r.status_code != 200}
    assert {"invalid_credentials", "invalid_signature", "nonce_replayed",
            "unsupported_signature_method", "malformed_credentials", "key_disabled"} <= errors, errors


def test_log_is_there(leaky):
    gw, c = leaky
    log = gw.stderr()
    ids = [r.headers.get("X-Request-Id") for r in c.responses]
    # the access log names the requests: a check on an empty log proves nothing
    assert sum(1 for i in ids if i and i in log) >= len(ids) // 2, log[-2000:]


def _leaks(text, sensitive):
    return sorted(s for s in sensitive if len(s) >= 8 and s in text)


def test_no_secret_in_log(leaky):
    gw, c = leaky
    leaks = _leaks(gw.stderr(), c.sensitive)
    assert leaks == [], f"found in the gateway log: {leaks}"


def test_no_secret_in_response_bodies(leaky):
    gw, c = leaky
    for body in gw.bodies:
        text = body.decode("utf-8", "replace")
        leaks = _leaks(text, c.sensitive)
        assert leaks == [], f"found in a response body {text!r}: {leaks}"


def test_no_secret_in_response_headers(leaky):
    gw, c = leaky
    for r in c.responses:
        text = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        leaks = _leaks(text, c.sensitive)
        assert leaks == [], f"found in response headers: {leaks}"
