"""The TechEmpower test types, side by side: tpd2py; uvicorn and granian on asyncpg; gevent.

    .venv/bin/python -m bench.techempower.run [--duration 5] [--connections 64] [--pool 16]
        [--servers tpd2py,uvicorn,granian,gevent]
        [--tests json,plaintext,db,queries,fortunes,updates]

What it does: starts a throwaway PostgreSQL (bench/pgcluster.py) with the benchmark's schema,
then for each server: start it pinned to ``--server-cpu``, check all six test types with
bench/techempower/verify.py (a server that fails is reported, not measured), warm up, and run
wrk (one thread, ``--connections`` keep-alive connections, plaintext pipelined 16 deep) for
``--duration`` seconds per test type. PostgreSQL runs on ``--client-cpu``, with wrk, for every
server alike: the server's core is its own, and its CPU time per request is what we report.
Every server gets a pool of ``--pool`` connections. Output: a Markdown table (req/s, server CPU
µs per request, p99) and bench/out/techempower.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import loaders, servers  # noqa: E402
from bench.machine import commit, raise_nofile  # noqa: E402
from bench.pgcluster import Cluster  # noqa: E402
from bench.techempower.schema import load  # noqa: E402
from bench.techempower.verify import verify  # noqa: E402

TESTS = {
    "json": ("/json", 1),
    "plaintext": ("/plaintext", 16),
    "db": ("/db", 1),
    "queries": ("/queries?queries=20", 1),
    "fortunes": ("/fortunes", 1),
    "updates": ("/updates?queries=20", 1),
}
SERVERS = ("tpd2py", "uvicorn", "granian", "gevent")


def command(name: str, port: int) -> list[str]:
    py = sys.executable
    host = ["--host", "127.0.0.1", "--port", str(port)]
    if name == "tpd2py":
        return [py, "-m", "tpd2py", "bench.techempower.tpd2py_app:app", *host]
    if name == "uvicorn":
        return [py, "-m", "uvicorn", "bench.techempower.asyncpg_app:asgi", *host,
                "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning", "--lifespan", "off"]
    if name == "gevent":
        return [py, "bench/techempower/gevent_app.py", *host]
    if name == "granian":
        return [py, "-m", "granian", "--interface", "rsgi", "bench.techempower.asyncpg_app:rsgi",
                *host, "--workers", "1", "--runtime-threads", "1", "--http", "1",
                "--loop", "uvloop", "--no-access-log", "--log-level", "warning"]
    raise KeyError(name)


def fetcher(port: int) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(path: str) -> tuple[int, dict[str, str], bytes]:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    return get


def world_reader(dsn: str) -> Any:
    import psycopg

    conn = psycopg.connect(dsn, autocommit=True)

    def world(ids: list[int]) -> dict[int, int]:
        rows = conn.execute("SELECT id, randomnumber FROM world WHERE id = ANY(%s)",
                            (ids,)).fetchall()
        return dict(rows)

    return world


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--tests", default=",".join(TESTS))
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--pool", type=int, default=16)
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--client-cpu", type=int, default=0)
    args = parser.parse_args()
    raise_nofile()
    os.sched_setaffinity(0, {args.client_cpu})
    out = ROOT / "bench" / "out"
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    with Cluster(cpu=args.client_cpu) as cluster:
        dsn = load(cluster)
        os.environ.update(TFB_DSN=dsn, TFB_POOL=str(args.pool))
        world = world_reader(dsn)
        for name in args.servers.split(","):
            port = servers.free_port()
            workdir = Path(tempfile.gettempdir()) / f"tfb-{name}-{port}"
            workdir.mkdir(exist_ok=True)
            running = servers.Running(name, command(name, port), port,
                                      logs / f"techempower-{name}.log", workdir, args.server_cpu)
            try:
                running.wait_ready()
                problems = verify(fetcher(port), world)
                if problems:
                    print(f"{name}: FAILED the verifier:\n  " + "\n  ".join(problems[:10]))
                    results.append({"server": name, "failed": problems})
                    continue
                for test in args.tests.split(","):
                    path, depth = TESTS[test]
                    loaders.wrk(port, path, args.connections, args.warmup, args.client_cpu,
                                depth)
                    cpu = running.cpu_seconds()
                    load_avg = os.getloadavg()[0]
                    r = loaders.wrk(port, path, args.connections, args.duration,
                                    args.client_cpu, depth)
                    used = running.cpu_seconds() - cpu
                    row = {"server": name, "test": test, "rps": r["rps"],
                           "cpu_us": used / max(1, r["requests"]) * 1e6,
                           "p99_ms": r["p99_ms"], "errors": r["errors"],
                           "load": load_avg, "rss_kib": running.rss_kib()}
                    results.append(row)
                    print(f"{name:8} {test:10} {row['rps']:9.0f} req/s  "
                          f"{row['cpu_us']:6.0f} µs CPU/req  p99 {row['p99_ms']} ms  "
                          f"errors {row['errors']}  load {load_avg:.2f}", flush=True)
            finally:
                running.stop()
    (out / "techempower.json").write_text(json.dumps(
        {"commit": commit(), "args": vars(args), "results": results}, indent=1))
    print()
    print(table(results, args.tests.split(","), args.servers.split(",")))
    return 0


def table(results: list[dict[str, Any]], tests: list[str], names: list[str]) -> str:
    lines = ["| test | " + " | ".join(names) + " |",
             "| --- |" + " --- |" * len(names)]
    for test in tests:
        cells = []
        for name in names:
            row = next((r for r in results if r["server"] == name and r.get("test") == test),
                       None)
            if row is None:
                cells.append("failed" if any(r["server"] == name and "failed" in r
                                             for r in results) else "-")
                continue
            p99 = f"{row['p99_ms']:.1f}" if row["p99_ms"] else "?"
            err = f", {row['errors']} errors" if row["errors"] else ""
            cells.append(f"{row['rps']:,.0f} req/s, {row['cpu_us']:.0f} µs, p99 {p99} ms{err}")
        lines.append(f"| {test} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
