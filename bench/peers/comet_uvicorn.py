"""The Comet bench app as bare ASGI for uvicorn (httptools + uvloop): an asyncio.Event long poll.

Same contract and same response bytes as bench/peers/comet_tpd2py.py. Each publish sets the
current ``asyncio.Event`` and starts a new one; a waiter awaits the event of its generation
under ``asyncio.timeout`` (a timer handle, no extra task). The JSON body of a version is
encoded once and shared by every waiter, as tpd2py does.
Run: ``python -m uvicorn bench.peers.comet_uvicorn:app --loop uvloop --http httptools
--no-access-log --port PORT``.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs

TIMEOUT = 300.0

HELLO = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
NO_STORE = (b"cache-control", b"no-store")


class State:
    def __init__(self) -> None:
        self.version = 0
        self.messages: list[bytes] = []  # JSON of each message, index = version - 1
        self.event: asyncio.Event | None = None
        self.waiting = 0
        self.bodies: dict[int, bytes] = {}

    def generation(self) -> asyncio.Event:
        if self.event is None:
            self.event = asyncio.Event()
        return self.event

    def body(self, after: int) -> bytes:
        body = self.bodies.get(after)
        if body is None:
            picked = self.messages[after:] if 0 <= after <= self.version else self.messages
            body = b'{"version":%d,"complete":true,"messages":[%s]}' % (
                self.version, b",".join(picked))
            if len(self.bodies) > 64:
                self.bodies = {}
            self.bodies[after] = body
        return body


state = State()


async def _respond(send, status: int, headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send, body: bytes, extra=()) -> None:
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *extra]
    await _respond(send, 200, headers, body)


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/hello":
        await _respond(send, 200, HELLO, b"Hello, World!")
    elif path == "/poll":
        query = parse_qs(scope["query_string"].decode("latin-1"))
        after = int(query.get("after", ["-1"])[0])
        if after == state.version:  # up to date: wait for the next publish
            event = state.generation()
            state.waiting += 1
            try:
                async with asyncio.timeout(TIMEOUT):
                    await event.wait()
            except TimeoutError:
                await _respond(send, 204, [NO_STORE], b"")
                return
            finally:
                state.waiting -= 1
        await _json(send, state.body(after), [NO_STORE])
    elif path == "/publish":
        text = (await _read_body(receive)).decode()
        state.version += 1
        state.messages.append(b'{"id":%d,"data":%s}' % (
            state.version, json.dumps(text, ensure_ascii=False).encode()))
        state.bodies = {}
        event, state.event = state.event, None
        if event is not None:
            event.set()
        await _json(send, b'{"version":%d}' % state.version)
    elif path == "/stats":
        await _json(send, b'{"waiting":%d,"version":%d}' % (state.waiting, state.version))
    else:
        await _respond(send, 404, [(b"content-length", b"0")], b"")
