"""cookies.py as pure functions: the Cookie header's grammar (RFC 6265 §4.2.1) and Set-Cookie
lines (§4.1.1), as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tpd2py.cookies import MAX_COOKIES, delete_cookie_line, parse_cookie_header, set_cookie_line

PARSE = [
    # (Cookie field values, expected)
    ([b"a=1"], {"a": "1"}),
    ([b"a=1; b=2"], {"a": "1", "b": "2"}),
    ([b"a=1;b=2"], {"a": "1", "b": "2"}),  # no space: HTTP/2 gateways, some clients
    ([b"a=1", b"b=2"], {"a": "1", "b": "2"}),  # two fields (RFC 6265 forbids, proxies join)
    ([b'a="quoted"'], {"a": "quoted"}),
    ([b'a=""'], {"a": ""}),
    ([b"a="], {"a": ""}),
    ([b"a=1; a=2"], {"a": "1"}),  # the first (most specific path) wins
    ([b"a=x=y"], {"a": "x=y"}),  # '=' is a cookie-octet
    # Broken pairs are skipped, the rest kept (SimpleCookie would drop everything after).
    ([b"bad value=1; b=2"], {"b": "2"}),  # a space in the name
    ([b"a=has space; b=2"], {"b": "2"}),  # a space in the value
    ([b'a=x"y; b=2'], {"b": "2"}),  # a DQUOTE inside
    ([b"a=x,y; b=2"], {"b": "2"}),  # a comma
    ([b"a=x\\y; b=2"], {"b": "2"}),  # a backslash
    ([b'a="x; b=2'], {"b": "2"}),  # an unclosed quote
    ([b"novalue; b=2"], {"b": "2"}),  # no '='
    ([b"=1; b=2"], {"b": "2"}),  # no name
    ([b"a=\xc3\xa9; b=2"], {"b": "2"}),  # non-ASCII
    ([b"(a)=1; b=2"], {"b": "2"}),  # separators in the name
    ([b""], {}),
    ([b";;; ;"], {}),
    ([], {}),
]


@pytest.mark.parametrize(("values", "expected"), PARSE)
def test_parse_cookie_header(values: list[bytes], expected: dict[str, str]) -> None:
    assert parse_cookie_header(values) == expected


def test_parse_is_bounded() -> None:
    header = "; ".join(f"c{i}=v" for i in range(MAX_COOKIES * 3)).encode()
    assert len(parse_cookie_header([header])) == MAX_COOKIES


SET = [
    (("a", "1"), {}, b"a=1; Path=/; SameSite=Lax"),
    (("a", "1"), {"path": None, "samesite": None}, b"a=1"),
    (("sid", "x"), {"max_age": 60, "secure": True, "httponly": True, "samesite": "strict",
                    "domain": "example.org"},
     b"sid=x; Max-Age=60; Domain=example.org; Path=/; Secure; HttpOnly; SameSite=Strict"),
    (("a", "1"), {"expires": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)},
     b"a=1; Expires=Wed, 02 Jan 2030 03:04:05 GMT; Path=/; SameSite=Lax"),
    (("a", "1"), {"expires": datetime(2030, 1, 2, 4, 4, 5,
                                      tzinfo=timezone(timedelta(hours=1)))},
     b"a=1; Expires=Wed, 02 Jan 2030 03:04:05 GMT; Path=/; SameSite=Lax"),
    (("a", "1"), {"expires": 0}, b"a=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; "
                                 b"SameSite=Lax"),
    (("a", '"q"'), {}, b'a="q"; Path=/; SameSite=Lax'),
    (("n", "SameSite"), {"samesite": "None", "secure": True},
     b"n=SameSite; Path=/; Secure; SameSite=None"),
    (("__Host-id", "1"), {"secure": True}, b"__Host-id=1; Path=/; Secure; SameSite=Lax"),
    (("__Secure-id", "1"), {"secure": True, "path": "/app"},
     b"__Secure-id=1; Path=/app; Secure; SameSite=Lax"),
]


@pytest.mark.parametrize(("args", "kwargs", "expected"), SET)
def test_set_cookie_line(args: tuple[str, str], kwargs: dict, expected: bytes) -> None:
    assert set_cookie_line(*args, **kwargs) == expected


BAD_SET = [
    (("a b", "1"), {}, "not an RFC 6265 token"),
    (("a;", "1"), {}, "token"),
    (("", "1"), {}, "token"),
    (("a", "x y"), {}, "cookie-octets"),
    (("a", "x;y"), {}, "cookie-octets"),
    (("a", "x\r\nSet-Cookie: evil=1"), {}, "cookie-octets"),
    (("a", "é"), {}, "cookie-octets"),
    (("a", "1"), {"path": "/x;Domain=evil"}, "bad path"),
    (("a", "1"), {"path": "/x\n"}, "bad path"),
    (("a", "1"), {"domain": ""}, "bad domain"),
    (("a", "1"), {"samesite": "sometimes"}, "samesite is"),
    (("a", "1"), {"samesite": "None"}, "secure=True"),
    (("a", "1"), {"max_age": 1.5}, "whole seconds"),
    (("a", "1"), {"max_age": True}, "whole seconds"),
    (("a", "1"), {"expires": datetime(2030, 1, 1)}, "aware datetime"),  # noqa: DTZ001
    (("__Secure-x", "1"), {}, "__Secure-"),
    (("__Host-x", "1"), {"secure": True, "path": "/a"}, "__Host-"),
    (("__Host-x", "1"), {"secure": True, "domain": "a.org"}, "__Host-"),
]


@pytest.mark.parametrize(("args", "kwargs", "message"), BAD_SET)
def test_set_cookie_line_refuses(args: tuple[str, str], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        set_cookie_line(*args, **kwargs)


def test_delete_cookie_line() -> None:
    assert delete_cookie_line("sid") == (b"sid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 "
                                         b"GMT; Path=/; SameSite=Lax")
    line = delete_cookie_line("sid", path="/app", domain="example.org")
    assert b"Path=/app" in line and b"Domain=example.org" in line and b"Max-Age=0" in line


def test_the_parse_of_a_header_is_shared_read_only_and_bounded() -> None:
    from tpd2py import cookies

    fields = [(b"host", b"a"), (b"cookie", b"sid=1; theme=dark")]
    first = cookies.cookie_mapping(fields)
    assert first == {"sid": "1", "theme": "dark"}
    assert cookies.cookie_mapping(list(fields)) is first  # one parse per distinct header
    with pytest.raises(TypeError):
        first["sid"] = "2"  # type: ignore[index]
    for i in range(cookies.CACHE_ENTRIES * 2):
        cookies.cookie_mapping([(b"cookie", b"n=%d" % i)])
        assert len(cookies._CACHE) <= cookies.CACHE_ENTRIES
    big = b"a=" + b"x" * cookies.CACHE_MAX_HEADER
    assert cookies.cookie_mapping([(b"cookie", big)])["a"] == "x" * cookies.CACHE_MAX_HEADER
    assert big not in cookies._CACHE
    # Two Cookie fields (HTTP/2 gateways split them) are read as one.
    assert cookies.cookie_mapping([(b"cookie", b"a=1"), (b"cookie", b"b=2")]) == \
        {"a": "1", "b": "2"}
    assert cookies.cookie_mapping([(b"host", b"a")]) == {}
