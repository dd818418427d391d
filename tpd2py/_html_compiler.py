"""The html.py compiler: a tree of nodes in, the source of one render function out.

What it is: ``compile_page`` flattens a page into parts, ``bytes`` constants, Python expressions
giving bytes (``%s``) or ints (``%d``), and statement blocks (loops, and conditionals holding
loops), and writes ``render(_out, /, *, <holes>)``: straight-line Python of the kind one would
write by hand for speed (bench/html_floor.py holds such a hand-written function, the floor).

Rules:
- Static text is escaped and encoded here, once; adjacent constants merge into one literal.
- A run of parts becomes one ``bytes % tuple`` expression: one allocation, one chunk. At the top
  level a constant of ``BIG_STATIC`` bytes or more, and each loop, is a chunk of its own: a big
  constant is appended without a copy, a loop's rows go into one list, joined once.
- Loops are ``for`` statements appending to that list, nested loops to the same list
  (``enumerate`` and ``len`` only when a loop value is used); a conditional is ``a if c else b``,
  or an ``if`` statement when a branch holds a loop. Generated names start with ``_``.
- A value is converted inline: a ``str`` by markupsafe's C escape, an ``int`` by ``b'%d'``, a
  dynamic attribute likewise with its name; only other types call a helper (``_text``,
  ``_attr``). Each value is evaluated once, in document order (``_v``/``_t`` hold it meanwhile).
- A value whose type is declared (``Var[T]``, see ``_html_nodes.value_kind``) skips the tests
  it does not need: a declared int is ``%d`` in the run's template, a declared str or int
  attribute is written into the template around its value (docs/html.md has the contract).
- A Var or loop value outside its scope is an ``HtmlDefinitionError`` here, at definition.

How it works: ``_Compiler.parts`` walks the tree; ``_expression`` packs parts into source and
``_Compiler.emit`` writes statements.
"""

from __future__ import annotations

import linecache
from typing import Any, Protocol, TypeAlias

from markupsafe import escape

from tpd2py._escape import BIG_STATIC, escape_inner, text_bytes
from tpd2py._html_names import RAW_TEXT_ELEMENTS, VOID_ELEMENTS
from tpd2py._html_nodes import (
    Compare,
    Cycle,
    Each,
    Element,
    HtmlDefinitionError,
    LoopValue,
    Scope,
    Var,
    When,
    flatten_children,
    value_kind,
)


def _attr(prefix: bytes, value: Any) -> bytes:
    if value is None or value is False:
        return b""
    if value is True:
        return prefix
    return b'%s="%s"' % (prefix, text_bytes(value))


def _attr_text(value: Any, label: str) -> bytes:
    """The value of an attribute declared str that is not a str (a Markup is fine)."""
    if value is None or type(value) is bool:
        raise TypeError(f"{label} is declared str, but is {value!r}")
    return text_bytes(value)


class _Expr:
    """Python source of a run-time value: bytes (``%s``) or an int (``%d``)."""

    __slots__ = ("code", "spec")

    def __init__(self, code: str, spec: bytes = b"%s") -> None:
        self.code, self.spec = code, spec


class _Cond(_Expr):
    """``when(condition, then, otherwise)`` with values in a branch: its code, and its parts,
    so that a run starting with it can become two whole templates (see ``_expression``)."""

    __slots__ = ("condition", "then", "otherwise")

    def __init__(self, condition: str, then: list[Any], otherwise: list[Any]) -> None:
        super().__init__(f"({_expression(then)} if {condition} else {_expression(otherwise)})")
        self.condition, self.then, self.otherwise = condition, then, otherwise


