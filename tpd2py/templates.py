"""jinja2 templates rendered straight into a list of ``bytes`` chunks (a response body).

What it is: ``Templates``, a small front for a jinja2 environment whose templates compile to two
render paths (see ``_jinja_codegen``): stock jinja2's text path, and a byte path in which every
static text block is a ``bytes`` constant encoded once, at load, and values are escaped and encoded
one by one while the page streams into the body list. No ``"".join`` of the page, no re-encoding.

Rules:
- The output is byte-for-byte ``template.render(**ctx).encode()`` of stock jinja2 with the same
  loader and options; tests/unit/test_templates.py proves it over a corpus of templates.
- Macros, ``caller()``, call blocks, ``super()``, includes and extends whose output goes straight
  into the page take the byte path too; everything jinja2 needs as text (a macro result used as a
  value, filter/set blocks, imports' module bodies, ``BytesTemplate.render`` itself) runs stock
  jinja2 code. docs/html.md has the table.
- Errors are jinja2's own: syntax errors name the template and line; runtime errors go through
  ``environment.handle_exception`` so the traceback shows the template file and line.
- Never switches to the hub; async templates are refused.
- Autoescape is on for .html, .htm and .xml (and for ``from_string``), off otherwise.

How it works: ``BytesEnvironment`` swaps in the code generator and ``BytesTemplate``, which picks
up the byte functions the generator adds to each template module and hangs each block's byte
twin on its text function (``tpd_bytes``), since ``context.blocks`` holds the text functions.
This leans on jinja2 3.1 internals (``CodeGenerator``, ``Template._from_namespace``); the
differential test in tests/unit/test_templates.py is the guard when jinja2 is upgraded.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any, cast

import jinja2
from jinja2 import BaseLoader, FileSystemLoader, PackageLoader, StrictUndefined, select_autoescape

from tpd2py._jinja_codegen import BytesCodeGenerator, RenderBytes, text_to_bytes

__all__ = ["BytesEnvironment", "BytesTemplate", "Templates", "default_autoescape"]

#: Autoescape for .html/.htm/.xml files and for templates made from strings.
default_autoescape = select_autoescape(
    enabled_extensions=("html", "htm", "xml"), default_for_string=True, default=False)


class BytesTemplate(jinja2.Template):
    """A jinja2 template that can also render into a list of bytes chunks."""

    tpd_root_render_func: RenderBytes

    @classmethod
    def _from_namespace(cls, environment: jinja2.Environment,
                        namespace: MutableMapping[str, Any],
                        globals: MutableMapping[str, Any]) -> jinja2.Template:
        template = cast(BytesTemplate, super()._from_namespace(environment, namespace, globals))
        if "tpd_root" in namespace:
            template.tpd_root_render_func = namespace["tpd_root"]
            for name, block in template.blocks.items():
                block.tpd_bytes = namespace["tpd_blocks"][name]  # type: ignore[attr-defined]
            template._debug_info = namespace["tpd_debug_info"]  # both passes' line maps
        else:  # compiled by another code generator (a shared bytecode cache): slower, still right
            template.tpd_root_render_func = text_to_bytes(template.root_render_func)
        return template

    def render_into(self, out: list[bytes], /, *args: Any, **kwargs: Any) -> None:
        """Append the rendered page to ``out`` (same arguments as ``render``)."""
        context = self.new_context(dict(*args, **kwargs))
        try:
            self.tpd_root_render_func(context, out.append)
        except Exception:
            self.environment.handle_exception()

    def chunks(self, /, *args: Any, **kwargs: Any) -> list[bytes]:
        """The rendered page as a list of bytes chunks."""
        out: list[bytes] = []
        self.render_into(out, *args, **kwargs)
        return out


class BytesEnvironment(jinja2.Environment):
    """A jinja2 Environment whose templates are ``BytesTemplate``s."""

    code_generator_class = BytesCodeGenerator
    template_class = BytesTemplate

    def __init__(self, **options: Any) -> None:
        if options.get("enable_async"):
            raise ValueError("tpd2py templates render synchronously; enable_async is not supported")
        super().__init__(**options)


class Templates:
    """Templates from directories, a package or a loader, rendered to bytes chunks.

    ``Templates("templates")``, ``Templates("a", "b")`` (searched in order),
    ``Templates(package="myapp")`` (its ``templates/`` folder) or ``Templates(loader=...)``.
    ``strict=True`` makes undefined variables errors. Other keyword arguments go to the jinja2
    Environment (``trim_blocks``, ``extensions``, ``finalize``, ...); ``env`` is that environment,
    for adding filters and globals.
    """

    def __init__(self, *directories: str | os.PathLike[str], package: str | None = None,
                 package_path: str = "templates", loader: BaseLoader | None = None,
                 strict: bool = False, **options: Any) -> None:
        if sum((bool(directories), package is not None, loader is not None)) != 1:
            raise TypeError("give exactly one of: directories, package=, loader=")
        if package is not None:
            loader = PackageLoader(package, package_path)
        elif directories:
            loader = FileSystemLoader(list(directories))
        options.setdefault("autoescape", default_autoescape)
        if strict:
            options.setdefault("undefined", StrictUndefined)
        self.env = BytesEnvironment(loader=loader, **options)

    def get_template(self, name: str) -> BytesTemplate:
        return cast(BytesTemplate, self.env.get_template(name))

    def from_string(self, source: str) -> BytesTemplate:
        return cast(BytesTemplate, self.env.from_string(source))

    def render(self, name: str, /, **context: Any) -> list[bytes]:
        """Render template ``name``: a list of bytes chunks, ready to be a response body."""
        out: list[bytes] = []
        self.get_template(name).render_into(out, **context)
        return out

    def render_into(self, out: list[bytes], name: str, /, **context: Any) -> None:
        """Append the rendered template ``name`` to ``out``."""
        self.get_template(name).render_into(out, **context)
