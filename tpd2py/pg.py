"""PostgreSQL on the hub: psycopg 3 driven by tpd2py's own waits (the ``postgres`` extra).

What it is: ``HubConnection``, psycopg's ``Connection`` whose every wait parks only the
calling greenlet, and ``Pool``, a pool of them whose waiters park in FIFO order; a handler
reads top to bottom (``row = db.fetchrow(...)``) while the hub serves everyone else. No thread
per query, no monkey patching. docs/postgres.md is the user's guide.

How it works:
- Connections are ``pgconn.HubConnection``s (psycopg driven by the hub: how that works is
  there), opened on demand up to ``size``, in autocommit mode.
- The pool hands a returned connection straight to its oldest waiter (FIFO; ``hub.schedule``),
  so a late arrival cannot overtake. A checkout timeout answers 503 (``PoolTimeout``); a
  connection broken by a PostgreSQL restart or crash raises ``DatabaseUnavailable`` (503) in
  the request that used it, is closed and replaced (for a waiting request at once); an idle one
  that heard from the server (a termination notice, EOF) is checked before it is handed out.
Rules: a pool belongs to the hub of the thread that first uses it; a connection is used by one
greenlet at a time (the pool sees to it).
Switch points: ``connect``; ``Pool.getconn``, ``putconn`` (a
rollback), ``connection``, ``transaction``, ``pipeline``, ``fetch``, ``fetchrow``,
``fetchval``, ``execute``, ``executemany``, ``fetch_each`` (and every psycopg call on a
connection). ``putconn``'s hand-over and ``close`` never switch.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import greenlet
import psycopg
from psycopg import pq

from .errors import HTTPError, HubError, Overloaded
from .hub import Hub, get_hub
from .pgconn import CONNECT_TIMEOUT, HubConnection, connect

__all__ = ["CONNECT_TIMEOUT", "DatabaseUnavailable", "HubConnection", "Pool", "PoolTimeout",
           "connect", "fetch_each"]

log = logging.getLogger("tpd2py.pg")

_OK = pq.ConnStatus.OK
_IDLE = pq.TransactionStatus.IDLE
_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR
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
            watch = conn.watch
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
        if self._closed or conn.watch is None or conn.pgconn.status != _OK:
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
        watch = conn.watch
        assert watch is not None
        watch.input_seen = False
        waiting = watch.input_waiting()
        if waiting is None:
            return False  # EOF or an error
        if not waiting:
            return True
        try:
            conn.pgconn.consume_input()  # what came; EOF right behind it is peeked below
        except psycopg.OperationalError:
            return False
        return conn.pgconn.status == _OK and watch.input_waiting() is not None


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

    # The three leases below take their connection when called, not in ``__enter__``: the
    # pool's wait then runs in the caller's own Python frame. A wait inside generator-based
    # context managers' ``__enter__`` (C calls: more saved C stack on the waiting greenlet)
    # cost more (bench/pg_waiters.py: 9.92 -> 7.15 KiB per waiting handler). So they are
    # for ``with`` statements only: a lease made and never entered keeps its connection.

    def connection(self, timeout: float | None = None) -> Lease:
        """``with db.connection() as conn:`` a connection for the block (autocommit), given
        back after it. A connection that broke under it raises ``DatabaseUnavailable``.
        May switch to the hub (when called)."""
        return Lease(self, self.getconn(timeout), None)

    def transaction(self, timeout: float | None = None) -> Lease:
        """``with db.transaction() as conn:`` BEGIN, then COMMIT at the end of the block, or
        ROLLBACK if it raises (``raise psycopg.Rollback`` rolls back quietly). May switch."""
        conn = self.getconn(timeout)
        return Lease(self, conn, conn.transaction)

    def pipeline(self, timeout: float | None = None) -> Lease:
        """``with db.pipeline() as conn:`` psycopg's pipeline mode: the statements of the block
        go out without waiting for each other's results (one round trip for a batch). Fetch
        from the cursors after the block, or inside it (that waits). May switch."""
        conn = self.getconn(timeout)
        return Lease(self, conn, conn.pipeline)

    def _with_conn(self, use: Callable[[HubConnection], Any]) -> Any:
        """``use(conn)`` on a pooled connection, given back after: ``connection()``'s
        handling without a generator per statement. May switch to the hub."""
        conn = self.getconn()
        try:
            return use(conn)
        except psycopg.OperationalError as exc:
            _raise_if_broken(conn, exc)
            raise
        finally:
            self.putconn(conn)

    def fetch(self, query: Any, params: Any = None, *, prepare: bool | None = None) -> list:
        """All rows of one statement. May switch to the hub."""
        return self._with_conn(lambda conn: conn.statement_cursor.execute(
            query, params, prepare=prepare).fetchall())

    def fetchrow(self, query: Any, params: Any = None, *, prepare: bool | None = None) -> Any:
        """The first row of one statement, or None. May switch to the hub."""
        return self._with_conn(lambda conn: conn.statement_cursor.execute(
            query, params, prepare=prepare).fetchone())

    def fetchval(self, query: Any, params: Any = None, *, prepare: bool | None = None) -> Any:
        """The first column of the first row, or None. May switch to the hub."""
        row = self._with_conn(lambda conn: conn.tuple_cursor.execute(
            query, params, prepare=prepare).fetchone())
        return None if row is None else row[0]

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None) -> int:
        """Run one statement; the number of rows it touched. May switch to the hub."""
        return int(self._with_conn(lambda conn: conn.statement_cursor.execute(
            query, params, prepare=prepare).rowcount))

    def executemany(self, query: Any, params_seq: Iterable[Any]) -> None:
        """Run one statement per parameter set, pipelined (psycopg's executemany): one round
        trip, not one per row. May switch to the hub."""
        self._with_conn(lambda conn: conn.statement_cursor.executemany(query, params_seq))

    def fetch_each(self, query: Any, params_seq: Sequence[Any]) -> list:
        """One statement per parameter set, pipelined; the first row of each (or None), in
        order. For a batch of independent reads. May switch to the hub."""
        return self._with_conn(lambda conn: fetch_each(conn, query, params_seq))

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
    cur = conn.statement_cursor
    cur.executemany(query, params_seq, returning=True)
    rows = [cur.fetchone()]
    while cur.nextset():
        rows.append(cur.fetchone())
    return rows


class Lease:
    """A pooled connection for one ``with`` block (``Pool.connection``/``transaction``/
    ``pipeline``): given back when the block ends; ``block`` (psycopg's ``transaction`` or
    ``pipeline``) is entered and left around it. A connection that broke raises
    ``DatabaseUnavailable``."""

    __slots__ = ("pool", "conn", "block", "inner")

    def __init__(self, pool: Pool, conn: HubConnection, block: Callable[[], Any] | None) -> None:
        self.pool = pool
        self.conn = conn
        self.block = block
        self.inner: Any = None

    def __enter__(self) -> HubConnection:
        if self.block is not None:
            try:
                inner = self.block()
                inner.__enter__()
            except BaseException as exc:
                self._end(exc)
                raise
            self.inner = inner
        return self.conn

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            # True: the transaction handled it (``psycopg.Rollback``).
            suppress = self.inner is not None and bool(self.inner.__exit__(kind, exc, tb))
        except BaseException as failed:  # the COMMIT (or the pipeline's sync) failed
            self._end(failed)
            raise
        self._end(None if suppress else exc)
        return suppress

    def _end(self, exc: BaseException | None) -> None:
        """Give the connection back; a broken one turns ``exc`` into DatabaseUnavailable."""
        conn = self.conn
        try:
            if isinstance(exc, psycopg.OperationalError):
                _raise_if_broken(conn, exc)
        finally:
            self.pool.putconn(conn)


def _raise_if_broken(conn: HubConnection, exc: psycopg.OperationalError) -> None:
    if conn.closed:
        raise DatabaseUnavailable() from exc
