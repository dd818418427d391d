"""WSGI test apps (plain callables, no framework), for tests/integration/test_wsgi.py and the
CLI tests (``python -m tpd2py wsgi_apps:app``). Each path does one thing; ``app`` is wrapped in
``wsgiref.validate.validator``, which raises AssertionError on anything either side does
against PEP 3333 (the test fixtures count an AssertionError in the log as a server fault)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.validate import validator

HELLO = b"Hello, World!"
StartResponse = Callable[..., Any]

# Set by apps whose iterable's close() the tests wait for.
closed = threading.Event()


class Closing:
    """An iterable with close(): records the call in ``closed``."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        return self.pieces

    def close(self) -> None:
        closed.set()


def _plain(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))])
    return [body]


def raw(environ: dict[str, Any], start_response: StartResponse) -> Any:
    path = environ["PATH_INFO"]
    body_in = environ["wsgi.input"]
    if path == "/":
        return _plain(start_response, HELLO)
    if path.startswith("/environ"):
        keys = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int, tuple))}
        data = json.dumps(keys).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]
    if path == "/echo":
        size = int(environ.get("QUERY_STRING") or "0") or 65536
        parts = []
        while True:
            piece = body_in.read(size)
            if not piece:
                break
            parts.append(piece)
        return _plain(start_response, b"".join(parts))
    if path == "/lines":
        lines = list(body_in)
        return _plain(start_response, json.dumps([ln.decode() for ln in lines]).encode())
    if path == "/readline":
        first = body_in.readline(4)
        rest = body_in.readline()
        return _plain(start_response, json.dumps([first.decode(), rest.decode()]).encode())
    if path == "/ignore":
        return _plain(start_response, b"ignored")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(iter([b"one ", b"", b"two ", b"three"]))
    if path == "/stream-length":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
        return Closing(iter([b"one ", b"two ", b"six"]))
    if path == "/lazy":  # start_response called in the first iteration
        def lazy() -> Iterator[bytes]:
            start_response("201 Created", [("Content-Type", "text/plain")])
            yield b"made"

        return lazy()
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"returned"]
    if path == "/no-content":
        start_response("204 No Content", [])
        return []
    if path == "/custom-status":
        return _plain(start_response, b"teapot", "418 I'm a little teapot")
    if path == "/date":
        start_response("200 OK", [("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
                                  ("Content-Type", "text/plain"), ("Content-Length", "0")])
        return []
    if path == "/exc-info":
        try:
            raise ValueError("caught by the app")
        except ValueError:
            import sys

            start_response("200 OK", [("Content-Type", "text/plain")])
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"replaced"]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"Not Found"]


app = validator(raw)
hello = raw  # unwrapped: the CLI detection test and the bench


def not_an_app() -> None:
    pass


number = 42
