"""WebSocket over real loopback sockets: the handshake's answers, protocol violations as a
table of raw frames (each answered with a Close of the right code, then EOF, never a reset),
the closing handshake both ways, limits and timeouts, subscriptions, and a real client (the
``websockets`` package, the ``test`` extra)."""

from __future__ import annotations

import socket
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import WAIT, RunningServer  # noqa: E402
from ws_helpers import (  # noqa: E402
    ACCEPT,
    RawWebSocket,
    accept_for,
    client_frame,
    close_frame,
    random_key,
    upgrade_request,
)

from tpd2py import App, Channel, Update, WebSocketClosed  # noqa: E402
from tpd2py.wsframe import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT  # noqa: E402


def make_app(room: Channel | None = None, **options: Any) -> App:
    app = App()
    room = room or Channel()

    @app.websocket("/echo", **options)
    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    @app.websocket("/room/<name>", **options)
    def named(ws: Any, name: str) -> None:
        ws.send(f"{name} {ws.request.query.get('q', '')}")

    @app.websocket("/subscribe", **options)
    def subscribe(ws: Any) -> None:
        ws.subscribe(room, on_message=room.publish)

    @app.websocket("/either", **options)
    def either(ws: Any) -> None:
        after = room.version
        ws.send("ready")
        while True:
            event = ws.receive_or(room, after)
            if isinstance(event, Update):
                after = event.version
                ws.send("update " + ",".join(str(m.data) for m in event))
            else:
                ws.send("message " + str(event))

    @app.websocket("/timeout", **options)
    def timeout(ws: Any) -> None:
        ws.send(repr(ws.receive(timeout=0.01)))
        ws.send("again " + str(ws.receive()))

    @app.websocket("/close", **options)
    def close(ws: Any) -> None:
        ws.close(4000, "done here")

    @app.websocket("/fail", **options)
    def fail(ws: Any) -> None:
        ws.receive()
        raise RuntimeError("websocket handler failed (expected by the test)")

    @app.websocket("/after-close", **options)
    def after_close(ws: Any) -> None:
        try:
            ws.receive()
        except WebSocketClosed as e:
            closed_with.append((e.code, e.reason))

    @app.route("/plain")
    def plain(req: Any) -> bytes:
        return b"plain"

    return app


closed_with: list[tuple[int, str]] = []


@pytest.fixture
def ws_server(server: Any) -> RunningServer:
    return server(make_app(), allow_errors=False)


# -- the handshake ---------------------------------------------------------------------------------

HANDSHAKES = [
    ("good", {}, (), "GET", "HTTP/1.1", 101),
    ("no Upgrade: a plain GET of a WebSocket resource", {}, ("Upgrade",), "GET", "HTTP/1.1",
     426),
    ("Upgrade to something else", {"Upgrade": "h2c"}, (), "GET", "HTTP/1.1", 426),
    ("no Connection: upgrade", {"Connection": "keep-alive"}, (), "GET", "HTTP/1.1", 400),
    ("Connection lists upgrade among others", {"Connection": "keep-alive, Upgrade"}, (), "GET",
     "HTTP/1.1", 101),
    ("Upgrade token case", {"Upgrade": "WebSocket"}, (), "GET", "HTTP/1.1", 101),
    ("version 8", {"Sec-WebSocket-Version": "8"}, (), "GET", "HTTP/1.1", 426),
    ("no version", {}, ("Sec-WebSocket-Version",), "GET", "HTTP/1.1", 426),
    ("no key", {}, ("Sec-WebSocket-Key",), "GET", "HTTP/1.1", 400),
    ("key not base64", {"Sec-WebSocket-Key": "not base64!!"}, (), "GET", "HTTP/1.1", 400),
    ("key of 15 bytes", {"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA"}, (), "GET", "HTTP/1.1",
     400),
    ("HTTP/1.0", {}, (), "GET", "HTTP/1.0", 400),
    ("POST", {}, (), "POST", "HTTP/1.1", 405),
    ("a body", {"Content-Length": "3"}, (), "GET", "HTTP/1.1", 400),
]


@pytest.mark.parametrize(("name", "headers", "drop", "method", "version", "status"), HANDSHAKES,
                         ids=[h[0] for h in HANDSHAKES])
