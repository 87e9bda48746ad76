"""Helpers for the JWT interoperability tests (test_jwt_*.py).

* Keys are generated at run time with `cryptography` (never committed).
* Tokens are minted with PyJWT, or built by hand (`hand_token`) when the
  test needs bytes PyJWT refuses to produce (duplicate members, alg none,
  a forged header ...).
* `jwt_gateway_factory` is a variant of conftest's `gateway_factory` that
  also passes extra environment variables to the child (secrets and PEMs
  reach the gateway only as `${ENV}` references) and lets a test write
  files (JWKS, PEM, revoked-jti lists) into the gateway's directory before
  it starts.
* `rewrite_config` / `wait_until` drive the gateway's file-watching reload.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from conftest import BIN, Gateway, _expand_keys, default_route

#: Longest wait for a reload to take effect (the gateway polls every second).
RELOAD_TIMEOUT = 10


# ------------------------------------------------------------------ keys


class KeyPair:
    """A private key with its PEMs and public JWK."""

    def __init__(self, private, kind):
        self.private = private
        self.public = private.public_key()
        self.kind = kind

    @property
    def private_pem(self) -> str:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    @property
    def public_pem(self) -> str:
        return self.public.public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        ).decode()

    def jwk(self, kid=None, alg=None, use="sig") -> dict:
        algo = {"rsa": RSAAlgorithm, "ec": ECAlgorithm, "ed": OKPAlgorithm}[self.kind]
        d = algo.to_jwk(self.public, as_dict=True)
        if kid is not None:
            d["kid"] = kid
        if alg is not None:
            d["alg"] = alg
        if use is not None:
            d["use"] = use
        return d


def rsa_key(bits=2048) -> KeyPair:
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=bits), "rsa")


def ec_key(curve="P-256") -> KeyPair:
    c = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}[curve]
    return KeyPair(ec.generate_private_key(c), "ec")


def ed_key() -> KeyPair:
    return KeyPair(ed25519.Ed25519PrivateKey.generate(), "ed")


def jwks_text(*jwks) -> str:
    return json.dumps({"keys": list(jwks)})


def hs_secret(n=64) -> str:
    """A random HMAC secret of `n` ASCII characters (bytes)."""
    return secrets.token_urlsafe(n)[:n]


# ---------------------------------------------------------------- tokens


def b64url(data) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def claims(iss, sub="alice", scope="models:read models:create", ttl=300, **extra):
    """A payload with iat/exp around now and a random jti."""
    now = int(time.time())
    c = {"iss": iss, "sub": sub, "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
    if scope is not None:
        c["scope"] = scope
    for k, v in extra.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def mint(payload, key, alg, kid=None, headers=None) -> str:
    """PyJWT-minted token; `key` is a KeyPair (private key used) or a secret."""
    h = dict(headers or {})
    if kid is not None:
        h["kid"] = kid
    k = key.private if isinstance(key, KeyPair) else key
    return jwt.encode(payload, k, algorithm=alg, headers=h or None)


def hand_token(header, payload, signer=None, signature=None) -> str:
    """A compact JWS built by hand.

    `header` / `payload` are dicts (serialised compactly) or raw JSON strings
    (sent exactly, e.g. with a duplicate member). `signer(signing_input)`
    returns the signature bytes; `signature` gives them directly.
    """
    h = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    p = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    signing_input = f"{b64url(h)}.{b64url(p)}"
    if signature is None:
        signature = signer(signing_input.encode()) if signer else b""
    return f"{signing_input}.{b64url(signature)}"


def hs_signer(secret, alg="HS256"):
    """Sign with PyJWT's own HMAC implementation."""
    algo = jwt.algorithms.get_default_algorithms()[alg]
    key = algo.prepare_key(secret)
    return lambda msg: algo.sign(msg, key)


