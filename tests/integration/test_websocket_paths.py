"""The WebSocket echo path's edges over real loopback sockets, plain and TLS: reads that fill
the input buffer exactly (another read must follow) or end short (a hang-up must not be
lost), many small frames across read boundaries, reading stopped at ``max_queue`` and resumed,
EOF and resets, a send that only partly fits, lingering after the closing handshake, frame
headers at the 125/126 and 65535/65536 boundaries, ``receive(timeout=...)`` and two greenlets
receiving."""

from __future__ import annotations

import contextlib
import os
import random
import select
import socket
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import WAIT, RunningServer  # noqa: E402
from ws_helpers import RawWebSocket, client_frame, close_frame  # noqa: E402

from tpd2py import App, Channel, Update, WebSocketClosed  # noqa: E402
from tpd2py.hub import get_hub, sleep  # noqa: E402
from tpd2py.wsframe import BINARY, CLOSE, PING, PONG, TEXT  # noqa: E402

BUFFER = 16384  # Config.buffer_size: one read's worth

closed_with: list[tuple[int, str]] = []


def make_app(**options: Any) -> App:
    app = App()

    @app.websocket("/echo", **options)
    def echo(ws: Any) -> None:
        try:
            for message in ws:
                ws.send(message)
        finally:
            closed_with.append((ws.close_code, ws.close_reason))

    @app.websocket("/close-after-one", **options)
    def close_after_one(ws: Any) -> None:
        ws.send(ws.receive())
        ws.close(4000, "enough")

    @app.websocket("/sizes", **options)
    def sizes(ws: Any) -> None:
        for message in ws:
            kind, _, n = message.partition(" ")
            size = int(n)
            if kind == "text":
                ws.send("x" * size)
            elif kind == "snowmen":  # 3 bytes a character: the length is the encoded one
                ws.send("☃" * size)
            elif kind == "bytearray":
                ws.send(bytearray(b"b" * size))
            else:
                ws.send(memoryview(b"m" * size))

    @app.websocket("/big", **options)
    def big(ws: Any) -> None:
        count = int(ws.receive())
        for i in range(count):
            ws.send(bytes([i % 251]) * 200_000)  # larger than the socket: a partial send
            ws.send(f"small {i}")  # queued behind it, in order

    @app.websocket("/timeouts", **options)
    def timeouts(ws: Any) -> None:
        while True:
            message = ws.receive(timeout=0.001)
            if message is not None:
                ws.send(message)

    @app.websocket("/stale-timer", **options)
    def stale_timer(ws: Any) -> None:
        ws.send(ws.receive(timeout=0.05))  # the message comes first
        sleep(0.1)  # past that timeout: its timer must not wake the next wait
        ws.send(repr(ws.receive()))
        ws.send(next(iter(ws)))

    @app.websocket("/two-readers", **options)
    def two_readers(ws: Any) -> None:
        def other() -> None:
            for message in ws:
                ws.send("other " + message)

        get_hub().spawn(other)
        sleep(0)  # the other greenlet parks in receive first
        try:
            ws.receive()
        except RuntimeError as e:
            ws.send(f"refused: {e}")
        sleep(60)  # keep the handler (the socket stays open while the other one reads)

    @app.websocket("/flood", **options)
    def flood(ws: Any) -> None:
        try:
            while True:
                ws.send(b"f" * 65536)
        except WebSocketClosed:
            closed_with.append((ws.close_code, "send refused"))

    @app.websocket("/either", **options)
    def either(ws: Any) -> None:
        after = room.version
        ws.send("ready")
        while True:
            event = ws.receive_or(room, after, timeout=0.001)
            if event is None:
                continue
            if isinstance(event, Update):
                after = event.version
                ws.send("update " + ",".join(str(m.data) for m in event))
            else:
                ws.send("message " + event)

    @app.websocket("/patient", **options)
    def patient(ws: Any) -> None:
        while True:
            message = ws.receive(timeout=3600)
            if message is not None:
                ws.send(message)

    @app.websocket("/echo-peak", **options)
    def echo_peak(ws: Any) -> None:
        peaks.clear()
        for message in ws:
            ws.send(message)
            peaks.append(ws._conn.out.size)  # what the sends left queued in the server

    @app.websocket("/gated", **options)
    def gated(ws: Any) -> None:
        gate.wait(gate.version, timeout=None)  # behind until the test opens the gate
        for message in ws:
            ws.send(message)

    return app


