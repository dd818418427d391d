"""Pipelining: order, byte-at-a-time input, errors after valid requests (peers #35), one sendmsg
for a batch of responses, and reading on when a recv fills the whole input buffer."""

from __future__ import annotations

import json
import math

from tpd2py import conn as conn_module


def _get(i: int) -> bytes:
    return b"GET /query?i=%d HTTP/1.1\r\nHost: a\r\n\r\n" % i


def _check_in_order(replies, n):
    assert [r.status for r in replies] == [200] * n
    assert [json.loads(r.body)["query"]["i"] for r in replies] == [str(i) for i in range(n)]


def test_hundred_pipelined_requests_in_one_send_answered_in_order(srv):
    with srv.connect() as sock:
        sock.sendall(b"".join(_get(i) for i in range(100)))
        replies = srv.read_replies(sock, 100)
    _check_in_order(replies, 100)


def test_pipelined_mix_of_methods_bodies_and_errors(srv):
    requests = (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                + b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
                + b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\n"
                + b"GET /error HTTP/1.1\r\nHost: a\r\n\r\n"
                + b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"2\r\nde\r\n0\r\n\r\n"
                + b"GET /stream?n=2 HTTP/1.1\r\nHost: a\r\n\r\n"
                + b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    methods = ["POST", "HEAD", "GET", "GET", "POST", "GET", "GET"]
    ex = srv.exchange(requests, methods=methods)
    assert ex.statuses == [200, 200, 404, 500, 200, 200, 200]
    bodies = [r.body for r in ex.replies]
    assert bodies[0] == b"abc"
    assert bodies[1] == b""
    assert bodies[4] == b"de"
    assert bodies[5] == b"part 0\npart 1\n"
    assert bodies[6] == b"Hello, World!"


def test_request_split_byte_by_byte(srv):
    request = (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"
               + _get(0))
    with srv.connect() as sock:
        for i in range(len(request)):
            sock.sendall(request[i:i + 1])
            srv.sync()  # the server has read this byte alone before the next one is sent
        replies = srv.read_replies(sock, 2, methods=["POST", "GET"])
    assert replies[0].body == b"hello world"
    assert json.loads(replies[1].body)["query"] == {"i": "0"}


def test_p35_valid_request_then_garbage_gets_full_response_then_400(srv):
    ex = srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nINVALID\r\n\r\n")
    assert ex.statuses == [200, 400]
    assert ex.replies[0].body == b"Hello, World!"
    assert ex.replies[1].header("Connection") == "close"


def test_p35_many_valid_requests_then_garbage(srv):
    ex = srv.exchange(b"".join(_get(i) for i in range(10)) + b"\x16\x03\x01\x02\x00\r\n\r\n")
    _check_in_order(ex.replies[:10], 10)
    assert ex.statuses[10:] == [400]


def _sendmsg_calls(srv) -> int:
    """The server's own count of sendmsg calls (``Server.statistics()``), read in its thread."""
    return srv.call(lambda: srv.server.statistics()["sendmsg_calls"])


def test_pipelined_batch_leaves_in_one_sendmsg(srv):
    n = min(50, conn_module.MAX_QUEUED_RESPONSES)
    with srv.connect() as sock:
        sock.sendall(_get(0))
        srv.read_replies(sock, 1)
        before = _sendmsg_calls(srv)
        with srv.frozen():  # the whole batch is in the kernel before the server reads any
            sock.sendall(b"".join(_get(i) for i in range(n)))
        replies = srv.read_replies(sock, n)
        calls = _sendmsg_calls(srv) - before
    _check_in_order(replies, n)
    assert calls == 1, f"{n} pipelined responses took {calls} sendmsg calls"


def test_hundred_pipelined_responses_use_a_bounded_number_of_sendmsg(srv):
    with srv.connect() as sock:
        sock.sendall(_get(0))
        srv.read_replies(sock, 1)
        before = _sendmsg_calls(srv)
        with srv.frozen():
            sock.sendall(b"".join(_get(i) for i in range(100)))
        replies = srv.read_replies(sock, 100)
        calls = _sendmsg_calls(srv) - before
    _check_in_order(replies, 100)
    # Backpressure flushes every MAX_QUEUED_RESPONSES responses; nothing more.
    assert calls == math.ceil(100 / conn_module.MAX_QUEUED_RESPONSES), calls


def test_full_buffer_read_at_request_boundary_keeps_reading(srv):
    request = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: "
    request += b"p" * (64 - len(request) - 4) + b"\r\n\r\n"
    assert len(request) == 64 and srv.config.buffer_size % 64 == 0
    count = 2 * srv.config.buffer_size // 64
    with srv.connect() as sock:
        sock.sendall(request)
        srv.read_replies(sock, 1)
        srv.sync()  # idle now: the next bytes arrive as one edge
        with srv.frozen():
            sock.sendall(request * count)
        replies = srv.read_replies(sock, count, timeout=3)
    assert len(replies) == count


def test_p36_thousands_of_pipelined_requests_without_reading(srv):
    # The client writes 5000 requests before reading anything; the server must not deadlock
    # (both sides blocked on full buffers) or queue without bound: it stops reading until
    # its responses drain, so the writer thread blocks, then everything completes in order.
    import threading

    n = 5000
    payload = b"".join(_get(i) for i in range(n))
    with srv.connect() as sock:
        writer = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
        writer.start()
        replies = srv.read_replies(sock, n, timeout=30)
        writer.join(10)
        assert not writer.is_alive()
    _check_in_order(replies, n)
