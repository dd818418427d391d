"""The demo app: a home page linking to each demo, ``/hello/<name>``, the chat and ``/static``.

Rules: each demo lives in its own module with a ``register(app)`` function that adds its routes
and returns the links it wants on the home page; this module only assembles them. The home page
is rendered once, on first request, into one bytes object. Never switches except in handlers
that say so (the chat's long poll and event stream).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from tpd2py import App, Request, Response
from tpd2py.static import StaticFiles

from . import chat, guestbook, pages

app = App()
# The stylesheet and the favicon come from a folder mount: validators, gzip for the CSS
# (made once, in memory), and a browser cache of an hour.
app.mount("/static", StaticFiles(Path(__file__).parent / "static", gzip=True,
                                 cache_control="public, max-age=3600"))
ASSETS = ('<link rel="stylesheet" href="/static/style.css">'
          '<link rel="icon" href="/static/favicon.ico">')
CHAT = chat.make_channel()

# (path, label) pairs for the home page, in order; demo modules add theirs at import.
LINKS: list[tuple[str, str]] = [
    ("/hello/world", "Hello, world: a route with a parameter"),
]
LINKS += chat.register(app, CHAT)
LINKS += pages.register(app)
LINKS += guestbook.register(app, ASSETS)

_home: bytes | None = None


def _render_home() -> bytes:
    items = "".join(f'<li><a href="{escape(path)}">{escape(label)}</a></li>'
                    for path, label in LINKS)
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>tpd2py demo</title>{ASSETS}</head><body><h1>tpd2py demo</h1>"
        f"<ul>{items}</ul></body></html>"
    ).encode()


@app.route("/")
def home(request: Request) -> bytes:
    global _home
    if _home is None:
        _home = _render_home()
    return _home


@app.route("/hello/<name>")
def hello(request: Request, name: str) -> Response:
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Hello</title>"
            f"{ASSETS}</head><body><h1>Hello, {escape(name)}!</h1></body></html>")
    return Response(page.encode(), content_type="text/html; charset=utf-8")
