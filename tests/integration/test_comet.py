"""Comet: Channel.wait, the long-poll helper and Server-Sent Events, against a real server.

Each server runs in its own thread (comet_helpers.ServerThread); clients are raw sockets on
127.0.0.1. Server state (waiters, buffers, connections) is read in the hub thread between two
turns (``call``/``wait_for``). Nothing sleeps to wait for an event: a timeout under test is the
event itself, and is kept short.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import greenlet
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from comet_helpers import ServerThread, read_events, read_reply, request, run_hub  # noqa: E402

from tpd2py import App, ClientDisconnected, Request  # noqa: E402
from tpd2py.comet import (  # noqa: E402
    TIMEOUT_GRANULARITY,
    Channel,
    Update,
    event_stream,
    long_poll,
    sse,
    sse_event,
)
from tpd2py.errors import Cancelled  # noqa: E402
from tpd2py.hub import get_hub  # noqa: E402

SHORT = 0.3  # a timeout the test waits for on purpose


class ChatApp:
    """A channel, the ready endpoints, and a handler that records how its wait ended."""

    def __init__(self, history: int = 256, poll_timeout: float = 30.0,
                 heartbeat: float = 15.0) -> None:
        self.channel = Channel(history=history, name="test")
        self.endings: list[str] = []
        self.ended = threading.Condition()
        app = self.app = App()
        channel = self.channel

        @app.route("/poll")
        def poll(req: Request) -> Any:
            return long_poll(req, channel, timeout=float(req.query.get("t", poll_timeout)))

        @app.route("/events")
        def events(req: Request) -> Any:
            return event_stream(req, channel, heartbeat=float(req.query.get("hb", heartbeat)))

        @app.route("/publish", methods=["POST"])
        def publish(req: Request) -> dict:
            message = channel.publish(req.body().decode(), event=req.query.get("event"))
            return {"version": message.version}

        @app.route("/hello")
        def hello(req: Request) -> bytes:
            return b"hello"

        @app.route("/watch")
        def watch(req: Request) -> Any:
            # Straight-line use of Channel.wait, catching the hang-up to record it.
            try:
                update = channel.wait(int(req.query["after"]), timeout=30.0, request=req)
            except ClientDisconnected:
                self._ended("disconnected")
                raise
            self._ended("woken" if update else "timeout")
            return update.response()

    def _ended(self, how: str) -> None:
        with self.ended:
            self.endings.append(how)
            self.ended.notify_all()

    def wait_endings(self, count: int) -> list[str]:
        with self.ended:
            assert self.ended.wait_for(lambda: len(self.endings) >= count, 10.0), self.endings
            return list(self.endings)


@pytest.fixture
def chat() -> Iterator[Callable[..., tuple[ChatApp, ServerThread]]]:
    started: list[ServerThread] = []

    def start(**kwargs: Any) -> tuple[ChatApp, ServerThread]:
        config = {k: kwargs.pop(k) for k in list(kwargs) if k in ("grace",)}
        chat_app = ChatApp(**kwargs)
        srv = ServerThread(chat_app.app, **config)
        started.append(srv)
        return chat_app, srv

    yield start
    for srv in started:
        srv.stop()


def publish(srv: ServerThread, text: str, event: str | None = None) -> int:
    with srv.connect() as sock:
        path = "/publish" + (f"?event={event}" if event else "")
        sock.sendall(request(path, "POST", text.encode()))
        return int(read_reply(sock).json()["version"])


def park(srv: ServerThread, chat_app: ChatApp, path: str, count: int = 1) -> list[socket.socket]:
    """Open ``count`` connections that send ``path`` and wait until all are parked."""
    before = srv.call(lambda: chat_app.channel.waiting)
    socks = []
    for _ in range(count):
        sock = srv.connect()
        sock.sendall(request(path))
        socks.append(sock)
    srv.wait_for(lambda: chat_app.channel.waiting >= before + count)
    return socks


# -- long polling ---------------------------------------------------------------------------------


def test_poll_without_version_answers_at_once_with_history(chat: Any) -> None:
    chat_app, srv = chat()
    with srv.connect() as sock:
        sock.sendall(request("/poll"))
        reply = read_reply(sock)
        assert reply.status == 200
        assert reply.json() == {"version": 0, "complete": True, "messages": []}
        assert reply.headers["cache-control"] == "no-store"
        publish(srv, "one")
        publish(srv, "two", event="note")
        sock.sendall(request("/poll"))
        body = read_reply(sock).json()
        assert body["version"] == 2
        assert body["messages"] == [{"id": 1, "data": "one"},
                                    {"id": 2, "event": "note", "data": "two"}]


def test_poll_with_current_version_waits_for_the_next_publish(chat: Any) -> None:
    chat_app, srv = chat()
    publish(srv, "old")
    [sock] = park(srv, chat_app, "/poll?after=1")
    publish(srv, "new")
    reply = read_reply(sock)
    assert reply.status == 200
    assert reply.json() == {"version": 2, "complete": True,
                            "messages": [{"id": 2, "data": "new"}]}
    # Keep-alive: the same connection serves the next poll (its buffer came back).
    sock.sendall(request("/poll?after=1"))
    assert read_reply(sock).json()["version"] == 2
    sock.close()
    assert srv.call(lambda: chat_app.channel.waiting) == 0


def test_poll_with_older_version_answers_at_once_with_what_was_missed(chat: Any) -> None:
    chat_app, srv = chat()
    for text in ("a", "b", "c"):
        publish(srv, text)
    with srv.connect() as sock:
        sock.sendall(request("/poll?after=1"))
        body = read_reply(sock).json()
    assert [m["data"] for m in body["messages"]] == ["b", "c"]
    assert body["complete"] is True


def test_poll_behind_the_history_says_incomplete(chat: Any) -> None:
    chat_app, srv = chat(history=2)
    for i in range(6):
        publish(srv, str(i))
    with srv.connect() as sock:
        sock.sendall(request("/poll?after=0"))
        body = read_reply(sock).json()
    assert body["complete"] is False
    assert body["version"] == 6
    assert [m["id"] for m in body["messages"]][-2:] == [5, 6]


def test_poll_with_version_from_before_a_restart_gets_history_at_once(chat: Any) -> None:
    chat_app, srv = chat()
    publish(srv, "only")
    with srv.connect() as sock:
        sock.sendall(request("/poll?after=999"))
        body = read_reply(sock).json()
    assert body == {"version": 1, "complete": False, "messages": [{"id": 1, "data": "only"}]}


@pytest.mark.parametrize("bad", ["x", "-1", "1.5"])
def test_poll_with_bad_version_is_400(chat: Any, bad: str) -> None:
    chat_app, srv = chat()
    with srv.connect() as sock:
        sock.sendall(request(f"/poll?after={bad}"))
        assert read_reply(sock).status == 400


def test_poll_timeout_is_204_and_leaves_nothing_behind(chat: Any) -> None:
    chat_app, srv = chat()
    with srv.connect() as sock:
        sock.sendall(request(f"/poll?after=0&t={SHORT}"))
        reply = read_reply(sock)
        assert reply.status == 204
        assert reply.body == b""
        assert reply.headers["cache-control"] == "no-store"
        assert srv.call(lambda: chat_app.channel.waiting) == 0
        sock.sendall(request("/hello"))
        assert read_reply(sock).body == b"hello"


def test_one_publish_wakes_every_waiter_with_the_same_bytes(chat: Any) -> None:
    chat_app, srv = chat()
    socks = park(srv, chat_app, "/poll?after=0", count=200)
    publish(srv, "to everyone")
    bodies = {read_reply(s).body for s in socks}
    assert bodies == {b'{"version":1,"complete":true,"messages":[{"id":1,"data":"to everyone"}]}'}
    for s in socks:
        s.close()


def test_waiters_of_one_publish_share_one_update_and_one_response() -> None:
    """Encoded once: the waiters get the same Update, body bytes and Response objects."""
    results: list[Update] = []
    channel = Channel()
    all_done = Gather(50)

    def waiter() -> None:
        results.append(channel.wait(0, timeout=None))
        all_done.one()

    def main() -> None:
        hub = get_hub()
        for _ in range(50):
            hub.spawn(waiter)
        hub.sleep(0)  # let them park
        assert channel.waiting == 50
        channel.publish({"n": 1})
        all_done.wait()
        hub.stop()

    run_hub(main)
    assert len({id(u) for u in results}) == 1
    update = results[0]
    assert update.json_body() is update.json_body()
    assert update.response() is results[-1].response()
    assert update[0].json is update[0].json
    assert channel.waiting == 0


def test_several_publishes_in_one_turn_wake_once_with_all() -> None:
    results: list[Update] = []
    channel = Channel()
    done = Gather(1)

    def waiter() -> None:
        results.append(channel.wait(0, timeout=None))
        done.one()

    def main() -> None:
        hub = get_hub()
        hub.spawn(waiter)
        hub.sleep(0)
        channel.publish("a")
        channel.publish("b")
        done.wait()
        hub.stop()

    run_hub(main)
    assert [m.data for m in results[0]] == ["a", "b"]
    assert results[0].version == 2


def test_timeouts_share_coarse_timers_not_one_per_waiter() -> None:
    channel = Channel()
    done: list[Update] = []
    timers: list[int] = []
    all_done = Gather(300)

    def waiter() -> None:
        done.append(channel.wait(0, timeout=SHORT))
        all_done.one()

    def main() -> None:
        hub = get_hub()
        before = len(hub.timers)
        for _ in range(300):
            hub.spawn(waiter)
        hub.sleep(0)
        timers.append(len(hub.timers) - before)
        all_done.wait()
        hub.stop()

    run_hub(main)
    assert timers[0] <= 4, f"{timers[0]} timers for 300 waiters"  # one per quarter second
    assert not any(done)
    assert channel.waiting == 0


def test_a_cancelled_waiter_leaves_the_channel() -> None:
    channel = Channel()
    outcome: list[str] = []

    def waiter() -> None:
        try:
            channel.wait(0, timeout=None)
        except Cancelled:
            outcome.append("cancelled")

    def main() -> None:
        hub = get_hub()
        g = hub.spawn(waiter)
        hub.sleep(0)
        assert channel.waiting == 1
        hub.throw(g, Cancelled())
        hub.sleep(0)
        assert channel.waiting == 0
        channel.publish("after the cancel")  # must not resume the dead waiter
        hub.sleep(TIMEOUT_GRANULARITY)  # a few hub turns, callbacks included
        hub.stop()

    run_hub(main)
    assert outcome == ["cancelled"]


def test_publish_from_another_thread_wakes_the_hub(chat: Any) -> None:
    chat_app, srv = chat()
    socks = park(srv, chat_app, "/poll?after=0", count=3)
    thread = threading.Thread(target=chat_app.channel.publish, args=("from a thread",))
    thread.start()
    thread.join(10)
    for s in socks:
        assert read_reply(s).json()["messages"][0]["data"] == "from a thread"
        s.close()


def test_publish_from_a_signal_handler_wakes_the_hub(chat: Any) -> None:
    # The hub runs in another thread; the handler runs in the main thread, like a worker.
    chat_app, srv = chat()
    [sock] = park(srv, chat_app, "/poll?after=0")
    previous = signal.signal(signal.SIGUSR1,
                             lambda signum, frame: chat_app.channel.publish("signalled"))
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        reply = read_reply(sock)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert reply.json()["messages"][0]["data"] == "signalled"
    sock.close()


def test_pipelined_response_goes_out_before_the_poll_parks(chat: Any) -> None:
    chat_app, srv = chat()
    with srv.connect() as sock:
        sock.sendall(request("/hello") + request("/poll?after=0"))
        assert read_reply(sock).body == b"hello"
        srv.wait_for(lambda: chat_app.channel.waiting == 1)
        publish(srv, "next")
        assert read_reply(sock).json()["version"] == 1


def test_parked_connection_holds_no_input_buffer(chat: Any) -> None:
    chat_app, srv = chat()
    socks = park(srv, chat_app, "/poll?after=0", count=20)
    buffers = srv.call(lambda: [c.buf is None for c in srv.server.conns.values()])
    assert buffers == [True] * 20
    publish(srv, "wake")
    for s in socks:
        assert read_reply(s).status == 200
        s.sendall(request("/hello"))
        assert read_reply(s).body == b"hello"
        s.close()


def test_parked_long_polls_hold_no_greenlet(chat: Any) -> None:
    chat_app, srv = chat()

    def busy_greenlets() -> int:
        gc.collect()
        pooled = set(map(id, srv.server.hub.spares))
        return sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet)
                   and not o.dead and id(o) not in pooled and o.parent is not None)

    idle = srv.call(busy_greenlets)  # the accept loop's, and the like
    socks = park(srv, chat_app, "/poll?after=0", count=50)
    assert srv.call(busy_greenlets) == idle
    assert srv.call(lambda: [c.worker for c in srv.server.conns.values()]) == [None] * 50
    publish(srv, "x")
    for s in socks:
        assert read_reply(s).status == 200
        s.close()


def test_request_pipelined_after_a_long_poll_waits_its_turn(chat: Any) -> None:
    chat_app, srv = chat()
    with srv.connect() as sock:
        sock.sendall(request("/poll?after=0") + request("/hello"))
        srv.wait_for(lambda: chat_app.channel.waiting == 1)
        sock.sendall(request("/hello"))  # arrives while the poll is parked
        publish(srv, "first")
        assert read_reply(sock).json()["version"] == 1
        assert read_reply(sock).body == b"hello"
        assert read_reply(sock).body == b"hello"


def test_head_long_poll_gets_the_head_only(chat: Any) -> None:
    chat_app, srv = chat()
    with srv.connect() as sock:
        sock.sendall(request("/poll?after=0", method="HEAD") + request("/hello"))
        srv.wait_for(lambda: chat_app.channel.waiting == 1)
        publish(srv, "for a HEAD")
        sock.settimeout(10)
        data = b""
        while data.count(b"\r\n\r\n") < 2 or not data.endswith(b"hello"):
            more = sock.recv(65536)
            assert more, data
            data += more
        first, _, rest = data.partition(b"\r\n\r\n")
        assert b"200 OK" in first and b"Content-Length: " in first
        assert rest.startswith(b"HTTP/1.1 200")  # no body after the HEAD response


# -- hang-ups -------------------------------------------------------------------------------------


def test_hangup_wakes_the_handler_with_client_disconnected(chat: Any) -> None:
    chat_app, srv = chat()
    socks = park(srv, chat_app, "/watch?after=0", count=5)
    for s in socks:
        s.close()
    assert chat_app.wait_endings(5) == ["disconnected"] * 5
    srv.wait_for(lambda: not srv.server.conns)
    assert srv.call(lambda: chat_app.channel.waiting) == 0


def test_hangups_leak_no_waiter_greenlet_or_buffer(chat: Any) -> None:
    chat_app, srv = chat()

    def census() -> tuple[int, int]:
        gc.collect()
        live = sum(1 for o in gc.get_objects()
                   if isinstance(o, greenlet.greenlet) and not o.dead)
        return live, len(srv.server.ctx.buffers)

    # Warm the pools first, so that the census compares like with like.
    for s in park(srv, chat_app, "/poll?after=0", count=100):
        s.close()
    srv.wait_for(lambda: not srv.server.conns and chat_app.channel.waiting == 0)
    greenlets_before, _ = srv.call(census)
    for s in park(srv, chat_app, "/poll?after=0", count=100):
        s.close()
    srv.wait_for(lambda: not srv.server.conns and chat_app.channel.waiting == 0)
    greenlets_after, pooled_buffers = srv.call(census)
    assert greenlets_after <= greenlets_before
    assert pooled_buffers <= 100
    # Timeout buckets keep no waiter (an emptied bucket only waits for its timer to fire).
    assert srv.call(lambda: sum(map(len, chat_app.channel._buckets.values()))) == 0


def test_hangup_and_publish_in_the_same_hub_turn_resume_the_handler_once(chat: Any) -> None:
    """Regression: the hang-up used to throw ClientDisconnected even when a publish had already
    scheduled the handler; the late throw then killed a pooled worker (now: spare) greenlet."""
    chat_app, srv = chat()
    errors: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record)

    collect = Collect(logging.ERROR)
    logging.getLogger("tpd2py").addHandler(collect)
    try:
        socks = park(srv, chat_app, "/watch?after=0", count=10)
        entered, release = threading.Event(), threading.Event()

        def freeze() -> None:
            entered.set()
            release.wait(10)

        srv.server.hub.call_soon_threadsafe(freeze)
        assert entered.wait(10)
        for s in socks:  # the hub is frozen: the hang-ups and the publish land in one turn
            s.close()
        chat_app.channel.publish("racing the hang-ups")
        release.set()
        endings = chat_app.wait_endings(10)
        assert len(endings) == 10
        srv.wait_for(lambda: not srv.server.conns)
        # Every spare greenlet is still alive and the server goes on serving.
        assert srv.call(lambda: [g.dead for g in srv.server.hub.spares]) == [False] * len(
            srv.call(lambda: srv.server.hub.spares))
        for _ in range(20):
            with srv.connect() as sock:
                sock.sendall(request("/hello"))
                assert read_reply(sock).body == b"hello"
    finally:
        logging.getLogger("tpd2py").removeHandler(collect)
    assert not errors, [r.getMessage() for r in errors]


def test_shutdown_releases_parked_waiters(chat: Any) -> None:
    chat_app, srv = chat(grace=0.2)
    socks = park(srv, chat_app, "/poll?after=0", count=5)
    srv.stop()
    assert chat_app.channel.waiting == 0
    for s in socks:
        s.close()


# -- Server-Sent Events ---------------------------------------------------------------------------


def test_event_stream_replays_history_then_streams_new_events(chat: Any) -> None:
    chat_app, srv = chat()
    publish(srv, "first")
    with srv.connect() as sock:
        sock.sendall(request("/events"))
        headers, frames = read_events(sock, 2)
        assert headers["status"] == "200"
        assert headers["content-type"] == "text/event-stream"
        assert headers["cache-control"] == "no-cache"
        assert frames == [b": stream open", b"id: 1\ndata: first"]
        srv.wait_for(lambda: chat_app.channel.waiting == 1)
        publish(srv, "line one\nline two", event="note")
        _, more = read_events_continued(sock, 1)
        assert more == [b"id: 2\nevent: note\ndata: line one\ndata: line two"]


def test_an_event_name_with_a_line_break_is_refused_at_publish(chat: Any) -> None:
    """It would end the ``event:`` field of every stream that frames it (and a stream that
    failed to frame it closed): refused at publish, the channel unchanged, streams go on."""
    chat_app, srv = chat()
    publish(srv, "first")
    with srv.connect() as sock:
        sock.sendall(request("/events"))
        read_events(sock, 2)
        srv.wait_for(lambda: chat_app.channel.waiting == 1)
        for bad in ("x\ndata: forged", "x\rretry: 1"):
            with pytest.raises(ValueError, match="CR or LF"):
                srv.call(lambda bad=bad: chat_app.channel.publish("body", event=bad))
        assert srv.call(lambda: chat_app.channel.version) == 1
        publish(srv, "second", event="note")
        _, more = read_events_continued(sock, 1)
        assert more == [b"id: 2\nevent: note\ndata: second"]


def test_event_stream_resumes_after_last_event_id(chat: Any) -> None:
    chat_app, srv = chat()
    for text in ("a", "b", "c"):
        publish(srv, text)
    with srv.connect() as sock:
        sock.sendall(request("/events", headers={"Last-Event-ID": "2"}))
        _, frames = read_events(sock, 2)
    assert frames[1:] == [b"id: 3\ndata: c"]


def test_event_stream_sends_heartbeats(chat: Any) -> None:
    chat_app, srv = chat()
    publish(srv, "x")
    with srv.connect() as sock:
        sock.sendall(request(f"/events?hb={SHORT}", headers={"Last-Event-ID": "1"}))
        _, frames = read_events(sock, 3)
    assert frames == [b": stream open", b": keep-alive", b": keep-alive"]


def test_event_stream_hangup_removes_the_subscriber(chat: Any) -> None:
    chat_app, srv = chat()
    socks = park(srv, chat_app, "/events", count=3)
    for s in socks:
        s.close()
    srv.wait_for(lambda: chat_app.channel.waiting == 0 and not srv.server.conns)


def test_sse_from_a_handler_generator() -> None:
    channel = Channel()
    channel.publish({"k": 1})
    update = channel.since(None)
    events = [sse_event("hi", event="greet", id=7), update, None, "plain", {"j": 2}]
    response = sse(events, retry=1500)
    frames = list(response.body)  # type: ignore[arg-type]
    assert frames == [b"retry: 1500\n\n", b"id: 7\nevent: greet\ndata: hi\n\n",
                      b'id: 1\ndata: {"k":1}\n\n', b": keep-alive\n\n", b"data: plain\n\n",
                      b'data: {"j":2}\n\n']


@pytest.mark.parametrize("data, expected", [
    ("", b"data: \n\n"),
    ("a\r\nb\rc\nd", b"data: a\ndata: b\ndata: c\ndata: d\n\n"),
    ("ends with newline\n", b"data: ends with newline\ndata: \n\n"),
    (b"raw bytes", b"data: raw bytes\n\n"),
    ([1, "two"], b'data: [1,"two"]\n\n'),
])
def test_sse_event_data_lines(data: Any, expected: bytes) -> None:
    assert sse_event(data) == expected


@pytest.mark.parametrize("field", ["event", "id"])
def test_sse_event_refuses_line_breaks_in_fields(field: str) -> None:
    with pytest.raises(ValueError):
        sse_event("x", **{field: "a\nb"})


def test_message_json_takes_bytes_as_encoded_json() -> None:
    channel = Channel()
    channel.publish(b'{"pre":"encoded"}')
    channel.publish("text")
    body = json.loads(channel.since(0).json_body())
    assert body["messages"] == [{"id": 1, "data": {"pre": "encoded"}}, {"id": 2, "data": "text"}]


# -- helpers --------------------------------------------------------------------------------------


def read_events_continued(sock: socket.socket, count: int) -> tuple[dict, list[bytes]]:
    """Read ``count`` more frames from an event stream whose head was already read."""
    sock.settimeout(10)
    text = b""
    frames: list[bytes] = []
    pending = b""
    while len(frames) < count:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("stream closed")
        pending += more
        while True:
            eol = pending.find(b"\r\n")
            if eol < 0:
                break
            size = int(pending[:eol], 16)
            if len(pending) < eol + 4 + size:
                break
            text += pending[eol + 2:eol + 2 + size]
            pending = pending[eol + 4 + size:]
        while b"\n\n" in text:
            frame, _, text = text.partition(b"\n\n")
            frames.append(frame)
    return {}, frames


class Gather:
    """Park one greenlet until ``count`` others have called ``one()`` (hub-thread only)."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.waiter: Any = None

    def one(self) -> None:
        self.left -= 1
        if self.left == 0 and self.waiter is not None:
            get_hub().schedule(self.waiter)

    def wait(self) -> None:
        if self.left > 0:
            self.waiter = greenlet.getcurrent()
            get_hub().park()




