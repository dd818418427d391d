"""Blocking work: run_in_thread and its admission control, the blocked-hub watchdog, and the
outbound-connect example (examples/fanout.py), against real servers on 127.0.0.1.

Blocking jobs are held on ``threading.Event`` gates that the test opens, so "the server serves
others while a job blocks" and "a full pool sheds load" are shown without timing anything.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from comet_helpers import ServerThread, read_reply, request, run_hub  # noqa: E402

from tpd2py import App, Request  # noqa: E402
from tpd2py.app import http_error_response
from tpd2py.comet import Channel  # noqa: E402
from tpd2py.errors import Cancelled, Overloaded  # noqa: E402
from tpd2py.hub import get_hub  # noqa: E402
from tpd2py.threads import ThreadPool, configure_pool, get_pool, run_in_thread  # noqa: E402
from tpd2py.watchdog import Watchdog, debug_enabled, for_config  # noqa: E402

WAIT = 10.0


class Gates:
    """Blocking jobs that wait until the test opens their gate, and tell when they started."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.gate = threading.Event()

    def blocking_job(self, value: Any) -> Any:
        self.started.release()
        assert self.gate.wait(WAIT), "the test never opened the gate"
        return value

    def wait_started(self, count: int) -> None:
        for _ in range(count):
            assert self.started.acquire(timeout=WAIT), "a job never started"


def failing_job() -> None:
    raise KeyError("from the thread")


def make_app(gates: Gates, pool_size: tuple[int, int] | None = None) -> App:
    app = App()

    @app.route("/job/<value>")
    def job(req: Request, value: str) -> bytes:
        if pool_size is not None:
            pool = get_pool()
            if (pool.max_threads, pool.max_queue) != pool_size:
                configure_pool(*pool_size)
        return run_in_thread(gates.blocking_job, value).encode()

    @app.route("/fail")
    def fail(req: Request) -> bytes:
        try:
            run_in_thread(failing_job)
        except KeyError as e:
            import traceback

            frames = [f.name for f in traceback.extract_tb(e.__traceback__)]
            return f"caught {e} in {'failing_job' in frames}".encode()
        return b"not raised"

    @app.route("/hello")
    def hello(req: Request) -> bytes:
        return b"hello"

    @app.route("/stats")
    def stats(req: Request) -> dict:
        return get_pool().statistics()

    @app.route("/block")
    def block(req: Request) -> bytes:
        time.sleep(float(req.query.get("t", "0.3")))  # the blocking call the watchdog must name
        return b"blocked"

    return app


@pytest.fixture
def serve() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def start(app: App, **config: Any) -> ServerThread:
        srv = ServerThread(app, **config)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def get(srv: ServerThread, path: str) -> Any:
    with srv.connect() as sock:
        sock.sendall(request(path))
        return read_reply(sock)


# -- run_in_thread --------------------------------------------------------------------------------


def test_run_in_thread_returns_while_the_server_serves_others(serve: Any) -> None:
    gates = Gates()
    srv = serve(make_app(gates))
    with srv.connect() as slow:
        slow.sendall(request("/job/result"))
        gates.wait_started(1)
        # The job blocks its thread; the hub goes on serving everyone else.
        for _ in range(5):
            assert get(srv, "/hello").body == b"hello"
        gates.gate.set()
        assert read_reply(slow).body == b"result"


def test_run_in_thread_raises_the_thread_exception_with_its_traceback(serve: Any) -> None:
    srv = serve(make_app(Gates()))
    assert get(srv, "/fail").body == b"caught 'from the thread' in True"


def test_full_pool_and_queue_answer_503_with_retry_after(serve: Any) -> None:
    gates = Gates()
    srv = serve(make_app(gates, pool_size=(2, 1)))
    held = []
    for i in range(3):  # two run, one waits in the queue
        sock = srv.connect()
        sock.sendall(request(f"/job/{i}"))
        held.append(sock)
    gates.wait_started(2)
    srv.wait_for(lambda: get_pool().in_flight == 3)  # runs in the hub thread
    reply = get(srv, "/job/refused")
    assert reply.status == 503
    assert reply.headers["retry-after"] == "1"
    assert get(srv, "/hello").body == b"hello"  # shedding load does not stop the server
    gates.gate.set()
    assert sorted(read_reply(s).body for s in held) == [b"0", b"1", b"2"]
    for s in held:
        s.close()
    stats = get(srv, "/stats").json()
    assert stats["rejected"] == 1 and stats["completed"] == 3 and stats["threads"] == 2


def test_overloaded_is_a_503_http_error() -> None:
    e = Overloaded(retry_after=5)
    response: Any = http_error_response(e)
    assert response.status == 503
    assert (b"Retry-After", b"5") in response.headers


def test_a_cancelled_caller_drops_the_result_and_the_pool_goes_on() -> None:
    gates = Gates()
    outcome: list[str] = []

    def main() -> None:
        hub = get_hub()
        pool = ThreadPool(max_threads=1, max_queue=0)

        def caller() -> None:
            try:
                pool.run(gates.blocking_job, "lost")
            except Cancelled:
                outcome.append("cancelled")

        g = hub.spawn(caller)
        hub.sleep(0)
        hub.throw(g, Cancelled())
        hub.sleep(0)
        gates.gate.set()
        # The abandoned job still holds the only thread until it is delivered; then the pool
        # serves the next call.
        while pool.in_flight:
            hub.sleep(0.01)
        outcome.append(pool.run(lambda: "next"))
        pool.shutdown(wait=False)
        hub.stop()

    run_hub(main)
    assert outcome == ["cancelled", "next"]


