"""What a handler holds of its connection, and nothing more: the two handles of the handler
contract (app.py).

- ``Parking``: the context manager ``Request.park()`` returns (``Connection.park`` on entry,
  ``unpark`` on exit).
- ``Resume``: the ``resume`` a ``Later``'s ``attach`` is given; it answers the request that
  detached, and only that one (a stale call after the connection detached again does nothing).
Never does I/O itself; ``Parking.__enter__`` may switch to the hub (it flushes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import Response
    from .conn import Connection


class Resume:
    """``Connection.resumer()``: resume(response) for one detached request only."""

    __slots__ = ("conn", "detach")

    def __init__(self, conn: Connection, detach: int) -> None:
        self.conn, self.detach = conn, detach

    def __call__(self, response: Response) -> None:
        conn = self.conn
        if conn.ex.detaches == self.detach:
            conn.resume(response)


class Parking:
    """``with request.park(): ...``: Connection.park on entry, unpark on exit."""

    __slots__ = ("conn", "hook")

    def __init__(self, conn: Connection, hook: Callable[[], None] | None) -> None:
        self.conn, self.hook = conn, hook

    def __enter__(self) -> Parking:
        self.conn.park(self.hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.unpark()
