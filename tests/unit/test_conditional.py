"""conditional.py and compress.negotiate as tables: HTTP-dates, entity tags, RFC 9110 §13.2.2's
order, byte ranges and If-Range, Accept-Encoding with q-values."""

from __future__ import annotations

import pytest

from tpd2py.compress import compressible, negotiate, parse_accept_encoding
from tpd2py.conditional import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    PROCEED,
    UNSATISFIABLE,
    evaluate,
    format_http_date,
    if_range_allows,
    parse_etags,
    parse_http_date,
    parse_range,
)

T = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110 §5.6.7's example)


@pytest.mark.parametrize("text,expected", [
    (b"Sun, 06 Nov 1994 08:49:37 GMT", T),
    (b"Sunday, 06-Nov-94 08:49:37 GMT", T),
    (b"Sun Nov  6 08:49:37 1994", T),
    (b"  Sun, 06 Nov 1994 08:49:37 GMT ", T),
    (b"Sun, 06 Nov 1994 08:49:37 UTC", None),
    (b"Sun, 31 Feb 1994 08:49:37 GMT", None),
    (b"Sun, 06 Nov 1994 25:49:37 GMT", None),
    (b"06 Nov 1994 08:49:37 GMT", None),
    (b"", None),
    (b"1994-11-06T08:49:37Z", None),
])
def test_http_dates(text, expected):
    assert parse_http_date(text) == expected


def test_format_http_date_round_trips():
    assert format_http_date(T) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date(format_http_date(1_800_000_000)) == 1_800_000_000


@pytest.mark.parametrize("text,expected", [
    (b'"a"', [b'"a"']),
    (b'"a", W/"b" ,"c"', [b'"a"', b'W/"b"', b'"c"']),
    (b'*', [b"*"]),
    (b' , "a",,', [b'"a"']),
    (b'""', [b'""']),
    (b'a', None),
    (b'"a', None),
    (b'"a" "b"', None),
    (b'w/"a"', None),
    (b'"a", *', None),
])
def test_entity_tag_lists(text, expected):
    assert parse_etags(text) == expected


E = b'"abc"'


@pytest.mark.parametrize("method,headers,expected", [
    (b"GET", {}, PROCEED),
    (b"GET", {"im": E}, PROCEED),
    (b"GET", {"im": b"W/" + E}, PRECONDITION_FAILED),
    (b"GET", {"im": b'"x", ' + E}, PROCEED),
    (b"GET", {"im": b"*"}, PROCEED),
    (b"GET", {"im": b"garbage"}, PRECONDITION_FAILED),
    (b"GET", {"ius": b"Sun, 06 Nov 1994 08:49:36 GMT"}, PRECONDITION_FAILED),
    (b"GET", {"ius": b"Sun, 06 Nov 1994 08:49:37 GMT"}, PROCEED),
    (b"GET", {"ius": b"not a date"}, PROCEED),
    (b"GET", {"im": E, "ius": b"Sun, 06 Nov 1994 08:49:36 GMT"}, PROCEED),  # If-Match wins
    (b"GET", {"inm": E}, NOT_MODIFIED),
    (b"HEAD", {"inm": b"W/" + E}, NOT_MODIFIED),
    (b"POST", {"inm": E}, PRECONDITION_FAILED),
    (b"GET", {"inm": b'"x"'}, PROCEED),
    (b"GET", {"inm": b"garbage"}, PROCEED),
    (b"GET", {"ims": b"Sun, 06 Nov 1994 08:49:37 GMT"}, NOT_MODIFIED),
    (b"GET", {"ims": b"Sun, 06 Nov 1994 08:49:36 GMT"}, PROCEED),
    (b"POST", {"ims": b"Sun, 06 Nov 1994 08:49:37 GMT"}, PROCEED),
    (b"GET", {"inm": b'"x"', "ims": b"Sun, 06 Nov 1994 08:49:37 GMT"}, PROCEED),
    (b"GET", {"im": b'"x"', "inm": E}, PRECONDITION_FAILED),
])
def test_preconditions_in_rfc_9110_order(method, headers, expected):
    assert evaluate(method, E, T, headers.get("im"), headers.get("ius"), headers.get("inm"),
                    headers.get("ims")) == expected


@pytest.mark.parametrize("value,length,expected", [
    (b"bytes=0-9", 100, (0, 10)),
    (b"bytes=90-", 100, (90, 10)),
    (b"bytes=-10", 100, (90, 10)),
    (b"bytes=-1000", 100, (0, 100)),
    (b"bytes=0-1000", 100, (0, 100)),
    (b"bytes=99-99", 100, (99, 1)),
    (b"BYTES = 1-2", 100, None),
    (b"Bytes=1-2", 100, (1, 2)),
    (b"bytes=100-", 100, UNSATISFIABLE),
    (b"bytes=-0", 100, UNSATISFIABLE),
    (b"bytes=5-1", 100, None),
    (b"bytes=0-1,5-6", 100, None),
    (b"bytes=0-1,", 100, (0, 2)),
    (b"bytes=" + b"0-," * 10000, 100, None),
    (b"items=0-1", 100, None),
    (b"bytes=x-1", 100, None),
    (b"bytes=" + b"9" * 40 + b"-", 100, None),
    (b"bytes=0-9", 0, None),
    (b"bytes", 100, None),
])
def test_ranges(value, length, expected):
    assert parse_range(value, length) == expected


def test_if_range():
    assert if_range_allows(E, E, T)
    assert not if_range_allows(b'"other"', E, T)
    assert not if_range_allows(b"W/" + E, E, T)
    assert if_range_allows(b"Sun, 06 Nov 1994 08:49:37 GMT", E, T)
    assert not if_range_allows(b"Sun, 06 Nov 1994 08:49:38 GMT", E, T)
    assert not if_range_allows(b"garbage", E, T)


@pytest.mark.parametrize("value,expected", [
    (b"gzip", {b"gzip": 1.0}),
    (b"gzip;q=0.5, br;q=1.0, *;q=0", {b"gzip": 0.5, b"br": 1.0, b"*": 0.0}),
    (b"GZIP ; Q=0.001", {b"gzip": 0.001}),
    (b"", {}),
    (b"gzip;q=2", None),
    (b"gzip;q=0.1234", None),
    (b"gzip;level=1", None),
    (b"gz ip", None),
])
def test_accept_encoding(value, expected):
    assert parse_accept_encoding(value) == expected


@pytest.mark.parametrize("value,offered,expected", [
    (None, (b"gzip",), (None, False)),
    (b"gzip, deflate, br", (b"gzip",), (b"gzip", False)),
    (b"x-gzip", (b"gzip",), (b"gzip", False)),
    (b"deflate", (b"gzip",), (None, False)),
    (b"*", (b"gzip",), (b"gzip", False)),
    (b"*;q=0, identity", (b"gzip",), (None, False)),
    (b"gzip;q=0, *", (b"gzip",), (None, False)),
    (b"gzip, identity;q=0", (b"gzip",), (b"gzip", True)),
    (b"br;q=0.9, gzip", (b"br", b"gzip"), (b"gzip", False)),
    (b"br, gzip", (b"br", b"gzip"), (b"br", False)),
    (b"gzip;q=5", (b"gzip",), (None, False)),
])
def test_negotiation(value, offered, expected):
    assert negotiate(value, offered) == expected


def test_compressible_types():
    assert compressible(b"text/html; charset=utf-8")
    assert compressible(b"Application/JSON")
    assert compressible(b"image/svg+xml")
    assert not compressible(b"image/png")
    assert not compressible(b"application/octet-stream")