class _Block:
    """A statement-level part: a loop (``names`` set), or a conditional with a loop in a branch.

    Built whole by ``_Compiler.parts`` (so a nested loop's use of an outer ``loop`` value is
    known before the outer ``for`` line is written), written by ``_Compiler.block``.
    """

    __slots__ = ("code", "names", "body", "otherwise")

    def __init__(self, code: str, names: _LoopNames | None, body: list[Any],
                 otherwise: list[Any]) -> None:
        self.code = code  # the condition, or the sequence of a loop
        self.names, self.body, self.otherwise = names, body, otherwise


class _Choice:
    """One of two constants picked by a condition without side effects (a loop value): a run
    holding one becomes ``(template_a if condition else template_b) % values``."""

    __slots__ = ("condition", "then", "otherwise")

    def __init__(self, condition: str, then: bytes, otherwise: bytes) -> None:
        self.condition, self.then, self.otherwise = condition, then, otherwise

    def code(self) -> str:
        return f"({self.then!r} if {self.condition} else {self.otherwise!r})"


_Part: TypeAlias = "bytes | _Expr | _Choice | _Block"


def _text_code(code: str) -> str:
    """Inline ``text_bytes(<code>)``: no Python call for a str or an int (see the header)."""
    return (f"(_esc(_v).encode() if (_t := type(_v := {code})) is str else "
            f"b'%d' % _v if _t is int else _text(_v))")


def _typed_text(code: str, kind: str | None) -> _Expr:
    """A text value whose type is declared (see ``value_kind``): a str is tested for (a Markup
    is a str too, and must not be escaped again), an int is not: it goes straight into the
    ``%`` template as ``%d``, which is the declaration's promise (docs/html.md)."""
    if kind == "int":
        return _Expr(code, b"%d")
    if kind == "int?":
        return _Expr(f"(b'%d' % _v if (_v := {code}) is not None else b'')")
    if kind in ("str", "str?"):
        return _Expr(f"(_esc(_v).encode() if type(_v := {code}) is str else _text(_v))")
    return _Expr(_text_code(code))


def _typed_attr(prefix: bytes, code: str, kind: str | None, label: str) -> list[_Part]:
    """A dynamic attribute whose type is declared: one that cannot be None is written into the
    ``%`` template around its value, with no bytes of its own."""
    if kind == "int":
        return [prefix + b'="', _Expr(code, b"%d"), b'"']
    if kind == "str":
        return [prefix + b'="', _Expr(f"(_esc(_v).encode() if type(_v := {code}) is str else "
                                      f"_attr_text(_v, {label!r}))"), b'"']
    if kind == "int?":
        template = prefix + b'="%d"'
        return [_Expr(f"({template!r} % _v if (_v := {code}) is not None else b'')")]
    if kind == "str?":
        template = prefix + b'="%s"'
        return [_Expr(f"({template!r} % _esc(_v).encode() if type(_v := {code}) is str "
                      f"else b'' if _v is None else _attr({prefix!r}, _v))")]
    return [_Expr(_attr_code(prefix, code))]


def _attr_code(prefix: bytes, code: str) -> str:
    """Inline ``_attr(prefix, <code>)``: no Python call for a str, an int or None."""
    as_text, as_int = prefix + b'="%s"', prefix + b'="%d"'
    return (f"({as_text!r} % _esc(_v).encode() if (_t := type(_v := {code})) is str"
            f" else {as_int!r} % _v if _t is int else b'' if _v is None"
            f" else _attr({prefix!r}, _v))")


class _LoopNames:
    def __init__(self, number: int) -> None:
        self.item, self.index, self.length = f"_it{number}", f"_i{number}", f"_n{number}"
        self.rows, self.add, self.seq = f"_rows{number}", f"_add{number}", f"_seq{number}"
        self.uses_index = self.uses_length = False


