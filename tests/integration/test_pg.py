"""tpd2py.pg against a real PostgreSQL: waits on the hub, the pool, errors, restarts, hang-ups.

Each test starts a server (conftest's ``server``) whose handlers use a ``Pool`` on the session's
throwaway cluster (pg_helpers), or runs the pool's API in a hub of its own (``in_hub``).
A query that must stay in flight while the test looks at something else waits on an advisory
lock the test thread holds through a blocking connection: it ends when the test releases it,
so nothing here sleeps or times anything.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import WAIT, RunningServer
from pg_helpers import blocking, in_hub, new_cluster, shared_cluster

from tpd2py import App, Request, Response

pg = pytest.importorskip("tpd2py.pg", reason="psycopg is not installed (the postgres extra)")
import psycopg  # noqa: E402
import psycopg.waiting  # noqa: E402

from tpd2py import pgconn  # noqa: E402


@pytest.fixture
def cluster() -> Any:
    return shared_cluster()


def get(srv: RunningServer, path: str, timeout: float = WAIT) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def in_thread(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``fn`` in a thread; the returned callable joins it and returns its result."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()

    def join() -> Any:
        t.join(WAIT * 2)
        assert not t.is_alive(), "the request did not finish"
        return out[0]

    return join


def lock_app(db: Any) -> App:
    """Routes over ``db``: /lock/N waits on advisory lock N inside PostgreSQL; /hello needs no
    database; /one runs a query."""
    app = App()

    @app.route("/hello")
    def hello(req: Request) -> bytes:
        return b"hello"

    @app.route("/one")
    def one(req: Request) -> dict:
        return {"one": db.fetchval("SELECT 1")}

    @app.route("/lock/<int:key>")
    def lock(req: Request, key: int) -> dict:
        with db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        return {"locked": key}

    @app.route("/stats")
    def stats(req: Request) -> dict:
        return db.statistics()

    return app


@contextlib.contextmanager
def held(conninfo: str, key: int) -> Iterator[Any]:
    """Hold advisory lock ``key`` from the test thread for the block."""
    with blocking(conninfo) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield conn
        finally:
            with contextlib.suppress(psycopg.OperationalError):  # a restart ended it
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def waiting_on_lock(conn: Any, key: int) -> Callable[[], bool]:
    """Whether some backend waits for advisory lock ``key`` (pg_locks, from the test thread)."""
    def check() -> bool:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                           "AND NOT granted AND objid = %s", (key,)).fetchone()
        return bool(row[0])
    return check


def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for something that happens in PostgreSQL (no event to wait on from here): a
    bounded number of short waits on a private Event, each giving the server time to act."""
    pause = threading.Event()
    for _ in range(2000):
        if predicate():
            return
        pause.wait(0.005)
    raise AssertionError(f"{what} did not happen")


# -- every wait goes through the hub --------------------------------------------------------------


