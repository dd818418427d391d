"""jinja2 code generation for byte output: the second pass behind ``tpd2py.templates``.

What it is: a ``jinja2.compiler.CodeGenerator`` subclass. Each template module it writes holds two
render paths. The first is stock jinja2's, untouched (``root``, ``block_*``, each macro's
``def macro``): ``Template.render``, imported modules and every place where jinja2 needs a value as
text (a macro result used as a value, filter/set blocks, recursive loops) keep running it. The
second (``tpd_root``, ``tpd_block_*``, each macro's ``def tpd_macro``) is the streaming path:
functions taking ``(context, write)`` that call ``write(bytes)``; a macro's byte body returns the
bytes of its output.

Rules of the byte path:
- Static text is encoded to a UTF-8 ``bytes`` literal when the template is compiled; it is never
  re-encoded. Dynamic values are escaped (markupsafe semantics, exactly) and encoded one by one.
- One ``write`` per Output node: its small static pieces and its values are merged with one
  ``bytes % tuple``; a static piece of ``BIG_STATIC`` bytes or more is written alone (no copy).
- A non-recursive ``{% for %}`` collects its iterations and writes one joined chunk, so a
  1000-row table is one chunk, not 1000 tiny iovecs (bench/micro_html.py measures why); a loop
  already inside such a list (or in a macro's byte body) writes straight into it.
- ``{{ m(...) }}``, ``{{ caller() }}``, ``{{ super() }}`` and ``{% call m() %}`` go through the
  ``tpd_call`` helper (``_jinja_runtime``): a macro with a byte body runs it, anything else
  gets stock's ``Context.call``. Not with ``finalize``, in volatile autoescape or a sandbox.
- A loop over a list or tuple whose body only reads ``loop``'s counters runs on ``enumerate`` and
  ``len`` (``_for``); ``loop.cycle(...)`` on a real LoopContext calls the bound method directly.
  Both are checked at run time, with stock's code as the other branch.
- ``{{ value|f(...) }}`` for one of jinja2's hot filters (urlencode, xmlattr, format, join...)
  calls its byte twin when the environment's filter is still jinja2's (``_jinja_filters``).
- Attributes are read with the builtin ``getattr(obj, name, missing)`` first, then
  ``environment.getattr`` if that missed (when the environment's getattr is stock's).
- The output is byte-for-byte ``root(...)`` joined and encoded: the same nodes, in the same order,
  only the text-to-bytes step moves (UTF-8 encoding commutes with concatenation). Each dynamic value
  is written on its own source line, mapped to its template line, so tracebacks point where stock
  jinja2's do.

How it works: ``visit_Template`` runs the stock pass, resets the per-pass state, then walks the same
tree again with ``self._write`` set to the name of the current byte writer. ``macro_body`` writes
each macro twice, the second time with ``_write`` set to a local list's ``append``. The overrides
below only act while ``_write`` is set and the frame has no text buffer; everything else is stock
code. The generated modules import their run-time helpers from ``_jinja_runtime``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jinja2 import Environment, nodes
from jinja2.compiler import CodeGenerator, Frame, MacroRef, find_undeclared
from jinja2.idtracking import VAR_LOAD_PARAMETER

from tpd2py import _jinja_filters, _jinja_runtime
from tpd2py._escape import BIG_STATIC
from tpd2py._jinja_filters import ByteFilterCalls
from tpd2py._jinja_runtime import RenderBytes, text_to_bytes

__all__ = ["BytesCodeGenerator", "RenderBytes", "text_to_bytes"]

_WRITE = "tpd_write"
# loop.<attribute> a counted loop computes from its index and len(); and cycle(...).
_LOOP_NUMBERS = {"index": "({i} + 1)", "index0": "{i}", "first": "({i} == 0)",
                 "last": "({i} == len({seq}) - 1)", "length": "len({seq})",
                 "revindex": "(len({seq}) - {i})", "revindex0": "(len({seq}) - {i} - 1)"}
# What the body of a counted loop may hold: output, conditionals and expressions, no statement
# that could define, call into or change anything (see _counted_loop).
_COUNTED_BODY = (nodes.Output, nodes.TemplateData, nodes.If, nodes.Expr, nodes.Pair,
                 nodes.Keyword)
_HELPERS = ("tpd_escape", "tpd_esc", "tpd_str", "tpd_root_of", "tpd_block_of", "tpd_module_bytes",
            "tpd_call", "tpd_with_bytes")


class BytesCodeGenerator(ByteFilterCalls):
    """Stock jinja2 code plus a byte-writing twin of the root and block functions."""

    def __init__(self, environment: Environment, name: str | None, filename: str | None,
                 *args: Any, **kwargs: Any) -> None:
        super().__init__(environment, name, filename, *args, **kwargs)
        self._write: str | None = None  # name of the current byte writer; None in the stock pass
        # True while _write appends to a local list that is joined later (a loop's rows, a
        # macro's output) rather than to the page: a nested loop then need not join its own.
        self._local_write = False
        self._byte_macro_next = False  # the next buffer() starts a macro's byte body
        self._counted: tuple[str, str] | None = None  # (sequence, index) of a counted loop
        # The loop.cycle shortcut below assumes jinja2's own getattr and call (no sandbox).
        self._stock_getattr = (type(environment).getattr is Environment.getattr
                               and not environment.sandboxed)
        # Calls go through Context.call (not the sandbox's environment.call): the byte helpers
        # make that very call when the callee has no byte body.
        self._calls_direct = not environment.sandboxed

    # -- the second pass

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        super().visit_Template(node, frame)
        if self.environment.is_async:
            raise RuntimeError("tpd2py templates do not support enable_async")
        self.has_known_extends = False
        self.extends_so_far = 0
        self._last_line = 0
        envenv = "" if self.defer_init else ", environment=environment"
        have_extends = node.find(nodes.Extends) is not None
        eval_ctx = nodes.EvalContext(self.environment, self.name)

        self.writeline(f"from {_jinja_runtime.__name__} import {', '.join(_HELPERS)}", extra=1)
        self.writeline(f"from {_jinja_filters.__name__} import BYTE_FILTERS as tpd_byte_filters, "
                       "quote_qs as tpd_qs")
        self.writeline(f"def tpd_root(context, {_WRITE}, missing=missing{envenv}):", extra=1)
        self.indent()
        self._write_commons()
        frame = Frame(eval_ctx)
        if "self" in find_undeclared(node.body, ("self",)):
            ref = frame.symbols.declare_parameter("self")
            self.writeline(f"{ref} = TemplateReference(context)")
        frame.symbols.analyze_node(node)
        frame.toplevel = frame.rootlevel = True
        frame.require_output_check = have_extends
        if have_extends:
            self.writeline("parent_template = None")
        self._write = _WRITE
        self.enter_frame(frame)
        self.pull_dependencies(node.body)
        self.blockvisit(node.body, frame)
        self.leave_frame(frame, with_python_scope=True)
        if have_extends:
            if not self.has_known_extends:
                self.writeline("if parent_template is not None:")
                self.indent()
            self.writeline(f"tpd_root_of(parent_template)(context, {_WRITE})")
            if not self.has_known_extends:
                self.outdent()
        self.outdent()

        for name, block in self.blocks.items():
            self.writeline(f"def tpd_block_{name}(context, {_WRITE}, missing=missing{envenv}):",
                           block, 1)
            self.indent()
            self._write_commons()
            block_frame = Frame(eval_ctx)  # not a child of the root frame, as in stock jinja2
            block_frame.block_frame = True
            undeclared = find_undeclared(block.body, ("self", "super"))
            if "self" in undeclared:
                ref = block_frame.symbols.declare_parameter("self")
                self.writeline(f"{ref} = TemplateReference(context)")
            if "super" in undeclared:
                # context.blocks holds the text functions: super() finds its place by them.
                ref = block_frame.symbols.declare_parameter("super")
                self.writeline(f"{ref} = context.super({name!r}, block_{name})")
            block_frame.symbols.analyze_node(block)
            block_frame.block = name
            self.writeline("_block_vars = {}")
            self.enter_frame(block_frame)
            self.pull_dependencies(block.body)
            self.blockvisit(block.body, block_frame)
            self.leave_frame(block_frame, with_python_scope=True)
            self.outdent()
        self._write = None

        pairs = ", ".join(f"{name!r}: tpd_block_{name}" for name in self.blocks)
        self.writeline(f"tpd_blocks = {{{pairs}}}", extra=1)
        for name in sorted(self._byte_filters):  # read when a function runs, so defined after
            self.writeline(f"tpd_fs_{name}, tpd_fb_{name} = tpd_byte_filters[{name!r}][:2]")
        debug_info = "&".join(f"{k}={v}" for k, v in self.debug_info)
        self.writeline(f"tpd_debug_info = {debug_info!r}")

    def _write_commons(self) -> None:
        # The names stock code expects; macros nested in the byte functions use concat.
        self.writeline("resolve = context.resolve_or_missing")
        self.writeline("undefined = environment.undefined")
        self.writeline("concat = environment.concat")
        self.writeline("cond_expr_undefined = Undefined")

    def _streaming(self, frame: Frame) -> bool:
        return self._write is not None and frame.buffer is None

    # -- output

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        if not self._streaming(frame):
            super().visit_Output(node, frame)
            return
        if frame.require_output_check:
            if self.has_known_extends:
                return
            self.writeline("if parent_template is None:")
            self.indent()
        finalize = self._make_finalize()
        run: list[bytes | nodes.Expr] = []
        for piece in self._output_pieces(node, frame, finalize):
            if isinstance(piece, bytes) and len(piece) >= BIG_STATIC:
                self._write_run(run, frame, finalize)
                run = []
                self.writeline(f"{self._write}({piece!r})")
            elif isinstance(piece, bytes) and run and isinstance(run[-1], bytes):
                run[-1] += piece
            else:
                run.append(piece)
        self._write_run(run, frame, finalize)
        if frame.require_output_check:
            self.outdent()

    def _output_pieces(self, node: nodes.Output, frame: Frame,
                       finalize: CodeGenerator._FinalizeInfo) -> Iterator[bytes | nodes.Expr]:
        """The children of an Output node: constants folded and encoded, or nodes to evaluate."""
        for child in node.nodes:
            # Only the constant folding stock jinja2 does: template data, and constant
            # expressions when finalize needs no runtime context.
            if finalize.const or isinstance(child, nodes.TemplateData):
                try:
                    text = self._output_child_to_const(child, frame, finalize)
                except (nodes.Impossible, Exception):
                    yield child  # errors are easier to debug at runtime, as stock does
                else:
                    yield str(text).encode()
            else:
                yield child

    def _write_run(self, run: list[bytes | nodes.Expr], frame: Frame,
                   finalize: CodeGenerator._FinalizeInfo) -> None:
        values = [piece for piece in run if not isinstance(piece, bytes)]
        if not values:
            if run and run[0]:
                self.writeline(f"{self._write}({run[0]!r})")
            return
        if len(run) == 1:
            self.writeline(f"{self._write}(", values[0])
            self._write_value(values[0], frame, finalize)
            self.write(")")
            return
        template = b"".join(
            piece.replace(b"%", b"%%") if isinstance(piece, bytes) else b"%s" for piece in run)
        self.writeline(f"{self._write}({template!r} % (")
        self.indent()
        for value in values:
            self.newline(value)  # one line per value: tracebacks name its template line
            self._write_value(value, frame, finalize)
            if len(values) > 1:  # a single value is always bytes: no 1-tuple needed
                self.write(",")
        self.outdent()
        self.writeline("))")

    def _write_value(self, node: nodes.Expr, frame: Frame,
                     finalize: CodeGenerator._FinalizeInfo) -> None:
        """An expression giving the bytes of ``str(escape(value))`` (or ``str(value)``)."""
        if (isinstance(node, nodes.Call) and finalize.src is None and self._calls_direct
                and not frame.eval_ctx.volatile and self._loop_cycle_target(node, frame) is None):
            # A macro, caller() or super() straight into the page: its byte body, no Markup.
            mode = _jinja_runtime.TO_ESCAPED if frame.eval_ctx.autoescape else _jinja_runtime.TO_STR
            self._byte_call(mode, node, frame)
            return
        if not frame.eval_ctx.volatile and finalize.src is None:
            byte_filter = self._byte_filter(node, frame)
            # A str (most values) is escaped and encoded inline: no Python call.
            value = self.temporary_identifier()
            inline = "tpd_esc({}).encode()" if frame.eval_ctx.autoescape else "{}.encode()"
            self.write(f"({inline.format(value)} if type({value} := ")
            self.visit(node, frame)
            helper = "tpd_escape" if frame.eval_ctx.autoescape else "tpd_str"
            self.write(f") is str else {helper}({value}))")
            if byte_filter:
                self.write(")")
            return
        if frame.eval_ctx.volatile:
            self.write("(tpd_escape if context.eval_ctx.autoescape else tpd_str)(")
        elif not frame.eval_ctx.autoescape:
            self.write("tpd_str(")
        else:
            self.write("tpd_escape(")
        if finalize.src is not None:
            self.write(finalize.src)
        self.visit(node, frame)
        self.write(")")
        if finalize.src is not None:
            self.write(")")

    def start_write(self, frame: Frame, node: nodes.Node | None = None) -> None:
        # Call blocks, filter blocks, recursive loops: their value is text (usually Markup).
        if self._streaming(frame):
            self.writeline(f"{self._write}(str.encode(", node)
        else:
            super().start_write(frame, node)

    def end_write(self, frame: Frame) -> None:
        if self._streaming(frame):
            self.write("))")
        else:
            super().end_write(frame)

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        if self._counted is not None and _is_loop_cycle(node):
            # LoopContext.cycle: args[index0 % len(args)], every argument evaluated.
            self.write("(")
            for arg in node.args:
                self.visit(arg, frame)
                self.write(", ")
            self.write(f")[{self._counted[1]} % {len(node.args)}]")
            return
        loop = None if forward_caller else self._loop_cycle_target(node, frame)
        if loop is None:
            super().visit_Call(node, frame, forward_caller=forward_caller)
            return
        # loop.cycle(...) is most rows' one call. context.call costs more than the rest of a
        # row, and for a real LoopContext it amounts to calling the bound method (cycle takes no
        # context and cannot raise StopIteration); anything else takes the stock path.
        self.write(f"({loop}.cycle(")
        for index, arg in enumerate(node.args):
            self.write(", " if index else "")
            self.visit(arg, frame)
        self.write(f") if type({loop}) is LoopContext else ")
        super().visit_Call(node, frame)
        self.write(")")

    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:
        if (self._counted is not None and isinstance(node.node, nodes.Name)
                and node.node.name == "loop"):  # _counted_loop checked the attribute
            seq, index = self._counted
            self.write(_LOOP_NUMBERS[node.attr].format(seq=seq, i=index))
            return
        if self._write is None or not self._stock_getattr or self.environment.is_async:
            super().visit_Getattr(node, frame)
            return
        # Environment.getattr tries getattr(), then [], then Undefined: the builtin getattr with
        # a default does the first try without a Python call; the object is evaluated once.
        obj, value = self.temporary_identifier(), self.temporary_identifier()
        self.write(f"({value} if ({value} := getattr(({obj} := ")
        self.visit(node.node, frame)
        self.write(f"), {node.attr!r}, missing)) is not missing else "
                   f"environment.getattr({obj}, {node.attr!r}))")

    def _byte_call(self, mode: int, node: nodes.Call, frame: Frame,
                   forward_caller: bool = False) -> None:
        """``tpd_call(context, mode, callee, <the call's arguments>)``, as stock ``visit_Call``
        writes ``context.call(callee, ...)``."""
        self.write(f"tpd_call(context, {mode}, ")
        self.visit(node.node, frame)
        extra_kwargs = {"caller": "caller"} if forward_caller else {}
        if frame.loop_frame:
            extra_kwargs["_loop_vars"] = "_loop_vars"
        if frame.block_frame:
            extra_kwargs["_block_vars"] = "_block_vars"
        self.signature(node, frame, extra_kwargs or None)
        self.write(")")

    def _loop_cycle_target(self, node: nodes.Call, frame: Frame) -> str | None:
        """The Python name of ``loop`` in ``loop.cycle(args)``, if it is a for-loop parameter."""
        callee = node.node
        if not (self._streaming(frame) and self._stock_getattr and not node.kwargs
                and node.dyn_args is None and node.dyn_kwargs is None
                and isinstance(callee, nodes.Getattr) and callee.attr == "cycle"
                and isinstance(callee.node, nodes.Name) and callee.node.name == "loop"):
            return None
        ref = frame.symbols.find_ref("loop")
        load = None if ref is None else frame.symbols.find_load(ref)
        if ref is None or load is None or load[0] != VAR_LOAD_PARAMETER:
            return None
        return None if self.parameter_is_undeclared(ref) else ref

    # -- statements that call other render functions or shape chunks

    def visit_Block(self, node: nodes.Block, frame: Frame) -> None:
        if not self._streaming(frame):
            super().visit_Block(node, frame)
            return
        level = 0
        if frame.toplevel:
            if self.has_known_extends:
                return
            if self.extends_so_far > 0:
                self.writeline("if parent_template is None:")
                self.indent()
                level = 1
        context = self.derive_context(frame) if node.scoped else self.get_context_ref()
        if node.required:
            self.writeline(f"if len(context.blocks[{node.name!r}]) <= 1:", node)
            self.indent()
            self.writeline(
                f'raise TemplateRuntimeError("Required block {node.name!r} not found")', node)
            self.outdent()
        self.writeline(
            f"tpd_block_of(context.blocks[{node.name!r}][0])({context}, {self._write})", node)
        self.outdent(level)

    def visit_Include(self, node: nodes.Include, frame: Frame) -> None:
        if not self._streaming(frame):
            super().visit_Include(node, frame)
            return
        if node.ignore_missing:
            self.writeline("try:")
            self.indent()
        target = node.template
        getter = "get_or_select_template"
        if isinstance(target, nodes.Const):
            if isinstance(target.value, str):
                getter = "get_template"
            elif isinstance(target.value, (tuple, list)):
                getter = "select_template"
        elif isinstance(target, (nodes.Tuple, nodes.List)):
            getter = "select_template"
        self.writeline(f"template = environment.{getter}(", node)
        self.visit(target, frame)
        self.write(f", {self.name!r})")
        if node.ignore_missing:
            self.outdent()
            self.writeline("except TemplateNotFound:")
            self.indent()
            self.writeline("pass")
            self.outdent()
            self.writeline("else:")
            self.indent()
        if node.with_context:
            self.writeline(
                "tpd_root_of(template)(template.new_context(context.get_all(), True, "
                f"{self.dump_local_context(frame)}), {self._write})")
        else:
            self.writeline(f"{self._write}(tpd_module_bytes(template._get_default_module()))")
        if node.ignore_missing:
            self.outdent()

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        if not self._streaming(frame) or node.recursive or self._local_write:
            self._for(node, frame)  # already inside a joined list: write straight to it
            return
        outer = self._write
        assert outer is not None
        chunks, append = self.temporary_identifier(), self.temporary_identifier()
        self.writeline(f"{chunks} = []")
        self.writeline(f"{append} = {chunks}.append")
        self._write, self._local_write = append, True
        try:
            self._for(node, frame)
        finally:
            self._write, self._local_write = outer, False
        self.writeline(f"if {chunks}:")
        self.indent()
        self.writeline(f"{outer}(b''.join({chunks}))")
        self.outdent()

    def _for(self, node: nodes.For, frame: Frame) -> None:
        """A counted loop over a list or tuple when the body allows it, else stock's loop.

        A LoopContext costs a Python ``__next__`` per item and a property call per
        ``loop.last``; over a list or tuple whose body only reads ``loop``'s counters (and
        cannot change the sequence: no calls, no statements but ``if``), ``enumerate`` and
        ``len`` give the same values. Anything else (a generator, a dict, an Undefined) takes
        stock's loop, in the ``else`` branch, over the same evaluated sequence.
        """
        if self._write is None or self._counted is not None or not _counted_loop(node):
            super().visit_For(node, frame)
            return
        seq, index = self.temporary_identifier(), self.temporary_identifier()
        self.writeline(f"{seq} = ", node)
        self.visit(node.iter, frame)
        self.writeline(f"if type({seq}) is list or type({seq}) is tuple:")
        self.indent()
        loop_frame = frame.inner()
        loop_frame.loop_frame = True
        loop_frame.symbols.declare_parameter("loop")  # never read: every use is rewritten
        loop_frame.symbols.analyze_node(node, for_branch="body")
        self.writeline(f"for {index}, ", node)
        self.visit(node.target, loop_frame)
        self.write(f" in enumerate({seq}):")
        self.indent()
        self.enter_frame(loop_frame)
        self.writeline("_loop_vars = {}")
        self._counted = (seq, index)
        try:
            self.blockvisit(node.body, loop_frame)
        finally:
            self._counted = None
        self.outdent()
        self.leave_frame(loop_frame)
        self.outdent()
        self.writeline("else:")
        self.indent()
        stock_node = nodes.For(node.target, _internal_name(seq, node.lineno), node.body,
                               node.else_, node.test, node.recursive, lineno=node.lineno,
                               environment=self.environment)
        super().visit_For(stock_node, frame)
        self.outdent()

    def visit_CallBlock(self, node: nodes.CallBlock, frame: Frame) -> None:
        if not (self._streaming(frame) and self._calls_direct):
            super().visit_CallBlock(node, frame)
            return
        call_frame, macro_ref = self.macro_body(node, frame)
        self.writeline("caller = ")
        self.macro_def(macro_ref, call_frame)
        self.writeline(f"{self._write}(", node)
        self._byte_call(_jinja_runtime.TO_RAW, node.call, frame, forward_caller=True)
        self.write(")")

    # -- macros and call blocks: a text body (stock) and a byte body, side by side

    def macro_body(self, node: nodes.Macro | nodes.CallBlock,
                   frame: Frame) -> tuple[Frame, MacroRef]:
        """Stock's ``def macro(...)``, then ``def tpd_macro(...)``: the same body, to bytes."""
        result = super().macro_body(node, frame)
        if self.environment.is_async:
            return result
        saved = self._write, self._local_write
        self._write, self._local_write = self.temporary_identifier(), True
        self._byte_macro_next = True
        try:
            super().macro_body(node, frame)
        finally:
            (self._write, self._local_write), self._byte_macro_next = saved, False
        return result

    def func(self, name: str) -> str:
        return super().func("tpd_macro" if self._byte_macro_next and name == "macro" else name)

    def buffer(self, frame: Frame) -> None:
        if not self._byte_macro_next:
            super().buffer(frame)
            return
        # The byte body's frame keeps no text buffer, so the streaming overrides write it.
        self._byte_macro_next = False
        assert self._write is not None
        frame.tpd_chunks = chunks = self.temporary_identifier()  # type: ignore[attr-defined]
        self.writeline(f"{chunks} = []")
        self.writeline(f"{self._write} = {chunks}.append")

    def return_buffer_contents(self, frame: Frame, force_unescaped: bool = False) -> None:
        chunks = getattr(frame, "tpd_chunks", None)
        if chunks is None or frame.buffer is not None:
            super().return_buffer_contents(frame, force_unescaped)
        else:
            self.writeline(f"return b''.join({chunks})")

    def macro_def(self, macro_ref: MacroRef, frame: Frame) -> None:
        if self.environment.is_async:
            super().macro_def(macro_ref, frame)
            return
        self.write("tpd_with_bytes(")
        super().macro_def(macro_ref, frame)
        plain = not (macro_ref.accesses_caller or macro_ref.accesses_kwargs
                     or macro_ref.accesses_varargs)
        named = not (macro_ref.accesses_kwargs or macro_ref.accesses_varargs
                     or any(arg.name == "caller" for arg in macro_ref.node.args))
        self.write(f", tpd_macro, {plain}, {named})")


