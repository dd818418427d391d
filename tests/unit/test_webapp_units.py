"""The web-app layer as pure functions: url_for's escaping, definition-time errors, the
handler return values to_response accepts, and the signed session cookie (tampering, expiry,
key rotation)."""

from __future__ import annotations

import base64
import json

import pytest

from tpd2py import App, Response
from tpd2py.app import to_response
from tpd2py.sessions import Sessions
from tpd2py.urls import redirect

KEY = "k" * 32
OTHER = "o" * 32


def app_with_routes() -> App:
    app = App()

    @app.route("/")
    def index(req: object) -> bytes:
        return b""

    @app.route("/users/<int:uid>", name="user")
    def user(req: object, uid: int) -> bytes:
        return b""

    @app.route("/tag/<tag>")
    def tag(req: object, tag: str) -> bytes:
        return b""

    @app.route("/files/<path:rest>")
    def files(req: object, rest: str) -> bytes:
        return b""

    @app.route("/caf\u00e9")
    def cafe(req: object) -> bytes:
        return b""

    return app


URLS = [
    ("index", {}, "/"),
    ("index", {"q": "a b", "n": 1}, "/?q=a+b&n=1"),
    ("user", {"uid": 42}, "/users/42"),
    ("tag", {"tag": "a b&c?d#e%f"}, "/tag/a%20b%26c%3Fd%23e%25f"),
    ("tag", {"tag": "caf\u00e9"}, "/tag/caf%C3%A9"),
    ("files", {"rest": "a/b c/d.txt"}, "/files/a/b%20c/d.txt"),
    ("cafe", {}, "/caf%C3%A9"),
]


@pytest.mark.parametrize(("name", "params", "expected"), URLS)
def test_url_for(name: str, params: dict, expected: str) -> None:
    app = app_with_routes()
    url = app.url_for(name, **params)
    assert url == expected
    # What url_for builds, the router matches, with the same parameters.
    path = url.partition("?")[0].encode()
    handler, matched, status, _ = app.match(b"GET", path)
    assert status == 200 and handler is not None
    route_params = {k: v for k, v in params.items() if k not in ("q", "n")}
    assert matched == route_params


BAD_URLS = [
    ("user", {}, ValueError, "needs uid="),
    ("user", {"uid": -1}, ValueError, "int from 0"),
    ("user", {"uid": "7"}, ValueError, "int from 0"),
    ("user", {"uid": 10**18}, ValueError, "int from 0"),
    ("tag", {"tag": "a/b"}, ValueError, "<path:tag>"),
    ("tag", {"tag": ""}, ValueError, "empty"),
    ("nope", {}, LookupError, "no route named 'nope'"),
]


