"""The WSGI benchmark apps (bench/wsgi_bench.py): a raw WSGI hello world, and a Flask app with a
templated page and a JSON endpoint. Every server in that benchmark serves these same callables.

GET / (raw)        -> "Hello, World!" text/plain, with Content-Length
GET / (flask)      -> an HTML page rendered by Jinja2 from a template with a loop
GET /json (flask)  -> a small JSON document
"""

from __future__ import annotations

from typing import Any

HELLO = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]
NOT_FOUND = [("Content-Type", "text/plain"), ("Content-Length", "9")]


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ["PATH_INFO"] == "/":
        start_response("200 OK", HEADERS)
        return [HELLO]
    start_response("404 Not Found", NOT_FOUND)
    return [b"Not Found"]


PAGE = """<!doctype html>
<html><head><title>{{ title }}</title></head>
<body><h1>{{ title }}</h1>
<ul>{% for item in items %}<li class="{{ loop.cycle('odd', 'even') }}">
{{ item.name }}: {{ item.price }}</li>{% endfor %}</ul>
</body></html>"""
ITEMS = [{"name": f"item <{i}>", "price": i * 1.25} for i in range(10)]


def make_flask() -> Any:
    from flask import Flask, jsonify, render_template
    from jinja2 import DictLoader

    flask_app = Flask("bench")
    # A template from the app's loader, compiled once and cached (render_template_string
    # would compile it on every request).
    flask_app.jinja_loader = DictLoader({"page.html": PAGE})

    @flask_app.route("/")
    def page() -> str:
        return render_template("page.html", title="Fortunes & more", items=ITEMS)

    @flask_app.route("/json")
    def json() -> Any:
        return jsonify(message="Hello, World!", items=[1, 2, 3])

    return flask_app


def __getattr__(name: str) -> Any:  # `flask` is made on first use: the raw app needs no Flask
    if name == "flask":
        globals()["flask"] = made = make_flask()
        return made
    raise AttributeError(name)


def blocking(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A handler that blocks its thread for 10 ms (a slow database call): for --threads."""
    import time

    time.sleep(0.01)
    start_response("200 OK", HEADERS)
    return [HELLO]
