"""The connection's state diagram (conn.py's header), one test per arrow: a real Connection over
a socketpair, adopted as the server adopts an accepted socket, driven by a real hub.

How it works: the test drives the hub from outside, ``settle()`` at a time: a few loop turns with
a zero-timeout poll each (unix socketpairs deliver at once, so every edge the test caused is seen
by then). Between turns the hub is stopped, so the test reads the connection's fields with
nothing running. Handlers that wait use ``hub.park()`` and are woken by the test, never a timer.
"""

from __future__ import annotations

import _socket
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from greenlet import getcurrent

import tpd2py
from tests.conftest import WAIT, parse_replies, read_replies
from tpd2py import App, ClientDisconnected, Later, Request, Response
from tpd2py import hub as hub_module
from tpd2py.conn import Connection, State, hangup_check
from tpd2py.hub import Hub
from tpd2py.server import Server

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def get(path: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode()


class Rig:
    """A Server on its own hub with one adopted connection; ``client`` is the other end."""

    def __init__(self, app: App, sock_type: type = _socket.socket) -> None:
        self.hub = Hub()
        self.server = Server(app, hub=self.hub)
        ours, self.client = socket.socketpair()
        # As accepted sockets are made: non-blocking object, blocking fd (MSG_DONTWAIT).
        raw = sock_type(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0,
                             ours.detach())
        self.conn = Connection(self.server.ctx, raw)
        self.server.conns[raw.fileno()] = self.conn
        self.client.settimeout(WAIT)

    def settle(self, turns: int = 4) -> None:
        """Run the hub until what the test started has happened (an edge, then the greenlet
        it woke, then what that scheduled: each arrow here takes at most three turns)."""
        for _ in range(turns):
            timer = self.hub.call_later(0, self.hub.stop)
            self.hub.run()
            timer.cancel()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn`` from the hub (as resume and close are called), then settle."""
        self.hub.call_soon(fn, *args)
        self.settle()

    def serve(self, data: bytes) -> None:
        """Send ``data`` and let the hub serve the connection, as the accept callback does."""
        self.client.sendall(data)
        self.call(Connection.serve, self.conn)

    def replies(self, count: int) -> list[Any]:
        return read_replies(self.client, count)

    def close(self) -> None:
        self.client.close()
        if not self.conn.closed:
            self.call(self.conn.close)
        self.hub.close()


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[App], Rig]]:
    """Factory: ``rig(app)``; fails the test if tpd2py logged an error."""
    rigs: list[Rig] = []

    def make(app: App, sock_type: type = _socket.socket) -> Rig:
        made = Rig(app, sock_type)
        monkeypatch.setattr(hub_module._local, "hub", made.hub, raising=False)  # tpd2py.sleep
        rigs.append(made)
        return made

    yield make
    for made in rigs:
        made.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR
              and r.name.startswith("tpd2py")]
    assert not errors, [r.getMessage() for r in errors]


def hello_app() -> App:
    app = App()
    app.route("/")(lambda req: Response(b"hello", content_type=b"text/plain"))
    return app


def later_app(hangups: list[str]) -> tuple[App, list[Callable[[Response], None]]]:
    """/later returns Later; its attach keeps ``resume`` (in the list returned) and waits."""
    app = hello_app()
    resumes: list[Callable[[Response], None]] = []

    @app.route("/later")
    def later(req: Request) -> Later:
        return Later(lambda resume: resumes.append(resume), lambda: hangups.append("hung up"))

    return app, resumes


def test_a_new_connection_is_idle_and_not_in_epoll(rig: Callable[[App], Rig]) -> None:
    conn = rig(hello_app()).conn
    assert conn.state is State.IDLE
    assert conn.on_readable is Connection.serve
    assert not conn.armed and conn.buf is None and conn.worker is None


def test_idle_serving_idle_on_a_keep_alive_request(rig: Callable[[App], Rig]) -> None:
    app = hello_app()
    seen = []
    r = rig(app)
    app.route("/look")(lambda req: seen.append((r.conn.state, r.conn.on_readable,
                                                r.conn.buf is not None)) or b"looked")
    r.serve(get("/look"))
    # Nothing was read past the request: its buffer went back to the pool while the
    # handler ran (a handler that waits holds none).
    assert seen == [(State.SERVING, None, False)]
    assert r.replies(1)[0].body == b"looked"
    conn = r.conn
    assert conn.state is State.IDLE and conn.on_readable is Connection.serve
    assert conn.buf is None and conn.worker is None and conn.armed
    r.client.sendall(GET)  # the next request: the hub calls serve from the edge
    r.settle()
    assert r.replies(1)[0].body == b"hello" and conn.state is State.IDLE


def test_a_handler_keeps_the_buffer_while_a_pipelined_request_waits_in_it(
        rig: Callable[[App], Rig]) -> None:
    app = hello_app()
    seen = []
    r = rig(app)
    app.route("/look")(lambda req: seen.append(r.conn.buf is not None) or b"looked")
    r.serve(get("/look") + get("/look") + GET)
    assert seen == [True, True]  # the requests after it were in the buffer
    assert [x.body for x in r.replies(3)] == [b"looked", b"looked", b"hello"]
    assert r.conn.state is State.IDLE and r.conn.buf is None


def test_a_body_that_comes_after_the_buffer_was_lent_is_read(
        rig: Callable[[App], Rig]) -> None:
    app = hello_app()
    r = rig(app)
    app.route("/echo", methods=["POST"])(lambda req: req.body())
    r.serve(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n")
    r.client.sendall(b"hello")  # the body, after the head was parsed alone
    r.settle()
    assert r.replies(1)[0].body == b"hello"
    assert r.conn.state is State.IDLE and r.conn.buf is None


def test_serving_parked_serving_flushes_earlier_responses_and_lends_the_buffer(
        rig: Callable[[App], Rig]) -> None:
    app = hello_app()
    seen: list[Any] = []
    r = rig(app)

    @app.route("/park")
    def park(req: Request) -> bytes:
        conn = r.conn
        with req.park():
            early = r.client.recv(65536, socket.MSG_DONTWAIT)  # sent before parking
            seen.append((conn.state, conn.on_readable, conn.buf, parse_replies(early)[0]))
            tpd2py.sleep(0)
        seen.append((conn.state, conn.on_readable, conn.buf is not None))
        return b"parked"

    r.serve(GET + get("/park"))  # pipelined: both in one segment
    (state, hook, buf, early), after = seen
    assert (state, hook, buf) == (State.PARKED, hangup_check, None)
    assert [reply.body for reply in early] == [b"hello"]
    assert after == (State.SERVING, None, True)
    assert r.replies(1)[0].body == b"parked" and r.conn.state is State.IDLE


def parked_app(events: list[Any], on_hangup: bool) -> App:
    """/wait parks until woken (by its hang-up hook, with on_hangup) and records how."""
    app = hello_app()

    @app.route("/wait")
    def wait(req: Request) -> bytes:
        me = getcurrent()
        hub = hub_module.get_hub()

        def hook() -> None:
            events.append("hook")
            hub.schedule(me, "woken")

        with req.park(on_hangup=hook if on_hangup else None):
            try:
                events.append(hub.park())
            except ClientDisconnected:
                events.append("ClientDisconnected")
                raise
        return b"answer"

    return app


def test_a_parked_handler_gets_client_disconnected_when_the_client_hangs_up(
        rig: Callable[[App], Rig]) -> None:
    events: list[Any] = []
    r = rig(parked_app(events, on_hangup=False))
    r.serve(get("/wait"))
    assert r.conn.state is State.PARKED and not events
    r.client.close()
    r.settle()
    assert events == ["ClientDisconnected"]
    assert r.conn.state is State.CLOSED and r.conn.worker is None


def test_a_parked_handler_with_on_hangup_gets_the_hook_called_once_instead(
        rig: Callable[[App], Rig]) -> None:
    events: list[Any] = []
    r = rig(parked_app(events, on_hangup=True))
    r.serve(get("/wait"))
    r.client.close()
    r.settle()
    assert events == ["hook", "woken"]  # no ClientDisconnected thrown
    assert r.conn.state is State.CLOSED  # its answer met a closed socket


def test_serving_detached_idle_sends_the_response_from_the_hub_in_one_send(
        rig: Callable[[App], Rig]) -> None:
    hangups: list[str] = []
    app, resumes = later_app(hangups)
    r = rig(app)
    conn = r.conn
    r.serve(get("/later"))
    assert conn.state is State.DETACHED and conn.on_readable is hangup_check
    assert conn.worker is None and conn.buf is None and conn.armed
    sends = r.server.ctx.sendmsg_calls
    [resume] = resumes
    after = []
    r.call(lambda: (resume(Response(b"late")), after.append(conn.state)))
    assert after == [State.IDLE]  # sent right there, no serve
    assert r.server.ctx.sendmsg_calls == sends + 1
    assert r.replies(1)[0].body == b"late" and not hangups


def test_detached_serving_when_a_pipelined_request_waits(rig: Callable[[App], Rig]) -> None:
    hangups: list[str] = []
    app, resumes = later_app(hangups)
    r = rig(app)
    r.serve(get("/later"))
    r.client.sendall(GET)  # comes while detached: only noted (read_pending)
    r.settle()
    assert r.conn.state is State.DETACHED
    after = []
    r.call(lambda: (resumes[0](Response(b"late")), after.append(r.conn.state)))
    assert after == [State.DETACHED]  # the hub calls serve on its next turn
    assert [reply.body for reply in r.replies(2)] == [b"late", b"hello"]
    assert r.conn.state is State.IDLE and not hangups


def test_detached_serving_for_a_streamed_body(rig: Callable[[App], Rig]) -> None:
    hangups: list[str] = []
    app, resumes = later_app(hangups)
    r = rig(app)
    r.serve(get("/later"))
    r.call(resumes[0], Response(iter([b"str", b"eamed"])))
    [reply] = r.replies(1)
    assert reply.chunked and reply.body == b"streamed"
    assert r.conn.state is State.IDLE


def test_detached_closed_when_the_client_hangs_up_and_a_late_resume_does_nothing(
        rig: Callable[[App], Rig]) -> None:
    hangups: list[str] = []
    app, resumes = later_app(hangups)
    r = rig(app)
    r.serve(get("/later"))
    r.client.close()
    r.settle()
    assert r.conn.state is State.CLOSED and hangups == ["hung up"]
    sends = r.server.ctx.sendmsg_calls
    r.call(resumes[0], Response(b"too late"))
    assert r.conn.state is State.CLOSED and hangups == ["hung up"]
    assert r.server.ctx.sendmsg_calls == sends


def test_serving_lingering_closed_after_a_protocol_error_with_unread_input(
        rig: Callable[[App], Rig]) -> None:
    r = rig(hello_app())
    conn = r.conn
    r.serve(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\nmore input")
    assert conn.state is State.LINGERING and conn.on_readable is None
    reply = r.client.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert r.client.recv(65536) == b""  # half-closed: the response, then our EOF
    r.client.sendall(b"x" * 50000)  # still read, and dropped
    r.settle()
    assert conn.state is State.LINGERING
    with pytest.raises(BlockingIOError):
        conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # drained
    r.client.shutdown(socket.SHUT_WR)
    r.settle()
    assert conn.state is State.CLOSED


def test_close_is_idempotent_from_idle(rig: Callable[[App], Rig]) -> None:
    r = rig(hello_app())
    r.serve(GET)
    r.call(r.conn.close)
    r.call(r.conn.close)
    assert r.conn.state is State.CLOSED and r.conn.fd not in r.server.conns
    assert r.replies(1)[0].body == b"hello" and r.client.recv(1) == b""


def test_close_of_a_detached_connection_calls_its_hook_once(rig: Callable[[App], Rig]) -> None:
    hangups: list[str] = []
    app, resumes = later_app(hangups)
    r = rig(app)
    r.serve(get("/later"))
    r.call(r.conn.close)
    r.call(r.conn.close)
    assert r.conn.state is State.CLOSED and hangups == ["hung up"]
    assert r.client.recv(1) == b""


def test_close_of_a_parked_connection_calls_its_hook_once(rig: Callable[[App], Rig]) -> None:
    events: list[Any] = []
    r = rig(parked_app(events, on_hangup=True))
    r.serve(get("/wait"))
    r.call(r.conn.close)
    r.call(r.conn.close)
    assert events == ["hook", "woken"] and r.conn.state is State.CLOSED


def test_shutdown_closes_a_connection_that_goes_idle_instead(rig: Callable[[App], Rig]) -> None:
    events: list[Any] = []
    r = rig(parked_app(events, on_hangup=False))
    r.serve(get("/wait"))
    r.call(r.server.shutdown)
    assert r.server.ctx.draining and r.conn.state is State.PARKED  # busy: it finishes
    r.call(r.hub.schedule, r.conn.worker, "woken")
    assert events == ["woken"] and r.conn.state is State.CLOSED
    assert r.replies(1)[0].body == b"answer" and r.client.recv(1) == b""


def test_shutdown_closes_an_idle_connection_at_once(rig: Callable[[App], Rig]) -> None:
    r = rig(hello_app())
    r.serve(GET)
    r.call(r.server.shutdown)
    assert r.conn.state is State.CLOSED


class _Transport(_socket.socket):
    """A socket the kernel may not sendfile through (a stand-in for a TLS transport: the same
    calls, but not the plain socket type). Counts its sends."""

    sends = 0

    def send(self, *args: Any) -> int:
        _Transport.sends += 1
        return super().send(*args)

    def sendmsg(self, *args: Any) -> int:
        _Transport.sends += 1
        return super().sendmsg(*args)


def test_a_file_goes_by_reads_where_sendfile_cannot_be_used(rig: Callable[..., Rig],
                                                            tmp_path: Any) -> None:
    from tpd2py.files import FileResponse
    from tpd2py.gsocket import READ_PIECE

    data = bytes(range(256)) * 4096 * 2  # 2 MiB: many pieces, more than the socketpair holds
    (tmp_path / "f.bin").write_bytes(data)
    app = hello_app()
    app.route("/f")(lambda req: FileResponse(tmp_path / "f.bin"))
    r = rig(app, _Transport)
    _Transport.sends = 0
    r.serve(get("/f") + GET)
    r.client.setblocking(False)
    got = b""
    for _ in range(10_000):  # bounded: each turn the server sends at most one piece
        try:
            more = r.client.recv(1 << 20)
        except BlockingIOError:
            r.settle()
            continue
        got += more
        if got.endswith(b"hello"):
            break
    head, _, rest = got.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % len(data) in head
    assert rest.startswith(data) and rest[len(data):].endswith(b"hello")
    assert _Transport.sends >= len(data) // READ_PIECE  # it went through the transport
    assert r.conn.state is State.IDLE
