"""API keys as the everyday clients send them: Python `requests` (URL
userinfo and `auth=`), curl over HTTP/2 and HTTP/1.1."""

import base64
import socket
import ssl

import pytest
import requests

from conftest import assert_refused, default_route, new_secret

K1 = "K1"
SECRET = new_secret()


@pytest.fixture(scope="module")
def gw(gateway_factory, upstream_server):
    return gateway_factory(
        routes=[default_route(upstream_server.url),
                default_route(upstream_server.url, name="slow", match={"path_prefix": "/slow"})],
        keys=[{"id": K1, "owner": "alice", "secret": SECRET,
               "grants": [{"namespace": "models", "actions": ["read", "create"],
                           "resources": ["/model/ABC-*", "/slow/*"]}]}],
        limits={"upstream_timeout": "1s"},
    )


def assert_forwarded_as_k1(rec):
    assert rec.header("X-Auth-Subject") == "alice"
    assert rec.header("X-Auth-Key-Id") == K1
    assert rec.header("X-Auth-Scheme") == "api_key"
    # the namespace:action pairs the key holds in this route's namespace
    assert set(rec.header("X-Auth-Grants").split()) == {"models:read", "models:create"}
    assert not rec.has_header("Authorization"), rec.headers
    assert not rec.has_header("X-Api-Key"), rec.headers


def test_url_userinfo(gw, upstream):
    # requests takes id:secret from the URL and sends it as HTTP Basic.
    r = gw.get(f"https://{K1}:{SECRET}@localhost:{gw.port}/model/ABC-1?x=1")
    assert r.status_code == 200, r.text
    assert r.text == "ok"
    assert r.headers.get("X-Request-Id")
    rec = upstream.last()
    assert rec.method == "GET" and rec.target == "/model/ABC-1?x=1"
    assert_forwarded_as_k1(rec)


def test_auth_tuple(gw, upstream):
    r = gw.get("/model/ABC-2", auth=(K1, SECRET))
    assert r.status_code == 200, r.text
    assert_forwarded_as_k1(upstream.last())


def test_x_api_key_header(gw, upstream):
    r = gw.get("/model/ABC-3", headers={"X-Api-Key": SECRET})
    assert r.status_code == 200, r.text
    assert_forwarded_as_k1(upstream.last())


def test_wrong_secret(gw, upstream):
    r = gw.get(f"https://{K1}:wrong-{SECRET}@localhost:{gw.port}/model/ABC-1")
    assert_refused(r, 401, "invalid_credentials")
    assert "Basic" in " ".join(r.headers.get("WWW-Authenticate", "").split(","))
    r = gw.get("/model/ABC-1", auth=(K1, SECRET[:-1]))
    assert_refused(r, 401, "invalid_credentials")
    assert upstream.records == []


def test_unknown_key_same_answer_as_wrong_secret(gw, upstream):
    r = gw.get("/model/ABC-1", auth=("no-such-key", SECRET))
    assert_refused(r, 401, "invalid_credentials")
    assert upstream.records == []


def test_missing_credentials(gw, upstream):
    r = gw.get("/model/ABC-1")
    assert_refused(r, 401, "missing_credentials")
    assert upstream.records == []


def test_query_string_api_key_never_accepted(gw, upstream):
    r = gw.get(f"/model/ABC-1?api_key={SECRET}")
    assert r.status_code == 401, r.text
    assert upstream.records == []


def test_insufficient_grant(gw, upstream):
    r = gw.get("/model/XYZ-1", auth=(K1, SECRET))
    assert_refused(r, 403, "insufficient_grant")
    r = gw.request("DELETE", "/model/ABC-1", auth=(K1, SECRET))
    assert_refused(r, 403, "insufficient_grant")
    assert upstream.records == []


def test_forged_identity_headers_are_replaced(gw, upstream):
    r = gw.get("/model/ABC-1", auth=(K1, SECRET),
               headers={"X-Auth-Subject": "root", "X_Auth_Key_Id": "admin",
                        "X-HTTP-Method-Override": "DELETE"})
    assert r.status_code == 200, r.text
    rec = upstream.last()
    assert rec.header_all("X-Auth-Subject") == ["alice"]
    assert [v for n, v in rec.headers if n.lower().replace("_", "-") == "x-auth-key-id"] == [K1]
    assert not rec.has_header("X-HTTP-Method-Override")


def test_curl_http2(gw, upstream):
    code, version, body = gw.curl("--http2", userinfo=f"{K1}:{SECRET}")
    assert (code, version, body) == (200, "2", b"ok")
    assert_forwarded_as_k1(upstream.last())


def test_curl_http2_without_credentials(gw, upstream):
    code, version, body = gw.curl("--http2")
    assert (code, version) == (401, "2")
    assert b'"missing_credentials"' in body
    assert upstream.records == []


def test_curl_http2_wrong_secret(gw, upstream):
    code, version, body = gw.curl("--http2", userinfo=f"{K1}:nope")
    assert (code, version) == (401, "2")
    assert b'"invalid_credentials"' in body
    assert upstream.records == []


def test_curl_http11(gw, upstream):
    code, version, body = gw.curl("--http1.1", userinfo=f"{K1}:{SECRET}")
    assert (code, version, body) == (200, "1.1", b"ok")
    assert_forwarded_as_k1(upstream.last())


