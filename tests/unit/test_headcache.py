"""HeadCache.parse gives parse_head's answers (errors included), shares only immutable heads,
and stays bounded."""

import pytest

from tpd2py import headcache
from tpd2py.errors import ProtocolError
from tpd2py.headcache import HeadCache
from tpd2py.http11 import DEFAULT_LIMITS, parse_head

HEADS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x?y=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",  # a leading empty line is part of the key
    b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: a\r\n",  # incomplete
]
BAD = [b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n"]


def _fields(result):
    if result is None:
        return None
    head, nxt = result
    return (head.method, head.target, head.version, tuple(head.headers), head.content_length,
            head.keep_alive, nxt)


@pytest.mark.parametrize("raw", HEADS)
def test_same_result_as_parse_head_twice(raw):
    cache = HeadCache()
    buf = bytearray(raw)
    want = _fields(parse_head(buf, 0, len(buf), DEFAULT_LIMITS))
    assert _fields(cache.parse(buf, 0, len(buf), DEFAULT_LIMITS)) == want
    assert _fields(cache.parse(buf, 0, len(buf), DEFAULT_LIMITS)) == want  # from the cache


def test_head_after_two_empty_lines_parses_like_parse_head():
    # The first CRLFCRLF is then the empty lines themselves, not the head's end: no cache key.
    raw = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
    cache = HeadCache()
    for _ in range(2):
        assert _fields(cache.parse(bytearray(raw), 0, len(raw), DEFAULT_LIMITS)) == \
            _fields(parse_head(bytearray(raw), 0, len(raw), DEFAULT_LIMITS))
    assert cache.heads == {}


@pytest.mark.parametrize("raw", BAD)
def test_errors_are_never_cached(raw):
    cache = HeadCache()
    for _ in range(2):
        with pytest.raises(ProtocolError):
            cache.parse(bytearray(raw), 0, len(raw), DEFAULT_LIMITS)
    assert cache.heads == {}


def test_shared_heads_are_immutable_and_identical():
    cache = HeadCache()
    buf = bytearray(HEADS[0])
    first, _ = cache.parse(buf, 0, len(buf), DEFAULT_LIMITS)
    second, _ = cache.parse(buf, 0, len(buf), DEFAULT_LIMITS)
    assert first is second
    assert isinstance(first.headers, tuple)


def test_bounded(monkeypatch):
    monkeypatch.setattr(headcache, "ENTRIES", 4)
    cache = HeadCache()
    for i in range(10):
        raw = b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i
        cache.parse(bytearray(raw), 0, len(raw), DEFAULT_LIMITS)
        assert len(cache.heads) <= 4
