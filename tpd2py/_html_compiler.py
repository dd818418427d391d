"""The html.py compiler: a tree of nodes in, the source of one render function out.

What it is: ``compile_page`` flattens a page into parts, ``bytes`` constants or Python expressions
giving bytes (``%s``) or ints (``%d``), and writes ``render(_out, /, *, <holes>)``.

Rules:
- Static text is escaped and encoded here, once; adjacent constants merge into one literal.
- A run of parts becomes one ``bytes % tuple`` expression: one allocation, one chunk. At the top
  level a constant of ``BIG_STATIC`` bytes or more, and each loop, is a chunk of its own: a big
  constant is appended without a copy, a loop's rows are joined once.
- Loops are list comprehensions (``enumerate`` and ``len`` only when the loop value is used);
  conditionals are ``a if c else b``. Generated names start with ``_``; holes never do.
- A Var or loop value outside its scope is an ``HtmlDefinitionError`` here, at definition.

How it works: ``_Compiler.parts`` walks the tree; ``_expression`` packs parts into source.
"""

from __future__ import annotations

import linecache
from typing import Any, Protocol, TypeAlias

from markupsafe import escape

from tpd2py._escape import BIG_STATIC, text_bytes
from tpd2py._html_names import RAW_TEXT_ELEMENTS, VOID_ELEMENTS
from tpd2py._html_nodes import (
    Cycle,
    Each,
    Element,
    HtmlDefinitionError,
    LoopValue,
    Scope,
    Var,
    When,
    flatten_children,
)


def _attr(prefix: bytes, value: Any) -> bytes:
    if value is None or value is False:
        return b""
    if value is True:
        return prefix
    return b'%s="%s"' % (prefix, text_bytes(value))


def _sized(items: Any) -> Any:
    """A loop using loop.length or loop.last needs len(): materialize a generator, once."""
    return items if hasattr(type(items), "__len__") else list(items)


class _Expr:
    """Python source of a run-time value: bytes (``%s``) or an int (``%d``)."""

    __slots__ = ("code", "spec", "chunk")

    def __init__(self, code: str, spec: bytes = b"%s", chunk: bool = False) -> None:
        self.code, self.spec, self.chunk = code, spec, chunk  # chunk: a loop, its own chunk


_Part: TypeAlias = "bytes | _Expr"


class _LoopNames:
    def __init__(self, number: int) -> None:
        self.item, self.index, self.length = f"_it{number}", f"_i{number}", f"_n{number}"
        self.uses_index = self.uses_length = False


