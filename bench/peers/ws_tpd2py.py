"""The WebSocket bench app for tpd2py (bench/ws_bench.py): echo, idle sockets waiting in a
handler, idle subscribers holding no greenlet, and a publish endpoint.

Routes: ``/echo`` (every message sent back), ``/idle`` (a handler waiting in ``for message in
ws``), ``/sub`` (``ws.subscribe(room)``; the handler returns), ``POST /publish`` (the body, as
one text message, to every subscriber: one frame, encoded once), ``GET /stats`` (JSON counts),
``GET /hello``. Compression is off, as on the peers.
Run: ``python -m tpd2py bench.peers.ws_tpd2py:app --port PORT``.
"""

from __future__ import annotations

from typing import Any

from tpd2py import App, Channel, Request

app = App()
room = Channel(history=4)
idle_handlers = 0


def _data(message: Any) -> str:
    return str(message.data)


@app.websocket("/echo", compression=False, ping_interval=None)
def echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


@app.websocket("/idle", compression=False, ping_interval=None)
def idle(ws: Any) -> None:
    global idle_handlers
    idle_handlers += 1
    try:
        for _ in ws:
            pass
    finally:
        idle_handlers -= 1


@app.websocket("/sub", compression=False, ping_interval=None)
def sub(ws: Any) -> None:
    ws.subscribe(room, encode=_data)


@app.route("/publish", methods=["POST"])
def publish(request: Request) -> bytes:
    room.publish(request.body().decode())
    return b"ok"


@app.route("/stats")
def stats(request: Request) -> dict:
    return {"idle": idle_handlers, "subscribers": room.waiting}


@app.route("/hello")
def hello(request: Request) -> bytes:
    return b"Hello, World!"


_snapshots: dict[str, Any] = {}


@app.route("/tracemalloc/<what>")
def trace(request: Request, what: str) -> bytes:
    """Under ``python -X tracemalloc=N``: ``base`` takes a snapshot, ``diff`` lists what was
    allocated since, by line (bench/ws_memory.py attributes the bytes per socket with it)."""
    import gc
    import tracemalloc

    if not tracemalloc.is_tracing():
        return b"not tracing"
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    if what == "base":
        _snapshots["base"] = snapshot
        return b"ok"
    group = "traceback" if what == "tracebacks" else "lineno"
    stats = snapshot.compare_to(_snapshots["base"], group)
    lines = [f"{s.size_diff} {s.count_diff}\t" + " <- ".join(
        f"{'/'.join(f.filename.rsplit('/', 2)[-2:])}:{f.lineno}"
        for f in s.traceback) for s in stats[:40]]
    total = sum(s.size_diff for s in stats)
    return (f"total {total}\n" + "\n".join(lines)).encode()