def hmac_raw_signer(secret: bytes, alg="HS256"):
    """HMAC with any bytes as key (PyJWT refuses PEM-looking HMAC keys)."""
    import hashlib
    import hmac

    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    return lambda msg: hmac.new(secret, msg, digest).digest()


def bearer(token) -> dict:
    return {"Authorization": f"Bearer {token}"}


def decode_unverified(token) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# ---------------------------------------------------------------- gateway


def env_name(prefix="PCJWT"):
    return f"{prefix}_{secrets.token_hex(6).upper()}"


@pytest.fixture(scope="module")
def jwt_gateway_factory(upstream_server):
    """`make(routes=None, keys=(), env=None, **top_level)` → a Gateway that is
    NOT started yet (write files into `gw.dir`, set `gw.config["jwt"]`, then
    `gw.start()`). `start(...)` is the same and starts it.

    `env` maps extra environment variable names to values for the child.
    """
    made = []

    def make(routes=None, keys=(), env=None, log_level="info", **extra):
        workdir = tempfile.mkdtemp(prefix="portcullis-jwt-")
        gen = subprocess.run(
            [BIN, "gen-cert", "--out", os.path.join(workdir, "certs")],
            capture_output=True, text=True, timeout=30,
        )
        assert gen.returncode == 0, f"gen-cert failed: {gen.stderr}"
        if routes is None:
            routes = [default_route(upstream_server.url)]
        key_list, key_env = _expand_keys(keys)
        key_env.update(env or {})
        config = {"routes": routes, "keys": key_list, **extra}
        gw = Gateway(workdir, config, key_env, log_level)
        made.append(gw)
        return gw

    def start(**kw):
        return make(**kw).start()

    make.start = start
    yield make
    for gw in made:
        gw.stop()
    for gw in made:
        shutil.rmtree(gw.dir, ignore_errors=True)


def write_file(path, text):
    """Write atomically (temp file + rename), so a polling reader never sees
    half a file."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{secrets.token_hex(4)}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def rewrite_config(gw, mutate):
    """Apply `mutate(config_dict)` to the running gateway's config file (keeping
    its listen/admin sections) and write it atomically; the gateway's watcher
    reloads it within about a second."""
    # raw_decode: earlier rewrites end in a YAML comment line
    current = json.JSONDecoder().raw_decode(gw.config_path.read_text())[0]
    mutate(current)
    gw.config = {k: v for k, v in current.items() if k not in ("listen", "admin")}
    # a different size for sure, so the (mtime, len) fingerprint changes even
    # on a coarse-mtime filesystem
    text = json.dumps(current, indent=2) + "\n" + "#" * (secrets.randbelow(7) + 1) + "\n"
    write_file(gw.config_path, text)


def wait_until(probe, timeout=RELOAD_TIMEOUT, interval=0.2):
    """Call `probe()` until it returns something other than None or False
    (a `requests.Response` counts as a value even when it is a 4xx);
    returns that value, or the last None/False after `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        last = probe()
        if (last is not None and last is not False) or time.time() > deadline:
            return last
        time.sleep(interval)


def key_by_id(cfg, key_id):
    for k in cfg["keys"]:
        if k["id"] == key_id:
            return k
    raise KeyError(key_id)


# ---------------------------------------------------------- assertions


def assert_forwarded_jwt(rec, subject, issuer, grants, key_id=None):
    """What the upstream must see for a request authorised by a JWT."""
    assert rec.header("X-Auth-Subject") == subject, rec
    assert rec.header("X-Auth-Issuer") == issuer, rec
    assert rec.header("X-Auth-Scheme") == "jwt", rec
    assert set((rec.header("X-Auth-Grants") or "").split()) == set(grants), rec
    assert rec.header("X-Auth-Key-Id") == key_id, rec
    assert not rec.has_header("Authorization"), rec


def oauth_error(resp, status, code):
    """An RFC 6749 section 5.2 error from the token endpoint."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert body.get("error") == code, body
    return body
