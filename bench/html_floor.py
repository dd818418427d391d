"""Micro-benchmark: tpd2py.html against a hand-written function, the floor for pure Python.

Run: .venv/bin/python bench/html_floor.py [--number N] [--repeat R] [--check] [--source]

The page: a 200-row catalogue table (about 50 KB): per row escaped text, three dynamic
attributes (a link, a data- attribute, a title that may be None), integers, a conditional
(in stock or not) and a nested loop over the product's tags with a separator after all but the
last. Rendered three ways to the very same bytes (asserted):
  floor   a hand-written Python function appending pre-encoded bytes: constants encoded once,
          values escaped with markupsafe's C function, integers with b'%d', one list per page
  html    the same page defined with tpd2py.html's @page, its holes plain Vars (types unknown)
  typed   the same, its holes declared Var[str] and Var[list[Product]] (types known)
  stock   the same page as a jinja2 template, render(**ctx).encode()
Target (issue 15): html >= 0.85x the floor. Both html rows are reported; --check exits 1 if
the declared-type page misses it (the plain-Var page stays near 0.73x: it tests each value's
type). All are timed in turn within each repeat with thread_time, best repeat kept.
``--source`` prints html.py's generated functions. ``--instructions`` counts each renderer's
instructions per render with valgrind (callgrind, N and 2N renders, the difference over N):
repeatable where timings move with the machine's load.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from tpd2py._escape import escape_inner  # noqa: E402
from tpd2py.html import Child, Var, each, h, page, when  # noqa: E402
from tpd2py.templates import default_autoescape  # noqa: E402


@dataclass
class Product:
    id: int
    name: str
    url: str
    note: str | None
    price_cents: int
    stock: int
    tags: list[str]


def catalogue_context(rows: int = 200) -> dict[str, Any]:
    tags = ["bio", "local & frais", "promo <-20%>", "nouveau", "été"]
    products = [Product(id=1000 + i, name=f"Pâté «maison» n°{i} & co", url=f"/p/{1000 + i}?r=a&b",
                        note=None if i % 4 == 0 else f"lot \"{i % 7}\" <frais>",
                        price_cents=350 + i * 25, stock=i * 7 % 50,
                        tags=[tags[(i + k) % 5] for k in range(i % 3 + 1)])
                for i in range(rows)]
    return {"title": "Catalogue <été>", "products": products}


def catalogue_table(title: Var, products: Var) -> Child:
    return h.table(
        h.caption(title),
        h.thead(h.tr(h.th("#"), h.th("Produit"), h.th("Prix (c)"), h.th("Étiquettes"),
                     h.th("Stock"))),
        h.tbody(each(products, lambda p, loop: h.tr(
            h.td(loop.index),
            h.td(h.a(p.name, href=p.url, title=p.note)),
            h.td(p.price_cents),
            h.td(each(p.tags, lambda tag, tags: [
                h.span(tag, class_="tag"), when(tags.last, None, ", ")])),
            h.td(when(p.stock, p.stock, h.em("épuisé"))),
            class_=loop.cycle("odd", "even"), data_id=p.id))),
        class_="catalogue")


@page
def catalogue_page(title: Var, products: Var) -> Child:
    """The page with holes of unknown type: each value's type is tested when it is written."""
    return catalogue_table(title, products)


@page
def typed_catalogue_page(title: Var[str], products: Var[list[Product]]) -> Child:
    """The same page with its holes' types declared (Product's fields give the rest)."""
    return catalogue_table(title, products)


STOCK_TEMPLATE = (
    '<table class="catalogue"><caption>{{ title }}</caption><thead><tr><th>#</th>'
    "<th>Produit</th><th>Prix (c)</th><th>Étiquettes</th><th>Stock</th></tr></thead><tbody>"
    "{% for p in products %}<tr class=\"{{ loop.cycle('odd', 'even') }}\" data-id=\"{{ p.id }}\">"
    "<td>{{ loop.index }}</td><td><a href=\"{{ p.url }}\""
    "{% if p.note is not none %} title=\"{{ p.note }}\"{% endif %}>{{ p.name }}</a></td>"
    "<td>{{ p.price_cents }}</td><td>{% for tag in p.tags %}<span class=\"tag\">{{ tag }}</span>"
    "{% if not loop.last %}, {% endif %}{% endfor %}</td>"
    "<td>{% if p.stock %}{{ p.stock }}{% else %}<em>épuisé</em>{% endif %}</td></tr>"
    "{% endfor %}</tbody></table>"
)

_HEAD = ('<table class="catalogue"><caption>%s</caption><thead><tr><th>#</th><th>Produit</th>'
         "<th>Prix (c)</th><th>Étiquettes</th><th>Stock</th></tr></thead><tbody>").encode()