def test_every_psycopg_operation_waits_on_the_hub(cluster: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Connecting, queries, errors, transactions, COPY both ways, a pipeline, a server-side
    cursor, notifications and a cancel: none may reach psycopg's own (blocking) waits."""
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("psycopg's blocking wait was used")

    for name in ("wait", "wait_conn", "wait_selector", "wait_select", "wait_poll",
                 "wait_epoll", "wait_c"):
        if hasattr(psycopg.waiting, name):
            monkeypatch.setattr(psycopg.waiting, name, forbidden)
    drives = []
    real_ready = pgconn.Watch.ready

    def counting_ready(self: Any, wait: Any) -> Any:
        drives.append(wait)
        return real_ready(self, wait)

    monkeypatch.setattr(pgconn.Watch, "ready", counting_ready)

    def work() -> dict:
        out: dict[str, Any] = {}
        with pg.connect(cluster.conninfo, autocommit=True) as conn:
            out["select"] = conn.execute("SELECT %s::text || 'é'", ("caf",)).fetchone()
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1/0")
            conn.execute("CREATE TEMP TABLE t (id int PRIMARY KEY, v text)")
            with conn.transaction():
                conn.execute("INSERT INTO t VALUES (1, 'one')")
            with pytest.raises(RuntimeError), conn.transaction():
                conn.execute("INSERT INTO t VALUES (2, 'two')")
                raise RuntimeError("roll back")
            with conn.cursor().copy("COPY t FROM STDIN") as copy:
                for i in range(10, 3010):
                    copy.write_row((i, "x" * 200))  # ~600 KB: the socket fills
            with conn.cursor().copy("COPY t TO STDOUT") as copy:
                out["copied_out"] = sum(len(block) for block in copy)
            with conn.pipeline():
                cursors = [conn.execute("SELECT %s::int * 2", (i,)) for i in range(10)]
            out["pipeline"] = [c.fetchone()[0] for c in cursors]
            with conn.transaction(), conn.cursor("named") as named:
                named.execute("SELECT id FROM t ORDER BY id")
                out["server_cursor"] = len(named.fetchmany(100))
            out["count"] = conn.execute("SELECT count(*), min(id) FROM t").fetchone()
            conn.execute("LISTEN tpd2py_test")
            conn.execute("NOTIFY tpd2py_test, 'ping'")
            out["notify"] = [n.payload for n in conn.notifies(timeout=WAIT, stop_after=1)]
            conn.cancel_safe()  # nothing to cancel: still through our wait
        return out

    out = in_hub(work)
    assert out["select"] == ("café",)
    assert out["count"] == (3001, 1)
    assert out["copied_out"] > 600_000
    assert out["pipeline"] == [i * 2 for i in range(10)]
    assert out["server_cursor"] == 100
    assert out["notify"] == ["ping"]
    assert drives, "no wait went through the hub"


def test_connect_failure_is_an_operational_error_not_a_hang(tmp_path: Any) -> None:
    shared_cluster()  # skips without PostgreSQL/psycopg
    with pytest.raises(psycopg.OperationalError):
        in_hub(lambda: pg.connect(f"host={tmp_path} user=postgres dbname=postgres"))


# -- the server keeps serving while queries wait -----------------------------------------------


def test_the_hub_serves_others_while_a_query_waits(server: Callable[..., RunningServer],
                                                  cluster: Any) -> None:
    db = pg.Pool(cluster.conninfo, size=2)
    srv = server(lock_app(db))
    try:
        with held(cluster.conninfo, 101) as holder:
            locked = in_thread(lambda: get(srv, "/lock/101"))
            until(waiting_on_lock(holder, 101), "the handler's query waiting on the lock")
            # The first handler is parked in PostgreSQL: others are answered meanwhile,
            # with and without the database.
            assert get(srv, "/hello")[0] == 200
            status, _, body = get(srv, "/one")
            assert (status, json.loads(body)) == (200, {"one": 1})
        status, _, body = locked()
        assert (status, json.loads(body)) == (200, {"locked": 101})
    finally:
        srv.call(db.close)


def test_a_thousand_handlers_share_a_small_pool(server: Callable[..., RunningServer],
                                               cluster: Any) -> None:
    db = pg.Pool(cluster.conninfo, size=4)
    app = App()

    @app.route("/n/<int:n>")
    def echo(req: Request, n: int) -> Response:
        value = db.fetchval("SELECT %s::int + 1 FROM pg_sleep(0.001)", (n,))
        return Response(b"%d" % value, content_type="text/plain")

    srv = server(app)
    try:
        socks = []
        for i in range(1000):
            s = socket.create_connection(srv.address, timeout=WAIT)
            s.sendall(b"GET /n/%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % i)
            socks.append(s)
        for i, s in enumerate(socks):
            ex = srv.read_until_close(s)
            s.close()
            (reply,) = ex.final
            assert (reply.status, reply.body) == (200, b"%d" % (i + 1))
        stats = srv.call(db.statistics)
        assert stats["open"] <= 4 and stats["idle"] == stats["open"]
        assert stats["waits"] > 0 and stats["timeouts"] == 0
    finally:
        srv.call(db.close)


# -- the pool: exhaustion, FIFO, errors ------------------------------------------------------------


def test_pool_exhaustion_answers_503_and_the_pool_recovers(
        server: Callable[..., RunningServer], cluster: Any) -> None:
    db = pg.Pool(cluster.conninfo, size=1, checkout_timeout=0.2)
    srv = server(lock_app(db))
    try:
        with held(cluster.conninfo, 102) as holder:
            locked = in_thread(lambda: get(srv, "/lock/102"))
            until(waiting_on_lock(holder, 102), "the handler's query waiting on the lock")
            status, headers, body = get(srv, "/one")
            assert status == 503
            assert headers["retry-after"] == "1"
            assert b"no database connection" in body
        assert locked()[0] == 200
        assert get(srv, "/one")[0] == 200
        assert srv.call(db.statistics)["timeouts"] == 1
    finally:
        srv.call(db.close)


def test_waiters_are_served_in_arrival_order(cluster: Any) -> None:
    def work() -> list[int]:
        from tpd2py import get_hub

        hub = get_hub()
        db = pg.Pool(cluster.conninfo, size=1)
        order: list[int] = []
        first = db.getconn()
        done = []

        def waiter(i: int) -> None:
            conn = db.getconn()
            order.append(i)
            db.putconn(conn)
            done.append(i)

        for i in range(5):
            hub.spawn(waiter, i)
        hub.sleep(0)  # they all queue behind ``first``
        hub.sleep(0)
        assert db.statistics()["waiting"] == 5
        db.putconn(first)
        while len(done) < 5:
            hub.sleep(0)
        db.close()
        return order

    assert in_hub(work) == [0, 1, 2, 3, 4]


def test_sql_errors_leave_the_connection_usable(cluster: Any) -> None:
    def work() -> tuple:
        db = pg.Pool(cluster.conninfo, size=1)
        with pytest.raises(psycopg.errors.UndefinedTable):
            db.fetch("SELECT * FROM no_such_table")
        with pytest.raises(psycopg.errors.DivisionByZero), db.transaction() as conn:
            conn.execute("SELECT 1/0")
        value = db.fetchval("SELECT 41 + 1")
        stats = db.statistics()
        db.close()
        return value, stats

    value, stats = in_hub(work)
    assert value == 42
    assert stats["open"] == 1 and stats["replaced"] == 0


def test_transactions_commit_or_roll_back(cluster: Any) -> None:
    def work() -> list:
        db = pg.Pool(cluster.conninfo, size=2)
        db.execute("DROP TABLE IF EXISTS accounts")
        db.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)")
        db.executemany("INSERT INTO accounts VALUES (%s, %s)", [(1, 100), (2, 0)])
        with db.transaction() as conn:
            conn.execute("UPDATE accounts SET balance = balance - 30 WHERE id = 1")
            conn.execute("UPDATE accounts SET balance = balance + 30 WHERE id = 2")
        with pytest.raises(KeyError), db.transaction() as conn:
            conn.execute("UPDATE accounts SET balance = balance - 50 WHERE id = 1")
            raise KeyError("the app failed half-way")
        with db.transaction() as conn:
            conn.execute("UPDATE accounts SET balance = 0 WHERE id = 1")
            raise psycopg.Rollback()
        # A connection given back inside a transaction is rolled back by the pool.
        conn = db.getconn()
        conn.execute("BEGIN")
        conn.execute("UPDATE accounts SET balance = -1")
        db.putconn(conn)
        rows = db.fetch("SELECT id, balance FROM accounts ORDER BY id")
        db.execute("DROP TABLE accounts")
        db.close()
        return rows

    assert in_hub(work) == [(1, 70), (2, 30)]


def test_every_lease_gives_its_connection_back(cluster: Any) -> None:
    """connection()/transaction()/pipeline() take the connection when called (pg.Lease):
    whatever the block does, the connection is back in the pool after it, and a COMMIT that
    fails raises its error."""
    def work() -> list:
        db = pg.Pool(cluster.conninfo, size=1, checkout_timeout=5)
        db.execute("DROP TABLE IF EXISTS leased")
        db.execute("CREATE TABLE leased (id int PRIMARY KEY, parent int REFERENCES leased (id)"
                   " DEFERRABLE INITIALLY DEFERRED)")
        idle = []
        with db.connection() as conn:
            conn.execute("INSERT INTO leased VALUES (1, NULL)")
        idle.append(db.statistics()["idle"])
        with pytest.raises(psycopg.errors.ForeignKeyViolation), db.transaction() as conn:
            conn.execute("INSERT INTO leased VALUES (2, 99)")  # checked only at COMMIT
        idle.append(db.statistics()["idle"])
        with pytest.raises(ZeroDivisionError), db.pipeline() as conn:
            conn.execute("INSERT INTO leased VALUES (3, 1)")
            1 / 0  # noqa: B018
        idle.append(db.statistics()["idle"])
        with pytest.raises(psycopg.errors.UndefinedTable), db.connection() as conn:
            conn.execute("SELECT * FROM no_such_table")
        idle.append(db.statistics()["idle"])
        rows = db.fetch("SELECT id FROM leased ORDER BY id")
        db.execute("DROP TABLE leased")
        db.close()
        return [idle, rows]

    idle, rows = in_hub(work)
    assert idle == [1, 1, 1, 1]  # size=1: a connection not given back would hang the next
    assert rows == [(1,), (3,)]  # the failed COMMIT left nothing; the pipeline's autocommit did


def test_prepared_statements_and_pipelined_batches(cluster: Any) -> None:
    def work() -> tuple:
        db = pg.Pool(cluster.conninfo, size=1)
        assert db.fetchval("SELECT %s::int * 3", (5,), prepare=True) == 15
        prepared = db.fetchval("SELECT count(*) FROM pg_prepared_statements")
        rows = db.fetch_each("SELECT %s::int, %s::text", [(i, str(i)) for i in range(50)])
        db.close()
        return prepared, rows

    prepared, rows = in_hub(work)
    assert prepared >= 1
    assert rows == [(i, str(i)) for i in range(50)]


# -- restarts and hang-ups -------------------------------------------------------------------------


def test_a_restart_gives_503_to_requests_in_flight_and_the_pool_recovers(
        server: Callable[..., RunningServer]) -> None:
    cluster = new_cluster()
    db = pg.Pool(cluster.conninfo, size=3)
    app = lock_app(db)

    @app.route("/warm")
    def warm(req: Request) -> bytes:
        conns = [db.getconn() for _ in range(3)]
        for conn in conns:
            db.putconn(conn)
        return b"warm"

    @app.route("/lock-and-stay/<int:key>")
    def lock_and_stay(req: Request, key: int) -> dict:
        # The restart kills the holder first or last: a backend granted the lock in between
        # must still be in its statement when it is terminated (it was a 200, once).
        with db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s), pg_sleep(60)", (key,))
        return {"locked": key}

    srv = server(app)
    try:
        assert get(srv, "/warm")[0] == 200  # three idle connections; two go to /lock
        with held(cluster.conninfo, 103) as holder:
            in_flight = [in_thread(lambda: get(srv, "/lock-and-stay/103")) for _ in range(2)]
            until(lambda: holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()[0] == 2, "two handlers waiting on the lock")
            cluster.restart()  # terminates every backend, the holder's too
            for join in in_flight:
                status, headers, body = join()
                assert status == 503, body
                assert b"database unavailable" in body
            with pytest.raises(psycopg.OperationalError):
                holder.execute("SELECT 1")
        # The idle connection died too: it is noticed and replaced, not handed out.
        for _ in range(5):
            status, _, body = get(srv, "/one")
            assert (status, json.loads(body)) == (200, {"one": 1})
        stats = srv.call(db.statistics)
        assert stats["replaced"] >= 3
        assert stats["open"] <= 3
    finally:
        srv.call(db.close)
        cluster.stop()