def test_run_in_thread_outside_a_running_hub_runs_inline() -> None:
    result: list[Any] = []

    def thread() -> None:
        result.append(run_in_thread(threading.get_ident) == threading.get_ident())

    t = threading.Thread(target=thread)
    t.start()
    t.join(WAIT)
    assert result == [True]


def test_a_hub_callback_can_wait_for_a_thread() -> None:
    """Code running in the loop's own greenlet (a call_soon callback) may wait: the loop is
    handed to a spare greenlet meanwhile (hub.py, leader/followers)."""
    results: list[int] = []

    def main() -> None:
        hub = get_hub()
        pool = ThreadPool(1)

        def from_the_hub() -> None:
            results.append(pool.run(lambda: 42))

        hub.call_soon(from_the_hub)
        for _ in range(500):
            if results:
                break
            hub.sleep(0.01)
        pool.shutdown(wait=False)
        hub.stop()

    run_hub(main)
    assert results == [42]


def test_publish_from_a_pool_thread_wakes_waiters(serve: Any) -> None:
    channel = Channel()
    app = App()

    @app.route("/wait")
    def wait(req: Request) -> Any:
        return channel.wait(0, timeout=WAIT, request=req).response()

    @app.route("/work")
    def work(req: Request) -> bytes:
        run_in_thread(channel.publish, "done in a thread")
        return b"ok"

    srv = serve(app)
    with srv.connect() as waiter:
        waiter.sendall(request("/wait"))
        srv.wait_for(lambda: channel.waiting == 1)
        assert get(srv, "/work").body == b"ok"
        assert read_reply(waiter).json()["messages"][0]["data"] == "done in a thread"


# -- the watchdog ---------------------------------------------------------------------------------


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.arrived = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()


@pytest.fixture
def watchdog_log() -> Iterator[Captured]:
    captured = Captured()
    logger = logging.getLogger("tpd2py.watchdog")
    logger.addHandler(captured)
    try:
        yield captured
    finally:
        logger.removeHandler(captured)


def test_watchdog_names_the_blocking_call(serve: Any, watchdog_log: Captured) -> None:
    srv = serve(make_app(Gates()), watchdog=0.05)
    assert get(srv, "/block?t=0.5").body == b"blocked"
    assert watchdog_log.arrived.wait(WAIT)
    message = watchdog_log.records[0].getMessage()
    assert "the hub is blocked" in message
    assert "time.sleep" in message and "in block" in message  # the call and the handler
    assert len(watchdog_log.records) == 1  # one report per blocking episode


def test_watchdog_stays_quiet_for_cooperative_handlers(serve: Any,
                                                       watchdog_log: Captured) -> None:
    srv = serve(make_app(Gates()), watchdog=0.05)
    for _ in range(20):
        assert get(srv, "/hello").body == b"hello"
    srv.call(lambda: None)  # one more hub turn
    assert watchdog_log.records == []


def test_watchdog_does_not_blame_one_of_many_short_callbacks(watchdog_log: Captured) -> None:
    """Review finding: once handlers ran in the loop's own greenlet, a loop turn made of many
    short callbacks (a batch of requests served inline) was reported as one blocked handler.
    Progress now counts callbacks, so 300 callbacks of 0.5 ms (150 ms in one turn, threshold
    50 ms) are quiet, and one callback of 300 ms is still reported."""
    reports: list[int] = []

    def main() -> None:
        hub = get_hub()
        dog = Watchdog(hub, 0.05).start()
        for _ in range(300):
            hub.call_soon(time.sleep, 0.0005)
        hub.sleep(0.2)
        reports.append(dog.reports)
        hub.call_soon(time.sleep, 0.3)  # a real stall
        hub.sleep(0.2)
        dog.stop()
        reports.append(dog.reports)
        hub.stop()

    run_hub(main)
    assert reports == [0, 1]


def test_watchdog_is_off_unless_asked_or_debugging() -> None:
    hub = object()
    if debug_enabled():
        pytest.skip("the test process itself runs in debug mode")
    assert for_config(hub, None) is None  # type: ignore[arg-type]
    assert for_config(hub, 0) is None  # type: ignore[arg-type]
    logger = logging.getLogger("tpd2py")
    level = logger.level
    logger.setLevel(logging.DEBUG)  # what --log-level debug amounts to
    try:
        assert debug_enabled()
    finally:
        logger.setLevel(level)


def test_watchdog_rejects_a_zero_threshold() -> None:
    with pytest.raises(ValueError):
        Watchdog(get_hub(), 0)


# -- outbound cooperative I/O: examples/fanout.py --------------------------------------------------


def test_fanout_handlers_wait_for_the_backend_all_at_once(serve: Any) -> None:
    """100 frontend handlers each call the backend; the backend answers only once all 100
    calls are in, so the test passes only if the handlers really wait concurrently."""
    from examples.fanout import make_frontend

    clients = 100
    gate = Channel()
    arrived = [0]
    backend = App()

    @backend.route("/price/<item>")
    def price(req: Request, item: str) -> dict:
        arrived[0] += 1
        if arrived[0] == clients:
            gate.publish("open")
        gate.wait(0, timeout=WAIT, request=req)
        return {"price": int(item[4:])}

    @backend.route("/stock/<item>")
    def stock(req: Request, item: str) -> dict:
        return {"stock": 2 * int(item[4:])}

    back = serve(backend)
    front = serve(make_frontend(("127.0.0.1", back.port)))
    socks = []
    for i in range(clients):
        sock = front.connect()
        sock.sendall(request(f"/product/item{i}"))
        socks.append(sock)
    answers = [read_reply(s).json() for s in socks]
    for s in socks:
        s.close()
    assert answers == [{"item": f"item{i}", "price": i, "stock": 2 * i} for i in range(clients)]


# -- helpers --------------------------------------------------------------------------------------


