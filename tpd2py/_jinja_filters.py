"""jinja2's hot built-in filters, written for the byte path: straight to the bytes of the page.

What it is: for ``{{ value|f(...) }}`` in autoescaped output, where ``f`` is one of jinja2's own
filters below, the byte path (``_jinja_codegen``) calls ``BYTE_FILTERS[f]`` instead of ``f``
followed by escaping and encoding. Each function here returns exactly
``str(markupsafe.escape(f(value, ...))).encode()``: the bytes stock jinja2 writes there.

Rules:
- Same output, same exceptions, for every input: escaping, ``Markup`` kept as it is, ``None``
  and ``Undefined`` as jinja2 treats them, dict order. Where an input is not a common case (a
  str subclass, an item that is not a str, an unusual argument), the function calls jinja2's
  filter itself and escapes its result: the fast branch covers the common case only.
  tests/unit/test_jinja_filters.py compares every function with stock jinja2 on many inputs.
- The generated code checks at run time that the environment's filter is still jinja2's
  (``filter is BYTE_FILTERS[name][0]``); a filter replaced by the application runs as it is.
- Our own code, written from jinja2's documented behaviour (urlencode: UTF-8, percent-encoding
  of all but ``A-Za-z0-9_.-~`` (and ``/`` for a plain string), ``+`` for a space in a query
  string; xmlattr: ``None``/``Undefined`` values dropped, keys checked and escaped).

How it works: a URL-quoting table of 256 ready ``bytes`` (one per byte value) and a check that a
str is already safe (``str.rstrip`` of the safe characters leaves nothing), so a plain value is
encoded once and nothing else. At compile time, ``ByteFilterCalls`` (a part of the byte code
generator) writes ``(twin(...) if filter is jinja2's else <stock code>)``, or, for a literal
first argument, the twin's work inline: ``'%.2f'|format(x)`` becomes ``('%.2f' % (x,)).encode()``
(no escaping when only numbers go in), ``{'id': a, 'ref': b}|urlencode`` a bytes template with
the keys quoted at compile time, ``{'data-id': a}|xmlattr`` the escaped `` key="`` prefixes with
each value dropped when None or Undefined. Switch points: none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from jinja2 import filters as jinja_filters
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Undefined
from markupsafe import Markup, escape

from tpd2py._escape import escape_bytes, escape_inner

__all__ = ["BYTE_FILTERS", "ByteFilterCalls", "format_is_safe", "quote_path", "quote_qs",
           "xmlattr_key_bytes"]

_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"


def _quote_table(keep: str, space: bytes) -> list[bytes]:
    table = [b"%%%02X" % byte for byte in range(256)]
    for char in keep:
        table[ord(char)] = char.encode()
    if space != b"%20":
        table[0x20] = space
    return table


_PATH_SAFE = _SAFE + "/"
_PATH_TABLE = _quote_table(_PATH_SAFE, b"%20")
_QS_TABLE = _quote_table(_SAFE, b"+")


def _quote(value: Any, safe: str, table: list[bytes]) -> bytes:
    if isinstance(value, bytes):
        return b"".join(map(table.__getitem__, value))
    text = value if isinstance(value, str) else str(value)
    if not text.rstrip(safe):  # every character is safe (or there are none): ASCII as it is
        return text.encode()
    return b"".join(map(table.__getitem__, text.encode()))


def quote_path(value: Any) -> bytes:
    """A value quoted as ``urlencode`` quotes a lone string (``/`` kept, space ``%20``)."""
    return _quote(value, _PATH_SAFE, _PATH_TABLE)


def quote_qs(value: Any) -> bytes:
    """A key or value quoted for a query string (``/`` quoted, space ``+``)."""
    if type(value) is int:  # digits and "-": nothing to quote
        return b"%d" % value
    return _quote(value, _SAFE, _QS_TABLE)


def urlencode(value: Any) -> bytes:
    # The quoted text holds no HTML-special character but the "&" that joins the pairs.
    if isinstance(value, str) or not isinstance(value, Iterable):
        return quote_path(value)
    items = value.items() if isinstance(value, dict) else value
    return b"&amp;".join([quote_qs(key) + b"=" + quote_qs(item) for key, item in items])


# xmlattr refuses attribute names holding white space, "/", ">" or "=" (jinja2 >= 3.1.4).
_BAD_KEY = re.compile(r"[\s/>=]", re.ASCII)


def xmlattr_key_bytes(key: str) -> bytes | None:
    """`` key="`` as xmlattr writes it (escaped), or None for a key it refuses."""
    if _BAD_KEY.search(key) is not None:
        return None
    return b" " + escape_bytes(key) + b'="'


