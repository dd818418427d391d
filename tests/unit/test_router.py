"""App.match as a pure function: exact paths, <name>, <int:x>, <path:p>, 404/405 + Allow, HEAD."""

from __future__ import annotations

import pytest

from tpd2py import App


def h_index(req):
    return b"index"


def h_user(req, name):
    return name


def h_item(req, n):
    return n


def h_file(req, p):
    return p


def h_post(req):
    return b"post"


def h_head(req):
    return b"head"


@pytest.fixture
def app() -> App:
    app = App()
    app.route("/")(h_index)
    app.route("/users/<name>")(h_user)
    app.route("/items/<int:n>")(h_item)
    app.route("/files/<path:p>")(h_file)
    app.route("/form", methods=["POST", "PUT"])(h_post)
    app.route("/both", methods=["GET"])(h_index)
    app.route("/both", methods=["POST"])(h_post)
    app.route("/explicit-head", methods=["GET"])(h_index)
    app.route("/explicit-head", methods=["HEAD"])(h_head)
    app.route("/users/me")(h_index)
    return app


def test_exact_match(app):
    assert app.match(b"GET", b"/") == (h_index, {}, 200, [])


def test_exact_match_beats_pattern_whatever_the_order(app):
    assert app.match(b"GET", b"/users/me")[0] is h_index


def test_percent_encoded_exact_path(app):
    assert app.match(b"GET", b"/%75sers/me")[0] is h_index


def test_name_parameter(app):
    handler, params, status, _ = app.match(b"GET", b"/users/alice")
    assert (handler, params, status) == (h_user, {"name": "alice"}, 200)


def test_name_parameter_is_percent_decoded_utf8(app):
    _, params, _, _ = app.match(b"GET", b"/users/J%C3%B6rg%20B")
    assert params == {"name": "Jörg B"}


def test_name_parameter_does_not_span_slashes(app):
    assert app.match(b"GET", b"/users/a/b")[2] == 404
    assert app.match(b"GET", b"/users/")[2] == 404


def test_int_parameter_is_converted(app):
    handler, params, status, _ = app.match(b"GET", b"/items/0042")
    assert (handler, params, status) == (h_item, {"n": 42}, 200)
    assert isinstance(params["n"], int)


@pytest.mark.parametrize("path", [b"/items/-1", b"/items/1.5", b"/items/x", b"/items/",
                                  b"/items/%D9%A1", b"/items/\xd9\xa1", b"/items/1/2"])
def test_int_parameter_only_ascii_digits(app, path):
    assert app.match(b"GET", path)[2] == 404


def test_int_parameter_with_huge_numeral_is_not_an_exception(app):
    # Regression (BUG #9): int() on 5000 digits raised ValueError (CPython's int/str digit
    # limit) out of the router, which the connection loop does not expect: no response.
    handler, params, status, _ = app.match(b"GET", b"/items/" + b"9" * 5000)
    assert status in (200, 404)


def test_path_parameter_spans_slashes(app):
    _, params, status, _ = app.match(b"GET", b"/files/a/b/c.txt")
    assert (params, status) == ({"p": "a/b/c.txt"}, 200)


def test_path_parameter_needs_at_least_one_char(app):
    assert app.match(b"GET", b"/files/")[2] == 404


def test_unknown_path_is_404(app):
    assert app.match(b"GET", b"/nope") == (None, {}, 404, [])
    assert app.match(b"POST", b"/nope")[2] == 404


def test_wrong_method_is_405_with_allow(app):
    handler, _, status, allowed = app.match(b"DELETE", b"/form")
    assert (handler, status) == (None, 405)
    assert sorted(allowed) == [b"POST", b"PUT"]


def test_405_allow_lists_head_when_get_is_there(app):
    _, _, status, allowed = app.match(b"DELETE", b"/both")
    assert status == 405
    assert sorted(allowed) == [b"GET", b"HEAD", b"POST"]


def test_405_on_a_pattern_route(app):
    _, _, status, allowed = app.match(b"POST", b"/users/bob")
    assert status == 405
    assert sorted(allowed) == [b"GET", b"HEAD"]


def test_methods_are_case_sensitive(app):
    assert app.match(b"get", b"/")[2] == 405


def test_head_falls_back_to_get(app):
    assert app.match(b"HEAD", b"/")[0] is h_index
    assert app.match(b"HEAD", b"/users/x")[0] is h_user


def test_explicit_head_route_wins_over_get(app):
    assert app.match(b"HEAD", b"/explicit-head")[0] is h_head


def test_head_does_not_fall_back_to_post(app):
    _, _, status, allowed = app.match(b"HEAD", b"/form")
    assert status == 405
    assert b"HEAD" not in allowed


def test_several_methods_on_one_route(app):
    assert app.match(b"GET", b"/both")[0] is h_index
    assert app.match(b"POST", b"/both")[0] is h_post


def test_route_pattern_must_start_with_slash():
    with pytest.raises(ValueError):
        App().route("no-slash")


def test_regex_characters_in_patterns_are_literal():
    app = App()
    app.route("/a.b/<name>")(h_user)
    assert app.match(b"GET", b"/a.b/x")[2] == 200
    assert app.match(b"GET", b"/axb/x")[2] == 404


def test_match_never_touches_anything_but_its_arguments(app):
    # A pure function: the same input gives the same output, however often it is asked.
    results = {app.match(b"GET", b"/users/alice")[1]["name"] for _ in range(3)}
    assert results == {"alice"}


@pytest.mark.parametrize("result", [b"<p>bytes</p>", "<p>caf\u00e9</p>", b"", ""])
def test_to_response_fast_path_equals_the_checked_constructor(result):
    """A handler's bytes or str take a shortcut past Response.__init__; it must build exactly
    what the constructor builds."""
    from tpd2py.app import Response, to_response

    fast = to_response(result)
    slow = Response(result)
    assert type(fast) is Response
    assert [getattr(fast, name) for name in Response.__slots__] == \
        [getattr(slow, name) for name in Response.__slots__]


@pytest.mark.parametrize("second", ["/static", "/static/", "/static//"])
def test_a_second_mount_at_the_same_prefix_is_refused(second):
    # Before: the first kept every path under the prefix and the second the prefix itself.
    app = App()
    app.mount("/static", lambda req: b"first")
    with pytest.raises(ValueError, match="mounted already"):
        app.mount(second, lambda req: b"second")
    handler, _, status, _ = app.match(b"GET", b"/static/x")
    assert status == 200 and handler(None) == b"first"
    app.mount("/static/inner", lambda req: b"inner")  # a longer prefix is another mount
    assert app.match(b"GET", b"/static/inner/x")[0](None) == b"inner"
