"""tpd2py.html: pages compiled to functions appending pre-encoded bytes.

Pure functions: define a page, render it, compare bytes. Definition mistakes must raise at
definition. A hypothesis test builds random trees twice, once as html.py nodes and once as a
naive reference renderer, and demands the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup, escape

from tpd2py.html import (
    BIG_STATIC,
    DOCTYPE,
    HtmlDefinitionError,
    Loop,
    Page,
    Var,
    each,
    h,
    page,
    when,
)


def html(p: Page, **values: Any) -> str:
    chunks = p.chunks(**values)
    assert all(type(chunk) is bytes for chunk in chunks)
    return b"".join(chunks).decode()


@dataclass
class User:
    name: str
    email: str | None = None
    admin: bool = False


# -- static markup


def test_static_page_is_one_constant_chunk() -> None:
    @page
    def hello() -> Any:
        return [DOCTYPE, h.html(h.body(h.h1("Tom & Jerry's <show>"), h.p("100% é")), lang="en")]

    assert hello.chunks() == [
        '<!DOCTYPE html><html lang="en"><body><h1>Tom &amp; Jerry&#39;s &lt;show&gt;</h1>'
        "<p>100% é</p></body></html>".encode()]
    assert hello.chunks()[0] is hello.chunks()[0]  # a constant of the function, never rebuilt


def test_static_attributes() -> None:
    @page
    def form() -> Any:
        return h.form(
            h.input(type="checkbox", checked=True, disabled=False, value='say "hi" & <go>',
                    data_user_id=7, aria_label="x", http_equiv=None),
            h.label("L", for_="i", class_="a b"),
            {"@click": "go()", "hx-get": "/x"}, action="/f")

    assert html(form) == (
        '<form @click="go()" hx-get="/x" action="/f"><input type="checkbox" checked '
        'value="say &#34;hi&#34; &amp; &lt;go&gt;" data-user-id="7" aria-label="x">'
        '<label for="i" class="a b">L</label></form>')


def test_void_elements_have_no_closing_tag_and_no_children() -> None:
    @page
    def voids() -> Any:
        return h.p("a", h.br(), h.img(src="/x.png", alt=""), h.hr(), h.meta(charset="utf-8"))

    assert html(voids) == '<p>a<br><img src="/x.png" alt=""><hr><meta charset="utf-8"></p>'
    with pytest.raises(HtmlDefinitionError, match="void"):
        h.br("child")
    with pytest.raises(HtmlDefinitionError, match="void"):
        h.input(h.span())


def test_children_forms() -> None:
    @page
    def kids() -> Any:
        items = ["one", "two"]
        return h.ul((h.li(i) for i in items), None, False, True, [[3, 4.5]], Markup("<hr/>"))

    assert html(kids) == "<ul><li>one</li><li>two</li>34.5<hr/></ul>"


def test_script_and_style_keep_static_text_raw() -> None:
    @page
    def scripted() -> Any:
        return [h.script("if (a < b && c) {}"), h.style("p > a { color: red }")]

    assert html(scripted) == (
        "<script>if (a < b && c) {}</script><style>p > a { color: red }</style>")


# -- holes


def test_holes_are_escaped_and_encoded() -> None:
    @page
    def greet(name: Var, note: Var) -> Any:
        return h.p("Hello ", h.b(name), "! ", note, title=name)

    assert html(greet, name="<Zoë & \"Jo\" 'x'>", note=None) == (
        '<p title="&lt;Zoë &amp; &#34;Jo&#34; &#39;x&#39;&gt;">Hello '
        "<b>&lt;Zoë &amp; &#34;Jo&#34; &#39;x&#39;&gt;</b>! </p>")
    assert html(greet, name=Markup("<i>safe</i>"), note=42) == (
        '<p title="<i>safe</i>">Hello <b><i>safe</i></b>! 42</p>')
    assert greet.chunks(name="a", note="b") == [b'<p title="a">Hello <b>a</b>! b</p>']


def test_dynamic_attributes_none_false_true() -> None:
    @page
    def box(checked: Var, label: Var) -> Any:
        return h.input(type="checkbox", checked=checked, value=label)

    assert html(box, checked=True, label=1) == '<input type="checkbox" checked value="1">'
    assert html(box, checked=False, label=None) == '<input type="checkbox">'
    assert html(box, checked="yes", label="<") == (
        '<input type="checkbox" checked="yes" value="&lt;">')


def test_attribute_and_item_paths() -> None:
    @page
    def card(user: Var, row: Var) -> Any:
        return h.div(user.name, " ", row["id"], " ", row["tags"][0])

    assert html(card, user=User("ann"), row={"id": 5, "tags": ["<t>"]}) == (
        "<div>ann 5 &lt;t&gt;</div>")


def test_render_appends_to_a_list_and_checks_hole_names() -> None:
    @page
    def one(x: Var) -> Any:
        return h.i(x)

    out: list[bytes] = [b"before"]
    one.render(out, x="y")
    assert out == [b"before", b"<i>y</i>"]
    with pytest.raises(TypeError):
        one.render([], x=1, y=2)
    with pytest.raises(TypeError):
        one.render([])


# -- loops and conditionals


def test_each_with_loop_values_and_cycle() -> None:
    @page
    def table(users: Var) -> Any:
        return h.table(each(users, lambda u, loop: h.tr(
            h.td(loop.index), h.td(u.name), h.td(loop.cycle("odd", "<even>")),
            when(loop.first, h.td("first")), when(loop.last, h.td("last")),
            class_=loop.cycle("a", None, "c"), data_n=loop.length)))

    assert html(table, users=[User("x"), User("<y>"), User("z")]) == (
        '<table><tr class="a" data-n="3"><td>1</td><td>x</td><td>odd</td><td>first</td></tr>'
        '<tr data-n="3"><td>2</td><td>&lt;y&gt;</td><td>&lt;even&gt;</td></tr>'
        '<tr class="c" data-n="3"><td>3</td><td>z</td><td>odd</td><td>last</td></tr></table>')
    assert html(table, users=[]) == "<table></table>"
    assert html(table, users=(User(str(i)) for i in range(0))) == "<table></table>"


def test_each_otherwise_and_nested_loops() -> None:
    @page
    def groups(groups: Var) -> Any:
        return h.div(each(groups, lambda g: h.section(
            h.h2(g["name"]),
            each(g["members"], lambda m, loop: h.span(loop.index0, ":", m),
                 otherwise=h.em("nobody"))),
            otherwise="no groups"))

    assert html(groups, groups=[]) == "<div>no groups</div>"
    assert html(groups, groups=[{"name": "a", "members": ["x", "<y>"]},
                                {"name": "b", "members": []}]) == (
        "<div><section><h2>a</h2><span>0:x</span><span>1:&lt;y&gt;</span></section>"
        "<section><h2>b</h2><em>nobody</em></section></div>")


def test_when() -> None:
    @page
    def badge(user: Var) -> Any:
        return h.p(user.name, when(user.admin, h.b(" admin"), " member"),
                   when(user.email, h.a(user.email, href=user.email)))

    assert html(badge, user=User("a", None, True)) == "<p>a<b> admin</b></p>"
    assert html(badge, user=User("b", "m@x")) == '<p>b member<a href="m@x">m@x</a></p>'


def test_chunks_loops_and_big_constants_stand_alone() -> None:
    filler = "x" * BIG_STATIC

    @page
    def big(rows: Var, title: Var) -> Any:
        return h.div(h.p(filler), h.h1(title), h.ul(each(rows, lambda r: h.li(r))), h.p("end"))

    chunks = big.chunks(rows=range(500), title="t")
    assert len(chunks) == 4  # the big constant, the title run, the loop, the tail
    assert chunks[0] is big.chunks(rows=[], title="")[0]
    assert b"".join(chunks).count(b"<li>") == 500


def test_percent_signs_survive_formatting() -> None:
    @page
    def pct(v: Var) -> Any:
        return h.p("100% %s %d %% ", v, " %(x)s", title="50%")

    assert html(pct, v="%s") == '<p title="50%">100% %s %d %% %s %(x)s</p>'


# -- definition-time errors


@pytest.mark.parametrize("make", [
    lambda: h.blink,
    lambda: h("notcustom"),
    lambda: h("Bad-Case"),
    lambda: h.div(clas="typo"),
    lambda: h.div({"bad name": 1}),
    lambda: h.div({"a=b": 1}),
    lambda: h.div({"class": "a"}, class_="b"),
    lambda: h.div(b"bytes"),
    lambda: h.div(object()),
    lambda: h.div(style=[1, 2]),
    lambda: h.script("</script><script>"),
    lambda: h.style(Markup("</STYLE>")),
])
def test_definition_errors(make: Any) -> None:
    with pytest.raises(HtmlDefinitionError):
        make()


def test_custom_elements_and_keyword_tags() -> None:
    @page
    def custom() -> Any:
        return [h("my-widget")(h.del_("old"), size="2"), h.object(data="/x")]

    assert html(custom) == (
        '<my-widget size="2"><del>old</del></my-widget><object data="/x"></object>')


def test_vars_refuse_definition_time_logic() -> None:
    def uses_if(user: Var) -> Any:
        return h.p("admin" if user.admin else "member")

    def iterates(users: Var) -> Any:
        return h.ul([h.li(u) for u in users])

    def script_value(code: Var) -> Any:
        return h.script(code)

    for define in (uses_if, iterates, script_value):
        with pytest.raises(HtmlDefinitionError):
            page(define)


def test_vars_out_of_scope_are_unknown_holes() -> None:
    leaked: list[Var] = []
    loops: list[Loop] = []

    def remember(u: Var, loop: Loop) -> Any:
        leaked.append(u)
        loops.append(loop)
        return h.li(u)

    @page
    def first(users: Var) -> Any:
        return [h.ul(each(users, remember)), h.p(users)]

    with pytest.raises(HtmlDefinitionError, match="outside"):
        page(lambda users: [h.ul(each(users, remember)), h.p(leaked[-1])])
    with pytest.raises(HtmlDefinitionError, match="outside"):
        page(lambda x: h.p(loops[-1].index))
    with pytest.raises(HtmlDefinitionError, match="another page|outside"):
        page(lambda: h.p(leaked[0]))
    with pytest.raises(HtmlDefinitionError, match="when"):
        page(lambda xs: each(xs, lambda x, loop: h.p(loop.first)))
    with pytest.raises(HtmlDefinitionError):
        page(lambda xs: each(xs, lambda: h.p()))
    with pytest.raises(HtmlDefinitionError):
        page(lambda x=1: h.p(x))
    with pytest.raises(HtmlDefinitionError):
        page(lambda *xs: h.p())
    assert html(first, users=["a"]) == "<ul><li>a</li></ul><p>[&#39;a&#39;]</p>"


# -- a differential test against a naive renderer

TAGS = ["div", "p", "span", "br", "img"]
words = st.lists(st.sampled_from(["<", ">", "&", '"', "'", "%", "%s", "é", "漢", "😀", "a", " "])
                 | st.characters(blacklist_categories=("Cs",)), max_size=6).map("".join)
values = st.none() | words | st.integers(-10, 10) | words.map(Markup) | st.booleans()
# A spec is a plain tuple tree, turned into html.py nodes by build() and rendered by reference().
LOOP_NUMBERS = ["index", "index0", "revindex", "revindex0", "length"]
OPERATORS = {"==": lambda x, y: x == y, "!=": lambda x, y: x != y, "<": lambda x, y: x < y,
             "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y}
leaf = st.one_of(
    st.tuples(st.just("text"), words),
    st.tuples(st.just("hole"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("loop"), st.sampled_from(LOOP_NUMBERS)),  # "" outside an each
)
attr = st.tuples(st.sampled_from(["title", "class", "data-x"]),
                 st.one_of(st.tuples(st.just("static"), st.none() | st.booleans() | words),
                           st.tuples(st.just("hole"), st.sampled_from(["a", "b"]))))
specs = st.recursive(leaf, lambda inner: st.one_of(
    st.tuples(st.just("el"), st.sampled_from(TAGS),
              st.lists(attr, max_size=2, unique_by=lambda a: a[0]), st.lists(inner, max_size=3)),
    st.tuples(st.just("when"), st.sampled_from(["a", "b"]), st.lists(inner, max_size=2),
              st.lists(inner, max_size=2)),
    # a comparison: a hole against a constant (== and != only: any two values compare so), or
    # a loop number against an int; first/last
    st.tuples(st.just("when_eq"), st.sampled_from(["a", "b"]), st.sampled_from(["==", "!="]),
              values, st.lists(inner, max_size=2), st.lists(inner, max_size=2)),
    st.tuples(st.just("when_loop"), st.sampled_from(LOOP_NUMBERS + ["first", "last"]),
              st.sampled_from(list(OPERATORS)), st.integers(-1, 3),
              st.lists(inner, max_size=2), st.lists(inner, max_size=2)),
    st.tuples(st.just("each"), st.lists(inner, max_size=2)),
), max_leaves=12)


def build(spec: Any, env: dict[str, Any]) -> Any:
    kind = spec[0]
    if kind == "text":
        return spec[1]
    if kind == "hole":
        return env[spec[1]]
    if kind == "el":
        attrs = {name: (v[1] if v[0] == "static" else env[v[1]]) for name, v in spec[2]}
        children = [] if spec[1] in ("br", "img") else [build(s, env) for s in spec[3]]
        return h(spec[1])(attrs, *children)
    if kind == "loop":
        return getattr(env["loop"], spec[1]) if "loop" in env else ""
    if kind == "when":
        return when(env[spec[1]], [build(s, env) for s in spec[2]],
                    [build(s, env) for s in spec[3]])
    if kind == "when_eq":
        condition = OPERATORS[spec[2]](env[spec[1]], spec[3])
        return when(condition, [build(s, env) for s in spec[4]], [build(s, env) for s in spec[5]])
    if kind == "when_loop":
        if "loop" not in env:
            return ""
        value = getattr(env["loop"], spec[1])
        condition = value if spec[1] in ("first", "last") else OPERATORS[spec[2]](value, spec[3])
        return when(condition, [build(s, env) for s in spec[4]], [build(s, env) for s in spec[5]])
    return each(env["rows"], lambda row, loop: [build(s, {**env, "a": row, "loop": loop})
                                                for s in spec[1]])


def ref_text(value: Any) -> str:
    return "" if value is None else str(escape(value))


def reference(spec: Any, env: dict[str, Any]) -> str:
    kind = spec[0]
    if kind == "text":
        return str(escape(spec[1]))
    if kind == "hole":
        return ref_text(env[spec[1]])
    if kind == "el":
        attrs = ""
        for name, (source, value) in spec[2]:
            value = value if source == "static" else env[value]
            if value is True:
                attrs += f" {name}"
            elif value is not None and value is not False:
                attrs += f' {name}="{escape(value)}"'
        if spec[1] in ("br", "img"):
            return f"<{spec[1]}{attrs}>"
        inner = "".join(reference(s, env) for s in spec[3])
        return f"<{spec[1]}{attrs}>{inner}</{spec[1]}>"
    if kind == "loop":
        return str(loop_value(env["loop"], spec[1])) if "loop" in env else ""
    if kind == "when":
        branch = spec[2] if env[spec[1]] else spec[3]
        return "".join(reference(s, env) for s in branch)
    if kind == "when_eq":
        taken = OPERATORS[spec[2]](env[spec[1]], spec[3])
        return "".join(reference(s, env) for s in (spec[4] if taken else spec[5]))
    if kind == "when_loop":
        if "loop" not in env:
            return ""
        value = loop_value(env["loop"], spec[1])
        taken = value if spec[1] in ("first", "last") else OPERATORS[spec[2]](value, spec[3])
        return "".join(reference(s, env) for s in (spec[4] if taken else spec[5]))
    rows = env["rows"]
    return "".join(reference(s, {**env, "a": row, "loop": (i, len(rows))})
                   for i, row in enumerate(rows) for s in spec[1])


def loop_value(loop: tuple[int, int], kind: str) -> int | bool:
    index0, length = loop
    return {"index": index0 + 1, "index0": index0, "revindex": length - index0,
            "revindex0": length - index0 - 1, "length": length, "first": index0 == 0,
            "last": index0 == length - 1}[kind]


@settings(max_examples=300, deadline=None)
@given(spec=specs, a=values, b=values, rows=st.lists(values, max_size=3))
def test_compiled_pages_match_a_naive_renderer(spec: Any, a: Any, b: Any, rows: list[Any]) -> None:
    compiled = page(lambda a, b, rows: build(spec, {"a": a, "b": b, "rows": rows}))
    expected = reference(spec, {"a": a, "b": b, "rows": rows})
    assert html(compiled, a=a, b=b, rows=rows) == expected


# -- comparisons, loop.revindex, and the statement-form compiler


def test_when_takes_comparisons() -> None:
    @page
    def stock(items: Var, limit: Var) -> Any:
        return h.ul(each(items, lambda i, loop: h.li(
            i.name,
            when(i.count > 0, [" ", i.count], h.em(" none")),
            when(i.count >= limit, " plenty"),
            when(i.name == "<b>", " bold"), when(i.name != "x", "!"),
            when(loop.index <= 1, " top"), when(loop.revindex == 1, " end"),
            class_=loop.cycle("a", "b"))))

    class Item:
        def __init__(self, name: str, count: int) -> None:
            self.name, self.count = name, count

    assert html(stock, items=[Item("<b>", 3), Item("x", 0), Item("y", 9)], limit=5) == (
        '<ul><li class="a">&lt;b&gt; 3 bold! top</li><li class="b">x<em> none</em></li>'
        '<li class="a">y 9 plenty! end</li></ul>')
    with pytest.raises(HtmlDefinitionError, match="truth value"):
        page(lambda x: h.p("big" if x > 3 else "small"))
    with pytest.raises(HtmlDefinitionError, match="compare"):
        page(lambda x: when(x == [1], "list"))


def test_loop_revindex_and_generators() -> None:
    @page
    def countdown(items: Var) -> Any:
        return h.p(each(items, lambda i, loop: [loop.revindex, "/", loop.revindex0, "/",
                                               loop.length, " "]))

    assert html(countdown, items=iter("abc")) == "<p>3/2/3 2/1/3 1/0/3 </p>"
    assert html(countdown, items=[]) == "<p></p>"


def test_nested_loops_write_one_list_and_loops_in_branches() -> None:
    @page
    def nested(groups: Var, show: Var) -> Any:
        return h.div(when(show, [h.ol(each(groups, lambda g, outer: h.li(
            outer.index, ":", each(g, lambda x, inner: [x, when(inner.last, None, ",")],
                                   otherwise="-"),
            when(outer.last, ".")))), "n"], otherwise="hidden"))

    assert html(nested, groups=[["a", "<b>"], [], [1]], show=True) == (
        "<div><ol><li>1:a,&lt;b&gt;</li><li>2:-</li><li>3:1.</li></ol>n</div>")
    assert html(nested, groups=[], show=0) == "<div>hidden</div>"
    chunks = nested.chunks(groups=[["a"]] * 50, show=True)
    # <div>, <ol>, every row of both loops in one joined chunk, </ol>n, </div>: a conditional
    # holding a loop is an if statement, and the static runs around it are chunks of their own.
    assert len(chunks) == 5 and chunks[2].count(b"<li>") == 50


def test_catalogue_page_matches_the_hand_written_floor_and_stock_jinja2() -> None:
    # bench/html_floor.py's page: html.py, the hand-written function and jinja2 agree.
    import jinja2

    from bench.html_floor import STOCK_TEMPLATE, catalogue_context, catalogue_page, floor
    from tpd2py.templates import default_autoescape

    for rows in (0, 1, 7, 200):
        context = catalogue_context(rows)
        out: list[bytes] = []
        floor(out, **context)
        expected = b"".join(out)
        assert b"".join(catalogue_page.chunks(**context)) == expected
        stock = jinja2.Environment(autoescape=default_autoescape).from_string(STOCK_TEMPLATE)
        assert stock.render(**context).encode() == expected