room = Channel()
gate = Channel()
peaks: list[int] = []
GATHER_LIMIT = 65536


@pytest.fixture(params=["plain", "tls"])
def transport(request: Any, tmp_path: Path) -> Any:
    """None (plain TCP), or (server transport, client context) for TLS."""
    if request.param == "plain":
        return None
    trustme = pytest.importorskip("trustme", reason="needs trustme (the test extra)")
    from tpd2py.tls import TLSSettings

    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return TLSSettings(str(tmp_path / "server.pem")).wrap, context


def start(server: Any, transport: Any, **options: Any) -> RunningServer:
    closed_with.clear()
    if transport is None:
        return server(make_app(**options), allow_errors=False)  # type: ignore[no-any-return]
    return server(make_app(**options), allow_errors=False,  # type: ignore[no-any-return]
                  transport=transport[0])


def connect(srv: RunningServer, transport: Any, path: str, rcvbuf: int = 0) -> RawWebSocket:
    ws = RawWebSocket(srv.address, rcvbuf=rcvbuf)
    if transport is not None:
        ws.sock = transport[1].wrap_socket(ws.sock, server_hostname="127.0.0.1")
    ws.open(path)
    return ws


def expect_end(ws: RawWebSocket) -> bytes:
    """Read to the end of the stream (EOF, or TLS's close_notify): what came; a reset fails."""
    rest = b""
    while True:
        try:
            data = ws.sock.recv(65536)
        except ConnectionResetError:
            raise AssertionError("the server reset the connection") from None
        except ssl.SSLEOFError:
            break  # EOF without close_notify: the end all the same
        if not data:
            break
        rest += data
    return rest


def fin(ws: RawWebSocket) -> None:
    """Half-close the TCP connection (over TLS: no close_notify, the socket's own end; the
    TLS layer goes on decrypting what the server still sends)."""
    with socket.socket(fileno=os.dup(ws.sock.fileno())) as raw:
        raw.shutdown(socket.SHUT_WR)


def send_while_reading(ws: RawWebSocket, data: bytes) -> None:
    """Send ``data`` while taking in what the server sends meanwhile (into ``ws.buf``), so
    neither side's buffers fill up: in this thread, as a TLS socket must not be read and
    written from two threads at once."""
    sock = ws.sock
    sock.setblocking(False)
    view = memoryview(data)
    try:
        while view:
            readable, writable, _ = select.select([sock], [sock], [], WAIT)
            assert readable or writable, "the server neither reads nor writes"
            if writable:
                with contextlib.suppress(BlockingIOError, ssl.SSLWantWriteError,
                                         ssl.SSLWantReadError):
                    view = view[sock.send(view[:65536]):]
            if readable:
                try:
                    got = sock.recv(65536)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                assert got, "the server closed while the client was sending"
                ws.buf += got
    finally:
        sock.settimeout(WAIT)


def frame_of_total(size: int, opcode: int = BINARY, fill: bytes = b"f") -> bytes:
    """A masked client frame of exactly ``size`` bytes on the wire."""
    head = 2 + 4 + (2 if size - 6 >= 126 else 0)
    assert 126 <= size - 8 < 65536 or size - 6 < 126
    frame = client_frame(opcode, fill * (size - head))
    assert len(frame) == size
    return frame


# -- reads that fill the buffer, reads that end short ---------------------------------------------

