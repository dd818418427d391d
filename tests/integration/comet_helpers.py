"""Helpers for the Comet and thread-offload tests: a server in a thread, raw long-poll clients.

A ``ServerThread`` builds ``tpd2py.server.Server`` inside its own thread (each thread has its own
hub), listens on 127.0.0.1:0 and serves until ``stop()``, which calls ``shutdown`` through
``call_soon_threadsafe``. ``call(fn)`` runs ``fn`` in the hub thread and returns its result, so a
test can inspect server state (waiters, buffers, greenlets) between two hub turns.
Rules: loopback only; every wait has a timeout; nothing sleeps to wait for an event.
"""

from __future__ import annotations

import queue
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any

from tpd2py import App
from tpd2py.server import Config, Server

WAIT = 10.0


class ServerThread:
    def __init__(self, app: App, **config: Any) -> None:
        config.setdefault("grace", 1.0)
        self.config = Config(**config)
        self.app = app
        self._ready: queue.Queue[Any] = queue.Queue()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="comet-test-server", daemon=True)
        self.thread.start()
        ready = self._ready.get(timeout=WAIT)
        if isinstance(ready, BaseException):
            raise ready
        self.server, self.address = ready

    def _run(self) -> None:
        try:
            server = Server(self.app, self.config)
            address = server.listen_tcp("127.0.0.1", 0)
        except BaseException as e:  # pragma: no cover - setup failure
            self._ready.put(e)
            return
        self._ready.put((server, address))
        try:
            server.serve_forever(install_signals=False)
        except BaseException as e:  # pragma: no cover - reported by stop()
            self.failure = e

    @property
    def port(self) -> int:
        return int(self.address[1])

    def call(self, fn: Callable[[], Any], timeout: float = WAIT) -> Any:
        """Run ``fn()`` in the hub thread, between greenlets, and return its result."""
        result: queue.Queue[tuple[bool, Any]] = queue.Queue()

        def run() -> None:
            try:
                result.put((True, fn()))
            except BaseException as e:  # noqa: BLE001 - handed back to the test thread
                result.put((False, e))

        self.server.hub.call_soon_threadsafe(run)
        ok, value = result.get(timeout=timeout)
        if not ok:
            raise value
        return value

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        """Wait until ``predicate()`` (run in the hub thread) is true, checking once per hub
        turn: each check is a callback queued behind the work the hub has in hand."""
        done = threading.Event()
        hub = self.server.hub

        def check() -> None:
            if predicate():
                done.set()
            elif not stop.is_set():
                hub.call_later(0.005, check)

        stop = threading.Event()
        hub.call_soon_threadsafe(check)
        ok = done.wait(timeout)
        stop.set()
        assert ok, f"condition not met within {timeout}s"

    def connect(self) -> socket.socket:
        return socket.create_connection(self.address, timeout=WAIT)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.hub.call_soon_threadsafe(self.server.shutdown)
            self.thread.join(self.config.grace + WAIT)
        assert not self.thread.is_alive(), "server thread did not stop"
        if self.failure is not None:
            raise AssertionError("serve_forever raised") from self.failure


def request(path: str, method: str = "GET", body: bytes = b"",
            headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        import json

        return json.loads(self.body)


# Bytes read past the end of one response (pipelined answers), per socket.
_leftover: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def read_reply(sock: socket.socket, timeout: float = WAIT) -> Reply:
    """Read one Content-Length or bodiless response (no chunked) from ``sock``; bytes of the
    responses after it are kept for the next call."""
    sock.settimeout(timeout)
    data = _leftover.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed in the middle of a body")
        rest += more
    if len(rest) > length:
        _leftover[sock] = rest[length:]
    return Reply(status, headers, rest[:length])


def read_events(sock: socket.socket, count: int, timeout: float = WAIT) -> tuple[dict, list[bytes]]:
    """Read an event-stream response until ``count`` frames (events or comments) arrived.

    Returns (headers, frames); frames are the raw blocks between blank lines, de-chunked.
    """
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed before a response head")
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {"status": lines[0].split()[1]}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert headers.get("transfer-encoding") == "chunked"
    text = b""
    frames: list[bytes] = []
    while True:
        # de-chunk what we have
        while True:
            eol = rest.find(b"\r\n")
            if eol < 0:
                break
            size = int(rest[:eol], 16)
            if len(rest) < eol + 2 + size + 2:
                break
            text += rest[eol + 2:eol + 2 + size]
            rest = rest[eol + 2 + size + 2:]
            if size == 0:
                return headers, frames
        while b"\n\n" in text:
            frame, _, text = text.partition(b"\n\n")
            frames.append(frame)
        if len(frames) >= count:
            return headers, frames
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"stream closed after {len(frames)} frames")
        rest += more