class _Compiler:
    """Flattens a tree into parts and writes the render function (see the module header)."""

    def __init__(self, page_scope: Scope) -> None:
        self.roots: dict[Scope, str] = {page_scope: ""}  # scope -> Python name its Vars hang on
        self.loops: dict[Scope, _LoopNames] = {}
        self.count = 0
        self.constants: dict[str, object] = {}  # comparison operands repr() cannot write back

    def function(self, holes: tuple[str, ...], node: Any) -> str:
        signature = f"_out, /, *, {', '.join(holes)}" if holes else "_out, /"
        lines = [f"def render({signature}):", "    _w = _out.append"]
        self.emit(self.parts(flatten_children([node])), "_w", "    ", lines)
        return "\n".join(lines) + "\n"

    def emit(self, parts: list[_Part], write: str, indent: str, lines: list[str]) -> None:
        """Statements writing ``parts`` with ``write``; ``_w`` (the page) only at the top."""
        top = write == "_w"
        run: list[_Part] = []
        for part in _merged(parts):
            if isinstance(part, _Block) or (top and isinstance(part, bytes)
                                            and len(part) >= BIG_STATIC):
                if run:
                    lines.append(f"{indent}{write}({_expression(run)})")
                    run = []
                if isinstance(part, _Block):
                    self.block(part, write, indent, lines)
                else:
                    lines.append(f"{indent}{write}({part!r})")
            else:
                run.append(part)
        if run:
            lines.append(f"{indent}{write}({_expression(run)})")

    def block(self, part: _Block, write: str, indent: str, lines: list[str]) -> None:
        names, body, otherwise = part.names, part.body, _merged(part.otherwise)
        if names is None:  # a conditional
            lines.append(f"{indent}if {part.code}:")
            self.emit(body, write, indent + "    ", lines)
            if not _merged(body):
                lines.append(f"{indent}    pass")
            if otherwise:
                lines.append(f"{indent}else:")
                self.emit(otherwise, write, indent + "    ", lines)
            return
        seq = part.code
        top = write == "_w"
        rows_write = names.add if top else write  # nested loops add to the enclosing list
        if top:
            lines.append(f"{indent}{names.rows} = []")
            lines.append(f"{indent}{names.add} = {names.rows}.append")
        if names.uses_length:
            # loop.length, .revindex or .last need len(): a generator is made a list, once.
            lines.append(f"{indent}{names.seq} = {seq}")
            lines.append(f"{indent}if type({names.seq}) is not list and "
                         f"not hasattr(type({names.seq}), '__len__'):")
            lines.append(f"{indent}    {names.seq} = list({names.seq})")
            lines.append(f"{indent}{names.length} = len({names.seq})")
            seq = names.seq
        if otherwise:
            lines.append(f"{indent}{names.index} = -1")
        if names.uses_index or names.uses_length or otherwise:
            lines.append(f"{indent}for {names.index}, {names.item} in enumerate({seq}):")
        else:
            lines.append(f"{indent}for {names.item} in {seq}:")
        self.emit(body, rows_write, indent + "    ", lines)
        if not _merged(body):
            lines.append(f"{indent}    pass")
        if otherwise:
            lines.append(f"{indent}if {names.index} < 0:")
            self.emit(otherwise, write, indent + "    ", lines)
            if top:
                lines.append(f"{indent}else:")
                lines.append(f"{indent}    _w(b''.join({names.rows}))")
        elif top:
            lines.append(f"{indent}_w(b''.join({names.rows}))")

    def each(self, node: Each) -> _Block:
        seq = self.var(node.seq)
        self.count += 1
        names = self.loops[node.scope] = _LoopNames(self.count)
        self.roots[node.scope] = names.item
        try:
            body = self.parts(node.body)
        finally:
            del self.roots[node.scope], self.loops[node.scope]
        return _Block(seq, names, body, self.parts(node.otherwise))

    def parts(self, children: tuple[Any, ...]) -> list[_Part]:
        parts: list[_Part] = []
        for child in children:
            if isinstance(child, str):  # Markup included: escape() leaves it as it is
                parts.append(escape(child).encode())
            elif isinstance(child, (int, float)):
                parts.append(str(child).encode())
            elif isinstance(child, Var):
                parts.append(_typed_text(self.var(child), value_kind(child._type)))
            elif isinstance(child, Element):
                parts.extend(self.element(child))
            elif isinstance(child, Each):
                parts.append(self.each(child))
            elif isinstance(child, When):
                condition = self.condition(child.condition)
                then, otherwise = self.parts(child.then), self.parts(child.otherwise)
                if any(isinstance(p, _Block) for p in then + otherwise):
                    parts.append(_Block(condition, None, then, otherwise))
                elif _pure(child.condition) and _constant(then) and _constant(otherwise):
                    parts.append(_Choice(condition, _joined(then), _joined(otherwise)))
                else:
                    parts.append(_Cond(condition, then, otherwise))
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
                parts += _typed_attr(prefix, self.var(value), value_kind(value._type),
                                     repr(value))
            elif isinstance(value, Cycle):
                parts.append(self.cycle(value, tuple(_attr(prefix, v)
                                                     for v in value.values)))
            elif isinstance(value, LoopValue) and value.kind in ("first", "last"):
                parts.append(_Choice(self.condition(value), prefix, b""))
            elif isinstance(value, LoopValue):
                parts += [prefix + b'="', self.loop_number(value), b'"']
            else:
                parts.append(_attr(prefix, value))
        parts.append(b">")
        if element.tag in RAW_TEXT_ELEMENTS:
            parts += [str(child).encode() for child in element.children]
        else:
            parts += self.parts(element.children)
        if element.tag not in VOID_ELEMENTS:
            parts.append(b"</" + element.tag.encode() + b">")
        return parts

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
        if value.kind in ("length", "revindex", "revindex0"):
            names.uses_length = True
        code = {"index": f"{names.index} + 1", "index0": names.index, "length": names.length,
                "revindex": f"{names.length} - {names.index}",
                "revindex0": f"{names.length} - {names.index} - 1"}[value.kind]
        return _Expr(code, b"%d")

    def condition(self, condition: Var | LoopValue | Compare) -> str:
        if isinstance(condition, Var):
            return self.var(condition)
        if isinstance(condition, Compare):
            return (f"({self.operand(condition.left)} {condition.operator} "
                    f"{self.operand(condition.right)})")
        names = self.loop(condition.scope)
        if condition.kind == "first":
            return f"{names.index} == 0"
        if condition.kind == "last":
            names.uses_length = True
            return f"{names.index} == {names.length} - 1"
        return f"({self.loop_number(condition).code})"  # index etc.: truthiness of the number

    def operand(self, value: object) -> str:
        """Source of one side of a comparison: a Var, a loop value, or a static constant."""
        if isinstance(value, Var):
            return self.var(value)
        if isinstance(value, LoopValue):
            return self.condition(value)
        if type(value) in (str, int, bool, type(None)):
            return repr(value)
        name = f"_k{len(self.constants)}"  # a float (nan, inf) or a str subclass (Markup)
        self.constants[name] = value
        return name

    def cycle(self, cycle: Cycle, rendered: tuple[bytes, ...]) -> _Expr:
        names = self.loop(cycle.scope)
        return _Expr(f"{rendered!r}[{names.index} % {len(rendered)}]")