@pytest.mark.parametrize("total", [BUFFER - 1, BUFFER, BUFFER + 1, 2 * BUFFER])
def test_a_frame_that_fills_the_read_buffer_exactly_is_answered(
        server: Any, transport: Any, total: int) -> None:
    srv = start(server, transport)
    ws = connect(srv, transport, "/echo")
    if total == 2 * BUFFER:  # two frames, each one read's worth, in one write
        frames = [frame_of_total(BUFFER, fill=b"a"), frame_of_total(BUFFER, fill=b"b")]
    else:
        frames = [frame_of_total(total)]
    ws.send(b"".join(frames))
    for frame, fill in zip(frames, b"ab" if len(frames) == 2 else b"f", strict=True):
        head = 8 if len(frame) - 6 >= 126 else 6
        assert ws.read_frame().payload == bytes([fill]) * (len(frame) - head)
    # The read that filled the buffer was followed by one that found nothing: the next
    # message brings a new edge and is read.
    ws.send(client_frame(TEXT, b"after"))
    assert ws.read_frame().payload == b"after"
    ws.send(close_frame(1000))
    assert ws.read_frame().opcode == CLOSE
    expect_end(ws)
    ws.close()
    srv.wait_closed(1)


def test_many_small_frames_across_read_boundaries(server: Any, transport: Any) -> None:
    """Frames of random sizes in one large write: read boundaries fall inside headers,
    masks and payloads; more than max_queue messages come in one read, so reading stops
    and resumes many times. Every message comes back, in order, then the closing handshake."""
    srv = start(server, transport, max_queue=3)
    ws = connect(srv, transport, "/echo")
    rng = random.Random(6455)
    messages = [bytes([65 + i % 26]) * rng.randrange(0, 300) for i in range(3000)]
    frames = b"".join(client_frame(TEXT if i % 2 else BINARY, m)
                      for i, m in enumerate(messages))
    send_while_reading(ws, frames)  # the echoes flow back while it sends
    for i, m in enumerate(messages):
        frame = ws.read_frame()
        assert (frame.opcode, frame.payload) == (TEXT if i % 2 else BINARY, m), i
    # A ping and a Close are answered from the hub, ahead of echoes still to be made: sent
    # once every echo is back.
    ws.send(client_frame(PING, b"last ping") + close_frame(1000))
    frame = ws.read_frame()
    assert (frame.opcode, frame.payload) == (PONG, b"last ping")
    frame = ws.read_frame()
    assert frame.opcode == CLOSE and frame.close_code == 1000
    assert expect_end(ws) == b""
    ws.close()
    srv.wait_closed(1)
    srv.sync()
    assert closed_with == [(1000, "")]


@pytest.mark.parametrize("queue", [1, 16])
def test_a_hangup_while_reading_is_stopped_still_closes(server: Any, transport: Any,
                                                       queue: int) -> None:
    """Messages then the client's FIN (no Close) while the handler is behind: the FIN is not
    lost behind the stopped reading; the connection ends (1006) once the input is read."""
    srv = start(server, transport, max_queue=queue)
    ws = connect(srv, transport, "/echo")
    ws.send(b"".join(client_frame(BINARY, b"%05d" % i * 40) for i in range(2000)))
    fin(ws)
    data = expect_end(ws)
    ws.close()
    srv.wait_closed(1)
    srv.sync()
    assert closed_with == [(1006, "")]
    assert len(data) <= 2000 * 204


@pytest.mark.parametrize("how", ["fin", "reset"])
def test_a_message_and_the_end_in_one_segment(server: Any, how: str) -> None:
    """A short read that also carries the end: the end is seen (no hang, nothing logged)."""
    srv = start(server, None)
    ws = connect(srv, None, "/echo")
    ws.send(client_frame(TEXT, b"hello"))
    assert ws.read_frame().payload == b"hello"
    if how == "reset":
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        ws.send(client_frame(TEXT, b"x" * 50_000))  # unread input: close() sends a reset
        ws.close()
    else:
        ws.send(client_frame(TEXT, b"bye"))
        ws.sock.shutdown(socket.SHUT_WR)
        expect_end(ws)
        ws.close()
    srv.wait_closed(1)
    srv.sync()
    assert closed_with == [(1006, "")]


def test_a_reset_while_reading_is_stopped(server: Any, transport: Any) -> None:
    srv = start(server, transport, max_queue=1)
    ws = connect(srv, transport, "/echo", rcvbuf=4096)
    ws.send(b"".join(client_frame(BINARY, b"r" * 1000) for _ in range(500)))
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    ws.close()  # echoes unread: a reset
    srv.wait_closed(1)
    srv.sync()
    assert closed_with == [(1006, "")]


# -- output ------------------------------------------------------------------------------------

