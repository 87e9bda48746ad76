"""Findings of the JWT security review, pinned through the gateway: scope
syntax and size limits at the token endpoint and in tokens, the grants
header for `ns:*` tokens, and issuer names configured twice."""
import json
import os
import subprocess

import pytest
import requests
from requests.auth import HTTPBasicAuth

from conftest import BIN, TIMEOUT, assert_refused, default_route
from jwt_helpers import (bearer, claims, decode_unverified, hs_secret, hs_signer, hand_token,
                         jwt_gateway_factory,  # noqa: F401  (fixture)
                         oauth_error)

K1, K1_SECRET = "K-review", "review-secret-0123456789abcdefghij"
KW, KW_SECRET = "K-wild", "wild-secret-0123456789abcdefghijklm"
IDP = "https://idp.review.test"
IDP_SECRET = hs_secret(32)


@pytest.fixture(scope="module")
def gw(jwt_gateway_factory, upstream_server):
    g = jwt_gateway_factory(
        env={"PCREV_TOKEN_KEY": hs_secret(48), "PCREV_IDP": IDP_SECRET},
        routes=[default_route(upstream_server.url)],
        keys=[{"id": K1, "owner": "alice", "secret": K1_SECRET,
               "grants": [{"namespace": "models", "actions": ["read", "create"]}]},
              {"id": KW, "owner": "wendy", "secret": KW_SECRET,
               "grants": [{"namespace": "models", "actions": ["*"]}]}],
    )
    g.config["jwt"] = {
        "tokens": {"ttl": "15m", "signing_key": "${PCREV_TOKEN_KEY}"},
        "issuers": [{"issuer": IDP, "hs_secret": "${PCREV_IDP}", "algorithms": ["HS256"],
                     "audiences": ["review"]}],
    }
    g.start()
    return g


def token(g, scope, key=(K1, K1_SECRET)):
    return requests.post(g.url("/auth/token"), data={"grant_type": "client_credentials", "scope": scope},
                         auth=HTTPBasicAuth(*key), verify=g.cert, timeout=TIMEOUT)


def test_scope_with_a_tab_is_invalid(gw):
    # Checked one way and minted another before: a tab passed the check as
    # part of one item and became a separator in the token.
    # The key holds models:*, so `models:x` alone is covered.
    oauth_error(token(gw, "models:x\tadmin:*", key=(KW, KW_SECRET)), 400, "invalid_scope")
    assert token(gw, "models:x", key=(KW, KW_SECRET)).status_code == 200


def test_scope_items_are_deduplicated(gw):
    r = token(gw, "models:read models:read models:read")
    assert r.status_code == 200, r.text
    assert decode_unverified(r.json()["access_token"])["scope"] == "models:read"


def test_too_many_scope_items_are_refused(gw):
    many = " ".join(f"models:read:/model/{i}" for i in range(65))
    oauth_error(token(gw, many), 400, "invalid_scope")


def test_token_with_too_many_scope_items_is_refused(gw, upstream):
    import time
    payload = claims(IDP, aud="review", scope=" ".join(f"models:read:/m/{i}" for i in range(65)))
    payload["exp"] = int(time.time()) + 300
    tok = hand_token({"alg": "HS256", "typ": "JWT"}, payload, signer=hs_signer(IDP_SECRET))
    n = len(upstream.records)
    r = requests.get(gw.url("/model/ABC-1"), headers=bearer(tok), verify=gw.cert, timeout=TIMEOUT)
    assert_refused(r, 401, "invalid_token")
    assert len(upstream.records) == n


def test_gateway_token_grants_header_is_the_intersection(gw, upstream):
    r = token(gw, "models:read models:create")
    assert r.status_code == 200, r.text
    r2 = requests.get(gw.url("/model/ABC-1"), headers=bearer(r.json()["access_token"]),
                      verify=gw.cert, timeout=TIMEOUT)
    assert r2.status_code == 200, r2.text
    got = upstream.records[-1].header("x-auth-grants")
    assert set(got.split()) == {"models:read", "models:create"}, got


def test_issuer_named_like_the_gateways_own_is_a_config_error(tmp_path):
    cert_dir = tmp_path / "certs"
    subprocess.run([BIN, "gen-cert", "--out", str(cert_dir)], check=True, capture_output=True, timeout=30)
    cfg = {
        "listen": {"https": "127.0.0.1:1", "tls": {"cert": str(cert_dir / "gateway.crt"),
                                                  "key": str(cert_dir / "gateway.key")}},
        "jwt": {
            "tokens": {"signing_key": "${PCREV_K}"},
            "issuers": [{"issuer": "portcullis", "algorithms": ["RS256"],
                         "jwks_url": "https://idp.review.test/jwks.json", "audiences": ["x"]}],
        },
    }
    path = tmp_path / "g.yaml"
    path.write_text(json.dumps(cfg))
    out = subprocess.run([BIN, "check", "-c", str(path)], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PCREV_K": hs_secret(48)})
    assert out.returncode == 1, out
    assert "jwt.issuers[0].issuer" in out.stderr, out.stderr
