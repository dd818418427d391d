"""A WebSocket's output wing: what ``send`` cannot do in one ``send`` (docs/websocket.md).

``Output`` is a base of ``websocket.WebSocket`` (no state of its own: the attributes are the
WebSocket's slots, declared below for the type checker), as connwait's ``Waiting`` is of the
Connection. It holds the WebSocket's states, the SendBuf path (``_queue``, ``_send_queued``),
the flusher greenlet that waits for room (at most the server's ``write_timeout``), a
subscription's frames under the slow-reader policy (``_post``) and the half-close that ends
the closing handshake.
Rules: reaches the connection only through the ``Upgraded`` contract, the hub and gsocket.
Switch points: none but the flusher's own wait (``_flush``, a greenlet of its own).
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

from greenlet import getcurrent

from .errors import Timeout
from .gsocket import DONTWAIT, send_queued
from .wsframe import POLICY

log = logging.getLogger("tpd2py.conn")

CONNECTING, OPEN, CLOSING, LINGER, CLOSED = range(5)


class Output:
    """The output methods of ``websocket.WebSocket``, its only subclass."""

    if not TYPE_CHECKING:  # no slots of its own; mypy would then refuse the WebSocket's
        __slots__ = ()

    if TYPE_CHECKING:  # the WebSocket's slots this wing uses
        close_code: int
        _conn: Any
        _hub: Any
        _options: Any
        _state: int
        _blocked: list[Any] | None

    def _post(self, frame: bytes) -> bool:
        """Queue a frame that cannot wait (a subscription's): the slow-reader policy."""
        conn = self._conn
        out = conn.out
        if not out.size and self._blocked is None and not conn.closed:
            # A broadcast's common case: nothing queued, the frame fits in the socket.
            rest = self._send_now(frame)
            if rest is None:
                return not conn.closed
            frame = rest
        if out.size + len(frame) > self._options.max_pending:
            if self._options.slow_reader == "drop":
                return False
            log.debug("websocket %s: %d bytes unsent, a slow reader: closing",
                      self._conn.address(), out.size)
            self.close_code = POLICY
            self._conn.close()
            return False
        self._queue(frame)
        return True

    def _send_now(self, frame: bytes) -> Any:
        """Send ``frame`` (nothing is queued): what is left of it, None if all went or it failed."""
        conn = self._conn
        try:
            sent = conn.sock.send(frame, DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError:
            conn.close()
            return None
        conn.ctx.sendmsg_calls += 1
        return None if sent == len(frame) else memoryview(frame)[sent:]

    def _queue(self, frame: bytes) -> None:
        self._conn.out.add(frame)
        self._send_queued()

    def _send_queued(self) -> None:
        """Send what is queued without waiting; when the socket is full, a flusher greenlet
        waits for room (one at a time). Once all is sent while lingering: half-close. Never
        switches."""
        conn = self._conn
        if self._blocked is not None or conn.closed:
            return
        if conn.out.size:
            try:
                done = send_queued(conn.sock, conn.out)
            except OSError:
                conn.close()
                return
            conn.ctx.sendmsg_calls += 1
            if not done:
                self._blocked = []
                conn.set_nodelay()
                self._hub.spawn(self._flush)
                return
        if self._state == LINGER:
            self._half_close()

    def _flush(self) -> None:
        """The flusher: wait for room until all is sent, at most ``write_timeout`` per wait
        (then the client is dead or hostile: close)."""
        conn = self._conn
        hub = self._hub
        me = getcurrent()
        try:
            while conn.out.size and not conn.closed:
                timer = hub.call_later(conn.ctx.config.write_timeout, hub.throw, me, Timeout())
                try:
                    hub.wait_writable(conn)
                finally:
                    timer.cancel()
                if send_queued(conn.sock, conn.out):
                    break
        except (OSError, Timeout):
            conn.close()
        finally:
            blocked, self._blocked = self._blocked, None
            for g in blocked or ():
                hub.schedule(g, None)
        if self._state == LINGER and not conn.closed:
            self._half_close()

    def _half_close(self) -> None:
        try:
            self._conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._conn.close()
