"""Response: what goes back; ``to_response``: the one place a handler's return value
becomes one.

Rules:
- A handler may return str, bytes, a list of bytes chunks, a dict (JSON, ``json_bytes``), a
  generator (streamed response), (body, status[, headers]) or a Response; None is an error (a
  forgotten return, not a 204).
- Response headers set by a handler are checked: CR, LF or NUL in a status, name or value raise
  ``ValueError`` instead of being sent (RFC 9110 §5.5); framing and connection headers are the
  connection's and refused (response smuggling).
- The common returns (bytes, str, a dict) get a ready Response without the keyword checks
  (``bare_response``), and the content type lines are encoded once.
Re-exported by ``app`` (``from .app import Response`` keeps working). Never does I/O.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from .errors import HTTPError
from .jsonbody import json_bytes
from .webapp import ResponseFeatures, tuple_response
from .wire import error_body

HTML = b"text/html; charset=utf-8"
TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"

# Bytes a header name, value or reason phrase may never carry (response splitting).
_FORBIDDEN_IN_HEADERS = re.compile(rb"[\r\n\0]")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def _to_bytes(value: str | bytes | int) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return str(value).encode()
    return value.encode("latin-1")


# Framing and connection management belong to the connection: a second copy set by a handler
# could make a proxy frame the response differently (response smuggling).
_RESERVED = frozenset({b"content-length", b"transfer-encoding", b"connection", b"date",
                       b"keep-alive", b"upgrade", b"trailer"})


def _check_header(name: bytes, value: bytes) -> None:
    if not _TOKEN.match(name):
        raise ValueError(f"invalid response header name {name!r}")
    if name.lower() in _RESERVED:
        raise ValueError(f"{name.decode()} is set by the server, not by handlers")
    if _FORBIDDEN_IN_HEADERS.search(value):
        raise ValueError(f"CR, LF or NUL in response header {name!r}")


class Response(ResponseFeatures):  # set_cookie, delete_cookie
    """What goes back: status, headers, body. ``body`` is bytes, a list of chunks or an iterator.

    The content type and handler-set headers are checked and pre-encoded once, here, into
    ``fields`` (``b"Name: value\\r\\n"`` lines); the connection adds Content-Length, Date,
    Connection and Transfer-Encoding itself. The content type is ``content_type`` when given,
    else ``text/html; charset=utf-8``; ``content_type=""`` sends none, and
    ``set_header("Content-Type", ...)`` replaces it later.
    """

    __slots__ = ("status", "body", "fields", "reason")

    def __init__(
        self,
        body: bytes | str | list[bytes] | Iterable[bytes | str] | FileBody = b"",
        status: int = 200,
        headers: Iterable[tuple[str | bytes, str | bytes]] | dict[str, str] | None = None,
        content_type: str | bytes | None = None,
        reason: str | None = None,
    ) -> None:
        if status < 100 or status > 999:
            raise ValueError(f"bad status {status}")
        self.status = status
        if type(body) is str:
            body = body.encode()
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        self.body: Any = body
        if content_type is None:
            self.fields = _HTML_LINE
        else:
            line = _CONTENT_TYPE_LINES.get(content_type)
            self.fields = line if line is not None else _content_type_line(content_type)
        self.reason: bytes | None = None
        if reason is not None:
            r = reason.encode("latin-1")
            if _FORBIDDEN_IN_HEADERS.search(r):
                raise ValueError("CR, LF or NUL in reason phrase")
            self.reason = r
        if headers:
            items = headers.items() if isinstance(headers, dict) else headers
            for name, value in items:
                self.set_header(name, value)

    def set_header(self, name: str | bytes, value: str | bytes | int) -> None:
        """Add a header (Content-Type replaces the current one). Raises ValueError on CR/LF/NUL."""
        n, v = _to_bytes(name), _to_bytes(value)
        _check_header(n, v)
        if n.lower() == b"content-type":
            lines = [ln for ln in self.fields.split(b"\r\n")
                     if ln and not ln.lower().startswith(b"content-type:")]
            self.fields = b"".join(ln + b"\r\n" for ln in [b"Content-Type: " + v, *lines])
        else:
            self.fields += b"%s: %s\r\n" % (n, v)

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The handler-set header fields, parsed back from ``fields`` (for tests and logs)."""
        out = []
        for line in self.fields.split(b"\r\n"):
            if line:
                name, _, value = line.partition(b": ")
                out.append((name, value))
        return out


