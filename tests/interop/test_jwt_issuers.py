"""Third-party JWTs minted with PyJWT, one issuer per key family, verified
by the real gateway over TLS: HS256/384/512, RS256/384/512, PS256, ES256,
ES384, EdDSA; keys from hs_secret, public_key_pem (file path and inline
PEM through ${ENV}) and jwks_file; scope as a string and as an array, aud as
a string and as an array, subject_claim/scope_claim overrides, and key
rotation by rewriting the JWKS file."""

import pytest

from conftest import assert_refused, default_route
from jwt_helpers import (
    assert_forwarded_jwt,
    bearer,
    claims,
    ec_key,
    ed_key,
    hs_secret,
    jwks_text,
    jwt_gateway_factory,  # noqa: F401  (fixture)
    mint,
    rsa_key,
    wait_until,
    write_file,
)

HS = "https://hs.idp.test"
RSA_PEM = "https://rsa-pem.idp.test"
RSA_JWKS = "https://rsa-jwks.idp.test"
EC256 = "https://ec256.idp.test"
EC384 = "https://ec384.idp.test"
ED = "https://ed.idp.test"
AUD = "https://aud.idp.test"
CUSTOM = "https://custom.idp.test"

HS_SECRET = hs_secret(64)  # long enough for HS512
AUD_SECRET = hs_secret(32)
CUSTOM_SECRET = hs_secret(32)

RSA = rsa_key()
EC_P256 = ec_key("P-256")
EC_P384 = ec_key("P-384")
ED25519 = ed_key()

BOTH = {"models:read", "models:create"}


@pytest.fixture(scope="module")
def gw(jwt_gateway_factory, upstream_server):
    env = {
        "PCJWT_HS": HS_SECRET,
        "PCJWT_AUD": AUD_SECRET,
        "PCJWT_CUSTOM": CUSTOM_SECRET,
        # a multi-line PEM through an environment variable
        "PCJWT_EC256_PEM": EC_P256.public_pem,
    }
    g = jwt_gateway_factory(
        env=env,
        routes=[default_route(upstream_server.url),
                default_route(upstream_server.url, name="ns", match={"path_prefix": "/ns"},
                              namespace="ns")],
    )
    write_file(g.dir / "rsa.pem", RSA.public_pem)
    write_file(g.dir / "ed.pem", ED25519.public_pem)
    write_file(g.dir / "rsa-jwks.json", jwks_text(RSA.jwk(kid="rsa-1")))
    write_file(g.dir / "ec384-jwks.json", jwks_text(EC_P384.jwk(kid="ec384-1", alg="ES384")))
    g.config["jwt"] = {
        "issuers": [
            {"issuer": HS, "hs_secret": "${PCJWT_HS}", "algorithms": ["HS256", "HS384", "HS512"]},
            {"issuer": RSA_PEM, "public_key_pem": str(g.dir / "rsa.pem"),
             "algorithms": ["RS256", "RS384", "RS512", "PS256"]},
            {"issuer": RSA_JWKS, "jwks_file": str(g.dir / "rsa-jwks.json"),
             "algorithms": ["RS256", "RS384", "RS512", "PS256"]},
            {"issuer": EC256, "public_key_pem": "${PCJWT_EC256_PEM}", "algorithms": ["ES256"]},
            {"issuer": EC384, "jwks_file": str(g.dir / "ec384-jwks.json"), "algorithms": ["ES384"]},
            {"issuer": ED, "public_key_pem": str(g.dir / "ed.pem"), "algorithms": ["EdDSA"]},
            {"issuer": AUD, "hs_secret": "${PCJWT_AUD}", "algorithms": ["HS256"],
             "audiences": ["stlwarehouse", "backoffice"]},
            {"issuer": CUSTOM, "hs_secret": "${PCJWT_CUSTOM}", "algorithms": ["HS256"],
             "subject_claim": "email", "scope_claim": "scp"},
        ],
    }
    return g.start()


def ok(gw, upstream, token, subject, issuer, grants=BOTH, path="/model/ABC-1", method="GET"):
    r = gw.request(method, path, headers=bearer(token))
    assert r.status_code == 200, (r.status_code, r.text)
    assert_forwarded_jwt(upstream.last(), subject, issuer, grants)
    return r


# ----------------------------------------------------------- every family

