"""Hostile and broken JWTs sent through the real gateway. Every refusal is
a 401 with the JSON error shape (`invalid_token`, or `token_expired` for an
authentic expired token), a `Bearer` challenge, never the token echoed back,
and nothing reaching the upstream."""

import json
import time

import pytest

from conftest import assert_refused, default_route, new_secret
from jwt_helpers import (
    b64url,
    b64url_decode,
    bearer,
    claims,
    ec_key,
    hand_token,
    hmac_raw_signer,
    hs_secret,
    hs_signer,
    jwks_text,
    jwt_gateway_factory,  # noqa: F401  (fixture)
    mint,
    rsa_key,
    write_file,
)

HS = "https://hs.attack.test"
RS = "https://rs.attack.test"
JWKS = "https://jwks.attack.test"
ES = "https://es.attack.test"
AUD = "https://aud.attack.test"

HS_SECRET = hs_secret(32)
AUD_SECRET = hs_secret(32)
RSA = rsa_key()
RSA_JWKS_KEY = rsa_key()
EC = ec_key("P-256")
ATTACKER_RSA = rsa_key()
ATTACKER_EC = ec_key("P-256")
API_SECRET = new_secret()


@pytest.fixture(scope="module")
def gw(jwt_gateway_factory, upstream_server):
    g = jwt_gateway_factory(
        env={"PCJWT_ATK_HS": HS_SECRET, "PCJWT_ATK_AUD": AUD_SECRET},
        routes=[default_route(upstream_server.url),
                default_route(upstream_server.url, name="billing",
                              match={"path_prefix": "/billing"}, namespace="billing")],
        keys=[{"id": "K1", "owner": "kim", "secret": API_SECRET}],
    )
    write_file(g.dir / "rs.pem", RSA.public_pem)
    write_file(g.dir / "jwks.json", jwks_text(RSA_JWKS_KEY.jwk(kid="good-kid", alg="RS256")))
    write_file(g.dir / "es.pem", EC.public_pem)
    g.config["jwt"] = {"issuers": [
        {"issuer": HS, "hs_secret": "${PCJWT_ATK_HS}", "algorithms": ["HS256"]},
        {"issuer": RS, "public_key_pem": str(g.dir / "rs.pem"), "algorithms": ["RS256"]},
        {"issuer": JWKS, "jwks_file": str(g.dir / "jwks.json"), "algorithms": ["RS256"]},
        {"issuer": ES, "public_key_pem": str(g.dir / "es.pem"), "algorithms": ["ES256"]},
        {"issuer": AUD, "hs_secret": "${PCJWT_ATK_AUD}", "algorithms": ["HS256"],
         "audiences": ["stlwarehouse"]},
    ]}
    return g.start()


def refused(gw, upstream, token, code="invalid_token", status=401, path="/model/ABC-1"):
    r = gw.get(path, headers=bearer(token))
    assert_refused(r, status, code)
    if status == 401:
        assert "Bearer" in r.headers.get("WWW-Authenticate", ""), r.headers
    if len(token) > 20:
        assert token not in r.text
        assert token.split(".")[-1] not in r.text or len(token.split(".")[-1]) < 8
    assert not upstream.records, upstream.records
    return r


def hs_token(payload, header=None, secret=HS_SECRET):
    h = {"alg": "HS256", "typ": "JWT", **(header or {})}
    return hand_token(h, payload, signer=hs_signer(secret))


def test_control_tokens_work(gw, upstream):
    """The attacks below are refused for what they change, not because the
    set-up is broken."""
    for tok in (mint(claims(HS), HS_SECRET, "HS256"), mint(claims(RS), RSA, "RS256"),
                mint(claims(JWKS), RSA_JWKS_KEY, "RS256", kid="good-kid"),
                mint(claims(ES), EC, "ES256"),
                mint(claims(AUD, aud="stlwarehouse"), AUD_SECRET, "HS256"),
                hs_token(claims(HS))):
        r = gw.get("/model/ABC-1", headers=bearer(tok))
        assert r.status_code == 200, r.text
        assert upstream.last().header("X-Auth-Scheme") == "jwt"


# ------------------------------------------------------------- algorithm