# -- the demo app over plain HTTP (the browser test needs Chromium; this one runs anywhere) -------


def test_demo_chat_over_http() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from demo.app import CHAT, app

    srv = ServerThread(app)
    try:
        with srv.connect() as sock:
            sock.sendall(request("/"))
            home = read_reply(sock).body
            assert b'href="/chat"' in home and b'href="/hello/world"' in home
            sock.sendall(request("/hello/%3Cscript%3E"))
            assert b"Hello, &lt;script&gt;!" in read_reply(sock).body
            sock.sendall(request("/chat"))
            page = read_reply(sock)
            assert page.status == 200 and b"EventSource" in page.body
            start = CHAT.version
            sock.sendall(request(f"/chat/poll?after={start}"))
            srv.wait_for(lambda: CHAT.waiting == 1)
            with srv.connect() as poster:
                form = b"name=ann&text=%3Cb%3Ehi%3C%2Fb%3E"
                poster.sendall(request("/chat/send", "POST", form, headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Requested-With": "fetch"}))
                assert read_reply(poster).json() == {"version": start + 1}
                poster.sendall(request("/chat/send", "POST", b"name=ann&text=+"))
                assert read_reply(poster).status == 400  # an empty message
                poster.sendall(request("/chat/send", "POST", b"name=&text=plain+form"))
                redirect = read_reply(poster)
                assert redirect.status == 303 and redirect.headers["location"] == "/chat"
            message = read_reply(sock).json()["messages"][0]
            assert message["data"]["name"] == "ann" and message["data"]["text"] == "<b>hi</b>"
            sock.sendall(request("/chat/events", headers={"Last-Event-ID": str(start + 1)}))
            _, frames = read_events(sock, 2)
            assert frames[1].startswith(b"id: %d\ndata: " % (start + 2))
            assert b'"name":"anonymous"' in frames[1]
    finally:
        srv.stop()
