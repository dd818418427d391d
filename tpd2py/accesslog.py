"""Access log lines in the Common Log Format, with control and non-ASCII bytes escaped, and the
request's duration after the size.

Rules: every byte that came from the client is escaped before it reaches the log (no ANSI
escape sequences or fake lines can be injected: uvicorn CVE-2020-7694); one line per response.
The time stamp comes from the server's once-a-second clock (``wire.DateCache``). Never switches:
lines go to the file object's buffer, which the server's sweep flushes once a second.

The duration (seconds, to the microsecond) runs from the hub's clock when the request's handling
began (``Hub.now``: the poll that found the request, so a wait behind other connections counts)
until its response is queued (a streamed body: its last piece; a file body: its head, before
the kernel sends the file); ``-`` for an error answered before a request was handled. Only a
server with a log pays for it: ``timed`` gives the exchange class a start stamp per request.

Behind a trusted proxy the address comes from ``client(peer, head)`` (proxy.py sets it): the
core only knows the socket's peer.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from time import monotonic
from typing import IO, Any

from .wire import DateCache, request_line

_UNSAFE = re.compile(rb'[\x00-\x1f\x7f-\xff"\\]')


def _escape_byte(m: re.Match[bytes]) -> bytes:
    return b"\\x%02x" % m.group()[0]


def escape(data: bytes) -> str:
    """Client bytes as printable ASCII: CTLs, DEL, quotes, backslashes and 8-bit bytes as \\xNN."""
    return _UNSAFE.sub(_escape_byte, data).decode("ascii")


def format_line(peer: Any, head: Any, status: int, size: int, stamp: str,
                duration: float | None = None) -> str:
    host = peer[0] if isinstance(peer, tuple) and peer else "-"
    request = "-" if head is None else escape(request_line(head))
    took = "-" if duration is None else f"{duration:.6f}"
    return f'{host} - - [{stamp}] "{request}" {status} {size if size else "-"} {took}\n'


def timed(exchange_class: Any) -> Any:
    """``exchange_class`` (the connection's per-request object: exchange.Exchange, a WSGI
    exchange) with each request's start noted in ``started``: made once per server, and only
    when there is a log, so a server without one pays nothing. A factory that is not a class
    is returned as it is (its lines say ``-`` for the duration)."""
    if not isinstance(exchange_class, type):
        return exchange_class
    handle = exchange_class.handle  # type: ignore[attr-defined]

    def timed_handle(self: Any, conn: Any, head: Any) -> Any:
        self.started = conn.ctx.hub.now
        return handle(self, conn, head)

    return type("Timed" + exchange_class.__name__, (exchange_class,),
                {"__slots__": ("started",), "handle": timed_handle,
                 "__doc__": exchange_class.__doc__})


class AccessLog:
    """One server's access log: ``write`` a line per response, ``flush`` once a second."""

    __slots__ = ("file", "clock", "client")

    def __init__(self, file: IO[str], clock: DateCache) -> None:
        self.file = file
        self.clock = clock
        # (socket peer, request head or None) -> the address to log: proxy.py's, behind a
        # trusted proxy; None: the socket's peer.
        self.client: Callable[[Any, Any], Any] | None = None

    def write(self, conn: Any, head: Any, status: int, size: int) -> None:
        """The line for the response to ``conn``'s current request. Never switches."""
        peer = conn.address()
        if self.client is not None:
            peer = self.client(peer, head)
        ex = conn.ex
        started = getattr(ex, "started", None)
        if started is not None:
            ex.started = None  # one line per request: a later error line gets "-"
            duration: float | None = monotonic() - started  # never < 0: now came from it
        else:
            duration = None
            if hasattr(type(ex), "started"):
                # This request's line is written, so a line now (a 400 for the next head,
                # which did not parse) is not about it: not its request line either.
                head = None
        self.file.write(format_line(peer, head, status, size, self.clock.stamp, duration))

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.file.flush()
