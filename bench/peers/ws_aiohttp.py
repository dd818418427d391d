"""The WebSocket bench app on aiohttp (bench/ws_bench.py): the same routes as
bench/peers/ws_tpd2py.py, on uvloop, compression off.

aiohttp has no subscription without a task: ``/sub`` is a handler waiting in ``async for``
whose socket is in the publish set; ``POST /publish`` sends to each, one ``await`` each.
Run: ``python -m bench.peers.ws_aiohttp PORT``.
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import WSMsgType, web

subscribers: set[web.WebSocketResponse] = set()
counts = {"idle": 0}


async def _upgrade(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, autoping=True, heartbeat=None,
                               max_msg_size=1 << 20)
    await ws.prepare(request)
    return ws


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = await _upgrade(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


async def idle(request: web.Request) -> web.WebSocketResponse:
    ws = await _upgrade(request)
    counts["idle"] += 1
    try:
        async for _ in ws:
            pass
    finally:
        counts["idle"] -= 1
    return ws


async def sub(request: web.Request) -> web.WebSocketResponse:
    ws = await _upgrade(request)
    subscribers.add(ws)
    try:
        async for _ in ws:
            pass
    finally:
        subscribers.discard(ws)
    return ws


async def publish(request: web.Request) -> web.Response:
    text = (await request.read()).decode()
    for ws in list(subscribers):
        try:
            await ws.send_str(text)
        except ConnectionError:
            subscribers.discard(ws)
    return web.Response(body=b"ok")


async def stats(request: web.Request) -> web.Response:
    return web.json_response({"idle": counts["idle"], "subscribers": len(subscribers)})


async def hello(request: web.Request) -> web.Response:
    return web.Response(body=b"Hello, World!")


app = web.Application()
app.add_routes([web.get("/echo", echo), web.get("/idle", idle), web.get("/sub", sub),
                web.post("/publish", publish), web.get("/stats", stats),
                web.get("/hello", hello)])

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None,
                backlog=4096, print=None, loop=uvloop.new_event_loop())
