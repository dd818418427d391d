"""The handler contract's waiting side: ``Later`` (answer without holding a greenlet),
``Parking`` (what ``Request.park()`` returns), ``Upgraded`` (what owns a connection that left
HTTP) and ``RequestConnection`` (what a Request uses of its connection). Re-exported by
``app``; nothing here does I/O or switches except ``Parking``'s enter, which parks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol


class Later:
    """What a handler returns to answer later without holding a greenlet (TPD2's parked
    continuation; the Comet long poll uses it).

    Once the connection has read the request body and sent what was queued before, it calls
    ``attach(resume)`` in the handler's greenlet (attach must not switch). ``attach`` returns
    the Response if it is ready already; else it returns None after arranging for
    ``resume(response)`` to be called later, from the hub. The connection then waits with no
    greenlet (and, with nothing unread, no input buffer). ``on_hangup`` is called from the
    hub, once, if the client hangs up or the server closes the connection first; the
    connection then closes itself, and a later ``resume`` does nothing. (When the hang-up was
    seen already, ``on_hangup`` runs at once, in the handler's greenlet, before it returns.)
    """

    __slots__ = ("attach", "on_hangup")

    def __init__(self, attach: Callable[[Callable[[Any], None]], Any],
                 on_hangup: Callable[[], None]) -> None:
        self.attach = attach
        self.on_hangup = on_hangup


class Upgraded(Protocol):
    """What owns a connection that left HTTP (``Request.upgrade``); none of these switch."""

    def start(self, conn: Any, pending: bytes) -> None: ...  # once; pending: input read already
    def on_readable(self, conn: Any) -> None: ...  # the hub's callback for each input edge
    def expire(self) -> None: ...  # the sweep: the connection's ``deadline`` has passed
    def drain(self) -> None: ...  # the server shuts down
    def closed(self) -> None: ...  # the connection has closed


class RequestConnection(Protocol):
    """What a Request uses of its connection (conn.Connection): the handler contract's side."""

    sock: Any  # the transport: a socket, or a TLS transport (``scheme``, ``getpeercert``)

    def address(self) -> Any: ...
    def read_body(self) -> Iterator[bytes]: ...  # may switch to the hub
    def park(self, on_hangup: Callable[[], None] | None = None) -> None: ...  # may switch
    def unpark(self) -> None: ...
    def upgrade(self, head: bytes, protocol: Upgraded, resume: Any) -> None: ...  # Later.attach


class Parking:
    """What ``Request.park()`` returns: the connection parks on entry (it sends what is queued,
    lends its buffer back and watches for a hang-up; may switch) and unparks on exit."""

    __slots__ = ("conn", "hook")

    def __init__(self, conn: RequestConnection, hook: Callable[[], None] | None) -> None:
        self.conn, self.hook = conn, hook

    def __enter__(self) -> Parking:
        self.conn.park(self.hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.unpark()