def test_requests_while_postgresql_is_down_get_503_not_a_hang(
        server: Callable[..., RunningServer]) -> None:
    cluster = new_cluster()
    db = pg.Pool(cluster.conninfo, size=2)
    srv = server(lock_app(db))
    try:
        assert get(srv, "/one")[0] == 200
        cluster.stop_server()
        for _ in range(3):
            status, headers, _ = get(srv, "/one")
            assert status == 503 and headers["retry-after"] == "1"
        assert get(srv, "/hello")[0] == 200
        cluster.start()
        assert get(srv, "/one")[0] == 200
    finally:
        srv.call(db.close)
        cluster.stop()


@pytest.mark.parametrize("parked", [False, True], ids=["plain", "parked"])
def test_a_client_hang_up_does_not_leak_the_connection(
        server: Callable[..., RunningServer], cluster: Any, parked: bool) -> None:
    """Plain: the query finishes, the answer has nowhere to go, the connection comes back.
    Parked (the handler waits inside ``request.park()``): the hang-up is thrown into the
    wait, the query is cancelled in PostgreSQL and the connection comes back at once."""
    db = pg.Pool(cluster.conninfo, size=1)
    app = lock_app(db)
    key = 104 + parked

    @app.route("/parked-lock")
    def parked_lock(req: Request) -> dict:
        with req.park(), db.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return {"locked": key}

    srv = server(app)
    try:
        with held(cluster.conninfo, key) as holder:
            client = socket.create_connection(srv.address, timeout=WAIT)
            path = b"/parked-lock" if parked else b"/lock/%d" % key
            client.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            until(waiting_on_lock(holder, key), "the handler's query waiting on the lock")
            client.close()
            if parked:
                srv.wait_closed(1)  # the hang-up was seen and the query cancelled
                assert not waiting_on_lock(holder, key)()
        srv.wait_closed(1)
        status, _, body = get(srv, "/one")  # the pool's only connection is free again
        assert (status, json.loads(body)) == (200, {"one": 1})
        stats = srv.call(db.statistics)
        assert stats["open"] == 1 and stats["idle"] == 1 and stats["replaced"] == 0
    finally:
        srv.call(db.close)


