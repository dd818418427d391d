"""PostgreSQL on the hub: psycopg 3 driven by tpd2py's own waits (the ``postgres`` extra).

What it is: ``HubConnection``, psycopg's ``Connection`` whose every wait parks only the
calling greenlet, and ``Pool``, a pool of them whose waiters park in FIFO order; a handler
reads top to bottom (``row = db.fetchrow(...)``) while the hub serves everyone else. No thread
per query, no monkey patching. docs/postgres.md is the user's guide.

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
- The hub watches a duplicate of libpq's fd: libpq closes its fd on a fatal error and the
  number may be reused at once; the duplicate stays ours, and is taken out of epoll (while it
  is still open: an epoll entry lives as long as any fd of the socket does) before we close it.
- An exception thrown into a waiting greenlet (its client hung up inside ``request.park()``, a
  timeout, shutdown) would leave the query running: it is cancelled through a cooperative
  cancel connection and its results drained, as psycopg does on Ctrl-C, and the exception goes
  on. A connection that cannot be brought back is closed.
- The pool hands a returned connection straight to its oldest waiter (FIFO; ``hub.schedule``),
  so a late arrival cannot overtake. A checkout timeout answers 503 (``PoolTimeout``); a
  connection broken by a PostgreSQL restart or crash raises ``DatabaseUnavailable`` (503) in
  the request that used it, is closed and replaced; an idle one that heard from the server
  (a termination notice, EOF) is checked before it is handed out.
Rules: a connection is used by one greenlet at a time (psycopg's thread lock becomes a guard
that raises instead of blocking the hub's thread). Host names are resolved in the thread pool
(libpq would block on DNS); pass a socket directory or an address on hot paths anyway.
Switch points: ``HubConnection.wait`` (so every psycopg call that talks to the server),
``HubConnection.connect``, ``cancel_safe``/``cancel``; ``Pool.getconn``, ``putconn`` (a
rollback), ``connection``, ``transaction``, ``pipeline``, ``fetch``, ``fetchrow``,
``fetchval``, ``execute``, ``executemany``, ``fetch_each``. The hub's ``on_readable`` callback
here only sets a flag.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import logging
import os
import select
import socket
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import greenlet
import psycopg
from psycopg import errors as pg_errors
from psycopg import generators, pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import tuple_row
from psycopg.waiting import Ready, Wait

from .errors import HTTPError, HubError, Overloaded
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
_IDLE = pq.TransactionStatus.IDLE
_ACTIVE = pq.TransactionStatus.ACTIVE
_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR
# psycopg's own "a wait with a timeout expired" (Connection.notifies catches it).
_WaitTimeout: type[Exception] = getattr(pg_errors, "_WaitTimeout", pg_errors.OperationalError)

# An interrupted query gets this long to be cancelled and drained; after it the connection is
# closed instead (the server may be gone or stopped).
CANCEL_TIMEOUT = 5.0
# libpq's connect_timeout when the conninfo gives none (its own default is "forever").
CONNECT_TIMEOUT = 10.0
# How long a request waits for a free connection before it is answered 503: longer than a
# normal query queue, short enough that a client is not left hanging on a stuck database.
CHECKOUT_TIMEOUT = 5.0


class DatabaseUnavailable(HTTPError):
    """PostgreSQL could not be reached, or the connection broke under the request (a restart):
    answered ``503 Service Unavailable`` with ``Retry-After``. ``__cause__`` is psycopg's
    error."""

    def __init__(self, message: str = "503 Service Unavailable: database unavailable\n",
                 retry_after: int = 1) -> None:
        super().__init__(503, message, {"Retry-After": str(retry_after)})


class PoolTimeout(Overloaded):
    """No connection came free within the checkout timeout: 503 with ``Retry-After``."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"503 Service Unavailable: no database connection within {timeout:g}s\n")


class _Expired(BaseException):
    """Thrown by a wait's own timer (BaseException: an ``except Exception`` must not eat it)."""


class _Watch:
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

    def close(self) -> None:
        """Out of epoll while our fd is open, then close it. Never switches."""
        if not self.rec.closed:
            self.hub.unregister(self.rec)
        self.sock.close()


def _input_waiting(watch: _Watch) -> bool | None:
    """Whether input is waiting in the kernel: True, False, or None at EOF or on an error.
    Never switches."""
    try:
        return watch.sock.recv(1, _PEEK) != b"" or None
    except BlockingIOError:
        return False
    except OSError:
        return None


def _input_arrived(rec: FdRecord) -> None:
    rec.owner.input_seen = True


def _drive(watch: _Watch, gen: Any, timeout: float | None = None,
           on_interrupt: Callable[[_Watch, Any, Wait], None] | None = None) -> Any:
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


def _finish(watch: _Watch, gen: Any, wait: Wait, timeout: float) -> None:
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


