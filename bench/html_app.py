"""The reference HTML page (bench/micro_html.py) served three ways, for the end-to-end figure.

GET /stock -> (a) stock jinja2 ``render().encode()``; GET /tpl -> (b) tpd2py.templates chunks;
GET /page -> (c) tpd2py.html chunks. Same bytes from all three (checked by tests and by
bench/html_e2e.py before it loads them). Run: ``python -m tpd2py bench.html_app:app``.
"""

from __future__ import annotations

import jinja2

from bench.micro_html import TEMPLATES, reference_context, users_page
from tpd2py import App, Request, Response
from tpd2py.templates import Templates, default_autoescape

app = App()
CONTEXT = reference_context()
_stock = jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES),
                            autoescape=default_autoescape).get_template("users.html")
_templates = Templates(loader=jinja2.DictLoader(TEMPLATES))
HTML = "text/html; charset=utf-8"


@app.route("/stock")
def stock(request: Request) -> Response:
    return Response(_stock.render(**CONTEXT).encode(), content_type=HTML)


@app.route("/tpl")
def tpl(request: Request) -> Response:
    return Response(_templates.render("users.html", **CONTEXT), content_type=HTML)


@app.route("/page")
def html_page(request: Request) -> Response:
    return Response(users_page.chunks(**CONTEXT), content_type=HTML)
