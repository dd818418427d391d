"""The hub's records: ``FdRecord`` (one watched fd) and ``Timer`` (one cancellable callback).

What it is: plain data the hub (``hub.py``) keeps per fd and per timer, split from it to keep
the loop's module short; ``hub`` re-exports both, and other modules import them from there.

Rules: data only, no epoll, no I/O; ``__slots__`` because there is one record per connection.
How it works: the hub reads and writes these fields directly in its loop (no methods on the
hot path); ``Timer.cancel`` only marks the timer, the heap drops it when it comes up (or
when ``Hub.call_later`` sweeps the cancelled ones out).
Switch points: none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import greenlet


class FdRecord:
    """The hub's view of one fd: who waits on it and what an unclaimed edge should do."""

    __slots__ = ("fd", "reader", "writer", "read_pending", "hangup", "on_readable", "closed",
                 "owner", "armed")

    def __init__(self, fd: int, on_readable: Callable[[FdRecord], None] | None = None) -> None:
        self.fd = fd
        self.reader: greenlet.greenlet | None = None
        self.writer: greenlet.greenlet | None = None
        # True when a read edge came while nobody waited: the next reader must not go idle
        # without trying recv once more.
        self.read_pending = True
        # True once the peer half-closed or the fd failed (EPOLLRDHUP/HUP/ERR): a FIN that
        # arrived together with data yields one edge, so a reader that got a short read must
        # still read again to see the EOF.
        self.hangup = False
        self.on_readable = on_readable
        self.closed = False
        # Whatever the registrant wants to find from the record (a Connection, say), so that
        # one shared on_readable callback serves every fd without a bound method each.
        self.owner: Any = None
        # Whether the fd is in the epoll set (see Hub.register's ``armed``).
        self.armed = False


class Timer:
    """A cancellable one-shot callback; ``cancel()`` is O(1) (lazy removal from the heap)."""

    __slots__ = ("when", "callback", "args", "cancelled")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when
