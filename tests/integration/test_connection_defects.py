"""Regression tests for defects the connection redesign fixed, end to end over raw sockets; each
test is named after what it caught."""

from __future__ import annotations

import logging
import socket
import struct

import pytest

from tests.conftest import read_replies


def chunked_get(path: bytes, body: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n%s" % (path, body)


BAD_CHUNKED = {
    "missing-last-chunk-then-garbage": b"3\r\nabc\r\nthis is not a chunk\r\n",
    "space-after-size": b"3 \r\nabc\r\n0\r\n\r\n",
    "data-not-ending-in-crlf": b"3\r\nabcX\r\n0\r\n\r\n",
    "plus-sign": b"+3\r\nabc\r\n0\r\n\r\n",
    "minus-sign": b"-3\r\nabc\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("body", BAD_CHUNKED.values(), ids=BAD_CHUNKED.keys())
@pytest.mark.parametrize("path", [b"/", b"/nowhere", b"/post-only"], ids=["200", "404", "405"])
def test_malformed_chunked_body_a_handler_left_unread_gets_400_not_the_handlers_status(
        srv, path: bytes, body: bytes) -> None:
    # The client does not close: the server must not wait for more (or for EOF) to answer.
    result = srv.exchange(chunked_get(path, body))
    assert result.statuses == [400]
    assert result.closed


def test_finished_response_is_sent_before_waiting_for_the_next_requests_body(srv) -> None:
    with srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        # Well under the 30 s body timeout: the GET's answer must not wait for the POST's body.
        [hello] = read_replies(sock, 1, timeout=5.0)
        assert hello.status == 200 and hello.body == b"Hello, World!"
        sock.sendall(b"defghij")
        [echo] = read_replies(sock, 1)
        assert echo.status == 200 and echo.body == b"abcdefghij"


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_client_gone_mid_upload_is_not_an_error(server, caplog, reset: bool) -> None:
    srv = server()  # fails the test on hub/server errors; caplog sees tpd2py.conn too
    with caplog.at_level(logging.DEBUG, logger="tpd2py"):
        sock = srv.connect()
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n"
                     + b"u" * 1000)
        srv.sync()  # the handler is reading the body
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        srv.wait_closed(1)
        assert srv.get("/").status == 200  # still serving
    noisy = [r for r in caplog.records if r.name.startswith("tpd2py")
             and (r.levelno >= logging.ERROR or r.exc_info)]
    assert not noisy, [(r.name, r.getMessage()) for r in noisy]


@pytest.mark.parametrize(("request_line", "status", "allow"), [
    (b"FOO /nowhere", 501, None),
    (b"DELETE /nowhere", 501, None),
    (b"DELETE /", 405, "GET, HEAD"),
    (b"FOO /", 405, "GET, HEAD"),
    (b"GET /nowhere", 404, None),
])
def test_unknown_method_on_unknown_path_is_501_not_405_or_404(
        srv, request_line: bytes, status: int, allow: str | None) -> None:
    with srv.connect() as sock:
        sock.sendall(request_line + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        [reply] = read_replies(sock, 1)
    assert reply.status == status
    assert reply.header("Allow") == allow


def test_413_has_the_rfc_9110_reason_phrase(srv) -> None:
    result = srv.exchange(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                          % (srv.config.max_body_size + 1))
    assert result.raw.startswith(b"HTTP/1.1 413 Content Too Large\r\n")


def test_fragment_in_the_target_gets_400(srv) -> None:
    result = srv.exchange(b"GET /?name=x#frag HTTP/1.1\r\nHost: t\r\n\r\n")
    assert result.statuses == [400] and result.closed