_ROW = b'<tr class="%s" data-id="%d"><td>%d</td><td><a href="%s"%s>%s</a></td><td>%d</td><td>'
_CLASSES = (b"odd", b"even")
_TAG = b'<span class="tag">%s</span>'
_TAG_SEP = b'<span class="tag">%s</span>, '
_STOCK = b"</td><td>%d</td></tr>"
_SOLD_OUT = "</td><td><em>épuisé</em></td></tr>".encode()
_TAIL = b"</tbody></table>"


def floor(out: list[bytes], /, *, title: str, products: list[Product]) -> None:
    """The page written by hand the fastest way we know in pure Python (same bytes)."""
    out.append(_HEAD % escape_inner(title).encode())
    rows: list[bytes] = []
    add = rows.append
    for index, p in enumerate(products):
        note = p.note
        add(_ROW % (_CLASSES[index % 2], p.id, index + 1, escape_inner(p.url).encode(),
                    b"" if note is None else b' title="%s"' % escape_inner(note).encode(),
                    escape_inner(p.name).encode(), p.price_cents))
        tags = p.tags
        last = len(tags) - 1
        for position, tag in enumerate(tags):
            add((_TAG if position == last else _TAG_SEP) % escape_inner(tag).encode())
        add(_STOCK % p.stock if p.stock else _SOLD_OUT)
    out.append(b"".join(rows))
    out.append(_TAIL)


def thread_us(render: Callable[[], object], number: int) -> float:
    start = time.thread_time()
    for _ in range(number):
        render()
    return (time.thread_time() - start) / number * 1e6


def counted_renderers() -> dict[str, Callable[[dict[str, Any]], Any]]:
    return {"floor": lambda ctx: floor([], **ctx),
            "html": lambda ctx: catalogue_page.chunks(**ctx),
            "html-typed": lambda ctx: typed_catalogue_page.chunks(**ctx)}


def instructions(label: str, number: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
             sys.executable, __file__, "--run", label, str(number)],
            capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--run":  # under valgrind: render N times
        render, ctx = counted_renderers()[sys.argv[2]], catalogue_context()
        for _ in range(int(sys.argv[3])):
            render(ctx)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=100, help="renders per repeat")
    ap.add_argument("--repeat", type=int, default=15, help="repeats; the best is kept")
    ap.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    ap.add_argument("--source", action="store_true", help="print html.py's generated function")
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions per render with valgrind instead")
    args = ap.parse_args()
    if args.instructions:
        if shutil.which("valgrind") is None:
            print("valgrind is missing: apt-get install valgrind")
            return 2
        per = {}
        for label in counted_renderers():
            once, twice = instructions(label, 10), instructions(label, 20)
            per[label] = (twice - once) / 10
        for label, count in per.items():
            print(f"{label}: {count:,.0f} instructions per render "
                  f"({per['floor'] / count:.2f}x of the floor's count)")
        return 0
    if args.source:
        print(catalogue_page.source)
        print(typed_catalogue_page.source)
        return 0

    ctx = catalogue_context()
    stock = jinja2.Environment(autoescape=default_autoescape).from_string(STOCK_TEMPLATE)

    def floor_chunks() -> list[bytes]:
        out: list[bytes] = []
        floor(out, **ctx)
        return out

    renderers: dict[str, Callable[[], Any]] = {
        "floor (hand-written)": floor_chunks,
        "tpd2py.html @page": lambda: catalogue_page.chunks(**ctx),
        "tpd2py.html @page, Var[T]": lambda: typed_catalogue_page.chunks(**ctx),
        "stock jinja2": lambda: stock.render(**ctx).encode(),
    }
    expected = b"".join(floor_chunks())
    for label, render in renderers.items():
        result = render()
        body = result if isinstance(result, bytes) else b"".join(result)
        assert body == expected, f"{label} renders different bytes"

    best = dict.fromkeys(renderers, float("inf"))
    for _ in range(args.repeat):
        for label, render in renderers.items():
            best[label] = min(best[label], thread_us(render, args.number))

    floor_us = best["floor (hand-written)"]
    print(f"catalogue table: {len(expected):,} bytes, 200 rows, python {sys.version.split()[0]}")
    print("| renderer | µs/render | vs floor | vs stock jinja2 |")
    print("|---|---|---|---|")
    for label, us in best.items():
        print(f"| {label} | {us:.1f} | {floor_us / us:.2f}x | "
              f"{best['stock jinja2'] / us:.2f}x |")
    missed = False
    for label in ("tpd2py.html @page", "tpd2py.html @page, Var[T]"):
        ratio = floor_us / best[label]
        missed = ratio < 0.85  # the last, the declared-type page, decides --check
        print(f"{label} / floor: {ratio:.2f}x (target >= 0.85x: "
              f"{'ok' if ratio >= 0.85 else 'MISSED'})")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
