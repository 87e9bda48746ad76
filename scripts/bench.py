#!/usr/bin/env python3
"""The load bench: portcullis against a bare nginx TLS proxy and HAProxy's
jwt_verify, in one run, on this machine. Run through `scripts/bench`.

Layout (2 cores): the proxy under test is pinned to core 0; the load
generator (`portcullis-load`) and the fixed upstream (nginx `return 200`)
share core 1. Every target runs for the whole bench; rounds go through the
targets in turn (the order reversed every other round) so drift in the
machine hits every target alike.

nginx runs twice: with `access_log off`, and with an access log buffered as
the gateway's is. Likewise the gateway: with its access log on (the
default, to a file) and off. Each gateway row is also compared with the
nginx that logs as it does.

Both speak HTTP/1.1 and HTTP/2 (chosen by ALPN). The rows marked HTTP/2
send one request at a time on each of the same number of connections
(`portcullis-load --http2`), to the nginx without a log and the gateway
without one, and are compared with each other.

The rows marked "new connection per request" open a new TCP connection
and make a full TLS handshake (no session resumption) for every request,
as a script that runs curl does (`portcullis-load --new-connection`), to
the nginx without a log and the gateway without one, and are compared with
each other. They are closed-loop only: a fixed-rate run at the rate of the
others would be past what the load generator's own handshakes can reach.
Every other row uses a P-256 (ECDSA) certificate; these are measured with
an RSA-2048 certificate too, on a third nginx and a third gateway (log
off) that present one, and with the session resumed from a ticket of an
earlier connection (`--resume`, as clients that keep a session cache do).

Per target and round:
  * closed loop (`-c CONNS`): req/s, and the proxy's CPU time per request
    read from /proc (schedstat of every thread of the proxy's processes);
  * fixed rate (`--rate RATE`, coordinated-omission corrected): p50/p99,
    and the p99 of each `--window`-second window of the run. A stall of
    the host (steal time, a kernel thread such as kdamond) lasting a few ms
    lifts a whole round's p99 for whichever target it hits; the median of
    the windows' p99s over all rounds is the tail without such stalls, and
    both are reported. The host's steal time during each run is recorded,
    and how long the proxy was runnable but waited for its core.

Everything is written under target/bench/ (keys, certificates, configs,
logs, results.json); nothing secret is committed. The speed figures are
only reported, never asserted.
"""

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "bench"
LOAD = ROOT / "target" / "release" / "portcullis-load"
GATEWAY = ROOT / "target" / "release" / "portcullis"

UPSTREAM_PORT = 9180
NGINX_PORT = 9443
HAPROXY_PORTS = {"HS256": 9444, "RS256": 9445, "ES256": 9446}
PORTCULLIS_PORT = 9447
PORTCULLIS_ADMIN = 9481
# A second gateway with the access log off (log.level warn), measured beside
# the first: the bench's nginx runs with `access_log off`, so these rows do
# the same work as it does.
QUIET_PORT = 9448
QUIET_ADMIN = 9482
# A second nginx that writes an access log, buffered as the gateway's is
# (`buffer=64k flush=200ms`, nginx's `combined` format, to a file): the
# reference for the gateway's rows with the access log on.
NGINX_LOG_PORT = 9449
NGINX = "nginx TLS proxy, no auth"
NGINX_LOG = "nginx TLS proxy, no auth, access log on"
NGINX_H2 = "nginx TLS proxy, no auth, HTTP/2"
NGINX_NEW = "nginx TLS proxy, no auth, new connection per request"
NGINX_NEW_RSA = "nginx TLS proxy, no auth, new connection per request, RSA-2048 certificate"
NGINX_RESUMED = "nginx TLS proxy, no auth, new connection per request, TLS session resumed"
# nginx sent the very requests of the gateway's OAuth 1.0 rows (a signed
# Authorization header of about 250 bytes), which it reads, decodes (HPACK
# over HTTP/2) and passes upstream without checking.
NGINX_OAUTH = "nginx TLS proxy, no auth, OAuth 1.0 requests passed through"
NGINX_H2_OAUTH = "nginx TLS proxy, no auth, HTTP/2, OAuth 1.0 requests passed through"
# And the nginx that logs, sent them: the reference for the gateway's OAuth
# 1.0 row with the access log on (nginx logs the same line whatever the
# request carries; the request is what costs more).
NGINX_LOG_OAUTH = "nginx TLS proxy, no auth, access log on, OAuth 1.0 requests passed through"
# The third nginx and gateway, with an RSA-2048 certificate (gateway log off).
NGINX_RSA_PORT = 9450
RSA_PORT = 9451
RSA_ADMIN = 9483
NEW_CONNECTION = "--new-connection"
PATH = "/model/ABC-1"
AUDIENCE = "bench"
PROXY_CORE = "0"
LOAD_CORE = "1"

