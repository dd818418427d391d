"""Run-time helpers of the jinja2 byte path: the names generated template modules import.

What it is: the functions ``_jinja_codegen`` writes calls to: escaping to bytes, the byte twins
of roots and blocks, and ``tpd_call``, which lets a macro, a ``caller()`` or a ``super()`` whose
output goes straight into the page run its byte body instead of its text one.

Rules:
- Each helper gives the bytes of what stock jinja2 would have written there, exactly. When a
  callee has no byte body (a plain function, a macro compiled by stock jinja2, an Undefined), the
  helper makes the stock call (``Context.call``) and encodes its result.
- A macro's arguments are bound by jinja2's own ``Macro.__call__`` (defaults, ``caller``,
  ``varargs``/``kwargs`` and its errors), run over the macro's attributes by ``_Binder``, whose
  ``_invoke`` hands the bound arguments back instead of running the text body. The common calls
  skip it: positional arguments only to a macro without caller, varargs or kwargs (the missing
  arguments are filled with ``missing`` as ``Macro.__call__`` would), and keyword arguments and
  a ``caller`` to one without varargs or kwargs (``_bind``, jinja2's binding for that case).
- A macro body that raises ``StopIteration`` is an Undefined value in stock jinja2
  (``Context.call``): the byte call then makes the stock call, which gives that Undefined.

Switch points: none. Imports neither the hub, ``socket`` nor greenlet.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

from jinja2.runtime import BlockReference, Context, Macro, missing

from tpd2py._escape import escape_bytes, escape_inner

Write = Callable[[bytes], object]
RenderBytes = Callable[[Context, Write], None]

__all__ = ["TO_ESCAPED", "TO_RAW", "TO_STR", "RenderBytes", "Write", "text_to_bytes",
           "tpd_block_of", "tpd_call", "tpd_esc", "tpd_escape", "tpd_module_bytes", "tpd_root_of",
           "tpd_str", "tpd_with_bytes"]

# The generated code's names for them; the same function objects, so no extra call.
tpd_escape = escape_bytes
tpd_esc = escape_inner  # markupsafe's C escape of a str, for values escaped inline


def tpd_str(value: Any) -> bytes:
    return str(value).encode()


def text_to_bytes(render_text: Callable[[Context], Iterable[str]]) -> RenderBytes:
    def render_bytes(context: Context, write: Write) -> None:
        for text in render_text(context):
            write(str.encode(text))
    return render_bytes


def tpd_root_of(template: Any) -> RenderBytes:
    """The byte root of a template; a text adapter for a template compiled elsewhere."""
    render: RenderBytes | None = getattr(template, "tpd_root_render_func", None)
    return render if render is not None else text_to_bytes(template.root_render_func)


def tpd_block_of(block: Callable[[Context], Iterable[str]]) -> RenderBytes:
    """The byte twin of a text block function (see ``BytesTemplate``), or a text adapter."""
    render: RenderBytes | None = getattr(block, "tpd_bytes", None)
    return render if render is not None else text_to_bytes(block)


_module_bytes: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def tpd_module_bytes(module: Any) -> bytes:
    """The encoded body of a cached template module (``{% include ... without context %}``)."""
    body = _module_bytes.get(module)
    if body is None:
        body = _module_bytes[module] = b"".join(text.encode() for text in module._body_stream)
    return body


# -- macros, caller() and super() on the byte path


def tpd_with_bytes(macro: Macro, body: Callable[..., bytes], plain: bool,
                   named: bool = False) -> Macro:
    """Give a macro just defined its byte body (same parameters, returns the output's bytes).

    What the compiler knows of its parameters, from its body: ``plain``, it takes no
    ``caller``, ``varargs`` or ``kwargs``, so a positional-only call needs no binding beyond
    filling in ``missing``; ``named``, it takes no ``varargs`` or ``kwargs`` and has no explicit
    ``caller`` parameter, so ``_bind`` can bind keyword arguments and a ``caller``.
    """
    attributes = macro.__dict__
    attributes["tpd_bytes"] = body
    attributes["tpd_plain"] = plain
    attributes["tpd_named"] = named
    return macro


def _bind(macro: Macro, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
    """The arguments ``Macro.__call__`` would bind for a ``named`` macro (see tpd_with_bytes),
    or None if the call is one it refuses (``_Binder`` then raises jinja2's own error).

    As jinja2 binds: the positional arguments, then each remaining parameter from the keywords
    (``missing`` if absent, for the body to fill in its default), then ``caller`` if the body
    uses it (an Undefined if none was given); a keyword left over is an error.
    """
    arguments = [*args]
    used = 0
    for name in macro.arguments[len(args):]:
        value = kwargs.get(name, missing)
        if value is not missing:
            used += 1
        arguments.append(value)
    if macro.caller:
        caller = kwargs.get("caller")
        used += "caller" in kwargs
        arguments.append(caller if caller is not None else
                         macro._environment.undefined("No caller defined", name="caller"))
    return arguments if used == len(kwargs) else None


class _Binder(Macro):
    """A view of a macro whose call binds the arguments and returns them (see the header)."""

    def _invoke(self, arguments: list[Any], autoescape: bool) -> Any:
        return arguments


#: How ``tpd_call`` turns what a callee without a byte body returned into bytes.
TO_ESCAPED, TO_STR, TO_RAW = 0, 1, 2


def tpd_call(context: Context, mode: int, callee: Any, /, *args: Any, **kwargs: Any) -> bytes:
    """The bytes ``callee(...)`` puts into the page: ``{{ callee(...) }}`` with autoescape on
    (``TO_ESCAPED``) or off (``TO_STR``), or ``{% call callee(...) %}`` (``TO_RAW``: written as
    it is, as stock's ``yield`` does).

    A macro with a byte body runs it: its output is Markup (autoescape) or str, which escaping
    and ``str()`` leave as they are. ``super()`` runs the block's byte twin. Anything else is
    stock's ``Context.call``, then converted.
    """
    if type(callee) is Macro:
        attributes = callee.__dict__
        body = attributes.get("tpd_bytes")
        if body is not None:
            if kwargs:  # what Context.call drops before calling
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
            count = callee._argument_count
            arguments: Any = None
            if len(args) > count:
                pass
            elif not kwargs and attributes["tpd_plain"]:
                arguments = (args if len(args) == count
                             else args + (missing,) * (count - len(args)))
            elif attributes["tpd_named"]:
                arguments = _bind(callee, args, kwargs)
            if arguments is None:
                binder = _Binder.__new__(_Binder)
                binder.__dict__ = attributes
                arguments = binder(*args, **kwargs)
            try:
                return body(*arguments)
            except StopIteration:
                pass  # the stock call below gives stock's Undefined
    elif (type(callee) is BlockReference and mode != TO_RAW and not args
          and all(key in ("_loop_vars", "_block_vars") for key in kwargs)):
        out: list[bytes] = []
        tpd_block_of(callee._stack[callee._depth])(callee._context, out.append)
        return b"".join(out)
    value = context.call(callee, *args, **kwargs)
    if mode == TO_ESCAPED:
        return escape_bytes(value)
    if mode == TO_STR:
        return str(value).encode()
    return str.encode(value)  # type: ignore[arg-type]
