"""The demo app: a home page linking to each demo, ``/hello/<name>`` and the chat.

Rules: each demo lives in its own module with a ``register(app)`` function that adds its routes
and returns the links it wants on the home page; this module only assembles them. The home page
is rendered once, on first request, into one bytes object. Never switches except in handlers
that say so (the chat's long poll and event stream).
"""

from __future__ import annotations

from html import escape

from tpd2py import App, Request, Response

from . import chat, guestbook, pages

app = App()
CHAT = chat.make_channel()

# (path, label) pairs for the home page, in order; demo modules add theirs at import.
LINKS: list[tuple[str, str]] = [
    ("/hello/world", "Hello, world: a route with a parameter"),
]
LINKS += chat.register(app, CHAT)
LINKS += pages.register(app)
LINKS += guestbook.register(app)

_home: bytes | None = None


def _render_home() -> bytes:
    items = "".join(f'<li><a href="{escape(path)}">{escape(label)}</a></li>'
                    for path, label in LINKS)
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>tpd2py demo</title></head><body><h1>tpd2py demo</h1>"
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
    page = f"<!DOCTYPE html><title>Hello</title><h1>Hello, {escape(name)}!</h1>"
    return Response(page.encode(), content_type="text/html; charset=utf-8")
