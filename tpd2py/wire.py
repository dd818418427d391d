"""Response bytes: the one place a response head, a chunk frame or a canned error is made.

Rules:
- Everything static is bytes made at import: status lines (with RFC 9110's reason phrases),
  the Connection and Transfer-Encoding lines, canned error bodies. Per response only the
  Content-Length digits, the Date line (rebuilt at most once a second) and the handler's own
  header lines are formatted, with one ``bytes %`` into one head chunk; body chunks follow
  untouched (a small one is joined to its head: see ``fixed``).
- Sans-I/O: chunks are appended to a list the caller sends. Never does I/O, never switches.
How it works: ``fixed`` is the measured common case (a bytes body with a standard status),
``head`` the general one; the exchange (exchange.py) picks between them.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

# RFC 9110 §15 renamed a few reason phrases; older Pythons' HTTPStatus keeps RFC 7231's.
_RFC9110_PHRASES = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    421: "Misdirected Request",
    422: "Unprocessable Content",
}
PHRASES: dict[int, bytes] = {
    s.value: _RFC9110_PHRASES.get(s.value, s.phrase).encode("ascii") for s in HTTPStatus
}
STATUS_LINES: dict[int, bytes] = {
    status: b"HTTP/1.1 %d %s\r\n" % (status, phrase) for status, phrase in PHRASES.items()
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CLOSE = b"Connection: close\r\n"
KEEP_ALIVE = b"Connection: keep-alive\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CRLF = b"\r\n"
TEXT_LINE = b"Content-Type: text/plain; charset=utf-8\r\n"

# Statuses that never carry a body or a Content-Length (RFC 9110 §8.6, §15.3.5, §15.4.5).
NO_BODY_STATUSES = frozenset({204, 304}) | frozenset(range(100, 200))

# A fixed body this small is copied into its response head: one chunk, one iovec fewer for the
# kernel (bench/micro_sendbuf.py: per-iovec costs dominate tiny chunks), and `send` instead of
# `sendmsg` when it is the only response.
JOIN_BODY_MAX = 1024


def status_line(status: int, reason: bytes | None = None) -> bytes:
    if reason is None:
        line = STATUS_LINES.get(status)
        if line is not None:
            return line
        reason = b"Unknown"
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


def connection_line(keep_alive: bool, version: int) -> bytes:
    """The Connection header line a response needs (b"" for a kept HTTP/1.1 connection)."""
    if not keep_alive:
        return CLOSE
    return KEEP_ALIVE if version == 10 else b""


class DateCache:
    """The ``Date:`` header line (RFC 9110 §6.6.1) and the access log's time stamp, formatted
    at most once a second."""

    __slots__ = ("line", "second", "stamp")

    def __init__(self) -> None:
        self.second = -1
        self.line = b""
        self.stamp = ""
        self.update()

    def update(self) -> None:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.line = b"Date: %s\r\n" % formatdate(now, usegmt=True).encode("ascii")
            self.stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))


# Status line, fields, Content-Length, Date, Connection line (or b""), end of head.
_HEAD = b"%s%sContent-Length: %d\r\n%s%s\r\n"
_HEAD_NO_LENGTH = b"%s%s%s%s\r\n"


def head(status_bytes: bytes, fields: bytes, length: int, date_line: bytes,
         connection: bytes) -> bytes:
    """One response head. ``fields`` are pre-encoded header lines; ``length`` < 0 means no
    Content-Length (a streamed or bodiless response)."""
    if length >= 0:
        return _HEAD % (status_bytes, fields, length, date_line, connection)
    return _HEAD_NO_LENGTH % (status_bytes, fields, date_line, connection)


def fixed(chunks: list[Any], status_bytes: bytes, fields: bytes, body: bytes,
          date_line: bytes, connection: bytes, with_body: bool) -> int:
    """Append a whole response with a bytes body (status 2xx other than 204: it has a body and
    a Content-Length) to ``chunks``; returns the bytes appended. The hot path of the server:
    no checks, one format, a small body joined to its head."""
    size = len(body)
    chunk = _HEAD % (status_bytes, fields, size, date_line, connection)
    if size and with_body:
        if size <= JOIN_BODY_MAX:
            chunks.append(chunk + body)
        else:
            chunks.append(chunk)
            chunks.append(body)
        return len(chunk) + size
    chunks.append(chunk)
    return len(chunk)


def chunk_frame(size: int) -> bytes:
    """The chunk-size line of a chunked body's chunk of ``size`` bytes (RFC 9112 §7.1)."""
    return b"%x\r\n" % size


ERROR_BODIES: dict[int, bytes] = {
    status: b"%d %s\n" % (status, phrase) for status, phrase in PHRASES.items()
}


def error_body(status: int) -> bytes:
    """The short text/plain body of a canned error page: ``404 Not Found\\n``."""
    body = ERROR_BODIES.get(status)
    return body if body is not None else b"%d\n" % status


def error_response(status: int, date_line: bytes, connection: bytes = CLOSE,
                   extra: bytes = b"", with_body: bool = True) -> bytes:
    """A short text/plain error page, as one chunk. ``connection`` is the Connection header
    line (or b""); ``with_body`` False gives the head only (a HEAD request)."""
    body = error_body(status)
    h = head(status_line(status), TEXT_LINE + extra, len(body), date_line, connection)
    return h + body if with_body else h


def request_line(head: Any) -> bytes:
    """A parsed request head's request line, for logs (``-`` when there is none)."""
    if head is None:
        return b"-"
    return b"%s %s HTTP/%s" % (head.method, head.target, b"1.1" if head.version == 11 else b"1.0")
