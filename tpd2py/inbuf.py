"""Input buffers, lent to connections while they have bytes to parse.

Rules: a connection holds an input buffer only while it serves (or waits with unparsed bytes);
idle and parked connections give theirs back, so 10,000 idle connections cost no buffer.
Buffers of the standard size are pooled (up to ``MAX_POOLED``); a grown one (a long head) is
dropped when given back. The pool hands out ``(bytearray, memoryview)`` pairs and never touches
a connection: the connection keeps its own offsets. Never does I/O, never switches.
"""

from __future__ import annotations

from .errors import ProtocolError

# Free buffers kept; a burst needs no more than one per busy connection.
MAX_POOLED = 512
# Room beyond the head limit, so the bytes after a head of the maximum size still fit.
_GROW_SLACK = 4096

Buffer = tuple[bytearray, memoryview]


class BufferPool:
    __slots__ = ("size", "cap", "free")

    def __init__(self, size: int, max_head: int) -> None:
        self.size = size
        # Body bytes are consumed as they come, so only a head can fill a buffer: it grows up
        # to what the head limit needs (the parser enforces the limit itself).
        self.cap = max(max_head, size) + _GROW_SLACK
        self.free: list[Buffer] = []

    def take(self) -> Buffer:
        free = self.free
        if free:
            return free.pop()
        buf = bytearray(self.size)
        return buf, memoryview(buf)

    def give(self, buf: bytearray, view: memoryview) -> None:
        if len(buf) == self.size and len(self.free) < MAX_POOLED:
            self.free.append((buf, view))
        else:
            view.release()

    def grow(self, buf: bytearray, view: memoryview, start: int, end: int) -> Buffer:
        """A buffer twice as large (at most ``cap``) holding ``buf[start:end]`` at the same
        offsets; the old one is given back. A full buffer at ``cap`` is a head too large: 431."""
        if len(buf) >= self.cap:
            raise ProtocolError(431, "request head too large")
        new = bytearray(min(len(buf) * 2, self.cap))
        new[start:end] = buf[start:end]
        self.give(buf, view)
        return new, memoryview(new)

    def __len__(self) -> int:
        return len(self.free)
