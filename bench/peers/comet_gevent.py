"""The Comet bench app for gevent.pywsgi: a gevent.event.Event long poll.

Same contract and same response bytes as bench/peers/comet_tpd2py.py. Each publish sets the
current ``gevent.event.Event`` and starts a new one; a waiter calls ``event.wait(timeout)``.
The JSON body of a version is encoded once and shared by every waiter, as tpd2py does.
Run: ``python bench/peers/comet_gevent.py PORT``.
"""

from __future__ import annotations

import json
import sys
from urllib.parse import parse_qs

from gevent.event import Event
from gevent.pywsgi import WSGIServer

TIMEOUT = 300.0
BACKLOG = 4096


class State:
    def __init__(self) -> None:
        self.version = 0
        self.messages: list[bytes] = []
        self.event = Event()
        self.waiting = 0
        self.bodies: dict[int, bytes] = {}

    def body(self, after: int) -> bytes:
        body = self.bodies.get(after)
        if body is None:
            picked = self.messages[after:] if 0 <= after <= self.version else self.messages
            body = b'{"version":%d,"complete":true,"messages":[%s]}' % (
                self.version, b",".join(picked))
            self.bodies[after] = body
        return body


state = State()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
        return [b"Hello, World!"]
    if path == "/poll":
        after = int(parse_qs(environ.get("QUERY_STRING", "")).get("after", ["-1"])[0])
        if after == state.version:  # up to date: wait for the next publish
            state.waiting += 1
            try:
                woken = state.event.wait(TIMEOUT)
            finally:
                state.waiting -= 1
            if not woken:
                start_response("204 No Content", [("Cache-Control", "no-store")])
                return [b""]
        body = state.body(after)
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-store")])
        return [body]
    if path == "/publish":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        text = environ["wsgi.input"].read(length).decode()
        state.version += 1
        state.messages.append(b'{"id":%d,"data":%s}' % (
            state.version, json.dumps(text, ensure_ascii=False).encode()))
        state.bodies = {}
        event, state.event = state.event, Event()
        event.set()
        body = b'{"version":%d}' % state.version
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/stats":
        body = b'{"waiting":%d,"version":%d}' % (state.waiting, state.version)
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Length", "0")])
    return [b""]


if __name__ == "__main__":
    port = int(sys.argv[1])
    WSGIServer(("127.0.0.1", port), app, log=None, backlog=BACKLOG).serve_forever()
