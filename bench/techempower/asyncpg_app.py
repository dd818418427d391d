"""The six TechEmpower test types for the peers: asyncpg, stock jinja2, stdlib json.

``asgi`` (uvicorn + httptools + uvloop) and ``rsgi`` (granian's native interface) share the
handlers below: ``handle(path, query) -> (status, content type, body)``. Set up as the
benchmark's Python entries do (read, never copied): an asyncpg pool (``TFB_POOL``
connections, like tpd2py's), statements prepared by asyncpg's statement cache, the N SELECTs
of /queries and /updates one after the other on one connection (asyncpg has no pipelining of
separate statements), the UPDATEs through ``executemany`` (asyncpg pipelines those).
Run: ``TFB_DSN=... uvicorn bench.techempower.asyncpg_app:asgi`` or
``granian --interface rsgi bench.techempower.asyncpg_app:rsgi``.
"""

from __future__ import annotations

import asyncio
import json
import os
from operator import itemgetter
from random import randint, sample
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import jinja2

from bench.techempower.schema import ADDITIONAL

READ = "SELECT id, randomnumber FROM world WHERE id = $1"
WRITE = "UPDATE world SET randomnumber = $1 WHERE id = $2"
FORTUNES = "SELECT id, message FROM fortune"
JSON = "application/json"
HTML = "text/html; charset=utf-8"
TEXT = "text/plain"
PAGE = jinja2.Environment(autoescape=True).from_string(
    "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    "<tr><th>id</th><th>message</th></tr>"
    "{% for id, message in fortunes %}<tr><td>{{ id }}</td><td>{{ message }}</td></tr>"
    "{% endfor %}</table></body></html>")
_by_message = itemgetter(1)
_dumps = json.dumps
_pool: Any = None
_pool_lock: asyncio.Lock | None = None


async def pool() -> Any:
    global _pool, _pool_lock
    if _pool is None:
        if _pool_lock is None:
            _pool_lock = asyncio.Lock()
        async with _pool_lock:
            if _pool is None:
                dsn = os.environ.get("TFB_DSN", "dbname=hello_world")
                params = dict(part.split("=", 1) for part in dsn.split())
                size = int(os.environ.get("TFB_POOL", "16"))
                _pool = await asyncpg.create_pool(
                    host=params.get("host"), user=params.get("user"),
                    database=params.get("dbname"), min_size=size, max_size=size)
    return _pool


def count(query: bytes) -> int:
    try:
        n = int(parse_qs(query.decode())["queries"][0])
    except (KeyError, IndexError, ValueError):
        return 1
    return 1 if n < 1 else 500 if n > 500 else n


async def handle(path: str, query: bytes) -> tuple[int, str, bytes]:
    if path == "/json":
        return 200, JSON, _dumps({"message": "Hello, World!"}).encode()
    if path == "/plaintext":
        return 200, TEXT, b"Hello, World!"
    if path == "/db":
        async with (await pool()).acquire() as conn:
            wid, number = await conn.fetchrow(READ, randint(1, 10000))
        return 200, JSON, _dumps({"id": wid, "randomNumber": number}).encode()
    if path == "/queries":
        worlds = []
        async with (await pool()).acquire() as conn:
            for i in sample(range(1, 10001), count(query)):
                wid, number = await conn.fetchrow(READ, i)
                worlds.append({"id": wid, "randomNumber": number})
        return 200, JSON, _dumps(worlds).encode()
    if path == "/fortunes":
        async with (await pool()).acquire() as conn:
            rows = [tuple(r) for r in await conn.fetch(FORTUNES)]
        rows.append(ADDITIONAL)
        rows.sort(key=_by_message)
        return 200, HTML, PAGE.render(fortunes=rows).encode()
    if path == "/updates":
        worlds = []
        async with (await pool()).acquire() as conn:
            for i in sample(range(1, 10001), count(query)):
                wid, _ = await conn.fetchrow(READ, i)
                worlds.append({"id": wid, "randomNumber": randint(1, 10000)})
            await conn.executemany(WRITE, [(w["randomNumber"], w["id"]) for w in worlds])
        return 200, JSON, _dumps(worlds).encode()
    return 404, TEXT, b"Not Found"


async def asgi(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    status, ctype, body = await handle(scope["path"], scope["query_string"])
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype.encode())]})  # uvicorn adds Server, Date
    await send({"type": "http.response.body", "body": body})


async def rsgi(scope: Any, protocol: Any) -> None:
    if scope.proto != "http":
        return
    status, ctype, body = await handle(scope.path, scope.query_string.encode())
    protocol.response_bytes(status, [("content-type", ctype), ("server", "granian")], body)
