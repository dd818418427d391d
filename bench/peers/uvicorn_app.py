"""ASGI peer for the bench: the bench contract as a bare ASGI 3 app (no framework).

Run from the repo root:
``python -m uvicorn bench.peers.uvicorn_app:app --loop uvloop --http httptools --no-access-log
--port PORT``. granian can also serve it (``--interface asgi``) for comparing its interfaces.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

HELLO = b"Hello, World!"
PLAIN = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
NOT_FOUND = [(b"content-type", b"text/plain"), (b"content-length", b"9")]


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send, status: int, headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    method = scope["method"]
    path = scope["path"]
    if path == "/" and method in ("GET", "HEAD"):
        await _respond(send, 200, PLAIN, HELLO)
    elif path == "/echo" and method == "POST":
        body = await _read_body(receive)
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(len(body)).encode()),
        ]
        await _respond(send, 200, headers, body)
    elif path == "/test" and method in ("GET", "HEAD"):
        query = scope["query_string"].decode("latin-1")
        name = parse_qs(query).get("name", [""])[0]
        page = f"<h1>Hello {html.escape(name)}</h1>".encode()
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(page)).encode()),
        ]
        await _respond(send, 200, headers, page)
    else:
        await _respond(send, 404, NOT_FOUND, b"Not Found")
