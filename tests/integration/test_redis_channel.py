"""Channels shared through a real redis-server (a unix socket in a temporary directory).

Two servers in two threads stand for two workers (each thread has its own hub, so each has
its own RedisChannel and its own link to Redis, as a worker process would): a message
published on one reaches the waiters of the other, with the same version numbers; Redis is
killed and restarted under waiting long polls; publishing while it is down is a clear 503,
with one log line and no traceback. Skipped, with the reason, when redis-server or hiredis is
missing (``.ci/run`` installs Debian's redis-server; the test extra has hiredis).
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from comet_helpers import ServerThread, read_events, read_reply, request  # noqa: E402
from conftest import WAIT  # noqa: E402

from bench.redisserver import RedisServer, find_redis  # noqa: E402
from tpd2py import App, Request, Response  # noqa: E402
from tpd2py.comet import event_stream, long_poll  # noqa: E402

pytest.importorskip("hiredis", reason="needs hiredis (the redis extra; the test extra has it)")
from tpd2py.redis_channel import RedisChannel  # noqa: E402

pytestmark = pytest.mark.skipif(
    find_redis() is None,
    reason="needs redis-server (apt-get install redis-server; .ci/run does it)")


def make_app(address: str, name: str = "room", history: int = 50) -> App:
    """A worker's app: its own RedisChannel (as each worker process builds at import)."""
    channel = RedisChannel(address, name, history=history)
    app = App()

    @app.route("/publish", methods=["POST"])
    def publish(request: Request) -> dict:
        message = channel.publish(request.body().decode())
        return {"version": message.version}

    @app.route("/poll")
    def poll(request: Request) -> Any:
        return long_poll(request, channel)

    @app.route("/events")
    def events(request: Request) -> Response:
        return event_stream(request, channel)

    @app.route("/hello")
    def hello(request: Request) -> Response:
        return Response(b"hello")

    app.channel = channel  # type: ignore[attr-defined]
    return app


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer(persist=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def workers(redis: RedisServer) -> Iterator[list[ServerThread]]:
    servers = [ServerThread(make_app(redis.socket)) for _ in range(2)]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def call(server: ServerThread, method: str, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*server.address, timeout=WAIT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def publish(server: ServerThread, text: str) -> int:
    status, body = call(server, "POST", "/publish", text.encode())
    assert status == 200, body
    version: int = json.loads(body)["version"]
    return version


def start_poll(server: ServerThread, after: int) -> socket.socket:
    """A raw long poll left waiting (the caller reads its reply later)."""
    sock = socket.create_connection(server.address, timeout=WAIT)
    sock.sendall(request(f"/poll?after={after}"))
    return sock


def waiting(server: ServerThread, count: int) -> None:
    channel = server.app.channel  # type: ignore[attr-defined]
    server.wait_for(lambda: channel.waiting >= count)


def poll_now(server: ServerThread, after: int) -> dict:
    status, body = call(server, "GET", f"/poll?after={after}")
    assert status == 200, body
    result: dict = json.loads(body)
    return result


def texts(update: dict) -> list[tuple[int, str]]:
    return [(m["id"], m["data"]) for m in update["messages"]]


def test_a_message_published_on_one_worker_reaches_the_waiters_of_the_other(workers):
    a, b = workers
    # Each worker's link connects on first use; the waiter on b parks before the publish.
    polls = [start_poll(b, 0), start_poll(a, 0)]
    waiting(b, 1)
    waiting(a, 1)
    assert publish(a, "hello") == 1
    for sock in polls:
        reply = read_reply(sock)
        assert reply.status == 200
        assert texts(reply.json()) == [(1, "hello")]
        sock.close()
    # Versions agree: a second message from b is 2 everywhere.
    assert publish(b, "again") == 2
    b_view = poll_now(b, 1)
    assert texts(b_view) == [(2, "again")]
    a.wait_for(lambda: a.app.channel.version == 2)
    assert texts(poll_now(a, 1)) == [(2, "again")] and poll_now(a, 1)["complete"] is True


def test_a_client_reconnecting_to_another_worker_gets_exactly_what_follows_its_version(workers):
    a, b = workers
    versions = [publish(a, f"m{i}") for i in range(1, 6)]
    assert versions == [1, 2, 3, 4, 5]
    # Long poll: after=2 on the other worker (which may not have read them all yet: it waits).
    update = poll_now(b, 2)
    got = texts(update)
    while update["version"] < 5:
        update = poll_now(b, update["version"])
        got += texts(update)
    assert got == [(3, "m3"), (4, "m4"), (5, "m5")]
    # Server-Sent Events: Last-Event-ID from a stream on a, resumed on b.
    sock = socket.create_connection(b.address, timeout=WAIT)
    sock.sendall(request("/events", headers={"Last-Event-ID": "3"}))
    publish(a, "m6")
    _head, frames = read_events(sock, 4)
    frames = [f for f in frames if not f.startswith(b":")]  # the stream's opening comment
    assert [f.split(b"\n")[:2] for f in frames] == [
        [b"id: 4", b"data: m4"], [b"id: 5", b"data: m5"], [b"id: 6", b"data: m6"]]
    sock.close()


def test_a_version_ahead_of_this_worker_waits_instead_of_restarting(redis):
    # A worker at version 1 gets a client at version 3 (from a worker whose reader was
    # quicker): it must not answer "complete: false" and the whole history, nor an empty
    # update when version 2 arrives, but wait and answer with exactly what follows 3.
    server = ServerThread(make_app(redis.socket))
    try:
        assert publish(server, "x1") == 1
        sock = start_poll(server, 3)
        waiting(server, 1)
        for i in (2, 3):
            redis.command("XADD", "tpd2py:channel:room", "0-*", "t", "s", "d", f"x{i}")
            server.wait_for(lambda i=i: server.app.channel.version == i)
            server.sync()  # the wake after version i has run
            assert server.app.channel.waiting == 1
        redis.command("XADD", "tpd2py:channel:room", "0-*", "t", "s", "d", "x4")
        reply = read_reply(sock).json()
        assert reply["complete"] is True and texts(reply) == [(4, "x4")]
        sock.close()
    finally:
        server.stop()


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def wait(self, predicate: Any) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.records), WAIT)


