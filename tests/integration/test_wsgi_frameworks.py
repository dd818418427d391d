"""Real frameworks on tpd2py's WSGI adapter, in both modes, driven by http.client over loopback:
Flask (form, JSON, upload, streaming, send_file), Bottle, Falcon (JSON API, streaming body) and
a minimal Django project (a form with CSRF, an upload, a streaming response, the admin's login
page). The frameworks are in the ``test`` extra; a test skips, saying so, when one is missing."""

from __future__ import annotations

import hashlib
import http.client
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wsgi_frameworks  # noqa: E402

from tpd2py.wsgi import WSGI  # noqa: E402

MODES = {"greenlet": 0, "threads": 4}
UPLOAD = bytes(range(256)) * 3000  # 768,000 bytes: many reads of the socket


def needs(module: str) -> None:
    pytest.importorskip(module, reason=f"{module} is in the test extra: pip install -e '.[test]'")


@pytest.fixture(params=list(MODES))
def serve_wsgi(request, server):
    adapters: list[WSGI] = []

    def start(app: Any) -> Any:
        adapter = WSGI(app, threads=MODES[request.param])
        adapters.append(adapter)
        return server(adapter)

    yield start
    for adapter in adapters:
        adapter.close()


def call(srv: Any, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    conn = srv.http()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def multipart(field: str, filename: str, data: bytes, extra: dict[str, str] | None = None
              ) -> tuple[bytes, str]:
    boundary = "tpd2pyboundary7MA4YWxk"
    parts = []
    for name, value in (extra or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                 f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 .encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_flask(serve_wsgi, tmp_path):
    needs("flask")
    (tmp_path / "data.bin").write_bytes(UPLOAD)
    srv = serve_wsgi(wsgi_frameworks.make_flask(tmp_path))
    response, body = call(srv, "GET", "/")
    assert response.status == 200 and body == b"<h1>Hello from Flask</h1>"
    assert response.getheader("Content-Length") == str(len(body))
    response, body = call(srv, "POST", "/form", urlencode([("name", "Zoë"), ("tag", "a"),
                                                          ("tag", "b")]).encode(),
                          {"Content-Type": "application/x-www-form-urlencoded"})
    assert json.loads(body) == {"name": "Zoë", "tags": ["a", "b"]}
    response, body = call(srv, "POST", "/json", b'{"x": [1, 2]}',
                          {"Content-Type": "application/json"})
    assert json.loads(body) == {"got": {"x": [1, 2]}}
    data, kind = multipart("file", "up.bin", UPLOAD)
    response, body = call(srv, "POST", "/upload", data, {"Content-Type": kind})
    assert json.loads(body) == {"filename": "up.bin", "size": len(UPLOAD),
                                "sha256": hashlib.sha256(UPLOAD).hexdigest()}
    # The same upload as a chunked request body (wsgi.input_terminated).
    conn = srv.http()
    conn.putrequest("POST", "/upload")
    conn.putheader("Content-Type", kind)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for i in range(0, len(data), 100_000):
        piece = data[i:i + 100_000]
        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    conn.send(b"0\r\n\r\n")
    assert json.loads(conn.getresponse().read())["size"] == len(UPLOAD)
    conn.close()
    response, body = call(srv, "GET", "/stream")
    assert body == b"line 0\nline 1\nline 2\n"
    assert response.getheader("Transfer-Encoding") == "chunked"
    response, body = call(srv, "GET", "/file")
    assert body == UPLOAD and response.getheader("Content-Length") == str(len(UPLOAD))
    response, body = call(srv, "GET", "/missing")
    assert response.status == 404


def test_bottle(serve_wsgi):
    needs("bottle")
    srv = serve_wsgi(wsgi_frameworks.make_bottle())
    response, body = call(srv, "GET", "/hello/world")
    assert (response.status, body) == (200, b"Hello world")
    response, body = call(srv, "POST", "/echo", UPLOAD)
    assert body == UPLOAD
    response, body = call(srv, "GET", "/json?a=1")
    assert json.loads(body) == {"ok": True, "query": {"a": "1"}}
    response, body = call(srv, "HEAD", "/hello/world")
    assert response.status == 200 and body == b""


def test_falcon(serve_wsgi):
    needs("falcon")
    srv = serve_wsgi(wsgi_frameworks.make_falcon())
    response, body = call(srv, "GET", "/things")
    assert json.loads(body) == {"things": [1, 2, 3]}
    response, body = call(srv, "POST", "/things", b'{"n": 1}',
                          {"Content-Type": "application/json"})
    assert response.status == 201 and json.loads(body) == {"posted": {"n": 1}}
    response, body = call(srv, "GET", "/stream")
    assert body == b"alpha beta gamma"


def test_django(serve_wsgi):
    needs("django")
    srv = serve_wsgi(wsgi_frameworks.make_django())
    # A form with CSRF: the token from the page and its cookie make the POST pass.
    response, page = call(srv, "GET", "/form/")
    assert response.status == 200
    cookie = response.getheader("Set-Cookie").split(";")[0]
    token = page.split(b'value="')[1].split(b'"')[0].decode()
    response, body = call(srv, "POST", "/form/", urlencode(
        {"csrfmiddlewaretoken": token, "name": "Ada"}).encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie,
         "Referer": f"http://127.0.0.1:{srv.port}/form/"})
    assert response.status == 200 and json.loads(body) == {"name": "Ada"}
    response, body = call(srv, "POST", "/form/", b"name=Eve",
                          {"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 403  # no token: refused by Django, answered by us
    data, kind = multipart("file", "up.bin", UPLOAD)
    response, body = call(srv, "POST", "/upload/", data, {"Content-Type": kind})
    assert json.loads(body)["sha256"] == hashlib.sha256(UPLOAD).hexdigest()
    response, body = call(srv, "GET", "/stream/")
    assert body == b"row 0\nrow 1\nrow 2\n"
    response, body = call(srv, "GET", "/admin/login/")
    assert response.status == 200 and b'name="password"' in body
