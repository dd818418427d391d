"""HTML escaping to UTF-8 bytes, and the size from which static text is a chunk of its own.

What it is: the run-time helpers both byte renderers call for every dynamic value, html.py's
compiled pages (``_html_compiler``) and the jinja2 byte path (``_jinja_codegen``), and the
``BIG_STATIC`` threshold both use when they decide how to cut a page into chunks.

Rules:
- Escaping is markupsafe's, exactly: the same five characters, ``__html__`` objects go in raw,
  anything else is ``str()``-ed and escaped. Output must stay byte-identical to
  ``str(markupsafe.escape(value)).encode()``; the differential tests in tests/unit/test_html.py
  and test_templates.py hold us to it.
- A str (the common case) calls markupsafe's C function directly: ``markupsafe.escape`` would
  build a ``Markup`` only for us to turn it back into bytes. An int needs no escaping; a
  ``Markup`` itself (not a subclass, which may override ``__html__``) is encoded as it is.
- Two helpers, because the two renderers differ on one value: html.py renders ``None`` as
  nothing (docs/html.md), jinja2 renders it as ``None``. Each is written out in full rather than
  one calling the other: they run once per value of every page, and a second Python call per
  value shows in bench/micro_html.py.

How it works: plain functions over ``type(value) is ...`` tests, cheapest first.
Switch points: none. Imports neither the hub, ``socket`` nor greenlet.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

try:  # the C function markupsafe.escape itself calls; its pure-Python twin otherwise
    from markupsafe._speedups import _escape_inner as escape_inner
except ImportError:  # pragma: no cover - depends on how markupsafe was installed
    from markupsafe._native import _escape_inner as escape_inner

__all__ = ["BIG_STATIC", "escape_bytes", "escape_inner", "text_bytes"]

# A static piece this large is its own chunk: copying it into a formatted chunk would cost more
# than the extra iovec it saves (bench/micro_html.py measures the chunking choice).
BIG_STATIC = 1024


def escape_bytes(value: Any) -> bytes:
    """``str(markupsafe.escape(value)).encode()``, without building the Markup for a str."""
    if type(value) is str:
        return escape_inner(value).encode()
    if type(value) is int:  # digits and "-" never need escaping
        return str(value).encode()
    if type(value) is Markup:  # its __html__ is itself: no escape(), no new Markup
        return str.encode(value)
    return escape(value).encode()  # __html__ objects raw, others str()ed and escaped


def text_bytes(value: Any) -> bytes:
    """``escape_bytes`` for html.py, where ``None`` renders as nothing."""
    if type(value) is str:
        return escape_inner(value).encode()
    if value is None:
        return b""
    if type(value) is int:  # digits and "-" never need escaping
        return str(value).encode()
    if type(value) is Markup:  # its __html__ is itself: no escape(), no new Markup
        return str.encode(value)
    return escape(value).encode()  # __html__ objects raw, others str()ed and escaped
