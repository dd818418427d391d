"""psycopg 3 driven by the hub: ``HubConnection`` and ``connect`` (the ``postgres`` extra).

What it is: psycopg's ``Connection`` whose every wait parks only the calling greenlet; the
pool on top is ``pg.py``, the user's guide docs/postgres.md. No thread, no monkey patching.

How it works:
- psycopg 3 speaks the protocol in generators (``psycopg.generators``): each yields the wait
  it needs (read, write, or either, on libpq's socket) and is resumed with what is ready.
  Every operation of the sync API (queries, COPY, notifications, transactions, pipelines,
  server-side cursors) hands its generator to ``Connection.wait``; ``HubConnection``
  overrides it, and the two calls that wait elsewhere (``connect``, ``cancel_safe``), to wait
  on the hub. The overrides are psycopg's documented seam, not a patch.
- The hub is edge-triggered and trusts its callers to try the syscall first; libpq does not
  read until EAGAIN (one buffer at a time) and some generators wait before they try (pipeline
  mode asks for "readable or writable" first). So before parking, one ``poll(2)`` with a zero
  timeout asks what the socket is ready for now (level-triggered, one syscall): ready, and the
  generator goes on at once; not ready, and a later change is an edge the hub will see.
- The hub watches a duplicate of libpq's fd (``Watch``): libpq closes its fd on a fatal error
  and the number may be reused at once; the duplicate stays ours, and is taken out of epoll
  (while it is still open: an epoll entry lives as long as any fd of the socket does) before
  we close it.
- An exception thrown into a waiting greenlet (its client hung up inside ``request.park()``, a
  timeout, shutdown) would leave the query running: it is cancelled through a cooperative
  cancel connection and its results drained, as psycopg does on Ctrl-C, and the exception goes
  on. A connection that cannot be brought back is closed.
Rules: a connection is used by one greenlet at a time (psycopg's thread lock becomes a guard
that raises instead of blocking the hub's thread). Host names are resolved in the thread pool
(libpq would block on DNS); pass a socket directory or an address on hot paths anyway.
Switch points: ``HubConnection.wait`` (so every psycopg call that talks to the server),
``HubConnection.connect``, ``cancel_safe``/``cancel``, ``connect``. The hub's ``on_readable``
callback here only sets a flag.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import select
import socket
import weakref
from collections.abc import Callable
from typing import Any

import greenlet
import psycopg
from psycopg import errors as pg_errors
from psycopg import generators, pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import tuple_row
from psycopg.waiting import Ready, Wait

from .errors import HubError
from .hub import FdRecord, Hub, get_hub
from .threads import run_in_thread

log = logging.getLogger("tpd2py.pg")


WAIT_R, WAIT_W = Wait.R, Wait.W
READY_R, READY_W, READY_RW = Ready.R, Ready.W, Ready.RW
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT
_IN_OUT = 31  # POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP
# poll(2)'s events as psycopg's Ready: an error or hang-up is "ready" (libpq meets it itself).
_READY = [Ready(((b & (select.POLLIN | select.POLLERR | select.POLLHUP) != 0) * 1)
                | ((b & (select.POLLOUT | select.POLLERR | select.POLLHUP) != 0) * 2))
          for b in range(32)]
_OK = pq.ConnStatus.OK
_ACTIVE = pq.TransactionStatus.ACTIVE
# psycopg's own "a wait with a timeout expired" (Connection.notifies catches it).
_WaitTimeout: type[Exception] = getattr(pg_errors, "_WaitTimeout", pg_errors.OperationalError)

# An interrupted query gets this long to be cancelled and drained; after it the connection is
# closed instead (the server may be gone or stopped).
CANCEL_TIMEOUT = 5.0
# libpq's connect_timeout when the conninfo gives none (its own default is "forever").
CONNECT_TIMEOUT = 10.0


class _Expired(BaseException):
    """Thrown by a wait's own timer (BaseException: an ``except Exception`` must not eat it)."""


