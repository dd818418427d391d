"""Request bodies end to end: Content-Length and chunked uploads, streaming, limits and
100-continue (peers #37)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket

import pytest


def _post(path: bytes, body: bytes, *fields: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    head = b"POST " + path + b" " + version + b"\r\nHost: a\r\n"
    head += b"".join(f + b"\r\n" for f in fields)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _chunked(path: bytes, chunks: list[bytes], *fields: bytes, trailer: bytes = b"") -> bytes:
    head = b"POST " + path + b" HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    head += b"".join(f + b"\r\n" for f in fields) + b"\r\n"
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return head + body + b"0\r\n" + trailer + b"\r\n"


def test_content_length_upload_echoed(srv):
    conn = srv.http()
    for body in (b"", b"x", b"hello world", bytes(range(256)) * 100):
        conn.request("POST", "/echo", body=body)
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == body
    conn.close()


def test_chunked_upload_echoed(srv):
    ex = srv.exchange(_chunked(b"/echo", [b"hello", b" ", b"world"], b"Connection: close"))
    assert ex.statuses == [200]
    assert ex.replies[0].body == b"hello world"


def test_chunked_upload_with_extensions_and_trailers(srv):
    head = (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n")
    body = (b"5;name=value\r\nhello\r\n"
            b"6 ; quoted=\"a;b\"\r\n world\r\n"
            b"0;last\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n")
    ex = srv.exchange(head + body)
    assert ex.statuses == [200]
    assert ex.replies[0].body == b"hello world"


def test_chunked_upload_keeps_connection_for_the_next_request(srv):
    with srv.connect() as sock:
        sock.sendall(_chunked(b"/echo", [b"abc"]) + _post(b"/echo", b"def"))
        replies = srv.read_replies(sock, 2, methods=["POST", "POST"])
    assert [r.body for r in replies] == [b"abc", b"def"]


def test_chunked_upload_fed_in_whole_chunks_across_reads(srv):
    # Every send ends on a chunk boundary, so no line straddles two reads.
    with srv.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"3\r\nabc\r\n", b"2\r\nde\r\n", b"0\r\n\r\n"):
            srv.sync()
            sock.sendall(piece)
        replies = srv.read_replies(sock, 1, methods=["POST"])
    assert replies[0].body == b"abcde"


@pytest.mark.parametrize("cut", [1, 5, 8, 15, 16, 19],
                         ids=["inside-size", "inside-ext", "before-size-lf", "before-data-lf",
                              "after-data-crlf", "before-last-chunk-lf"])
def test_chunk_line_split_across_reads(cli_server, cut):
    # Regression (BUG #4): the chunked reader fed the same partial line to the decoder again
    # and again, freezing the hub. A subprocess, so a relapse cannot hang the suite.
    srv = cli_server("bench.hello:app")
    body = b"5;ext=1\r\nhello\r\n0\r\n\r\n"
    with srv.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + body[:cut])
        # The subprocess has no sync(): a round trip on another connection proves it read.
        assert srv.get("/").status == 200
        sock.sendall(body[cut:])
        replies = srv.read_replies(sock, 1, methods=["POST"], timeout=3)
    assert replies[0].body == b"hello"


def test_large_upload_through_stream(srv):
    data = hashlib.sha256(b"seed").digest() * (4 * 1024 * 1024 // 32)  # 4 MiB
    conn = srv.http(timeout=30)
    conn.request("POST", "/upload", body=data)
    resp = conn.getresponse()
    assert resp.status == 200
    result = json.loads(resp.read())
    assert result["length"] == len(data)
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["pieces"] > 1, "stream() should hand the body over in pieces"
    conn.close()


def test_large_chunked_upload_through_stream_in_buffer_sized_chunks(srv):
    # Chunks of exactly one input buffer: every boundary lines up with a read, so this stays
    # clear of BUG #4 while still crossing many buffer refills.
    piece = bytes(range(256)) * 64  # 16 KiB
    chunks = [piece] * 64  # 1 MiB
    ex = srv.exchange(_chunked(b"/upload", chunks, b"Connection: close"), timeout=30)
    result = json.loads(ex.replies[0].body)
    assert result["length"] == len(piece) * 64
    assert result["sha256"] == hashlib.sha256(piece * 64).hexdigest()


def test_body_over_max_body_size_gets_413_before_the_handler(server):
    srv = server(max_body_size=1000)
    ex = srv.exchange(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n")
    assert ex.statuses == [413]
    assert ex.replies[0].header("Connection") == "close"


def test_body_at_max_body_size_is_accepted(server):
    srv = server(max_body_size=1000)
    ex = srv.exchange(_post(b"/echo", b"b" * 1000, b"Connection: close"))
    assert ex.statuses == [200]
    assert len(ex.replies[0].body) == 1000


def test_chunked_body_over_max_body_size_gets_413(server):
    srv = server(max_body_size=1000)
    ex = srv.exchange(_chunked(b"/echo", [b"c" * 600, b"c" * 600]))
    assert ex.statuses == [413]


def test_413_after_pipelined_request_keeps_order(server):
    srv = server(max_body_size=10)
    ex = srv.exchange(_post(b"/echo", b"small") + _post(b"/echo", b"far too large body")
                      + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", methods=["POST", "POST", "GET"])
    assert ex.statuses == [200, 413]
    assert ex.replies[0].body == b"small"


def test_unread_small_body_is_drained_and_connection_kept(srv):
    with srv.connect() as sock:
        sock.sendall(_post(b"/ignore-body", b"z" * 1000) + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        replies = srv.read_replies(sock, 2, methods=["POST", "GET"])
    assert [r.status for r in replies] == [200, 200]
    assert replies[0].header("Connection") is None
    assert replies[1].body == b"Hello, World!"


def test_unread_large_body_closes_instead_of_reading_it_as_requests(srv):
    body = b"GET /path/smuggled HTTP/1.1\r\nHost: a\r\n\r\n" * 5000
    ex = srv.exchange(_post(b"/ignore-body", body), methods=["POST"])
    assert ex.statuses == [200]
    assert ex.replies[0].header("Connection") == "close"
    assert b"smuggled" not in ex.raw


# -- Expect: 100-continue (RFC 9110 §10.1.1, peers #37) ---------------------------------------


def test_expect_100_continue_client_waits_for_100_then_sends(srv):
    with srv.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                     b"Content-Length: 5\r\n\r\n")
        interim = sock.recv(4096)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        replies = srv.read_replies(sock, 1, methods=["POST"])
    assert [r.status for r in replies] == [200]
    assert replies[0].body == b"hello"


def test_expect_100_continue_with_body_already_sent_gets_no_100(srv):
    ex = srv.exchange(b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                      b"Connection: close\r\nContent-Length: 5\r\n\r\nhello", methods=["POST"])
    assert ex.statuses == [200]
    assert ex.replies[0].body == b"hello"


def test_p37_handler_not_reading_body_gets_no_late_100(srv):
    with srv.connect() as sock:
        sock.sendall(b"POST /ignore-body HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                     b"Content-Length: 5\r\n\r\n")
        replies = srv.read_replies(sock, 1, methods=["POST"])
        assert [r.status for r in replies] == [200], "no 100 may come before or after it"
        # The client, never having seen 100, may still send the body: it must not become a
        # request, and no 100 may follow the final response.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /path/smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
        rest = srv.read_until_close(sock)
    final = replies[0]
    if final.header("Connection") != "close":
        pytest.fail("a server that skipped 100 must drain or close; it kept the connection")
    assert b"100 Continue" not in rest.raw
    assert b"smuggled" not in rest.raw


def test_p37_http10_expect_100_continue_is_ignored(srv):
    with srv.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        srv.sync()
        sock.sendall(b"hello")
        ex = srv.read_until_close(sock)
    ex.methods = ["POST"]
    assert ex.statuses == [200], "HTTP/1.0 clients get no 100 Continue"
    assert ex.replies[0].body == b"hello"


def test_expect_100_continue_on_a_413_gets_only_413(server):
    srv = server(max_body_size=10)
    with srv.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        ex = srv.read_until_close(sock)
    assert ex.statuses == [413]


def test_half_sent_body_then_close_costs_only_that_connection(srv):
    with srv.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
        srv.sync()
        sock.shutdown(socket.SHUT_WR)
        ex = srv.read_until_close(sock)
    assert 200 not in ex.statuses
    assert srv.get("/").status == 200


def test_expect_100_continue_behind_a_pipelined_request_keeps_order(srv):
    with srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                     b"Content-Length: 5\r\n\r\n")
        got = b""
        while b"100 Continue\r\n\r\n" not in got:
            more = sock.recv(4096)
            assert more, got
            got += more
        sock.sendall(b"hello")
        rest = srv.read_replies(sock, 1, methods=["POST"])
    first, after = got.split(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b"Hello, World!"), \
        "the GET's response goes out before the POST's 100"
    assert after == b"", "nothing can follow the 100 before the body is sent"
    assert rest[0].body == b"hello"


def test_expect_100_continue_with_chunked_body(srv):
    with srv.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"3\r\nabc\r\n0\r\n\r\n")
        replies = srv.read_replies(sock, 1, methods=["POST"])
    assert replies[0].body == b"abc"


def test_expect_100_continue_on_a_404_gets_no_100(srv):
    ex = srv.exchange(b"POST /missing HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                      b"Content-Length: 5\r\n\r\n", methods=["POST"])
    assert ex.statuses == [404]


def test_post_without_length_has_an_empty_body_not_411(srv):
    # RFC 9112 §6.3 item 7: no Content-Length and no Transfer-Encoding means length 0, so
    # 411 never applies; the next bytes are the next request.
    ex = srv.exchange(b"POST /echo HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                      methods=["POST", "GET"])
    assert ex.statuses == [200, 200]
    assert ex.replies[0].body == b""
    assert ex.replies[1].body == b"Hello, World!"
