"""Serialising responses: pre-encoded status lines, canned errors, the cached Date header.

Rules: everything static is bytes made at import; per response only the Content-Length digits,
the Date line (rebuilt once a second by the server's sweep) and handler-set headers are
formatted, with one ``bytes %`` into one head chunk. The body chunks follow untouched.
Never does I/O, never switches.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

STATUS_LINES: dict[int, bytes] = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("ascii")) for s in HTTPStatus
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CLOSE = b"Connection: close\r\n"
KEEP_ALIVE = b"Connection: keep-alive\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CRLF = b"\r\n"

# Statuses that never carry a body or a Content-Length (RFC 9110 §8.6, §15.3.5, §15.4.5).
NO_BODY_STATUSES = frozenset({204, 304}) | frozenset(range(100, 200))


def status_line(status: int, reason: bytes | None = None) -> bytes:
    if reason is None:
        line = STATUS_LINES.get(status)
        if line is not None:
            return line
        reason = b"Unknown"
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


class DateCache:
    """The ``Date:`` header line, formatted at most once a second (RFC 9110 §6.6.1)."""

    __slots__ = ("line", "second")

    def __init__(self) -> None:
        self.second = -1
        self.line = b""
        self.update()

    def update(self) -> None:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.line = b"Date: %s\r\n" % formatdate(now, usegmt=True).encode("ascii")


_HEAD = b"%s%sContent-Length: %d\r\n%s%s\r\n"
_HEAD_NO_LENGTH = b"%s%s%s%s\r\n"


def head(status_bytes: bytes, fields: bytes, length: int, date_line: bytes,
         connection: bytes) -> bytes:
    """One response head. ``fields`` are pre-encoded header lines; ``length`` < 0 means no
    Content-Length (a streamed or bodiless response)."""
    if length >= 0:
        return _HEAD % (status_bytes, fields, length, date_line, connection)
    return _HEAD_NO_LENGTH % (status_bytes, fields, date_line, connection)


_ERROR_BODIES: dict[int, bytes] = {
    s.value: b"%d %s\n" % (s.value, s.phrase.encode("ascii")) for s in HTTPStatus
}


_TEXT_LINE = b"Content-Type: text/plain; charset=utf-8\r\n"


def error_response(status: int, date_line: bytes, connection: bytes = CLOSE,
                   extra: bytes = b"", with_body: bool = True) -> bytes:
    """A short text/plain error page, as one chunk. ``connection`` is the Connection header
    line (or b""); ``with_body`` False gives the head only (a HEAD request)."""
    body = _ERROR_BODIES.get(status, b"%d\n" % status)
    h = head(status_line(status), _TEXT_LINE + extra, len(body), date_line, connection)
    return h + body if with_body else h
