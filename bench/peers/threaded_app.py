"""Thread-per-connection peer for the bench: the standard library's ThreadingHTTPServer.

Run from the repo root: ``python bench/peers/threaded_app.py --port PORT``.

This is the talk's other design ("Which one is better?"): every connection, busy or idle, owns an OS
thread blocked in ``recv``. Two settings a fair user would change from the defaults: HTTP/1.1 so
connections are kept alive, and TCP_NODELAY (``disable_nagle_algorithm``) because the handler writes
the head and the body separately. The listen backlog is raised from 5 to 1024, as for every peer.
Access logging is off.
"""

from __future__ import annotations

import argparse
import html
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HELLO = b"Hello, World!"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # access log off
        pass

    def _reply(self, status: int, content_type: str, body: bytes, send_body: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _route_get(self, send_body: bool) -> None:
        url = urlsplit(self.path)
        if url.path == "/":
            self._reply(200, "text/plain", HELLO, send_body)
        elif url.path == "/test":
            name = parse_qs(url.query).get("name", [""])[0]
            page = f"<h1>Hello {html.escape(name)}</h1>".encode()
            self._reply(200, "text/html; charset=utf-8", page, send_body)
        else:
            self._reply(404, "text/plain", b"Not Found", send_body)

    def do_GET(self) -> None:
        self._route_get(send_body=True)

    def do_HEAD(self) -> None:
        self._route_get(send_body=False)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if urlsplit(self.path).path == "/echo":
            self._reply(200, "application/octet-stream", body)
        else:
            self._reply(404, "text/plain", b"Not Found")


class Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client resetting its connection is normal under load, not worth a traceback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with Server((args.host, args.port), Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
