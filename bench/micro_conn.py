"""Micro-benchmark of the connection path in one process: socketpairs, no TCP, no wrk.

Run: .venv/bin/python bench/micro_conn.py [--number N]

Two figures, CPU time per unit (getrusage: user and system), best of 3:
  connection  a new connection's whole life as Fremlin's protocol has it: the Connection is
              made, dispatched to a pooled worker greenlet, parses `GET /test?name=John
              HTTP/1.0`, runs bench/hello.py's handler, sends, closes. The client side's own
              cost (socketpair, send, recv, close) is measured alone and subtracted.
  keep-alive  one request on an open connection, the whole serve() round from dispatch to idle.
Comparing these with the CPU per request that bench/run.py reports for the real server shows how
much of a request's cost is outside this path (wake-ups, accept, TCP).
"""

from __future__ import annotations

import _socket
import argparse
import resource
import socket
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench.hello import app  # noqa: E402
from tpd2py.conn import Connection  # noqa: E402
from tpd2py.server import Server  # noqa: E402

FREMLIN = b"GET /test?name=John HTTP/1.0\r\n\r\n"
KEEPALIVE = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


def cpu_us(fn: Callable[[], None], number: int) -> tuple[float, float]:
    best = (float("inf"), float("inf"))
    for _ in range(3):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(number):
            fn()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        sample = ((r1.ru_utime - r0.ru_utime) / number * 1e6,
                  (r1.ru_stime - r0.ru_stime) / number * 1e6)
        if sum(sample) < sum(best):
            best = sample
    return best


def paths(server: Server, keepalive: bytes = KEEPALIVE) -> dict[str, Callable[[], None]]:
    """The measured paths, each one call; run them from the hub (serve expects to be there).

    Sockets are made as the server makes accepted ones: SOCK_NONBLOCK in the object's type
    (timeout 0, no syscall), the fd itself blocking (conn.py passes MSG_DONTWAIT).
    bench/instructions.py counts the instructions of the same paths. ``keepalive``: the
    request the keep-alive path sends.
    """
    def client_only() -> None:
        a, b = socket.socketpair()
        b.sendall(FREMLIN)
        a.close()
        b.close()

    def adopt(sock: socket.socket) -> Connection:
        raw = _socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0,
                             sock.detach())
        conn = Connection(server.ctx, raw)
        server.conns[raw.fileno()] = conn
        return conn

    def connection() -> None:
        a, b = socket.socketpair()
        b.sendall(FREMLIN)
        adopt(a).serve()
        b.recv(4096)
        b.close()

    a, b = socket.socketpair()
    kept = adopt(a)

    def keepalive_round() -> None:
        b.sendall(keepalive)
        kept.read_pending = True
        kept.serve()
        b.recv(4096)

    return {"client": client_only, "connection": connection, "keepalive": keepalive_round}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=3000)
    args = parser.parse_args()
    server = Server(app)
    path = paths(server)
    results: dict[str, tuple[float, float]] = {}

    def measure() -> None:
        results["client"] = cpu_us(path["client"], args.number)
        results["connection"] = cpu_us(path["connection"], args.number)
        results["keepalive"] = cpu_us(path["keepalive"], args.number * 3)
        server.hub.stop()

    server.hub.call_soon(measure)  # serve() runs from the hub, as in the server
    server.hub.run()
    cu, cs = results["client"]
    for name in ("connection", "keepalive"):
        user, system = results[name]
        if name == "connection":
            user, system = user - cu, system - cs
        print(f"{name:11s} user {user:6.1f} us  system {system:6.1f} us"
              + ("   (client side subtracted)" if name == "connection" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
