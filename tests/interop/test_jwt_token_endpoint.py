"""The gateway's own token endpoint (`POST /auth/token`, RFC 6749 section
4.4 client credentials) driven by requests-oauthlib, the JWKS endpoint read
by PyJWT, and revocation of minted tokens by config changes without a
restart."""

import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from oauthlib.oauth2 import BackendApplicationClient
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from conftest import TIMEOUT, assert_refused, default_route, new_secret, sha256_hash
from jwt_helpers import (
    assert_forwarded_jwt,
    bearer,
    claims,
    decode_unverified,
    ec_key,
    ed_key,
    hs_secret,
    jwt_gateway_factory,  # noqa: F401  (fixture)
    key_by_id,
    mint,
    oauth_error,
    rewrite_config,
    wait_until,
    write_file,
)

TTL = 900  # 15m
K1, K1_SECRET = "K1", new_secret()
K2, K2_SECRET = "K2", new_secret()
K1_SCOPE = "models:read models:create models:delete"
K2_SCOPE = "models:read:/model/ABC-*"

KEYS = [
    {"id": K1, "owner": "alice", "secret": K1_SECRET,
     "grants": [{"namespace": "models", "actions": ["read", "create", "delete"]}]},
    {"id": K2, "owner": "bob", "secret": K2_SECRET,
     "grants": [{"namespace": "models", "actions": ["read"], "resources": ["/model/ABC-*"]}]},
]

THIRD_PARTY = "https://idp.third.test"
THIRD_SECRET = hs_secret(32)


def signing_key(kind):
    """(PEM or secret, JWS alg) generated now."""
    if kind == "hs256":
        return hs_secret(48), "HS256"
    if kind == "ed25519":
        return ed_key().private_pem, "EdDSA"
    k = ec_key("P-256")
    if kind == "es256":
        return k.private_pem, "ES256"
    # SEC1 "EC PRIVATE KEY", as `openssl ecparam -genkey` writes it
    return k.private.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption()).decode(), "ES256"


def start_gateway(factory, upstream_url, kind, issuer=None, revoked_file=False, keys=KEYS):
    key, alg = signing_key(kind)
    tokens = {"ttl": "15m", "signing_key": "${PCJWT_TOKEN_KEY}"}
    if issuer:
        tokens["issuer"] = issuer
    g = factory(
        env={"PCJWT_TOKEN_KEY": key, "PCJWT_THIRD": THIRD_SECRET},
        routes=[default_route(upstream_url)],
        keys=keys,
    )
    g.config["jwt"] = {
        "tokens": tokens,
        "issuers": [{"issuer": THIRD_PARTY, "hs_secret": "${PCJWT_THIRD}",
                     "algorithms": ["HS256"]}],
    }
    if revoked_file:
        write_file(g.dir / "revoked.txt", "# revoked jti values, one per line\n")
        g.config["jwt"]["revoked_jti"] = []
        g.config["jwt"]["revoked_jti_file"] = str(g.dir / "revoked.txt")
    g.start()
    g.alg = alg
    g.token_issuer = issuer or "portcullis"
    return g


SIGNERS = ["hs256", "ed25519", "es256", "es256-sec1"]


@pytest.fixture(scope="module", params=SIGNERS)
def gw(request, jwt_gateway_factory, upstream_server):
    issuer = "https://gw.portcullis.test" if request.param == "es256-sec1" else None
    return start_gateway(jwt_gateway_factory, upstream_server.url, request.param, issuer)


def token_url(g):
    return g.url("/auth/token")


def fetch(g, client_id=K1, secret=K1_SECRET, **kw):
    """requests-oauthlib's client-credentials flow with HTTP Basic."""
    s = OAuth2Session(client=BackendApplicationClient(client_id=client_id))
    tok = s.fetch_token(token_url(g), auth=HTTPBasicAuth(client_id, secret), verify=g.cert,
                        timeout=TIMEOUT, **kw)
    return s, tok


def post_token(g, data, auth=None, headers=None):
    return requests.post(token_url(g), data=data, auth=auth, headers=headers,
                         verify=g.cert, timeout=TIMEOUT)


def scope_text(tok):
    s = tok["scope"]
    return " ".join(s) if isinstance(s, list) else s


# ---------------------------------------------------------------- issuing

