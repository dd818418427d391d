"""The byte twins of jinja2's built-in filters (tpd2py._jinja_filters) against jinja2 itself.

Each twin must return ``str(markupsafe.escape(filter(...))).encode()`` for every input, or raise
the same exception with the same message. Hypothesis feeds them hostile values: HTML and URL
special characters, non-ASCII, Markup, objects with ``__html__``, None, Undefined, numbers,
bytes, nested containers. The templates using them are in templates_corpus/byte_filters.html
(run by test_templates.py's differential test); the last tests here check that a filter the
application replaced is the one that runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import filters as stock_filters
from jinja2.nodes import EvalContext
from markupsafe import Markup, escape

from tpd2py._jinja_filters import BYTE_FILTERS, format_is_safe, quote_path, quote_qs
from tpd2py.templates import Templates


class HasHtml:
    def __init__(self, text: str) -> None:
        self.text = text

    def __html__(self) -> str:
        return f"<h>{self.text}</h>"

    def __str__(self) -> str:
        return f"s<{self.text}>"


class StrSub(str):
    pass


ENV = jinja2.Environment(autoescape=True)
ON, OFF = EvalContext(ENV), EvalContext(jinja2.Environment(autoescape=False))
UNDEFINED = jinja2.Undefined(name="u")

SPECIAL = list("<>&\"'%/ +=?#;~._-aZ09é漢😀\n\t\x00\x7f") + ["%s", "%20", "&amp;"]
text = st.lists(st.sampled_from(SPECIAL) | st.characters(blacklist_categories=("Cs",)),
                max_size=8).map("".join)
scalar = (text | text.map(Markup) | text.map(HasHtml) | text.map(StrSub) | st.integers()
          | st.floats(allow_nan=True) | st.booleans() | st.none() | st.builds(lambda: UNDEFINED)
          | st.binary(max_size=6))
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                     | st.tuples(inner, inner) | st.dictionaries(text, inner, max_size=3),
                     max_leaves=6)


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", call())
    except Exception as error:
        return ("error", type(error), str(error))


def check(name: str, *args: Any) -> None:
    """The twin of filter ``name`` against the filter, then escaped and encoded."""
    stock, twin, _, takes_eval_ctx = BYTE_FILTERS[name]
    first = (ON,) if takes_eval_ctx else ()
    expected = outcome(lambda: str(escape(stock(*first, *args))).encode())
    assert outcome(lambda: twin(*first, *args)) == expected, (name, args)


@settings(max_examples=400, deadline=None)
@given(value)
def test_urlencode(data: Any) -> None:
    check("urlencode", data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(scalar, scalar), max_size=4))
def test_urlencode_pairs(pairs: list[tuple[Any, Any]]) -> None:
    check("urlencode", pairs)
    check("urlencode", dict((repr(k), v) for k, v in pairs))


def test_url_quoting_of_every_byte_and_some_characters() -> None:
    # quote_path/quote_qs are what urlencode does to a lone value / to each key and value.
    for char in [chr(code) for code in range(512)] + ["😀", "漢", "é", "\U0010ffff"]:
        assert quote_path(char) == stock_filters.do_urlencode(char).encode(), repr(char)
        assert quote_qs(char) == stock_filters.do_urlencode({char: ""})[:-1].encode(), repr(char)
    data = bytes(range(256))
    assert quote_path(data) == jinja2.utils.url_quote(data).encode()
    assert quote_qs(data) == jinja2.utils.url_quote(data, for_qs=True).encode()


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(text | st.sampled_from(["class", "data-id", "a b", "x/y", "k>", "k="]),
                       scalar, max_size=4), st.booleans() | st.none() | st.just(1))
def test_xmlattr(mapping: dict[str, Any], autospace: Any) -> None:
    check("xmlattr", mapping)
    check("xmlattr", mapping, autospace)


@pytest.mark.parametrize("mapping", [{1: "int key"}, {"k": None}, {"k": UNDEFINED},
                                     {Markup("<m>"): "v"}, {StrSub("s&"): HasHtml("h")}, [],
                                     {}, "not a dict", UNDEFINED])
def test_xmlattr_odd_arguments(mapping: Any) -> None:
    check("xmlattr", mapping)


@settings(max_examples=400, deadline=None)
@given(text | text.map(Markup) | scalar
       | st.sampled_from(["%s", "%d", "%.2f <%s>", "%(a)s", "%r", "%5.1f%%"]),
       st.lists(scalar, max_size=3))
def test_format(template: Any, args: list[Any]) -> None:
    check("format", template, *args)


@pytest.mark.parametrize("kwargs", [{"a": "<x>"}, {"a": 1}])
def test_format_with_keywords(kwargs: dict[str, Any]) -> None:
    stock, twin, _, _ = BYTE_FILTERS["format"]
    for template in ("%(a)s", Markup("%(a)s"), "x"):
        assert (outcome(lambda t=template: twin(t, **kwargs))  # type: ignore[misc]
                == outcome(lambda t=template: str(escape(stock(t, **kwargs))).encode()))
    assert outcome(lambda: twin("%s", 1, a=2)) == outcome(lambda: stock("%s", 1, a=2))


@pytest.mark.parametrize(("template", "safe"), [
    ("%.2f", True), ("%d items", True), ("%5.1f%%", True), ("%+08.3F|%x|%#o|%e|%G", True),
    ("%s", False), ("%r", False), ("%c", False), ("%(a)d", False), ("<%d>", False), ("&%d", False),
    ("%", False), ("%5%", False), ("%%s", True), ("%*d", True), ("%ld", True), ("'%d'", False)])
def test_format_is_safe(template: str, safe: bool) -> None:
    assert format_is_safe(template) is safe


@settings(max_examples=400, deadline=None)
@given(st.lists(text, max_size=4) | st.lists(scalar, max_size=4) | st.tuples(text, text)
       | st.tuples(scalar) | scalar, text | text.map(Markup) | scalar)
def test_join(items: Any, delimiter: Any) -> None:
    check("join", items)
    check("join", items, delimiter)
    stock, twin, _, _ = BYTE_FILTERS["join"]
    expected = outcome(lambda: str(escape(stock(OFF, items, delimiter))).encode())
    assert outcome(lambda: twin(OFF, items, delimiter)) == expected  # autoescape off: stock's


@settings(max_examples=300, deadline=None)
@given(value, scalar, st.booleans() | scalar)
def test_the_small_ones(data: Any, default: Any, boolean: Any) -> None:
    for name in ("length", "count", "escape", "e", "safe"):
        check(name, data)
    for name in ("default", "d"):
        check(name, data)
        check(name, data, default)
        check(name, data, default, boolean)


def test_every_twin_is_for_the_environment_s_own_filter() -> None:
    for name, (stock, _, _, _) in BYTE_FILTERS.items():
        assert jinja2.Environment().filters[name] is stock


# -- the application's own filter wins


PAGE = '<a href="/?{{ {"q": q}|urlencode }}" {{ {"id": q}|xmlattr }}>{{ "%.1f"|format(n) }}</a>'


def test_a_filter_replaced_before_loading_runs() -> None:
    templates = Templates(loader=jinja2.DictLoader({"p.html": PAGE}))
    templates.env.filters["urlencode"] = lambda value: "U"
    templates.env.filters["format"] = lambda value, *args: "F<"
    assert b"".join(templates.render("p.html", q="a b", n=1)) == (
        b'<a href="/?U"  id="a b">F&lt;</a>')


def test_a_filter_replaced_after_loading_runs() -> None:
    templates = Templates(loader=jinja2.DictLoader({"p.html": PAGE}))
    assert b"".join(templates.render("p.html", q="a b&", n=1)) == (
        b'<a href="/?q=a+b%26"  id="a b&amp;">1.0</a>')
    templates.env.filters["xmlattr"] = jinja2.pass_eval_context(lambda ctx, value: "X")
    templates.env.filters["format"] = lambda value, *args: "F<"
    assert b"".join(templates.render("p.html", q="a b&", n=1)) == (
        b'<a href="/?q=a+b%26" X>F&lt;</a>')