def xmlattr(eval_ctx: Any, mapping: Any, autospace: bool = True) -> bytes:
    if type(mapping) is not dict or type(autospace) is not bool:
        return escape_bytes(jinja_filters.do_xmlattr(eval_ctx, mapping, autospace))
    parts = []
    for key, value in mapping.items():
        if value is None or isinstance(value, Undefined):
            continue
        if _BAD_KEY.search(key) is not None:
            raise ValueError(f"Invalid character in attribute name: {key!r}")
        parts.append(b'%s="%s"' % (escape_bytes(key), escape_bytes(value)))
    out = b" ".join(parts)
    return b" " + out if autospace and out else out


# A printf conversion that writes only digits, signs, ".", "e", "x", "inf"/"nan", spaces.
_NUMERIC_CONVERSION = re.compile(
    r"%(?:%|[#0 +-]*(?:\*|[0-9]+)?(?:\.(?:\*|[0-9]+))?[hlL]?[diouxXeEfFgG])")


def format_is_safe(template: str) -> bool:
    """Is ``template % args`` free of HTML-special characters whatever the args (numbers only)?"""
    rest = _NUMERIC_CONVERSION.sub("", template)
    return "%" not in rest and escape_inner(rest) == rest


def format(value: Any, *args: Any, **kwargs: Any) -> bytes:  # noqa: A001 - the filter's name
    if type(value) is str and not kwargs:
        return escape_inner(value % args).encode()
    return escape_bytes(jinja_filters.do_format(value, *args, **kwargs))


_ONLY_STR = {str}


def join(eval_ctx: Any, value: Any, *args: Any, **kwargs: Any) -> bytes:
    # All items plain str and a plain str delimiter: escaping the joined text is escaping each
    # piece (escaping works character by character); no item has an __html__ to keep.
    if (eval_ctx.autoescape and not kwargs and len(args) <= 1
            and (type(value) is list or type(value) is tuple) and {*map(type, value)} <= _ONLY_STR):
        delimiter = args[0] if args else ""
        if type(delimiter) is str:
            return escape_inner(delimiter.join(value)).encode()
    return escape_bytes(jinja_filters.FILTERS["join"](eval_ctx, value, *args, **kwargs))


def length(value: Any) -> bytes:
    return b"%d" % len(value)


def escape_filter(value: Any) -> bytes:
    return escape_bytes(value)  # escape() gives Markup, which the output writes as it is


def safe(value: Any) -> bytes:
    if type(value) is str:
        return value.encode()
    return str.encode(Markup(value))


def default(value: Any, default_value: Any = "", boolean: bool = False) -> bytes:
    if isinstance(value, Undefined) or (boolean and not value):
        value = default_value
    return escape_bytes(value)


#: filter name -> (jinja2's filter, its byte twin, the most positional arguments the byte path
#: passes it (None: any), whether it takes the eval context first as jinja2's does).
BYTE_FILTERS: dict[str, tuple[Callable[..., Any], Callable[..., bytes], int | None, bool]] = {
    "urlencode": (jinja_filters.FILTERS["urlencode"], urlencode, 0, False),
    "xmlattr": (jinja_filters.FILTERS["xmlattr"], xmlattr, 1, True),
    "format": (jinja_filters.FILTERS["format"], format, None, False),
    "join": (jinja_filters.FILTERS["join"], join, 1, True),
    "length": (jinja_filters.FILTERS["length"], length, 0, False),
    "count": (jinja_filters.FILTERS["count"], length, 0, False),
    "escape": (jinja_filters.FILTERS["escape"], escape_filter, 0, False),
    "e": (jinja_filters.FILTERS["e"], escape_filter, 0, False),
    "safe": (jinja_filters.FILTERS["safe"], safe, 0, False),
    "default": (jinja_filters.FILTERS["default"], default, 2, False),
    "d": (jinja_filters.FILTERS["d"], default, 2, False),
}

