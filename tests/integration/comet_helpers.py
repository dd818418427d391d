"""Helpers for the Comet and thread-offload tests: a server in a thread, raw long-poll clients.

A ``ServerThread`` is conftest's ``RunningServer`` (a Server in its own thread on 127.0.0.1:0;
``call(fn)`` runs ``fn`` in the hub thread, so a test can inspect waiters, buffers and greenlets
between two hub turns) built from Config keywords, plus ``wait_for(predicate)``.
Rules: loopback only; every wait has a timeout; nothing sleeps to wait for an event.
"""

from __future__ import annotations

import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any

from conftest import WAIT, RunningServer

from tpd2py import App, get_hub
from tpd2py.server import Config


class ServerThread(RunningServer):
    """conftest's server-in-a-thread, built from Config keywords, with ``wait_for``."""

    def __init__(self, app: App, **config: Any) -> None:
        config.setdefault("grace", 1.0)
        # Comet tests provoke hang-ups and errors on purpose: they check outcomes, not logs.
        super().__init__(app, Config(**config), allow_errors=True)

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


def run_hub(main: Callable[[], None], timeout: float = WAIT) -> None:
    """Run ``main`` in a greenlet of a fresh hub in a fresh thread; re-raise its failure."""
    failure: list[BaseException] = []

    def thread() -> None:
        hub = get_hub()

        def guarded() -> None:
            try:
                main()
            except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
                failure.append(e)
                hub.stop()

        hub.spawn(guarded)
        hub.call_later(timeout, hub.stop)
        hub.run()

    t = threading.Thread(target=thread, daemon=True)
    t.start()
    t.join(timeout + 5)
    assert not t.is_alive(), "hub thread did not stop"
    if failure:
        raise failure[0]