def _is_loop_cycle(node: nodes.Call) -> bool:
    """``loop.cycle(a, ...)`` with positional arguments only."""
    callee = node.node
    return (isinstance(callee, nodes.Getattr) and callee.attr == "cycle"
            and isinstance(callee.node, nodes.Name) and callee.node.name == "loop"
            and bool(node.args) and not node.kwargs and node.dyn_args is None
            and node.dyn_kwargs is None)


def _counted_loop(node: nodes.For) -> bool:
    """Can this loop run as a counted loop (see ``BytesCodeGenerator._for``)?"""
    if node.recursive or node.test is not None or node.else_:
        return False
    allowed: set[int] = set()  # the ``loop`` Name nodes read through a counter or cycle()
    for statement in node.body:
        for child in (statement, *statement.find_all(nodes.Node)):
            if not isinstance(child, _COUNTED_BODY):
                return False
            if isinstance(child, nodes.Call):
                if not _is_loop_cycle(child):
                    return False
                allowed.add(id(child.node.node))  # type: ignore[attr-defined]
            elif (isinstance(child, nodes.Getattr) and isinstance(child.node, nodes.Name)
                  and child.node.name == "loop" and child.attr in _LOOP_NUMBERS):
                allowed.add(id(child.node))
    return all(id(name) in allowed for statement in node.body
               for name in statement.find_all(nodes.Name) if name.name == "loop")


def _internal_name(name: str, lineno: int) -> nodes.InternalName:
    """An InternalName node (jinja2 only lets its parser make them) naming a generated local."""
    internal = object.__new__(nodes.InternalName)
    internal.name = name
    internal.lineno = lineno
    return internal