assert escape is jinja_filters.FILTERS["escape"]  # escape_filter relies on it


# -- compile time: the code that calls the twins


class ByteFilterCalls(CodeGenerator):
    """The part of ``_jinja_codegen.BytesCodeGenerator`` that writes calls of the twins."""

    _calls_direct: bool  # set by the subclass: not a sandbox

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._byte_filters: set[str] = set()  # the filters whose byte twins this module uses

    def _byte_filter(self, node: nodes.Expr, frame: Frame) -> bool:
        """``(<byte twin of the filter> if <the filter> is jinja2's else `` for a jinja2 filter
        that has one (``_jinja_filters``), in autoescaped output; the caller writes the rest."""
        spec = BYTE_FILTERS.get(node.name) if isinstance(node, nodes.Filter) else None
        if (spec is None or not isinstance(node, nodes.Filter) or node.node is None
                or not frame.eval_ctx.autoescape or not self._calls_direct or node.kwargs
                or node.dyn_args is not None or node.dyn_kwargs is not None
                or self.environment.filters.get(node.name) is not spec[0]
                or (spec[2] is not None and len(node.args) > spec[2])):
            return False
        self._byte_filters.add(node.name)
        self.write("(")
        if not self._inline_filter(node, frame):
            self.write(f"tpd_fb_{node.name}(" + ("context.eval_ctx, " if spec[3] else ""))
            for index, arg in enumerate((node.node, *node.args)):
                self.write(", " if index else "")
                self.visit(arg, frame)
            self.write(")")
        self.write(f" if {self.filters[node.name]} is tpd_fs_{node.name} else ")
        return True

    def _inline_filter(self, node: nodes.Filter, frame: Frame) -> bool:
        """Byte code for a filter whose first argument is a literal: a format string, a dict of
        constant keys for urlencode or xmlattr. False for anything else (the byte twin runs)."""
        value = node.node
        if node.name == "format" and isinstance(value, nodes.Const) and type(value.value) is str:
            # format(template, *args) is template % args: escaped unless only numbers go in.
            safe = format_is_safe(value.value)
            self.write("(" if safe else "tpd_esc(")
            self.write(f"{value.value!r} % (")
            for arg in node.args:
                self.visit(arg, frame)
                self.write(", ")
            self.write(")).encode()")
            return True
        keys = (_constant_keys(value) if node.name in ("urlencode", "xmlattr")
                and value is not None else None)
        if not keys or node.args:
            return False
        assert isinstance(value, nodes.Dict)
        # The dict's values are all evaluated first (as the dict literal is), then written.
        names = [self.temporary_identifier() for _ in keys]
        self.write("(")
        for name, pair in zip(names, value.items, strict=True):
            self.write(f"({name} := ")
            self.visit(pair.value, frame)
            self.write("), ")
        self.write(") and ")
        if node.name == "urlencode":  # key=value pairs joined by "&", escaped: "&amp;"
            template = b"&amp;".join(quote_qs(key).replace(b"%", b"%%") + b"=%s" for key in keys)
            self.write(f"{template!r} % ({''.join(f'tpd_qs({name}), ' for name in names)})")
            return True
        prefixes = [xmlattr_key_bytes(key) for key in keys]  # _constant_keys checked them
        # Each attribute that is not None or Undefined, as ' key="escaped value"'.
        self.write(" + ".join(
            f"(b'' if {name} is None or isinstance({name}, Undefined) else {prefix!r} + "
            f"(tpd_esc({name}).encode() if type({name}) is str else tpd_escape({name})) + b'\"')"
            for name, prefix in zip(names, prefixes, strict=True)))
        return True


def _constant_keys(node: nodes.Expr) -> list[Any] | None:
    """The keys of a dict literal whose keys are distinct str constants (None otherwise);
    for xmlattr, also keys it accepts."""
    if not isinstance(node, nodes.Dict) or not all(
            isinstance(pair.key, nodes.Const) and type(pair.key.value) is str
            and xmlattr_key_bytes(pair.key.value) is not None for pair in node.items):
        return None
    keys = [pair.key.value for pair in node.items]  # type: ignore[attr-defined]
    return keys if len(set(keys)) == len(keys) else None