def _static_text(value: object) -> bytes:
    return b"" if value is None or isinstance(value, bool) else escape(value).encode()


def _merged(parts: list[_Part]) -> list[_Part]:
    merged: list[_Part] = []
    for part in parts:
        if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] = merged[-1] + part
        elif part != b"":
            merged.append(part)
    return merged


def _pure(condition: object) -> bool:
    """A condition that reads only loop counters and constants: safe to evaluate early."""
    if isinstance(condition, Compare):
        return _pure(condition.left) and _pure(condition.right)
    return not isinstance(condition, Var)


def _constant(parts: list[_Part]) -> bool:
    return all(isinstance(part, bytes) for part in parts)


def _joined(parts: list[_Part]) -> bytes:
    return b"".join(part for part in parts if isinstance(part, bytes))


def _expression(parts: list[_Part], split: bool = True) -> str:
    """Python source giving the bytes of ``parts`` (no blocks) in one allocation.

    A run whose first value is a ``when`` is two runs, one per branch, each one template:
    ``(tpl_a % (a, rest) if c else tpl_b % (b, rest))`` rather than ``tpl % ((x if c else
    y), rest)``, which builds the branch's bytes only to copy them (nothing is evaluated before
    the condition in either form).
    """
    parts = _merged(parts)
    if not parts:
        return "b''"
    first = next((part for part in parts if not isinstance(part, bytes)), None)
    if split and isinstance(first, _Cond) and not any(isinstance(p, _Choice) for p in parts):
        at = parts.index(first)
        before, after = parts[:at], parts[at + 1:]
        return (f"({_expression(before + first.then + after, False)} if {first.condition} "
                f"else {_expression(before + first.otherwise + after, False)})")
    if len(parts) == 1:
        part = parts[0]
        if isinstance(part, bytes):
            return repr(part)
        if isinstance(part, _Choice):
            return part.code()
        if isinstance(part, _Expr) and part.spec == b"%s":
            return part.code
    choices = [part for part in parts if isinstance(part, _Choice)]
    dynamic = [p for p in parts
               if isinstance(p, _Expr) or (isinstance(p, _Choice) and p is not choices[0])]
    values = ", ".join(p.code if isinstance(p, _Expr) else p.code() for p in dynamic)
    if not values:  # constants around one choice: the choice of two constants
        return _Choice(choices[0].condition, _template(parts, choices[0], True, False),
                       _template(parts, choices[0], False, False)).code()
    if len(dynamic) == 1 and (isinstance(dynamic[0], _Choice) or dynamic[0].spec == b"%s"):
        # One value that is always bytes: ``template % value`` needs no 1-tuple. (An int for
        # %d keeps its tuple: a declared int that is a tuple must not be taken apart.)
        values = f"({values})"
    else:
        values = f"({values},)"
    if choices:  # the first choice picks the template; its condition reads only loop counters
        first = choices[0]
        return (f"({_template(parts, first, True)!r} if {first.condition} else "
                f"{_template(parts, first, False)!r}) % {values}")
    return f"{_template(parts, None, True)!r} % {values}"


