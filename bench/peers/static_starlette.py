"""uvicorn + Starlette's StaticFiles for bench/static_bench.py: the folder $STATIC_BENCH_DIR/static
under /static. Run from the repo root:
``python -m uvicorn bench.peers.static_starlette:app --port PORT``."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

app = Starlette(routes=[Mount("/static", StaticFiles(
    directory=Path(os.environ["STATIC_BENCH_DIR"]) / "static"))])