def test_handshake(ws_server: RunningServer, name: str, headers: dict[str, str],
                   drop: tuple[str, ...], method: str, version: str, status: int) -> None:
    request = upgrade_request("/echo", headers, drop, method, version)
    if "Content-Length" in headers:
        request += b"abc"
    ws = RawWebSocket(ws_server.address)
    ws.send(request)
    got, fields = ws.read_head()
    assert got == status, (got, fields)
    if status == 101:
        assert fields["sec-websocket-accept"] == ACCEPT
        assert fields["connection"].lower() == "upgrade"
    elif status == 426:
        assert fields["sec-websocket-version"] == "13"
    ws.close()


def test_accept_key_for_a_random_key(ws_server: RunningServer) -> None:
    key = random_key()
    ws = RawWebSocket(ws_server.address)
    ws.send(upgrade_request("/echo", {"Sec-WebSocket-Key": key}))
    status, fields = ws.read_head()
    assert status == 101 and fields["sec-websocket-accept"] == accept_for(key)
    ws.close()


def test_origin_check_and_subprotocols(server: Any) -> None:
    srv = server(make_app(origins=("https://good.example",), subprotocols=("v2", "v1")))
    ws = RawWebSocket(srv.address)
    ws.send(upgrade_request("/echo", {"Origin": "https://evil.example"}))
    assert ws.read_head()[0] == 403
    ws.close()
    ws = RawWebSocket(srv.address)
    fields = ws.open("/echo", {"Origin": "https://good.example",
                               "Sec-WebSocket-Protocol": "v1, v2, v3"})
    assert fields["sec-websocket-protocol"] == "v2"  # the server's preference
    ws.close()
    ws = RawWebSocket(srv.address)
    fields = ws.open("/echo", {"Origin": "https://good.example",
                               "Sec-WebSocket-Protocol": "v9"})
    assert "sec-websocket-protocol" not in fields
    ws.close()


def test_a_pipelined_request_before_the_upgrade_is_answered_first(
        ws_server: RunningServer) -> None:
    ws = RawWebSocket(ws_server.address)
    ws.send(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n" + upgrade_request("/echo")
            + client_frame(TEXT, b"right after"))
    status, fields = ws.read_head()
    assert status == 200
    assert ws.buf.startswith(b"plain")
    ws.buf = ws.buf[len(b"plain"):]
    assert ws.read_head()[0] == 101
    frame = ws.read_frame()
    assert (frame.opcode, frame.payload) == (TEXT, b"right after")
    ws.close()


def test_path_parameters_and_the_request(ws_server: RunningServer) -> None:
    ws = RawWebSocket(ws_server.address)
    ws.open("/room/kitchen?q=tea")
    assert ws.read_frame().payload == b"kitchen tea"
    ws.close()


# -- frames: what a client may and may not send ---------------------------------------------------

ECHOES = [
    ("text", [client_frame(TEXT, "héllo".encode())], [(TEXT, "héllo".encode())]),
    ("binary 70000", [client_frame(BINARY, b"\xfe" * 70000)], [(BINARY, b"\xfe" * 70000)]),
    ("empty text", [client_frame(TEXT)], [(TEXT, b"")]),
    ("ping between fragments",
     [client_frame(TEXT, b"ab", fin=False), client_frame(PING, b"hi"),
      client_frame(CONTINUATION, b"cd")],
     [(PONG, b"hi"), (TEXT, b"abcd")]),
    ("a character split between fragments",
     [client_frame(TEXT, "☃".encode()[:2], fin=False),
      client_frame(CONTINUATION, "☃".encode()[2:])], [(TEXT, "☃".encode())]),
    ("ping of 125 bytes", [client_frame(PING, b"p" * 125)], [(PONG, b"p" * 125)]),
    ("unsolicited pong is ignored", [client_frame(PONG, b"x"), client_frame(TEXT, b"after")],
     [(TEXT, b"after")]),
]


@pytest.mark.parametrize(("name", "frames", "expected"), ECHOES, ids=[e[0] for e in ECHOES])
@pytest.mark.parametrize("together", [True, False], ids=["one-write", "frame-by-frame"])
def test_echo(ws_server: RunningServer, name: str, frames: list[bytes],
              expected: list[tuple[int, bytes]], together: bool) -> None:
    ws = RawWebSocket(ws_server.address)
    ws.open("/echo")
    if together:
        ws.send(b"".join(frames))
    else:
        for frame in frames:
            ws.send(frame)
    for opcode, payload in expected:
        frame = ws.read_frame()
        assert (frame.opcode, frame.payload) == (opcode, payload)
    ws.send(close_frame(1000))
    assert ws.expect_close().close_code == 1000
    ws.close()