def test_curl_basic_header_by_hand(gw, upstream):
    token = base64.b64encode(f"{K1}:{SECRET}".encode()).decode()
    code, version, body = gw.curl("--http2", "-H", f"Authorization: Basic {token}")
    assert (code, body) == (200, b"ok")
    assert_forwarded_as_k1(upstream.last())


def test_upstream_timeout(gw, upstream):
    # limits.upstream_timeout is 1s; the upstream's /slow takes 3s.
    r = gw.get("/slow/x", auth=(K1, SECRET))
    assert_refused(r, 504, "upstream_timeout")
    assert upstream.last().path == "/slow/x"
    assert gw.get("/model/ABC-1", auth=(K1, SECRET)).status_code == 200


def test_plain_http_listener_redirects(gw, upstream):
    r = requests.get(f"http://127.0.0.1:{gw.http_port}/model/ABC-1", auth=(K1, SECRET),
                     allow_redirects=False, timeout=10)
    assert 300 <= r.status_code < 400, r.status_code
    assert r.headers["Location"].startswith("https://")
    assert upstream.records == []


def h2_get_all(gw, paths, authorization):
    """GET each path in turn on one HTTP/2 connection with the Python `h2`
    library (the HTTP/2 stack of httpx and hypercorn). Returns each
    response's (headers, body), headers as `hpack` decoded them (a
    `NeverIndexedHeaderTuple` for a never-indexed literal), and the
    client's HPACK dynamic table afterwards."""
    import socket
    import ssl

    import h2.config
    import h2.connection
    import h2.events

    ctx = ssl.create_default_context(cafile=gw.cert)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
        assert sock.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        out = []
        for path in paths:
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                                    (":authority", f"localhost:{gw.port}"),
                                    (":path", path), ("authorization", authorization)],
                              end_stream=True)
            sock.sendall(conn.data_to_send())
            headers, body, ended = None, b"", False
            while not ended:
                data = sock.recv(65536)
                assert data, "the gateway closed the connection"
                for ev in conn.receive_data(data):
                    if getattr(ev, "stream_id", None) != sid:
                        continue
                    if isinstance(ev, h2.events.ResponseReceived):
                        headers = ev.headers
                    elif isinstance(ev, h2.events.DataReceived):
                        body += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                    elif isinstance(ev, h2.events.StreamEnded):
                        ended = True
                sock.sendall(conn.data_to_send())
            out.append((headers, body))
        return out, list(conn.decoder.header_table.dynamic_entries)


def test_http2_changing_response_headers_are_never_indexed(gw, upstream):
    # The request id differs in every response and the date every second:
    # HPACK-indexed, each would take room in the client's dynamic table
    # from headers that repeat. They come as never-indexed literals; the
    # headers that repeat are still indexed.
    from hpack import NeverIndexedHeaderTuple

    token = base64.b64encode(f"{K1}:{SECRET}".encode()).decode()
    upstream.clear()
    paths = [f"/model/ABC-{i}" for i in range(1, 5)]
    responses, table = h2_get_all(gw, paths, f"Basic {token}")
    ids = []
    for headers, body in responses:
        fields = {name: value for name, value in headers}
        assert (fields[b":status"], body) == (b"200", b"ok"), headers
        for name in (b"x-request-id", b"date"):
            [field] = [h for h in headers if h[0] == name]
            assert isinstance(field, NeverIndexedHeaderTuple), (name, type(field))
        ids.append(fields[b"x-request-id"].decode())
    assert len(set(ids)) == len(paths)
    names = {name for name, _ in table}
    assert b"x-request-id" not in names and b"date" not in names, table
    assert (b"content-type", b"text/plain") in table, table
    # The upstream saw each request once, under the id the client was given.
    assert [r.target for r in upstream.records] == paths
    assert [r.header("X-Request-Id") for r in upstream.records] == ids
    assert_forwarded_as_k1(upstream.last())


def _get_over(tls, gw, headers=""):
    tls.sendall(f"GET /model/ABC-1 HTTP/1.1\r\nHost: localhost:{gw.port}\r\n{headers}Connection: close\r\n\r\n".encode())
    answer = b""
    while chunk := tls.recv(65536):
        answer += chunk
    return answer.decode("latin-1")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_openssl_client_resumes_its_tls_session(gw, upstream, version):
    # Python's ssl is OpenSSL's client: the session it keeps from the first
    # connection (for TLS 1.3, the ticket that came after the handshake)
    # resumes the second one, and the request on it is served as usual.
    ctx = ssl.create_default_context(cafile=gw.cert)
    ctx.minimum_version = ctx.maximum_version = version
    basic = base64.b64encode(f"{K1}:{SECRET}".encode()).decode()
    auth = f"Authorization: Basic {basic}\r\n"
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", gw.port)), server_hostname="localhost") as first:
        assert not first.session_reused
        assert _get_over(first, gw, auth).startswith("HTTP/1.1 200 ")
        session = first.session
    assert session is not None and session.has_ticket
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", gw.port)), server_hostname="localhost",
                         session=session) as second:
        assert second.session_reused
        assert second.version() == {ssl.TLSVersion.TLSv1_3: "TLSv1.3", ssl.TLSVersion.TLSv1_2: "TLSv1.2"}[version]
        assert _get_over(second, gw, auth).startswith("HTTP/1.1 200 ")
    # A resumed session is no credential: without one the request is refused.
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", gw.port)), server_hostname="localhost",
                         session=session) as third:
        assert third.session_reused
        assert _get_over(third, gw).startswith("HTTP/1.1 401 ")
    assert_forwarded_as_k1(upstream.last())
