"""Chunked request bodies (RFC 9112 §7.1): a sans-I/O decoder, strict like the head parser.

`ChunkedDecoder` is a small state machine fed with whatever bytes have arrived; it consumes
exactly one message body and leaves the rest. Chunk sizes are checked byte by byte before any
`int()`, extensions are matched by a possessive (never backtracking) pattern and not
interpreted, trailer fields are checked like header fields and bounded. No I/O, never switches.
Its byte classes, name checks and limits come from `_grammar.py`, shared with http11.py.
"""

from __future__ import annotations

import re

from ._grammar import (
    DEFAULT_LIMITS,
    HEAD_TABLE,
    HEX_TABLE,
    MAX_CHUNK_SIZE_DIGITS,
    NAMES,
    OWS,
    Limits,
    check_name,
    invalid,
)

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)
# Below this size bytes(buf[a:b]) (two copies) beats bytes(memoryview(buf)[a:b]) (one copy plus
# a view); measured in CPython 3.11, crossing near 4 KiB.
_VIEW_COPY_FROM = 4096


class ChunkedDecoder:
    """Decode one chunked body. Feed it bytes; it consumes exactly the message and no more.

    Decoded data goes to `self.out` as bytes copies (never views of the caller's buffer) and is
    counted in `self.total`; the caller enforces its body-size limit on `total`. `done` turns
    true once the last chunk and the trailer section's final CRLF are consumed (RFC 9112 §7.1:
    the message is not complete before that, peers #16). Never switches.
    """

    __slots__ = ("limits", "out", "total", "done", "trailers", "_state", "_remaining", "_tbytes")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.out: list[bytes] = []
        self.total = 0
        self.done = False
        self.trailers: list[tuple[bytes, bytes]] = []
        self._state = _SIZE
        self._remaining = 0
        self._tbytes = 0

    def feed(self, buf: bytes | bytearray, start: int, end: int) -> int:
        """Consume what can be consumed of buf[start:end]; return the index of the first byte
        left unconsumed (an incomplete chunk line or trailer line, or the next request)."""
        state = self._state
        out = self.out
        while start < end:
            if state == _DATA:
                take = end - start
                if take >= self._remaining:
                    take = self._remaining
                    state = _DATA_END
                self._remaining -= take
                if take < _VIEW_COPY_FROM:
                    out.append(bytes(buf[start : start + take]))
                else:  # one copy instead of two; the temporary view is released at once
                    out.append(bytes(memoryview(buf)[start : start + take]))
                self.total += take
                start += take
            elif state == _DATA_END:
                # RFC 9112 §7.1: chunk-data is followed by CRLF, nothing else (peers #13).
                if buf[start] != 13 or (end - start >= 2 and buf[start + 1] != 10):
                    raise invalid(400, "chunk data not followed by CRLF")
                if end - start < 2:
                    break
                start += 2
                state = _SIZE
            elif state == _SIZE:
                max_line = self.limits.max_chunk_ext
                i = buf.find(b"\r\n", start, min(end, start + max_line + 2))
                if i < 0:
                    _check_partial_line(buf, start, end, max_line)
                    break
                size = _parse_chunk_line(b"" + buf[start:i])
                start = i + 2
                if size:
                    self._remaining = size
                    state = _DATA
                else:
                    state = _TRAILER
            elif state == _TRAILER:
                after = self._trailer_line(buf, start, end)
                if after == start:
                    break  # the line is not complete yet
                start = after
                if self.done:
                    state = _DONE
                    break
            else:
                break
        self._state = state
        return start

    def _trailer_line(self, buf: bytes | bytearray, start: int, end: int) -> int:
        """Consume one trailer line (RFC 9112 §7.1.2); return the index after it, or `start`
        itself when the line is not complete yet (a complete line is at least 2 bytes)."""
        limits = self.limits
        room = limits.max_trailer_bytes - self._tbytes
        i = buf.find(b"\r\n", start, min(end, start + room))
        if i < 0:
            if end - start >= room:
                raise invalid(431, "trailer section too large")  # peers #18
            if buf.find(b"\n", start, end) >= 0:
                raise invalid(400, "bare LF in trailer section")
            return start
        self._tbytes += i + 2 - start
        if i == start:
            self.done = True
            return i + 2
        line = b"" + buf[start:i]
        if line.translate(HEAD_TABLE).count(0):
            raise invalid(400, "invalid byte in trailer field")  # bare CR/LF, CTL (peers #14/#15)
        name, colon, value = line.partition(b":")
        if not colon:
            # peers #15: "GET /admin HTTP/1.1" here is not a request; it is a broken trailer.
            raise invalid(400, "trailer line without colon")
        lname = NAMES.get(name)
        if lname is None:
            lname = check_name(name)
        if len(self.trailers) >= limits.max_headers:
            raise invalid(431, "too many trailer fields")  # peers #18
        self.trailers.append((lname, value.strip(OWS)))
        return i + 2


def _check_partial_line(buf: bytes | bytearray, start: int, end: int, max_line: int) -> None:
    """A chunk line with no CRLF yet: refuse it early if it is already too long or broken."""
    if end - start >= max_line + 2:
        raise invalid(400, "chunk line too long")  # RFC 9112 §7.1.1: bound extensions
    if buf.find(b"\n", start, end) >= 0:
        raise invalid(400, "bare LF in chunk line")  # peers #14
    i = buf.find(b"\r", start, end)
    if 0 <= i < end - 1:
        raise invalid(400, "bare CR in chunk line")


def _parse_chunk_line(line: bytes) -> int:
    """chunk-size [ chunk-ext ] (RFC 9112 §7.1, §7.1.1); return the size, or raise 400."""
    if 0 < len(line) <= MAX_CHUNK_SIZE_DIGITS and not line.translate(HEX_TABLE).count(0):
        return int(line, 16)  # the common case: 1*HEXDIG alone, checked byte by byte first
    if line.translate(HEAD_TABLE).count(0):
        raise invalid(400, "invalid byte in chunk line")  # bare CR/LF or CTL (peers #14)
    cut = len(line)
    for sep in (b";", b" ", b"\t"):  # ";" ends the size; BWS (SP/HTAB) may precede it
        i = line.find(sep, 0, cut)
        if i >= 0:
            cut = i
    size = line[:cut]
    if not size or len(size) > MAX_CHUNK_SIZE_DIGITS or size.translate(HEX_TABLE).count(0):
        # peers #12: 0x5, +5, 1_0, -0, " 5" are not 1*HEXDIG; never int(x, 16) unchecked.
        raise invalid(400, "invalid chunk size")
    if _CHUNK_EXT.fullmatch(line, cut) is None:
        raise invalid(400, "invalid chunk extension")
    return int(size, 16)


# chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ), ext-val = token / quoted-string
# (RFC 9112 §7.1.1, RFC 9110 §5.6.4). Every quantifier is possessive ("*+", "++", "?+"), so the
# engine never backtracks: matching is linear in the line length even for hostile input
# (peers #33). Extensions are checked, never interpreted.
_TOKEN_RE = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]++"
_QUOTED_RE = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*+"'
_CHUNK_EXT = re.compile(
    rb"(?:[ \t]*+;[ \t]*+" + _TOKEN_RE
    + rb"(?:[ \t]*+=[ \t]*+(?:" + _TOKEN_RE + rb"|" + _QUOTED_RE + rb"))?+)*+"
)
