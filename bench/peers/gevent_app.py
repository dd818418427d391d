"""gevent.pywsgi peer for the bench: the bench contract as a plain WSGI app, one process.

Run from the repo root: ``python bench/peers/gevent_app.py --port PORT``.

TCP_NODELAY is set on every accepted socket, as a user tuning pywsgi fairly would: pywsgi sends the
response head and the body in two writes, and with Nagle's algorithm on, the second write waits for
the client's delayed ACK (up to 40 ms), which caps a keep-alive connection at about 25 requests/s.
The access log is off (``log=None``); nothing is monkey-patched because the app never blocks.
"""

from __future__ import annotations

import argparse
import html
import socket
from urllib.parse import parse_qs

from gevent.pywsgi import WSGIServer

HELLO = b"Hello, World!"
PLAIN = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]


def app(environ, start_response):
    method = environ["REQUEST_METHOD"]
    path = environ["PATH_INFO"]
    if path == "/" and method in ("GET", "HEAD"):
        start_response("200 OK", PLAIN)
        return [] if method == "HEAD" else [HELLO]  # pywsgi sends whatever the app returns
    if path == "/echo" and method == "POST":
        body = environ["wsgi.input"].read()
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
        )
        return [body]
    if path == "/test" and method in ("GET", "HEAD"):
        name = parse_qs(environ.get("QUERY_STRING", "")).get("name", [""])[0]
        page = f"<h1>Hello {html.escape(name)}</h1>".encode()
        start_response(
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))],
        )
        return [] if method == "HEAD" else [page]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"Not Found"]


class NoDelayWSGIServer(WSGIServer):
    def handle(self, sock, address):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().handle(sock, address)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backlog", type=int, default=1024)
    args = parser.parse_args()
    server = NoDelayWSGIServer((args.host, args.port), app, log=None, backlog=args.backlog)
    server.serve_forever()


if __name__ == "__main__":
    main()
