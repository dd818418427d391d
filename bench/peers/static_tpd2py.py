"""tpd2py for bench/static_bench.py: a folder mount, plus the 50 KB page plain, gzip-cached and
gzip-dynamic. The folder is $STATIC_BENCH_DIR; run from the repo root:
``python -m tpd2py bench.peers.static_tpd2py:app --port PORT``."""

from __future__ import annotations

import os
from itertools import count
from pathlib import Path

from tpd2py import App, Request, Response
from tpd2py.compress import Gzip, GzipCache
from tpd2py.static import StaticFiles

FOLDER = Path(os.environ["STATIC_BENCH_DIR"])
PAGE = (FOLDER / "static" / "page.html").read_bytes()
app = App()
app.mount("/static", StaticFiles(FOLDER / "static"))


@app.route("/")
def hello(req: Request) -> Response:
    return Response(b"Hello, World!", content_type=b"text/plain")


@app.route("/page")
def page(req: Request) -> bytes:
    return PAGE


# A Gzip is a handler wrapper: app.wrap(Gzip()) wraps every route; here it decorates two.
gz = Gzip(level=6)
no_cache = Gzip(level=6, cache=GzipCache(max_entries=0))
_n = count()


@app.route("/gz/page")
@gz
def gz_page(req: Request) -> bytes:
    return PAGE  # the same bytes each time: its gzip form comes from the cache


@app.route("/gz/dynamic")
@no_cache
def gz_dynamic(req: Request) -> bytes:
    return PAGE + b"<!-- %d -->" % next(_n)  # differs each time: compressed on every request
