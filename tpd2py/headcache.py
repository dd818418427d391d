"""HeadCache: reuse the parse of a request head byte-identical to one parsed before.

Why it is safe: ``parse_head`` is a pure function of the head's bytes and the limits, so the
same bytes give the same result. A cached head is shared by every request that sends those
bytes, so it is made immutable (its header fields become a tuple) and ``Request`` keeps it
private. Bounded: at most ``ENTRIES`` heads of at most ``MAX_BYTES`` each; when full, the whole
cache is dropped (cheap, and a flood of distinct heads only costs the misses). A head is kept
only when it ends at the first blank line found (not after empty lines that precede it).
Sans-I/O; never switches.
Who gains: clients that repeat a head (benchmarks, pollers, health checks, pipelined copies).
"""

from __future__ import annotations

from .http11 import Limits, RequestHead, parse_head

# Heads remembered; a real client set sends few distinct heads per route.
ENTRIES = 256
# Longer heads (big cookies) are parsed every time: they rarely repeat byte for byte.
MAX_BYTES = 2048


class HeadCache:
    __slots__ = ("heads",)

    def __init__(self) -> None:
        self.heads: dict[bytes, RequestHead] = {}

    def parse(self, buf: bytes | bytearray, start: int, end: int, limits: Limits,
              scan_from: int = 0) -> tuple[RequestHead, int] | None:
        """``parse_head`` with the same arguments and the same results, errors included."""
        idx = buf.find(b"\r\n\r\n", max(start, scan_from), end)
        if not 0 < idx - start <= MAX_BYTES:
            return parse_head(buf, start, end, limits, scan_from)
        key = b"" + buf[start:idx]
        head = self.heads.get(key)
        if head is not None:
            return head, idx + 4
        result = parse_head(buf, start, end, limits, scan_from)
        if result is not None and result[1] == idx + 4:
            if len(self.heads) >= ENTRIES:
                self.heads.clear()
            shared = result[0]
            shared.headers = tuple(shared.headers)  # type: ignore[assignment]
            self.heads[key] = shared
        return result