def test_fetch_token_with_requests_oauthlib(gw, upstream):
    session, tok = fetch(gw)
    assert tok["token_type"] == "Bearer"
    assert tok["expires_in"] == TTL
    assert scope_text(tok) == K1_SCOPE
    r = session.get(gw.url("/model/ABC-1"), verify=gw.cert, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert_forwarded_jwt(upstream.last(), "alice", gw.token_issuer,
                         {"models:read", "models:create", "models:delete"}, key_id=K1)
    r = session.delete(gw.url("/model/ABC-1"), verify=gw.cert, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert_refused(session.put(gw.url("/model/ABC-1"), verify=gw.cert, timeout=TIMEOUT),
                   403, "insufficient_grant")


def test_token_response_headers(gw):
    r = post_token(gw, {"grant_type": "client_credentials"}, auth=(K1, K1_SECRET))
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert "no-store" in r.headers.get("Cache-Control", "")
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}


def test_form_client_credentials(gw, upstream):
    s = OAuth2Session(client=BackendApplicationClient(client_id=K2))
    tok = s.fetch_token(token_url(gw), client_secret=K2_SECRET, include_client_id=True,
                        verify=gw.cert, timeout=TIMEOUT)
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == TTL
    assert scope_text(tok) == K2_SCOPE
    r = s.get(gw.url("/model/ABC-7"), verify=gw.cert, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert_forwarded_jwt(upstream.last(), "bob", gw.token_issuer, {"models:read"}, key_id=K2)
    assert_refused(s.get(gw.url("/model/XYZ-7"), verify=gw.cert, timeout=TIMEOUT),
                   403, "insufficient_grant")


def test_basic_and_form_credentials_together(gw):
    r = post_token(gw, {"grant_type": "client_credentials", "client_id": K1,
                        "client_secret": K1_SECRET}, auth=(K1, K1_SECRET))
    oauth_error(r, 400, "invalid_request")
    r = post_token(gw, {"grant_type": "client_credentials", "client_id": K1},
                   auth=(K1, K1_SECRET))
    oauth_error(r, 400, "invalid_request")


@pytest.mark.parametrize("who", ["wrong-secret", "unknown-id", "other-keys-secret", "form-wrong"])
def test_bad_client(gw, who):
    if who == "form-wrong":
        r = post_token(gw, {"grant_type": "client_credentials", "client_id": K1,
                            "client_secret": K1_SECRET + "x"})
    else:
        auth = {"wrong-secret": (K1, K1_SECRET[:-1]), "unknown-id": ("NOPE", K1_SECRET),
                "other-keys-secret": (K1, K2_SECRET)}[who]
        r = post_token(gw, {"grant_type": "client_credentials"}, auth=auth)
    oauth_error(r, 401, "invalid_client")
    assert r.headers.get("WWW-Authenticate", "").startswith("Basic"), r.headers
    assert K1_SECRET not in r.text


def test_no_client_credentials(gw):
    r = post_token(gw, {"grant_type": "client_credentials"})
    oauth_error(r, 401, "invalid_client")
    assert "WWW-Authenticate" in r.headers


def test_requests_oauthlib_wrong_secret_raises(gw):
    from oauthlib.oauth2.rfc6749.errors import InvalidClientError

    with pytest.raises(InvalidClientError):
        fetch(gw, secret="not-the-secret")


@pytest.mark.parametrize("grant", ["password", "authorization_code", "refresh_token",
                                   "CLIENT_CREDENTIALS", ""])
def test_unsupported_grant_type(gw, grant):
    r = post_token(gw, {"grant_type": grant, "username": "u", "password": "p"},
                   auth=(K1, K1_SECRET))
    if grant == "":
        assert r.status_code == 400, r.text
        assert r.json()["error"] in ("invalid_request", "unsupported_grant_type")
    else:
        oauth_error(r, 400, "unsupported_grant_type")


def test_missing_grant_type(gw):
    oauth_error(post_token(gw, {"scope": "models:read"}, auth=(K1, K1_SECRET)),
                400, "invalid_request")


def test_repeated_parameter_and_wrong_content_type(gw):
    r = post_token(gw, "grant_type=client_credentials&grant_type=client_credentials",
                   auth=(K1, K1_SECRET),
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    oauth_error(r, 400, "invalid_request")
    r = requests.post(token_url(gw), json={"grant_type": "client_credentials"},
                      auth=(K1, K1_SECRET), verify=gw.cert, timeout=TIMEOUT)
    oauth_error(r, 400, "invalid_request")
    r = requests.get(token_url(gw), auth=(K1, K1_SECRET), verify=gw.cert, timeout=TIMEOUT)
    assert r.status_code in (400, 405), r.text


# ---------------------------------------------------------------- scope

def test_scope_narrowing(gw, upstream):
    session, tok = fetch(gw, scope=["models:read"])
    assert scope_text(tok) == "models:read"
    assert decode_unverified(tok["access_token"])["scope"] == "models:read"
    r = session.get(gw.url("/model/ABC-1"), verify=gw.cert, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert_forwarded_jwt(upstream.last(), "alice", gw.token_issuer, {"models:read"}, key_id=K1)
    upstream.clear()
    r = session.post(gw.url("/model/ABC-1"), verify=gw.cert, timeout=TIMEOUT)
    assert_refused(r, 403, "insufficient_grant")
    assert not upstream.records


def test_scope_narrowing_to_a_resource(gw, upstream):
    session, tok = fetch(gw, scope=["models:read:/model/ABC-*"])
    assert scope_text(tok) == "models:read:/model/ABC-*"
    assert session.get(gw.url("/model/ABC-1"), verify=gw.cert, timeout=TIMEOUT).status_code == 200
    assert_refused(session.get(gw.url("/model/XYZ"), verify=gw.cert, timeout=TIMEOUT),
                   403, "insufficient_grant")


@pytest.mark.parametrize("scope", ["models:update", "models:read models:update", "models:*",
                                   "billing:read", "models:read:/model/XYZ-*"])
def test_scope_wider_than_granted(gw, scope):
    who = (K2, K2_SECRET) if scope == "models:read:/model/XYZ-*" else (K1, K1_SECRET)
    r = post_token(gw, {"grant_type": "client_credentials", "scope": scope}, auth=who)
    oauth_error(r, 400, "invalid_scope")


# ------------------------------------------------------- claims and JWKS

def test_token_claims(gw):
    _, tok = fetch(gw)
    _, tok2 = fetch(gw)
    c = decode_unverified(tok["access_token"])
    assert c["iss"] == gw.token_issuer
    assert c["sub"] == "alice"
    assert c["pc_key"] == K1
    assert c["scope"] == K1_SCOPE
    assert isinstance(c["iat"], int) and abs(c["iat"] - time.time()) < 30
    assert c["exp"] == c["iat"] + TTL
    assert isinstance(c["jti"], str) and len(c["jti"]) >= 16
    assert c["jti"] != decode_unverified(tok2["access_token"])["jti"]
    header = jwt.get_unverified_header(tok["access_token"])
    assert header["alg"] == gw.alg
    assert header.get("kid")


def test_jwks_verifies_minted_token(gw):
    r = gw.get("/.well-known/jwks.json")
    _, tok = fetch(gw)
    token = tok["access_token"]
    if gw.alg == "HS256":
        assert_refused(r, 404, "no_route")
        assert "keys" not in r.text
        return
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    keys = r.json()["keys"]
    assert len(keys) == 1
    jwk = keys[0]
    assert "d" not in jwk, "the JWKS must not publish the private key"
    assert jwk["kid"] == jwt.get_unverified_header(token)["kid"]
    assert jwk.get("alg") == gw.alg and jwk.get("use") == "sig"
    key = jwt.PyJWK(jwk)
    c = jwt.decode(token, key=key, algorithms=[gw.alg], issuer=gw.token_issuer,
                   options={"require": ["exp", "iat", "iss", "sub", "jti"]})
    assert c["pc_key"] == K1
    # and the key does not verify a tampered token
    h, p, s = token.split(".")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{h}.{p[:-2]}AA.{s}", key=key, algorithms=[gw.alg],
                   options={"verify_exp": False})


def test_gateway_token_is_not_accepted_by_other_gateway(gw, jwt_gateway_factory, upstream):
    # a token from this gateway means nothing to a gateway with another key
    _, tok = fetch(gw)
    kind = {"HS256": "hs256", "EdDSA": "ed25519", "ES256": "es256"}[gw.alg]
    other = start_gateway(jwt_gateway_factory, upstream.url, kind, issuer=gw.token_issuer)
    r = other.get("/model/ABC-1", headers=bearer(tok["access_token"]))
    assert_refused(r, 401, "invalid_token")


# ------------------------------------------------------------- revocation

@pytest.fixture(params=["hs256", "ed25519"])
def live(request, jwt_gateway_factory, upstream_server):
    """A fresh gateway per test (these tests rewrite its config)."""
    return start_gateway(jwt_gateway_factory, upstream_server.url, request.param,
                         revoked_file=True)


def _wait_status(g, token, status, method="GET", path="/model/ABC-1"):
    def probe():
        r = g.request(method, path, headers=bearer(token))
        return r if r.status_code == status else None
    return wait_until(probe)


def test_revoke_by_disabling_key(live, upstream):
    session, tok = fetch(live)
    assert session.get(live.url("/model/ABC-1"), verify=live.cert,
                       timeout=TIMEOUT).status_code == 200
    pid = live.proc.pid
    rewrite_config(live, lambda c: key_by_id(c, K1).update(disabled=True))
    r = _wait_status(live, tok["access_token"], 401)
    assert r is not None, "token still accepted 10 s after its key was disabled"
    assert_refused(r, 401, "key_disabled")
    assert live.proc.pid == pid
    # a disabled key cannot fetch a new token either
    oauth_error(post_token(live, {"grant_type": "client_credentials"}, auth=(K1, K1_SECRET)),
                401, "invalid_client")
    # K2's tokens are unaffected
    _, tok2 = fetch(live, K2, K2_SECRET)
    assert live.get("/model/ABC-1", headers=bearer(tok2["access_token"])).status_code == 200
    # re-enabling brings the old token back (it is still authentic and unexpired)
    rewrite_config(live, lambda c: key_by_id(c, K1).update(disabled=False))
    assert _wait_status(live, tok["access_token"], 200) is not None


def test_revoke_by_removing_key(live, upstream):
    _, tok = fetch(live)
    assert live.get("/model/ABC-1", headers=bearer(tok["access_token"])).status_code == 200
    rewrite_config(live, lambda c: c.update(keys=[k for k in c["keys"] if k["id"] != K1]))
    r = _wait_status(live, tok["access_token"], 401)
    assert r is not None, "token still accepted 10 s after its key was removed"
    assert_refused(r, 401, "invalid_token")


def test_revoke_by_key_expiry(live, upstream):
    _, tok = fetch(live)
    assert live.get("/model/ABC-1", headers=bearer(tok["access_token"])).status_code == 200
    rewrite_config(live, lambda c: key_by_id(c, K1).update(expires_at="2020-01-01T00:00:00Z"))
    r = _wait_status(live, tok["access_token"], 401)
    assert r is not None, "token still accepted 10 s after its key expired"
    assert_refused(r, 401, "key_expired")


def test_narrowed_grants_cap_existing_token(live, upstream):
    _, tok = fetch(live)
    t = tok["access_token"]
    assert live.post("/model/ABC-1", headers=bearer(t)).status_code == 200
    assert live.request("DELETE", "/model/ABC-1", headers=bearer(t)).status_code == 200
    rewrite_config(live, lambda c: key_by_id(c, K1).update(
        grants=[{"namespace": "models", "actions": ["read", "create"]}]))
    r = _wait_status(live, t, 403, method="DELETE")
    assert r is not None, "token still allowed DELETE 10 s after the key lost it"
    assert_refused(r, 403, "insufficient_grant")
    upstream.clear()
    r = live.post("/model/ABC-1", headers=bearer(t))
    assert r.status_code == 200, r.text
    # the upstream is told only what both the token and the key hold now
    assert_forwarded_jwt(upstream.last(), "alice", live.token_issuer,
                         {"models:read", "models:create"}, key_id=K1)
    # a new token carries only the narrowed scope; the wider one is refused
    oauth_error(post_token(live, {"grant_type": "client_credentials",
                                  "scope": "models:delete"}, auth=(K1, K1_SECRET)),
                400, "invalid_scope")
    _, tok2 = fetch(live)
    assert scope_text(tok2) == "models:read models:create"


def test_widened_grants_do_not_widen_existing_token(live, upstream):
    _, tok = fetch(live, scope=["models:read"])
    t = tok["access_token"]
    rewrite_config(live, lambda c: key_by_id(c, K1).update(
        grants=[{"namespace": "models", "actions": ["*"]}]))
    time.sleep(2.5)  # past the reload
    assert_refused(live.post("/model/ABC-1", headers=bearer(t)), 403, "insufficient_grant")
    assert live.get("/model/ABC-1", headers=bearer(t)).status_code == 200


def test_unrelated_reload_keeps_tokens_valid(live, upstream):
    _, tok = fetch(live)
    k3 = new_secret()
    rewrite_config(live, lambda c: c["keys"].append(
        {"id": "K3", "owner": "carol", "secret_hash": sha256_hash(k3),
         "grants": [{"namespace": "models", "actions": ["read"]}]}))
    # the reload happened once K3 can get a token
    r = wait_until(lambda: (lambda r: r if r.status_code == 200 else None)(
        post_token(live, {"grant_type": "client_credentials"}, auth=("K3", k3))))
    assert r is not None, "K3 was not loaded within 10 s"
    r = live.get("/model/ABC-1", headers=bearer(tok["access_token"]))
    assert r.status_code == 200, r.text


def test_revoked_jti_in_config(live, upstream):
    third = mint(claims(THIRD_PARTY, sub="zed"), THIRD_SECRET, "HS256")
    other = mint(claims(THIRD_PARTY, sub="zed"), THIRD_SECRET, "HS256")
    _, own = fetch(live)
    for t in (third, other, own["access_token"]):
        assert live.get("/model/ABC-1", headers=bearer(t)).status_code == 200
    jtis = [decode_unverified(third)["jti"], decode_unverified(own["access_token"])["jti"]]
    rewrite_config(live, lambda c: c["jwt"].update(revoked_jti=jtis))
    r = _wait_status(live, third, 401)
    assert r is not None, "third-party token still accepted 10 s after its jti was revoked"
    assert_refused(r, 401, "invalid_token")
    assert_refused(live.get("/model/ABC-1", headers=bearer(own["access_token"])),
                   401, "invalid_token")
    assert live.get("/model/ABC-1", headers=bearer(other)).status_code == 200


def test_revoked_jti_file(live, upstream):
    third = mint(claims(THIRD_PARTY, sub="zed"), THIRD_SECRET, "HS256")
    other = mint(claims(THIRD_PARTY, sub="zed"), THIRD_SECRET, "HS256")
    for t in (third, other):
        assert live.get("/model/ABC-1", headers=bearer(t)).status_code == 200
    write_file(live.dir / "revoked.txt",
               f"# revoked ids\n\n  {decode_unverified(third)['jti']}  \n")
    r = _wait_status(live, third, 401)
    assert r is not None, "token still accepted 10 s after its jti entered revoked_jti_file"
    assert_refused(r, 401, "invalid_token")
    assert live.get("/model/ABC-1", headers=bearer(other)).status_code == 200
    # un-revoking works the same way
    write_file(live.dir / "revoked.txt", "# nothing revoked\n")
    assert _wait_status(live, third, 200) is not None


def test_logs_carry_no_token_or_secret(gw, upstream):
    session, tok = fetch(gw)
    assert session.get(gw.url("/model/ABC-1"), verify=gw.cert, timeout=TIMEOUT).status_code == 200
    oauth_error(post_token(gw, {"grant_type": "client_credentials"}, auth=(K1, K1_SECRET + "x")),
                401, "invalid_client")
    time.sleep(1.0)  # log lines are written in batches, within ~200 ms
    log = gw.stderr() + (gw.stdout_path.read_text(errors="replace")
                         if gw.stdout_path.exists() else "")
    assert log, "the gateway wrote no log at all"
    _, p, s = tok["access_token"].split(".")
    assert p not in log and s not in log
    for secret in (K1_SECRET, K2_SECRET, gw.env["PCJWT_TOKEN_KEY"].strip()):
        assert secret not in log
    if "BEGIN" in gw.env["PCJWT_TOKEN_KEY"]:
        body = "".join(gw.env["PCJWT_TOKEN_KEY"].strip().splitlines()[1:-1])
        assert body[:40] not in log.replace("\n", "")
