"""Micro-benchmark of the web-app basics: what a cookie, a signed session and hooks cost a
request, next to plain hello world. One process, socketpairs, no TCP, no wrk.

Run: .venv/bin/python bench/micro_webapp.py [--number N] [--rounds R]

Each case is one keep-alive request on an open connection, made as bench/micro_conn.py makes
its keep-alive path (the whole serve() round from dispatch to idle, the client's send and recv
included): CPU time per request (getrusage user + system). The cases run interleaved, R
rounds, and the best of each is printed, so drift on a shared machine hits every case alike:
  hello          GET /, Response(b"Hello, World!"): the baseline
  cookie         GET / with a Cookie header; the handler reads request.cookies["theme"]
  after-hook     hello world on an app with one after-request hook (every handler is wrapped)
  session-read   an app with Sessions; the handler reads request.session (verifies the HMAC)
  session-write  the same, and the handler updates the session (re-signed, Set-Cookie sent)
"""

from __future__ import annotations

import argparse
import resource
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench.micro_conn import paths  # noqa: E402
from tpd2py import App, Request, Response  # noqa: E402
from tpd2py.server import Server  # noqa: E402
from tpd2py.sessions import Sessions  # noqa: E402

HELLO = b"Hello, World!"
KEY = "bench-key-" + "k" * 32


def hello_app() -> App:
    app = App()

    @app.route("/")
    def hello(req: Request) -> Response:
        return Response(HELLO, content_type=b"text/plain")

    return app


def cookie_app() -> App:
    app = App()

    @app.route("/")
    def hello(req: Request) -> Response:
        return Response(req.cookies["theme"].encode(), content_type=b"text/plain")

    return app


def hooked_app() -> App:
    app = hello_app()
    app.after_request(lambda req, resp: None)
    return app


def session_app(write: bool) -> tuple[App, str]:
    app = App()
    sessions = Sessions(app, [KEY])

    @app.route("/")
    def hello(req: Request) -> Response:
        n = req.session.get("n", 0)
        if write:
            req.session["n"] = n + 1
        return Response(b"%d" % n, content_type=b"text/plain")

    return app, sessions.encode({"n": 1, "user": "ada"})


def request(cookie: str | None) -> bytes:
    extra = f"Cookie: {cookie}\r\n".encode() if cookie else b""
    return b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" + extra + b"\r\n"


def keepalive_path(app: App, data: bytes) -> tuple[Server, Callable[[], None]]:
    """bench/micro_conn.py's keep-alive round (the path bench/instructions.py counts), with
    ``data`` as the request."""
    server = Server(app)
    return server, paths(server, data)["keepalive"]


def cpu_us(fn: Callable[[], None], number: int) -> float:
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(number):
        fn()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    read_app, read_cookie = session_app(write=False)
    write_app, write_cookie = session_app(write=True)
    cases = {
        "hello": (hello_app(), request(None)),
        "cookie": (cookie_app(), request("theme=dark; lang=en")),
        "after-hook": (hooked_app(), request(None)),
        "session-read": (read_app, request(f"session={read_cookie}")),
        "session-write": (write_app, request(f"session={write_cookie}")),
    }
    # All servers share this thread's hub; run the measurement from it, as serve() expects.
    runs = {name: keepalive_path(app, data) for name, (app, data) in cases.items()}
    hub = next(iter(runs.values()))[0].hub
    best = dict.fromkeys(cases, float("inf"))

    def measure() -> None:
        for _ in range(args.rounds):
            for name, (_, one) in runs.items():
                best[name] = min(best[name], cpu_us(one, args.number))
        hub.stop()

    hub.call_soon(measure)
    hub.run()
    base = best["hello"]
    print(f"{'case':14s} {'µs/request':>10s} {'vs hello':>9s}")
    for name, us in best.items():
        print(f"{name:14s} {us:10.2f} {us - base:+8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
