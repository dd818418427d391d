"""Deadlines end to end (peers #41): slowloris heads, stalled and trickled bodies, idle
keep-alive, clients that never read. Timeouts are configured short; the server's sweep runs once
a second, so each test takes one to three seconds. Nothing here asserts a duration: a missing
deadline shows up as a connection the server never closes (every loop is bounded)."""

from __future__ import annotations

import select
import socket

from tpd2py import Timeout


def _trickle(srv, sock: socket.socket, data: bytes, every: float = 0.1):
    """Send ``data`` one byte per ``every`` seconds until the server answers or closes.

    The pause between bytes is the attack itself, and it is a select() on the socket, so the
    loop stops the moment the server reacts. Returns the Exchange, or fails if all was sent.
    """
    for i in range(len(data)):
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            return srv.read_until_close(sock)
        try:
            sock.sendall(data[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            return srv.read_until_close(sock)
    raise AssertionError("the server let the whole trickle through without a deadline")


def test_slowloris_head_cut_off_by_absolute_header_deadline(server):
    srv = server(header_timeout=0.5)
    head = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Slow: " + b"s" * 200
    with srv.connect() as sock:
        ex = _trickle(srv, sock, head)
    assert ex.statuses in ([408], [])
    assert srv.get("/").status == 200, "the server must keep serving others"


def test_slowloris_on_a_kept_alive_connection(server):
    # The header deadline starts again with the second request's first byte.
    srv = server(header_timeout=0.5)
    with srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        srv.read_replies(sock, 1)
        ex = _trickle(srv, sock, b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"s" * 200)
    assert ex.statuses in ([408], [])


def test_client_that_sends_one_byte_and_stops_is_closed(server):
    srv = server(header_timeout=0.3, keepalive_timeout=30)
    with srv.connect() as sock:
        sock.sendall(b"G")
        ex = srv.read_until_close(sock)
    assert ex.statuses in ([408], [])


def test_p41_content_length_then_stall_gets_408(server):
    srv = server(body_timeout=0.5)
    with srv.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 16000000\r\n\r\nabc")
        ex = srv.read_until_close(sock)
    assert ex.statuses in ([408], [])
    assert 200 not in ex.statuses


def test_p41_body_trickle_is_cut_by_minimum_rate(server):
    # Each byte buys 1/min_body_rate seconds, so one byte per 0.1 s cannot keep it alive.
    srv = server(body_timeout=1.0, min_body_rate=1000.0)
    with srv.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        ex = _trickle(srv, sock, b"b" * 1000)
    assert ex.statuses in ([408], [])


def test_chunked_body_stall_gets_408(server):
    srv = server(body_timeout=0.5)
    with srv.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"10\r\nabc")
        ex = srv.read_until_close(sock)
    assert ex.statuses in ([408], [])


def test_steady_upload_outlives_body_timeout(server):
    # An upload that lasts twice body_timeout but keeps making progress (64 KiB every 0.1 s,
    # far above min_body_rate) is never cut: each read buys more time.
    srv = server(body_timeout=1.0)
    pieces = 20
    with srv.connect() as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % (pieces * 65536))
        for _ in range(pieces):
            readable, _, _ = select.select([sock], [], [], 0.1)  # the pacing; stops early
            assert not readable, "the server answered (or closed) mid-upload"
            sock.sendall(b"u" * 65536)
        ex = srv.read_until_close(sock)
    assert ex.statuses == [200]


def test_idle_keep_alive_timeout_closes(server):
    srv = server(keepalive_timeout=0.3)
    conn = srv.http()
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"Hello, World!"
    srv.wait_closed(1)
    assert srv.open_connections() == 0
    conn.close()


def test_slow_handler_is_not_cut_by_header_or_keepalive_timeouts(server):
    srv = server(header_timeout=0.3, keepalive_timeout=0.3)
    r = srv.get("/slow?t=1.5")
    assert r.status == 200
    assert r.body == b"slept"


def _small_receiver(srv) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(srv.address)
    return sock


def test_write_timeout_closes_a_client_that_never_reads(server):
    srv = server(write_timeout=0.5)
    with _small_receiver(srv) as sock:
        sock.sendall(b"GET /big?n=32000000 HTTP/1.1\r\nHost: a\r\n\r\n")
        srv.wait_closed(1)  # the client has not read a byte
        ex = srv.read_until_close(sock)
    assert ex.raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert len(ex.raw) < 32_000_000, "the response should have been cut off"
    assert srv.get("/").status == 200


def test_write_timeout_on_a_streamed_response(server):
    srv = server(write_timeout=0.5)
    with _small_receiver(srv) as sock:
        sock.sendall(b"GET /stream?n=2000000 HTTP/1.1\r\nHost: a\r\n\r\n")
        srv.wait_closed(1)
        ex = srv.read_until_close(sock)
    assert ex.raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert not ex.raw.endswith(b"0\r\n\r\n")


def test_write_timeout_does_not_append_408_to_a_half_sent_response(server):
    # Regression (BUG #7): when the write deadline passed, the server queued a canned 408
    # behind the half-sent 200 and flushed again. Part of a 200 is on the wire: the only
    # honest end is closing. The client starts reading the moment the sweep throws the
    # deadline, so a 408 queued then would reach it.
    srv = server(write_timeout=0.5)
    with _small_receiver(srv) as sock:
        sock.sendall(b"GET /big?n=8000000 HTTP/1.1\r\nHost: a\r\n\r\n")
        srv.wait_thrown(Timeout)
        ex = srv.read_until_close(sock)
    assert ex.raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"HTTP/1.1 408" not in ex.raw
    assert len(ex.raw) < 8_000_000
