"""A connection's waiting wing: its states, and the methods that move a SERVING connection
to wait on something other than its client and back (park, detach, upgrade, resume).

``Waiting`` is a base of ``conn.Connection`` (no state of its own: the attributes are the
Connection's slots, declared below for the type checker). Every state change still goes
through ``Connection._enter``, which alone sets the hub callback; this module only decides
when. The states, the diagram and the table are in docs/design.md.
- PARKED: a greenlet waits (``Request.park``); a hang-up throws ``ClientDisconnected`` into it
  or calls its hook.
- DETACHED: no greenlet (``Later``); ``resume`` from the hub sends the response right there
  when it can, or has the hub call ``serve``.
- UPGRADED: an ``app.Upgraded`` protocol owns the socket.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from .errors import ClientDisconnected
from .gsocket import DONTWAIT, LAST, peek_hangup, send_queued
from .hub import FdRecord

if TYPE_CHECKING:
    from .app import Response, Upgraded
    from .context import Context
    from .sendbuf import SendBuf

log = logging.getLogger("tpd2py.conn")

State = enum.IntEnum("State", "IDLE SERVING PARKED DETACHED LINGERING CLOSED UPGRADED", start=0)
IDLE, SERVING, PARKED, UPGRADED = State.IDLE, State.SERVING, State.PARKED, State.UPGRADED
DETACHED_STATE, LINGERING, CLOSED = State.DETACHED, State.LINGERING, State.CLOSED

# Exchange.later when resume() queued the response and sent part of it: serve sends the rest.
SENDING = object()



def hangup_check(conn: Waiting) -> None:
    """Hub callback while PARKED or DETACHED: a readable edge on a busy connection is either
    the client's next pipelined request (left for later) or EOF/reset (the client is gone)."""
    if peek_hangup(conn, conn.sock):
        conn.hung_up()


class Waiting(FdRecord):
    """The park/detach/upgrade/resume methods of ``conn.Connection``, its only subclass."""

    if not TYPE_CHECKING:  # no slots of its own; mypy would then refuse the Connection's
        __slots__ = ()

    if TYPE_CHECKING:  # the Connection's slots and methods this wing uses
        ctx: Context
        sock: Any
        state: State
        buf: bytearray | None
        start: int
        end: int
        out: SendBuf
        worker: Any
        park_hook: Callable[[], None] | None
        ex: Any  # an Exchange, None once upgraded
        upgraded: Upgraded

        def _enter(self, state: State, hook: Callable[[], None] | None = None) -> None: ...
        def close(self) -> None: ...
        def flush(self, last: bool = False) -> None: ...
        def set_nodelay(self) -> None: ...
        def address(self) -> Any: ...
        def serve(self) -> None: ...

    def park(self, on_hangup: Callable[[], None] | None = None) -> None:
        """SERVING -> PARKED: send what is queued (earlier pipelined requests must not wait),
        lend the buffer back if empty, and watch for a hang-up: it throws ``ClientDisconnected``
        into the handler, or calls ``on_hangup`` instead (once). May switch to the hub."""
        if self.state is not SERVING:
            raise RuntimeError(f"park() from a connection in state {self.state.name}")
        if self.out.size:
            self.set_nodelay()  # this handler's response will be a second write
        try:
            self.flush()
        except ConnectionError:
            raise ClientDisconnected() from None  # reset while sending: a normal event
        self._enter(PARKED, on_hangup)

    def unpark(self) -> None:
        """PARKED -> SERVING (the handler runs again); takes an input buffer. Never switches."""
        if self.state is PARKED or self.state is SERVING:
            self._enter(SERVING)

    def detach(self, on_hangup: Callable[[], None]) -> None:
        """SERVING -> DETACHED (Later's response is not ready): the connection waits for
        ``resume`` with no greenlet (an upgrade's has left SERVING already). Never switches."""
        if self.state is SERVING:
            self._enter(DETACHED_STATE, on_hangup)

    def upgrade(self, head: bytes, protocol: Upgraded, resume: Any) -> None:
        """Leave HTTP: ``Request.upgrade``'s Later.attach; the input that came after the
        request goes to ``protocol``. Never switches."""
        if self.ctx.access_log is not None:
            self.ctx.access_log.write(self, self.ex.head, 101, 0)
        self.out.add(head)
        self.upgraded: Upgraded = protocol
        self.ex = None  # HTTP is over: no exchange, no head kept
        pending = bytes(self.buf[self.start:self.end]) if self.buf is not None else b""
        self.start = self.end
        self._enter(UPGRADED, upgraded_marker)  # close() calls protocol.closed
        protocol.start(self, pending)

    def hung_up(self) -> None:
        """From the hub (hangup_check): the client is gone while PARKED or DETACHED."""
        state = self.state
        hook = self.park_hook
        if state is DETACHED_STATE:
            self.close()  # calls the hook: the waiter forgets this connection
        elif state is PARKED:
            self._enter(SERVING)  # stop watching; the handler is woken to learn of it
            if hook is not None:
                call_hook(hook)
            elif self.worker is not None:
                self.ctx.hub.throw(self.worker, ClientDisconnected())

    def resumer(self) -> Callable[[Response], None]:
        """The ``resume`` for ``Later.attach``: it answers only the request that detaches now (a
        stale call after the connection detached again for a later request does nothing)."""
        ex = self.ex
        ex.detaches += 1
        return partial(self._resume_detached, ex.detaches)

    def _resume_detached(self, detach: int, response: Response) -> None:
        if self.ex.detaches == detach:
            self.resume(response)

    def resume(self, response: Response) -> None:
        """From the hub: Later's response is ready. Never switches. The common case ends here:
        nothing more to read and a bytes body, so it goes out in one send and the connection
        goes idle without a greenlet (a publish to 10,000 long polls is 10,000 of these).
        Otherwise the hub calls ``serve`` on its next turn to send it and go on."""
        ex = self.ex
        if self.state is not DETACHED_STATE or ex.later is not None:
            return  # closed meanwhile, or resumed already
        # Taken: a hang-up from now on only closes (the hook runs only if it came first).
        self.park_hook = None
        head = ex.head
        if self.read_pending or self.buf is not None or type(response.body) is not bytes \
                or head is None:
            ex.later = response
            self.ctx.hub.call_soon(type(self).serve, self)
            return
        out = self.out
        ex.write_response(self, response, head.method == b"HEAD")
        client_closes = not head.keep_alive and not head.must_close  # see serve()
        try:
            done = send_queued(self.sock, out, LAST if client_closes else DONTWAIT)
        except OSError:
            self.close()
            return
        self.ctx.sendmsg_calls += 1
        if not done:
            ex.later = SENDING  # a greenlet sends the rest, waiting for the socket if need be
            self.ctx.hub.call_soon(type(self).serve, self)
            return
        if ex.keep_alive:
            self._enter(IDLE)
        else:
            self.close()


def upgraded_marker() -> None:
    """An UPGRADED connection's hang-up hook: a marker, for which ``close`` calls its
    protocol's ``closed`` (a bound method kept per socket would cost 64 B of an idle
    WebSocket's ~1 KB)."""


def call_hook(hook: Callable[[], None]) -> None:
    """Run an application's hang-up hook from the hub: its error is logged, not fatal."""
    try:
        hook()
    except Exception:
        log.exception("hang-up hook %r failed", hook)