VIOLATIONS = [
    ("unmasked frame", client_frame(TEXT, b"hi", masked=False), 1002),
    ("RSV1 without an extension", client_frame(TEXT, b"hi", rsv=0x40), 1002),
    ("RSV2", client_frame(TEXT, b"hi", rsv=0x20), 1002),
    ("reserved opcode 3", client_frame(3, b"x"), 1002),
    ("reserved opcode 11", client_frame(11), 1002),
    ("fragmented ping", client_frame(PING, b"x", fin=False), 1002),
    ("ping of 126 bytes", client_frame(PING, b"x" * 126), 1002),
    ("continuation first", client_frame(CONTINUATION, b"x"), 1002),
    ("new message inside a fragmented one",
     client_frame(TEXT, b"a", fin=False) + client_frame(BINARY, b"b"), 1002),
    ("invalid UTF-8", client_frame(TEXT, b"\xce\xba\xff"), 1007),
    ("invalid UTF-8 in the second fragment",
     client_frame(TEXT, b"ok", fin=False) + client_frame(CONTINUATION, b"\xed\xa0\x80"), 1007),
    ("invalid UTF-8 before the frame ends: fail fast",
     client_frame(TEXT, b"\xf4\x90\x80\x80" + b"x" * 1000)[:20], 1007),
    ("frame over max_frame", client_frame(BINARY, b"x" * 2000), 1009),
    ("message over max_message", client_frame(BINARY, b"x" * 1500, fin=False)
     + client_frame(CONTINUATION, b"x" * 1500), 1009),
    ("close code 1005", close_frame(1005), 1002),
    ("close code 999", close_frame(999), 1002),
    ("close with 1 byte", client_frame(CLOSE, b"\x03"), 1002),
    ("close reason not UTF-8", close_frame(1000, b"\xff"), 1007),
]


