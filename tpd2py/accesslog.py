"""Access log lines in the Common Log Format, with control and non-ASCII bytes escaped.

Rules: every byte that came from the client is escaped before it reaches the log (no ANSI
escape sequences or fake lines can be injected: uvicorn CVE-2020-7694); one line per response.
The time stamp comes from the server's once-a-second clock (``wire.DateCache``). Never switches:
lines go to the file object's buffer, which the server's sweep flushes once a second.
"""

from __future__ import annotations

import contextlib
import re
from typing import IO, Any

from .wire import DateCache, request_line

_UNSAFE = re.compile(rb'[\x00-\x1f\x7f-\xff"\\]')


def _escape_byte(m: re.Match[bytes]) -> bytes:
    return b"\\x%02x" % m.group()[0]


def escape(data: bytes) -> str:
    """Client bytes as printable ASCII: CTLs, DEL, quotes, backslashes and 8-bit bytes as \\xNN."""
    return _UNSAFE.sub(_escape_byte, data).decode("ascii")


def format_line(peer: Any, head: Any, status: int, size: int, stamp: str) -> str:
    host = peer[0] if isinstance(peer, tuple) and peer else "-"
    request = "-" if head is None else escape(request_line(head))
    return f'{host} - - [{stamp}] "{request}" {status} {size if size else "-"}\n'


class AccessLog:
    """One server's access log: ``write`` a line per response, ``flush`` once a second."""

    __slots__ = ("file", "clock")

    def __init__(self, file: IO[str], clock: DateCache) -> None:
        self.file = file
        self.clock = clock

    def write(self, peer: Any, head: Any, status: int, size: int) -> None:
        self.file.write(format_line(peer, head, status, size, self.clock.stamp))

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.file.flush()
