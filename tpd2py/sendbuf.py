"""SendBuf: byte chunks in, as few ``sendmsg`` calls out as the kernel allows.

Rules:
- Chunks (bytes, bytearray, memoryview) are kept as they are: never joined, never copied.
  Empty chunks are dropped on the way in.
- After a partial write ``consume`` drops the chunks that went out whole and replaces the first
  unfinished one by a memoryview slice of itself, so the rest is never copied.
- No I/O at all, never switches: ``gsocket.send_queued`` is the one send path (at most
  ``IOV_MAX`` chunks per ``sendmsg``), and callers wait on the hub themselves.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

try:
    IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)
except (AttributeError, ValueError, OSError):  # pragma: no cover - non-Linux
    IOV_MAX = 1024

Chunk = bytes | bytearray | memoryview


class SendBuf:
    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.size = 0

    def add(self, chunk: Chunk) -> None:
        """Append one chunk (not copied). Never switches."""
        n = len(chunk)
        if n:
            self.chunks.append(chunk)
            self.size += n

    def extend(self, chunks: Iterable[Chunk]) -> None:
        """Append many chunks (not copied). Never switches."""
        append = self.chunks.append
        size = 0
        for chunk in chunks:
            n = len(chunk)
            if n:
                append(chunk)
                size += n
        self.size += size

    def clear(self) -> None:
        self.chunks.clear()
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def consume(self, sent: int) -> None:
        """Drop ``sent`` bytes from the front (they were sent) without copying what remains."""
        self.size -= sent
        chunks = self.chunks
        if self.size == 0:
            chunks.clear()
            return
        done = 0
        for chunk in chunks:
            n = len(chunk)
            if sent < n:
                break
            sent -= n
            done += 1
        del chunks[:done]
        if sent:
            first = chunks[0]
            view = first if type(first) is memoryview else memoryview(first)
            chunks[0] = view[sent:]