@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac(gw, upstream, alg):
    ok(gw, upstream, mint(claims(HS, sub="hs-user"), HS_SECRET, alg), "hs-user", HS)


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256"])
def test_rsa_public_key_pem_file(gw, upstream, alg):
    ok(gw, upstream, mint(claims(RSA_PEM, sub="rsa-user"), RSA, alg), "rsa-user", RSA_PEM)


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256"])
def test_rsa_jwks_file_with_kid(gw, upstream, alg):
    token = mint(claims(RSA_JWKS, sub="jwks-user"), RSA, alg, kid="rsa-1")
    ok(gw, upstream, token, "jwks-user", RSA_JWKS)


def test_rsa_jwks_wrong_kid_refused(gw, upstream):
    token = mint(claims(RSA_JWKS), RSA, "RS256", kid="rsa-2")
    assert_refused(gw.get("/model/ABC-1", headers=bearer(token)), 401, "invalid_token")
    assert not upstream.records


def test_es256_inline_pem_from_env(gw, upstream):
    ok(gw, upstream, mint(claims(EC256, sub="ec-user"), EC_P256, "ES256"), "ec-user", EC256)


def test_es384_jwks(gw, upstream):
    token = mint(claims(EC384, sub="ec384-user"), EC_P384, "ES384", kid="ec384-1")
    ok(gw, upstream, token, "ec384-user", EC384)


def test_eddsa(gw, upstream):
    ok(gw, upstream, mint(claims(ED, sub="ed-user"), ED25519, "EdDSA"), "ed-user", ED)


def test_alg_not_in_issuers_list_refused(gw, upstream):
    # PS384 is a valid signature by the configured RSA key, but not in the
    # issuer's algorithm list
    token = mint(claims(RSA_PEM), RSA, "PS384")
    assert_refused(gw.get("/model/ABC-1", headers=bearer(token)), 401, "invalid_token")
    # an ES256 token claiming the EdDSA-only issuer
    token = mint(claims(ED), EC_P256, "ES256")
    assert_refused(gw.get("/model/ABC-1", headers=bearer(token)), 401, "invalid_token")
    assert not upstream.records


# ------------------------------------------------------------------ scope

def test_scope_string(gw, upstream):
    token = mint(claims(HS, scope="models:read models:create"), HS_SECRET, "HS256")
    ok(gw, upstream, token, "alice", HS)
    ok(gw, upstream, token, "alice", HS, method="POST")
    assert_refused(gw.request("DELETE", "/model/ABC-1", headers=bearer(token)),
                   403, "insufficient_grant")


def test_scope_array(gw, upstream):
    token = mint(claims(HS, scope=["models:read", "models:create"]), HS_SECRET, "HS256")
    ok(gw, upstream, token, "alice", HS)
    ok(gw, upstream, token, "alice", HS, method="POST")
    assert_refused(gw.request("PUT", "/model/ABC-1", headers=bearer(token)),
                   403, "insufficient_grant")


def test_scope_with_resource_glob(gw, upstream):
    token = mint(claims(HS, scope="models:read:/model/ABC-* ns:create:/ns/items/*"),
                 HS_SECRET, "HS256")
    ok(gw, upstream, token, "alice", HS, grants={"models:read"})
    assert_refused(gw.get("/model/XYZ-1", headers=bearer(token)), 403, "insufficient_grant")
    ok(gw, upstream, token, "alice", HS, path="/ns/items/7", method="POST", grants={"ns:create"})
    assert_refused(gw.post("/ns/other/7", headers=bearer(token)), 403, "insufficient_grant")
    assert_refused(gw.get("/ns/items/7", headers=bearer(token)), 403, "insufficient_grant")