def _drive_conn(hub: Hub, gen: Any, timeout: float | None) -> tuple[Any, _Watch | None]:
    """Run a psycopg connection generator (it yields ``(fd, wait)``: the fd may change while
    libpq tries addresses) to its end; its result and the watch of its last fd. May switch."""
    watch: _Watch | None = None
    timer = None
    if timeout is not None:
        timer = hub.call_later(timeout, hub.throw, greenlet.getcurrent(), _Expired())
    try:
        fd, wait = next(gen)
        while True:
            if watch is None or not watch.same(fd):
                if watch is not None:
                    watch.close()
                watch = _Watch(hub, fd)
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

    _watch: _Watch | None = None

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
                watch = _Watch(hub, pgconn.socket)
        except BaseException:
            pgconn.finish()
            raise
        conn = cls(pgconn, row_factory or tuple_row)
        conn._watch = watch
        weakref.finalize(conn, watch.close)
        conn.lock = _OneGreenlet()  # type: ignore[assignment]
        conn.autocommit = autocommit
        conn.prepare_threshold = prepare_threshold
        return conn

    def wait(self, gen: Any, interval: float = 0.0, timeout: float | None = None) -> Any:
        """Run one psycopg generator, parking on the hub. May switch to the hub."""
        watch = self._watch
        if watch is None or watch.rec.closed:
            raise pg_errors.OperationalError("the connection is closed")
        return _drive(watch, gen, timeout, self._recover)

    def _recover(self, watch: _Watch, gen: Any, wait: Wait) -> None:
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
            _, watch = _drive_conn(self._watch.hub if self._watch else get_hub(),
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
        watch = self._watch
        if watch is not None:
            self._watch = None
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


class _Waiter:
    __slots__ = ("greenlet", "conn", "gone")

    def __init__(self, g: greenlet.greenlet) -> None:
        self.greenlet = g
        self.conn: HubConnection | None = None  # handed over, maybe not yet received
        self.gone = False  # timed out or thrown out: skip it


_TIMED_OUT = object()


class Pool:
    """A pool of ``HubConnection``s for the hub's greenlets.

    ``Pool(conninfo, size=10, checkout_timeout=5.0, row_factory=None, prepare_threshold=5,
    configure=None, **connect_kwargs)``; connections are opened on demand (at most ``size``)
    in autocommit mode: a statement outside ``transaction()`` commits by itself. Create it
    anywhere (at import); it binds to the hub of the thread that first uses it.
    """

    def __init__(self, conninfo: str = "", size: int = 10, *,
                 checkout_timeout: float | None = CHECKOUT_TIMEOUT,
                 row_factory: Any = None, prepare_threshold: int | None = 5,
                 configure: Callable[[HubConnection], None] | None = None,
                 hub: Hub | None = None, **kwargs: Any) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.conninfo = conninfo
        self.size = size
        self.checkout_timeout = checkout_timeout
        self.row_factory = row_factory
        self.prepare_threshold = prepare_threshold
        self.configure = configure
        self.kwargs = kwargs
        self.hub = hub
        self._idle: list[HubConnection] = []  # LIFO: the warmest connection first
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._open = 0  # connections open or being opened
        self._closed = False
        self.checkouts = self.waits = self.timeouts = self.replaced = 0

    # -- checkout and return --------------------------------------------------------------------

    def getconn(self, timeout: float | None = None) -> HubConnection:
        """Take a connection: an idle one, a new one while fewer than ``size`` are open, else
        wait (FIFO) up to ``timeout`` (default ``checkout_timeout``) for one to come back:
        ``PoolTimeout`` (503) then. Give it back with ``putconn``. May switch to the hub."""
        if self._closed:
            raise DatabaseUnavailable("503 Service Unavailable: the database pool is closed\n")
        self.checkouts += 1
        idle = self._idle
        while idle:
            conn = idle.pop()
            watch = conn._watch
            if watch is not None and (not watch.input_seen or self._still_good(conn)):
                return conn
            self._discard(conn, "it closed while idle")
        if self._open < self.size:
            return self._open_one()
        return self._wait_turn(self.checkout_timeout if timeout is None else timeout)

    def putconn(self, conn: HubConnection) -> None:
        """Give a connection back: to the oldest waiter, else to the idle list. One left in a
        transaction is rolled back (may switch to the hub); a broken one is closed and
        replaced."""
        if self._closed or conn._watch is None or conn.pgconn.status != _OK:
            self._discard(conn, "it is broken")
            return
        status = conn.pgconn.transaction_status
        if status in (_INTRANS, _INERROR):
            try:
                conn.rollback()
            except Exception as exc:  # noqa: BLE001 - the connection is dropped, said below
                self._discard(conn, f"its rollback failed: {exc}")
                return
        elif status != _IDLE:
            self._discard(conn, "it was interrupted mid-query")
            return
        self._hand_over(conn)

    def _hand_over(self, conn: HubConnection) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if waiter.gone:
                continue
            waiter.conn = conn
            self._bound_hub().schedule(waiter.greenlet, conn)
            return
        self._idle.append(conn)

    def _bound_hub(self) -> Hub:
        hub = self.hub
        if hub is None:
            hub = self.hub = get_hub()
        return hub

    def _connect(self) -> HubConnection:
        conn = HubConnection.connect(self.conninfo, autocommit=True,
                                     prepare_threshold=self.prepare_threshold,
                                     row_factory=self.row_factory, hub=self._bound_hub(),
                                     **self.kwargs)
        if self.configure is not None:
            try:
                self.configure(conn)
            except BaseException:
                conn.close()
                raise
        return conn

    def _open_one(self) -> HubConnection:
        self._open += 1
        try:
            return self._connect()
        except BaseException as exc:
            self._open -= 1
            self._serve_waiters()
            if isinstance(exc, psycopg.OperationalError):
                log.warning("cannot connect to PostgreSQL: %s", exc)
                raise DatabaseUnavailable() from exc
            raise

    def _wait_turn(self, timeout: float | None) -> HubConnection:
        hub = self._bound_hub()
        waiter = _Waiter(greenlet.getcurrent())
        self._waiters.append(waiter)
        self.waits += 1
        timer = hub.call_later(timeout, self._expire, waiter) if timeout is not None else None
        try:
            got = hub.park()
        except BaseException:
            waiter.gone = True
            if waiter.conn is not None:  # handed over in the same turn as the throw
                self.putconn(waiter.conn)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if got is _TIMED_OUT:
            self.timeouts += 1
            raise PoolTimeout(timeout or 0.0)
        if waiter.conn is None or got is not waiter.conn:
            raise HubError(f"a pool waiter was resumed with {got!r}")
        return waiter.conn

    def _expire(self, waiter: _Waiter) -> None:
        if waiter.conn is None and not waiter.gone:
            waiter.gone = True
            self._bound_hub().schedule(waiter.greenlet, _TIMED_OUT)

    def _still_good(self, conn: HubConnection) -> bool:
        """An idle connection had an edge: stale (input a wait had already seen), or a
        notification, a notice, or its end (a restart sends a FATAL message, then EOF). One
        peek in the common case. Never switches."""
        watch = conn._watch
        assert watch is not None
        watch.input_seen = False
        waiting = _input_waiting(watch)
        if waiting is None:
            return False  # EOF or an error
        if not waiting:
            return True
        try:
            conn.pgconn.consume_input()  # what came; EOF right behind it is peeked below
        except psycopg.OperationalError:
            return False
        return conn.pgconn.status == _OK and _input_waiting(watch) is not None


    def _discard(self, conn: HubConnection, why: str) -> None:
        """Close a connection that cannot be reused; open one for a waiter if any waits."""
        self._open -= 1
        if not self._closed:
            self.replaced += 1
            log.warning("closing a PostgreSQL connection: %s", why)
        with contextlib.suppress(Exception):
            conn.close()
        self._serve_waiters()

    def _serve_waiters(self) -> None:
        """Capacity came free while requests wait: open a connection for the oldest."""
        if self._closed or self._open >= self.size:
            return
        if any(not w.gone for w in self._waiters):
            self._open += 1
            self._bound_hub().spawn(self._open_for_waiter)

    def _open_for_waiter(self) -> None:
        try:
            conn = self._connect()
        except Exception as exc:
            self._open -= 1
            log.warning("cannot connect to PostgreSQL: %s", exc)
            while self._waiters:  # fail the oldest waiter (the rest get their own attempt)
                waiter = self._waiters.popleft()
                if not waiter.gone:
                    waiter.gone = True
                    error = DatabaseUnavailable()
                    error.__cause__ = exc
                    self._bound_hub().throw(waiter.greenlet, error)
                    break
            self._serve_waiters()
            return
        if self._closed:
            self._discard(conn, "the pool is closed")
            return
        self._hand_over(conn)

    # -- the everyday calls ---------------------------------------------------------------------

    @contextlib.contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[HubConnection]:
        """``with db.connection() as conn:`` a connection for the block (autocommit), given
        back after it. A connection that broke under it raises ``DatabaseUnavailable``.
        May switch to the hub."""
        conn = self.getconn(timeout)
        try:
            yield conn
        except psycopg.OperationalError as exc:
            _raise_if_broken(conn, exc)
            raise
        finally:
            self.putconn(conn)

    @contextlib.contextmanager
    def transaction(self, timeout: float | None = None) -> Iterator[HubConnection]:
        """``with db.transaction() as conn:`` BEGIN, then COMMIT at the end of the block, or
        ROLLBACK if it raises (``raise psycopg.Rollback`` rolls back quietly). May switch."""
        with self.connection(timeout) as conn, conn.transaction():
            yield conn

    @contextlib.contextmanager
    def pipeline(self, timeout: float | None = None) -> Iterator[HubConnection]:
        """``with db.pipeline() as conn:`` psycopg's pipeline mode: the statements of the block
        go out without waiting for each other's results (one round trip for a batch). Fetch
        from the cursors after the block, or inside it (that waits). May switch."""
        with self.connection(timeout) as conn, conn.pipeline():
            yield conn

    def fetch(self, query: Any, params: Any = None, *, prepare: bool | None = None) -> list:
        """All rows of one statement. May switch to the hub."""
        conn = self.getconn()
        try:
            return conn.execute(query, params, prepare=prepare).fetchall()
        except psycopg.OperationalError as exc:
            _raise_if_broken(conn, exc)
            raise
        finally:
            self.putconn(conn)

    def fetchrow(self, query: Any, params: Any = None, *, prepare: bool | None = None) -> Any:
        """The first row of one statement, or None. May switch to the hub."""
        conn = self.getconn()
        try:
            return conn.execute(query, params, prepare=prepare).fetchone()
        except psycopg.OperationalError as exc:
            _raise_if_broken(conn, exc)
            raise
        finally:
            self.putconn(conn)

    def fetchval(self, query: Any, params: Any = None, *, prepare: bool | None = None) -> Any:
        """The first column of the first row, or None. May switch to the hub."""
        conn = self.getconn()
        try:
            cur = conn.cursor(row_factory=tuple_row)
            row = cur.execute(query, params, prepare=prepare).fetchone()
            return None if row is None else row[0]
        except psycopg.OperationalError as exc:
            _raise_if_broken(conn, exc)
            raise
        finally:
            self.putconn(conn)

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None) -> int:
        """Run one statement; the number of rows it touched. May switch to the hub."""
        conn = self.getconn()
        try:
            return conn.execute(query, params, prepare=prepare).rowcount
        except psycopg.OperationalError as exc:
            _raise_if_broken(conn, exc)
            raise
        finally:
            self.putconn(conn)

    def executemany(self, query: Any, params_seq: Iterable[Any]) -> None:
        """Run one statement per parameter set, pipelined (psycopg's executemany): one round
        trip, not one per row. May switch to the hub."""
        conn = self.getconn()
        try:
            conn.cursor().executemany(query, params_seq)
        except psycopg.OperationalError as exc:
            _raise_if_broken(conn, exc)
            raise
        finally:
            self.putconn(conn)

    def fetch_each(self, query: Any, params_seq: Sequence[Any]) -> list:
        """One statement per parameter set, pipelined; the first row of each (or None), in
        order. For a batch of independent reads. May switch to the hub."""
        conn = self.getconn()
        try:
            return fetch_each(conn, query, params_seq)
        except psycopg.OperationalError as exc:
            _raise_if_broken(conn, exc)
            raise
        finally:
            self.putconn(conn)

    # -- life -----------------------------------------------------------------------------------

    def statistics(self) -> dict[str, int]:
        return {
            "size": self.size,
            "open": self._open,
            "idle": len(self._idle),
            "waiting": sum(not w.gone for w in self._waiters),
            "checkouts": self.checkouts,
            "waits": self.waits,
            "timeouts": self.timeouts,
            "replaced": self.replaced,
        }

    def close(self) -> None:
        """Close the idle connections; those in use close when they come back. Waiters get
        ``DatabaseUnavailable``. Never switches."""
        self._closed = True
        while self._idle:
            self._discard(self._idle.pop(), "the pool is closed")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.gone:
                waiter.gone = True
                self._bound_hub().throw(waiter.greenlet, DatabaseUnavailable())


def fetch_each(conn: HubConnection, query: Any, params_seq: Sequence[Any]) -> list:
    """On ``conn``: one statement per parameter set, pipelined; the first row of each (or
    None), in order. psycopg's ``executemany(returning=True)`` pipelines with less Python per
    statement than an explicit ``pipeline()`` block (42 against 73 µs of CPU per statement
    here). May switch to the hub."""
    if not params_seq:
        return []
    cur = conn.cursor()
    cur.executemany(query, params_seq, returning=True)
    rows = [cur.fetchone()]
    while cur.nextset():
        rows.append(cur.fetchone())
    return rows


def _raise_if_broken(conn: HubConnection, exc: psycopg.OperationalError) -> None:
    if conn.closed:
        raise DatabaseUnavailable() from exc


def connect(conninfo: str = "", **kwargs: Any) -> HubConnection:
    """``HubConnection.connect``: one cooperative connection of your own (a LISTEN loop, say).
    May switch to the hub."""
    return HubConnection.connect(conninfo, **kwargs)
