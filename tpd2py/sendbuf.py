"""SendBuf: byte chunks in, as few ``sendmsg`` calls out as the kernel allows.

Rules:
- Chunks (bytes, bytearray, memoryview) are kept as they are: never joined, never copied.
  Empty chunks are dropped on the way in.
- ``flush`` sends at most ``IOV_MAX`` chunks per ``sendmsg``. After a partial write it drops the
  chunks that went out whole and replaces the first unfinished one by a memoryview slice of
  itself, so the rest is never copied.
- ``flush`` is the only method that may switch to the hub (via ``wait_writable`` on EAGAIN).
  No other I/O happens here: the caller passes the socket's ``sendmsg`` and a waiter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

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

    def flush(
        self,
        sendmsg: Callable[[list[Chunk]], int],
        wait_writable: Callable[[], None],
    ) -> int:
        """Send everything. May switch to the hub (only while the socket is full).

        Returns the number of ``sendmsg`` calls made (for statistics and tests).
        Errors from ``sendmsg`` other than EAGAIN propagate; the buffer then holds what was
        not sent.
        """
        chunks = self.chunks
        calls = 0
        while chunks:
            batch = chunks if len(chunks) <= IOV_MAX else chunks[:IOV_MAX]
            try:
                sent = sendmsg(batch)
            except BlockingIOError:
                wait_writable()
                continue
            calls += 1
            self.consume(sent)
        return calls

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
