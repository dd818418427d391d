"""The six TechEmpower test types on tpd2py: native handlers, tpd2py.pg, compiled jinja2.

Run: ``TFB_DSN="host=... dbname=hello_world" python -m tpd2py bench.techempower.tpd2py_app:app``
(``TFB_POOL``: connections, default 16). Every response carries ``Server`` (the benchmark wants
it); the Date header is the server's own.

- /db, /queries, /updates: one row per SELECT, by primary key (the rules forbid ``IN (...)``).
  The SELECTs of one request go out pipelined (``fetch_each``: psycopg's pipeline mode, one
  round trip for N statements; allowed by the rules since 2018), and so do the N UPDATEs
  (``executemany``), one statement per row.
  psycopg prepares a statement after its fifth use (``prepare_threshold``).
- /fortunes: all rows, one added, sorted by message, rendered by a jinja2 template compiled
  to bytes chunks (``tpd2py.templates``), escaped and UTF-8.
"""

from __future__ import annotations

import os
from operator import itemgetter
from random import randint, sample

import jinja2

from bench.techempower.schema import ADDITIONAL
from tpd2py import App, Request, Response
from tpd2py.jsonbody import json_bytes
from tpd2py.pg import Pool, fetch_each
from tpd2py.templates import Templates

READ = "SELECT id, randomnumber FROM world WHERE id = %s"
WRITE = "UPDATE world SET randomnumber = %s WHERE id = %s"
FORTUNES = "SELECT id, message FROM fortune"
JSON = "application/json"
HTML = "text/html; charset=utf-8"
TEXT = "text/plain"
# Response's header lines are checked and encoded once; these carry the Server header too, made
# once at import (a headers= dict per response would be encoded per request).
_FIELDS = {ctype: Response(b"", content_type=ctype, headers={"Server": "tpd2py"}).fields
           for ctype in (JSON, HTML, TEXT)}
_PAGE = Templates(loader=jinja2.DictLoader({}), autoescape=True).from_string(
    "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    "<tr><th>id</th><th>message</th></tr>"
    "{% for id, message in fortunes %}<tr><td>{{ id }}</td><td>{{ message }}</td></tr>"
    "{% endfor %}</table></body></html>")
_by_message = itemgetter(1)


def respond(body: bytes | list[bytes], ctype: str) -> Response:
    response = Response(body, content_type=ctype)
    response.fields = _FIELDS[ctype]
    return response


def count(req: Request) -> int:
    """``queries`` clamped to 1..500; anything that is not an integer counts as 1."""
    try:
        n = int(req.query.get("queries", "1"))
    except ValueError:
        return 1
    return 1 if n < 1 else 500 if n > 500 else n


def make_app(db: Pool) -> App:
    """The six routes over ``db``."""
    app = App()

    @app.route("/json")
    def json_test(req: Request) -> Response:
        return respond(json_bytes({"message": "Hello, World!"}), JSON)

    @app.route("/plaintext")
    def plaintext(req: Request) -> Response:
        return respond(b"Hello, World!", TEXT)

    @app.route("/db")
    def single_query(req: Request) -> Response:
        wid, number = db.fetchrow(READ, (randint(1, 10000),))
        return respond(json_bytes({"id": wid, "randomNumber": number}), JSON)

    @app.route("/queries")
    def queries(req: Request) -> Response:
        rows = db.fetch_each(READ, [(i,) for i in sample(range(1, 10001), count(req))])
        return respond(json_bytes([{"id": w, "randomNumber": n} for w, n in rows]), JSON)

    @app.route("/fortunes")
    def fortunes(req: Request) -> Response:
        rows = db.fetch(FORTUNES)
        rows.append(ADDITIONAL)
        rows.sort(key=_by_message)
        return respond(_PAGE.chunks(fortunes=rows), HTML)

    @app.route("/updates")
    def updates(req: Request) -> Response:
        ids = sample(range(1, 10001), count(req))
        with db.connection() as conn:
            worlds = [[*row] for row in fetch_each(conn, READ, [(i,) for i in ids])]
            for world in worlds:  # read, then change in memory, then write each row
                world[1] = randint(1, 10000)
            conn.statement_cursor.executemany(WRITE, [(n, w) for w, n in worlds])
        return respond(json_bytes([{"id": w, "randomNumber": n} for w, n in worlds]), JSON)

    return app


app = make_app(Pool(os.environ.get("TFB_DSN", "dbname=hello_world"),
                    size=int(os.environ.get("TFB_POOL", "16"))))
