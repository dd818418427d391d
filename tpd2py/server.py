"""Listening sockets, the accept loop, dispatch, timeouts and shutdown.

How it works:
- Accepting is a hub callback on the level-triggered listener: one connection per loop turn
  (the level trigger brings it back while more are queued, so no accept is spent learning
  EAGAIN), wrapped in a Connection (a hub record, not yet in epoll) and served at
  once (its first request is usually there already: TCP_DEFER_ACCEPT). At
  ``max_connections`` the listener is paused until one closes; on EMFILE/ENFILE it pauses
  for 0.1 s instead of spinning. TCP_NODELAY is set lazily (see Connection.set_nodelay).
- ``dispatch`` serves a connection with new bytes in the loop's own greenlet (a greenlet of
  its own only if a handler waits: hub.py, "leader/followers"), with an input buffer from the
  free list that comes back when it idles.
- A sweep runs once a second: it refreshes the Date line and closes or times out every
  connection whose ``deadline`` has passed. That is O(connections) per second and O(1) per
  request; no heap push per read.
- SIGTERM/SIGINT: stop accepting, close idle connections, let busy ones finish their
  current request (they then close) within ``grace``, exit.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import greenlet

from .app import App
from .conn import Connection
from .errors import Timeout
from .headcache import HeadCache
from .http11 import Limits, parse_head
from .hub import FdRecord, Hub, get_hub
from .respond import DateCache

log = logging.getLogger("tpd2py.server")

# Free input buffers kept; a burst needs no more than one per busy connection.
MAX_POOLED_BUFFERS = 512
_ACCEPT_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


@dataclass
class Config:
    """Limits and timeouts; every default says why."""

    # Absolute time to receive a whole request head, from its first byte (slowloris).
    header_timeout: float = 10.0
    # Longer than common load balancers' idle timeouts (60 s), so they close first.
    keepalive_timeout: float = 75.0
    # A body read may stall at most this long...
    body_timeout: float = 30.0
    # ...and must average at least this many bytes/second (each byte buys 1/rate seconds).
    min_body_rate: float = 1024.0
    # A full socket that does not drain in this long is a dead or hostile reader.
    write_timeout: float = 30.0
    max_body_size: int = 16 * 1024 * 1024
    max_connections: int = 10_000 + 5_000
    # Time in-flight requests get to finish after SIGTERM/SIGINT.
    grace: float = 10.0
    # Input buffer size; a head may grow it up to limits.max_header_bytes.
    buffer_size: int = 16384
    # Reuse the parse of a byte-identical request head (tpd2py/headcache.py): changes nothing
    # but speed; off to measure the parser alone.
    head_cache: bool = True
    limits: Limits = field(default_factory=Limits)
    # Log the stack of a handler that runs this many seconds without switching (it blocks
    # everyone). None: 0.1 s in debug (python -X dev, or tpd2py logging at DEBUG), else off; 0: off.
    watchdog: float | None = None


class Server:
    def __init__(self, app: App, config: Config | None = None, hub: Hub | None = None,
                 access_log: IO[str] | None = None) -> None:
        self.app = app
        self.config = config or Config()
        self.hub = hub or get_hub()
        self.conns: dict[int, Connection] = {}
        self.listeners: list[socket.socket] = []
        self.buffers: list[tuple[bytearray, memoryview]] = []
        self.date = DateCache()
        self.draining = False
        self.access_log = access_log
        self._listener_recs: list[FdRecord] = []
        self._accept_paused = False
        self._sweeper: Any = None
        self.requests = 0
        # The request-head parser: parse_head itself, or through a HeadCache.
        self.parse_head = HeadCache().parse if self.config.head_cache else parse_head
        self.sendmsg_calls = 0
        self.stopped = False

    # -- listening ------------------------------------------------------------------------------

    def listen_tcp(self, host: str = "127.0.0.1", port: int = 8080, backlog: int = 1024) -> Any:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Do not wake us for connections that have sent nothing yet (TPD2).
        with contextlib.suppress(AttributeError, OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 10)
        sock.bind((host, port))
        sock.listen(backlog)
        self._add_listener(sock)
        return sock.getsockname()

    def listen_unix(self, path: str, backlog: int = 1024) -> str:
        if os.path.exists(path):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(backlog)
        self._add_listener(sock)
        return path

    def _add_listener(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.listeners.append(sock)
        rec = self.hub.register(sock.fileno(), self._accept_one, level=True)
        # family/type/proto read once: the socket properties build enums on every access.
        # SOCK_NONBLOCK in the type makes CPython's socket object non-blocking (timeout 0.0)
        # without a syscall and whatever socket.setdefaulttimeout() says; the fd itself stays
        # blocking (conn.py passes MSG_DONTWAIT). Without it a default timeout set by the app
        # would make every recv that finds nothing wait that long, stalling the hub.
        rec.owner = (sock._accept, int(sock.family),  # type: ignore[attr-defined]
                     int(sock.type) | socket.SOCK_NONBLOCK, sock.proto)
        self._listener_recs.append(rec)

    def _accept_one(self, rec: FdRecord) -> None:
        """Hub callback, level-triggered: accept one connection and serve it at once (its
        first request is usually there already: TCP_DEFER_ACCEPT), in this greenlet."""
        accept, family, type_, proto = rec.owner
        try:
            fd, addr = accept()
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno in _ACCEPT_EXHAUSTED:
                # Out of descriptors or memory: stop listening for a moment instead of
                # spinning on a queue we cannot take from.
                log.warning("accept: %s; backing off for 0.1 s", os.strerror(e.errno or 0))
                self._pause_accepting(True)
                self.hub.call_later(0.1, self._pause_accepting, False)
                return
            if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                return
            raise
        # The C socket type: no Python-level __init__/close per connection.
        # Left in blocking mode: the connection passes MSG_DONTWAIT on every recv and send
        # instead (one ioctl less per connection; conn.py, _DONTWAIT).
        sock = _socket.socket(family, type_, proto, fd)
        conn = Connection(self, sock, addr if self.access_log is not None else None)
        self.conns[fd] = conn
        if len(self.conns) >= self.config.max_connections:
            self._pause_accepting(True)
        self.dispatch(conn.rec)

    def _pause_accepting(self, paused: bool) -> None:
        if paused == self._accept_paused or self.draining:
            return
        if not paused and len(self.conns) >= self.config.max_connections:
            return  # still full: forget() resumes when a connection closes
        self._accept_paused = paused
        for rec in self._listener_recs:
            self.hub.pause_level(rec, paused)

    # -- connections ----------------------------------------------------------------------------

    def dispatch(self, rec: FdRecord) -> None:
        """Hub callback: bytes arrived on an idle connection (or a Later response is ready).

        Serves it right here, in the loop's own greenlet: no switch unless a handler waits, and
        then the hub hands the loop to a spare greenlet and this one goes on as the
        connection's worker (hub.py, "leader/followers").
        """
        if rec.closed:
            return
        conn = rec.owner
        if conn.worker is not None:
            return
        try:
            conn.serve(greenlet.getcurrent())
        except Exception:
            log.exception("connection loop error for %s", conn.address())
            conn.close()

    def take_buffer(self) -> tuple[bytearray, memoryview]:
        return self.buffers.pop() if self.buffers else self.new_buffer()

    def new_buffer(self) -> tuple[bytearray, memoryview]:
        buf = bytearray(self.config.buffer_size)
        return buf, memoryview(buf)

    def release_buffer(self, conn: Connection) -> None:
        buf = conn.buf
        if buf is None:
            return
        view = conn.view
        conn.buf = conn.view = None
        conn.start = conn.end = 0
        if len(buf) == self.config.buffer_size and len(self.buffers) < MAX_POOLED_BUFFERS:
            assert view is not None
            self.buffers.append((buf, view))
        elif view is not None:
            view.release()

    def grow_buffer(self, conn: Connection) -> None:
        """Double a full buffer, up to what the head limit needs (the parser enforces it)."""
        old = conn.buf
        assert old is not None
        cap = max(self.config.limits.max_header_bytes, self.config.buffer_size) + 4096
        if len(old) >= cap:
            # Body bytes are consumed as they come, so only a head can fill the buffer.
            from .errors import ProtocolError

            raise ProtocolError(431, "request head too large")
        new = bytearray(min(len(old) * 2, cap))
        start, end = conn.start, conn.end
        new[start:end] = old[start:end]
        self.release_buffer(conn)  # resets start/end: restore them below
        conn.buf, conn.view = new, memoryview(new)
        conn.start, conn.end = start, end

    def forget(self, conn: Connection) -> None:
        """Drop a connection that the caller closes right after: unregister (waking its
        waiters), free its buffer."""
        self.hub.unregister(conn.rec, closing=True)
        self.release_buffer(conn)
        conn.rec.on_readable = None
        fd = conn.rec.fd
        if self.conns.get(fd) is conn:
            del self.conns[fd]
        conn.rec.owner = None
        if self._accept_paused:
            self._pause_accepting(False)

    # -- housekeeping ---------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Once a second: Date line, deadlines, access-log flush. Runs in the hub."""
        hub = self.hub
        self.date.update()
        now = hub.now = time.monotonic()
        expired = [c for c in self.conns.values() if c.deadline < now]
        for conn in expired:
            worker = conn.worker
            if worker is None:
                conn.close()
            elif conn.rec.reader is worker or conn.rec.writer is worker:
                hub.throw(worker, Timeout())
        if self.access_log is not None:
            with contextlib.suppress(OSError, ValueError):
                self.access_log.flush()
        if not self.stopped:
            self._sweeper = hub.call_later(1.0, self._sweep)

    def statistics(self) -> dict[str, int]:
        """Counters for tests and monitoring: requests, sendmsg calls, connections, pools."""
        return {
            "requests": self.requests,
            "sendmsg_calls": self.sendmsg_calls,
            "connections": len(self.conns),
            "pooled_greenlets": len(self.hub.spares),
            "pooled_buffers": len(self.buffers),
            **self.hub.statistics(),
        }

    def log_access(self, conn: Connection, head: Any, status: int, size: int) -> None:
        from .accesslog import format_line

        assert self.access_log is not None
        self.access_log.write(format_line(conn.address(), head, status, size))

    # -- running --------------------------------------------------------------------------------

    def start(self) -> None:
        """Arm the sweep; the hub's run() then serves."""
        self._sweeper = self.hub.call_later(1.0, self._sweep)

    def serve_forever(self, install_signals: bool = True) -> None:
        """Serve until SIGTERM/SIGINT (or ``shutdown()``), then drain and return."""
        self.start()
        if install_signals:
            self._install_signals()
        from .watchdog import for_config

        dog = for_config(self.hub, self.config.watchdog)
        try:
            self.hub.run()
        finally:
            if dog is not None:
                dog.stop()

    def _install_signals(self) -> None:
        hub = self.hub
        signal.set_wakeup_fd(hub.wake_w, warn_on_full_buffer=False)

        def on_signal(signum: int, frame: Any) -> None:
            hub.call_soon(self.shutdown)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, close idle connections, let busy ones finish, then stop the hub.

        Runs in the hub (a callback); never switches.
        """
        if self.draining:
            return
        self.draining = True
        grace = self.config.grace if grace is None else grace
        for rec in self._listener_recs:
            self.hub.unregister(rec, closing=True)
        for sock in self.listeners:
            sock.close()
        self.listeners.clear()
        self._listener_recs.clear()
        for conn in list(self.conns.values()):
            if conn.worker is None:
                conn.close()
        deadline = time.monotonic() + grace
        self._check_drained(deadline)

    def _check_drained(self, deadline: float) -> None:
        if not self.conns or time.monotonic() >= deadline:
            for conn in list(self.conns.values()):
                conn.close()
            self.stopped = True
            if self._sweeper is not None:
                self._sweeper.cancel()
            self.hub.stop()
            return
        self.hub.call_later(0.05, self._check_drained, deadline)


def serve(app: App, host: str = "127.0.0.1", port: int = 8080, unix: str | None = None,
          config: Config | None = None, access_log: IO[str] | None = None,
          ready: Callable[[Any], None] | None = None) -> None:
    """Run ``app`` until SIGTERM/SIGINT. Blocks the calling thread."""
    server = Server(app, config, access_log=access_log)
    addr = server.listen_unix(unix) if unix else server.listen_tcp(host, port)
    if ready is not None:
        ready(addr)
    else:
        print(f"tpd2py serving on {addr}", file=sys.stderr, flush=True)
    server.serve_forever()
