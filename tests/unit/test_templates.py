"""tpd2py.templates: byte-for-byte stock jinja2 output, rendered as a list of bytes chunks.

The differential test renders every template of templates_corpus/ (one file per jinja2 feature)
with stock jinja2 (``render(**ctx).encode()``) and with tpd2py, in several environment variants,
for hypothesis-generated contexts, and demands the same bytes or the same exception.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from tpd2py._escape import BIG_STATIC
from tpd2py.templates import BytesEnvironment, BytesTemplate, Templates, default_autoescape

CORPUS = Path(__file__).parent / "templates_corpus"
NAMES = sorted(p.name for p in CORPUS.iterdir() if not p.name.startswith("_"))


@dataclass
class User:
    name: str
    email: str
    tags: list[str] = field(default_factory=list)


@dataclass
class Item:
    name: str
    price: int | float
    note: str | None


class HasHtml:
    def __init__(self, text: str) -> None:
        self.text = text

    def __html__(self) -> str:
        return f"<obj>{self.text}</obj>"

    def __str__(self) -> str:
        return f"obj:{self.text}"


class FakeLoop:
    def cycle(self, *values: Any) -> str:
        return "fake<" + "".join(map(str, values)) + ">"

    def __repr__(self) -> str:
        return "FakeLoop()"


# Markup-significant, %-significant and non-ASCII characters, plus anything printable.
text = st.lists(st.sampled_from(list("<>&\"'%s aZé漢😀\n\t-") + ["{{", "</b>", "&amp;", "%s"])
                | st.characters(blacklist_categories=("Cs",)), max_size=10).map("".join)
note = st.none() | text | text.map(Markup)
item = st.builds(Item, text, st.integers(-5, 1000) | st.floats(-10, 10, allow_nan=False), note)
contexts = st.fixed_dictionaries({
    "title": text,
    "user": st.builds(User, text, text, st.lists(text, max_size=3)),
    "items": st.lists(item, max_size=5),
    "mapping": st.dictionaries(st.sampled_from(["k1", "k2", "k<3>"]), text, max_size=3),
    "html": text.map(lambda s: Markup("<b>%s</b>") % s),
    "obj": text.map(HasHtml),
    "n": st.integers(-3, 10**6),
    "flag": st.booleans(),
    "nothing": st.none(),
    "text": text,
    "tree": st.just([{"name": "root <1>", "children": [
        {"name": "kid & 1", "children": []},
        {"name": "kid ü", "children": [{"name": "leaf", "children": []}]}]}]),
    "layout": st.just("base.html"),
    "loop": st.just(FakeLoop()),
    "fake": st.just(FakeLoop()),
})

TYPICAL = {
    "title": "Café <b>&'\"% s", "user": User("Zoë <z>", "z@x.org", ["a&b", "ü"]),
    "items": [Item("pomme <1>", 3, None), Item("poire & 2", 3, Markup("<i>mûre</i>")),
              Item("prune \"3\"", 7.5, "n'ote")],
    "mapping": {"k1": "v<1>", "k2": "v&2"}, "html": Markup("<b>safe ✓</b>"),
    "obj": HasHtml("x"), "n": 12, "flag": True, "nothing": None, "text": "see http://x.org <a>",
    "tree": [{"name": "root", "children": [{"name": "kid", "children": []}]}],
    "layout": "base.html", "loop": FakeLoop(), "fake": FakeLoop(),
}

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "trim": {"trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True},
    "strict": {"undefined": jinja2.StrictUndefined},
    "chainable": {"undefined": jinja2.ChainableUndefined},
    "extensions": {"extensions": ["jinja2.ext.loopcontrols", "jinja2.ext.do"]},
    "finalize": {"finalize": lambda value: "∅" if value is None else value},
    "finalize_env": {"finalize": jinja2.pass_environment(
        lambda env, value: "" if value is None else value)},
}
_pairs: dict[str, tuple[jinja2.Environment, Templates]] = {}


def pair(variant: str) -> tuple[jinja2.Environment, Templates]:
    if variant not in _pairs:
        options = VARIANTS[variant]
        loader = jinja2.FileSystemLoader(CORPUS)
        stock = jinja2.Environment(loader=loader, autoescape=default_autoescape, **options)
        _pairs[variant] = stock, Templates(loader=loader, **options)
    return _pairs[variant]


def outcome(render: Callable[[], bytes]) -> tuple[Any, ...]:
    try:
        return ("ok", render())
    except Exception as error:  # the same exception, with the same message, is the same outcome
        return ("error", type(error), str(error))


def both(variant: str, name: str, context: dict[str, Any]) -> tuple[tuple[Any, ...], ...]:
    stock, ours = pair(variant)
    expected = outcome(lambda: stock.get_template(name).render(**context).encode())
    got = outcome(lambda: b"".join(ours.render(name, **context)))
    return expected, got


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(context=contexts)
def test_same_bytes_as_stock_jinja2(name: str, variant: str, context: dict[str, Any]) -> None:
    expected, got = both(variant, name, context)
    assert got == expected


# Every branch of these raises, in stock jinja2 too.
ERROR_TEMPLATES = {"macro_errors.html", "macro_keyword_errors.html"}


@pytest.mark.parametrize("name", NAMES)
def test_corpus_renders_with_a_typical_context(name: str) -> None:
    # Guards the differential test against comparing two identical errors.
    variant = {"extensions.html": "extensions", "undefined_chain.html": "chainable"}.get(
        name, "default")
    expected, got = both(variant, name, TYPICAL)
    assert expected[0] == ("error" if name in ERROR_TEMPLATES else "ok"), expected
    assert got == expected


@pytest.mark.parametrize("n", range(4))
def test_macro_call_errors_are_stock_errors(n: int) -> None:
    # Too many arguments, an unknown keyword, a caller it does not take, a missing argument.
    expected, got = both("strict", "macro_errors.html", dict(TYPICAL, n=n))
    assert expected[0] == "error", expected
    assert got == expected


@pytest.mark.parametrize("n", range(5))
def test_macro_keyword_errors_are_stock_errors(n: int) -> None:
    # Keywords bound without jinja2's binder (_jinja_runtime._bind) still fail as stock fails:
    # a keyword for a positional one, an unknown keyword, a caller it does not take, and (strict)
    # no caller given to a macro that calls it.
    expected, got = both("strict", "macro_keyword_errors.html", dict(TYPICAL, n=n))
    assert expected[0] == "error", expected
    assert got == expected


def test_chunks_are_bytes_and_the_source_has_byte_constants() -> None:
    templates = pair("default")[1]
    chunks = templates.render("child.html", **TYPICAL)
    assert chunks and all(type(chunk) is bytes for chunk in chunks)
    source = templates.env.loader.get_source(templates.env, "child.html")[0]  # type: ignore
    code = templates.env.compile(source, "child.html", raw=True)
    assert "tpd_write(b'" in code or "(b'" in code


def test_big_static_text_is_one_constant_never_re_encoded() -> None:
    templates = pair("default")[1]
    first = templates.render("big_static.html", **TYPICAL)
    second = templates.render("big_static.html", **TYPICAL)
    assert len(first[0]) >= BIG_STATIC
    assert first[0] is second[0]  # the very bytes object made when the template was compiled


def test_a_long_loop_is_a_few_chunks() -> None:
    templates = Templates(loader=jinja2.DictLoader(
        {"t.html": "<ul>{% for i in rows %}<li>{{ i }}</li>{% endfor %}</ul>"}))
    chunks = templates.render("t.html", rows=range(1000))
    assert len(chunks) <= 3
    assert b"".join(chunks).count(b"<li>") == 1000


# -- errors name the template and line, as stock jinja2's do


def test_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.html").write_text("line 1\n{% for x in y %}\n{{ x }\n")
    stock = jinja2.Environment(loader=jinja2.FileSystemLoader(tmp_path))
    errors = []
    for env in (stock, Templates(tmp_path).env):
        with pytest.raises(jinja2.TemplateSyntaxError) as caught:
            env.get_template("bad.html")
        errors.append((caught.value.name, caught.value.lineno, caught.value.message))
    assert errors[0] == errors[1]
    assert errors[1][:2] == ("bad.html", 3)


STRICT_CASES = {
    "top.html": "a\nb {{ title }}\nc {{ missing }} d\n",
    "loop.html": "<ul>\n{% for i in items %}\n<li>{{ i }} {{ i.name }}\n"
                 "{{ i.missing.deeper }}</li>\n{% endfor %}</ul>\n",
    "child.html": "{% extends 'layout.html' %}\n{% block body %}\nx\n{{ nope }}{% endblock %}\n",
    "layout.html": "<body>\n{% block body %}{% endblock %}\n</body>\n",
    "includer.html": "one\n{% include 'top.html' %}\n",
    "macro.html": "{% macro m() %}\n\n{{ nope }}{% endmacro %}\n{{ m() }}\n",
    "call.html": "{% macro m() %}{{ caller() }}{% endmacro %}\n{% call m() %}\n{{ nope }}"
                 "{% endcall %}\n",
}


def template_frames(error: BaseException, directory: Path) -> list[tuple[str, int]]:
    return [(Path(frame.filename).name, frame.lineno or 0)
            for frame in traceback.extract_tb(error.__traceback__)
            if frame.filename.startswith(str(directory))]


@pytest.mark.parametrize("name", [n for n in STRICT_CASES if n != "layout.html"])
def test_strict_undefined_traceback_points_at_the_template_line(tmp_path: Path, name: str) -> None:
    for filename, source in STRICT_CASES.items():
        (tmp_path / filename).write_text(source)
    stock = jinja2.Environment(loader=jinja2.FileSystemLoader(tmp_path),
                               undefined=jinja2.StrictUndefined)
    ours = Templates(tmp_path, strict=True)
    context = {"title": "t", "items": [Item("a", 1, None)]}
    with pytest.raises(jinja2.UndefinedError) as stock_error:
        stock.get_template(name).render(**context)
    with pytest.raises(jinja2.UndefinedError) as our_error:
        ours.render(name, **context)
    assert str(our_error.value) == str(stock_error.value)
    expected = template_frames(stock_error.value, tmp_path)
    assert expected  # stock shows the template frames (file, line)...
    assert template_frames(our_error.value, tmp_path) == expected  # ...and so do we


# -- the Templates front


def test_templates_from_directory_package_or_loader(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hi.html").write_text("<p>{{ who }}</p>")
    package = tmp_path / "tpd_test_pkg"
    (package / "templates").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "templates" / "hi.html").write_text("<p>pkg {{ who }}</p>")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert Templates(tmp_path).render("hi.html", who="<&>") == [b"<p>&lt;&amp;&gt;</p>"]
    assert b"".join(Templates(package="tpd_test_pkg").render("hi.html", who="é")) == \
        "<p>pkg é</p>".encode()
    loader = jinja2.DictLoader({"x.html": "{{ name }}"})
    out: list[bytes] = [b"head"]
    Templates(loader=loader).render_into(out, "x.html", name="n")  # 'name' is a fine variable
    assert out == [b"head", b"n"]
    for bad in ((), (tmp_path,)):
        with pytest.raises(TypeError):
            Templates(*bad, loader=loader if bad else None)
    sys.modules.pop("tpd_test_pkg", None)


def test_autoescape_follows_the_extension() -> None:
    loader = jinja2.DictLoader({"a.html": "{{ v }}", "a.xml": "{{ v }}", "a.txt": "{{ v }}"})
    templates = Templates(loader=loader)
    assert [templates.render(n, v="<")[0] for n in ("a.html", "a.xml", "a.txt")] == \
        [b"&lt;", b"&lt;", b"<"]
    assert templates.from_string("{{ v }}").chunks(v="<") == [b"&lt;"]


def test_text_render_is_stock_and_async_is_refused() -> None:
    template = Templates(loader=jinja2.DictLoader({"a.html": "é{{ v }}"})).get_template("a.html")
    assert isinstance(template, BytesTemplate)
    assert template.render(v="<") == "é&lt;"
    with pytest.raises(ValueError):
        BytesEnvironment(enable_async=True)


def test_template_compiled_by_stock_jinja2_still_renders_bytes() -> None:
    # e.g. a bytecode cache shared with a stock Environment: no byte functions in the module.
    stock = jinja2.Environment(autoescape=True)
    env = BytesEnvironment(autoescape=True)
    code = stock.compile("{% for i in r %}<{{ i }}>{% endfor %}é", "s.html")
    template = BytesTemplate.from_code(env, code, env.make_globals(None))
    assert isinstance(template, BytesTemplate)
    assert b"".join(template.chunks(r=["&", 2])) == "<&amp;><2>é".encode()


# -- macros, caller() and super() on the byte path


BYTE_PATH_PAGES = {
    "lib.html": "{% macro cell(x, kind='a') %}<td class=\"{{ kind }}\">{{ x }}</td>{% endmacro %}"
                "{% macro box() %}<div>{{ caller() }}</div>{% endmacro %}"
                "{% macro tree(nodes) %}{% for n in nodes %}<li>{{ cell(n.name) }}"
                "{% if n.children %}<ul>{{ tree(n.children) }}</ul>{% endif %}</li>"
                "{% endfor %}{% endmacro %}",
    "layout.html": "<title>{% block title %}T{% endblock %}</title>{% block body %}{% endblock %}",
    "page.html": "{% extends 'layout.html' %}{% from 'lib.html' import cell, box, tree %}"
                 "{% block title %}{{ super() }}/{{ title }}{% endblock %}"
                 "{% block body %}{% for r in rows %}<tr>{{ cell(r) }}"
                 "{{ cell(r, kind=loop.index) }}</tr>{% endfor %}"
                 "{% call box() %}{{ cell(title) }}{% endcall %}"
                 "<ul>{{ tree(nodes) }}</ul>{% endblock %}",
}


def test_macros_caller_and_super_into_the_page_never_build_text() -> None:
    # environment.concat joins every text buffer (a macro's, a block's for super()): the byte
    # path must not need it for a page whose macros, caller() and super() all go straight out.
    loader = jinja2.DictLoader(BYTE_PATH_PAGES)
    stock = jinja2.Environment(loader=loader, autoescape=True)
    templates = Templates(loader=loader, autoescape=True)
    context = {"title": "<t>", "rows": ["a&", "b"], "nodes": TYPICAL["tree"]}
    expected = stock.get_template("page.html").render(**context).encode()

    def no_text(parts: Any) -> str:
        raise AssertionError("the text path ran")

    templates.env.concat = no_text  # type: ignore[method-assign]
    assert b"".join(templates.render("page.html", **context)) == expected
    assert expected.count(b"<td") == 7


def test_a_macro_raising_stop_iteration_is_undefined_as_in_stock() -> None:
    # Context.call turns StopIteration into an Undefined; the byte call falls back to it.
    def stop() -> None:
        raise StopIteration

    source = {"s.html": "{% macro m() %}before{{ stop() }}after{% endmacro %}[{{ m() }}]"}
    stock = jinja2.Environment(loader=jinja2.DictLoader(source), autoescape=True)
    templates = Templates(loader=jinja2.DictLoader(source), autoescape=True)
    stock.globals["stop"] = templates.env.globals["stop"] = stop
    expected = stock.get_template("s.html").render().encode()
    assert b"".join(templates.render("s.html")) == expected