def _content_type_line(content_type: str | bytes) -> bytes:
    ct = _to_bytes(content_type)
    if not ct:
        return b""
    if _FORBIDDEN_IN_HEADERS.search(ct):
        raise ValueError("CR, LF or NUL in content type")
    line = b"Content-Type: %s\r\n" % ct
    if len(_CONTENT_TYPE_LINES) < 256:  # bounded: content types are few in a real app
        _CONTENT_TYPE_LINES[content_type] = line
    return line


_CONTENT_TYPE_LINES: dict[str | bytes, bytes] = {}
_HTML_LINE = _content_type_line(HTML)
_JSON_LINE = _content_type_line(JSON)
_new_response = object.__new__


def bare_response(status: int, fields: bytes, body: Any, reason: bytes | None = None
                  ) -> Response:
    """A Response from header lines the caller made and checked itself (static files, gzip
    forms): no checks, no content-type lookup. Handlers use ``Response(...)``."""
    response = _new_response(Response)
    response.status = status
    response.body = body
    response.fields = fields
    response.reason = reason
    return response


def _html_200(body: bytes, fields: bytes = _HTML_LINE) -> Response:
    """``Response(body)`` without its checks (status 200, HTML or ``fields``, nothing to check),
    for the handler that returns bytes, str or a dict. bench/instructions.py: ~88.7k -> ~87k
    instructions per new connection."""
    response = _new_response(Response)
    response.status = 200
    response.body = body
    response.fields = fields
    response.reason = None
    return response


class FileBody:
    """A response body that the kernel sends from an open file (``os.sendfile``): its bytes
    never enter Python. ``length`` bytes from ``offset`` of ``fd``; the connection closes the
    fd once the response is sent or dropped (``close`` is idempotent). Build one with
    ``files.FileResponse`` rather than by hand."""

    __slots__ = ("fd", "offset", "length")

    def __init__(self, fd: int, offset: int, length: int) -> None:
        if offset < 0 or length < 0:
            raise ValueError("a file body's offset and length are not negative")
        self.fd = fd
        self.offset = offset
        self.length = length

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:  # a response built and then dropped unsent
        self.close()


def http_error_response(error: HTTPError) -> Response:
    """The Response for an ``HTTPError`` a handler raised: its message (or the canned text of
    its status) as text/plain, with its headers. Raises ValueError/TypeError if they are bad."""
    body = error.message
    if body is None:
        body = error_body(error.status)
    elif isinstance(body, str):
        body = body.encode()
    return Response(body, status=error.status, headers=error.headers, content_type=TEXT)


def to_response(result: Any) -> Response:
    """The one place a handler's return value becomes a Response."""
    if type(result) is Response:
        return result
    if type(result) is bytes:
        return _html_200(result)
    if type(result) is str:
        return _html_200(result.encode())
    if type(result) is dict:
        return _html_200(json_bytes(result), _JSON_LINE)
    if isinstance(result, Response):
        return result
    if isinstance(result, str):
        return Response(result.encode())
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(bytes(result) if not isinstance(result, bytes) else result)
    if isinstance(result, list):
        return Response([c.encode() if isinstance(c, str) else c for c in result])
    if isinstance(result, dict):
        return Response(json_bytes(result), content_type=JSON)
    if result is None:
        raise TypeError("handler returned None (did it forget a return?); return "
                        "Response(status=204) for an empty answer")
    if isinstance(result, Iterator) or hasattr(result, "__next__"):
        return Response(result)
    if type(result) is tuple:
        return tuple_response(result, to_response)
    raise TypeError(f"handler returned {type(result).__name__}; expected str, bytes, list, "
                    "dict, generator or Response")