def test_frame_headers_at_the_length_boundaries(server: Any) -> None:
    srv = start(server, None)
    ws = connect(srv, None, "/sizes")
    cases = [("text", 0, TEXT, 0), ("text", 1, TEXT, 1), ("text", 125, TEXT, 125),
             ("text", 126, TEXT, 126), ("text", 65535, TEXT, 65535),
             ("text", 65536, TEXT, 65536), ("snowmen", 41, TEXT, 123),
             ("snowmen", 42, TEXT, 126), ("bytearray", 125, BINARY, 125),
             ("bytearray", 126, BINARY, 126), ("memoryview", 0, BINARY, 0),
             ("memoryview", 70_000, BINARY, 70_000)]
    for kind, n, opcode, length in cases:
        ws.send(client_frame(TEXT, f"{kind} {n}".encode()))
        # The raw header: 7-bit, 16-bit or 64-bit length, minimally encoded (RFC 6455 §5.2).
        while len(ws.buf) < 2:
            ws._fill()
        b0, b1 = ws.buf[0], ws.buf[1]
        assert b0 == 0x80 | opcode, (kind, n)
        assert b1 == (length if length < 126 else 126 if length < 65536 else 127), (kind, n)
        frame = ws.read_frame()
        assert frame.fin and len(frame.payload) == length, (kind, n)
        if kind == "snowmen":
            assert frame.payload.decode() == "☃" * n
    ws.close()


def test_a_send_that_only_partly_fits_keeps_the_order(server: Any, transport: Any) -> None:
    """200 KB frames to a client with a small receive window: the inline send's first try
    sends part (or nothing), the rest is queued and the handler waits; the small message
    sent next goes after it. Everything arrives whole and in order."""
    srv = start(server, transport)
    ws = connect(srv, transport, "/big", rcvbuf=4096)
    ws.send(client_frame(TEXT, b"6"))
    for i in range(6):
        frame = ws.read_frame()
        assert frame.opcode == BINARY and frame.payload == bytes([i % 251]) * 200_000, i
        frame = ws.read_frame()
        assert (frame.opcode, frame.payload) == (TEXT, f"small {i}".encode())
    ws.send(close_frame(1000))
    assert ws.read_frame().opcode == CLOSE
    expect_end(ws)
    ws.close()


# -- the closing handshake and the linger --------------------------------------------------------

def test_input_during_the_linger_is_dropped_until_the_fin(server: Any, transport: Any) -> None:
    """The server closes; the client sends much more (data, then its Close, then more data:
    several reads' worth in each state) before its FIN: the server answers nothing more,
    drops it all and ends with EOF, never a reset."""
    srv = start(server, transport)
    ws = connect(srv, transport, "/close-after-one")
    ws.send(client_frame(TEXT, b"one"))
    assert ws.read_frame().payload == b"one"
    frame = ws.read_frame()
    assert frame.opcode == CLOSE and frame.close_code == 4000
    flood = b"".join(client_frame(BINARY, b"d" * 10_000) for _ in range(10))
    ws.send(flood + client_frame(PING, b"unanswered") + close_frame(4000) + flood)
    fin(ws)
    assert expect_end(ws) == b""  # no pong, no data: only the end
    ws.close()
    srv.wait_closed(1)


def test_a_client_close_with_messages_in_the_same_read(server: Any, transport: Any) -> None:
    srv = start(server, transport)
    ws = connect(srv, transport, "/echo")
    ws.send(client_frame(TEXT, b"a") + client_frame(PING, b"p") + close_frame(1001, b"away"))
    frames = []
    while True:
        frame = ws.read_frame()
        frames.append((frame.opcode, frame.payload))
        if frame.opcode == CLOSE:
            break
    assert frames[-1] == (CLOSE, (1001).to_bytes(2, "big"))
    assert (PONG, b"p") in frames
    assert expect_end(ws) == b""
    ws.close()
    srv.wait_closed(1)
    srv.sync()
    assert closed_with == [(1001, "away")]


# -- waiting: timeouts, two readers ------------------------------------------------------------