class Watch:
    """The hub's registration of one libpq socket, through a duplicate of its fd."""

    __slots__ = ("hub", "fd", "ino", "sock", "rec", "poller", "input_seen", "__weakref__")

    def __init__(self, hub: Hub, fd: int) -> None:
        self.hub = hub
        self.fd = fd  # libpq's number
        self.ino = os.fstat(fd).st_ino  # tells a new socket that got the same number
        self.sock = socket.socket(fileno=os.dup(fd))
        self.rec: FdRecord = hub.register(self.sock.fileno(), _input_arrived)
        self.rec.owner = self
        self.poller = select.poll()
        self.poller.register(self.sock.fileno(), select.POLLIN | select.POLLOUT)
        # Set when input arrives while nobody waits (an idle connection heard from the server).
        self.input_seen = False

    def same(self, fd: int) -> bool:
        return fd == self.fd and os.fstat(fd).st_ino == self.ino

    def ready(self, wait: Wait) -> Ready:
        """Park until the socket is ready for ``wait``; what it is ready for. May switch."""
        # What the socket is ready for now, level-triggered (see the module docstring).
        events = self.poller.poll(0)
        if events:
            now = _READY[events[0][1] & _IN_OUT]
            if now & wait:
                return now & wait  # type: ignore[return-value]
        hub, rec = self.hub, self.rec
        if wait == WAIT_R:
            hub.wait_readable(rec)
            return READY_R
        if wait == WAIT_W:
            hub.wait_writable(rec)
            return READY_W
        hub.wait_readable_or_writable(rec)
        return READY_RW

    def input_waiting(self) -> bool | None:
        """Whether input is waiting in the kernel: True, False, or None at EOF or on an error.
        Never switches."""
        try:
            return self.sock.recv(1, _PEEK) != b"" or None
        except BlockingIOError:
            return False
        except OSError:
            return None

    def close(self) -> None:
        """Out of epoll while our fd is open, then close it. Never switches."""
        if not self.rec.closed:
            self.hub.unregister(self.rec)
        self.sock.close()


def _input_arrived(rec: FdRecord) -> None:
    rec.owner.input_seen = True


def _drive(watch: Watch, gen: Any, timeout: float | None = None,
           on_interrupt: Callable[[Watch, Any, Wait], None] | None = None) -> Any:
    """Run a psycopg generator to its end, parking on ``watch`` whenever it must wait. A
    ``timeout`` raises psycopg's wait timeout. An exception thrown into the wait is passed,
    with the generator and the wait it was in, to ``on_interrupt`` before it goes on.
    May switch to the hub."""
    hub = watch.hub
    timer = None
    if timeout is not None:
        timer = hub.call_later(timeout, hub.throw, greenlet.getcurrent(), _Expired())
    try:
        wait = next(gen)
        while True:
            try:
                ready = watch.ready(wait)
            except BaseException:
                if timer is not None:
                    timer.cancel()
                if on_interrupt is not None:
                    on_interrupt(watch, gen, wait)
                raise
            wait = gen.send(ready)
    except StopIteration as stop:
        return stop.value
    except _Expired:
        raise _WaitTimeout("wait timeout expired") from None
    finally:
        if timer is not None:
            timer.cancel()


def _finish(watch: Watch, gen: Any, wait: Wait, timeout: float) -> None:
    """Run an interrupted generator on from the wait it was in, to its end (its result is
    dropped), within ``timeout``. May switch to the hub."""

    def resumed() -> Any:
        ready = yield wait
        return (yield from _relay(gen, ready))

    _drive(watch, resumed(), timeout)


def _relay(gen: Any, ready: Any) -> Any:
    try:
        wait = gen.send(ready)
        while True:
            wait = gen.send((yield wait))
    except StopIteration as stop:
        return stop.value


def _drive_conn(hub: Hub, gen: Any, timeout: float | None) -> tuple[Any, Watch | None]:
    """Run a psycopg connection generator (it yields ``(fd, wait)``: the fd may change while
    libpq tries addresses) to its end; its result and the watch of its last fd. May switch."""
    watch: Watch | None = None
    timer = None
    if timeout is not None:
        timer = hub.call_later(timeout, hub.throw, greenlet.getcurrent(), _Expired())
    try:
        fd, wait = next(gen)
        while True:
            if watch is None or not watch.same(fd):
                if watch is not None:
                    watch.close()
                watch = Watch(hub, fd)
            fd, wait = gen.send(watch.ready(wait))
    except StopIteration as stop:
        return stop.value, watch
    except BaseException as exc:
        gen.close()
        if watch is not None:
            watch.close()
        if isinstance(exc, _Expired):
            raise pg_errors.ConnectionTimeout("connection timeout expired") from None
        raise
    finally:
        if timer is not None:
            timer.cancel()


