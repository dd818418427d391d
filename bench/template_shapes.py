"""Micro-benchmark of jinja2 page shapes, no network: tpd2py.templates against stock jinja2.

Run: .venv/bin/python bench/template_shapes.py [--number N] [--repeat R] [--check] [--profile SHAPE]

Each shape is a set of templates and a context, rendered by stock jinja2
(``render(**ctx).encode()``) and by ``tpd2py.templates`` (a list of bytes chunks), to the very
same bytes (asserted). Shapes:
  catalogue  the macro-heavy page of issue 15: a base layout with blocks, a child that renders 200
             products through a macro imported from another file (format, xmlattr, urlencode, a
             nested loop over each product's tags), an include; about 50 KB
  users      bench/micro_html.py's reference page: a 100-row table of escaped values, no macros
  cards      call blocks and super(): 100 cards, each a {% call %} of an imported macro whose
             caller() holds the card body; blocks extended with super()
  tree       a recursive macro rendering a 3-level menu of 155 entries
  article    static text dominates: 30 KB of prose around a dozen values
Targets (issue 15): >= 1.5x stock on every shape, >= 2x where values dominate (all but article);
--check exits 1 if one is missed. Stock and tpd2py are timed in turn within each repeat with
thread_time, and the best repeat is kept, so a busy machine slows both alike.
``--profile SHAPE`` runs cProfile over tpd2py's renders of that shape instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench.micro_html import TEMPLATES as USERS_TEMPLATES  # noqa: E402
from bench.micro_html import reference_context  # noqa: E402
from tpd2py.templates import Templates, default_autoescape  # noqa: E402

BASE = (
    '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8">'
    "<title>{% block title %}Boutique{% endblock %}</title>"
    '<link rel="stylesheet" href="/static/site.css">{% block head %}{% endblock %}</head>'
    '<body><header><a class="logo" href="/">Boutique Ünïcödé</a>'
    "<nav><ul>{% for link in nav %}<li><a href=\"{{ link.href }}\">{{ link.label }}</a></li>"
    "{% endfor %}</ul></nav></header>"
    "<main>{% block content %}{% endblock %}</main>"
    "<footer>{% block footer %}© 2026 Société Ünïcödé — «tpd2py» ✓{% endblock %}</footer>"
    "</body></html>"
)

CATALOGUE = {
    "base.html": BASE,
    "macros.html": (
        "{% macro price(amount, currency='€') %}"
        "<span class=\"price\">{{ '%.2f'|format(amount) }}&nbsp;{{ currency }}</span>"
        "{% endmacro %}"
        "{% macro product_row(p, loop, show_stock=true) %}"
        "<tr class=\"{{ loop.cycle('odd', 'even') }}\" {{ {'data-id': p.id, 'data-sku': p.sku}"
        "|xmlattr }}>"
        "<td>{{ loop.index }}</td>"
        "<td><a href=\"/produit?{{ {'id': p.id, 'ref': p.sku}|urlencode }}\">{{ p.name }}</a>"
        "</td><td>{{ price(p.price) }}</td>"
        "<td>{% for tag in p.tags %}<span class=\"tag\">{{ tag }}</span>"
        "{% if not loop.last %}, {% endif %}{% endfor %}</td>"
        "{% if show_stock %}<td>{{ p.stock }}</td>{% endif %}</tr>"
        "{% endmacro %}"
    ),
    "sidebar.html": (
        "<aside><h2>Filtres</h2><ul>{% for c in categories %}"
        "<li><a href=\"/?cat={{ c|urlencode }}\">{{ c }}</a></li>{% endfor %}</ul></aside>"
    ),
    "catalogue.html": (
        '{% extends "base.html" %}'
        '{% from "macros.html" import product_row %}'
        "{% block title %}{{ title }} — {{ super() }}{% endblock %}"
        "{% block content %}{% include 'sidebar.html' %}<h1>{{ title }}</h1>"
        '<table class="catalogue"><thead><tr><th>#</th><th>Produit</th><th>Prix</th>'
        "<th>Étiquettes</th><th>Stock</th></tr></thead><tbody>"
        "{% for p in products %}{{ product_row(p, loop) }}{% endfor %}"
        "</tbody></table>{% endblock %}"
    ),
}

CARDS = {
    "base.html": BASE,
    "card.html": (
        "{% macro card(title, kind='info') %}"
        "<section class=\"card card-{{ kind }}\"><h2>{{ title }}</h2>"
        "<div class=\"body\">{{ caller() }}</div></section>"
        "{% endmacro %}"
    ),
    "cards.html": (
        '{% extends "base.html" %}{% import "card.html" as ui %}'
        "{% block title %}{{ title }} · {{ super() }}{% endblock %}"
        "{% block content %}{% for p in products %}"
        "{% call ui.card(p.name, kind=loop.cycle('info', 'warn')) %}"
        "<p>{{ p.sku }} — {{ p.stock }} en stock</p><p>{{ p.tags|join(', ') }}</p>"
        "{% endcall %}{% endfor %}{% endblock %}"
        "{% block footer %}{{ super() }} · {{ products|length }} cartes{% endblock %}"
    ),
}

TREE = {
    "base.html": BASE,
    "tree.html": (
        '{% extends "base.html" %}'
        "{% macro menu(entries, depth=1) %}<ul class=\"depth-{{ depth }}\">"
        "{% for e in entries %}<li><a href=\"{{ e.href }}\">{{ e.label }}</a>"
        "{% if e.children %}{{ menu(e.children, depth + 1) }}{% endif %}</li>{% endfor %}"
        "</ul>{% endmacro %}"
        "{% block content %}<h1>{{ title }}</h1>{{ menu(tree) }}{% endblock %}"
    ),
}

PROSE = ("<p>Le serveur répond à chaque requête depuis une seule boucle d'événements; chaque "
         "connexion a son greenlet, et les réponses partent en un seul appel système. "
         "Les gabarits sont compilés une fois, leur texte statique encodé une fois.</p>\n")
ARTICLE = {
    "base.html": BASE,
    "article.html": (
        '{% extends "base.html" %}{% block title %}{{ title }}{% endblock %}'
        "{% block content %}<article><h1>{{ title }}</h1>"
        "<p class=\"byline\">par {{ author }}, le {{ date }}</p>"
        + PROSE * 40 + "<p>{{ summary }}</p>" + PROSE * 40
        + "<ul>{% for t in tags %}<li>{{ t }}</li>{% endfor %}</ul></article>{% endblock %}"
    ),
}


@dataclass
class Product:
    id: int
    sku: str
    name: str
    price: float
    stock: int
    tags: list[str]


@dataclass
class Entry:
    href: str
    label: str
    children: list[Entry]


def catalogue_context(rows: int = 200) -> dict[str, Any]:
    tags = ["bio", "local & frais", "promo <-20%>", "nouveau", "été"]
    products = [Product(id=1000 + i, sku=f"SKU-{i:05d}", name=f"Pâté «maison» n°{i} & co",
                        price=3.5 + i * 0.25, stock=i * 7 % 50,
                        tags=[tags[(i + k) % 5] for k in range(i % 3 + 1)])
                for i in range(rows)]
    nav = reference_context()["nav"]
    return {"title": "Catalogue <été>", "nav": nav, "products": products,
            "categories": ["Épicerie", "Crèmerie & fromages", "Fruits/légumes", "Boissons"]}


def tree_context() -> dict[str, Any]:
    def level(prefix: str, depth: int) -> list[Entry]:
        if depth == 0:
            return []
        return [Entry(f"/menu/{prefix}{i}?x=1&y=2", f"Entrée {prefix}{i} <{depth}>",
                      level(f"{prefix}{i}.", depth - 1)) for i in range(5)]
    return {"title": "Plan du site", "nav": reference_context()["nav"], "tree": level("", 3)}


def article_context() -> dict[str, Any]:
    return {"title": "Un serveur <rapide>", "nav": reference_context()["nav"],
            "author": "Zoë O'Brien", "date": "7 décembre 2026",
            "summary": "En résumé: des octets, pas de texte & pas de copies.",
            "tags": ["python", "http", "jinja2 & co"]}


# name -> (templates, page, context, does the value work dominate?)
SHAPES: dict[str, tuple[dict[str, str], str, Callable[[], dict[str, Any]], bool]] = {
    "catalogue": (CATALOGUE, "catalogue.html", catalogue_context, True),
    "users": (USERS_TEMPLATES, "users.html", reference_context, True),
    "cards": (CARDS, "cards.html", lambda: catalogue_context(100), True),
    "tree": (TREE, "tree.html", tree_context, True),
    "article": (ARTICLE, "article.html", article_context, False),
}


def thread_us(render: Callable[[], object], number: int) -> float:
    start = time.thread_time()
    for _ in range(number):
        render()
    return (time.thread_time() - start) / number * 1e6


def renderers(name: str) -> tuple[Callable[[], bytes], Callable[[], list[bytes]], bytes]:
    """Stock and tpd2py renderers of a shape, checked to give the same bytes."""
    sources, page, make_context, _ = SHAPES[name]
    loader = jinja2.DictLoader(sources)
    stock = jinja2.Environment(loader=loader, autoescape=default_autoescape).get_template(page)
    ours = Templates(loader=loader).get_template(page)
    ctx = make_context()
    expected = stock.render(**ctx).encode()
    assert b"".join(ours.chunks(**ctx)) == expected, f"{name}: tpd2py renders different bytes"
    return (lambda: stock.render(**ctx).encode()), (lambda: ours.chunks(**ctx)), expected


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=100, help="renders per repeat")
    ap.add_argument("--repeat", type=int, default=10, help="repeats; the best is kept")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    ap.add_argument("--profile", choices=SHAPES, help="cProfile tpd2py's renders of a shape")
    ap.add_argument("--shapes", nargs="*", choices=SHAPES, default=list(SHAPES))
    args = ap.parse_args()

    if args.profile:
        render = renderers(args.profile)[1]
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [render() for _ in range(args.number)])
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
        return 0

    rows = []
    for name in args.shapes:
        stock, ours, expected = renderers(name)
        best_stock = best_ours = float("inf")
        for _ in range(args.repeat):
            best_stock = min(best_stock, thread_us(stock, args.number))
            best_ours = min(best_ours, thread_us(ours, args.number))
        target = 2.0 if SHAPES[name][3] else 1.5
        rows.append((best_stock / best_ours, name, len(expected), best_stock, best_ours, target))

    print(f"python {sys.version.split()[0]}, jinja2 {jinja2.__version__}; worst ratio first")
    print("| shape | bytes | stock µs | tpd2py µs | ratio | target |")
    print("|---|---|---|---|---|---|")
    missed = False
    for ratio, name, size, stock_us, ours_us, target in sorted(rows):
        verdict = "ok" if ratio >= target else "MISSED"
        missed |= ratio < target
        print(f"| {name} | {size:,} | {stock_us:.1f} | {ours_us:.1f} | {ratio:.2f}x | "
              f">= {target}x {verdict} |")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
