"""Logs on a terminal: the real gateway with its stderr on a pseudo-terminal.

On a terminal the access lines carry tracing-subscriber's colours (the
gateway builds them by hand, for speed), with the same fields as on a pipe,
and the credential never appears in them.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

from conftest import BIN, READY_TIMEOUT, TIMEOUT, default_route, free_port, new_secret, sha256_hash

ANSI = re.compile(r"\x1b\[[0-9;]*m")

#: One access line as tracing-subscriber's text format writes it in colour.
COLOURED_ACCESS = re.compile(
    r"^\x1b\[2m\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\x1b\[0m"
    r" \x1b\[32m INFO\x1b\[0m \x1b\[2mportcullis::access\x1b\[0m\x1b\[2m:\x1b\[0m "
    r"\x1b\[3mrequest_id\x1b\[0m\x1b\[2m=\x1b\[0m\"[0-9a-f]{32}\""
    r"( \x1b\[3m[a-z_]+\x1b\[0m\x1b\[2m=\x1b\[0m[^\x1b]*)+$"
)


class PtyReader(threading.Thread):
    """Reads a pty's master side until the other side closes."""

    def __init__(self, fd):
        super().__init__(daemon=True)
        self.fd = fd
        self.data = b""
        self.lock = threading.Lock()

    def run(self):
        while True:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO once the child has closed its side
                return
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def lines(self):
        with self.lock:
            text = self.data.decode(errors="replace")
        # The terminal turns "\n" into "\r\n".
        return [l.rstrip("\r") for l in text.split("\n") if l.strip()]


def test_access_lines_on_a_terminal_are_coloured_as_tracing_writes_them(upstream):
    workdir = Path(tempfile.mkdtemp(prefix="portcullis-tty-"))
    gen = subprocess.run([BIN, "gen-cert", "--out", str(workdir / "certs")],
                         capture_output=True, text=True, timeout=30)
    assert gen.returncode == 0, gen.stderr
    secret = new_secret()
    port, admin = free_port(), free_port()
    config = {
        "listen": {"https": f"127.0.0.1:{port}",
                   "tls": {"cert": str(workdir / "certs" / "gateway.crt"),
                           "key": str(workdir / "certs" / "gateway.key")}},
        "admin": {"listen": f"127.0.0.1:{admin}"},
        "routes": [default_route(upstream.url)],
        "keys": [{"id": "tty-key", "owner": "tty", "secret_hash": sha256_hash(secret),
                  "grants": [{"namespace": "models", "actions": ["read"]}]}],
    }
    (workdir / "gateway.yaml").write_text(json.dumps(config))
    env = dict(os.environ, PORTCULLIS_LOG="info")
    master, slave = pty.openpty()
    proc = subprocess.Popen([BIN, "serve", "-c", str(workdir / "gateway.yaml")], cwd=workdir,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave)
    os.close(slave)
    reader = PtyReader(master)
    reader.start()
    try:
        deadline = time.time() + READY_TIMEOUT
        while True:
            assert proc.poll() is None, reader.lines()
            try:
                if requests.get(f"http://127.0.0.1:{admin}/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.time() < deadline, reader.lines()
            time.sleep(0.05)
        cert = str(workdir / "certs" / "gateway.crt")
        url = f"https://localhost:{port}/model/ABC-1"
        ok = requests.get(url, auth=("tty-key", secret), verify=cert, timeout=TIMEOUT)
        assert ok.status_code == 200
        denied = requests.get(url, auth=("tty-key", secret + "x"), verify=cert, timeout=TIMEOUT)
        assert denied.status_code == 401

        deadline = time.time() + 5
        while len([l for l in reader.lines() if "portcullis::access" in l]) < 2:
            assert time.time() < deadline, reader.lines()
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=5)
        os.close(master)
        # The generated certificate and key go with the run.
        shutil.rmtree(workdir, ignore_errors=True)

    lines = reader.lines()
    access = [l for l in lines if "portcullis::access" in l]
    assert len(access) == 2, lines
    for line in access:
        assert COLOURED_ACCESS.match(line), repr(line)
    plain = [ANSI.sub("", l) for l in access]
    assert re.search(
        r' client=127\.0\.0\.1 method=GET path=/model/ABC-1 route="models" key_id="tty-key"'
        r' scheme="api_key" decision="allowed" status=200 error="-" latency_us=\d+$', plain[0]), plain[0]
    assert re.search(r' decision="denied" status=401 error="[a-z_]+" latency_us=\d+$', plain[1]), plain[1]
    # The other lines are coloured by tracing itself: the same layout.
    startup = next(l for l in lines if "portcullis listening" in l)
    assert startup.startswith("\x1b[2m") and "\x1b[32m INFO\x1b[0m \x1b[2mportcullis::cli\x1b[0m" in startup
    assert secret not in "\n".join(lines)
