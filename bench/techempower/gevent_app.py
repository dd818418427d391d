"""The six TechEmpower test types on gevent.pywsgi with psycopg 3 (monkey-patched), a peer.

Run: ``TFB_DSN=... python bench/techempower/gevent_app.py --port PORT``. gevent patches the
standard library before psycopg is imported, so psycopg picks its selector-based wait, which
gevent makes cooperative: the usual way to run psycopg under gevent. A pool of ``TFB_POOL``
connections in a gevent queue; the SELECTs of /queries and /updates one after the other, the
UPDATEs through ``executemany`` (pipelined by psycopg), stock jinja2, stdlib json.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from operator import itemgetter  # noqa: E402
from pathlib import Path  # noqa: E402
from random import randint, sample  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import gevent.queue  # noqa: E402
import jinja2  # noqa: E402
import psycopg  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
from bench.techempower.schema import ADDITIONAL  # noqa: E402

READ = "SELECT id, randomnumber FROM world WHERE id = %s"
WRITE = "UPDATE world SET randomnumber = %s WHERE id = %s"
PAGE = jinja2.Environment(autoescape=True).from_string(
    "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    "<tr><th>id</th><th>message</th></tr>"
    "{% for id, message in fortunes %}<tr><td>{{ id }}</td><td>{{ message }}</td></tr>"
    "{% endfor %}</table></body></html>")
SIZE = int(os.environ.get("TFB_POOL", "16"))
_pool: gevent.queue.Queue = gevent.queue.Queue()
_opened = 0


@contextlib.contextmanager
def connection() -> Any:
    global _opened
    if _pool.empty() and _opened < SIZE:
        _opened += 1
        _pool.put(psycopg.connect(os.environ["TFB_DSN"], autocommit=True))
    conn = _pool.get()
    try:
        yield conn
    finally:
        _pool.put(conn)


def count(environ: dict) -> int:
    try:
        n = int(parse_qs(environ.get("QUERY_STRING", ""))["queries"][0])
    except (KeyError, IndexError, ValueError):
        return 1
    return 1 if n < 1 else 500 if n > 500 else n


def handle(environ: dict) -> tuple[str, str, bytes]:
    path = environ["PATH_INFO"]
    if path == "/json":
        return "200 OK", "application/json", json.dumps({"message": "Hello, World!"}).encode()
    if path == "/plaintext":
        return "200 OK", "text/plain", b"Hello, World!"
    if path == "/db":
        with connection() as conn:
            wid, number = conn.execute(READ, (randint(1, 10000),)).fetchone()
        return "200 OK", "application/json", json.dumps(
            {"id": wid, "randomNumber": number}).encode()
    if path in ("/queries", "/updates"):
        worlds = []
        with connection() as conn:
            cur = conn.cursor()
            for i in sample(range(1, 10001), count(environ)):
                wid, number = cur.execute(READ, (i,)).fetchone()
                worlds.append({"id": wid, "randomNumber": number})
            if path == "/updates":
                for world in worlds:
                    world["randomNumber"] = randint(1, 10000)
                cur.executemany(WRITE, [(w["randomNumber"], w["id"]) for w in worlds])
        return "200 OK", "application/json", json.dumps(worlds).encode()
    if path == "/fortunes":
        with connection() as conn:
            rows = conn.execute("SELECT id, message FROM fortune").fetchall()
        rows.append(ADDITIONAL)
        rows.sort(key=itemgetter(1))
        return "200 OK", "text/html; charset=utf-8", PAGE.render(fortunes=rows).encode()
    return "404 Not Found", "text/plain", b"Not Found"


def app(environ: dict, start_response: Any) -> list[bytes]:
    status, ctype, body = handle(environ)
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body))),
                            ("Server", "gevent")])
    return [body]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    WSGIServer((args.host, args.port), app, log=None, backlog=1024).serve_forever()
