"""A real nginx in front of ``--workers 2 --unix``: proxy headers believed from the proxy (a
unix-socket peer) and the client's address as nginx saw it, in the app and in the access log,
a spoofed X-Forwarded-For from the client ignored, and a reload under nginx's keep-alive upstream
connections losing nothing."""

from __future__ import annotations

import http.client
import json
import signal
from pathlib import Path

import pytest
from test_stats import fetch, log_lines
from test_workers import APP, Master

from tests.conftest import nginx_front, unused_port

WAIT = 10.0

HTTP = """
    upstream app {{
        server unix:{sock};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_buffering off;
        }}
    }}
"""


@pytest.fixture
def front(tmp_path: Path):
    (tmp_path / "wapp.py").write_text(APP)
    (tmp_path / "version.txt").write_text("v1")
    sock = tmp_path / "app.sock"
    master = Master(tmp_path, "--workers", "2", "--unix", str(sock), "--proxy-headers",
                    "--access-log", str(tmp_path / "access.log"))
    port = unused_port()
    try:
        with nginx_front(tmp_path, HTTP.format(sock=sock, port=port), port):
            master.address = ("127.0.0.1", port)
            yield master
    finally:
        master.stop()


def test_client_address_through_nginx_and_a_spoof_ignored(front):
    m = front
    # The client is 127.0.0.2 (not a trusted proxy); its own X-Forwarded-For is a lie that
    # nginx passes on, appending the real address.
    got = m.get(headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https",
                         "Host": "shop.example"}, source="127.0.0.2")
    assert got["peer"] == ["127.0.0.2", 0]
    assert got["scheme"] == "http"  # nginx overwrote the client's X-Forwarded-Proto
    assert got["host"] == "shop.example"


def test_access_log_shows_the_client_through_nginx(front, tmp_path):
    m = front
    spoof = {"X-Forwarded-For": "6.6.6.6"}
    assert m.get(headers=spoof, source="127.0.0.2")["peer"] == ["127.0.0.2", 0]
    assert fetch(m.address, "/nope", headers=spoof, source="127.0.0.2")[0] == 404
    assert m.stop() == 0  # the workers flush their logs as they exit
    # The socket's peer is nginx on a unix socket; the line has the client nginx reported
    # (never the spoof it passed on before its own entry).
    assert [(r[0], r[1], r[2]) for r in log_lines(tmp_path / "access.log")] == \
        [("127.0.0.2", "GET / HTTP/1.1", 200), ("127.0.0.2", "GET /nope HTTP/1.1", 404)]


def test_reload_behind_nginx_keepalive_loses_nothing(front, tmp_path):
    m = front
    conn = http.client.HTTPConnection(*m.address, timeout=WAIT)
    versions = set()

    def one() -> None:
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200
        versions.add(json.loads(resp.read())["version"])

    for _ in range(20):
        one()
    old = m.children()
    (tmp_path / "version.txt").write_text("v2")
    mark = m.mark()
    m.signal(signal.SIGHUP)
    m.wait_for(r"reload: generation 2 serving", since=mark)
    for _ in range(20):  # nginx's kept-alive upstream connections lead to retiring workers
        one()
    for pid in old:
        m.wait_for(rf"worker {pid} stopped \(exit status 0\)", since=mark)
    versions.clear()
    for _ in range(5):
        one()
    conn.close()
    assert versions == {"v2"}