@pytest.fixture
def redis_log() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("tpd2py")  # the redis link's and the servers' own lines
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def errors(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    found = [r for r in records if r.levelno >= logging.ERROR]
    # Nothing but the link's own line: no handler error, no traceback from the server.
    assert all(r.name == "tpd2py.redis" and r.exc_info is None for r in found), found
    return found


def test_redis_killed_and_restarted_loses_nothing_redis_kept(redis, workers, redis_log):
    a, b = workers
    assert [publish(a, f"before{i}") for i in range(3)] == [1, 2, 3]
    assert poll_now(b, 0)["version"] == 3  # b's link starts on first use, and catches up
    waiter = start_poll(b, 3)
    waiting(b, 1)
    redis.kill()
    # Both workers notice at once (their connections see EOF): one error line each.
    redis_log.wait(lambda records: len(errors(records)) >= 2)
    for _ in range(5):
        status, body = call(a, "POST", "/publish", b"lost")
        assert status == 503
        assert b"Redis at" in body and b"unreachable" in body and b"not published" in body
    # What does not need Redis keeps serving, and so does reading what this worker has.
    assert call(b, "GET", "/hello") == (200, b"hello")
    assert texts(poll_now(b, 1)) == [(2, "before1"), (3, "before2")]
    redis.start()  # reloads its append-only file: 1..3 are still there
    # Published by someone else right away, maybe before the workers are back.
    redis.command("XADD", "tpd2py:channel:room", "0-*", "t", "s", "d", "meanwhile")
    reply = read_reply(waiter).json()
    waiter.close()
    assert texts(reply) == [(4, "meanwhile")]
    redis_log.wait(lambda records: sum(r.levelno == logging.WARNING for r in records) >= 2)
    assert publish(a, "after") == 5
    b.wait_for(lambda: b.app.channel.version == 5)
    assert texts(poll_now(b, 0)) == [(1, "before0"), (2, "before1"), (3, "before2"),
                                     (4, "meanwhile"), (5, "after")]
    # One line per worker for the outage, one for the return; no traceback anywhere.
    assert len(errors(redis_log.records)) == 2
    assert all(r.exc_info is None for r in redis_log.records)


def test_publish_while_redis_is_down_is_a_clear_503_and_one_log_line(tmp_path, redis_log):
    server = ServerThread(make_app(str(tmp_path / "no-redis.sock")))
    try:
        for _ in range(5):
            status, body = call(server, "POST", "/publish", b"x")
            assert status == 503, body
            assert body.startswith(b"503 Service Unavailable: Redis at ")
        assert call(server, "GET", "/hello") == (200, b"hello")
        status, body = call(server, "GET", "/poll")
        assert status == 200 and json.loads(body)["messages"] == []
        assert len(errors(redis_log.records)) == 1
        assert all(r.exc_info is None for r in redis_log.records)
    finally:
        server.stop()


def test_redis_losing_its_data_never_makes_versions_go_back(tmp_path):
    redis = RedisServer(persist=False, directory=str(tmp_path))
    server = ServerThread(make_app(redis.socket))
    try:
        assert [publish(server, f"m{i}") for i in range(3)] == [1, 2, 3]
        waiter = start_poll(server, 3)
        waiting(server, 1)
        redis.kill()
        redis.start()  # empty: the stream is gone
        # The worker floors the new stream at its version before anyone publishes there.
        server.wait_for(lambda: server.app.channel._link.state == "up")
        assert publish(server, "after the loss") == 4
        reply = read_reply(waiter).json()
        waiter.close()
        assert texts(reply) == [(4, "after the loss")]
    finally:
        server.stop()
        redis.stop()


def test_many_greenlets_publish_at_once_through_one_pipelined_connection(redis):
    # 300 publishers at once (one command connection per worker, replies matched in order),
    # among them messages of 1 MiB that fill the socket (the writer greenlet waits for space
    # while the callers wait only for their replies); a waiter reads them all, in order.
    from pg_helpers import in_hub

    from tpd2py import get_hub

    channel = RedisChannel(redis.socket, "many", history=1000)
    big = "x" * (1 << 20)

    def main() -> tuple[list[int], list[int], int]:
        hub = get_hub()
        versions: list[int] = []
        done: list[Any] = []
        me = __import__("greenlet").getcurrent()

        def one(i: int) -> None:
            versions.append(channel.publish(big if i % 50 == 0 else {"n": i}).version)
            if len(versions) == 300:
                hub.schedule(me)

        for i in range(300):
            hub.spawn(one, i)
        seen: list[int] = []
        updates = channel.updates(0)
        hub.park()
        while len(seen) < 300:
            update = next(updates)
            seen += [m.version for m in update]
            done += [m.data for m in update]
        return versions, seen, sum(1 for d in done if d == big)

    versions, seen, bigs = in_hub(main)
    assert sorted(versions) == list(range(1, 301))
    assert seen == list(range(1, 301))
    assert bigs == 6


def test_publish_outside_a_running_hub_is_a_clear_error(redis):
    from tpd2py.errors import HubError

    channel = RedisChannel(redis.socket, "elsewhere")
    with pytest.raises(HubError, match="from a greenlet of a running hub"):
        channel.publish("from a plain thread")


def test_a_publisher_interrupted_while_it_waits_never_gets_a_stray_reply(redis):
    # Redis is stopped (SIGSTOP) so the reply cannot come; the waiting publisher gets a
    # Timeout thrown in by someone else and parks elsewhere. Its reply, when Redis resumes,
    # must go to no one, and the next publisher must get its own.
    import os
    import signal

    from pg_helpers import in_hub

    from tpd2py import get_hub
    from tpd2py.errors import Timeout

    channel = RedisChannel(redis.socket, "interrupted")
    pid = redis.proc.pid  # type: ignore[union-attr]

    def main() -> tuple[list[Any], int]:
        hub = get_hub()
        me = __import__("greenlet").getcurrent()
        assert channel.publish("warm-up").version == 1
        seen: list[Any] = []

        def interrupted() -> None:
            try:
                channel.publish("interrupted")
            except Timeout:
                seen.append("timeout")
            hub.schedule(me)
            seen.append(hub.park())  # woken by main below, and by nothing else

        os.kill(pid, signal.SIGSTOP)
        try:
            first = hub.spawn(interrupted)
            hub.sleep(0)  # it runs, sends its XADD and parks for the reply
            hub.throw(first, Timeout())
            hub.park()  # until it has caught the Timeout and parked again
        finally:
            os.kill(pid, signal.SIGCONT)
        second = channel.publish("second").version
        hub.schedule(first, "from main")
        hub.sleep(0)
        return seen, second

    seen, second = in_hub(main)
    assert seen == ["timeout", "from main"]
    assert second == 3  # the interrupted XADD was sent: Redis numbered it 2


def test_an_entry_that_does_not_decode_is_skipped_and_the_reader_goes_on(redis, redis_log):
    # Anyone may write the stream (redis-cli, another program): an entry whose data does not
    # decode (bad JSON, bad UTF-8, an odd field list) must not end the worker's reader, which
    # would leave every channel of the worker frozen, with a traceback in the log.
    server = ServerThread(make_app(redis.socket))
    try:
        assert publish(server, "first") == 1
        sock = start_poll(server, 1)
        waiting(server, 1)
        redis.command("XADD", "tpd2py:channel:room", "0-*", "t", "j", "d", "{not json")
        redis_log.wait(lambda records: any("does not decode" in r.getMessage()
                                           for r in records))
        # The reader reads on after the bad entry, not from before it again and again.
        before = xreads(redis)
        time.sleep(0.3)  # a window to count in: a reader stuck on it makes thousands
        assert xreads(redis) - before <= 3
        redis.command("XADD", "tpd2py:channel:room", "0-*", "t", "s", "d", "after")
        reply = read_reply(sock).json()
        sock.close()
        assert texts(reply) == [(3, "after")]  # 2 is lost to this worker: a gap
        assert all(r.exc_info is None for r in redis_log.records), redis_log.records
    finally:
        server.stop()


def xreads(redis: RedisServer) -> int:
    """How many XREADs Redis has answered (INFO commandstats)."""
    for line in redis.command("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_xread:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test_an_error_reply_to_the_read_backs_off_and_logs_once(redis, redis_log):
    # The stream's key holds something else (a wrong type; a Redis still loading answers
    # -LOADING the same way): the reader's XREAD fails at once after each connect. It must
    # back off like a refused connect, with one line for the outage, not reconnect in a tight
    # loop with a "back" and a "lost" line each time.
    redis.command("SET", "tpd2py:channel:room", "not a stream")
    server = ServerThread(make_app(redis.socket))
    try:
        sock = start_poll(server, 0)  # the channel links on first use
        redis_log.wait(lambda records: len(errors(records)) >= 1)
        time.sleep(0.5)  # a window to count in: backoff makes a few connects, a spin thousands
        connects = int(redis.command("INFO", "stats").split("total_connections_received:")[1]
                       .split()[0])
        assert connects <= 12, connects
        assert len(errors(redis_log.records)) == 1
        assert not [r for r in redis_log.records if "reachable again" in r.getMessage()]
        sock.close()
    finally:
        server.stop()


def test_a_hung_redis_is_seen_by_an_idle_reader(redis, redis_log, monkeypatch):
    # A worker that only waits (never publishes) must notice a Redis that stopped answering
    # (hung, or a machine gone without a reset, where nothing would ever arrive): its XREAD
    # BLOCK answers within READ_BLOCK_MS, so silence past that and COMMAND_TIMEOUT is an
    # outage. Then it reconnects and its waiters get what follows.
    import os
    import signal

    from tpd2py import redis_channel

    monkeypatch.setattr(redis_channel, "READ_BLOCK_MS", 200)
    monkeypatch.setattr(redis_channel, "COMMAND_TIMEOUT", 0.5)
    server = ServerThread(make_app(redis.socket))
    pid = redis.proc.pid  # type: ignore[union-attr]
    try:
        sock = start_poll(server, 0)
        waiting(server, 1)
        server.wait_for(lambda: server.app.channel._link.state == "up")
        os.kill(pid, signal.SIGSTOP)
        try:
            redis_log.wait(lambda records: len(errors(records)) == 1)
        finally:
            os.kill(pid, signal.SIGCONT)
        redis_log.wait(lambda records: any("reachable again" in r.getMessage()
                                           for r in records))
        redis.command("XADD", "tpd2py:channel:room", "0-*", "t", "s", "d", "after")
        reply = read_reply(sock).json()
        sock.close()
        assert texts(reply) == [(1, "after")]
        assert len(errors(redis_log.records)) == 1
    finally:
        server.stop()


def test_redis_closing_an_idle_command_connection_is_no_outage(redis, redis_log, monkeypatch):
    # Redis's `timeout` (idle clients are closed; often 300 s in production configs) closes
    # the command connection of a worker that has not published for that long. That is no
    # outage: no error line, no 503, no reconnect of the reader.
    from tpd2py import redis_channel

    monkeypatch.setattr(redis_channel, "READ_BLOCK_MS", 300)
    redis.command("CONFIG", "SET", "timeout", "1")
    server = ServerThread(make_app(redis.socket))
    try:
        assert publish(server, "first") == 1
        time.sleep(3)  # idle past Redis's timeout (its clientsCron checks a few times a second)
        assert publish(server, "second") == 2
        assert errors(redis_log.records) == []
    finally:
        server.stop()


def test_a_redis_host_name_is_resolved_off_the_hub(monkeypatch, free_port):
    # "redis.internal:6379": the name must not be resolved by the hub's own thread (a slow or
    # unreachable DNS server during an outage would stop the whole worker at every
    # reconnect). Here the resolver takes a second; the worker answers meanwhile.
    real = socket.getaddrinfo
    asked: list[str] = []

    def slow_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "redis.test":
            asked.append(host)
            time.sleep(1.0)
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    port = free_port
    redis = RedisServer(persist=False, port=port)
    monkeypatch.setattr(socket, "getaddrinfo", slow_dns)
    server = ServerThread(make_app(f"redis.test:{port}"))
    try:
        sock = start_poll(server, 0)  # the link starts: it resolves the name
        waiting(server, 1)
        started = time.monotonic()
        assert call(server, "GET", "/hello") == (200, b"hello")
        assert time.monotonic() - started < 0.5
        assert publish(server, "through a name") == 1
        assert texts(read_reply(sock).json()) == [(1, "through a name")]
        sock.close()
        assert asked
    finally:
        server.stop()
        redis.stop()


def test_an_event_name_with_a_line_break_never_reaches_an_event_stream(redis, redis_log):
    # An entry whose event name has CR or LF cannot be an SSE frame: read from the stream it
    # closed every event stream of every worker with a traceback, again at each reconnect
    # (Last-Event-ID before it): a poison message kept by Redis. It is skipped like any entry
    # that does not decode, and publish refuses such a name before it reaches Redis.
    from pg_helpers import in_hub

    server = ServerThread(make_app(redis.socket))
    try:
        sock = socket.create_connection(server.address, timeout=WAIT)
        sock.sendall(request("/events", headers={"Last-Event-ID": "0"}))
        waiting(server, 1)
        redis.command("XADD", "tpd2py:channel:room", "0-*", "t", "s", "d", "x", "e", "a\nb")
        redis.command("XADD", "tpd2py:channel:room", "0-*", "t", "s", "d", "y")
        _head, frames = read_events(sock, 2)
        sock.close()
        frames = [f for f in frames if not f.startswith(b":")]
        assert [f.split(b"\n")[:2] for f in frames] == [[b"id: 2", b"data: y"]]
        assert all(r.exc_info is None for r in redis_log.records), redis_log.records
    finally:
        server.stop()
    channel = RedisChannel(redis.socket, "room")

    def main() -> str:
        try:
            channel.publish("z", event="a\rb")
        except ValueError as e:
            return str(e)
        return "published"

    assert "CR or LF" in in_hub(main)


def test_reading_a_channel_from_a_thread_does_not_relink_it(redis):
    # A handler's blocking part in a thread (run_in_thread, a WSGI app's threads) may read a
    # channel (since). That thread's hub never runs: the channel must stay with the worker's
    # link, not move to a link of its own there and back at every call, each return adding
    # it once more to the worker's reader (a list growing per request, an UNBLOCK each time).
    from tpd2py.threads import run_in_thread

    app = make_app(redis.socket)
    channel = app.channel  # type: ignore[attr-defined]

    @app.route("/both")
    def both(request: Request) -> Response:
        run_in_thread(channel.since, 0)
        channel.since(0)
        return Response(b"ok")

    server = ServerThread(app)
    try:
        for _ in range(20):
            assert call(server, "GET", "/both") == (200, b"ok")
        link = server.call(lambda: channel._link)
        assert link.hub is server.server.hub
        assert len(link.channels[channel.key]) == 1
        assert publish(server, "still read") == 1
    finally:
        server.stop()


def test_a_stream_lost_while_connected_never_makes_versions_go_back(redis):
    # The key goes while the link is up (FLUSHALL, DEL, eviction under maxmemory): the next
    # XADD would be 0-1 again, below what every worker has, so no waiter anywhere would get
    # it. The publisher sees its version is not above its own, floors the stream again,
    # removes the stray entry and publishes once more.
    server = ServerThread(make_app(redis.socket))
    try:
        assert [publish(server, f"m{i}") for i in range(3)] == [1, 2, 3]
        waiter = start_poll(server, 3)
        waiting(server, 1)
        redis.command("FLUSHALL")
        assert publish(server, "after the loss") == 4
        assert texts(read_reply(waiter).json()) == [(4, "after the loss")]
        waiter.close()
        assert redis.command("XLEN", "tpd2py:channel:room") == "1"
    finally:
        server.stop()
