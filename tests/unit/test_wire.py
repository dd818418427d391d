"""wire.py as pure functions: tables of (arguments, expected bytes), and every produced head
parsed by h11 as a client would parse it, to show it is valid HTTP/1.1."""

from __future__ import annotations

import re
from types import SimpleNamespace

import h11
import pytest

from tpd2py import wire

DATE = b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
FIELDS = b"Content-Type: text/plain\r\n"


def client_events(data: bytes, method: bytes = b"GET", eof: bool = False) -> list:
    """What an h11 client that sent ``method /`` makes of ``data`` (up to end of message)."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "t")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    if eof:
        client.receive_data(b"")
    events = []
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            break
        events.append(event)
        if type(event) in (h11.EndOfMessage, h11.ConnectionClosed):
            break
    return events


def response_of(data: bytes, method: bytes = b"GET", eof: bool = False) -> tuple[h11.Response,
                                                                                bytes]:
    events = client_events(data, method, eof)
    assert type(events[0]) is h11.Response, events
    assert type(events[-1]) is h11.EndOfMessage, events
    body = b"".join(bytes(e.data) for e in events if type(e) is h11.Data)
    return events[0], body


@pytest.mark.parametrize(("status", "line"), [
    (200, b"HTTP/1.1 200 OK\r\n"),
    (204, b"HTTP/1.1 204 No Content\r\n"),
    (404, b"HTTP/1.1 404 Not Found\r\n"),
    (413, b"HTTP/1.1 413 Content Too Large\r\n"),
    (414, b"HTTP/1.1 414 URI Too Long\r\n"),
    (416, b"HTTP/1.1 416 Range Not Satisfiable\r\n"),
    (421, b"HTTP/1.1 421 Misdirected Request\r\n"),
    (422, b"HTTP/1.1 422 Unprocessable Content\r\n"),
    (599, b"HTTP/1.1 599 Unknown\r\n"),
])
def test_status_line_has_the_rfc_9110_phrase(status: int, line: bytes) -> None:
    assert wire.status_line(status) == line
    assert wire.STATUS_LINES.get(status, line) == line
    response, _ = response_of(line + b"Content-Length: 0\r\n\r\n")
    assert response.status_code == status and response.reason == line[13:-2]


def test_status_line_with_a_reason_of_its_own() -> None:
    assert wire.status_line(200, b"Fine") == b"HTTP/1.1 200 Fine\r\n"
    assert wire.status_line(799, b"Odd") == b"HTTP/1.1 799 Odd\r\n"


@pytest.mark.parametrize(("length", "connection", "expected"), [
    (5, b"", b"HTTP/1.1 200 OK\r\n" + FIELDS + b"Content-Length: 5\r\n" + DATE + b"\r\n"),
    (0, wire.CLOSE, b"HTTP/1.1 200 OK\r\n" + FIELDS + b"Content-Length: 0\r\n" + DATE
     + b"Connection: close\r\n\r\n"),
    (-1, wire.CLOSE, b"HTTP/1.1 200 OK\r\n" + FIELDS + DATE + b"Connection: close\r\n\r\n"),
])
def test_head(length: int, connection: bytes, expected: bytes) -> None:
    head = wire.head(wire.STATUS_LINES[200], FIELDS, length, DATE, connection)
    assert head == expected
    body = b"x" * length if length >= 0 else b"xxx"
    response, got = response_of(head + body, eof=length < 0)  # no length: close-delimited
    assert got == body
    assert (b"content-type", b"text/plain") in response.headers


def test_head_of_a_chunked_response_parses() -> None:
    head = wire.head(wire.STATUS_LINES[200], wire.CHUNKED, -1, DATE, b"")
    data = head + wire.chunk_frame(3) + b"abc" + wire.CRLF + wire.LAST_CHUNK
    assert response_of(data)[1] == b"abc"


@pytest.mark.parametrize(("size", "with_body", "chunks"), [
    (0, True, 1),
    (5, True, 1),
    (wire.JOIN_BODY_MAX, True, 1),
    (wire.JOIN_BODY_MAX + 1, True, 2),
    (5, False, 1),
    (wire.JOIN_BODY_MAX + 1, False, 1),
])
def test_fixed(size: int, with_body: bool, chunks: int) -> None:
    body = b"b" * size
    out: list = [b"earlier"]
    n = wire.fixed(out, wire.STATUS_LINES[200], FIELDS, body, DATE, b"", with_body)
    added = out[1:]
    assert len(added) == chunks
    assert n == sum(map(len, added))
    data = b"".join(added)
    assert data == wire.head(wire.STATUS_LINES[200], FIELDS, size, DATE, b"") + (
        body if with_body else b"")
    if chunks == 2:
        assert added[1] is body  # a large body is sent as it is, never copied
    response, got = response_of(data, b"GET" if with_body else b"HEAD")
    assert got == (body if with_body else b"")
    assert (b"content-length", b"%d" % size) in response.headers


@pytest.mark.parametrize(("keep_alive", "version", "line"), [
    (True, 11, b""),
    (True, 10, b"Connection: keep-alive\r\n"),
    (False, 11, b"Connection: close\r\n"),
    (False, 10, b"Connection: close\r\n"),
])
def test_connection_line(keep_alive: bool, version: int, line: bytes) -> None:
    assert wire.connection_line(keep_alive, version) == line


@pytest.mark.parametrize(("status", "body"), [
    (400, b"400 Bad Request\n"),
    (404, b"404 Not Found\n"),
    (413, b"413 Content Too Large\n"),
    (501, b"501 Not Implemented\n"),
    (599, b"599\n"),
])
def test_error_response(status: int, body: bytes) -> None:
    allow = b"Allow: GET, HEAD\r\n"
    full = wire.error_response(status, DATE, wire.CLOSE, allow)
    head_only = wire.error_response(status, DATE, wire.CLOSE, allow, with_body=False)
    assert full == head_only + body
    assert b"Content-Length: %d\r\n" % len(body) in head_only  # HEAD: the GET's length
    response, got = response_of(full)
    assert response.status_code == status and got == body
    assert (b"allow", b"GET, HEAD") in response.headers
    assert (b"connection", b"close") in response.headers
    assert (b"content-type", b"text/plain; charset=utf-8") in response.headers
    response, got = response_of(head_only, b"HEAD")
    assert got == b"" and (b"content-length", b"%d" % len(body)) in response.headers


@pytest.mark.parametrize(("size", "frame"), [
    (1, b"1\r\n"), (15, b"f\r\n"), (16, b"10\r\n"), (65536, b"10000\r\n"),
])
def test_chunk_frame(size: int, frame: bytes) -> None:
    assert wire.chunk_frame(size) == frame


@pytest.mark.parametrize(("head", "line"), [
    (None, b"-"),
    (SimpleNamespace(method=b"GET", target=b"/a?b=c", version=11), b"GET /a?b=c HTTP/1.1"),
    (SimpleNamespace(method=b"POST", target=b"/echo", version=10), b"POST /echo HTTP/1.0"),
])
def test_request_line(head: object, line: bytes) -> None:
    assert wire.request_line(head) == line


def test_date_cache_formats_the_line_and_the_log_stamp() -> None:
    date = wire.DateCache()
    assert re.fullmatch(rb"Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
                        rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
                        rb"\d\d:\d\d:\d\d GMT\r\n", date.line), date.line
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", date.stamp)
    # The same second in both: "06 Nov 1994 08:49:37" and "06/Nov/1994:08:49:37".
    day, month, year, clock = date.line.decode()[11:31].split(" ")
    assert date.stamp == f"{day}/{month}/{year}:{clock} +0000"
    response, _ = response_of(b"HTTP/1.1 200 OK\r\n" + date.line + b"Content-Length: 0\r\n\r\n")
    assert any(name == b"date" for name, _ in response.headers)
