"""Outbound cooperative I/O: a handler that asks another HTTP server and combines the answers.

Run ``python -m examples.fanout`` from the repository root: it starts a slow backend (each
answer takes DELAY seconds) and a frontend on one hub, then sends 100 requests to the frontend
at once. Each frontend handler makes two sequential calls to the backend with
``tpd2py.connect`` (price, then stock) and combines them: alone it takes about 2 x DELAY, and
100 of them take about the same (plus the CPU time of ~500 HTTP exchanges, all in this one
thread), because a handler waiting for the backend parks only its own greenlet.

How it works: ``http_get`` is a minimal HTTP/1.1 client over ``tpd2py.Socket`` (one request per
connection, ``Connection: close``, read to EOF), written in straight-line blocking style. Every
``connect``, ``sendall`` and ``recv`` may switch to the hub. Use numeric addresses: name
resolution (getaddrinfo) blocks. For a real service use a pooled client; this one shows the idea.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import greenlet

from tpd2py import App, HTTPError, Request, Server, connect, get_hub, sleep, spawn

DELAY = 0.1  # the backend's simulated latency per answer (a slow database behind it, say)
CLIENTS = 100


def http_get(host: str, port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET ``path`` from ``host:port``; returns (status, body). May switch to the hub."""
    sock = connect(host, port, timeout=timeout)
    try:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
                     % (path.encode(), host.encode(), port))
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        raise ValueError("this small client reads Content-Length or close-delimited bodies only")
    return status, body


def make_backend(delay: float = DELAY) -> App:
    """The slow upstream: ``/price/<item>`` and ``/stock/<item>``, each after ``delay`` s."""
    app = App()

    @app.route("/price/<item>")
    def price(request: Request, item: str) -> dict:
        sleep(delay)
        return {"item": item, "price": 10 + len(item)}

    @app.route("/stock/<item>")
    def stock(request: Request, item: str) -> dict:
        sleep(delay)
        return {"item": item, "stock": 3 * len(item)}

    return app


def make_frontend(backend: tuple[str, int]) -> App:
    """``/product/<item>``: asks the backend for price and stock, answers with both."""
    app = App()
    host, port = backend

    @app.route("/product/<item>")
    def product(request: Request, item: str) -> dict:
        status, price = http_get(host, port, f"/price/{item}")
        if status != 200:
            raise HTTPError(502, f"backend said {status} for the price\n")
        status, stock = http_get(host, port, f"/stock/{item}")
        if status != 200:
            raise HTTPError(502, f"backend said {status} for the stock\n")
        return {"item": item, "price": json.loads(price)["price"],
                "stock": json.loads(stock)["stock"]}

    return app


def _timed_batch(address: tuple[str, int], count: int) -> tuple[float, list[Any]]:
    """Send ``count`` requests at once from greenlets; return (seconds, answers)."""
    hub = get_hub()
    me = greenlet.getcurrent()
    answers: list[Any] = []

    def one(i: int) -> None:
        status, body = http_get(address[0], address[1], f"/product/item{i}")
        answers.append(json.loads(body) if status == 200 else status)
        if len(answers) == count:
            hub.schedule(me)

    start = time.perf_counter()
    for i in range(count):
        spawn(one, i)
    hub.park()
    return time.perf_counter() - start, answers


def main() -> None:
    backend = Server(make_backend())
    backend_address = backend.listen_tcp("127.0.0.1", 0)
    frontend = Server(make_frontend(backend_address))
    address = frontend.listen_tcp("127.0.0.1", 0)
    backend.start()

    def drive() -> None:
        try:
            one, _ = _timed_batch(address, 1)
            many, answers = _timed_batch(address, CLIENTS)
            ok = sum(1 for a in answers if isinstance(a, dict))
            print(f"one request: {one * 1000:.0f} ms (two backend calls of {DELAY * 1000:.0f} "
                  f"ms each)\n{CLIENTS} at once: {many * 1000:.0f} ms (one at a time would take "
                  f"{CLIENTS * one:.1f} s), {ok} answered, e.g. {answers[0]}")
        finally:
            backend.shutdown(grace=0)
            frontend.shutdown(grace=0)

    spawn(drive)
    frontend.serve_forever(install_signals=False)
    sys.exit(0)


if __name__ == "__main__":
    main()
