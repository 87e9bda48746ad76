"""Fixtures for the interoperability tests.

The real `portcullis` binary ($PORTCULLIS_BIN, else target/debug/portcullis)
runs as a child process with a certificate generated at run time, in front
of a recording upstream. Clients (requests, requests-oauthlib, oauthlib,
curl) talk to it over real TLS at https://localhost:<port>, verifying the
generated certificate.

Every request made through these helpers has a timeout, every thread pool
is bounded, and every child process is killed at teardown, so a hanging
gateway fails a test instead of hanging the suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import types
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from oauthlib.oauth1.rfc5849 import signature as oauth_sig
from oauthlib.oauth1.rfc5849 import utils as oauth_utils

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("PORTCULLIS_BIN") or str(REPO / "target" / "debug" / "portcullis")

#: Timeout (seconds) for every HTTP request a test makes.
TIMEOUT = 10
#: Longest wait for /readyz after starting the gateway.
READY_TIMEOUT = 15


# ------------------------------------------------------------------ upstream


class Recorded:
    """One request as the upstream received it."""

    def __init__(self, method, target, headers, body):
        self.method = method
        #: path and query exactly as received
        self.target = target
        #: list of (name, value) pairs, names as sent
        self.headers = headers
        #: raw bytes
        self.body = body

    @property
    def path(self):
        return self.target.split("?", 1)[0]

    @property
    def query(self):
        return self.target.split("?", 1)[1] if "?" in self.target else None

    def query_pairs(self):
        return urllib.parse.parse_qsl(self.query or "", keep_blank_values=True)

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def has_header(self, name):
        return self.header(name) is not None

    def __repr__(self):
        return f"Recorded({self.method} {self.target} headers={self.headers!r} body={self.body[:200]!r})"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "recording-upstream"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until the empty line
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out += self.rfile.read(size)
                self.rfile.readline(65537)
            return bytes(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self):
        body = self._read_body()
        rec = Recorded(self.command, self.path, list(self.headers.items()), body)
        with self.server.lock:
            self.server.records.append(rec)
        if self.path.split("?", 1)[0].startswith("/slow"):
            time.sleep(3)
        payload = b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class Upstream:
    """A recording HTTP upstream on 127.0.0.1:<random>."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.lock = threading.Lock()
        self.server.records = []
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def records(self):
        with self.server.lock:
            return list(self.server.records)

    def clear(self):
        with self.server.lock:
            self.server.records.clear()

    def last(self):
        recs = self.records
        assert recs, "the upstream received no request"
        return recs[-1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def upstream_server():
    up = Upstream()
    yield up
    up.close()


@pytest.fixture
def upstream(upstream_server):
    """The module's recording upstream, emptied for this test."""
    upstream_server.clear()
    return upstream_server


# ------------------------------------------------------------------- gateway


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env_name(key_id):
    return "PORTCULLIS_TEST_SECRET_" + "".join(c if c.isalnum() else "_" for c in key_id.upper())


class Gateway:
    """A running `portcullis serve` child process."""

    def __init__(self, workdir, config, env, log_level):
        self.dir = Path(workdir)
        self.cert = str(self.dir / "certs" / "gateway.crt")
        self.config_path = self.dir / "gateway.yaml"
        self.stderr_path = self.dir / "stderr.log"
        self.stdout_path = self.dir / "stdout.log"
        self.config = config
        self.env = env
        self.log_level = log_level
        self.proc = None
        self.started_at = None
        self.stderr_from = 0
        self.session = requests.Session()
        self.session.verify = self.cert
        #: every response body the helpers saw (for the leak checks)
        self.bodies = []

    # -- lifecycle
    def start(self, keep_ports=False):
        last_err = None
        for _ in range(1 if keep_ports else 3):  # a "free" port may be taken between probe and bind
            if not keep_ports:
                self.port, self.http_port, self.admin_port = free_port(), free_port(), free_port()
            cfg = dict(self.config)
            cfg["listen"] = {
                "https": f"127.0.0.1:{self.port}",
                "http": f"127.0.0.1:{self.http_port}",
                "tls": {"cert": self.cert, "key": str(self.dir / "certs" / "gateway.key")},
            }
            cfg["admin"] = {"listen": f"127.0.0.1:{self.admin_port}"}
            # JSON is YAML: no YAML library needed to write the config.
            self.config_path.write_text(json.dumps(cfg, indent=2) + "\n")
            env = dict(os.environ)
            env.update(self.env)
            env["PORTCULLIS_LOG"] = self.log_level
            self.started_at = time.time()
            self.stderr_from = len(self.stderr())  # the file is kept across restarts
            with open(self.stderr_path, "ab") as err, open(self.stdout_path, "ab") as out:
                self.proc = subprocess.Popen(
                    [BIN, "serve", "-c", str(self.config_path)],
                    cwd=self.dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                )
            try:
                self._wait_ready()
                return self
            except RuntimeError as e:
                last_err = e
                self.stop()
        raise last_err

    def _wait_ready(self):
        deadline = time.time() + READY_TIMEOUT
        url = f"http://127.0.0.1:{self.admin_port}/readyz"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"portcullis exited with {self.proc.returncode}:\n{self.stderr()}"
                )
            # This process must have bound its listeners first: a leftover
            # gateway on the admin port would answer /readyz for it. (The
            # line is logged at info; quieter levels rely on /readyz alone.)
            quiet = self.log_level not in ("info", "debug", "trace")
            if quiet or "portcullis listening" in self.stderr()[self.stderr_from :]:
                try:
                    if requests.get(url, timeout=1).status_code == 200:
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"portcullis not ready after {READY_TIMEOUT}s:\n{self.stderr()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.session.close()

    def restart(self):
        """Stop, then start again on the same ports (a fresh process)."""
        self.stop()
        self.session = requests.Session()
        return self.start(keep_ports=True)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- requests
    @property
    def origin(self):
        return f"https://localhost:{self.port}"

    def url(self, path="/"):
        return self.origin + path

    def request(self, method, path, **kw):
        """`requests` against https://localhost:<port><path>, TLS verified."""
        kw.setdefault("timeout", TIMEOUT)
        # Per request, not Session.verify: requests lets $REQUESTS_CA_BUNDLE /
        # $CURL_CA_BUNDLE override a session's `verify` (psf/requests#3829).
        kw.setdefault("verify", self.cert)
        url = path if path.startswith("https://") else self.url(path)
        r = self.session.request(method, url, **kw)
        self.bodies.append(r.content)
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def curl(self, *args, url_path="/model/ABC-1", userinfo=None, timeout=TIMEOUT):
        """Run curl; returns (http_code, http_version, body)."""
        curl = shutil.which("curl")
        assert curl, "curl is needed for the interop tests"
        auth = f"{userinfo}@" if userinfo else ""
        url = f"https://{auth}localhost:{self.port}{url_path}"
        fd, body_path = tempfile.mkstemp(dir=self.dir, prefix="curl-")
        os.close(fd)
        out = subprocess.run(
            [curl, "-sS", "--cacert", self.cert, "--max-time", str(timeout),
             "-o", body_path, "-w", "%{http_code} %{http_version}", *args, url],
            capture_output=True, text=True, timeout=timeout + 5,
        )
        assert out.returncode == 0, f"curl failed: {out.stderr}"
        code, version = out.stdout.split()
        body = Path(body_path).read_bytes()
        self.bodies.append(body)
        return int(code), version, body


