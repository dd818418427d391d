"""Two machines' worth of servers behind one nginx upstream, sharing one Redis.

Two ``--workers 2`` servers, one on 127.0.0.1 and one on 127.0.0.2 (the same port: two hosts),
behind one nginx upstream (round robin), and one redis-server. Two event streams opened
through nginx land one on each server (each stream's first event names its server); each
message published through nginx reaches both streams with the same id, so every message
crosses from one server to the other. Skipped, with the reason, when nginx, redis-server or
hiredis is missing (``.ci/run`` installs them).
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from comet_helpers import request  # noqa: E402
from test_workers import Master  # noqa: E402

from bench.redisserver import RedisServer, find_redis  # noqa: E402
from tests.conftest import NGINX, nginx_front, unused_port  # noqa: E402

pytest.importorskip("hiredis", reason="needs hiredis (the redis extra; the test extra has it)")
pytestmark = [
    pytest.mark.skipif(find_redis() is None, reason="needs redis-server (.ci/run installs it)"),
    pytest.mark.skipif(NGINX is None, reason="needs nginx (.ci/run installs it)"),
]
WAIT = 10.0

APP = '''
import os

from tpd2py import App, Request
from tpd2py.comet import sse
from tpd2py.redis_channel import RedisChannel

SERVER = os.environ["SERVER_NAME"]
channel = RedisChannel(os.environ["TPD2PY_REDIS"], "shared")
app = App()


@app.route("/publish", methods=["POST"])
def publish(request: Request) -> dict:
    return {"version": channel.publish(request.body().decode()).version, "server": SERVER}


@app.route("/events")
def events(request: Request):
    def stream():
        yield {"server": SERVER}
        yield from channel.updates(0, None, request)
    return sse(stream())
'''

HTTP = """
    upstream app {{
        server 127.0.0.1:{app_port};
        server 127.0.0.2:{app_port};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 60s;
        }}
    }}
"""


@pytest.fixture
def front(tmp_path: Path) -> Iterator[int]:
    redis = RedisServer(persist=False, directory=str(tmp_path / "redis"))
    (tmp_path / "wapp.py").write_text(APP)
    app_port = unused_port()
    servers = []
    try:
        for host in ("127.0.0.1", "127.0.0.2"):
            servers.append(Master(tmp_path, "--workers", "2", "--host", host, "--port",
                                  str(app_port), env={"TPD2PY_REDIS": redis.socket,
                                                      "SERVER_NAME": host}))
        port = unused_port()
        with nginx_front(tmp_path, HTTP.format(app_port=app_port, port=port), port):
            yield port
    finally:
        for server in servers:
            server.stop()
        redis.stop()


def read_frames(sock: socket.socket, buffer: bytearray, count: int) -> list[dict]:
    """The next ``count`` data events of a chunked event stream (comments skipped)."""
    found: list[dict] = []
    while len(found) < count:
        while b"\n\n" not in buffer:
            more = sock.recv(65536)
            assert more, "the stream ended"
            buffer += more
        end = buffer.index(b"\n\n")
        block, buffer[:] = bytes(buffer[:end]), buffer[end + 2:]
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n")
                      if b": " in line and not line.startswith(b":"))
        if b"data" in fields:
            event = {"data": json.loads(fields[b"data"]) if fields[b"data"][:1] == b"{"
                     else fields[b"data"].decode()}
            if b"id" in fields:
                event["id"] = int(fields[b"id"])
            found.append(event)
    return found


def test_a_message_crosses_servers_on_two_hosts_through_one_redis(front: int) -> None:
    streams = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", front), timeout=WAIT)
        sock.sendall(request("/events"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)  # the head only: the rest is the stream's
        assert head.startswith(b"HTTP/1.1 200")
        buffer = bytearray()
        first = read_frames(sock, buffer, 1)[0]
        streams.append((sock, buffer, first["data"]["server"]))
    assert {server for _, _, server in streams} == {"127.0.0.1", "127.0.0.2"}

    published = []
    for text in ("one", "two", "three", "four"):
        conn = http.client.HTTPConnection("127.0.0.1", front, timeout=WAIT)
        conn.request("POST", "/publish", body=text)
        reply = conn.getresponse()
        assert reply.status == 200
        published.append(json.loads(reply.read()))
        conn.close()
    assert [p["version"] for p in published] == [1, 2, 3, 4]
    assert {p["server"] for p in published} == {"127.0.0.1", "127.0.0.2"}
    for sock, buffer, _server in streams:
        events = read_frames(sock, buffer, 4)
        assert [(e["id"], e["data"]) for e in events] == [
            (1, "one"), (2, "two"), (3, "three"), (4, "four")]
        sock.close()