def test_a_restart_under_load_gives_200_or_503_and_never_hangs(
        server: Callable[..., RunningServer]) -> None:
    """Eight clients query in a loop while PostgreSQL restarts: every answer is a 200 or a
    503 (no hang, no 500, no reset), and each client gets 200s again afterwards."""
    cluster = new_cluster()
    db = pg.Pool(cluster.conninfo, size=3)
    srv = server(lock_app(db))
    restarted = threading.Event()
    started = threading.Barrier(9, timeout=WAIT)
    statuses: list[list[int]] = [[] for _ in range(8)]
    after: list[int] = [0] * 8
    failures: list[BaseException] = []

    def client(i: int) -> None:
        try:
            statuses[i].append(get(srv, "/one")[0])
            started.wait()
            for _ in range(10_000):
                done = restarted.is_set()
                status = get(srv, "/one")[0]
                statuses[i].append(status)
                if done and status == 200:
                    after[i] += 1
                    if after[i] >= 3:
                        return
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(8)]
    try:
        for t in threads:
            t.start()
        started.wait()
        cluster.restart()
        restarted.set()
        for t in threads:
            t.join(WAIT * 3)
        assert not any(t.is_alive() for t in threads), "a client hung"
        assert not failures, failures
        seen = {s for per in statuses for s in per}
        assert seen <= {200, 503}, seen
        assert after == [3] * 8
    finally:
        srv.call(db.close)
        cluster.stop()


def test_row_factories_and_fetchval(cluster: Any) -> None:
    from psycopg.rows import dict_row

    def work() -> tuple:
        db = pg.Pool(cluster.conninfo, size=1, row_factory=dict_row)
        row = db.fetchrow("SELECT 1 AS one, 'x' AS name")
        rows = db.fetch("SELECT g AS n FROM generate_series(1, 3) AS g")
        value = db.fetchval("SELECT 7 AS seven")  # the first column, whatever the factory
        none = db.fetchval("SELECT 1 WHERE false")
        db.close()
        return row, rows, value, none

    assert in_hub(work) == ({"one": 1, "name": "x"}, [{"n": 1}, {"n": 2}, {"n": 3}], 7, None)