def _expand_keys(keys):
    """Plaintext secrets become `${PORTCULLIS_TEST_SECRET_<ID>}` references."""
    out, env = [], {}
    for k in keys:
        k = dict(k)
        if "secret" in k:
            name = _env_name(k["id"])
            env[name] = k["secret"]
            k["secret"] = "${" + name + "}"
        k.setdefault("owner", "owner-of-" + k["id"])
        k.setdefault(
            "grants",
            [{"namespace": "models", "actions": ["read", "create", "update", "delete"]}],
        )
        out.append(k)
    return out, env


@pytest.fixture(scope="module")
def gateway_factory(upstream_server):
    """`start(routes=None, keys=(), **top_level)` → a running Gateway.

    `routes` defaults to one route `/model` → the recording upstream in
    namespace `models`. Each key's plaintext `secret` is written as
    `${PORTCULLIS_TEST_SECRET_<ID>}` and passed in the child's environment.
    Other keyword arguments (limits, replay, public_origin, ...) are copied
    into the config as they are.
    """
    started = []

    def start(routes=None, keys=(), log_level="info", **extra):
        workdir = tempfile.mkdtemp(prefix="portcullis-interop-")
        gen = subprocess.run(
            [BIN, "gen-cert", "--out", os.path.join(workdir, "certs")],
            capture_output=True, text=True, timeout=30,
        )
        assert gen.returncode == 0, f"gen-cert failed: {gen.stderr}"
        if routes is None:
            routes = [default_route(upstream_server.url)]
        key_list, env = _expand_keys(keys)
        config = {"routes": routes, "keys": key_list, **extra}
        gw = Gateway(workdir, config, env, log_level)
        started.append(gw)
        return gw.start()

    yield start
    for gw in started:
        gw.stop()
    for gw in started:
        shutil.rmtree(gw.dir, ignore_errors=True)


def default_route(upstream_url, **over):
    r = {
        "name": "models",
        "match": {"path_prefix": "/model"},
        "upstream": upstream_url,
        "namespace": "models",
    }
    r.update(over)
    return r


