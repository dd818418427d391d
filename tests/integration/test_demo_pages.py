"""The demo's html.py and jinja2 pages over a real socket: same data, escaped, Content-Length
from the chunks; and the bench's reference page served three ways gives identical bytes."""

from __future__ import annotations

import jinja2

from bench import html_app
from demo import pages
from demo.app import app as demo_app


def test_demo_html_and_jinja_pages_are_served_escaped(server):
    srv = server(demo_app)
    for path in ("/html", "/jinja"):
        reply = srv.get(path)
        assert reply.status == 200
        assert reply.header("Content-Type") == "text/html; charset=utf-8"
        assert int(reply.header("Content-Length")) == len(reply.body)
        text = reply.body.decode("utf-8")
        assert "Bonjour &lt;à tous&gt; &amp; bienvenue" in text
        assert "こんにちは" in text
        assert "<à tous>" not in text


def test_demo_jinja_page_matches_stock_jinja2_bytes():
    env = jinja2.Environment(loader=pages.templates.env.loader, autoescape=True)
    ctx = {"title": "Greetings (jinja2)", "languages": pages.LANGUAGES}
    stock = env.get_template("languages.html").render(**ctx).encode()
    assert b"".join(pages.templates.render("languages.html", **ctx)) == stock


def test_reference_page_three_ways_same_bytes_over_the_socket(server):
    srv = server(html_app.app)
    bodies = {path: srv.get(path).body for path in ("/stock", "/tpl", "/page")}
    assert len(bodies["/stock"]) > 17000
    assert bodies["/stock"] == bodies["/tpl"] == bodies["/page"]
