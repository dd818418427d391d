"""Two demo pages with the same data: one written with tpd2py.html, one a jinja2 template.

Both render to a list of bytes chunks (static parts encoded once at import or load), which
the handler returns as is; Content-Length is the sum of the chunk lengths. Never switches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tpd2py import App, Request
from tpd2py.html import DOCTYPE, Var, each, h, page
from tpd2py.templates import Templates

LANGUAGES = [
    {"name": "English", "greeting": "Hello"},
    {"name": "Français", "greeting": "Bonjour <à tous> & bienvenue"},
    {"name": "日本語", "greeting": "こんにちは"},
    {"name": "Ελληνικά", "greeting": "Γειά σου"},
    {"name": "Ğàgà \"quoted\"", "greeting": "'single' & \"double\""},
]

templates = Templates(Path(__file__).parent / "templates")


@page
def languages_page(title: Var, languages: Var) -> Any:
    return [DOCTYPE, h.html(
        h.head(h.meta(charset="utf-8"), h.title(title)),
        h.body(
            h.nav(h.a("home", href="/"), " · ", h.a("jinja2 page", href="/jinja"), " · ",
                  h.a("chat", href="/chat")),
            h.h1(title),
            h.p("Rendered by ", h.code("tpd2py.html"),
                ": the page was compiled at import into a function appending bytes."),
            h.table(
                h.tr(h.th("#"), h.th("Language"), h.th("Greeting")),
                each(languages, lambda lang, loop: h.tr(
                    h.td(loop.index), h.td(lang["name"]), h.td(lang["greeting"]),
                    class_=loop.cycle("odd", "even")))),
        ),
        lang="en")]


def register(app: App) -> list[tuple[str, str]]:
    """Add /html and /jinja to ``app``; returns the home page links."""

    @app.route("/html")
    def html_page(request: Request) -> list[bytes]:
        return languages_page.chunks(title="Greetings (tpd2py.html)", languages=LANGUAGES)

    @app.route("/jinja")
    def jinja_page(request: Request) -> list[bytes]:
        return templates.render("languages.html", title="Greetings (jinja2)",
                                languages=LANGUAGES)

    return [("/html", "A page written with tpd2py.html"),
            ("/jinja", "The same page as a jinja2 template")]