@pytest.mark.parametrize(("name", "data", "code"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_violation_is_closed_with_its_code_then_eof(server: Any, name: str, data: bytes,
                                                    code: int) -> None:
    srv = server(make_app(max_frame=1024, max_message=2048))
    ws = RawWebSocket(srv.address)
    ws.open("/echo")
    ws.send(client_frame(TEXT, b"before"))
    assert ws.read_frame().payload == b"before"
    ws.send(data)
    frame = ws.expect_close()  # then EOF, not a reset: the server half-closed first
    assert frame.close_code == code
    ws.close()
    srv.wait_closed(1)


def test_close_handshake_started_by_the_client(ws_server: RunningServer) -> None:
    ws = RawWebSocket(ws_server.address)
    ws.open("/after-close")
    closed_with.clear()
    ws.send(close_frame(4001, "bye ☃".encode()))
    frame = ws.expect_close()
    assert frame.close_code == 4001  # echoed
    ws.close()
    ws_server.wait_closed(1)
    ws_server.sync()
    assert closed_with == [(4001, "bye ☃")]


def test_close_without_a_code(ws_server: RunningServer) -> None:
    ws = RawWebSocket(ws_server.address)
    ws.open("/echo")
    ws.send(client_frame(CLOSE))
    assert ws.expect_close().payload == b""
    ws.close()


def test_close_handshake_started_by_the_server(ws_server: RunningServer) -> None:
    ws = RawWebSocket(ws_server.address)
    ws.open("/close")
    frame = ws.read_frame()
    assert frame.opcode == CLOSE and frame.close_code == 4000
    assert frame.payload[2:] == b"done here"
    ws.send(close_frame(4000))
    ws.expect_eof()
    ws.close()
    ws_server.wait_closed(1)


def test_an_upgraded_connection_sends_without_nagle(ws_server: RunningServer) -> None:
    """Each WebSocket message is its own write: with Nagle's algorithm on, a handler's second
    frame sent before the client acknowledged the first waited for its delayed ACK (~40 ms
    on Linux). The upgrade turns TCP_NODELAY on; a plain HTTP connection keeps it off (one
    write per response needs no more)."""
    plain = socket.create_connection(ws_server.address)
    plain.sendall(b"GET /no-such HTTP/1.1\r\nHost: t\r\n\r\n")
    assert plain.recv(4096).startswith(b"HTTP/1.1 404")
    ws = RawWebSocket(ws_server.address)
    ws.open("/echo")
    ws.send(client_frame(TEXT, b"x"))
    assert ws.read_frame().payload == b"x"

    def nodelay() -> list[tuple[bool, bool]]:
        return sorted((getattr(conn, "upgraded", None) is not None,
                       bool(conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
                      for conn in ws_server.server.conns.values())

    assert ws_server.call(nodelay) == [(False, False), (True, True)]
    ws.close()
    plain.close()


def test_the_echoes_of_a_burst_leave_in_one_write(ws_server: RunningServer) -> None:
    """Messages that came together are answered together: a send while more messages wait
    for the handler is gathered with the send that finds none (TCP_NODELAY would send each
    write as its own segment)."""
    ws = RawWebSocket(ws_server.address)
    ws.open("/echo")
    ws.send(client_frame(TEXT, b"first"))
    assert ws.read_frame().payload == b"first"

    def calls() -> int:
        return ws_server.call(lambda: ws_server.server.statistics()["sendmsg_calls"])

    before = calls()
    with ws_server.frozen():  # all five are in the kernel before the server reads any
        ws.send(b"".join(client_frame(TEXT, b"m%d" % i) for i in range(5)))
    assert [ws.read_frame().payload for _ in range(5)] == [b"m%d" % i for i in range(5)]
    assert calls() - before == 1
    ws.close()


def test_a_gathered_answer_leaves_while_the_handler_waits_elsewhere(server: Any) -> None:
    """A frame held back because another message was waiting goes out on the loop's next
    turn when the handler, instead of answering that message, waits on something else."""
    app = App()
    gate = Channel()

    @app.websocket("/wait-after-send")
    def wait_after_send(ws: Any) -> None:
        for message in ws:
            ws.send("got " + message)
            if message == "wait":
                gate.wait(gate.version, timeout=WAIT)  # the next message is in the inbox

    srv = server(app)
    ws = RawWebSocket(srv.address)
    ws.open("/wait-after-send")
    with srv.frozen():
        ws.send(client_frame(TEXT, b"wait") + client_frame(TEXT, b"after"))
    assert ws.read_frame().payload == b"got wait"  # while the handler waits on the gate
    srv.call(lambda: gate.publish("go"))
    assert ws.read_frame().payload == b"got after"
    ws.close()


def test_a_client_that_vanishes_is_closed(ws_server: RunningServer) -> None:
    ws = RawWebSocket(ws_server.address)
    ws.open("/after-close")
    closed_with.clear()
    ws.close()
    ws_server.wait_closed(1)
    ws_server.sync()
    assert closed_with == [(1006, "")]


def test_handler_error_closes_with_1011(server: Any) -> None:
    srv = server(make_app())
    ws = RawWebSocket(srv.address)
    ws.open("/fail")
    ws.send(client_frame(TEXT, b"go"))
    assert ws.expect_close().close_code == 1011
    ws.close()


def test_receive_timeout(ws_server: RunningServer) -> None:
    ws = RawWebSocket(ws_server.address)
    ws.open("/timeout")
    assert ws.read_frame().payload == b"None"
    ws.send(client_frame(TEXT, b"late"))
    assert ws.read_frame().payload == b"again late"
    ws.close()


def test_shutdown_sends_going_away(server: Any) -> None:
    srv = server(make_app())
    ws = RawWebSocket(srv.address)
    ws.open("/echo")
    srv.server.hub.call_soon_threadsafe(srv.server.shutdown)
    frame = ws.read_frame()
    assert frame.opcode == CLOSE and frame.close_code == 1001
    ws.send(close_frame(1001))
    ws.expect_eof()
    ws.close()


def test_an_upgrade_completed_while_draining_is_closed_at_once_with_1001(server: Any) -> None:
    # The upgrade's Later attaches only once earlier pipelined responses are sent; a drain
    # that came while they waited for the client to read finds no WebSocket yet (the
    # connection is still SERVING). The upgrade then completes (101) and closes at once.
    app = make_app()
    big = b"x" * (200 * 1024)  # under the early-flush mark: queued with the upgrade's turn

    @app.route("/big")
    def large(request: Any) -> bytes:
        return big

    srv = server(app)
    ws = RawWebSocket(srv.address, rcvbuf=4096)
    ws.send(b"GET /big HTTP/1.1\r\n")  # a partial head: the server accepts and waits
    srv.sync()

    def small_send_buffer() -> int:
        [conn] = srv.server.conns.values()  # so that /big cannot all fit in the kernel
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        return len(srv.server.conns)

    assert srv.call(small_send_buffer) == 1
    ws.send(b"Host: t\r\n\r\n" + upgrade_request("/echo"))
    srv.sync()

    def waiting_to_upgrade() -> list[tuple[Any, int]]:
        return [(c.ex and c.ex.head.target, c.out.size) for c in srv.server.conns.values()]

    [(target, unsent)] = srv.call(waiting_to_upgrade)
    assert target == b"/echo" and unsent > 0  # still sending /big: not upgraded yet
    srv.server.hub.call_soon_threadsafe(srv.server.shutdown)
    srv.sync()
    status, fields = ws.read_head()
    assert status == 200
    while len(ws.buf) < len(big):
        assert ws._fill()
    ws.buf = ws.buf[len(big):]
    assert ws.read_head()[0] == 101
    frame = ws.read_frame()
    assert frame.opcode == CLOSE and frame.close_code == 1001
    ws.send(close_frame(1001))
    ws.expect_eof()
    ws.close()


# -- deadlines (the once-a-second sweep) --------------------------------------------------------

def test_a_dead_peer_is_pinged_then_closed(server: Any) -> None:
    srv = server(make_app(ping_interval=0.1, ping_timeout=0.1))
    ws = RawWebSocket(srv.address)
    ws.open("/echo")
    frame = ws.read_frame()
    assert frame.opcode == PING
    # No pong, nothing at all: the next sweep closes it (no Close frame: the peer is dead).
    ws.expect_eof()
    ws.close()
    srv.wait_closed(1)


def test_a_live_peer_answers_pings_and_stays(server: Any) -> None:
    srv = server(make_app(ping_interval=0.1, ping_timeout=5))
    ws = RawWebSocket(srv.address)
    ws.open("/echo")
    for _ in range(2):
        frame = ws.read_frame()
        assert frame.opcode == PING
        ws.send(client_frame(PONG, frame.payload))
    ws.send(client_frame(TEXT, b"still here"))
    assert ws.read_frame().payload == b"still here"
    ws.close()


def test_a_message_that_trickles_is_cut_off(server: Any) -> None:
    srv = server(make_app(read_timeout=0.1, ping_interval=None))
    ws = RawWebSocket(srv.address)
    ws.open("/echo")
    ws.send(client_frame(TEXT, b"x" * 100)[:10])
    assert ws.expect_close().close_code == 1008
    ws.close()


# -- subscriptions and broadcast ----------------------------------------------------------------

def test_broadcast_reaches_every_subscriber_with_no_greenlet_held(server: Any) -> None:
    room = Channel()
    srv = server(make_app(room))
    clients = [RawWebSocket(srv.address) for _ in range(5)]
    for c in clients:
        c.open("/subscribe")
    srv.sync()

    def runners() -> list[Any]:
        return [c.upgraded._runner for c in srv.server.conns.values()]

    assert srv.call(runners) == [None] * 5  # every handler returned: no greenlet per socket
    clients[0].send(client_frame(TEXT, b"hello all"))  # on_message=room.publish
    frames = [c.read_frame() for c in clients]
    assert {f.payload for f in frames} == {b'{"id":1,"data":"hello all"}'}
    srv.call(lambda: room.publish({"n": 2}))
    assert {c.read_frame().payload for c in clients} == {b'{"id":2,"data":{"n":2}}'}

    def cached() -> list[tuple[Any, bytes]]:
        return list((room.since(1)._encoded or {}).items())  # the Update all 5 were sent

    # One encoding for all five sockets: made once, the same bytes object queued on each.
    assert srv.call(cached) == [(("websocket", None, None),
                                 b'\x81\x17{"id":2,"data":{"n":2}}')]
    for c in clients:
        c.send(close_frame(1000))
        assert c.expect_close().close_code == 1000
        c.close()
    srv.wait_closed(5)
    assert srv.call(lambda: room.waiting) == 0


def test_two_subscriptions_on_one_socket_both_forward_and_both_end(server: Any) -> None:
    # A socket's subscriptions are a chain (no list): each forwards, a close cancels all.
    news, sport = Channel(), Channel()
    app = App()

    @app.websocket("/both")
    def both(ws: Any) -> None:
        ws.subscribe(news, encode=lambda m: f"news {m.data}")
        ws.subscribe(sport, encode=lambda m: f"sport {m.data}".encode())
        ws.send("subscribed")

    srv = server(app)
    ws = RawWebSocket(srv.address)
    ws.open("/both")
    assert ws.read_frame().payload == b"subscribed"
    srv.call(lambda: (news.publish("a"), sport.publish("b")))
    frames = {(f.opcode, f.payload) for f in (ws.read_frame(), ws.read_frame())}
    assert frames == {(TEXT, b"news a"), (BINARY, b"sport b")}
    assert srv.call(lambda: (news.waiting, sport.waiting)) == (1, 1)
    ws.send(close_frame(1000))
    assert ws.expect_close().close_code == 1000
    ws.close()
    srv.wait_closed(1)
    assert srv.call(lambda: (news.waiting, sport.waiting)) == (0, 0)


def test_subscription_keys_are_shared_and_bounded(server: Any) -> None:
    # Subscribers with the same encode share one key (and one frame); an encode made per
    # subscription (a lambda) cannot grow the shared table without bound.
    from tpd2py import websocket

    room = Channel()
    app = make_app(room)

    @app.websocket("/lambda")
    def each_its_own(ws: Any) -> None:
        ws.subscribe(room, encode=lambda m: str(m.data))

    srv = server(app)
    same = [RawWebSocket(srv.address) for _ in range(3)]
    for c in same:
        c.open("/subscribe")
    srv.sync()
    keys = srv.call(lambda: {id(c.upgraded._watches.key) for c in srv.server.conns.values()})
    assert len(keys) == 1
    many = [RawWebSocket(srv.address) for _ in range(80)]
    for c in many:
        c.open("/lambda")
    srv.sync()
    assert srv.call(lambda: len(websocket._KEYS)) <= 64
    srv.call(lambda: room.publish("x"))
    assert {c.read_frame().payload for c in many} == {b"x"}
    assert {c.read_frame().payload for c in same} == {b'{"id":1,"data":"x"}'}
    for c in same + many:
        c.close()


def test_receive_or_a_channel_update(server: Any) -> None:
    room = Channel()
    srv = server(make_app(room))
    ws = RawWebSocket(srv.address)
    ws.open("/either")
    assert ws.read_frame().payload == b"ready"
    srv.call(lambda: room.publish("one"))
    assert ws.read_frame().payload == b"update one"
    ws.send(client_frame(TEXT, b"hi"))
    assert ws.read_frame().payload == b"message hi"
    srv.call(lambda: (room.publish("two"), room.publish("three")))
    assert ws.read_frame().payload == b"update two,three"
    ws.close()
    srv.wait_closed(1)
    assert srv.call(lambda: room.waiting) == 0


@pytest.mark.parametrize("policy", ["close", "drop"])
def test_a_slow_reader_is_closed_or_skipped_by_policy(server: Any, policy: str) -> None:
    room = Channel()
    srv = server(make_app(room, max_pending=200_000, slow_reader=policy))
    slow = socket.create_connection(srv.address, timeout=WAIT)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(upgrade_request("/subscribe"))
    head = b""
    while b"\r\n\r\n" not in head:
        head += slow.recv(1)
    srv.sync()
    big = "x" * 100_000
    published = 0
    # The kernel's buffers fill first, then ours: past max_pending the policy applies.
    while True:
        srv.call(lambda: room.publish(big))
        srv.sync()
        published += 1
        if srv.open_connections() == 0 or published == 400:
            break
    if policy == "close":
        assert published < 400
        srv.wait_closed(1)
    else:
        assert srv.open_connections() == 1
        pending = srv.call(lambda: next(iter(srv.server.conns.values())).out.size)
        assert pending <= 200_000
    slow.close()


# -- a real client: the websockets package --------------------------------------------------------

websockets_client = pytest.importorskip("websockets.sync.client",
                                        reason="needs the websockets package (test extra)")


def test_websockets_client_echo_and_compression(ws_server: RunningServer) -> None:
    url = f"ws://127.0.0.1:{ws_server.port}/echo"
    with websockets_client.connect(url) as c:
        assert "permessage-deflate" in c.response.headers.get("Sec-WebSocket-Extensions", "")
        for message in ["hello", "☃" * 1000, b"\x00\xff" * 50_000, ""]:
            c.send(message)
            assert c.recv(timeout=WAIT) == message
        c.ping(b"hi").wait(WAIT)
    with websockets_client.connect(url, compression=None) as c:
        c.send("plain")
        assert c.recv(timeout=WAIT) == "plain"


def test_websockets_client_sees_the_close_code(ws_server: RunningServer) -> None:
    from websockets.exceptions import ConnectionClosed

    with websockets_client.connect(f"ws://127.0.0.1:{ws_server.port}/close") as c:
        with pytest.raises(ConnectionClosed) as e:
            c.recv(timeout=WAIT)
        assert e.value.rcvd.code == 4000 and e.value.rcvd.reason == "done here"


def test_websockets_clients_chat_through_a_channel(server: Any) -> None:
    room = Channel()
    srv = server(make_app(room))
    url = f"ws://127.0.0.1:{srv.port}/subscribe"
    with websockets_client.connect(url) as a, websockets_client.connect(url) as b:
        srv.sync()
        a.send("from a")
        assert a.recv(timeout=WAIT) == b.recv(timeout=WAIT) == '{"id":1,"data":"from a"}'
        b.send("from b")
        assert a.recv(timeout=WAIT) == b.recv(timeout=WAIT) == '{"id":2,"data":"from b"}'


# -- permessage-deflate, raw -------------------------------------------------------------------

def deflated(data: bytes) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]


def test_deflate_both_ways_and_a_bomb(ws_server: RunningServer) -> None:
    ws = RawWebSocket(ws_server.address)
    fields = ws.open("/echo", {"Sec-WebSocket-Extensions": "permessage-deflate"})
    assert fields["sec-websocket-extensions"] == \
        "permessage-deflate; server_no_context_takeover"
    text = "compress me " * 50
    ws.send(client_frame(TEXT, deflated(text.encode()), rsv=0x40))
    frame = ws.read_frame()
    assert frame.rsv1 and frame.opcode == TEXT
    assert zlib.decompressobj(-15).decompress(frame.payload + b"\x00\x00\xff\xff") == \
        text.encode()
    ws.send(client_frame(BINARY, b"small, sent plain"))  # RSV1 clear: not compressed
    assert ws.read_frame().payload == b"small, sent plain"
    bomb = deflated(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    ws.send(client_frame(BINARY, bomb, rsv=0x40))
    assert ws.expect_close().close_code == 1009
    ws.close()


# -- backpressure on input -------------------------------------------------------------------

def test_a_handler_that_does_not_read_stops_the_reading(server: Any) -> None:
    gate = Channel()
    app = App()

    @app.websocket("/lazy", max_queue=4)
    def lazy(ws: Any) -> None:
        gate.wait(0, timeout=None)  # until the test says go
        for message in ws:
            ws.send(message)

    srv = server(app)
    ws = RawWebSocket(srv.address)
    ws.open("/lazy")
    messages = [b"%02d" % i * 10_000 for i in range(50)]  # 1 MB: more than one read's worth
    sender = threading.Thread(target=lambda: [ws.send(client_frame(BINARY, m))
                                              for m in messages], daemon=True)
    sender.start()

    def queued() -> int:
        return len(next(iter(srv.server.conns.values())).upgraded._inbox or ())

    deadline = time.monotonic() + WAIT
    while srv.call(queued) < 4:  # what the server takes before it stops reading
        assert time.monotonic() < deadline, "the server read nothing"
    srv.sync()
    # One read (a 16 KiB buffer) may complete one message past the limit; the rest of the
    # megabyte waits in the kernel: TCP pushes back on the client.
    assert srv.call(queued) <= 5
    srv.call(lambda: gate.publish("go"))
    assert [ws.read_frame().payload for _ in range(50)] == messages
    sender.join(WAIT)
    ws.close()


def test_messages_before_a_violation_in_the_same_read_are_answered_first(
        ws_server: RunningServer) -> None:
    # Autobahn's "strict" behaviour (cases 3.2, 4.1.3, 5.15): the echo, then the Close.
    ws = RawWebSocket(ws_server.address)
    ws.open("/echo")
    ws.send(client_frame(TEXT, b"one") + client_frame(TEXT, b"two")
            + client_frame(TEXT, b"bad", rsv=0x20) + client_frame(PING, b"never answered"))
    assert [ws.read_frame().payload for _ in range(2)] == [b"one", b"two"]
    assert ws.expect_close().close_code == 1002
    ws.close()


def test_readme_example_subscribe_and_loop_in_one_handler(server: Any) -> None:
    room = Channel()
    app = App()

    @app.websocket("/chat")
    def chat(ws: Any) -> None:
        ws.subscribe(room, encode=lambda m: str(m.data))
        for message in ws:
            room.publish(message)

    srv = server(app)
    a, b = RawWebSocket(srv.address), RawWebSocket(srv.address)
    a.open("/chat")
    b.open("/chat")
    srv.sync()
    a.send(client_frame(TEXT, "from a ☃".encode()))
    assert a.read_frame().payload == b.read_frame().payload == "from a ☃".encode()
    b.send(close_frame(1000))
    assert b.expect_close().close_code == 1000
    b.close()
    srv.wait_closed(1)
    a.send(client_frame(TEXT, b"alone now"))
    assert a.read_frame().payload == b"alone now"
    a.close()
    srv.wait_closed(2)
    assert srv.call(lambda: room.waiting) == 0


def test_websockets_client_over_tls(server: Any, tmp_path: Path) -> None:
    """wss://: the WebSocket reads and writes through the connection's transport seam."""
    import ssl

    trustme = pytest.importorskip("trustme", reason="needs trustme (the test extra)")
    from tpd2py.tls import TLSSettings

    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem"))
    room = Channel()
    srv = server(make_app(room), transport=TLSSettings(str(tmp_path / "server.pem")).wrap)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    url = f"wss://127.0.0.1:{srv.port}"
    with websockets_client.connect(url + "/echo", ssl=context) as c:
        for message in ["over TLS", b"\x01" * 300_000, "☃" * 5000]:
            c.send(message)
            assert c.recv(timeout=WAIT) == message
    with websockets_client.connect(url + "/subscribe", ssl=context) as a, \
            websockets_client.connect(url + "/subscribe", ssl=context) as b:
        srv.sync()
        a.send("hello over TLS")
        assert a.recv(timeout=WAIT) == b.recv(timeout=WAIT) == \
            '{"id":1,"data":"hello over TLS"}'


def test_channel_watch_every_until_cancelled(ws_server: RunningServer) -> None:
    room = Channel()
    got: list[tuple[int, list[Any]]] = []

    def watch() -> Any:
        room.publish("before")
        return room.watch(0, lambda u: got.append((u.version, [m.data for m in u])),
                          every=True)

    cancel = ws_server.call(watch)
    ws_server.sync()
    ws_server.call(lambda: (room.publish("a"), room.publish("b")))
    ws_server.sync()
    ws_server.call(cancel)
    ws_server.call(lambda: room.publish("after the cancel"))
    ws_server.sync()
    assert got == [(1, ["before"]), (3, ["a", "b"])]
    assert ws_server.call(lambda: room.waiting) == 0


def test_a_compressed_broadcast_is_compressed_once(server: Any) -> None:
    room = Channel()
    srv = server(make_app(room))
    clients = [RawWebSocket(srv.address) for _ in range(3)]
    for c in clients:
        c.open("/subscribe", {"Sec-WebSocket-Extensions": "permessage-deflate"})
    srv.sync()
    text = "a broadcast long enough to be worth compressing " * 4
    srv.call(lambda: room.publish(text))
    frames = [c.read_frame() for c in clients]
    assert len({f.payload for f in frames}) == 1 and all(f.rsv1 for f in frames)
    data = zlib.decompressobj(-15).decompress(frames[0].payload + b"\x00\x00\xff\xff")
    assert data == b'{"id":1,"data":"' + text.encode() + b'"}'
    for c in clients:
        c.close()