@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("sig", [b"", b"x", None])
def test_alg_none(gw, upstream, alg, sig):
    payload = claims(HS)
    if sig is None:  # signed with the real secret, alg still says none
        token = hand_token({"alg": alg, "typ": "JWT"}, payload, signer=hs_signer(HS_SECRET))
    else:
        token = hand_token({"alg": alg, "typ": "JWT"}, payload, signature=sig)
    refused(gw, upstream, token)


def test_alg_none_from_pyjwt(gw, upstream):
    import jwt

    token = jwt.encode(claims(HS), None, algorithm="none")
    refused(gw, upstream, token)
    refused(gw, upstream, token + "AAAA")


@pytest.mark.parametrize("variant", ["spki", "spki-no-newline", "pkcs1"])
def test_rs256_to_hs256_confusion(gw, upstream, variant):
    from cryptography.hazmat.primitives import serialization

    if variant == "pkcs1":
        secret = RSA.public.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.PKCS1)
    elif variant == "spki":
        secret = RSA.public_pem.encode()
    else:
        secret = RSA.public_pem.strip().encode()
    for alg in ("HS256", "HS384", "HS512"):
        token = hand_token({"alg": alg, "typ": "JWT"}, claims(RS), signer=hmac_raw_signer(secret, alg))
        refused(gw, upstream, token)


def test_alg_case_and_unknown(gw, upstream):
    for alg in ("hs256", "Hs256", "HS256 ", "ES512", "RS1", ""):
        refused(gw, upstream, hand_token({"alg": alg}, claims(HS), signer=hs_signer(HS_SECRET)))
    refused(gw, upstream, hand_token({"typ": "JWT"}, claims(HS), signer=hs_signer(HS_SECRET)))
    refused(gw, upstream, hand_token({"alg": 256}, claims(HS), signer=hs_signer(HS_SECRET)))


# ------------------------------------------------------------------- keys

def test_unknown_kid(gw, upstream):
    refused(gw, upstream, mint(claims(JWKS), RSA_JWKS_KEY, "RS256", kid="other-kid"))
    refused(gw, upstream, mint(claims(JWKS), ATTACKER_RSA, "RS256", kid="good-kid"))
    refused(gw, upstream, mint(claims(JWKS), RSA_JWKS_KEY, "RS256", kid="good-kid ",))
    refused(gw, upstream, hand_token({"alg": "RS256", "kid": 7}, claims(JWKS), signature=b"x" * 256))


def test_embedded_jwk_header(gw, upstream):
    # signed by the attacker, carrying the attacker's key
    for iss, kp, alg in ((RS, ATTACKER_RSA, "RS256"), (ES, ATTACKER_EC, "ES256"),
                         (JWKS, ATTACKER_RSA, "RS256")):
        token = mint(claims(iss), kp, alg, headers={"jwk": kp.jwk(kid="good-kid")})
        refused(gw, upstream, token)
    # even signed by the right key, key material in the header is refused
    token = mint(claims(RS), RSA, "RS256", headers={"jwk": RSA.jwk()})
    refused(gw, upstream, token)


@pytest.mark.parametrize("name,value", [
    ("jku", "https://attacker.test/jwks.json"),
    ("x5u", "https://attacker.test/cert.pem"),
    ("x5c", ["MIIB"]),
])
def test_key_url_headers(gw, upstream, name, value):
    refused(gw, upstream, mint(claims(JWKS), ATTACKER_RSA, "RS256", kid="good-kid",
                               headers={name: value}))
    refused(gw, upstream, mint(claims(JWKS), RSA_JWKS_KEY, "RS256", kid="good-kid",
                               headers={name: value}))


# ----------------------------------------------------------------- claims

def test_expired(gw, upstream):
    now = int(time.time())
    token = mint(claims(HS, iat=now - 3600, exp=now - 600), HS_SECRET, "HS256")
    refused(gw, upstream, token, code="token_expired")
    token = mint(claims(RS, iat=now - 3600, exp=now - 120), RSA, "RS256")
    refused(gw, upstream, token, code="token_expired")


def test_expired_with_bad_signature_is_not_token_expired(gw, upstream):
    now = int(time.time())
    token = mint(claims(HS, exp=now - 600), hs_secret(32), "HS256")
    refused(gw, upstream, token, code="invalid_token")


