"""Access log lines in the Common Log Format, with control and non-ASCII bytes escaped.

Rules: every byte that came from the client is escaped before it reaches the log (no ANSI
escape sequences or fake lines can be injected: uvicorn CVE-2020-7694); one line per response.
"""

from __future__ import annotations

import re
import time
from typing import Any

_UNSAFE = re.compile(rb'[\x00-\x1f\x7f-\xff"\\]')


def _escape_byte(m: re.Match[bytes]) -> bytes:
    return b"\\x%02x" % m.group()[0]


def escape(data: bytes) -> str:
    """Client bytes as printable ASCII: CTLs, DEL, quotes, backslashes and 8-bit bytes as \\xNN."""
    return _UNSAFE.sub(_escape_byte, data).decode("ascii")


_last_second = -1
_last_stamp = ""


def _stamp() -> str:
    global _last_second, _last_stamp
    now = int(time.time())
    if now != _last_second:
        _last_second = now
        _last_stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
    return _last_stamp


def format_line(peer: Any, head: Any, status: int, size: int) -> str:
    host = peer[0] if isinstance(peer, tuple) and peer else "-"
    if head is None:
        request = "-"
    else:
        version = b"HTTP/1.1" if head.version == 11 else b"HTTP/1.0"
        request = escape(b"%s %s %s" % (head.method, head.target, version))
    return f'{host} - - [{_stamp()}] "{request}" {status} {size if size else "-"}\n'