procs = []


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def start(name, cmd, core, **kw):
    logf = open(OUT / f"{name}.log", "w")
    p = subprocess.Popen(
        ["taskset", "-c", core, *cmd],
        stdout=logf,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **kw,
    )
    procs.append(p)
    return p


def stop_all():
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout}s; see {OUT}/*.log")


def tree_pids(pid):
    """pid and all its descendants (nginx and haproxy fork workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                try:
                    kids = Path(f"/proc/{p}/task/{t}/children").read_text().split()
                except OSError:
                    kids = []
                todo.extend(int(k) for k in kids)
        except OSError:
            pass
    return out


def cpu_ns(pid, field=0):
    """CPU time (ns) used so far by every thread of pid and its descendants;
    with field=1, the time they spent runnable but waiting for a CPU."""
    total = 0
    for p in tree_pids(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                total += int(Path(f"/proc/{p}/task/{t}/schedstat").read_text().split()[field])
            except (OSError, ValueError, IndexError):
                pass
    return total


def rss_kib(pid):
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


# --------------------------------------------------------------- setup


def openssl(*args):
    run(["openssl", *args], cwd=OUT)


def make_keys():
    log("generating the TLS pair, RSA and P-256 keys, secrets")
    run([str(GATEWAY), "gen-cert", "--out", str(OUT / "certs"), "--host", "localhost"])
    pem = (OUT / "certs" / "gateway.crt").read_text() + (OUT / "certs" / "gateway.key").read_text()
    (OUT / "certs" / "haproxy.pem").write_text(pem)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE",
            "-keyout", "certs/rsa.key", "-out", "certs/rsa.crt")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rs.key")
    openssl("pkey", "-in", "rs.key", "-pubout", "-out", "rs.pub")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "es.key")
    openssl("pkey", "-in", "es.key", "-pubout", "-out", "es.pub")
    return {
        "key_secret": secrets.token_hex(32),
        # HAProxy takes the HS256 secret as a literal string in its config.
        "hs_secret": secrets.token_hex(32),
    }


def issuer(alg):
    return f"https://idp-{alg.lower()}.bench.test"


def mint_tokens(k):
    import jwt  # PyJWT, from tests/interop/requirements.txt

    now = int(time.time())
    claims = {
        "aud": AUDIENCE,
        "sub": "bench-client",
        "scope": "models:read",
        "iat": now,
        "exp": now + 6 * 3600,
    }
    keys = {
        "HS256": k["hs_secret"],
        "RS256": (OUT / "rs.key").read_text(),
        "ES256": (OUT / "es.key").read_text(),
    }
    toks = {alg: jwt.encode(dict(claims, iss=issuer(alg)), key, algorithm=alg) for alg, key in keys.items()}
    for alg, t in toks.items():
        (OUT / f"token-{alg}.txt").write_text(t + "\n")
    return toks


def write_upstream():
    conf = f"""
daemon off;
worker_processes 1;
pid {OUT}/upstream.pid;
error_log {OUT}/upstream-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{UPSTREAM_PORT} reuseport backlog=4096;
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""
    (OUT / "upstream.conf").write_text(conf)


def write_nginx(name, port, access_log, keepalive, cert="gateway"):
    conf = f"""
daemon off;
worker_processes 1;
pid {OUT}/{name}.pid;
error_log {OUT}/{name}-error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
  access_log {access_log};
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  upstream up {{ server 127.0.0.1:{UPSTREAM_PORT}; keepalive {keepalive}; keepalive_requests 10000000; }}
  server {{
    listen 127.0.0.1:{port} ssl http2 backlog=4096;
    ssl_certificate {OUT}/certs/{cert}.crt;
    ssl_certificate_key {OUT}/certs/{cert}.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
    (OUT / f"{name}.conf").write_text(conf)


def write_haproxy(k):
    # What the HAProxy documentation shows for jwt_verify (2.6): pin the
    # algorithm, verify the signature, then check issuer, audience and
    # expiry; one process and one thread per algorithm.
    for alg, port in HAPROXY_PORTS.items():
        key = {"HS256": f'"{k["hs_secret"]}"', "RS256": f'"{OUT}/rs.pub"', "ES256": f'"{OUT}/es.pub"'}[alg]
        conf = f"""
global
  nbthread 1
  maxconn 4096
  tune.ssl.default-dh-param 2048
  pidfile {OUT}/haproxy-{alg}.pid

defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  option http-keep-alive

frontend fe
  bind 127.0.0.1:{port} ssl crt {OUT}/certs/haproxy.pem alpn http/1.1
  http-request deny deny_status 401 unless {{ req.hdr(authorization) -m beg "Bearer " }}
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request deny deny_status 401 unless {{ var(txn.alg) -m str {alg} }}
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_verify(txn.alg,{key}) -m int 1 }}
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_payload_query('$.iss') -m str {issuer(alg)} }}
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_payload_query('$.aud') -m str {AUDIENCE} }}
  http-request set-var(txn.now) date
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request deny deny_status 401 if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
  default_backend be

backend be
  http-reuse always
  server up 127.0.0.1:{UPSTREAM_PORT} maxconn 256
"""
        (OUT / f"haproxy-{alg}.cfg").write_text(conf)


def write_portcullis(k, log_level):
    conf = f"""
listen:
  https: 127.0.0.1:{PORTCULLIS_PORT}
  tls: {{ cert: {OUT}/certs/gateway.crt, key: {OUT}/certs/gateway.key }}
admin:
  listen: 127.0.0.1:{PORTCULLIS_ADMIN}
limits:
  max_connections: 20000
  header_read_timeout: 300s
log:
  level: {log_level}
# A one-minute window so the soak sees nonces expire many times over.
replay:
  window: 60s
routes:
  - name: models
    match: {{ path_prefix: /model }}
    upstream: http://127.0.0.1:{UPSTREAM_PORT}
    namespace: models
keys:
  - id: bench-key
    owner: bench
    secret: ${{BENCH_KEY_SECRET}}
    grants:
      - {{ namespace: models, actions: [read], resources: ["/model/ABC-*"] }}
jwt:
  issuers:
    - issuer: {issuer("HS256")}
      audiences: [{AUDIENCE}]
      algorithms: [HS256]
      hs_secret: ${{BENCH_HS_SECRET}}
    - issuer: {issuer("RS256")}
      audiences: [{AUDIENCE}]
      algorithms: [RS256]
      public_key_pem: {OUT}/rs.pub
    - issuer: {issuer("ES256")}
      audiences: [{AUDIENCE}]
      algorithms: [ES256]
      public_key_pem: {OUT}/es.pub
"""
    (OUT / "portcullis.yaml").write_text(conf)
    quiet = (conf.replace(f"127.0.0.1:{PORTCULLIS_PORT}", f"127.0.0.1:{QUIET_PORT}")
             .replace(f"127.0.0.1:{PORTCULLIS_ADMIN}", f"127.0.0.1:{QUIET_ADMIN}")
             .replace(f"level: {log_level}", "level: warn"))
    (OUT / "portcullis-quiet.yaml").write_text(quiet)
    rsa = (quiet.replace(f"127.0.0.1:{QUIET_PORT}", f"127.0.0.1:{RSA_PORT}")
           .replace(f"127.0.0.1:{QUIET_ADMIN}", f"127.0.0.1:{RSA_ADMIN}")
           .replace("certs/gateway.", "certs/rsa."))
    (OUT / "portcullis-rsa.yaml").write_text(rsa)


# --------------------------------------------------------------- load


def load(url, mode, args, extra=(), rate=None, duration=None, conns=None, warmup=0):
    cmd = [
        "taskset", "-c", LOAD_CORE, str(LOAD),
        "--url", url, "--mode", mode,
        "-c", str(conns or args.connections),
        "-d", f"{duration or args.duration}s",
        "--warmup", f"{warmup}s",
        "--json",
    ]
    if url.startswith("https"):
        if "--cacert" not in extra:
            cmd += ["--cacert", str(OUT / "certs" / "gateway.crt")]
        cmd += ["--host-header", f"localhost:{url.split(':')[2].split('/')[0]}"]
    if rate:
        cmd += ["--rate", str(rate)]
        if args.window:
            cmd += ["--window", f"{args.window}s"]
    cmd += list(extra)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=(duration or args.duration) + warmup + 60)
    if r.returncode != 0:
        raise SystemExit(f"load generator failed: {' '.join(cmd)}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def targets(k, pids):
    cred = ["--key-id", "bench-key", "--secret", k["key_secret"]]
    rsa_ca = ["--cacert", str(OUT / "certs" / "rsa.crt")]
    pc = f"https://127.0.0.1:{PORTCULLIS_PORT}{PATH}"
    t = [
        ("direct (no proxy, plain http)", None, f"http://127.0.0.1:{UPSTREAM_PORT}{PATH}", "none", []),
        (NGINX, pids["nginx"], f"https://127.0.0.1:{NGINX_PORT}{PATH}", "none", []),
        (NGINX_LOG, pids["nginx-log"], f"https://127.0.0.1:{NGINX_LOG_PORT}{PATH}", "none", []),
        (NGINX_H2, pids["nginx"], f"https://127.0.0.1:{NGINX_PORT}{PATH}", "none", ["--http2"]),
        (NGINX_OAUTH, pids["nginx"], f"https://127.0.0.1:{NGINX_PORT}{PATH}", "oauth1", cred),
        (NGINX_H2_OAUTH, pids["nginx"], f"https://127.0.0.1:{NGINX_PORT}{PATH}", "oauth1", cred + ["--http2"]),
        (NGINX_LOG_OAUTH, pids["nginx-log"], f"https://127.0.0.1:{NGINX_LOG_PORT}{PATH}", "oauth1", cred),
        (NGINX_NEW, pids["nginx"], f"https://127.0.0.1:{NGINX_PORT}{PATH}", "none", [NEW_CONNECTION]),
        (NGINX_NEW_RSA, pids["nginx-rsa"], f"https://127.0.0.1:{NGINX_RSA_PORT}{PATH}", "none", [NEW_CONNECTION] + rsa_ca),
        (NGINX_RESUMED, pids["nginx"], f"https://127.0.0.1:{NGINX_PORT}{PATH}", "none", [NEW_CONNECTION, "--resume"]),
    ]
    for alg, port in HAPROXY_PORTS.items():
        t.append((f"HAProxy jwt_verify {alg}", pids[f"haproxy-{alg}"], f"https://127.0.0.1:{port}{PATH}", "jwt",
                  ["--token-file", str(OUT / f"token-{alg}.txt")]))
    t += [
        ("portcullis api_key (Basic)", pids["portcullis"], pc, "api_key", cred),
        ("portcullis api_key (X-Api-Key)", pids["portcullis"], pc, "api_key", cred + ["--api-key-header"]),
        ("portcullis oauth1 HMAC-SHA1", pids["portcullis"], pc, "oauth1", cred),
    ]
    for alg in HAPROXY_PORTS:
        t.append((f"portcullis jwt {alg} (cached)", pids["portcullis"], pc, "jwt",
                  ["--token-file", str(OUT / f"token-{alg}.txt")]))
    t.append(("portcullis reject (wrong secret, 401)", pids["portcullis"], pc, "reject", cred))
    quiet = f"https://127.0.0.1:{QUIET_PORT}{PATH}"
    t += [
        ("portcullis api_key (Basic), access log off", pids["portcullis-quiet"], quiet, "api_key", cred),
        ("portcullis oauth1 HMAC-SHA1, access log off", pids["portcullis-quiet"], quiet, "oauth1", cred),
        ("portcullis api_key (Basic), HTTP/2, access log off", pids["portcullis-quiet"], quiet, "api_key", cred + ["--http2"]),
        ("portcullis oauth1 HMAC-SHA1, HTTP/2, access log off", pids["portcullis-quiet"], quiet, "oauth1", cred + ["--http2"]),
        ("portcullis api_key (Basic), new connection per request, access log off", pids["portcullis-quiet"], quiet, "api_key",
         cred + [NEW_CONNECTION]),
        ("portcullis api_key (Basic), new connection per request, RSA-2048 certificate, access log off", pids["portcullis-rsa"],
         f"https://127.0.0.1:{RSA_PORT}{PATH}", "api_key", cred + [NEW_CONNECTION] + rsa_ca),
        ("portcullis api_key (Basic), new connection per request, TLS session resumed, access log off", pids["portcullis-quiet"],
         quiet, "api_key", cred + [NEW_CONNECTION, "--resume"]),
    ]
    return t


def dash(x):
    return "–" if x is None else x


# How each reference nginx differs, in the report's words.
SAME_LOG_LABEL = {NGINX_LOG: "log on", NGINX_H2: "log off, HTTP/2", NGINX_NEW: "log off, new connections",
                  NGINX_NEW_RSA: "log off, new connections, RSA", NGINX_RESUMED: "log off, resumed"}


def median_range(xs):
    return statistics.median(xs), min(xs), max(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8, help="seconds per closed-loop run")
    ap.add_argument("--rate-duration", type=int, default=8,
                    help="seconds per fixed-rate run (0: no fixed-rate runs, CPU and req/s only, for many rounds)")
    ap.add_argument("--window", type=float, default=1.0, help="seconds per latency window within a fixed-rate run (0: no windows)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rate", type=int, default=0, help="fixed rate for the latency runs (0: 60%% of the slowest target in round 1, at most 10000)")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only matching targets (plus direct and nginx)")
    ap.add_argument("--skip", default="", help="comma-separated substrings: leave out matching targets (after --only)")
    ap.add_argument("--log-level", default="info", help="portcullis log.level (info: one access-log line a request)")
    ap.add_argument("--idle-conns", type=int, default=10000, help="idle keep-alive TLS connections held for the memory figure (0: skip)")
    ap.add_argument("--soak", type=int, default=0, help="seconds of oauth1 soak at --soak-rate with RSS sampled (0: skip)")
    ap.add_argument("--soak-rate", type=int, default=5000)
    args = ap.parse_args()

    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "certs").mkdir(parents=True)
    k = make_keys()
    mint_tokens(k)
    write_upstream()
    # nginx keeps at most `keepalive` idle upstream connections and closes
    # the rest after each answer: as many as the load's connections (the
    # gateway keeps up to 512), or each request past 64 would open one.
    keepalive = max(64, args.connections)
    write_nginx("nginx", NGINX_PORT, "off", keepalive)
    write_nginx("nginx-log", NGINX_LOG_PORT, f"{OUT}/nginx-access.log combined buffer=64k flush=200ms", keepalive)
    write_nginx("nginx-rsa", NGINX_RSA_PORT, "off", keepalive, cert="rsa")
    write_haproxy(k)
    write_portcullis(k, args.log_level)
    env = dict(os.environ, BENCH_KEY_SECRET=k["key_secret"], BENCH_HS_SECRET=k["hs_secret"])
    run([str(GATEWAY), "check", "-c", str(OUT / "portcullis.yaml")], env=env)

    pids = {}
    try:
        start("upstream", ["nginx", "-c", str(OUT / "upstream.conf"), "-p", str(OUT)], LOAD_CORE)
        wait_port(UPSTREAM_PORT)
        pids["nginx"] = start("nginx", ["nginx", "-c", str(OUT / "nginx.conf"), "-p", str(OUT)], PROXY_CORE).pid
        pids["nginx-log"] = start("nginx-log", ["nginx", "-c", str(OUT / "nginx-log.conf"), "-p", str(OUT)], PROXY_CORE).pid
        pids["nginx-rsa"] = start("nginx-rsa", ["nginx", "-c", str(OUT / "nginx-rsa.conf"), "-p", str(OUT)], PROXY_CORE).pid
        for alg in HAPROXY_PORTS:
            pids[f"haproxy-{alg}"] = start(f"haproxy-{alg}", ["haproxy", "-db", "-f", str(OUT / f"haproxy-{alg}.cfg")], PROXY_CORE).pid
        pcp = start("portcullis", [str(GATEWAY), "serve", "-c", str(OUT / "portcullis.yaml")], PROXY_CORE, env=env)
        pids["portcullis"] = pcp.pid
        pids["portcullis-quiet"] = start("portcullis-quiet", [str(GATEWAY), "serve", "-c", str(OUT / "portcullis-quiet.yaml")], PROXY_CORE, env=env).pid
        pids["portcullis-rsa"] = start("portcullis-rsa", [str(GATEWAY), "serve", "-c", str(OUT / "portcullis-rsa.yaml")], PROXY_CORE, env=env).pid
        for port in [NGINX_PORT, NGINX_LOG_PORT, NGINX_RSA_PORT, PORTCULLIS_PORT, QUIET_PORT, RSA_PORT, *HAPROXY_PORTS.values()]:
            wait_port(port)
        time.sleep(1)
        idle_rss = rss_kib(pcp.pid)
        log(f"portcullis idle RSS: {idle_rss} KiB")

        ts = targets(k, pids)
        if args.only:
            want = [w.strip() for w in args.only.split(",") if w.strip()]
            ts = [t for t in ts if t[0].startswith(("direct", "nginx")) or any(w in t[0] for w in want)]
        if args.skip:
            skip = [w.strip() for w in args.skip.split(",") if w.strip()]
            ts = [t for t in ts if not any(w in t[0] for w in skip)]

        # Every target answers as expected before anything is measured.
        for name, _pid, url, mode, extra in ts:
            r = load(url, mode, args, extra, duration=1, conns=2)
            if r["errors"]:
                raise SystemExit(f"{name}: {r['errors']} unexpected answers in the check run: {r['status']}")
            if NEW_CONNECTION in extra and r["connections_opened"] < r["requests"]:
                raise SystemExit(f"{name}: {r['requests']} requests on only {r['connections_opened']} connections")
            if "--resume" in extra and r["connections_resumed"] + 4 < r["connections_opened"]:
                raise SystemExit(f"{name}: only {r['connections_resumed']} of {r['connections_opened']} handshakes resumed")
        log("all targets answer as expected")

        results = {t[0]: {"rps": [], "cpu_us": [], "cpu_rounds": [], "p50": [], "p99": [], "window_p99": [], "steal_ms": [], "wait_ms": [], "rate_errors": [], "behind": []} for t in ts}
        rate = args.rate
        for rnd in range(args.rounds):
            order = ts if rnd % 2 == 0 else list(reversed(ts))
            for name, pid, url, mode, extra in order:
                load(url, mode, args, extra, duration=1)  # warm connections, caches and pools
                c0 = cpu_ns(pid) if pid else 0
                r = load(url, mode, args, extra)
                c1 = cpu_ns(pid) if pid else 0
                res = results[name]
                res["rps"].append(r["rps"])
                cpu = (c1 - c0) / 1000 / r["requests"] if pid and r["requests"] else None
                if cpu is not None:
                    res["cpu_us"].append(cpu)
                # Round by round (None where a round had no figure), for
                # the ratios to the reference in the same round.
                res["cpu_rounds"].append(cpu)
                if r["errors"]:
                    log(f"  {name}: {r['errors']} errors {r['status']}")
                log(f"round {rnd + 1} {name}: {r['rps']:.0f} req/s" + (f", {res['cpu_us'][-1]:.1f} µs CPU/req" if pid else ""))
            if args.rate_duration == 0:
                continue
            if rate == 0:
                slowest = min(statistics.median(results[t[0]]["rps"]) for t in ts if NEW_CONNECTION not in t[4])
                rate = max(1000, min(10000, int(slowest * 0.6) // 500 * 500))
                log(f"fixed rate for latency: {rate} req/s")
            for name, pid, url, mode, extra in order:
                if NEW_CONNECTION in extra:
                    continue
                s0, w0 = steal_ms(), cpu_ns(pid, 1) if pid else 0
                r = load(url, mode, args, extra, rate=rate, duration=args.rate_duration, warmup=1)
                res = results[name]
                res["steal_ms"].append(steal_ms() - s0)
                res["wait_ms"].append(round((cpu_ns(pid, 1) - w0) / 1e6, 1) if pid else None)
                res["p50"].append(r["p50_us"])
                res["p99"].append(r["p99_us"])
                full = max((w["requests"] for w in r.get("windows", [])), default=0)
                res["window_p99"] += [w["p99_us"] for w in r.get("windows", []) if w["requests"] and w["requests"] * 2 >= full]
                res["rate_errors"].append(r["errors"])
                res["behind"].append(r.get("behind_schedule", 0))
                windows = " ".join(str(w["p99_us"]) for w in r.get("windows", []))
                log(f"round {rnd + 1} {name} @ {rate}/s: p50 {r['p50_us']} µs, p99 {r['p99_us']} µs"
                    + (f" (windows: {windows})" if windows else "") + f", steal {res['steal_ms'][-1]} ms"
                    + (f", proxy waited for its core {res['wait_ms'][-1]} ms" if pid else ""))

        busy_rss = rss_kib(pcp.pid)
        # The soak first: the idle-connection run leaves freed memory that
        # malloc keeps, which would hide the soak's own RSS level.
        soak = None
        if args.soak:
            soak = soak_run(args, k, pcp.pid)
        idle = None
        if args.idle_conns:
            idle = idle_connections(args, pcp.pid)
        report(args, results, rate, {"idle_rss_kib": idle_rss, "after_load_rss_kib": busy_rss, "idle_conns": idle, "soak": soak})
    finally:
        stop_all()


def idle_connections(args, pid):
    n = args.idle_conns
    before = rss_kib(pid)
    hold = 20
    cmd = ["taskset", "-c", LOAD_CORE, str(LOAD), "--url", f"https://127.0.0.1:{PORTCULLIS_PORT}/status",
           "--mode", "none", "--cacert", str(OUT / "certs" / "gateway.crt"), "--host-header", f"localhost:{PORTCULLIS_PORT}",
           "--idle", str(n), "--hold", f"{hold}s", "--expect-status", "404", "--json"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = before
    t_end = time.time() + 600
    while p.poll() is None and time.time() < t_end:
        peak = max(peak, rss_kib(pid))
        time.sleep(0.5)
    out, err = p.communicate(timeout=60)
    try:
        r = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        r = {"error": err[-2000:]}
    time.sleep(2)
    after = rss_kib(pid)
    # mimalloc returns freed pages to the kernel after a delay, but only when
    # the allocator is next called: a gateway left wholly idle keeps the
    # connections' memory. Two seconds of light traffic show what it keeps.
    load(f"https://127.0.0.1:{PORTCULLIS_PORT}/status", "none", args, extra=["--expect-status", "404"],
         rate=500, duration=2, conns=4)
    after_light = rss_kib(pid)
    res = {"connections": n, "rss_before_kib": before, "rss_peak_kib": peak, "rss_after_close_kib": after,
           "rss_after_light_traffic_kib": after_light, "load": r}
    log(f"idle connections: {json.dumps(res)}")
    return res


def soak_run(args, k, pid):
    """oauth1 at a fixed rate with RSS and live nonces sampled every 10 s;
    with the bench's 60 s replay window nonces expire from the second
    minute on, so the store turns over many times."""
    cmd = ["taskset", "-c", LOAD_CORE, str(LOAD), "--url", f"https://127.0.0.1:{PORTCULLIS_PORT}{PATH}",
           "--mode", "oauth1", "--key-id", "bench-key", "--secret", k["key_secret"],
           "--cacert", str(OUT / "certs" / "gateway.crt"), "--host-header", f"localhost:{PORTCULLIS_PORT}",
           "-c", "32", "--rate", str(args.soak_rate), "-d", f"{args.soak}s", "--json"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []
    t0 = time.time()
    while p.poll() is None:
        samples.append((round(time.time() - t0), rss_kib(pid), nonces()))
        time.sleep(10)
    out, err = p.communicate()
    try:
        r = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        r = {"error": err[-2000:]}
    log(f"soak: {r}")
    return {"seconds": args.soak, "rate": args.soak_rate, "samples": samples, "load": r}


def nonces():
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{PORTCULLIS_ADMIN}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("portcullis_replay_nonces "):
            return float(line.split()[-1])
    return None


def steal_ms():
    """Time the hypervisor ran something else while this VM's CPUs wanted
    to run (all CPUs, /proc/stat `steal`, in ms)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) * 1000 // os.sysconf("SC_CLK_TCK")


def report(args, results, rate, mem):
    nginx = results.get(NGINX)
    direct = results.get("direct (no proxy, plain http)")
    n_rps = statistics.median(nginx["rps"])
    n_cpu = statistics.median(nginx["cpu_us"])
    # Against the nginx that logs as the row does: the gateway's rows with
    # the access log on against the nginx with one, the rest against the
    # nginx without.
    logging = results.get(NGINX_LOG)
    h2 = results.get(NGINX_H2)
    new = results.get(NGINX_NEW)
    new_rsa = results.get(NGINX_NEW_RSA)
    resumed = results.get(NGINX_RESUMED)

    # Whether a gateway row writes the access log.
    def logs(name):
        return "access log off" not in name and args.log_level == "info"

    def same_log(name):
        if name.startswith("portcullis") and "HTTP/2" in name:
            return h2
        if name.startswith("portcullis") and "RSA-2048" in name:
            return new_rsa
        if name.startswith("portcullis") and "resumed" in name:
            return resumed
        if name.startswith("portcullis") and "new connection" in name:
            return new
        if name.startswith("portcullis") and logs(name):
            return logging
        if name.startswith("portcullis") or name == NGINX:
            return nginx
        return None
    # The gateway's OAuth 1.0 rows against nginx sent the same requests
    # (and logging as the row does).
    def same_requests(name):
        if not name.startswith("portcullis oauth1"):
            return None
        if "HTTP/2" in name:
            return results.get(NGINX_H2_OAUTH)
        if logs(name):
            return results.get(NGINX_LOG_OAUTH)
        return results.get(NGINX_OAUTH)

    # The CPU ratio to a reference round by round: each round's row
    # against the reference measured in the same round (minutes apart at
    # most), the median and range of those ratios. On a shared VM whose
    # speed drifts between stretches this pairs like with like, where the
    # ratio of two medians can pair a fast round of one with a slow round
    # of the other.
    def paired(v, ref):
        if not ref:
            return None
        rs = [a / b for a, b in zip(v["cpu_rounds"], ref["cpu_rounds"]) if a and b]
        if not rs:
            return None
        # [median, min, max, lower quartile, upper quartile, rounds above
        # 1.0, rounds]: with many rounds the middle half says more than
        # the range, which one stalled round sets.
        q1, _, q3 = statistics.quantiles(rs, n=4, method="inclusive") if len(rs) > 1 else (rs[0],) * 3
        return [round(x, 2) for x in (*median_range(rs), q1, q3)] + [sum(x > 1 for x in rs), len(rs)]

    def haproxy_of(name):
        if not name.startswith("portcullis jwt"):
            return None
        return next((results.get(f"HAProxy jwt_verify {alg}") for alg in HAPROXY_PORTS if alg in name), None)

    d_p99 = statistics.median(direct["p99"]) if direct["p99"] else None
    d_wp99 = statistics.median(direct["window_p99"]) if direct["window_p99"] else None
    rows = []
    for name, v in results.items():
        rps = median_range(v["rps"])
        cpu = median_range(v["cpu_us"]) if v["cpu_us"] else None
        p50 = statistics.median(v["p50"]) if v["p50"] else None
        p99 = statistics.median(v["p99"]) if v["p99"] else None
        wp99 = statistics.median(v["window_p99"]) if v["window_p99"] else None
        ref = same_log(name)
        req_ref = same_requests(name)
        rows.append({
            "target": name,
            "rps_median": round(rps[0]), "rps_min": round(rps[1]), "rps_max": round(rps[2]),
            "rps_vs_nginx": round(rps[0] / n_rps, 2),
            "cpu_us_median": round(cpu[0], 1) if cpu else None,
            "cpu_us_min": round(cpu[1], 1) if cpu else None,
            "cpu_us_max": round(cpu[2], 1) if cpu else None,
            "cpu_vs_nginx": round(cpu[0] / n_cpu, 2) if cpu else None,
            "same_log_as": next(n for n, v in ((NGINX_LOG, logging), (NGINX_H2, h2), (NGINX_NEW, new),
                                               (NGINX_NEW_RSA, new_rsa), (NGINX_RESUMED, resumed), (NGINX, nginx))
                              if v is ref)
            if ref else None,
            "cpu_vs_nginx_same_log": round(cpu[0] / statistics.median(ref["cpu_us"]), 2) if cpu and ref else None,
            "rps_vs_nginx_same_log": round(rps[0] / statistics.median(ref["rps"]), 2) if ref else None,
            "cpu_vs_nginx_same_requests": round(cpu[0] / statistics.median(req_ref["cpu_us"]), 2) if cpu and req_ref else None,
            "rps_vs_nginx_same_requests": round(rps[0] / statistics.median(req_ref["rps"]), 2) if req_ref else None,
            "cpu_us_rounds": [round(x, 2) if x else None for x in v["cpu_rounds"]],
            "cpu_paired_vs_nginx_same_log": paired(v, ref) if name.startswith("portcullis") else None,
            "cpu_paired_vs_nginx_same_requests": paired(v, req_ref),
            "cpu_paired_vs_haproxy": paired(v, haproxy_of(name)),
            "p50_us": round(p50) if p50 is not None else None, "p99_us": round(p99) if p99 is not None else None,
            "added_p99_us": round(p99 - d_p99) if p99 is not None and d_p99 is not None else None,
            "p99_rounds_us": v["p99"],
            "p99_window_median_us": round(wp99) if wp99 is not None else None,
            "added_p99_window_median_us": round(wp99 - d_wp99) if wp99 is not None and d_wp99 is not None else None,
            "windows": len(v["window_p99"]),
            "steal_ms_rounds": v["steal_ms"],
            "core_wait_ms_rounds": v["wait_ms"],
            "rate_errors": sum(v["rate_errors"]), "behind_schedule": sum(v["behind"]),
        })
    machine = {
        "date": dt.date.today().isoformat(),
        "cpu": next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?"),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "nginx": run(["nginx", "-v"]).stderr.strip(),
        "haproxy": run(["haproxy", "-v"]).stdout.splitlines()[0],
        "rounds": args.rounds, "duration_s": args.duration, "connections": args.connections,
        "rate": rate, "rate_duration_s": args.rate_duration, "window_s": args.window or None,
        "log_level": args.log_level,
    }
    out = {"machine": machine, "rows": rows, "memory": mem}
    (OUT / "results.json").write_text(json.dumps(out, indent=2))
    lines = [
        f"| target | req/s median (range) | × nginx | CPU µs/req median (range) | × nginx | × nginx, same logging: CPU, req/s | p50 µs {f'@ {rate}/s' if args.rate_duration else '(no fixed-rate runs)'} | p99 µs | added p99 µs | p99 µs, median of {args.window:g} s windows | added |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu = f"{r['cpu_us_median']} ({r['cpu_us_min']}–{r['cpu_us_max']})" if r["cpu_us_median"] is not None else "–"
        same = "–"
        if r["same_log_as"] and r["target"] not in (NGINX, NGINX_LOG, NGINX_H2, NGINX_NEW, NGINX_NEW_RSA, NGINX_RESUMED):
            how = SAME_LOG_LABEL.get(r["same_log_as"], "log off")
            same = f"{r['cpu_vs_nginx_same_log']}, {r['rps_vs_nginx_same_log']} ({how})"
            if r["cpu_vs_nginx_same_requests"] is not None:
                same += f"; {r['cpu_vs_nginx_same_requests']}, {r['rps_vs_nginx_same_requests']} (same requests, {how})"
        lines.append(
            f"| {r['target']} | {r['rps_median']} ({r['rps_min']}–{r['rps_max']}) | {r['rps_vs_nginx']} | {cpu} | "
            f"{dash(r['cpu_vs_nginx'])} | {same} | {dash(r['p50_us'])} | {dash(r['p99_us'])} | {dash(r['added_p99_us'])} | "
            f"{dash(r['p99_window_median_us'])} | {dash(r['added_p99_window_median_us'])} |"
        )
    lines += ["", "CPU against the reference in the same round (each round's ratio; median, and range over the rounds):", ""]
    for r in rows:
        parts = []
        how = SAME_LOG_LABEL.get(r["same_log_as"], "log off")
        for key, what in (("cpu_paired_vs_nginx_same_log", f"nginx ({how})"),
                          ("cpu_paired_vs_nginx_same_requests", f"nginx ({how}) sent the same requests"),
                          ("cpu_paired_vs_haproxy", "HAProxy, same algorithm")):
            if r[key]:
                med, lo, hi, q1, q3, above, n = r[key]
                parts.append(f"{med} (range {lo}–{hi}, middle half {q1}–{q3}, above 1.0 in {above} of {n} rounds) against {what}")
        if parts:
            lines.append(f"- {r['target']}: " + "; ".join(parts))
    if args.rate_duration:
        lines += ["", "p99 µs per round (in brackets: the host's steal time during the run, and the ms the proxy was",
                  "runnable but waiting for its core):", ""]
    for r in rows:
        if not r["p99_rounds_us"]:
            continue
        per = ", ".join(f"{p} ({st}" + (f", {w})" if w is not None else ")")
                        for p, st, w in zip(r["p99_rounds_us"], r["steal_ms_rounds"], r["core_wait_ms_rounds"]))
        lines.append(f"- {r['target']}: {per}")
    table = "\n".join(lines)
    (OUT / "results.md").write_text(table + "\n")
    print()
    print(json.dumps(machine))
    print(table)
    print(f"\nmemory: {json.dumps(mem)}")
    print(f"\nresults: {OUT}/results.json and results.md")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