def test_nbf_in_future(gw, upstream):
    now = int(time.time())
    refused(gw, upstream, mint(claims(HS, nbf=now + 3600, exp=now + 7200), HS_SECRET, "HS256"))


def test_iat_in_future(gw, upstream):
    now = int(time.time())
    refused(gw, upstream, mint(claims(HS, iat=now + 3600, exp=now + 7200), HS_SECRET, "HS256"))


def test_missing_exp(gw, upstream):
    refused(gw, upstream, mint(claims(HS, exp=None), HS_SECRET, "HS256"))


@pytest.mark.parametrize("exp", ["9999999999", "tomorrow", True, [9999999999], {"t": 1}])
def test_exp_wrong_type(gw, upstream, exp):
    # hand-built: PyJWT's encode would refuse a non-numeric exp
    refused(gw, upstream, hs_token(claims(HS, exp=exp)))


def test_exp_null(gw, upstream):
    p = claims(HS)
    p["exp"] = None
    refused(gw, upstream, hs_token(p))


def test_wrong_issuer(gw, upstream):
    refused(gw, upstream, mint(claims("https://evil.test"), HS_SECRET, "HS256"))
    refused(gw, upstream, mint(claims(HS + "/"), HS_SECRET, "HS256"))
    refused(gw, upstream, mint(claims(HS.upper()), HS_SECRET, "HS256"))
    # the AUD issuer's secret, claiming the HS issuer
    refused(gw, upstream, mint(claims(HS), AUD_SECRET, "HS256"))
    no_iss = claims(HS)
    del no_iss["iss"]
    refused(gw, upstream, mint(no_iss, HS_SECRET, "HS256"))
    refused(gw, upstream, hs_token({**claims(HS), "iss": [HS]}))


def test_wrong_audience(gw, upstream):
    for aud in ("other", ["other"], "STLWAREHOUSE", None):
        refused(gw, upstream, mint(claims(AUD, aud=aud), AUD_SECRET, "HS256"))
    refused(gw, upstream, hs_token(claims(AUD, aud=["stlwarehouse", 5]), secret=AUD_SECRET))


def test_subject_missing_or_wrong_type(gw, upstream):
    refused(gw, upstream, mint(claims(HS, sub=None), HS_SECRET, "HS256"))
    refused(gw, upstream, hs_token(claims(HS, sub="")))
    refused(gw, upstream, hs_token({**claims(HS), "sub": 42}))


# -------------------------------------------------------------- integrity

def test_tampered_payload(gw, upstream):
    for tok in (mint(claims(HS, sub="alice"), HS_SECRET, "HS256"),
                mint(claims(RS, sub="alice"), RSA, "RS256"),
                mint(claims(ES, sub="alice"), EC, "ES256")):
        h, p, s = tok.split(".")
        payload = json.loads(b64url_decode(p))
        payload["sub"] = "admin"
        payload["scope"] = "models:* billing:*"
        refused(gw, upstream, f"{h}.{b64url(json.dumps(payload))}.{s}")


def test_tampered_header(gw, upstream):
    tok = mint(claims(HS), HS_SECRET, "HS256")
    h, p, s = tok.split(".")
    h2 = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "x"}))
    refused(gw, upstream, f"{h2}.{p}.{s}")


def test_stripped_signature(gw, upstream):
    for tok in (mint(claims(HS), HS_SECRET, "HS256"), mint(claims(RS), RSA, "RS256")):
        h, p, _ = tok.split(".")
        refused(gw, upstream, f"{h}.{p}.")
        refused(gw, upstream, f"{h}.{p}")


def test_signature_from_another_token(gw, upstream):
    t1 = mint(claims(HS, sub="a"), HS_SECRET, "HS256")
    t2 = mint(claims(HS, sub="b"), HS_SECRET, "HS256")
    refused(gw, upstream, ".".join(t1.split(".")[:2] + t2.split(".")[2:]))


def test_es256_all_zero_signature(gw, upstream):
    # CVE-2022-21449 "psychic signatures"
    for sig in (b"\0" * 64, b"\0" * 32 + b"\1" * 32, b"\1" * 32 + b"\0" * 32):
        refused(gw, upstream, hand_token({"alg": "ES256", "typ": "JWT"}, claims(ES), signature=sig))