def _template(parts: list[_Part], choice: _Choice | None, then: bool,
              formatted: bool = True) -> bytes:
    """The ``%`` template of a run (or, not ``formatted``, its plain bytes if it has no values);
    ``choice`` is written in as its ``then`` or other constant."""
    pieces = []
    for part in parts:
        if isinstance(part, bytes):
            pieces.append(part.replace(b"%", b"%%") if formatted else part)
        elif part is choice:
            text = choice.then if then else choice.otherwise
            pieces.append(text.replace(b"%", b"%%") if formatted else text)
        elif isinstance(part, _Choice):
            pieces.append(b"%s")
        elif isinstance(part, _Expr):
            pieces.append(part.spec)
    return b"".join(pieces)


class RenderFunction(Protocol):
    def __call__(self, out: list[bytes], /, **holes: Any) -> None: ...


def compile_page(name: str, scope: Scope, holes: tuple[str, ...],
                 node: Any) -> tuple[str, RenderFunction]:
    """The source of the render function of a page whose holes hang on ``scope``, and the function.

    The source goes into linecache, so a traceback through a page shows its generated line.
    """
    compiler = _Compiler(scope)
    source = compiler.function(holes, node)
    filename = f"<tpd2py.html page {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"_text": text_bytes, "_attr": _attr, "_esc": escape_inner,
                                 "_attr_text": _attr_text,
                                 **compiler.constants}
    exec(compile(source, filename, "exec"), namespace)
    return source, namespace["render"]