class _OneGreenlet:
    """psycopg's connection lock, for greenlets: a threading.Lock taken twice would block the
    hub's thread for ever; a second user of a connection is a bug, so it raises."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = False

    def __enter__(self) -> None:
        if self.held:
            raise HubError("a PostgreSQL connection is used by one greenlet at a time")
        self.held = True

    def __exit__(self, *exc: object) -> None:
        self.held = False


class HubConnection(psycopg.Connection[Any]):
    """A psycopg ``Connection`` whose waits park the calling greenlet on the hub.

    Make one with ``HubConnection.connect(conninfo, **kwargs)`` (psycopg's arguments) or take
    one from a ``Pool``. Everything else is psycopg's API.
    """

    watch: Watch | None = None
    statement_cursor: psycopg.Cursor[Any]
    tuple_cursor: psycopg.Cursor[Any]

    @classmethod
    def connect(cls, conninfo: str = "", *, autocommit: bool = False,  # type: ignore[override]
                prepare_threshold: int | None = 5, row_factory: Any = None,
                hub: Hub | None = None, **kwargs: Any) -> HubConnection:
        """Connect without blocking the hub (``connect_timeout`` in the conninfo or kwargs
        bounds it; default ``CONNECT_TIMEOUT``). May switch to the hub."""
        hub = hub or get_hub()
        params = conninfo_to_dict(conninfo, **kwargs)
        timeout = float(params.get("connect_timeout") or CONNECT_TIMEOUT)
        _resolve_hosts(params)
        pgconn, watch = _drive_conn(hub, generators.connect(make_conninfo("", **params)),
                                    timeout)
        try:
            if watch is None or not watch.same(pgconn.socket):
                if watch is not None:
                    watch.close()
                watch = Watch(hub, pgconn.socket)
        except BaseException:
            pgconn.finish()
            raise
        conn = cls(pgconn, row_factory or tuple_row)
        conn.watch = watch
        weakref.finalize(conn, watch.close)
        conn.lock = _OneGreenlet()  # type: ignore[assignment]
        conn.autocommit = autocommit
        conn.prepare_threshold = prepare_threshold
        # One cursor per connection for the pool's one-statement calls, made once: a new
        # cursor per statement cost ~30 us of CPU per query here (bench: 95 against 125 us).
        conn.statement_cursor = conn.cursor()
        conn.tuple_cursor = conn.cursor(row_factory=tuple_row)
        return conn

    def wait(self, gen: Any, interval: float = 0.0, timeout: float | None = None) -> Any:
        """Run one psycopg generator, parking on the hub. May switch to the hub."""
        watch = self.watch
        if watch is None or watch.rec.closed:
            raise pg_errors.OperationalError("the connection is closed")
        return _drive(watch, gen, timeout, self._recover)

    def _recover(self, watch: Watch, gen: Any, wait: Wait) -> None:
        """An exception was thrown into our wait (Cancelled, ClientDisconnected, a timeout)
        while the server may still be running the statement: cancel it and drain its results,
        so that the connection is back in a known state, or close it. May switch to the hub."""
        pgconn = self.pgconn
        if pgconn.status != _OK or pgconn.transaction_status != _ACTIVE:
            return  # nothing runs on the server (a LISTEN wait, a dead connection)
        try:
            self.cancel_safe(timeout=CANCEL_TIMEOUT)
            with contextlib.suppress(pg_errors.QueryCanceled):
                _finish(watch, gen, wait, CANCEL_TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - any failure here closes the connection
            log.debug("could not cancel an interrupted query (%r): closing", exc)
        if pgconn.status != _OK or pgconn.transaction_status == _ACTIVE:
            self.close()

    def cancel_safe(self, *, timeout: float = 30.0) -> None:
        """Cancel the running query through a cooperative cancel connection (libpq 17's
        non-blocking cancel). May switch to the hub."""
        if self.closed:
            return
        cancel = self.pgconn.cancel_conn()
        cancel.start()
        try:
            _, watch = _drive_conn(self.watch.hub if self.watch else get_hub(),
                                   generators.cancel(cancel), timeout)
        except pg_errors.ConnectionTimeout:
            raise pg_errors.CancellationTimeout("cancellation timeout expired") from None
        finally:
            cancel.finish()
        if watch is not None:
            watch.close()

    def cancel(self) -> None:
        """psycopg's ``cancel`` blocks the thread (PQcancel): the cooperative one instead.
        May switch to the hub."""
        self.cancel_safe()

    def close(self) -> None:
        """Close the connection and its watch. Never switches."""
        super().close()
        watch = self.watch
        if watch is not None:
            self.watch = None
            watch.close()


def _resolve_hosts(params: dict[str, Any]) -> None:
    """Put addresses for host names into ``hostaddr``, resolved in the thread pool: libpq
    would resolve them itself, blocking the hub's thread. Socket directories and addresses
    stay as they are (an empty ``hostaddr`` entry means "use host")."""
    hosts = str(params.get("host") or "")
    if not hosts or params.get("hostaddr"):
        return
    names = hosts.split(",")
    if all(not _is_name(n) for n in names):
        return
    ports = str(params.get("port") or "").split(",")
    addrs = []
    for i, name in enumerate(names):
        if not _is_name(name):
            addrs.append(name if _is_address(name) else "")
            continue
        port = ports[i] if len(ports) == len(names) else ports[0]
        infos = run_in_thread(socket.getaddrinfo, name, int(port or 5432), 0,
                              socket.SOCK_STREAM)
        addrs.append(str(infos[0][4][0]))
    params["hostaddr"] = ",".join(addrs)


def _is_name(host: str) -> bool:
    return bool(host) and not host.startswith(("/", "@")) and not _is_address(host)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def connect(conninfo: str = "", **kwargs: Any) -> HubConnection:
    """``HubConnection.connect``: one cooperative connection of your own (a LISTEN loop, say).
    May switch to the hub."""
    return HubConnection.connect(conninfo, **kwargs)
