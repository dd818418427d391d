"""html.py pages whose holes declare their types (``Var[T]``): same bytes, less work.

The differential test of test_html.py is run again with the holes declared ``str``,
``str | None``, ``int`` or ``int | None`` and values of that type (a Markup is a str): the
compiled page must still match the naive renderer. Then: how declarations follow ``each``,
attributes and items; what the generated code drops; what a value that breaks its
declaration does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from tests.unit.test_html import build, html, reference, specs, words
from tpd2py._html_nodes import declared_type, element_type, item_type, member_type, value_kind
from tpd2py.html import Var, each, h, page, when

KINDS: dict[str, tuple[Any, st.SearchStrategy[Any]]] = {
    "str": (str, words | words.map(Markup)),
    "str?": (str | None, st.none() | words | words.map(Markup)),
    "int": (int, st.integers(-10**20, 10**20)),
    "int?": (Optional[int], st.none() | st.integers(-10, 10)),  # noqa: UP045 - both spellings
}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), spec=specs, kind=st.sampled_from(sorted(KINDS)))
def test_declared_pages_match_a_naive_renderer(data: st.DataObject, spec: Any, kind: str) -> None:
    declared, values = KINDS[kind]
    a, b = data.draw(values), data.draw(values)
    rows = data.draw(st.lists(values, max_size=3))

    def define(a: Any, b: Any, rows: Any) -> Any:
        return build(spec, {"a": a, "b": b, "rows": rows})

    define.__annotations__ = {"a": Var[declared], "b": Var[declared],
                              "rows": Var[list[declared]]}  # type: ignore[valid-type]
    assert html(page(define), a=a, b=b, rows=rows) == reference(
        spec, {"a": a, "b": b, "rows": rows})


@dataclass
class Product:
    id: int
    name: str
    note: str | None
    stock: int | None
    tags: list[str]
    meta: dict[str, int]
    pair: tuple[str, int]


def test_declarations_follow_each_attributes_and_items() -> None:
    assert declared_type(Var[list[Product]]) == list[Product]
    assert declared_type(Var) is None and declared_type(list[int]) is None
    assert element_type(list[Product]) is Product
    assert element_type(Sequence[int]) is int and element_type(tuple[str, ...]) is str
    assert element_type(dict[str, int]) is str and element_type(tuple[str, int]) is None
    assert member_type(Product, "note") == (str | None) and member_type(Product, "x") is None
    assert member_type(list[int], "x") is None
    assert item_type(dict[str, int], "k") is int and item_type(list[str], 0) is str
    assert item_type(tuple[str, int], 1) is int and item_type(tuple[str, int], 2) is None
    assert item_type(list[str], "k") is None
    assert [value_kind(t) for t in (str, int, str | None, Optional[int], bool, float,  # noqa: UP045
                                    int | str, Markup, None)] == [
        "str", "int", "str?", "int?", None, None, None, None, None]


def products_page_definition(title: Any, products: Any) -> Any:
    return h.section(h.h1(title), each(products, lambda p, loop: h.article(
        h.h2(p.name), h.p(p.note), h.p(p.stock), h.p(p.meta["weight"]), h.p(p.pair[0]),
        h.p(p.pair[1]), h.ul(each(p.tags, lambda tag: h.li(tag))),
        when(p.stock, h.b(p.stock), h.i("out")),
        id=p.id, title=p.note, data_stock=p.stock, data_name=p.name, data_n=loop.index)))


@page
def products_page(title: Var[str], products: Var[list[Product]]) -> Any:
    return products_page_definition(title, products)


@page
def untyped_page(title: Var, products: Var) -> Any:
    return products_page_definition(title, products)


PRODUCTS = [Product(7, "pâté <&>", None, None, ["a&b", "ü"], {"weight": 250}, ("x<", 3)),
            Product(-8, Markup("<em>kept</em>"), 'n"1', 0, [], {"weight": -1}, ("", 0)),
            Product(10**20, "", "", 12, ["t"], {"weight": 0}, ("y", 10**20))]


def test_a_declared_page_renders_the_same_bytes_with_less_code() -> None:
    assert html(products_page, title="T<", products=PRODUCTS) == html(
        untyped_page, title="T<", products=PRODUCTS)
    typed, untyped = products_page.source, untyped_page.source
    assert typed.count("type(") < untyped.count("type(")
    assert ' id="%d"' in typed and "data-name=\"%s\"" in typed  # no bytes of their own
    assert "_attr(b' id'" not in typed and "_attr(b' id'" in untyped


def test_a_value_breaking_its_declaration() -> None:
    bad = Product(1, None, None, None, [], {"weight": 1}, ("", 0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"\.name\) is declared str, but is None"):
        products_page.chunks(title="t", products=[bad])
    bad = Product("1", "n", None, None, [], {"weight": 1}, ("", 0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="%d format"):
        products_page.chunks(title="t", products=[bad])
    # A declared int is written with %d: a bool (an int) as 1, a float as int() makes it.
    odd = Product(True, "n", None, 2.9, [], {"weight": 1}, ("", 0))  # type: ignore[arg-type]
    assert 'id="1"' in html(products_page, title="t", products=[odd])
    assert "<p>2</p>" in html(products_page, title="t", products=[odd])
    # A declared str that is a Markup, an int or an object with __html__ is written as usual.
    fine = Product(1, 5, None, None, [], {"weight": 1}, ("", 0))  # type: ignore[arg-type]
    assert 'data-name="5"' in html(products_page, title=Markup("<b>"), products=[fine])


def test_annotations_that_do_not_resolve_declare_nothing() -> None:
    def define(a: Var[NoSuchType]) -> Any:  # type: ignore[name-defined]  # noqa: F821
        return h.p(a, title=a)

    compiled = page(define)
    assert html(compiled, a=None) == "<p></p>"
    assert html(compiled, a=3) == '<p title="3">3</p>'
