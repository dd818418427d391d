"""HTML written as Python, compiled once into a function that appends pre-encoded bytes.

What it is: TPD2's HTML macros in Python. Tags are callables (``h.div(child, ..., class_="x")``),
a page is a function of named holes decorated with ``@page``, and decoration compiles the whole
tree into a generated Python function: the static markup between holes is merged and encoded to
``bytes`` literals once, the holes become escaped values formatted into them.

Rules:
- Mistakes fail at definition (``HtmlDefinitionError``): unknown tags, invalid or unknown
  attribute names, children of void elements, values inside <script>/<style>, a loop variable
  used outside its ``each``, a Var that is not a hole of the page.
- Values are escaped like markupsafe (``& < > " '``); anything with ``__html__`` (``Markup``)
  goes in raw. ``None`` renders nothing; an attribute set to ``None``/``False`` is omitted and
  ``True`` gives a bare attribute, statically or at run time.
- Rendering never builds one big str and never re-encodes static text: ``render(out, **holes)``
  appends a few ``bytes`` chunks to ``out``. Never switches to the hub.

How it works: this module is the builder (``h``, ``each``, ``when``, ``@page``); the nodes it
builds are in ``_html_nodes``, the names it checks in ``_html_names``, and ``_html_compiler``
turns a page into code. ``Page.source`` shows the generated function.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from markupsafe import Markup

from tpd2py._escape import BIG_STATIC
from tpd2py._html_compiler import RenderFunction, compile_page
from tpd2py._html_names import ATTRIBUTES, ELEMENTS, RAW_TEXT_ELEMENTS, VOID_ELEMENTS
from tpd2py._html_nodes import (
    AttrValue,
    Child,
    Compare,
    Cycle,
    Each,
    Element,
    HtmlDefinitionError,
    Loop,
    LoopValue,
    Node,
    Scope,
    Var,
    When,
    declared_type,
    element_type,
    flatten_children,
)

__all__ = ["BIG_STATIC", "DOCTYPE", "AttrValue", "Child", "Compare", "Element",
           "HtmlDefinitionError", "Loop", "Markup", "Node", "Page", "RenderFunction", "Tag",
           "Var", "each", "h", "page", "when"]

DOCTYPE = Markup("<!DOCTYPE html>")


_ATTRIBUTE_SYNTAX = re.compile(r"[^\s\"'>/=\x00-\x1f\x7f-\x9f]+")
_KNOWN_PREFIXES = ("data-", "aria-", "on", "hx-")


def _attribute_name(name: str, from_keyword: bool) -> str:
    if from_keyword:
        name = name[:-1] if name.endswith("_") else name  # class_, for_
        name = name.replace("_", "-")
        if name not in ATTRIBUTES and not name.startswith(_KNOWN_PREFIXES):
            raise HtmlDefinitionError(
                f"unknown attribute {name!r} (pass unusual names in a dict: {{{name!r}: ...}})")
    if not _ATTRIBUTE_SYNTAX.fullmatch(name):
        raise HtmlDefinitionError(f"invalid attribute name {name!r}")
    return name


class Tag:
    """``h.div``: call it with children (positional), attributes (keywords, or a dict)."""

    __slots__ = ("name", "void", "raw_text")

    def __init__(self, name: str) -> None:
        self.name = name
        self.void = name in VOID_ELEMENTS
        self.raw_text = name in RAW_TEXT_ELEMENTS

    def __call__(self, *children: Child | dict[str, AttrValue], **attributes: AttrValue) -> Element:
        attrs: dict[str, AttrValue] = {}
        rest: list[Child] = []
        for child in children:
            if isinstance(child, dict):
                for name, value in child.items():
                    self._add(attrs, _attribute_name(name, from_keyword=False), value)
            else:
                rest.append(child)
        for name, value in attributes.items():
            self._add(attrs, _attribute_name(name, from_keyword=True), value)
        flat = flatten_children(rest)
        if self.void and flat:
            raise HtmlDefinitionError(f"<{self.name}> is a void element: it takes no children")
        if self.raw_text:
            for child in flat:
                self._check_raw_text(child)
        return Element(self.name, tuple(attrs.items()), flat)

    def _add(self, attrs: dict[str, AttrValue], name: str, value: AttrValue) -> None:
        if name in attrs:
            raise HtmlDefinitionError(f"<{self.name}> attribute {name!r} given twice")
        if not isinstance(value, (str, int, float, type(None), Var, LoopValue, Cycle)):
            raise HtmlDefinitionError(f"<{self.name} {name}=...>: not an attribute value: "
                                      f"{value!r}")
        attrs[name] = value

    def _check_raw_text(self, child: object) -> None:
        if not isinstance(child, str):  # escaping cannot make a value safe inside <script>
            raise HtmlDefinitionError(
                f"<{self.name}> takes static text only, not {child!r} (use a data- attribute)")
        if f"</{self.name}" in child.lower():
            raise HtmlDefinitionError(f"<{self.name}> text may not contain '</{self.name}'")

    def __repr__(self) -> str:
        return f"h.{self.name}"


_CUSTOM_ELEMENT = re.compile(r"[a-z][a-z0-9._]*-[a-z0-9._-]*")


class _Tags:
    """The ``h`` namespace: ``h.div``, ``h.del_`` (trailing ``_`` dropped), ``h("my-widget")``."""

    def __init__(self) -> None:
        self._cache: dict[str, Tag] = {}

    def __getattr__(self, name: str) -> Tag:
        if name.startswith("_"):
            raise AttributeError(name)
        tag = name[:-1] if name.endswith("_") else name
        if tag not in ELEMENTS:
            raise HtmlDefinitionError(f"unknown HTML element <{tag}> (custom ones: h('my-tag'))")
        return self(tag)

    def __call__(self, name: str) -> Tag:
        tag = self._cache.get(name)
        if tag is None:
            if name not in ELEMENTS and not _CUSTOM_ELEMENT.fullmatch(name):
                raise HtmlDefinitionError(f"invalid element name <{name}>")
            tag = self._cache[name] = Tag(name)
        return tag


h = _Tags()


# -- control flow


def each(seq: Var, body: Callable[[Var], Child] | Callable[[Var, Loop], Child],
         otherwise: Child = None) -> Each:
    """``body(item)`` or ``body(item, loop)`` for each item of ``seq``; ``otherwise`` if empty.

    ``body`` runs once, at definition, with symbolic arguments.
    """
    if not isinstance(seq, Var):
        raise HtmlDefinitionError(f"each() iterates over a Var, not {seq!r}")
    scope = Scope(f"each({seq!r})")
    item: Var[Any] = Var(scope, "", element_type(seq._type))
    params = len(inspect.signature(body).parameters)
    if params not in (1, 2):
        raise HtmlDefinitionError("each() body takes (item) or (item, loop)")
    result = body(item) if params == 1 else body(item, Loop(scope))  # type: ignore[call-arg]
    return Each(seq, scope, flatten_children([result]), flatten_children([otherwise]))


def when(condition: Var | Node, then: Child, otherwise: Child = None) -> When:
    """``then`` if ``condition`` is truthy at render time, else ``otherwise``.

    ``condition`` is a Var, a loop value, or a comparison of them (``when(p.stock > 0, ...)``).
    """
    if not isinstance(condition, (Var, LoopValue, Compare)):
        raise HtmlDefinitionError(
            f"when() tests a Var, a loop value or a comparison, not {condition!r}")
    return When(condition, flatten_children([then]), flatten_children([otherwise]))


# -- pages


class Page:
    """A compiled page: ``render(out, **holes)`` appends chunks; ``chunks(**holes)`` lists them."""

    def __init__(self, name: str, holes: tuple[str, ...], node: Child, scope: Scope) -> None:
        self.name = name
        self.holes = holes
        #: The generated function itself: no wrapper between the caller and the page.
        self.render: RenderFunction
        self.source, self.render = compile_page(name, scope, holes, node)

    def chunks(self, **values: Any) -> list[bytes]:
        out: list[bytes] = []
        self.render(out, **values)
        return out

    def __repr__(self) -> str:
        return f"<Page {self.name}({', '.join(self.holes)})>"


def _hole_type(define: Callable[..., Child], name: str) -> Any:
    """The T of a hole annotated ``Var[T]`` (see Var), or None."""
    annotation = define.__annotations__.get(name)
    if isinstance(annotation, str):  # postponed evaluation: evaluated as typing would
        try:
            annotation = eval(annotation, define.__globals__)  # noqa: S307
        except Exception:  # a name that does not resolve: the hole is of unknown type
            return None
    return declared_type(annotation)


def page(define: Callable[..., Child]) -> Page:
    """Decorator: call ``define`` once with a Var per parameter (the holes) and compile it."""
    holes = []
    for param in inspect.signature(define).parameters.values():
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) or (
                param.default is not param.empty) or param.name.startswith("_"):
            raise HtmlDefinitionError(
                f"{define.__name__}: holes are plain parameters without defaults or leading _: "
                f"{param}")
        holes.append(param.name)
    scope = Scope(define.__name__)
    node = define(**{name: Var(scope, name, _hole_type(define, name)) for name in holes})
    return Page(define.__name__, tuple(holes), node, scope)