def test_receive_with_a_timeout_echoes_each_message_once(server: Any) -> None:
    srv = start(server, None)
    ws = connect(srv, None, "/timeouts")
    messages = [b"m%d" % i for i in range(300)]
    sender = threading.Thread(
        target=lambda: [ws.send(client_frame(TEXT, m)) for m in messages], daemon=True)
    sender.start()
    assert [ws.read_frame().payload for _ in messages] == messages
    sender.join(WAIT)
    ws.close()


def test_a_past_timeout_does_not_wake_a_later_wait(server: Any) -> None:
    srv = start(server, None)
    ws = connect(srv, None, "/stale-timer")
    ws.send(client_frame(TEXT, b"first"))
    assert ws.read_frame().payload == b"first"
    ws.send(client_frame(TEXT, b"second"))
    assert ws.read_frame().payload == b"'second'"  # not 'None'
    ws.send(client_frame(TEXT, b"third"))
    assert ws.read_frame().payload == b"third"
    ws.close()


def test_a_second_greenlet_receiving_is_refused(server: Any) -> None:
    srv = start(server, None)
    ws = connect(srv, None, "/two-readers")
    assert ws.read_frame().payload == b"refused: two greenlets receive on one WebSocket"
    ws.send(client_frame(TEXT, b"x"))
    assert ws.read_frame().payload == b"other x"
    ws.close()


def test_closed_while_iterating_ends_the_loop(server: Any) -> None:
    srv = start(server, None)
    ws = connect(srv, None, "/echo")
    srv.sync()  # the handler is parked in its loop
    ws.send(close_frame(1000))
    assert ws.read_frame().close_code == 1000
    expect_end(ws)
    ws.close()
    srv.wait_closed(1)
    srv.sync()
    assert closed_with == [(1000, "")]


def test_a_client_that_never_reads_is_closed_after_write_timeout(server: Any) -> None:
    """send waits while the socket is full, at most write_timeout: then the connection
    closes and the waiting send raises WebSocketClosed (nothing logged)."""
    closed_with.clear()
    srv = server(make_app(), allow_errors=False, write_timeout=0.2)
    ws = connect(srv, None, "/flood", rcvbuf=4096)
    srv.wait_closed(1)
    srv.sync()
    assert closed_with == [(1006, "send refused")]
    ws.close()


def test_receive_or_with_timeouts_misses_no_message_and_no_update(server: Any) -> None:
    """Three wake-ups race for one park (a message, a channel update, the timeout): each
    park is woken once, nothing is lost or delivered twice."""
    srv = start(server, None)
    ws = connect(srv, None, "/either")
    assert ws.read_frame().payload == b"ready"
    messages = [b"%d" % i for i in range(200)]
    for i, m in enumerate(messages):
        ws.send(client_frame(TEXT, m))
        if i % 4 == 0:
            srv.call(lambda i=i: room.publish(i))
    got: list[bytes] = []
    updates: list[str] = []
    while len(got) < len(messages) or len(updates) < 50:
        payload = ws.read_frame().payload.decode()
        kind, _, rest = payload.partition(" ")
        if kind == "message":
            got.append(rest.encode())
        else:
            updates.extend(rest.split(","))
    assert got == messages
    assert updates == [str(i) for i in range(0, 200, 4)]
    ws.close()


def test_receive_with_a_long_timeout_keeps_no_timer_per_message(server: Any) -> None:
    """Each receive(timeout=...) arms a timer and cancels it when a message comes first: the
    cancelled timers must not pile up in the hub for the whole timeout (the client's message
    rate times an hour of them, each holding the handler's greenlet)."""
    srv = start(server, None)
    ws = connect(srv, None, "/patient")
    for i in range(5000):  # one at a time: the handler parks (and arms a timer) for each
        ws.send(client_frame(TEXT, b"%d" % i))
        assert ws.read_frame().payload == b"%d" % i
    timers = srv.call(lambda: len(get_hub().timers))
    assert timers < 2500, timers
    ws.close()