def test_scope_array_with_resource_glob(gw, upstream):
    token = mint(claims(HS, scope=["models:read:/model/ABC-*", "openid", "models:delete"]),
                 HS_SECRET, "HS256")
    r = gw.get("/model/ABC-9", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert_forwarded_jwt(upstream.last(), "alice", HS, {"models:read", "models:delete"})
    assert_refused(gw.get("/model/Q", headers=bearer(token)), 403, "insufficient_grant")


def test_no_scope_grants_nothing(gw, upstream):
    token = mint(claims(HS, scope=None), HS_SECRET, "HS256")
    assert_refused(gw.get("/model/ABC-1", headers=bearer(token)), 403, "insufficient_grant")
    assert not upstream.records


# --------------------------------------------------------------- audience

@pytest.mark.parametrize("aud", ["stlwarehouse", ["other", "backoffice"], ["stlwarehouse"]])
def test_audience_accepted(gw, upstream, aud):
    ok(gw, upstream, mint(claims(AUD, aud=aud), AUD_SECRET, "HS256"), "alice", AUD)


@pytest.mark.parametrize("aud", ["other", ["x", "y"], [], None])
def test_audience_refused(gw, upstream, aud):
    token = mint(claims(AUD, aud=aud), AUD_SECRET, "HS256")
    assert_refused(gw.get("/model/ABC-1", headers=bearer(token)), 401, "invalid_token")
    assert not upstream.records


# ------------------------------------------------- subject/scope claim names

def test_subject_and_scope_claim_override(gw, upstream):
    payload = claims(CUSTOM, sub="ignored-sub", scope=None, email="carol@example.com",
                     scp=["models:read"])
    token = mint(payload, CUSTOM_SECRET, "HS256")
    ok(gw, upstream, token, "carol@example.com", CUSTOM, grants={"models:read"})
    # `scope` is not this issuer's scope claim: it grants nothing
    token = mint(claims(CUSTOM, email="carol@example.com", scope="models:read"),
                 CUSTOM_SECRET, "HS256")
    assert_refused(gw.get("/model/ABC-1", headers=bearer(token)), 403, "insufficient_grant")
    # without the subject claim the token is refused
    token = mint(claims(CUSTOM, sub="x", scp="models:read"), CUSTOM_SECRET, "HS256")
    assert_refused(gw.get("/model/ABC-1", headers=bearer(token)), 401, "invalid_token")


# -------------------------------------------------- what the upstream sees

def test_incoming_x_auth_headers_are_replaced(gw, upstream):
    token = mint(claims(ED, sub="ed-user"), ED25519, "EdDSA")
    r = gw.get("/model/ABC-1", headers={**bearer(token), "X-Auth-Subject": "root",
                                         "X-Auth-Issuer": "evil", "X-Auth-Key-Id": "K"})
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.header_all("X-Auth-Subject") == ["ed-user"]
    assert rec.header_all("X-Auth-Issuer") == [ED]
    assert not rec.has_header("X-Auth-Key-Id")


def test_unknown_issuer_refused(gw, upstream):
    token = mint(claims("https://nobody.test"), HS_SECRET, "HS256")
    r = gw.get("/model/ABC-1", headers=bearer(token))
    assert_refused(r, 401, "invalid_token")
    assert "Bearer" in r.headers.get("WWW-Authenticate", ""), r.headers
    assert not upstream.records


# ----------------------------------------------------------- key rotation

def test_key_rotation_via_jwks_file(jwt_gateway_factory, upstream):
    a, b = rsa_key(), ec_key("P-256")
    iss = "https://rotating.idp.test"
    g = jwt_gateway_factory()
    jwks = g.dir / "jwks.json"
    write_file(jwks, jwks_text(a.jwk(kid="a", alg="RS256"), b.jwk(kid="b", alg="ES256")))
    g.config["jwt"] = {"issuers": [{"issuer": iss, "jwks_file": str(jwks),
                                    "algorithms": ["RS256", "ES256"]}]}
    g.start()
    tok_a = mint(claims(iss, sub="via-a"), a, "RS256", kid="a")
    tok_b = mint(claims(iss, sub="via-b"), b, "ES256", kid="b")
    for tok, sub in ((tok_a, "via-a"), (tok_b, "via-b")):
        r = g.get("/model/ABC-1", headers=bearer(tok))
        assert r.status_code == 200, r.text
        assert_forwarded_jwt(upstream.last(), sub, iss, BOTH)
    # a token signed by key b but claiming kid a is refused
    forged = mint(claims(iss), b, "ES256", kid="a")
    assert_refused(g.get("/model/ABC-1", headers=bearer(forged)), 401, "invalid_token")

    # drop key a: the gateway reloads the file without a restart
    pid = g.proc.pid
    write_file(jwks, jwks_text(b.jwk(kid="b", alg="ES256")))
    r = wait_until(lambda: (lambda r: r if r.status_code == 401 else None)(
        g.get("/model/ABC-1", headers=bearer(tok_a))))
    assert r is not None, "kid-a token still accepted 10 s after key a left the JWKS file"
    assert_refused(r, 401, "invalid_token")
    assert g.proc.pid == pid and g.alive()
    # the same token, a fresh one for kid a, and one without a kid
    assert_refused(g.get("/model/ABC-1", headers=bearer(tok_a)), 401, "invalid_token")
    fresh_a = mint(claims(iss), a, "RS256", kid="a")
    assert_refused(g.get("/model/ABC-1", headers=bearer(fresh_a)), 401, "invalid_token")
    upstream.clear()
    r = g.get("/model/ABC-1", headers=bearer(tok_b))
    assert r.status_code == 200, r.text
    assert_forwarded_jwt(upstream.last(), "via-b", iss, BOTH)


def test_public_key_pem_file_rotation(jwt_gateway_factory, upstream):
    """A public_key_pem given as a file path is a file the configuration was
    read from: replacing it must reload like a jwks_file does."""
    old, new = rsa_key(), rsa_key()
    iss = "https://pem-rotating.idp.test"
    g = jwt_gateway_factory()
    pem = g.dir / "idp.pem"
    write_file(pem, old.public_pem)
    g.config["jwt"] = {"issuers": [{"issuer": iss, "public_key_pem": str(pem),
                                    "algorithms": ["RS256"]}]}
    g.start()
    tok_old = mint(claims(iss, sub="old"), old, "RS256")
    tok_new = mint(claims(iss, sub="new"), new, "RS256")
    assert g.get("/model/ABC-1", headers=bearer(tok_old)).status_code == 200
    assert_refused(g.get("/model/ABC-1", headers=bearer(tok_new)), 401, "invalid_token")
    write_file(pem, new.public_pem)
    r = wait_until(lambda: (lambda r: r if r.status_code == 200 else None)(
        g.get("/model/ABC-1", headers=bearer(tok_new))))
    assert r is not None, "token signed by the new key still refused 10 s after the PEM file changed"
    assert_refused(g.get("/model/ABC-1", headers=bearer(tok_old)), 401, "invalid_token")


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer  "])
def test_bearer_scheme_spelling(gw, upstream, scheme):
    # RFC 7235: the auth-scheme is case-insensitive
    token = mint(claims(ED, sub="ed-user"), ED25519, "EdDSA")
    r = gw.get("/model/ABC-1", headers={"Authorization": f"{scheme} {token}"})
    assert r.status_code == 200, r.text
    assert_forwarded_jwt(upstream.last(), "ed-user", ED, BOTH)


# ------------------------------------------------------- config errors

def _check(tmp_path, jwt_cfg, env=None):
    """Run `portcullis check` on a minimal config with this `jwt:` section."""
    import json
    import os
    import subprocess

    from conftest import BIN

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
                          timeout=30, cwd=tmp_path, env={**os.environ, **(env or {})})


