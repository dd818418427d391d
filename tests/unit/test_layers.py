"""The layer rules of STYLE.md, checked on the package's syntax trees (like trio's
test_exports): who may import what, who may write the hub's readiness fields, module sizes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tpd2py"
MODULES = {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py"))}
SANS_IO = ["wire", "http11", "chunked", "headcache", "_grammar", "sendbuf", "html", "templates",
           "_escape", "inbuf", "wsframe", "wshandshake"]
IO_MODULES = {".hub", "socket", "_socket", "greenlet"}
READINESS = {"read_pending", "hangup", "armed"}  # the hub's and gsocket's alone
# conn.py and app.py were at 619 and 607 lines before the WebSocket upgrade seam (issue 17)
# added ~20 lines to each; the park/detach/upgrade wing has since left conn.py (connwait.py)
# and the response side left app.py (response.py).
MAX_LINES = 640


def imports(tree: ast.Module) -> list[tuple[str, str, str, int]]:
    """(module, name, bound as, line) for each import; the package's own modules are written
    ".hub", other modules by their name ("socket"); ``name`` is "" for a whole module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                mod = "." + a.name[7:] if a.name.startswith("tpd2py.") else a.name
                found.append((mod, "", a.asname or a.name, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level or mod.startswith("tpd2py"):
                mod = "." + mod.removeprefix("tpd2py").lstrip(".")
            for a in node.names:
                if mod == ".":  # from . import hub: a module
                    found.append(("." + a.name, "", a.asname or a.name, node.lineno))
                else:
                    found.append((mod, a.name, a.asname or a.name, node.lineno))
    return found


def assignments(tree: ast.Module) -> list[tuple[str, str, int]]:
    """(attribute, enclosing Class.function, line) for every ``x.attr = ...``."""
    found = []

    def visit(node: ast.AST, where: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, [*where, child.name])
                continue
            targets = (child.targets if isinstance(child, ast.Assign) else [child.target]
                       if isinstance(child, (ast.AugAssign, ast.AnnAssign)) else [])
            for target in targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Attribute) and isinstance(t.ctx, ast.Store):
                        found.append((t.attr, ".".join(where), child.lineno))
            visit(child, where)

    visit(tree, [])
    return found


def test_no_module_puts_another_modules_function_into_its_class() -> None:
    functions = {"." + name: {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
                 for name, tree in MODULES.items()}
    bad = []
    for name, tree in MODULES.items():
        bound = imports(tree)
        names = {local: functions.get(mod, set()) for mod, item, local, _ in bound
                 if item and item in functions.get(mod, ())}  # a function imported by name
        modules = {local: functions[mod] for mod, item, local, _ in bound
                   if not item and mod in functions}  # a package module imported whole
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for node in cls.body:
                value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
                if isinstance(value, ast.Name) and value.id in names:
                    bad.append(f"{name}.py:{node.lineno}: {cls.name} takes {value.id}")
                if isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name) \
                        and value.attr in modules.get(value.value.id, ()):
                    bad.append(f"{name}.py:{node.lineno}: {cls.name} takes "
                               f"{value.value.id}.{value.attr}")
    assert not bad, "\n".join(bad)


def test_no_private_name_is_imported_from_another_module() -> None:
    bad = [f"{name}.py:{line}: from {mod} import {item}"
           for name, tree in MODULES.items() for mod, item, _, line in imports(tree)
           if mod.startswith(".") and item.startswith("_")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(("module", "forbidden"), [
    *[(m, IO_MODULES) for m in SANS_IO],
    ("errors", {"." + m for m in MODULES} | {"."}),
    ("comet", {".conn"}),
    ("channel", {".conn"}),
])
def test_imports_respect_the_layers(module: str, forbidden: set[str]) -> None:
    if module not in MODULES:
        pytest.skip(f"no tpd2py/{module}.py")
    bad = [f"{module}.py:{line}: imports {mod}" for mod, _, _, line in imports(MODULES[module])
           if mod in forbidden or mod.split(".")[0] in forbidden]
    assert not bad, "\n".join(bad)


def test_only_the_hub_and_gsocket_write_readiness_and_only_enter_and_close_the_callback() -> None:
    bad = []
    for name, tree in MODULES.items():
        for attr, where, line in assignments(tree):
            if attr in READINESS and name not in ("hub", "_hub_records", "gsocket"):
                bad.append(f"{name}.py:{line}: {where} sets {attr}")
            if attr == "on_readable" and name not in ("hub", "_hub_records") and not (
                    name == "conn" and where in ("Connection._enter", "Connection.close")):
                bad.append(f"{name}.py:{line}: {where} sets on_readable")
    assert not bad, "\n".join(bad)


def test_every_module_is_short() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert not {n: s for n, s in sizes.items() if s >= MAX_LINES}


def test_the_package_imports_form_no_circle() -> None:
    # Imports made only for type checking count too: each one is a real call-time dependency
    # (the circle of 11 files the connection-wing review found was made of them).
    graph = {name: {mod[1:] for mod, _, _, _ in imports(tree)
                    if mod.startswith(".") and mod[1:] in MODULES and mod[1:] != name}
             for name, tree in MODULES.items() if name != "__init__"}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(name):]
                                                                 + [name]))
        if name in done:
            return
        for dep in sorted(graph.get(name, ())):
            visit(dep, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
