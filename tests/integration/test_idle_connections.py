"""Idle keep-alive connections cost only their registration: serving others never walks them.

Why this holds (bench/idle_alternating.py measures it end to end): an idle connection is a few
objects the cyclic garbage collector tracks (Connection, SendBuf and its list, FdRecord), so a
collection of the oldest generation traverses every one of them. Such collections stay rare only
while a keep-alive request leaves nothing behind for the collector: every container it makes is
freed by reference counting, so the allocation counts that trigger collections do not grow.
These tests pin that property down (they count collections, never time).
"""

from __future__ import annotations

import contextlib
import gc
import socket
from collections.abc import Iterator

from tests.conftest import WAIT

REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
IDLE = 200
REQUESTS = 2000


@contextlib.contextmanager
def collections_counted() -> Iterator[list[int]]:
    """Collections per generation while the block runs (in any thread of this process)."""
    counts = [0, 0, 0]

    def count(phase: str, info: dict) -> None:
        if phase == "stop":
            counts[info["generation"]] += 1

    gc.collect()
    gc.callbacks.append(count)
    try:
        yield counts
    finally:
        gc.callbacks.remove(count)


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"Hello, World!"):
        chunk = sock.recv(4096)
        assert chunk, "closed by the server"
        data += chunk
    return data


def test_keepalive_requests_beside_idle_connections_run_no_collection(srv):
    idle = []
    try:
        for _ in range(IDLE):
            sock = srv.connect()
            sock.sendall(REQUEST)
            _answer(sock)
            idle.append(sock)
        active = srv.connect()
        active.settimeout(WAIT)
        for _ in range(10):  # warm-up: buffers, greenlets and head cache reach their steady state
            active.sendall(REQUEST)
            _answer(active)
        with collections_counted() as counts:
            for _ in range(REQUESTS):
                active.sendall(REQUEST)
                _answer(active)
        active.close()
        assert counts == [0, 0, 0], f"collections per generation during {REQUESTS} requests"
    finally:
        for sock in idle:
            sock.close()
