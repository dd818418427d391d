"""Listening sockets, the accept loop, the connection registry, the sweep and shutdown.

How it works:
- Accepting is a hub callback on the level-triggered listener: one connection per loop turn
  (the level trigger brings it back while more are queued, so no accept is spent learning
  EAGAIN), wrapped in a Connection (a hub record, not yet in epoll) and served at
  once (its first request is usually there already: TCP_DEFER_ACCEPT). At
  ``max_connections`` the listener is paused until one closes; on EMFILE/ENFILE it pauses
  for 0.1 s instead of spinning (logged once when it starts, with a count when it ends).
  TCP_NODELAY is set lazily (see Connection.set_nodelay).
- The server is not on the per-request path: connections reach what they share (config, app,
  buffers, clocks, counters) through one ``Context`` (context.py), and tell the server only
  that they closed (``Context.forget``).
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
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from .app import App
from .conn import IDLE, Connection
from .context import Config, Context, ExchangeApp
from .exchange import Exchange
from .hub import FdRecord, Hub, get_hub
from .watchdog import for_config

__all__ = ["Config", "Server", "serve"]

log = logging.getLogger("tpd2py.server")

_ACCEPT_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# How long accepting pauses when the process is out of descriptors or memory.
ACCEPT_BACKOFF = 0.1
# What a listener makes of an accepted socket: the object its Connection reads and writes
# through (the socket itself when there is none; a TLS transport).
Transport = Callable[[Any], Any]


class Server:
    def __init__(self, app: App | ExchangeApp, config: Config | None = None,
                 hub: Hub | None = None, access_log: IO[str] | None = None) -> None:
        self.app = app
        self.config = config or Config()
        self.hub = hub or get_hub()
        self.ctx = Context(self.hub, self.config, app, access_log, self._forget,
                           new_exchange=getattr(app, "new_exchange", Exchange))
        self.conns: dict[int, Connection] = {}
        self.listeners: list[socket.socket] = []
        self._listener_recs: list[FdRecord] = []
        self._accept_paused = False
        # Accept back-off: when it started (0.0: not backing off) and how often it struck.
        self._backoff_since = 0.0
        self._backoffs = 0
        self._sweeper: Any = None
        self.stopped = False
        # A feature that reads something before HTTP on each new connection (proxyproto.py)
        # sets this before listening: ``preface(server, sock, addr, transport)`` runs in its
        # own greenlet and hands the socket on with ``adopt_connection``. None: listeners take
        # the plain accept path, which does not look at it.
        self.preface: Callable[[Server, Any, Any, Any], None] | None = None

    @property
    def draining(self) -> bool:
        return self.ctx.draining

    @property
    def requests(self) -> int:
        """Requests served so far."""
        return self.ctx.requests

    # -- listening ------------------------------------------------------------------------------

    def listen_tcp(self, host: str = "127.0.0.1", port: int = 8080, backlog: int = 1024,
                   transport: Transport | None = None) -> Any:
        """Listen on host:port; ``transport`` (e.g. ``tls.TLSSettings.wrap``) makes each
        accepted socket into what its connection talks through."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Do not wake us for connections that have sent nothing yet (TPD2).
        with contextlib.suppress(AttributeError, OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 10)
        sock.bind((host, port))
        sock.listen(backlog)
        self._add_listener(sock, transport)
        return sock.getsockname()

    def listen_unix(self, path: str, backlog: int = 1024,
                    transport: Transport | None = None) -> str:
        if os.path.exists(path):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(backlog)
        self._add_listener(sock, transport)
        return path

    def adopt(self, sock: socket.socket, transport: Transport | None = None) -> None:
        """Serve a listening socket bound elsewhere (a master process, systemd)."""
        self._add_listener(sock, transport)

    def _add_listener(self, sock: socket.socket, transport: Transport | None = None) -> None:
        sock.setblocking(False)
        self.listeners.append(sock)
        accept = self._accept_one if self.preface is None else self._accept_preface
        rec = self.hub.register(sock.fileno(), accept, level=True)
        # family/type/proto read once: the socket properties build enums on every access.
        # SOCK_NONBLOCK in the type makes CPython's socket object non-blocking (timeout 0.0)
        # without a syscall and whatever socket.setdefaulttimeout() says; the fd itself stays
        # blocking (conn.py passes MSG_DONTWAIT). Without it a default timeout set by the app
        # would make every recv that finds nothing wait that long, stalling the hub.
        rec.owner = (sock._accept, int(sock.family),  # type: ignore[attr-defined]
                     int(sock.type) | socket.SOCK_NONBLOCK, sock.proto, transport)
        self._listener_recs.append(rec)

    def _accept_one(self, rec: FdRecord) -> None:
        """Hub callback, level-triggered: accept one connection and serve it at once (its
        first request is usually there already: TCP_DEFER_ACCEPT), in this greenlet."""
        accept, family, type_, proto, transport = rec.owner
        try:
            fd, addr = accept()
        except BlockingIOError:
            return
        except OSError as e:
            self._accept_failed(e)
            return
        if self._backoffs:
            self._recovered()
        # The C socket type: no Python-level __init__/close per connection.
        # Left in blocking mode: the connection passes MSG_DONTWAIT on every recv and send
        # instead (one ioctl less per connection; gsocket.py, DONTWAIT).
        sock = _socket.socket(family, type_, proto, fd)
        if transport is not None:
            sock = transport(sock)  # the connection's transport seam (TLS)
        conn = Connection(self.ctx, sock, addr if self.ctx.access_log is not None else None)
        self.conns[fd] = conn
        if len(self.conns) >= self.config.max_connections:
            self._pause_accepting(True)
        conn.serve()

    def _recovered(self) -> None:
        log.warning("accept: recovered after %d back-offs in %.1f s", self._backoffs,
                    time.monotonic() - self._backoff_since)
        self._backoffs = 0

    def _accept_failed(self, e: OSError) -> None:
        if e.errno in _ACCEPT_EXHAUSTED:
            # Out of descriptors or memory: stop listening for a moment instead of
            # spinning on a queue we cannot take from.
            self._back_off(e.errno or 0)
            return
        if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
            return
        raise e

    def _accept_preface(self, rec: FdRecord) -> None:
        """Hub callback instead of _accept_one when ``preface`` is set: accept one connection
        and run the preface on it in a greenlet of its own."""
        accept, family, type_, proto, transport = rec.owner
        try:
            fd, addr = accept()
        except BlockingIOError:
            return
        except OSError as e:
            self._accept_failed(e)
            return
        if self._backoffs:  # the preface path missed this: back-offs were never said to end
            self._recovered()
        preface = self.preface
        assert preface is not None  # registered only when set
        self.hub.spawn(preface, self, _socket.socket(family, type_, proto, fd), addr, transport)

    def adopt_connection(self, sock: Any, peer: Any, transport: Transport | None = None
                         ) -> None:
        """Serve a connection a preface has handed on, as _accept_one does; ``peer`` is what
        ``request.peer`` reports; ``transport`` as the listener's (the preface came before
        TLS). Runs in the hub (call_soon)."""
        if self.ctx.draining:
            sock.close()
            return
        if transport is not None:
            sock = transport(sock)
        conn = Connection(self.ctx, sock, peer)
        self.conns[conn.fd] = conn
        if len(self.conns) >= self.config.max_connections:
            self._pause_accepting(True)
        conn.serve()

    def _back_off(self, err: int) -> None:
        """Pause accepting for ACCEPT_BACKOFF. Said once when a run of back-offs starts (a
        client flood must not flood the log: 600 lines a minute), and once when it ends."""
        if not self._backoffs:
            self._backoff_since = time.monotonic()
            log.warning("accept: %s; backing off (%.1f s at a time, until it clears)",
                        os.strerror(err), ACCEPT_BACKOFF)
        self._backoffs += 1
        self._pause_accepting(True)
        self.hub.call_later(ACCEPT_BACKOFF, self._pause_accepting, False)

    def _pause_accepting(self, paused: bool) -> None:
        if paused == self._accept_paused or self.ctx.draining:
            return
        if not paused and len(self.conns) >= self.config.max_connections:
            return  # still full: forget() resumes when a connection closes
        self._accept_paused = paused
        for rec in self._listener_recs:
            self.hub.pause_level(rec, paused)

    # -- connections ----------------------------------------------------------------------------

    def _forget(self, conn: Connection) -> None:
        """Context.forget: ``conn`` has closed; drop it from the registry."""
        fd = conn.fd
        if self.conns.get(fd) is conn:
            del self.conns[fd]
        if self._accept_paused:
            self._pause_accepting(False)

    # -- housekeeping ---------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Once a second: Date line, deadlines, access-log flush. Runs in the hub."""
        hub = self.hub
        ctx = self.ctx
        ctx.date.update()
        now = hub.refresh_now()
        for conn in [c for c in self.conns.values() if c.deadline < now]:
            conn.expire()
        if ctx.access_log is not None:
            ctx.access_log.flush()
        if not self.stopped:
            self._sweeper = hub.call_later(1.0, self._sweep)

    def statistics(self) -> dict[str, int]:
        """Counters for tests and monitoring: requests, sendmsg calls, connections, pools."""
        return {
            "requests": self.ctx.requests,
            "sendmsg_calls": self.ctx.sendmsg_calls,
            "connections": len(self.conns),
            "pooled_greenlets": len(self.hub.spares),
            "pooled_buffers": len(self.ctx.buffers),
            **self.hub.statistics(),
        }

    # -- running --------------------------------------------------------------------------------

    def start(self) -> None:
        """Arm the sweep; the hub's run() then serves."""
        self._sweeper = self.hub.call_later(1.0, self._sweep)

    def serve_forever(self, install_signals: bool = True) -> None:
        """Serve until SIGTERM/SIGINT (or ``shutdown()``), then drain and return."""
        self.start()
        if install_signals:
            self._install_signals()
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
            hub.call_soon(self._on_stop_signal)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _on_stop_signal(self) -> None:
        """SIGTERM/SIGINT: a graceful shutdown that says what it waits for; a second signal
        while it waits closes everything at once."""
        if self.ctx.draining:
            if not self.stopped:
                log.warning("stopping now: closing %d connection(s)", len(self.conns))
                self._check_drained(0.0)
            return
        self.shutdown()
        if self.conns and not self.stopped:
            log.warning("stopping: waiting up to %gs for %d connection(s) to finish "
                        "(Ctrl-C again to stop now)", self.config.grace, len(self.conns))

    def shutdown(self, grace: float | None = None, keep_idle: bool = False) -> None:
        """Stop accepting, close idle connections, let busy ones finish, then stop the hub.

        With ``keep_idle`` (a worker retiring while others serve on: workers.py) idle
        keep-alive connections stay open until their next request, which is answered with
        ``Connection: close``, or until ``grace`` ends: closing one at once could race the
        request its client is sending. Runs in the hub (a callback); never switches.
        """
        if self.ctx.draining:
            return
        self.ctx.draining = True
        grace = self.config.grace if grace is None else grace
        for rec in self._listener_recs:
            # Not ``closing``: a listener may be shared with other processes (workers.py), and
            # epoll forgets an fd only when every descriptor of its open file is closed.
            self.hub.unregister(rec)
        for sock in self.listeners:
            sock.close()
        self.listeners.clear()
        self._listener_recs.clear()
        for conn in list(self.conns.values()):
            if conn.worker is not None:
                conn.ex.keep_alive = False  # a running handler's response says so: it closes
            if not (keep_idle and conn.state is IDLE):
                conn.drain()
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


def serve(app: App | ExchangeApp, host: str = "127.0.0.1", port: int = 8080,
          unix: str | None = None,
          config: Config | None = None, access_log: IO[str] | None = None,
          ready: Callable[[Any], None] | None = None,
          transport: Transport | None = None) -> None:
    """Run ``app`` until SIGTERM/SIGINT. Blocks the calling thread. ``transport`` wraps
    each accepted socket (``tls.TLSSettings(...).wrap`` serves HTTPS)."""
    server = Server(app, config, access_log=access_log)
    addr = server.listen_unix(unix, transport=transport) if unix \
        else server.listen_tcp(host, port, transport=transport)
    if ready is not None:
        ready(addr)
    else:
        print(f"tpd2py serving on {addr}", file=sys.stderr, flush=True)
    # Signal handlers can only be installed by the main thread: a server started in another
    # thread (a test) is stopped with ``Server.shutdown`` instead (see tpd2py.testing).
    server.serve_forever(install_signals=threading.current_thread() is threading.main_thread())