@pytest.mark.parametrize(("name", "params", "error", "message"), BAD_URLS)
def test_url_for_refuses(name: str, params: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        app_with_routes().url_for(name, **params)


def test_url_for_names() -> None:
    app = App()

    def page(req: object) -> bytes:
        return b""

    app.add_route("/a", page)
    assert app.url_for("page") == "/a"
    app.add_route("/b", page)  # the same function twice: its default name is ambiguous
    with pytest.raises(LookupError, match="ambiguous"):
        app.url_for("page")
    app.add_route("/c", page, name="c")
    assert app.url_for("c") == "/c"
    with pytest.raises(ValueError, match="is given to"):
        app.add_route("/d", page, name="c")


DEFINITION_ERRORS = [
    ("/x/<float:x>", lambda req, x: b"", ValueError, "not a parameter"),
    ("/x/<x", lambda req: b"", ValueError, "not a parameter"),
    ("/x/<a>/<a>", lambda req, a: b"", ValueError, "twice"),
    ("/x/<a>", lambda req: b"", TypeError, r"must take \(request, a\)"),
    ("/x", lambda: b"", TypeError, r"must take \(request\)"),
    ("x", lambda req: b"", ValueError, "starts with '/'"),
]


@pytest.mark.parametrize(("pattern", "fn", "error", "message"), DEFINITION_ERRORS)
def test_route_mistakes_fail_at_definition(pattern: str, fn: object, error: type,
                                           message: str) -> None:
    app = App()
    with pytest.raises(error, match=message):
        app.route(pattern)(fn)  # type: ignore[arg-type]


def test_one_function_with_two_body_limits_fails() -> None:
    app = App()

    def upload(req: object) -> bytes:
        return b""

    app.add_route("/a", upload, methods=["POST"], max_body_size=10)
    app.add_route("/a", upload, methods=["PUT"], max_body_size=10)  # the same route: fine
    with pytest.raises(ValueError, match="different max_body_size: use two functions"):
        app.add_route("/b", upload, methods=["POST"])


def test_methods_given_as_a_string_fail() -> None:
    with pytest.raises(TypeError, match="methods is a list"):
        App().add_route("/", lambda req: b"", methods="POST")


def test_a_handler_with_kwargs_takes_any_parameter() -> None:
    App().add_route("/x/<a>/<int:b>", lambda req, **params: b"")


RESULTS = [
    (("body", 201), 201, b"body", []),
    ((b"raw", 202, {"X-A": "1"}), 202, b"raw", [(b"X-A", b"1")]),
    (({"a": 1}, 400), 400, b'{"a": 1}', [(b"Content-Type", b"application/json")]),
    (("x", 404, [("X-B", "2")]), 404, b"x", [(b"X-B", b"2")]),
]


@pytest.mark.parametrize(("result", "status", "body", "headers"), RESULTS)
def test_tuple_returns(result: tuple, status: int, body: bytes, headers: list) -> None:
    response = to_response(result)
    assert response.status == status and response.body == body
    for header in headers:
        assert header in response.headers


@pytest.mark.parametrize(("result", "message"), [
    (None, "returned None"),
    (("x",), "expected \\(body, status\\)"),
    (("x", "200"), "expected \\(body, status\\)"),
    (("x", True), "expected \\(body, status\\)"),
    ((Response(b"x"), 201), "not a Response"),
    (3.5, "handler returned float"),
])
def test_bad_returns_say_what_is_wrong(result: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        to_response(result)


def test_redirect() -> None:
    r = redirect("/next")
    assert r.status == 303 and (b"Location", b"/next") in r.headers
    assert (b"Location", b"/caf%C3%A9?q=%C3%A9") in redirect("/caf\u00e9?q=\u00e9", 302).headers
    with pytest.raises(ValueError, match="not one of"):
        redirect("/", 200)
    with pytest.raises(ValueError, match="CR, LF"):
        redirect("/\r\nSet-Cookie: a=1")


# -- the signed session cookie ------------------------------------------------------------------


def sessions(keys: list[str], max_age: int = 3600) -> Sessions:
    return Sessions(App(), keys, max_age=max_age)


def test_session_round_trip() -> None:
    s = sessions([KEY])
    value = s.encode({"user": "ada", "n": 3}, now=1000)
    assert s.decode(value, now=1001) == {"user": "ada", "n": 3}


def _forge(value: str, payload: dict) -> str:
    _, issued, mac = value.split(".")
    data = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{data}.{issued}.{mac}"


TAMPERED = [
    lambda v: _forge(v, {"user": "admin"}),  # payload changed, signature kept
    lambda v: v.replace(".1000.", ".999999."),  # issued time moved (renewal by hand)
    lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),  # signature changed
    lambda v: v.rsplit(".", 1)[0],  # signature removed
    lambda v: v + ".x",
    lambda v: "",
    lambda v: "...",
    lambda v: "!!!.1000.!!!",
    lambda v: v.split(".")[0] + ".notanint." + v.split(".")[2],
]


@pytest.mark.parametrize("tamper", TAMPERED)
def test_tampering_gives_an_empty_session(tamper: object) -> None:
    s = sessions([KEY])
    value = s.encode({"user": "ada"}, now=1000)
    assert s.decode(tamper(value), now=1001) == {}  # type: ignore[operator]


def test_a_session_signed_for_another_cookie_name_is_refused() -> None:
    a = Sessions(App(), [KEY], cookie_name="a")
    b = Sessions(App(), [KEY], cookie_name="b")
    assert b.decode(a.encode({"x": 1}, now=1000), now=1001) == {}


def test_expiry() -> None:
    s = sessions([KEY], max_age=60)
    value = s.encode({"x": 1}, now=1000)
    assert s.decode(value, now=1060) == {"x": 1}
    assert s.decode(value, now=1061) == {}
    assert s.decode(value, now=1000 - 61) == {}  # from the future, past the clock skew


def test_key_rotation() -> None:
    old = sessions([OTHER])
    value = old.encode({"x": 1}, now=1000)
    rotated = sessions([KEY, OTHER])  # the new key signs, the old one still verifies
    assert rotated.decode(value, now=1001) == {"x": 1}
    renewed = rotated.encode({"x": 1}, now=1001)
    assert old.decode(renewed, now=1002) == {}  # signed with the new key
    assert sessions([KEY]).decode(value, now=1001) == {}  # old key dropped: gone


def test_session_limits() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        sessions(["short"])
    with pytest.raises(ValueError, match="at least one"):
        sessions([])
    with pytest.raises(ValueError, match="does not fit"):
        sessions([KEY]).encode({"big": "x" * 4000})
    with pytest.raises(ValueError, match="samesite"):
        Sessions(App(), [KEY], samesite="bogus")
    assert sessions([KEY]).decode(sessions([KEY]).encode({"n": [1]})) == {"n": [1]}
