"""The model behind html.py: elements, loops, conditionals and symbolic values.

What it is: immutable nodes built at definition time by ``h.<tag>(...)``, ``each`` and ``when``,
and ``Var``, a symbolic run-time value (a page hole, a loop item, an attribute or item of one).

Rules: nodes validate when they are built, so a wrong definition fails at import
(``HtmlDefinitionError``); a Var refuses truth testing and iteration, which would silently take
one branch at definition. Nothing here renders; ``_html_compiler`` turns a tree into code.

How it works: a ``Var`` holds its ``Scope`` (the page, or one ``each``) and a Python path relative
to the scope's root name (``.name``, ``['id']``); the compiler gives each scope its root name.
"""

from __future__ import annotations

import collections.abc
import keyword
import types
import typing
from collections.abc import Iterable
from typing import Any, Generic, TypeAlias, TypeVar

T = TypeVar("T")


class HtmlDefinitionError(ValueError):
    """A page definition is wrong; raised at definition (import), never per request."""


class Scope:
    """A page's holes, or one ``each``'s item and loop: what a Var or loop value hangs from."""

    def __init__(self, label: str) -> None:
        self.label = label


class _Comparable:
    """``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` against a static value, a Var or a loop value
    build a ``Compare``, a condition for ``when()``. Hashing stays by identity."""

    __slots__ = ()

    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        return Compare(self, "==", other)

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        return Compare(self, "!=", other)

    def __lt__(self, other: object) -> Compare:
        return Compare(self, "<", other)

    def __le__(self, other: object) -> Compare:
        return Compare(self, "<=", other)

    def __gt__(self, other: object) -> Compare:
        return Compare(self, ">", other)

    def __ge__(self, other: object) -> Compare:
        return Compare(self, ">=", other)

    __hash__ = object.__hash__


class Var(_Comparable, Generic[T]):
    """A value known only at render time: a hole, a loop item, or an attribute/item of one.

    ``Var[T]`` declares the hole's type (``Var[list[Product]]``); the declaration follows
    ``each`` and attributes (``p.price`` of a dataclass field ``price: int`` is an int), and the
    compiler uses it (see ``value_kind``). A plain ``Var`` is of unknown type.
    """

    __slots__ = ("_scope", "_code", "_type")

    def __init__(self, scope: Scope, code: str, declared: Any = None) -> None:
        self._scope = scope
        self._code = code  # Python source relative to the scope's root name
        self._type = declared  # the declared type, or None

    def __getattr__(self, name: str) -> Var[Any]:
        if name.startswith("_") or not name.isidentifier() or keyword.iskeyword(name):
            raise AttributeError(name)
        return Var(self._scope, f"{self._code}.{name}", member_type(self._type, name))

    def __getitem__(self, key: str | int) -> Var[Any]:
        if type(key) not in (str, int):
            raise HtmlDefinitionError(f"Var keys are str or int, not {key!r}")
        return Var(self._scope, f"{self._code}[{key!r}]", item_type(self._type, key))

    def __bool__(self) -> bool:
        raise HtmlDefinitionError(f"{self!r} has no truth value at definition; use when()")

    def __iter__(self) -> Any:
        raise HtmlDefinitionError(f"{self!r} cannot be iterated at definition; use each()")

    def __repr__(self) -> str:
        return f"Var({self._scope.label}{'' if self._code.startswith(('.', '[')) else ':'}" \
               f"{self._code})"


# -- declared types: what a Var[T] says of the values below it


