"""RSGI peer for the bench: the bench contract on granian's native interface.

Run from the repo root: ``granian --interface rsgi bench.peers.granian_app:app --port PORT``.

RSGI is granian's own interface: the response is handed to Rust in one call (``response_bytes``)
instead of two ASGI messages through an event loop, and on this machine it is the faster of
granian's async interfaces (see bench/README.md for the measurement). The ASGI app in
``uvicorn_app.py`` serves the same contract if you want granian's ASGI figure instead.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

HELLO = b"Hello, World!"
PLAIN = [("content-type", "text/plain")]
HTML = [("content-type", "text/html; charset=utf-8")]
OCTETS = [("content-type", "application/octet-stream")]


async def app(scope, protocol):
    if scope.proto != "http":
        return
    method = scope.method
    path = scope.path
    if path == "/" and method in ("GET", "HEAD"):
        protocol.response_bytes(200, PLAIN, HELLO)
    elif path == "/echo" and method == "POST":
        body = await protocol()
        protocol.response_bytes(200, OCTETS, body)
    elif path == "/test" and method in ("GET", "HEAD"):
        name = parse_qs(scope.query_string).get("name", [""])[0]
        protocol.response_bytes(200, HTML, f"<h1>Hello {html.escape(name)}</h1>".encode())
    else:
        protocol.response_bytes(404, PLAIN, b"Not Found")