def new_secret():
    """A random secret that survives a URL's userinfo unescaped."""
    return secrets.token_urlsafe(32)


def fresh_nonce(prefix="n"):
    return prefix + secrets.token_hex(12)


def sha256_hash(secret):
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


# ------------------------------------------------------------ assertions


def error_of(resp):
    """The JSON `error` code of a refusal (asserting the error shape)."""
    assert resp.headers.get("Content-Type", "").startswith("application/json"), (
        resp.status_code, resp.headers, resp.text)
    body = resp.json()
    assert set(body) >= {"error", "message", "request_id"}, body
    return body["error"]


def assert_refused(resp, status, code):
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert error_of(resp) == code, resp.text


# --------------------------------------------------- hand-built OAuth 1.0


def oauth_header(
    method,
    url,
    key,
    secret,
    *,
    nonce=None,
    timestamp=None,
    signature_method="HMAC-SHA1",
    body_params=(),
    extra=(),
    drop=(),
    raw=None,
    signature=None,
    sign_url=None,
    realm=None,
):
    """An `Authorization: OAuth ...` value built by hand.

    The signature is computed with oauthlib's own helpers
    (`collect/normalize_parameters`, `base_string_uri`,
    `signature_base_string`, `sign_hmac_*`) over the decoded parameters.
    `extra` adds oauth (or any) header parameters (they are signed),
    `drop` removes defaults, `raw` maps a parameter name to the exact text
    to put between the quotes (e.g. a nonce re-encoded as `%61bc`),
    `signature` replaces the computed signature, `sign_url` signs a
    different URL than the one the request goes to.
    """
    params = {
        "oauth_consumer_key": key,
        "oauth_nonce": nonce or fresh_nonce(),
        "oauth_signature_method": signature_method,
        "oauth_timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "oauth_version": "1.0",
    }
    for d in drop:
        params.pop(d, None)
    pairs = list(params.items()) + list(extra)
    target = urllib.parse.urlsplit(sign_url or url)
    query = urllib.parse.parse_qsl(target.query, keep_blank_values=True)
    all_params = pairs + query + list(body_params)
    if signature is None:
        normalized = oauth_sig.normalize_parameters(all_params)
        base_uri = oauth_sig.base_string_uri(urllib.parse.urlunsplit(target._replace(query="", fragment="")))
        base = oauth_sig.signature_base_string(method, base_uri, normalized)
        client = types.SimpleNamespace(client_secret=secret, resource_owner_secret="")
        signer = {
            "HMAC-SHA1": oauth_sig.sign_hmac_sha1_with_client,
            "HMAC-SHA256": oauth_sig.sign_hmac_sha256_with_client,
            "HMAC-SHA512": oauth_sig.sign_hmac_sha512_with_client,
            "PLAINTEXT": oauth_sig.sign_plaintext_with_client,
        }.get(signature_method)
        signature = signer(base, client) if signer else "x"
    pairs.append(("oauth_signature", signature))
    raw = raw or {}
    parts = []
    if realm is not None:
        parts.append(f'realm="{realm}"')
    for name, value in pairs:
        text = raw.get(name, oauth_utils.escape(value))
        parts.append(f'{name}="{text}"')
    return "OAuth " + ", ".join(parts)


# ---------------------------------------------------------- raw HTTP/1.1


def raw_https(gw, head, body_parts=(), delay=0.0, timeout=TIMEOUT):
    """Send `head` (bytes, up to and including the blank line) and then
    `body_parts` over one TLS connection, and read the answer even if the
    gateway stops reading early (as curl does; requests/urllib3 instead
    raise on the failed write). Returns (status, headers dict, body bytes).
    """
    import ssl

    ctx = ssl.create_default_context(cafile=gw.cert)
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)
    tls = ctx.wrap_socket(sock, server_hostname="localhost")
    data = b""
    try:
        try:
            tls.sendall(head)
            for part in body_parts:
                tls.sendall(part)
                if delay:
                    time.sleep(delay)
        except (ssl.SSLError, OSError):
            pass  # the gateway answered early; read what it said
        try:
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data:
                    hdr, _, rest = data.partition(b"\r\n\r\n")
                    cl = [int(line.split(b":", 1)[1]) for line in hdr.split(b"\r\n")[1:]
                          if line.lower().startswith(b"content-length:")]
                    if cl and len(rest) >= cl[0]:
                        break
                    if not cl and b"connection: close" not in hdr.lower():
                        break
        except (ssl.SSLError, OSError):
            pass
    finally:
        tls.close()
    assert data, "the gateway closed the connection without answering"
    hdr, _, body = data.partition(b"\r\n\r\n")
    lines = hdr.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    gw.bodies.append(body)
    return status, headers, body