def declared_type(annotation: Any) -> Any:
    """The T of a hole annotated ``Var[T]``; None for ``Var`` or anything else."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) is Var else ()
    return args[0] if len(args) == 1 else None


def member_type(owner: Any, name: str) -> Any:
    """The annotation of attribute ``name`` in class ``owner`` (a dataclass field...), or None."""
    if not isinstance(owner, type):
        return None
    try:
        return typing.get_type_hints(owner).get(name)
    except Exception:  # an annotation that does not resolve: the value is of unknown type
        return None


_SEQUENCES = {list, set, frozenset, collections.abc.Sequence, collections.abc.Iterable,
              collections.abc.Collection, collections.abc.Set, collections.abc.Iterator,
              collections.abc.MutableSequence, dict, collections.abc.Mapping}


def element_type(sequence: Any) -> Any:
    """The type of what ``each`` gets from a ``list[T]``, ``tuple[T, ...]``, ``dict[T, V]``..."""
    origin, args = typing.get_origin(sequence), typing.get_args(sequence)
    if origin in _SEQUENCES and args:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def item_type(container: Any, key: str | int) -> Any:
    """The type of ``container[key]`` for a ``dict[K, V]``, ``list[T]``, ``tuple[A, B]``..."""
    origin, args = typing.get_origin(container), typing.get_args(container)
    if origin in (dict, collections.abc.Mapping) and len(args) == 2:
        return args[1]
    if type(key) is not int:
        return None
    if origin is tuple and args and args[-1] is not Ellipsis:
        return args[key] if -len(args) <= key < len(args) else None
    return element_type(container) if origin not in (set, frozenset) else None


def value_kind(declared: Any) -> str | None:
    """What the compiler can use of a declared type: "str", "int", "str?" or "int?" (with
    None allowed); None for anything else (the value is converted as of unknown type)."""
    if declared in (str, int):
        return declared.__name__
    if typing.get_origin(declared) in (typing.Union, types.UnionType):
        args = typing.get_args(declared)
        if len(args) == 2 and type(None) in args:
            other = args[0] if args[1] is type(None) else args[1]
            if other in (str, int):
                return f"{other.__name__}?"
    return None


class Node:
    """Something that compiles to markup: an element, a loop, a conditional, a loop value."""

    __slots__ = ()


class LoopValue(_Comparable, Node):
    """``loop.index``, ``.index0``, ``.revindex``, ``.revindex0``, ``.length`` (numbers),
    ``.first``, ``.last`` (conditions)."""

    __slots__ = ("scope", "kind")

    def __init__(self, scope: Scope, kind: str) -> None:
        self.scope, self.kind = scope, kind


class Compare(Node):
    """``var > 3``, ``loop.index == 1``, ``user.role != "admin"``: a condition for ``when()``.

    Each side is a Var, a loop value or a static str, int, float, bool or None; Python's own
    comparison runs at render time.
    """

    __slots__ = ("left", "operator", "right")

    def __init__(self, left: object, operator: str, right: object) -> None:
        for side in (left, right):
            if not isinstance(side, (Var, LoopValue, str, int, float, type(None))):
                raise HtmlDefinitionError(f"cannot compare with {side!r} (a Var, a loop value, "
                                          "or a static str, number, bool or None)")
        self.left, self.operator, self.right = left, operator, right

    def __bool__(self) -> bool:
        raise HtmlDefinitionError("a comparison of Vars has no truth value at definition; "
                                  "use when()")

    def __repr__(self) -> str:
        return f"Compare({self.left!r} {self.operator} {self.right!r})"


class Cycle(Node):
    """``loop.cycle(a, b, ...)``: static values, each rendered at definition."""

    __slots__ = ("scope", "values")

    def __init__(self, scope: Scope, values: tuple[AttrValue, ...]) -> None:
        self.scope, self.values = scope, values


class Loop:
    """The second argument of an ``each`` body: where the current row is."""

    def __init__(self, scope: Scope) -> None:
        self._scope = scope
        self.index = LoopValue(scope, "index")  # 1-based
        self.index0 = LoopValue(scope, "index0")
        self.length = LoopValue(scope, "length")
        self.revindex = LoopValue(scope, "revindex")  # 1 in the last row
        self.revindex0 = LoopValue(scope, "revindex0")
        self.first = LoopValue(scope, "first")
        self.last = LoopValue(scope, "last")

    def cycle(self, *values: AttrValue) -> Node:
        """The i-th of ``values`` (mod their number) in row i; static values, rendered once."""
        if not values:
            raise HtmlDefinitionError("loop.cycle() needs at least one value")
        for value in values:
            _check_static(value)
        return Cycle(self._scope, values)


#: What an attribute may be set to (loop values are Nodes).
AttrValue: TypeAlias = "str | int | float | bool | None | Var | Node"
#: What an element may contain; iterables are flattened, None and booleans dropped.
Child: TypeAlias = "str | int | float | bool | None | Var | Node | Iterable[Child]"


def _check_static(value: object) -> None:
    if not isinstance(value, (str, int, float, type(None))):
        raise HtmlDefinitionError(f"loop.cycle() takes static values, not {value!r}")


def flatten_children(children: Iterable[Child]) -> tuple[Any, ...]:
    """Flatten nested iterables; drop None and booleans; reject what cannot be markup."""
    flat: list[Any] = []
    for child in children:
        if child is None or isinstance(child, bool):
            continue
        if isinstance(child, (str, int, float, Var, Node)):
            flat.append(child)
        elif isinstance(child, (bytes, bytearray, dict)):
            raise HtmlDefinitionError(f"not markup: {child!r} (use str, or Markup for raw HTML)")
        elif isinstance(child, Iterable):
            flat.extend(flatten_children(child))
        else:
            raise HtmlDefinitionError(f"not markup: {child!r}")
    return tuple(flat)


class Element(Node):
    """A tag with its attributes and children; built by ``Tag.__call__``, immutable."""

    __slots__ = ("tag", "attrs", "children")

    def __init__(self, tag: str, attrs: tuple[tuple[str, AttrValue], ...],
                 children: tuple[Any, ...]) -> None:
        self.tag, self.attrs, self.children = tag, attrs, children

    def __repr__(self) -> str:
        return f"<{self.tag} element>"


class Each(Node):
    """``each(seq, body)``: the body, built once with symbolic item and loop, per item."""

    __slots__ = ("seq", "scope", "body", "otherwise")

    def __init__(self, seq: Var, scope: Scope, body: tuple[Any, ...],
                 otherwise: tuple[Any, ...]) -> None:
        self.seq, self.scope, self.body, self.otherwise = seq, scope, body, otherwise


class When(Node):
    """``when(condition, then, otherwise)``: one of two subtrees, chosen at render time."""

    __slots__ = ("condition", "then", "otherwise")

    def __init__(self, condition: Var | LoopValue | Compare, then: tuple[Any, ...],
                 otherwise: tuple[Any, ...]) -> None:
        self.condition, self.then, self.otherwise = condition, then, otherwise
