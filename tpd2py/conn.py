"""The connection: one client socket's state machine, its input buffer and its send path.

States (``Connection.state``; ``_enter`` alone changes it and sets the hub callback that goes
with it; the diagram and a table are in docs/design.md):
- IDLE: no greenlet, no input buffer; the hub calls ``serve`` when bytes arrive.
- SERVING: ``serve`` runs in the loop's own greenlet with a pooled input buffer; the
  ``Exchange`` runs each complete request's handler and queues its response in one SendBuf,
  flushed only when no complete request is left (pipelined responses share one sendmsg).
  While a handler runs, the buffer is lent back if nothing was read past its request (a
  handler waiting on a database holds none); ``recv`` takes one again when needed.
- PARKED: a handler waits on something other than its client (``Request.park``): the queued
  responses went out, the buffer is lent back if empty, and a hang-up wakes the handler.
- DETACHED: the handler returned ``Later``: no greenlet; ``resume(response)`` from the hub
  sends the response right there when it can (then IDLE), or has the hub call ``serve``.
- UPGRADED: the handler left HTTP (``Request.upgrade``): an ``app.Upgraded`` owns the socket.
- LINGERING: after an error response, half-closed, reading and dropping input for a while so
  that the close is not a reset that destroys the response (RFC 9112 §9.6).
- CLOSED: from any state (``close``).
How it works: ``deadline`` floats checked by the server's sweep (O(1) per request); input by
``gsocket.recv_nowait``, output by ``send_queued`` (files: ``sendfile_nowait``); ``sock`` is the
transport seam (a socket, or a TLS transport). A connection enters epoll when it first waits.
Switch points: ``recv``, ``flush``, ``send_file``, ``park`` (and ``serve`` through them).
The waiting wing (the states, park/detach/upgrade/resume) is ``connwait.Waiting``, a base.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from greenlet import getcurrent

from .app import FileBody
from .connwait import (
    CLOSED,
    DETACHED_STATE,
    IDLE,
    LINGERING,
    PARKED,
    SENDING,
    SERVING,
    UPGRADED,
    State,
    Waiting,
    call_hook,
    hangup_check,
    upgraded_marker,
)
from .errors import (
    Cancelled,
    ClientDisconnected,
    ClientTimeout,
    CloseConnection,
    ConnectionClosed,
    ProtocolError,
    Timeout,
)
from .exchange import BODY_DONE, DETACHED, INF
from .gsocket import (
    DONTWAIT,
    LAST,
    READ_PIECE,
    can_sendfile,
    make_nonblocking,
    recv_nowait,
    send_queued,
    sendfile_nowait,
    watch_pending,
)
from .inbuf import MAX_POOLED
from .sendbuf import SendBuf
from .wire import error_response

if TYPE_CHECKING:
    from .context import Context

log = logging.getLogger("tpd2py.conn")

# Flush early once this many responses or bytes wait in the SendBuf (pipelining backpressure).
MAX_QUEUED_RESPONSES = 64
MAX_QUEUED_BYTES = 256 * 1024
# After an error response: how long and how much unread input we read and drop before the close.
LINGER_SECONDS = 2.0
LINGER_BYTES = 256 * 1024


class Connection(Waiting):
    """A client connection, and its own hub record (an ``FdRecord``, through ``Waiting``): the
    hub calls its ``on_readable`` with it, so no second object or lookup is paid per connection
    or request."""

    __slots__ = ("ctx", "sock", "peer", "state", "buf", "view", "start", "end", "scan",
                 "out", "deadline", "worker", "queued", "park_hook", "nodelay", "ex", "upgraded")

    def __init__(self, ctx: Context, sock: Any, peer: Any = None) -> None:
        self.ctx = ctx
        self.sock = sock
        # The peer address is kept only when the access log needs it on every request;
        # otherwise ``address()`` asks the kernel on the rare occasions it is wanted.
        self.peer = peer
        self.state = IDLE
        self.buf: bytearray | None = None
        self.view: memoryview | None = None
        self.start = self.end = 0
        # Where the next parse_head may start looking for the blank line: after a partial
        # head, the old end minus 3, so a trickled head is scanned once, not once per read.
        self.scan = 0
        self.out = SendBuf()
        self.deadline = INF
        self.worker: Any = None
        self.queued = 0
        self.park_hook: Callable[[], None] | None = None
        # TCP_NODELAY only once a second write may follow an unacknowledged first one (stream,
        # partial write, mid-pipeline flush): one write per response never meets Nagle.
        self.nodelay = False
        self.ex = ctx.new_exchange()
        # Not in epoll until something waits on it or it goes idle (Hub.arm): no epoll_ctl for
        # a connection answered and closed at once. on_readable gets the record: this object.
        Waiting.__init__(self, sock.fileno(), Connection.serve)  # type: ignore[arg-type]

    def address(self) -> Any:
        """The peer's address (from accept, or getpeername when it was not kept)."""
        if self.peer is None:
            try:
                return self.sock.getpeername()
            except OSError:
                return None
        return self.peer

    # -- the state machine -----------------------------------------------------------------------

    def _enter(self, state: State, hook: Callable[[], None] | None = None) -> None:
        """Move to ``state``: the only place that changes it, and the only place that sets the
        hub callback (``on_readable``) that goes with it. Never switches."""
        if state is SERVING:
            # The handler owns the connection: no callback (an edge only sets read_pending).
            self.state = SERVING
            self.on_readable = None
            self.park_hook = None
            if self.buf is None:
                # BufferPool.take's common case inline: once per request.
                free = self.ctx.buffers.free
                self.buf, self.view = free.pop() if free else self.ctx.buffers.take()
                self.start = self.end = self.scan = 0
            return
        if state is CLOSED:
            self.close()
            return
        if state is IDLE:
            # An idle connection keeps nothing of its last request: no buffer, no greenlet.
            ctx = self.ctx
            ex = self.ex
            # Before a first request (a TLS handshake, a partial record) or when nothing was
            # served, the header timeout holds (nginx's); after a request, the keep-alive one.
            timeout = ctx.header_timeout if ex.head is None else ctx.keepalive_timeout
            ex.head = None
            if self.buf is not None:
                # Only after pipelined requests or a body read: the common request lent its
                # buffer back before its handler ran (serve, inline there).
                self._give_buffer()
            if ctx.draining:
                self.close()
                return
            self.state = IDLE
            self.deadline = ctx.hub.now + timeout
            self.on_readable = Connection.serve  # type: ignore[assignment]
            if not self.armed:
                ctx.hub.arm(self)
            return
        if state is PARKED or state is DETACHED_STATE or state is UPGRADED:
            # Waiting on something else: lend the buffer back when it holds nothing unread,
            # and watch the socket for the client hanging up (UPGRADED: its protocol does).
            self.state = state
            self.park_hook = hook
            if self.buf is not None and self.start == self.end:
                self._give_buffer()
            self.on_readable = hangup_check if state is not UPGRADED \
                else self.upgraded.on_readable  # type: ignore[assignment]
            if not self.armed:
                self.ctx.hub.arm(self)
            if self.read_pending or self.hangup:
                # Input or a FIN came before the watch began (a body read's edge may have
                # carried the FIN): no new edge will report it.
                hangup_check(self)
            return
        assert state is LINGERING
        self.state = LINGERING
        self.on_readable = None

    def _give_buffer(self) -> None:
        self.ctx.buffers.give(self.buf, self.view)  # type: ignore[arg-type]
        self.buf = self.view = None
        self.start = self.end = 0

    def close(self) -> None:
        """Any state -> CLOSED, now. Never switches (waiters on the fd are woken with
        ConnectionClosed)."""
        if self.state is CLOSED:
            return
        self.state = CLOSED
        # The socket first: the FIN (and a final segment held by MSG_MORE) leaves before the
        # bookkeeping, which the client need not wait for.
        # Not contextlib.suppress: a context manager per connection is measurable here
        # (bench/instructions.py: 99.8k -> 96.1k per connection, with the FIN-first reordering).
        try:  # noqa: SIM105
            self.sock.close()
        except OSError:
            pass
        ctx = self.ctx
        ctx.hub.unregister(self, closing=True)  # wakes waiters with ConnectionClosed
        if self.buf is not None:
            ctx.buffers.give(self.buf, self.view)  # type: ignore[arg-type]
            self.buf = self.view = None
        self.on_readable = None
        ctx.forget(self)
        self.out.clear()
        hook = self.park_hook
        if hook is not None:
            # A parked handler (or a detached one's waiter) learns that its connection is gone.
            self.park_hook = None
            call_hook(self.upgraded.closed if hook is upgraded_marker else hook)

    # -- I/O (switch points) --------------------------------------------------------------------

    def recv(self) -> int:
        """Read more bytes after ``end``; returns how many (0 at EOF). Before waiting for the
        client it sends the responses already queued: no finished response waits on input.
        May switch to the hub."""
        buf = self.buf
        if buf is None:
            # Lent back while PARKED (a body read inside request.park()): take one again.
            buf, self.view = self.ctx.buffers.take()
            self.buf = buf
            self.start = self.end = self.scan = 0
        if self.start == self.end:
            self.start = self.end = self.scan = 0
        elif self.end == len(buf):
            if self.start:
                # Compact: move the unparsed tail to the front (keeps offsets small).
                n = self.end - self.start
                buf[:n] = buf[self.start:self.end]
                self.scan = max(0, self.scan - self.start)
                self.start, self.end = 0, n
            else:
                self.buf, self.view = self.ctx.buffers.grow(buf, self.view,  # type: ignore[arg-type]
                                                            self.start, self.end)
        while True:
            if self.closed:
                raise ConnectionClosed()
            n = recv_nowait(self, self.sock, self.view[self.end:])  # type: ignore[index]
            if n >= 0:
                self.end += n
                return n
            if self.out.size:
                self.set_nodelay()  # more responses may follow this write soon
                self.flush()
            try:
                self.ctx.hub.wait_readable(self)
            except Timeout:
                raise ClientTimeout() from None

    def flush(self, last: bool = False) -> None:
        """Send all queued output. May switch to the hub (only when the socket is full).

        ``last``: the close follows at once. The send then says MSG_MORE: the kernel holds the
        final segment and the FIN joins it, one packet instead of two, and the client reads the
        response and its end in one wake-up. (What does not go in this first send is sent
        without the flag, which releases what was held.)"""
        self.queued = 0
        out = self.out
        if not out.size:
            return
        ctx = self.ctx
        ctx.sendmsg_calls += 1
        if send_queued(self.sock, out, LAST if last else DONTWAIT):
            return
        self.set_nodelay()  # what is left goes in more than one write
        while True:
            self._wait_writable()
            ctx.sendmsg_calls += 1
            if send_queued(self.sock, out):
                return

    def send_file(self, body: FileBody) -> None:
        """Send what is queued, then ``body`` from its file by the kernel, waiting on the hub
        whenever the socket is full. May switch to the hub. A file that shrank meanwhile ends
        the connection (CloseConnection): the head promised ``length`` bytes."""
        sock = self.sock
        if not can_sendfile(sock):
            self._send_file_by_reads(body)
            return
        # Corked (nginx's tcp_nopush): only full segments leave until the last byte is queued,
        # so a wake-up that sends a little does not put a small segment on the wire.
        with contextlib.suppress(OSError):  # not TCP (a Unix socket): nothing to cork
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        self.flush()
        make_nonblocking(sock)
        lent = self.buf is not None and self.start == self.end  # nothing unread: the buffer
        if lent:  # goes back to the pool while a download waits (static_bench.py slow)
            self._give_buffer()
        offset, end = body.offset, body.offset + body.length
        try:
            while offset < end:
                sent = sendfile_nowait(sock, body.fd, offset, end - offset)
                if sent < 0:
                    self._wait_writable()
                elif not sent:
                    log.warning("file shrank while being sent to %s: closing", self.address())
                    raise CloseConnection()
                else:
                    self.ctx.sendmsg_calls += 1
                    offset += sent
        finally:
            if lent and self.state is SERVING:
                self._enter(SERVING)  # takes a buffer again
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)  # the tail leaves now

    def _send_file_by_reads(self, body: FileBody) -> None:
        """``send_file`` where sendfile cannot write (TLS): 64 KiB read, queued, sent. May
        switch."""
        offset, end = body.offset, body.offset + body.length
        while offset < end:
            piece = os.pread(body.fd, min(READ_PIECE, end - offset), offset)
            if not piece:
                log.warning("file shrank while being sent to %s: closing", self.address())
                raise CloseConnection()
            offset += len(piece)
            self.out.add(piece)
            self.flush()

    def set_nodelay(self) -> None:
        """Disable Nagle's algorithm on this connection (once). Never switches."""
        if not self.nodelay:
            self.nodelay = True
            with contextlib.suppress(OSError):  # not TCP (a Unix socket): nothing to do
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _wait_writable(self) -> None:
        ctx = self.ctx
        saved = self.deadline
        self.deadline = ctx.hub.now + ctx.config.write_timeout
        try:
            ctx.hub.wait_writable(self)
        except Timeout:
            # Part of a response may be on the wire: nothing honest can follow it. Close.
            raise CloseConnection() from None
        finally:
            self.deadline = saved

    def read_body(self) -> Iterator[bytes]:
        """The current request's body, in chunks (Request.body/stream). May switch."""
        return self.ex.read_body(self)

    # -- the loop -------------------------------------------------------------------------------

    def serve(self) -> None:
        """The hub callback while IDLE (and once resume() needs a greenlet): SERVING until the
        connection is idle again, detached or closed. Runs in the loop's own greenlet (hub.py,
        leader/followers): no switch unless a handler waits (the hub then hands the loop to a
        spare). The hot path of the server: it binds what it uses to locals."""
        if self.closed or self.worker is not None:
            return
        ex = self.ex
        state = self.state
        if state is not IDLE and (state is not DETACHED_STATE or ex.later is None):
            return  # a stale callback: detached and not resumed yet
        ctx = self.ctx
        hub = ctx.hub
        limits = ctx.limits
        header_timeout = ctx.header_timeout
        parse = ctx.parse_head
        out = self.out
        free = ctx.buffers.free
        pool_size = ctx.buffers.size
        self.worker = getcurrent()
        self._enter(SERVING)
        try:  # a bug below must not leave the connection open and forgotten
            try:
                if state is DETACHED_STATE:
                    later, ex.later = ex.later, None
                    head = ex.head
                    assert head is not None
                    if later is not SENDING:
                        ex.write_response(self, later, head.method == b"HEAD")
                    if not ex.keep_alive:
                        # The last response (sent by resume(), maybe only in part) ends it.
                        self.flush()
                        if self.start < self.end or self.read_pending:
                            self._linger_close()
                        else:
                            self.close()
                        return
                self.deadline = hub.now + header_timeout
                while True:
                    if self.start == self.end:
                        if out.size:
                            self.flush()
                        if not self.read_pending and not self.hangup:
                            self._enter(IDLE)
                            return
                        self.start = self.end = self.scan = 0
                        if self.buf is None:  # lent back while the last handler ran (below)
                            self.buf, self.view = ctx.buffers.take()
                        n = recv_nowait(self, self.sock, self.view)  # type: ignore[arg-type]
                        if n <= 0:
                            if n == 0:
                                self.close()
                            else:
                                self._enter(IDLE)
                            return
                        self.end = n
                        self.deadline = hub.now + header_timeout
                    result = parse(self.buf, self.start, self.end, limits,  # type: ignore[arg-type]
                                   self.scan)
                    if result is None:
                        self.scan = self.end - 3
                        if self.recv() == 0:
                            self.close()
                            return
                        continue
                    head, start = result
                    self.start = start
                    self.scan = 0
                    if start == self.end:
                        # Nothing read past this request: its buffer goes back to the pool
                        # while the handler runs, so a handler that waits (a database, a
                        # lock) holds none; recv takes one again if the body or the next
                        # request needs it. The common case moves IDLE's give here.
                        buf = self.buf
                        if len(buf) == pool_size and len(free) < MAX_POOLED:  # type: ignore[arg-type]
                            free.append((buf, self.view))  # type: ignore[arg-type]
                            self.buf = self.view = None
                    handoffs = hub.handoffs
                    outcome = ex.handle(self, head)
                    if not self.armed and hub.handoffs != handoffs:
                        # The handler waited on something else while this fd was not in
                        # epoll: no edge told us of input that came meanwhile.
                        watch_pending(hub, self)
                    if not outcome:  # CLOSE_AFTER (False) or DETACHED (None)
                        if outcome is DETACHED:
                            return  # resume() takes it from here
                        # MSG_MORE only when the client asked to close: it sends nothing more
                        # (RFC 9112 §9.6). When we chose to close (draining, ambiguous
                        # framing), input may have come unseen, the close may be a reset, and
                        # a reset discards what MSG_MORE still holds: the whole response.
                        self.flush(last=not head.keep_alive and not head.must_close)
                        if self.start < self.end or ex.body_left != BODY_DONE \
                                or self.read_pending:
                            self._linger_close()  # unread input: the close must not be a reset
                        else:
                            self.close()
                        return
                    self.deadline = hub.now + header_timeout
                    if self.queued >= MAX_QUEUED_RESPONSES or out.size >= MAX_QUEUED_BYTES:
                        self.set_nodelay()
                        self.flush()
            except ProtocolError as e:
                self._fail(e.status)
            except ClientTimeout:
                self._fail(408)
            except Timeout:
                # Thrown by the sweep while serve itself waited (between requests): just close.
                self.close()
            except ClientDisconnected:
                log.debug("client %s went away mid-request", self.address())
                self.close()
            except (ConnectionClosed, ConnectionError, CloseConnection, Cancelled):
                self.close()
            except OSError as e:
                log.debug("socket error on %s: %s", self.address(), e)
                self.close()
        except Exception:
            log.exception("connection loop error for %s", self.address())
            self.close()
        finally:
            self.worker = None

    def _fail(self, status: int) -> None:
        """Answer a protocol error with a canned response, after what is queued; then close,
        lingering so that unread input does not turn the close into a reset."""
        ctx = self.ctx
        if self.state is CLOSED:
            return
        if not self.ex.response_started:
            if ctx.access_log is not None:
                ctx.access_log.write(self, self.ex.head, status, 0)
            self.out.add(error_response(status, ctx.date.line))
        try:
            self.flush(last=True)  # the lingering close follows at once
        except (OSError, Timeout, CloseConnection):
            self.close()
            return
        self._linger_close()

    def _linger_close(self) -> None:
        """Half-close, then read and discard what the client still sends, for at most
        LINGER_SECONDS or LINGER_BYTES, then close (RFC 9112 §9.6). Closing with unread bytes
        in the kernel sends RST, which can destroy the response before the client reads it.
        May switch to the hub."""
        if self.state is CLOSED:
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self._enter(LINGERING)
        self.deadline = self.ctx.hub.now + LINGER_SECONDS
        discarded = 0
        if self.buf is None:  # lent back while the handler ran: reading needs one
            self.buf, self.view = self.ctx.buffers.take()
        try:
            while discarded < LINGER_BYTES and self.buf is not None:
                self.start = self.end = 0
                n = self.recv()
                if n == 0:
                    break
                discarded += n
        except (OSError, Timeout, CloseConnection, ConnectionClosed, ProtocolError):
            pass
        self.close()

    # -- for the server: the sweep and shutdown -------------------------------------------------

    def expire(self) -> None:
        """The sweep found ``deadline`` passed: close, or throw Timeout into a greenlet waiting
        on this client (it answers 408 or closes). Never switches."""
        worker = self.worker
        if worker is None:
            (self.upgraded.expire if self.state is UPGRADED else self.close)()
        elif self.reader is worker or self.writer is worker:
            self.ctx.hub.throw(worker, Timeout())

    def drain(self) -> None:
        """Shutdown: close now unless a handler runs (it finishes; then the connection closes);
        an upgraded one closes in its protocol's way. Expire likewise (its own deadlines)."""
        if self.worker is None:
            (self.upgraded.drain if self.state is UPGRADED else self.close)()

