"""The WebSocket bench app as bare ASGI (uvicorn with its ``websockets`` or ``wsproto``
implementation, granian): the same routes as bench/peers/ws_tpd2py.py.

A publish sends the message to every subscriber from the publishing request, one ``await``
each (what an ASGI app can do: there is no shared frame). Compression is off (uvicorn:
``--ws-per-message-deflate false``).
Run: ``python -m uvicorn bench.peers.ws_asgi:app --loop uvloop --http httptools --ws
websockets --ws-per-message-deflate false --port PORT``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]
subscribers: set[Send] = set()
counts = {"idle": 0}


async def _websocket(scope: dict[str, Any], receive: Any, send: Send) -> None:
    path = scope["path"]
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    if path == "/sub":
        subscribers.add(send)
    elif path == "/idle":
        counts["idle"] += 1
    try:
        while True:
            event = await receive()
            if event["type"] != "websocket.receive":
                return
            if path == "/echo":
                if event.get("text") is not None:
                    await send({"type": "websocket.send", "text": event["text"]})
                else:
                    await send({"type": "websocket.send", "bytes": event["bytes"]})
    finally:
        subscribers.discard(send)
        if path == "/idle":
            counts["idle"] -= 1


async def _http(scope: dict[str, Any], receive: Any, send: Send) -> None:
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    if scope["path"] == "/publish":
        text = body.decode()
        for subscriber in list(subscribers):
            try:
                await subscriber({"type": "websocket.send", "text": text})
            except Exception:  # noqa: BLE001 - a subscriber gone meanwhile
                subscribers.discard(subscriber)
        out = b"ok"
    elif scope["path"] == "/stats":
        out = json.dumps({"idle": counts["idle"], "subscribers": len(subscribers)}).encode()
    else:
        out = b"Hello, World!"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)