def test_plain_http_jwks_url_is_a_config_error(tmp_path):
    out = _check(tmp_path, {"issuers": [{"issuer": "https://idp.test", "algorithms": ["RS256"],
                                          "jwks_url": "http://idp.test/jwks.json"}]})
    assert out.returncode == 1, out
    assert "jwks_url" in out.stdout + out.stderr


def test_https_jwks_url_is_accepted_by_check(tmp_path):
    # check does not fetch: the identity provider may be down at deploy time.
    out = _check(tmp_path, {"issuers": [{"issuer": "https://idp.test", "algorithms": ["RS256"],
                                          "jwks_url": "https://idp.test/jwks.json"}]})
    assert out.returncode == 0, out


def test_env_secrets_are_accepted(tmp_path):
    out = _check(tmp_path, {
        "issuers": [{"issuer": "https://idp.test", "algorithms": ["HS256"],
                     "hs_secret": "${PCJWT_CHECK_HS}"}],
        "tokens": {"signing_key": "${PCJWT_CHECK_TOKEN}"},
    }, env={"PCJWT_CHECK_HS": hs_secret(32), "PCJWT_CHECK_TOKEN": hs_secret(32)})
    assert out.returncode == 0, out


@pytest.mark.parametrize("where", ["hs_secret", "signing_key"])
def test_plaintext_literal_secret_is_a_config_error(tmp_path, where):
    """Like a key's `secret`, a JWT secret written into the file itself
    (not `${ENV}`) must be refused."""
    literal = hs_secret(40)
    env = {"PCJWT_CHECK_HS": hs_secret(32), "PCJWT_CHECK_TOKEN": hs_secret(32)}
    cfg = {
        "issuers": [{"issuer": "https://idp.test", "algorithms": ["HS256"],
                     "hs_secret": literal if where == "hs_secret" else "${PCJWT_CHECK_HS}"}],
        "tokens": {"signing_key": literal if where == "signing_key" else "${PCJWT_CHECK_TOKEN}"},
    }
    out = _check(tmp_path, cfg, env=env)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert where in out.stdout + out.stderr
    assert literal not in out.stdout + out.stderr