@pytest.mark.parametrize("check", ["ping", "partial"])
def test_a_client_is_not_blamed_for_input_the_server_left_unread(server: Any,
                                                                 check: str) -> None:
    """Reading stops at max_queue while the handler is behind; what the client sends
    meanwhile waits in the kernel: a pong or the rest of a message. The client must not be
    closed as a dead peer (no pong seen) or as a trickler (read_timeout) for bytes the server
    did not read. A control connection that is really silent (or really trickles) is closed
    by the same sweeps: once it is, the other would have been too."""
    if check == "ping":
        options = {"ping_interval": 0.1, "ping_timeout": 0.1}
    else:
        options = {"ping_interval": None, "read_timeout": 0.2}
    srv = start(server, None, max_queue=1, **options)
    victim = connect(srv, None, "/gated")
    third = client_frame(TEXT, b"three" * 10)
    victim.send(client_frame(TEXT, b"one") + client_frame(TEXT, b"two") + third[:10])
    srv.sync()  # read: two messages queued (reading stops), part of the third in the parser
    victim.send(third[10:] + client_frame(TEXT, b"four"))  # unread: reading has stopped
    srv.sync()
    control = connect(srv, None, "/echo")
    if check == "ping":
        assert control.read_frame().opcode == PING  # never answered
        expect_end(control)
    else:
        control.send(client_frame(TEXT, b"x" * 100)[:10])
        assert control.read_frame().close_code == 1008
        expect_end(control)
    control.close()
    srv.wait_closed(1)
    assert srv.open_connections() == 1  # the victim is still there
    srv.call(lambda: gate.publish("go"))
    got = []
    while len(got) < 4:
        frame = victim.read_frame()
        if frame.opcode == PING:
            victim.send(client_frame(PONG, frame.payload))
            continue
        got.append(frame.payload)
    assert got == [b"one", b"two", b"three" * 10, b"four"]
    victim.send(close_frame(1000))
    frame = victim.read_frame()
    while frame.opcode == PING:
        frame = victim.read_frame()
    assert frame.close_code == 1000
    victim.close()


@pytest.mark.parametrize("queue", [1, 16])
def test_a_close_notify_right_behind_messages_ends_the_connection(
        server: Any, transport: Any, queue: int) -> None:
    """TLS: messages and the client's close_notify (no Close frame) in one flight: the read
    that returns the last plaintext is short and no FIN has come yet; the end must still be
    seen (the transport shuts its read side down so that an edge reports it)."""
    if transport is None:
        pytest.skip("TLS only: close_notify (the plain FIN case is tested above)")
    srv = start(server, transport, max_queue=queue)
    ws = connect(srv, transport, "/echo")
    ws.send(b"".join(client_frame(TEXT, b"m%d" % i) for i in range(100)))
    ws.sock.setblocking(False)
    # Sends close_notify, then waits for the server's: that read fails on the echoes
    # (SSLWantReadError or APPLICATION_DATA_AFTER_CLOSE_NOTIFY); ours went out all the same.
    with contextlib.suppress(ssl.SSLError):
        ws.sock.unwrap()
    with socket.socket(fileno=os.dup(ws.sock.fileno())) as raw:
        raw.settimeout(WAIT)
        while raw.recv(65536):  # ciphertext: the echoes, the server's close_notify, EOF
            pass
    ws.close()
    srv.wait_closed(1)
    srv.sync()
    assert closed_with == [(1006, "")]



def test_answers_gathered_for_a_burst_are_bounded(server: Any) -> None:
    """A send while more messages wait is gathered (one write for a burst's answers), but not
    without bound: a handler answering a burst that fills the kernel's receive buffer (MBs,
    once autotuned) would otherwise queue every answer in the server before the first write,
    where a send used to queue at most one message (docs/websocket.md, "Limits and
    backpressure")."""
    srv = start(server, None)
    ws = connect(srv, None, "/echo-peak")
    burst = b"".join(client_frame(BINARY, b"%06d" % i * 5) for i in range(8000))  # 288 KB

    def send() -> None:
        with contextlib.suppress(OSError):
            ws.sock.sendall(burst)

    sender = threading.Thread(target=send, daemon=True)
    with srv.frozen():  # the burst waits in the kernel: the handler finds it all at once
        sender.start()
    for i in range(8000):
        assert ws.read_frame().payload == b"%06d" % i * 5
    sender.join(WAIT)
    assert max(peaks) <= GATHER_LIMIT + 32, max(peaks)
    ws.close()