class _Compiler:
    """Flattens a tree into parts and writes the render function (see the module header)."""

    def __init__(self, page_scope: Scope) -> None:
        self.roots: dict[Scope, str] = {page_scope: ""}  # scope -> Python name its Vars hang on
        self.loops: dict[Scope, _LoopNames] = {}
        self.count = 0

    def function(self, holes: tuple[str, ...], node: Any) -> str:
        signature = f"_out, /, *, {', '.join(holes)}" if holes else "_out, /"
        lines = [f"def render({signature}):", "    _w = _out.append"]
        run: list[_Part] = []
        for part in _merged(self.parts(flatten_children([node]))):
            big = part.chunk if isinstance(part, _Expr) else len(part) >= BIG_STATIC
            if big:
                if run:
                    lines.append(f"    _w({_expression(run)})")
                    run = []
                lines.append(f"    _w({_expression([part])})")
            else:
                run.append(part)
        if run:
            lines.append(f"    _w({_expression(run)})")
        return "\n".join(lines) + "\n"

    def parts(self, children: tuple[Any, ...]) -> list[_Part]:
        parts: list[_Part] = []
        for child in children:
            if isinstance(child, str):  # Markup included: escape() leaves it as it is
                parts.append(escape(child).encode())
            elif isinstance(child, (int, float)):
                parts.append(str(child).encode())
            elif isinstance(child, Var):
                parts.append(_Expr(f"_text({self.var(child)})"))
            elif isinstance(child, Element):
                parts.extend(self.element(child))
            elif isinstance(child, Each):
                parts.append(self.each(child))
            elif isinstance(child, When):
                then, otherwise = _expression(self.parts(child.then)), _expression(
                    self.parts(child.otherwise))
                parts.append(_Expr(f"({then} if {self.condition(child.condition)} else "
                                   f"{otherwise})"))
            elif isinstance(child, Cycle):
                parts.append(self.cycle(child, tuple(_static_text(v) for v in child.values)))
            elif isinstance(child, LoopValue):
                parts.append(self.loop_number(child))
            else:  # pragma: no cover - flatten_children() lets nothing else through
                raise HtmlDefinitionError(f"not markup: {child!r}")
        return parts

    def element(self, element: Element) -> list[_Part]:
        parts: list[_Part] = [b"<" + element.tag.encode()]
        for name, value in element.attrs:
            prefix = b" " + name.encode()
            if isinstance(value, Var):
                parts.append(_Expr(f"_attr({prefix!r}, {self.var(value)})"))
            elif isinstance(value, Cycle):
                parts.append(self.cycle(value, tuple(_static_attr(prefix, v)
                                                     for v in value.values)))
            elif isinstance(value, LoopValue) and value.kind in ("first", "last"):
                parts.append(_Expr(f"({prefix!r} if {self.condition(value)} else b'')"))
            elif isinstance(value, LoopValue):
                parts += [prefix + b'="', self.loop_number(value), b'"']
            else:
                parts.append(_static_attr(prefix, value))
        parts.append(b">")
        if element.tag in RAW_TEXT_ELEMENTS:
            parts += [str(child).encode() for child in element.children]
        else:
            parts += self.parts(element.children)
        if element.tag not in VOID_ELEMENTS:
            parts.append(b"</" + element.tag.encode() + b">")
        return parts

    def each(self, node: Each) -> _Expr:
        seq = self.var(node.seq)
        self.count += 1
        names = self.loops[node.scope] = _LoopNames(self.count)
        self.roots[node.scope] = names.item
        try:
            body = _expression(self.parts(node.body))
        finally:
            del self.roots[node.scope], self.loops[node.scope]
        if names.uses_length:
            loop = (f"for {names.length}_seq in (_sized({seq}),) "
                    f"for {names.length} in (len({names.length}_seq),) "
                    f"for {names.index}, {names.item} in enumerate({names.length}_seq)")
        elif names.uses_index:
            loop = f"for {names.index}, {names.item} in enumerate({seq})"
        else:
            loop = f"for {names.item} in {seq}"
        rows = f"[{body} {loop}]"
        if not node.otherwise:
            return _Expr(f"b''.join({rows})", chunk=True)
        otherwise = _expression(self.parts(node.otherwise))
        rows_name = f"_rows{names.item[3:]}"
        return _Expr(f"(b''.join({rows_name}) if ({rows_name} := {rows}) else {otherwise})",
                     chunk=True)

    def var(self, var: Var) -> str:
        root = self.roots.get(var._scope)
        if root is None:
            raise HtmlDefinitionError(
                f"{var!r} is used outside the each() it belongs to, or in another page")
        return root + var._code

    def loop(self, scope: Scope) -> _LoopNames:
        names = self.loops.get(scope)
        if names is None:
            raise HtmlDefinitionError("a loop value is used outside the each() it belongs to")
        names.uses_index = True
        return names

    def loop_number(self, value: LoopValue) -> _Expr:
        names = self.loop(value.scope)
        if value.kind in ("first", "last"):
            raise HtmlDefinitionError(f"loop.{value.kind} is a condition: use it in when()")
        if value.kind == "length":
            names.uses_length = True
            return _Expr(names.length, b"%d")
        return _Expr(names.index + (" + 1" if value.kind == "index" else ""), b"%d")

    def condition(self, condition: Var | LoopValue) -> str:
        if isinstance(condition, Var):
            return self.var(condition)
        names = self.loop(condition.scope)
        if condition.kind == "first":
            return f"{names.index} == 0"
        if condition.kind == "last":
            names.uses_length = True
            return f"{names.index} == {names.length} - 1"
        return self.loop_number(condition).code  # index etc.: truthiness of the number

    def cycle(self, cycle: Cycle, rendered: tuple[bytes, ...]) -> _Expr:
        names = self.loop(cycle.scope)
        return _Expr(f"{rendered!r}[{names.index} % {len(rendered)}]")


def _static_text(value: object) -> bytes:
    return b"" if value is None or isinstance(value, bool) else escape(value).encode()


def _static_attr(prefix: bytes, value: object) -> bytes:
    if value is None or value is False:
        return b""
    if value is True:
        return prefix
    return b'%s="%s"' % (prefix, escape(value).encode())


def _merged(parts: list[_Part]) -> list[_Part]:
    merged: list[_Part] = []
    for part in parts:
        if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] = merged[-1] + part
        elif part != b"":
            merged.append(part)
    return merged


def _expression(parts: list[_Part]) -> str:
    """Python source giving the bytes of ``parts`` in one allocation."""
    parts = _merged(parts)
    if not parts:
        return "b''"
    if len(parts) == 1:
        part = parts[0]
        if isinstance(part, bytes):
            return repr(part)
        if part.spec == b"%s":
            return part.code
    template = b"".join(p.replace(b"%", b"%%") if isinstance(p, bytes) else p.spec for p in parts)
    values = ", ".join(p.code for p in parts if isinstance(p, _Expr))
    return f"{template!r} % ({values},)"


class RenderFunction(Protocol):
    def __call__(self, out: list[bytes], /, **holes: Any) -> None: ...


def compile_page(name: str, scope: Scope, holes: tuple[str, ...],
                 node: Any) -> tuple[str, RenderFunction]:
    """The source of the render function of a page whose holes hang on ``scope``, and the function.

    The source goes into linecache, so a traceback through a page shows its generated line.
    """
    source = _Compiler(scope).function(holes, node)
    filename = f"<tpd2py.html page {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"_text": text_bytes, "_attr": _attr, "_sized": _sized}
    exec(compile(source, filename, "exec"), namespace)
    return source, namespace["render"]
