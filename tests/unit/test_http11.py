"""Table-driven tests of the sans-I/O parser (tpd2py.http11).

Every case runs twice: parsed whole, and fed one byte at a time (parse_head called again from the
same start with a growing end, as the connection loop does), and both must give the same result.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpd2py.chunked import ChunkedDecoder
from tpd2py.errors import ProtocolError
from tpd2py.http11 import (
    MAX_CHUNK_EXT,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    MAX_TRAILER_BYTES,
    Limits,
    RequestHead,
    parse_head,
)

LIMITS = Limits()
FIELDS = [
    "method", "target", "path", "query", "version", "headers", "content_length", "chunked",
    "keep_alive", "expect_continue", "must_close",
]


def snapshot(head: RequestHead) -> dict[str, Any]:
    return {name: getattr(head, name) for name in FIELDS}


def parse_whole(raw: bytes, limits: Limits = LIMITS) -> tuple[dict[str, Any], int] | int | None:
    """(fields, next_index), None for "need more", or the ProtocolError status."""
    buf = bytearray(raw)
    try:
        result = parse_head(buf, 0, len(buf), limits)
    except ProtocolError as exc:
        return exc.status
    if result is None:
        return None
    return snapshot(result[0]), result[1]


def parse_bytewise(raw: bytes, limits: Limits = LIMITS, hint: bool = False):
    """Feed raw one byte at a time; the first non-None outcome is the result."""
    buf = bytearray()
    for end in range(1, len(raw) + 1):
        buf.append(raw[end - 1])
        scan_from = max(0, end - 4) if hint else 0
        try:
            result = parse_head(buf, 0, end, limits, scan_from)
        except ProtocolError as exc:
            return exc.status
        if result is not None:
            return snapshot(result[0]), result[1]
    return None


def check(raw: bytes, limits: Limits = LIMITS):
    whole = parse_whole(raw, limits)
    assert parse_bytewise(raw, limits) == whole
    assert parse_bytewise(raw, limits, hint=True) == whole
    return whole


def head_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "method": b"GET",
        "target": b"/",
        "path": b"/",
        "query": b"",
        "version": 11,
        "headers": [(b"host", b"a")],
        "content_length": -1,
        "chunked": False,
        "keep_alive": True,
        "expect_continue": False,
        "must_close": False,
    }
    fields.update(overrides)
    return fields


H = b"Host: a\r\n"
VALID: list[tuple[str, bytes, dict[str, Any]]] = [
    (
        "wrk",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
        head_fields(headers=[(b"host", b"127.0.0.1:8080")]),
    ),
    (
        "query",
        b"GET /a/b%20c?x=1&y=%2F HTTP/1.1\r\n" + H + b"\r\n",
        head_fields(target=b"/a/b%20c?x=1&y=%2F", path=b"/a/b%20c", query=b"x=1&y=%2F"),
    ),
    (
        "percent-encoded hash",
        b"GET /a%23b?x=%23 HTTP/1.1\r\n" + H + b"\r\n",
        head_fields(target=b"/a%23b?x=%23", path=b"/a%23b", query=b"x=%23"),
    ),
    (
        "empty query",
        b"GET /p? HTTP/1.1\r\n" + H + b"\r\n",
        head_fields(target=b"/p?", path=b"/p", query=b""),
    ),
    (
        "http/1.0 without host closes",
        b"GET / HTTP/1.0\r\n\r\n",
        head_fields(version=10, headers=[], keep_alive=False),
    ),
    (
        "http/1.0 keep-alive",
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        head_fields(version=10, headers=[(b"connection", b"Keep-Alive")], keep_alive=True),
    ),
    (
        "http/1.1 close",
        b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
        head_fields(headers=[(b"host", b"a"), (b"connection", b"close")], keep_alive=False),
    ),
    (
        "connection list with close",
        b"GET / HTTP/1.1\r\n" + H + b"Connection: keep-alive, CLOSE\r\n\r\n",
        head_fields(
            headers=[(b"host", b"a"), (b"connection", b"keep-alive, CLOSE")], keep_alive=False
        ),
    ),
    (
        "close wins over a later keep-alive line",
        b"GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
        head_fields(
            version=10, keep_alive=False,
            headers=[(b"connection", b"close"), (b"connection", b"keep-alive")],
        ),
    ),
    (
        "keep-alive token in a list, http/1.0",
        b"GET / HTTP/1.0\r\nConnection: foo, Keep-Alive\r\n\r\n",
        head_fields(version=10, headers=[(b"connection", b"foo, Keep-Alive")]),
    ),
    (
        "connection upgrade",
        b"GET / HTTP/1.1\r\n" + H
        + b"Connection: Upgrade, ,keep-alive\r\nUpgrade: websocket\r\n\r\n",
        head_fields(
            headers=[
                (b"host", b"a"),
                (b"connection", b"Upgrade, ,keep-alive"),
                (b"upgrade", b"websocket"),
            ]
        ),
    ),
    (
        "content-length",
        b"POST /f HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
        head_fields(
            method=b"POST", target=b"/f", path=b"/f", content_length=5,
            headers=[(b"host", b"a"), (b"content-length", b"5")],
        ),
    ),
    (
        "content-length zero with leading zeros",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 000\r\n\r\n",
        head_fields(
            method=b"POST", content_length=0,
            headers=[(b"host", b"a"), (b"content-length", b"000")],
        ),
    ),
    (
        "content-length 18 digits",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 999999999999999999\r\n\r\n",
        head_fields(
            method=b"POST", content_length=999999999999999999,
            headers=[(b"host", b"a"), (b"content-length", b"999999999999999999")],
        ),
    ),
    (
        "content-length identical list",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\n",
        head_fields(
            method=b"POST", content_length=5,
            headers=[(b"host", b"a"), (b"content-length", b"5, 5")],
        ),
    ),
    (
        "content-length repeated identical",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
        head_fields(
            method=b"POST", content_length=5,
            headers=[(b"host", b"a"), (b"content-length", b"5"), (b"content-length", b"5")],
        ),
    ),
    (
        "chunked",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n",
        head_fields(
            method=b"POST", chunked=True,
            headers=[(b"host", b"a"), (b"transfer-encoding", b"chunked")],
        ),
    ),
    (
        "chunked is case-insensitive with OWS and empty members",
        b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: \t, CHUNKED ,\t\r\n\r\n",
        head_fields(
            method=b"POST", chunked=True,
            headers=[(b"host", b"a"), (b"transfer-encoding", b", CHUNKED ,")],
        ),
    ),
    (
        "expect 100-continue",
        b"PUT / HTTP/1.1\r\n" + H + b"Expect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
        head_fields(
            method=b"PUT", content_length=3, expect_continue=True,
            headers=[(b"host", b"a"), (b"expect", b"100-Continue"), (b"content-length", b"3")],
        ),
    ),
    (
        "expect ignored in http/1.0",
        b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        head_fields(
            method=b"PUT", version=10, content_length=3, keep_alive=False,
            headers=[(b"expect", b"100-continue"), (b"content-length", b"3")],
        ),
    ),
    (
        "other expectations ignored",
        b"PUT / HTTP/1.1\r\n" + H + b"Expect: something\r\n\r\n",
        head_fields(method=b"PUT", headers=[(b"host", b"a"), (b"expect", b"something")]),
    ),
    (
        "leading empty lines are ignored (RFC 9112 2.2)",
        b"\r\n\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
        head_fields(),
    ),
    ("options asterisk", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
     head_fields(method=b"OPTIONS", target=b"*", path=b"*")),
    (
        "connect authority-form",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        head_fields(
            method=b"CONNECT", target=b"example.com:443", path=b"", query=b"",
            headers=[(b"host", b"example.com:443")],
        ),
    ),
    (
        "absolute-form",
        b"GET http://example.com:8080/p/q?x=y HTTP/1.1\r\n" + H + b"\r\n",
        head_fields(target=b"http://example.com:8080/p/q?x=y", path=b"/p/q", query=b"x=y"),
    ),
    (
        "absolute-form https, upper-case scheme, empty path",
        b"GET HTTPS://example.com?x HTTP/1.1\r\n" + H + b"\r\n",
        head_fields(target=b"HTTPS://example.com?x", path=b"/", query=b"x"),
    ),
    ("http/1.2 is spoken as 1.1", b"GET / HTTP/1.2\r\n" + H + b"\r\n", head_fields()),
    (
        "obs-text kept in values, only SP/HTAB trimmed (peers #32)",
        b"GET / HTTP/1.1\r\n" + H + b"X-Y: \t \x85admin\xa0 \t\r\n\r\n",
        head_fields(headers=[(b"host", b"a"), (b"x-y", b"\x85admin\xa0")]),
    ),
    (
        "empty value and inner whitespace",
        b"GET / HTTP/1.1\r\n" + H + b"X-Empty:\r\nX-In: a  b\tc\r\n\r\n",
        head_fields(headers=[(b"host", b"a"), (b"x-empty", b""), (b"x-in", b"a  b\tc")]),
    ),
    (
        "names are lower-cased, any tchar allowed",
        b"GET / HTTP/1.1\r\nhOsT: a\r\nX-Odd_Name!#$%&'*+.^`|~: v\r\n\r\n",
        head_fields(headers=[(b"host", b"a"), (b"x-odd_name!#$%&'*+.^`|~", b"v")]),
    ),
    ("extension method", b"PROPFIND /d HTTP/1.1\r\n" + H + b"\r\n",
     head_fields(method=b"PROPFIND", target=b"/d", path=b"/d")),
    (
        "empty host is allowed (RFC 9110 7.2)",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        head_fields(headers=[(b"host", b"")]),
    ),
    (
        "ipv6 host",
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        head_fields(headers=[(b"host", b"[::1]:8080")]),
    ),
    (
        "target with every allowed visible byte",
        b"GET /!$&'()*+,;=:@-._~%41[]{}|\\^`\"<> HTTP/1.1\r\n" + H + b"\r\n",
        head_fields(
            target=b"/!$&'()*+,;=:@-._~%41[]{}|\\^`\"<>",
            path=b"/!$&'()*+,;=:@-._~%41[]{}|\\^`\"<>",
        ),
    ),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_valid(raw: bytes, expected: dict[str, Any]) -> None:
    result = check(raw)
    assert isinstance(result, tuple), result
    fields, next_index = result
    assert fields == expected
    assert raw[:next_index].endswith(b"\r\n\r\n")
    assert raw[next_index:] in (b"", b"hello")


def test_next_index_leaves_pipelined_bytes() -> None:
    raw = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    head, n = parse_head(raw, 0, len(raw), LIMITS) or pytest.fail("need more")
    assert head.path == b"/1"
    head2, n2 = parse_head(raw, n, len(raw), LIMITS) or pytest.fail("need more")
    assert head2.path == b"/2" and n2 == len(raw)


def test_start_offset_and_end_bound_are_respected() -> None:
    raw = b"junkGET / HTTP/1.1\r\nHost: a\r\n\r\ntrailing"
    buf = bytearray(raw + b"\r\n\r\n")  # stale bytes past `end` must be ignored
    assert parse_head(buf, 4, len(raw) - 12, LIMITS) is None
    result = parse_head(buf, 4, len(raw), LIMITS)
    assert result is not None and result[1] == len(raw) - len(b"trailing")


def test_header_lookup() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
    head, _ = parse_head(raw, 0, len(raw), LIMITS) or pytest.fail("need more")
    assert head.header(b"x-a") == b"1"
    assert head.header(b"missing") is None


def test_incomplete_is_none() -> None:
    for raw in (b"G", b"GET / HTTP/1.1\r\nHost: a\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n\r", b"\r"):
        assert parse_head(raw, 0, len(raw), LIMITS) is None
    assert parse_head(b"", 0, 0, LIMITS) is None


def bad_header(line: bytes) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n\r\n"


INVALID: list[tuple[str, bytes, int]] = [
    # line endings (RFC 9112 §2.2)
    ("bare LF line endings", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare LF after request line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    ("bare CR in request line", b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bare CR in value", bad_header(b"X: a\rb"), 400),
    ("bare LF in value", bad_header(b"X: a\nb"), 400),
    ("bare CR ends a field", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    ("LF then CRLF", b"GET / HTTP/1.1\r\nHost: a\n\r\n\r\n", 400),
    ("bare LF before request line", b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("CR LF LF before request line", b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bare CR before request line", b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # field lines (RFC 9112 §5, RFC 9110 §5)
    ("obs-fold", bad_header(b"X: a\r\n b"), 400),
    ("obs-fold with tab", bad_header(b"X: a\r\n\tb"), 400),
    ("space before colon", bad_header(b"X : a"), 400),
    ("tab before colon", bad_header(b"X\t: a"), 400),
    ("empty name", bad_header(b": a"), 400),
    ("no colon", bad_header(b"X-No-Colon"), 400),
    ("cached name without colon", bad_header(b"Host"), 400),
    ("non-tchar in name", bad_header(b"X(y): a"), 400),
    ("obs-text in name", bad_header(b"X\x85: a"), 400),
    ("NUL in value", bad_header(b"X: a\x00b"), 400),
    ("DEL in value", bad_header(b"X: a\x7fb"), 400),
    ("VT in value", bad_header(b"X: \x0ba"), 400),
    ("ESC in value", bad_header(b"X: \x1b[2J"), 400),
    # request line (RFC 9112 §3)
    ("two spaces", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("trailing space", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
    ("leading space", b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("tab separator", b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("missing version", b"GET /\r\nHost: a\r\n\r\n", 400),
    ("http/0.9 style", b"GET\r\n\r\n", 400),
    ("method not a token", b'G=":<>(e),[T];?" /get HTTP/1.1\r\nHost: a\r\n\r\n', 400),
    ("NUL method", b"\x00 / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("obs-text in method", b"G\xc9T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("version lower-case", b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    ("version 1.32", b"GET / HTTP/1.32\r\nHost: a\r\n\r\n", 400),
    ("version 0.2.1.0", b"GET / HTTP/0.2.1.0\r\nHost: a\r\n\r\n", 400),
    ("version unicode digit", "GET / HTTP/1.𝟙\r\nHost: a\r\n\r\n".encode(), 400),
    ("version 2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("version 0.9", b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    ("version 9.1", b"GET / HTTP/9.1\r\nHost: a\r\n\r\n", 505),
    ("non-ascii target", b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("tab in target", b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("NUL in target", b"GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("relative target", b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("asterisk for GET", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("CONNECT with path", b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("CONNECT without port", b"CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("authority-form for GET", b"GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("absolute-form with empty host", b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("unknown scheme", b"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # "#" starts a fragment, never sent (RFC 9112 §3.2, RFC 9110 §7.1, RFC 3986 §3.3-3.5)
    ("fragment after path", b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("fragment in query", b"GET /?name=x#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("empty fragment", b"GET /# HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("fragment only", b"GET # HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("fragment in absolute-form", b"GET http://a/x#f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("fragment in authority", b"GET http://a#f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("fragment after asterisk", b"OPTIONS *# HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("fragment in CONNECT", b"CONNECT a:443#f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # Host (RFC 9112 §3.2)
    ("missing host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("missing host with other fields", b"GET / HTTP/1.1\r\nX: y\r\n\r\n", 400),
    ("two hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    ("two hosts in 1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("host with space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("host with slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("host with obs-text", b"GET / HTTP/1.1\r\nHost: a\xa0\r\n\r\n", 400),
    # Content-Length (RFC 9110 §8.6)
    ("cl plus", bad_header(b"Content-Length: +10"), 400),
    ("cl underscore", bad_header(b"Content-Length: 1_0"), 400),
    ("cl hex", bad_header(b"Content-Length: 0x0a"), 400),
    ("cl negative", bad_header(b"Content-Length: -1"), 400),
    ("cl empty", bad_header(b"Content-Length: "), 400),
    ("cl arabic-indic", bad_header("Content-Length: ١٠".encode()), 400),
    ("cl inner space", bad_header(b"Content-Length: 1 0"), 400),
    ("cl 19 digits", bad_header(b"Content-Length: 1234567890123456789"), 400),
    ("cl 5000 digits", bad_header(b"Content-Length: " + b"9" * 5000), 400),
    ("cl differing list", bad_header(b"Content-Length: 5, 6"), 400),
    ("cl list with empty member", bad_header(b"Content-Length: 5,"), 400),
    ("cl differing lines", bad_header(b"Content-Length: 1\r\nContent-Length: 3"), 400),
    # Transfer-Encoding (RFC 9112 §6.1, §6.3)
    ("te in http/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("te chunked then gzip", bad_header(b"Transfer-Encoding: chunked, gzip"), 400),
    ("te chunked twice", bad_header(b"Transfer-Encoding: chunked, chunked"), 400),
    ("te empty", bad_header(b"Transfer-Encoding: "), 400),
    # the final coding is not exactly chunked: §6.3 item 4 says 400 and close
    ("te gzip", bad_header(b"Transfer-Encoding: gzip"), 400),
    ("te identity", bad_header(b"Transfer-Encoding: identity"), 400),
    ("te chunk", bad_header(b"Transfer-Encoding: chunk"), 400),
    ("te chunkedx", bad_header(b"Transfer-Encoding: chunkedx"), 400),
    ("te quoted chunked", bad_header(b'Transfer-Encoding: "chunked"'), 400),
    ("te chunked with parameter", bad_header(b"Transfer-Encoding: chunked;q=1"), 400),
    ("te nbsp", bad_header(b"Transfer-Encoding: \xa0chunked\xa0"), 400),
    ("te chunked then gzip lines",
     bad_header(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip"), 400),
    # chunked is final, an earlier coding is one we do not decode: §6.1 says 501
    ("te gzip, chunked", bad_header(b"Transfer-Encoding: gzip, chunked"), 501),
    ("te gzip then chunked lines",
     bad_header(b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked"), 501),
    ("te identity, chunked", bad_header(b"Transfer-Encoding: identity, chunked"), 501),
    ("te vertical tab", bad_header(b"Transfer-Encoding: \x0bchunked"), 400),
]


@pytest.mark.parametrize(("raw", "status"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid(raw: bytes, status: int) -> None:
    assert check(raw) == status


def test_protocol_error_carries_status_and_reason() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_head(b"GET / HTTP/2.0\r\n\r\n", 0, 18, LIMITS)
    assert info.value.status == 505 and "version" in info.value.reason


# --- limits ------------------------------------------------------------------------------------


def request_line_of(length: int) -> bytes:
    line = b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1") ) + b" HTTP/1.1"
    assert len(line) == length
    return line


def test_request_line_at_limit_is_accepted() -> None:
    raw = request_line_of(MAX_REQUEST_LINE) + b"\r\nHost: a\r\n\r\n"
    result = check(raw)
    assert isinstance(result, tuple)


def test_request_line_over_limit_is_414() -> None:
    raw = request_line_of(MAX_REQUEST_LINE + 1) + b"\r\nHost: a\r\n\r\n"
    assert check(raw) == 414


def test_endless_request_line_is_414_as_soon_as_it_passes_the_limit() -> None:
    """Slowloris on the request line: no CRLF ever comes (peers #30, #41)."""
    buf = bytearray(b"GET /" + b"a" * (MAX_REQUEST_LINE - 5))
    assert parse_head(buf, 0, len(buf), LIMITS) is None
    buf += b"aa"  # the line is now longer than the limit, and no CRLF yet
    with pytest.raises(ProtocolError) as info:
        parse_head(buf, 0, len(buf), LIMITS)
    assert info.value.status == 414


def test_small_limits_fed_bytewise() -> None:
    limits = Limits(max_request_line=32, max_header_bytes=64, max_headers=2)
    assert check(b"GET /" + b"a" * 40 + b" HTTP/1.1\r\nHost: a\r\n\r\n", limits) == 414
    assert check(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 60 + b"\r\n\r\n", limits) == 431
    assert check(b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\nY: c\r\n\r\n", limits) == 431
    assert isinstance(check(b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\r\n", limits), tuple)
    # The whole head may be exactly max_header_bytes long, blank line included.
    exact = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 32 + b"\r\n\r\n"
    assert len(exact) == 64
    assert isinstance(check(exact, limits), tuple)
    assert check(exact[:-4] + b"b\r\n\r\n", limits) == 431
    # Leading empty lines count towards the limits.
    padded = b"\r\n" * 8 + b"GET /" + b"a" * 10 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    assert check(padded, limits) == 414
    assert check(b"\r\n" * 20, limits) == 400


def test_endless_head_is_431() -> None:
    buf = bytearray(b"GET / HTTP/1.1\r\nHost: a\r\n")
    while len(buf) < MAX_HEADER_BYTES - 100:
        buf += b"X-Filler: " + b"f" * 80 + b"\r\n"
    assert parse_head(buf, 0, len(buf), LIMITS) is None
    buf += b"X-Filler: " + b"f" * 200 + b"\r\n"
    with pytest.raises(ProtocolError) as info:
        parse_head(buf, 0, len(buf), LIMITS)
    assert info.value.status == 431


def test_too_many_headers_is_431() -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS - 1))
    ok = b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n"
    assert isinstance(parse_whole(ok), tuple)
    assert parse_whole(ok[:-2] + b"Y: z\r\n\r\n") == 431


def test_name_cache_holds_only_valid_names() -> None:
    from tpd2py import _grammar

    check(bad_header(b"X-Never Valid: a"))
    assert b"X-Never Valid" not in _grammar.NAMES
    check(bad_header(b"X-Seen-Once: a"))
    assert _grammar.NAMES.get(b"X-Seen-Once") == b"x-seen-once"


# --- chunked bodies ----------------------------------------------------------------------------


def decode_whole(body: bytes, limits: Limits = LIMITS):
    """(data, trailers, consumed) or the ProtocolError status; None if not done."""
    decoder = ChunkedDecoder(limits)
    buf = bytearray(body)
    try:
        consumed = decoder.feed(buf, 0, len(buf))
    except ProtocolError as exc:
        return exc.status
    if not decoder.done:
        return None
    data = b"".join(decoder.out)
    assert decoder.total == len(data)
    return data, decoder.trailers, consumed


def decode_bytewise(body: bytes, limits: Limits = LIMITS):
    decoder = ChunkedDecoder(limits)
    buf = bytearray()
    start = 0
    for byte in body:
        buf.append(byte)
        try:
            start = decoder.feed(buf, start, len(buf))
        except ProtocolError as exc:
            return exc.status
        if decoder.done:
            break
    if not decoder.done:
        return None
    # The caller's buffer is mutated after feed returns: the pieces must not alias it.
    buf[:] = b"\xff" * len(buf)
    data = b"".join(decoder.out)
    assert decoder.total == len(data)
    return data, decoder.trailers, start


def check_chunked(body: bytes, limits: Limits = LIMITS):
    whole = decode_whole(body, limits)
    assert decode_bytewise(body, limits) == whole
    return whole


CHUNKED_VALID: list[tuple[str, bytes, bytes, list[tuple[bytes, bytes]]]] = [
    ("simple", b"5\r\nhello\r\n0\r\n\r\n", b"hello", []),
    ("two chunks", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world", []),
    ("hex upper and lower", b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
     b"0123456789" * 2, []),
    ("leading zeros", b"0005\r\nhello\r\n000\r\n\r\n", b"hello", []),
    ("empty body", b"0\r\n\r\n", b"", []),
    ("extensions", b"5;a=b;c\r\nhello\r\n0;x=\"q;\"\r\n\r\n", b"hello", []),
    ("BWS before extension", b"5 ;a=b\r\nhello\r\n0\t;z\r\n\r\n", b"hello", []),
    ("quoted extension with escapes", b'5;a="x;\\"y\\\\" ; b = c\r\nhello\r\n0\r\n\r\n',
     b"hello", []),
    ("trailers", b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nx-other:\t2 \r\n\r\n", b"abc",
     [(b"x-sum", b"1"), (b"x-other", b"2")]),
    ("data containing CRLF", b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n", []),
]


@pytest.mark.parametrize(
    ("body", "data", "trailers"), [c[1:] for c in CHUNKED_VALID], ids=[c[0] for c in CHUNKED_VALID]
)
def test_chunked_valid(body: bytes, data: bytes, trailers: list[tuple[bytes, bytes]]) -> None:
    next_request = b"GET / HTTP/1.1\r\n"
    assert check_chunked(body) == (data, trailers, len(body))
    # Pipelined bytes after the body stay unconsumed.
    assert decode_whole(body + next_request) == (data, trailers, len(body))


CHUNKED_INVALID: list[tuple[str, bytes, int]] = [
    ("0x prefix", b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("plus sign", b"+5\r\nhello\r\n0\r\n\r\n", 400),
    ("underscore", b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n", 400),
    ("minus zero", b"-0\r\n\r\n", 400),
    ("leading space", b" 5\r\nhello\r\n0\r\n\r\n", 400),
    ("empty size", b"\r\nhello\r\n0\r\n\r\n", 400),
    ("non-hex", b"g\r\nhello\r\n0\r\n\r\n", 400),
    ("huge size", b"1" + b"0" * 15 + b"\r\n", 400),
    ("junk after size", b"5x\r\nhello\r\n0\r\n\r\n", 400),
    ("junk after BWS", b"5 x\r\nhello\r\n0\r\n\r\n", 400),
    ("no CRLF after data", b"5\r\nhelloXX0\r\n\r\n", 400),
    ("CR only after data", b"5\r\nhello\rX0\r\n\r\n", 400),
    ("LF in extension", b"5;a\nb\r\nhello\r\n0\r\n\r\n", 400),
    ("bare CR in size line", b"5\r\r;a\r\nhello\r\n0\r\n\r\n", 400),
    ("bare LF size line", b"5\nhello\r\n0\r\n\r\n", 400),
    ("NUL in extension", b"5;a\x00\r\nhello\r\n0\r\n\r\n", 400),
    ("empty extension name", b"5;\r\nhello\r\n0\r\n\r\n", 400),
    ("extension without value", b"5;a=\r\nhello\r\n0\r\n\r\n", 400),
    ("space inside extension", b"5;a b\r\nhello\r\n0\r\n\r\n", 400),
    ("unterminated quoted extension", b'5;a="x\r\nhello\r\n0\r\n\r\n', 400),
    ("extension on last chunk", b"0;a b\r\n\r\n", 400),
    ("trailer without colon", b"0\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("trailer with bad name", b"0\r\nX y: 1\r\n\r\n", 400),
    ("trailer obs-fold", b"0\r\nX: 1\r\n 2\r\n\r\n", 400),
    ("trailer bare LF", b"0\r\nX: 1\n\r\n", 400),
    ("trailer bare CR", b"0\r\nX: 1\rY: 2\r\n\r\n", 400),
    ("trailer CTL", b"0\r\nX: \x01\r\n\r\n", 400),
]


@pytest.mark.parametrize(
    ("body", "status"), [c[1:] for c in CHUNKED_INVALID], ids=[c[0] for c in CHUNKED_INVALID]
)
def test_chunked_invalid(body: bytes, status: int) -> None:
    assert check_chunked(body) == status


def test_chunked_incomplete_until_final_crlf() -> None:
    """peers #16: after "0\\r\\n" the message is not complete until the trailer section ends."""
    for partial in (b"5\r\nhel", b"5\r\nhello", b"5\r\nhello\r\n0", b"5\r\nhello\r\n0\r\n",
                    b"0\r\nX: 1\r\n", b"0\r\n\r"):
        decoder = ChunkedDecoder(LIMITS)
        decoder.feed(partial, 0, len(partial))
        assert not decoder.done


def test_chunk_line_limit() -> None:
    line = b"5;" + b"e" * (MAX_CHUNK_EXT - 2)
    assert check_chunked(line + b"\r\nhello\r\n0\r\n\r\n") == (b"hello", [], len(line) + 14)
    assert check_chunked(line + b"e\r\nhello\r\n0\r\n\r\n") == 400
    # Without any CRLF the line is refused as soon as it is too long.
    decoder = ChunkedDecoder(LIMITS)
    endless = b"5;" + b"e" * (MAX_CHUNK_EXT + 10)
    with pytest.raises(ProtocolError):
        decoder.feed(endless, 0, len(endless))


def test_trailer_limits() -> None:
    many = b"0\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n"
    assert check_chunked(many) == 431
    big = b"0\r\nX: " + b"v" * MAX_TRAILER_BYTES + b"\r\n\r\n"
    assert decode_whole(big) == 431
    endless = b"0\r\nX: " + b"v" * (MAX_TRAILER_BYTES + 10)
    assert decode_whole(endless) == 431


def test_many_one_byte_chunks_is_linear() -> None:
    """aiohttp CVE-2025-69229: 100k one-byte chunks must not be quadratic."""
    body = b"1\r\nx\r\n" * 100_000 + b"0\r\n\r\n"
    decoder = ChunkedDecoder(LIMITS)
    assert decoder.feed(body, 0, len(body)) == len(body)
    assert decoder.done and decoder.total == 100_000
    assert b"".join(decoder.out) == b"x" * 100_000


def test_feed_after_done_consumes_nothing() -> None:
    decoder = ChunkedDecoder(LIMITS)
    body = b"0\r\n\r\nGET / HTTP/1.1\r\n"
    assert decoder.feed(body, 0, len(body)) == 5
    assert decoder.feed(body, 5, len(body)) == 5


# --- robustness: mutated requests never raise anything but ProtocolError -------------------------

SEEDS = [case[1] for case in VALID] + [
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
]
MUTANTS = b"\x00\t\n\r :;,\"\\/?#%0123456789aAfFxX\x7f\x80\xa0\xff"
# Up to four single-byte edits at random places: insert, delete or replace with a mutant byte.
EDITS = st.lists(
    st.tuples(st.integers(0, 10_000), st.sampled_from(["insert", "delete", "replace"]),
              st.sampled_from(list(MUTANTS))),
    min_size=1, max_size=4,
)


def mutate(seed: bytes, edits: list[tuple[int, str, int]]) -> bytes:
    """Apply EDITS to seed; positions wrap around so every edit lands somewhere."""
    raw = bytearray(seed)
    for where, kind, byte in edits:
        where %= len(raw) + 1
        if kind == "insert":
            raw[where:where] = bytes([byte])
        elif kind == "delete":
            del raw[where : where + 1]
        else:
            raw[where : where + 1] = bytes([byte])
    return bytes(raw)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), EDITS)
def test_mutated_requests_fail_only_with_protocol_error(seed: bytes, edits) -> None:
    raw = mutate(seed, edits)
    result = check(raw)  # whole and byte by byte agree, and only ProtocolError escapes
    if isinstance(result, tuple) and result[0]["chunked"]:
        decoded = check_chunked(raw[result[1] :])
        assert decoded in (None, 400, 431) or isinstance(decoded, tuple)


CHUNKED_SEEDS = [case[1] for case in CHUNKED_VALID]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CHUNKED_SEEDS), EDITS)
def test_mutated_chunked_bodies_fail_only_with_protocol_error(seed: bytes, edits) -> None:
    decoded = check_chunked(mutate(seed, edits))  # whole and byte by byte agree
    assert decoded in (None, 400, 431) or isinstance(decoded, tuple)
