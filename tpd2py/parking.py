"""Parking: a handler that waits on something else than its own socket, as methods of
``Connection`` (conn.py assigns them in its class body), and ``Later``.

How it works: ``before_park`` flushes what is queued and watches the socket for a hang-up
(``_hangup_check`` peeks; EOF throws ``ClientDisconnected`` into the handler, or calls its
hook); ``after_park`` undoes that. A handler that returns ``Later`` detaches instead
(``_wait_later`` raises ``_Detached`` to the serve loop): the connection then holds no greenlet
and, when its buffer is empty, no buffer, until ``resume(response)`` is called from the hub.
Switch points: ``before_park`` and ``_wait_later`` (they flush); the rest never switch.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from .bodies import _BODY_DONE
from .errors import ClientDisconnected
from .sendbuf import DONTWAIT, LAST

if TYPE_CHECKING:
    from .app import Response
    from .conn import Connection
    from .hub import FdRecord

log = logging.getLogger("tpd2py.conn")


class _Detached(BaseException):
    """Internal: the handler returned Later; the connection waits for ``resume``.
    (BaseException: no ``except Exception`` on the way may take it for a handler error.)"""


class Later:
    """What a handler returns to answer later without holding a greenlet (TPD2's parked
    continuation). Once the greenlet has flushed what was queued, the connection calls
    ``attach(conn)`` (never switching, in the greenlet): it returns the Response when it is
    ready already, else None after arranging for ``conn.resume(response)`` to be called from
    the hub. ``on_hangup`` is called from the hub, once, if the client hangs up (or the
    connection is closed) first; it should close the connection."""

    __slots__ = ("attach", "on_hangup")

    def __init__(self, attach: Callable[[Connection], Response | None],
                 on_hangup: Callable[[], None]) -> None:
        self.attach = attach
        self.on_hangup = on_hangup


def _call_hook(hook: Callable[[], None]) -> None:
    """Run an application's hang-up hook from the hub: its error is logged, not fatal."""
    try:
        hook()
    except Exception:
        log.exception("hang-up hook %r failed", hook)



def before_park(self: Connection, on_hangup: Callable[[], None] | None = None) -> None:
    """Call before a handler parks on an event: sends the responses already queued (earlier
    pipelined requests must not wait for this one) and watches for the client hanging up,
    which throws ``ClientDisconnected`` into the handler. May switch to the hub (flush).

    With ``on_hangup``, a hang-up (or the server closing the connection) calls it from the
    hub instead, once: a waiter that can also be woken by someone else (``Channel.wait``)
    then decides itself whether to throw, so the handler is never resumed twice.
    """
    if self.out.size:
        self.set_nodelay()  # this handler's response will be a second write
    self.flush()
    self.park_hook = on_hangup
    self.rec.on_readable = self._hangup_check
    self.server.hub.arm(self.rec)
    if self.rec.read_pending:
        self._hangup_check(self.rec)

def after_park(self: Connection) -> None:
    """Stop watching for hang-ups (the handler is running again); take an input buffer
    again if ``release_buffer_if_empty`` gave it back. Never switches."""
    self.rec.on_readable = None
    self.park_hook = None
    if self.buf is None and not self.rec.closed:
        self.buf, self.view = self.server.take_buffer()
        self.start = self.end = 0

def release_buffer_if_empty(self: Connection) -> bool:
    """While parked: return the input buffer to the server's pool when it holds no unread
    bytes, so a parked handler costs no buffer (``after_park`` takes one again).
    Returns whether the connection now holds no buffer. Never switches."""
    if self.buf is not None and self.start == self.end:
        self.server.release_buffer(self)
    return self.buf is None

def _hangup_check(self: Connection, rec: FdRecord) -> None:
    # Runs in the hub. A readable edge on a busy connection is either the client's next
    # pipelined request (leave it for later) or EOF/reset (wake the handler).
    try:
        data = self.sock.recv(1, socket.MSG_PEEK | DONTWAIT)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    rec.read_pending = True
    if data:
        return
    hook = self.park_hook
    if hook is not None:
        rec.on_readable = None
        self.park_hook = None
        _call_hook(hook)
    elif self.worker is not None:
        rec.on_readable = None
        self.server.hub.throw(self.worker, ClientDisconnected())

def resume(self: Connection, response: Response) -> None:
    """From the hub: the response promised by ``Later`` is ready. Never switches.

    The common case ends here, in the hub: nothing more to read and a fixed body, so the
    response goes out in one sendmsg and the connection goes idle without a greenlet (a
    publish to 10,000 long polls is 10,000 of these). Otherwise the connection is dispatched
    on the hub's next turn to send it and serve what follows.
    """
    rec = self.rec
    if rec.closed or self.worker is not None:
        return
    self.park_hook = None
    rec.on_readable = None
    head = self.head
    if rec.read_pending or self.buf is not None or type(response.body) is not bytes \
            or head is None:
        self.later = response
        self.server.hub.call_soon(self.server.dispatch, rec)
        return
    out = self.out
    self._write_response(response, head.method == b"HEAD")
    try:
        client_closes = not head.keep_alive and not head.must_close  # see serve()
        sent = self.sock.sendmsg(out.chunks, (), LAST if client_closes else DONTWAIT)
    except BlockingIOError:
        sent = 0
    except OSError:
        self.close()
        return
    if sent < out.size:
        out.consume(sent)  # a greenlet sends the rest, waiting for the socket if need be
        self.server.hub.call_soon(self.server.dispatch, rec)
        return
    out.clear()
    if self.keep_alive:
        self._go_idle()
    else:
        self.close()

def _wait_later(self: Connection, later: Later) -> Response:
    """Return Later's response if it is ready; else detach (raises _Detached). May switch
    to the hub (drains the request body, flushes earlier responses) before attaching."""
    if self.body_left != _BODY_DONE:
        self._finish_body_or_close()
    if self.out.size:
        self.set_nodelay()  # the later response will be a second write
    self.flush()
    self.park_hook = later.on_hangup
    response = later.attach(self)
    if response is not None:
        self.park_hook = None
        return response
    # From here to the pool nothing switches, so resume() cannot come before we are gone.
    self.release_buffer_if_empty()
    rec = self.rec
    rec.on_readable = self._hangup_check
    self.server.hub.arm(rec)
    if rec.read_pending:
        self._hangup_check(rec)
    raise _Detached()