def test_es256_der_signature(gw, upstream):
    # a DER-encoded ECDSA signature (what OpenSSL produces) is not JWS format
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    h = b64url(json.dumps({"alg": "ES256"}))
    p = b64url(json.dumps(claims(ES)))
    der = EC.private.sign(f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256()))
    refused(gw, upstream, f"{h}.{p}.{b64url(der)}")


# ---------------------------------------------------------------- shape

def test_jwe_shaped_token(gw, upstream):
    h = b64url(json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM"}))
    refused(gw, upstream, f"{h}.{b64url(b'k' * 32)}.{b64url(b'i' * 12)}.{b64url(b'c' * 40)}.{b64url(b't' * 16)}")
    # three parts but an `enc` header
    refused(gw, upstream, hand_token({"alg": "HS256", "enc": "A256GCM"}, claims(HS),
                                     signer=hs_signer(HS_SECRET)))


@pytest.mark.parametrize("crit", [["exp"], ["b64"], [], "exp"])
def test_crit_header(gw, upstream, crit):
    hdr = {"alg": "HS256", "crit": crit}
    if crit == ["b64"]:
        hdr["b64"] = False
    refused(gw, upstream, hand_token(hdr, claims(HS), signer=hs_signer(HS_SECRET)))


def test_duplicate_json_keys(gw, upstream):
    now = int(time.time())
    payload = (f'{{"iss":"{HS}","sub":"alice","sub":"admin","scope":"models:read",'
               f'"iat":{now},"exp":{now + 300}}}')
    refused(gw, upstream, hand_token({"alg": "HS256", "typ": "JWT"}, payload,
                                     signer=hs_signer(HS_SECRET)))
    payload = (f'{{"iss":"https://evil.test","iss":"{HS}","sub":"alice",'
               f'"scope":"models:read","exp":{now + 300}}}')
    refused(gw, upstream, hand_token({"alg": "HS256"}, payload, signer=hs_signer(HS_SECRET)))
    payload = (f'{{"iss":"{HS}","sub":"alice","scope":"models:read","exp":{now + 300},'
               f'"nested":{{"a":1,"a":2}}}}')
    refused(gw, upstream, hand_token({"alg": "HS256"}, payload, signer=hs_signer(HS_SECRET)))
    # in the header
    refused(gw, upstream, hand_token('{"alg":"none","alg":"HS256"}', claims(HS),
                                     signer=hs_signer(HS_SECRET)))
    # escaped spelling of the same name is still a duplicate
    payload = (f'{{"iss":"{HS}","sub":"alice","s\\u0075b":"admin","scope":"models:read",'
               f'"exp":{now + 300}}}')
    refused(gw, upstream, hand_token({"alg": "HS256"}, payload, signer=hs_signer(HS_SECRET)))


def test_oversized_token(gw, upstream):
    big = mint(claims(HS, pad="x" * 9000), HS_SECRET, "HS256")
    assert len(big) > 8 * 1024
    refused(gw, upstream, big)
    # just under the limit is fine
    small = mint(claims(HS, pad="x" * 5000), HS_SECRET, "HS256")
    assert len(small) < 8 * 1024
    r = gw.get("/model/ABC-1", headers=bearer(small))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("mangle", ["padding", "plus-slash", "bad-char", "bad-json", "not-object",
                                    "empty-header", "four-parts", "two-dots-end", "spaces"])
def test_malformed_base64url(gw, upstream, mangle):
    tok = mint(claims(HS), HS_SECRET, "HS256")
    h, p, s = tok.split(".")
    bad = {
        "padding": f"{h}==.{p}.{s}" if len(h) % 4 else f"{h}.{p}=.{s}",
        "plus-slash": f"{h}.{p}.{s.replace('-', '+').replace('_', '/')}+/",
        "bad-char": f"{h}.{p[:-1]}!.{s}",
        "bad-json": f"{b64url('{alg:HS256}')}.{p}.{s}",
        "not-object": f"{b64url('[1,2]')}.{p}.{s}",
        "empty-header": f".{p}.{s}",
        "four-parts": f"{h}.{p}.{s}.{s}",
        "two-dots-end": f"{h}.{p}..",
        "spaces": f"{h}. {p}.{s}",
    }[mangle]
    if mangle == "padding":
        bad = f"{h}.{p}.{s}="
    refused(gw, upstream, bad)


def test_non_canonical_base64url_signature(gw, upstream):
    # flipping the unused low bits of the last character decodes to the same
    # bytes in lenient decoders; the gateway must not accept it
    tok = mint(claims(HS), HS_SECRET, "HS256")
    h, p, s = tok.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(s[-1])
    assert len(s) % 4 == 3  # 32 bytes → 43 chars, 2 spare bits
    s2 = s[:-1] + alphabet[last | 1] if not last & 1 else s[:-1] + alphabet[last & ~1]
    assert b64url_decode(s2) == b64url_decode(s)
    refused(gw, upstream, f"{h}.{p}.{s2}")


def test_garbage_bearer_values(gw, upstream):
    for v in ("abc", "a.b.c", "....."):
        refused(gw, upstream, v)
    r = gw.get("/model/ABC-1", headers={"Authorization": "Bearer "})
    assert r.status_code in (400, 401), r.text
    assert not upstream.records


# ------------------------------------------------------------- authority

def test_token_scope_for_another_namespace(gw, upstream):
    # a perfectly valid token whose scope covers models, used on billing
    tok = mint(claims(HS, scope="models:read models:create models:*"), HS_SECRET, "HS256")
    refused(gw, upstream, tok, status=403, code="insufficient_grant", path="/billing/1")
    # scope lacks the action
    tok = mint(claims(HS, scope="billing:read"), HS_SECRET, "HS256")
    r = gw.post("/billing/1", headers=bearer(tok), data=b"{}")
    assert_refused(r, 403, "insufficient_grant")
    assert not upstream.records
    r = gw.get("/billing/1", headers=bearer(tok))
    assert r.status_code == 200, r.text
    assert upstream.last().header("X-Auth-Grants") == "billing:read"


def test_scope_does_not_escalate_via_case_or_wildcards(gw, upstream):
    tok = mint(claims(HS, scope="Models:read models:read:/billing/* *:*"), HS_SECRET, "HS256")
    refused(gw, upstream, tok, status=403, code="insufficient_grant", path="/billing/1")
    refused(gw, upstream, tok, status=403, code="insufficient_grant", path="/model/ABC-1")


def test_bearer_plus_api_key_is_multiple_credentials(gw, upstream):
    tok = mint(claims(HS), HS_SECRET, "HS256")
    r = gw.get("/model/ABC-1", headers={**bearer(tok), "X-Api-Key": API_SECRET})
    assert_refused(r, 400, "multiple_credentials")
    assert not upstream.records


def test_third_party_token_cannot_claim_an_api_key(gw, upstream):
    # pc_key in a foreign token is ignored: no X-Auth-Key-Id, and K1's grants
    # do not apply
    tok = mint(claims(HS, scope="models:read", pc_key="K1"), HS_SECRET, "HS256")
    r = gw.get("/model/ABC-1", headers=bearer(tok))
    assert r.status_code == 200, r.text
    assert not upstream.last().has_header("X-Auth-Key-Id")
    assert_refused(gw.post("/model/ABC-1", headers=bearer(tok)), 403, "insufficient_grant")


def test_logs_carry_no_token_or_secret(gw, upstream):
    good = mint(claims(HS, sub="log-check"), HS_SECRET, "HS256")
    bad = mint(claims(HS, sub="log-check"), hs_secret(32), "HS256")
    assert gw.get("/model/ABC-1", headers=bearer(good)).status_code == 200
    assert gw.get("/model/ABC-1", headers=bearer(bad)).status_code == 401
    time.sleep(1.0)  # log lines are written in batches, within ~200 ms
    log = gw.stderr() + (gw.stdout_path.read_text(errors="replace")
                         if gw.stdout_path.exists() else "")
    assert log, "the gateway wrote no log at all"
    for t in (good, bad):
        for part in t.split(".")[1:]:
            assert part not in log
    assert HS_SECRET not in log and AUD_SECRET not in log
