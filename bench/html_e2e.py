"""End to end: the reference page served by tpd2py three ways, loaded with wrk, side by side.

Run from the repository root: ``.venv/bin/python bench/html_e2e.py [--duration S]``.
Starts ``python -m tpd2py bench.html_app:app`` pinned to CPU 1, checks that /stock, /tpl and /page
return the same bytes, then runs wrk (pinned to CPU 0) on each in turn, twice, interleaved, and
prints requests/s and each path's ratio to (a). Target: (c) at least 2x (a).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = {"/stock": "(a) stock jinja2 render().encode()",
         "/tpl": "(b) tpd2py.templates chunks",
         "/page": "(c) tpd2py.html chunks"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(port: int, path: str, duration: float, connections: int) -> float:
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s",
         f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=duration + 30,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    return float(m.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    port = free_port()
    server = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, "-m", "tpd2py", "bench.html_app:app",
         "--port", str(port)], cwd=ROOT, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 10
        bodies = {}
        while True:
            try:
                for path in PATHS:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
                        bodies[path] = r.read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        if len(set(bodies.values())) != 1:
            print("the three paths do not serve the same bytes", file=sys.stderr)
            return 1
        rates: dict[str, list[float]] = {p: [] for p in PATHS}
        for _ in range(args.rounds):
            for path in PATHS:
                rates[path].append(wrk(port, path, args.duration, args.connections))
    finally:
        server.terminate()
        server.wait(timeout=15)
    base = max(rates["/stock"])
    print(f"reference page {len(bodies['/stock'])} bytes; wrk -t1 -c{args.connections} "
          f"-d{int(args.duration)}s, best of {args.rounds}")
    for path, label in PATHS.items():
        best = max(rates[path])
        print(f"{label:40s} {best:9.0f} req/s  {best / base:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
