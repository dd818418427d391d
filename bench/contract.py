"""The bench contract, checked against a running server before any load is put on it.

A server that answers wrongly would otherwise produce fast, meaningless numbers (wrk counts a 404
as a request). Every server must give, on one keep-alive connection:
  GET /                -> 200 text/plain "Hello, World!"
  HEAD /               -> the same status and headers, no body (checked by sending GET right after)
  POST /echo           -> 200 with exactly the request body
  GET /test?name=John  -> 200 text/html; charset=utf-8 "<h1>Hello John</h1>", the name HTML-escaped
  anything else        -> 404
and an HTTP/1.0 request without keep-alive must be answered and then closed (ab relies on it).
"""

from __future__ import annotations

import http.client
import socket
import time

HELLO = b"Hello, World!"
TIMEOUT_S = 5.0
# Bytes a naive echo would mangle: every byte value, and longer than one small read.
ECHO_BODY = bytes(range(256)) * 40
TRICKY_NAME = "%3Cb%3E%26co"  # <b>&co
TRICKY_PAGE = b"<h1>Hello &lt;b&gt;&amp;co</h1>"


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def _html_utf8(value: str | None) -> bool:
    parts = [part.strip().lower().replace(" ", "") for part in (value or "").split(";")]
    return parts[0] == "text/html" and "charset=utf-8" in parts[1:]


class _Checker:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        self.failures: dict[str, str] = {}

    def fail(self, check: str, why: str) -> None:
        self.failures.setdefault(check, why)

    def request(self, check: str, method: str, path: str,
                body: bytes | None = None) -> http.client.HTTPResponse | None:
        try:
            self.conn.request(method, path, body=body)
            response = self.conn.getresponse()
            response.body = response.read()  # type: ignore[attr-defined]
            return response
        except (OSError, http.client.HTTPException) as exc:
            self.fail(check, f"{method} {path}: {type(exc).__name__}: {exc}")
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
            return None

    def expect(self, check: str, response, status: int, media: str | None = None,
               body: bytes | None = None) -> None:
        if response is None:
            return
        if response.status != status:
            self.fail(check, f"status {response.status}, expected {status}")
        elif media == "text/html; charset=utf-8":
            if not _html_utf8(response.getheader("Content-Type")):
                self.fail(check, f"Content-Type {response.getheader('Content-Type')!r}")
        elif media and _media_type(response.getheader("Content-Type")) != media:
            self.fail(check, f"Content-Type {response.getheader('Content-Type')!r}, "
                             f"expected {media}")
        if body is not None and response.status == status and response.body != body:
            self.fail(check, f"body {response.body[:60]!r}, expected {body[:60]!r}")

    def run(self) -> dict[str, str]:
        self.expect("get", self.request("get", "GET", "/"), 200, "text/plain", HELLO)
        head = self.request("head", "HEAD", "/")
        self.expect("head", head, 200, "text/plain", b"")
        if head is not None and head.getheader("Content-Length") not in (None, str(len(HELLO))):
            self.fail("head", f"Content-Length {head.getheader('Content-Length')}, expected 13")
        # A server that sent a body after HEAD makes this next response unparseable.
        self.expect("head", self.request("head", "GET", "/"), 200, "text/plain", HELLO)
        self.expect("echo", self.request("echo", "POST", "/echo", ECHO_BODY), 200,
                    body=ECHO_BODY)
        self.expect("test", self.request("test", "GET", "/test?name=John"), 200,
                    "text/html; charset=utf-8", b"<h1>Hello John</h1>")
        self.expect("escape", self.request("escape", "GET", f"/test?name={TRICKY_NAME}"), 200,
                    "text/html; charset=utf-8", TRICKY_PAGE)
        self.expect("404", self.request("404", "GET", "/no/such/page"), 404)
        self.conn.close()
        self.check_http10_close()
        return self.failures

    def check_http10_close(self) -> None:
        """ab speaks HTTP/1.0 without keep-alive and waits for the server to close."""
        request = b"GET /test?name=John HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        deadline = time.monotonic() + TIMEOUT_S
        received = b""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT_S) as sock:
                sock.sendall(request)
                while time.monotonic() < deadline:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received += chunk
                else:
                    self.fail("http10", "HTTP/1.0 request answered but the connection was not "
                                        "closed (ab would wait for its timeout)")
                    return
        except TimeoutError:
            if received.endswith(b"</h1>"):
                self.fail("http10", "HTTP/1.0 request answered but the connection was not closed "
                                    f"within {TIMEOUT_S:.0f} s (ab would wait for its timeout)")
            else:
                self.fail("http10", "HTTP/1.0 request: no complete answer within "
                                    f"{TIMEOUT_S:.0f} s (got {received[:60]!r})")
            return
        except OSError as exc:
            self.fail("http10", f"HTTP/1.0 request: {type(exc).__name__}: {exc}")
            return
        if not received.startswith(b"HTTP/1.") or b" 200 " not in received.split(b"\r\n", 1)[0]:
            self.fail("http10", f"HTTP/1.0 request answered {received[:60]!r}")
        elif not received.endswith(b"<h1>Hello John</h1>"):
            self.fail("http10", f"HTTP/1.0 body ends {received[-40:]!r}")


def check(port: int) -> dict[str, str]:
    """Failed checks of the contract on 127.0.0.1:port, by name; empty when all pass."""
    return _Checker(port).run()
