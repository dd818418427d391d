"""tpd2py.wsgi's pure parts: wsgi.input over a stream of pieces, and start_response's checks
(status lines and header lists) as tables."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tpd2py.errors import ProtocolError
from tpd2py.wsgi import Input
from tpd2py.wsgi_call import encode_headers, status_line


def pieces(*chunks: bytes) -> Callable[[], bytes]:
    it = iter(chunks)
    return lambda: next(it, b"")


SPLITS = [(b"hello\nworld\nend",), (b"he", b"llo\nwo", b"rld\n", b"end"),
          tuple(bytes([c]) for c in b"hello\nworld\nend")]


@pytest.mark.parametrize("chunks", SPLITS)
def test_read_and_lines_do_not_depend_on_how_the_body_arrived(chunks):
    assert Input(pieces(*chunks)).read() == b"hello\nworld\nend"
    assert list(Input(pieces(*chunks))) == [b"hello\n", b"world\n", b"end"]
    assert Input(pieces(*chunks)).readlines() == [b"hello\n", b"world\n", b"end"]
    body = Input(pieces(*chunks))
    assert [body.read(4), body.read(4), body.read(100), body.read(1)] == \
        [b"hell", b"o\nwo", b"rld\nend", b""]
    body = Input(pieces(*chunks))
    assert [body.readline(3), body.readline(3), body.readline(), body.readline(0),
            body.read(), body.readline()] == [b"hel", b"lo\n", b"world\n", b"", b"end", b""]
    body = Input(pieces(*chunks))
    assert body.read(0) == b"" and body.read(None) == b"hello\nworld\nend"


def test_an_error_is_raised_on_every_read_after_it():
    calls = []

    def failing() -> bytes:
        calls.append(1)
        if len(calls) == 1:
            return b"ok"
        raise ProtocolError(400, "bad chunk")

    body = Input(failing)
    assert body.read(2) == b"ok"
    for _ in range(2):
        with pytest.raises(ProtocolError):
            body.read()
    assert len(calls) == 2  # not asked again: the body cannot be trusted after it


def test_empty_input_reads_nothing():
    body = Input(None)
    assert body.read() == b"" and body.readline() == b"" and list(body) == []


@pytest.mark.parametrize(("status", "line", "code"), [
    ("200 OK", b"HTTP/1.1 200 OK\r\n", 200),
    ("404 Not Found", b"HTTP/1.1 404 Not Found\r\n", 404),
    ("418 I'm a teapot", b"HTTP/1.1 418 I'm a teapot\r\n", 418),
    ("299 ", b"HTTP/1.1 299 \r\n", 299),
    ("200 Très bien", "HTTP/1.1 200 Très bien\r\n".encode("latin-1"), 200),
])
def test_good_status_lines(status, line, code):
    assert status_line(status) == (line, code)


@pytest.mark.parametrize("status", [
    "200", "200OK", " 200 OK", "2000 OK", "20 OK", "099 Low", "100 Continue", "101 Switching",
    "200 OK\r\nX: y", "200 OK\n", "200 A\x00B", "abc OK", b"200 OK", 200, None, "200 \u20ac"])
def test_bad_status_lines(status):
    with pytest.raises((TypeError, ValueError)):
        status_line(status)


def test_headers_are_encoded_once_with_content_length_and_date_apart():
    fields, length, has_date = encode_headers(
        [("Content-Type", "text/plain"), ("Content-Length", "12"), ("Date", "x"),
         ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    assert fields == b"Content-Type: text/plain\r\nDate: x\r\nSet-Cookie: a=1\r\n" \
                     b"Set-Cookie: b=2\r\n"
    assert (length, has_date) == (12, True)
    assert encode_headers([("Content-Length", "3"), ("content-length", "3")])[1] == 3


@pytest.mark.parametrize("headers", [
    (("A", "b"),), [["A", "b"]], [("A", "b", "c")], [("A", b"b")], [(b"A", "b")],
    [("A B", "c")], [("A:", "c")], [("", "c")], [("A", "b\r\nX: y")], [("A", "b\n")],
    [("A", "\x00")], [("A", "\x7f")], [("Connection", "close")], [("Keep-Alive", "1")],
    [("Transfer-Encoding", "chunked")], [("Upgrade", "h2c")], [("TE", "trailers")],
    [("Content-Length", "-1")], [("Content-Length", "1e3")], [("Content-Length", "")],
    [("Content-Length", "1"), ("Content-Length", "2")], [("A", "\u20ac")],
])
def test_bad_headers(headers):
    with pytest.raises((TypeError, ValueError)):
        encode_headers(headers)
