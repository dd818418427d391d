"""WSGI servers side by side: tpd2py's WSGI adapter against granian, gunicorn, waitress, bjoern
and meinheld, each serving the same callables (bench/peers/wsgi_hello.py).

Usage (from the repo root; needs wrk; run it under the bench lock):
  .venv/bin/python bench/wsgi_bench.py --app raw     # GET / of a raw WSGI hello world
  .venv/bin/python bench/wsgi_bench.py --app flask   # a templated page and a JSON endpoint
  .venv/bin/python bench/wsgi_bench.py --idle 10000  # idle keep-alive connections, WSGI vs native
  .venv/bin/python bench/wsgi_bench.py --blocking    # --threads 16, a handler that blocks 10 ms

Each server runs one worker process pinned to --server-cpu, access log off; the load is
`wrk -t1 -c100` keep-alive on --client-cpu (scenarios.measure_once: requests/s, the server's
CPU µs per request and how much of its core others took). --rounds cycles through the servers
(the order alternating) and keeps each one's median. A server whose package is not installed is
skipped, saying so. --idle reuses the c10k scenario (bench/holder.py). Bounded: rounds (<= 5)
x servers x points x (--duration + wrk's grace).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package

from bench import loaders, machine, servers  # noqa: E402
from bench.scenarios import Context, c10k, measure_once  # noqa: E402

MODULE = "bench.peers.wsgi_hello"
IDLE_TIMEOUT = str(servers.IDLE_TIMEOUT_S)
# server -> the Python package it needs (None: part of this checkout)
PEERS = {
    "tpd2py": None,
    "granian": "granian",
    "gunicorn-sync": "gunicorn",
    "gunicorn-gevent": "gevent",
    "waitress": "waitress",
    "bjoern": "bjoern",
    "meinheld": "meinheld",
}
POINTS = {"raw": ["/"], "flask": ["/", "/json"]}


def command(name: str, attr: str, port: int, threads: int = 0) -> list[str]:
    py = sys.executable
    spec = f"{MODULE}:{attr}"
    if name == "tpd2py":
        argv = [py, "-m", "tpd2py", spec, "--port", str(port), "--keepalive-timeout",
                IDLE_TIMEOUT, "--max-connections", "20000"]
        return argv + (["--threads", str(threads)] if threads else [])
    if name == "tpd2py-native":
        return [py, "-m", "tpd2py", "bench.hello:app", "--port", str(port),
                "--keepalive-timeout", IDLE_TIMEOUT, "--max-connections", "20000"]
    if name == "granian":
        return [py, "-m", "granian", "--interface", "wsgi", spec, "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1", "--runtime-threads", "1",
                "--blocking-threads", str(threads or 1), "--http", "1", "--no-access-log",
                "--log-level", "warning", "--backlog", "1024"]
    if name.startswith("gunicorn"):
        worker = name.split("-")[1]
        argv = [py, "-m", "gunicorn", "-w", "1", "-k", worker, "-b", f"127.0.0.1:{port}",
                "--backlog", "1024", "--log-level", "warning", "--keep-alive", IDLE_TIMEOUT]
        if worker == "gevent":
            argv += ["--worker-connections", "20000"]
        if threads:
            argv = [py, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads",
                    str(threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
        return [*argv, spec]
    if name == "waitress":
        return [py, "-m", "waitress", f"--listen=127.0.0.1:{port}",
                f"--threads={threads or 4}", spec]
    if name in ("bjoern", "meinheld"):
        return [py, "bench/peers/wsgi_runner.py", name, attr, "--port", str(port)]
    raise KeyError(name)


def available(name: str) -> bool:
    package = PEERS.get(name)
    return package is None or importlib.util.find_spec(package) is not None


def run_load(args: argparse.Namespace, names: list[str], attr: str, paths: list[str],
             logs: Path, threads: int = 0, connections: int = 100) -> dict[tuple, list]:
    rows: dict[tuple, list] = {}
    for round_no in range(args.rounds):
        order = names if round_no % 2 == 0 else list(reversed(names))
        for name in order:
            port = servers.free_port()
            argv = command(name, attr, port, threads)
            workdir = Path(tempfile.mkdtemp(prefix=f"wsgi-bench-{name}-"))
            server = servers.Running(name, argv, port, logs / f"wsgi-{name}.log", workdir,
                                     args.server_cpu)
            try:
                server.wait_ready()
                # A short warm-up: imports, pools and caches fill before the measured run.
                loaders.wrk(port, paths[0], connections, 1, args.client_cpu)
                for path in paths:
                    row = measure_once(path, server, lambda p=path, q=port: loaders.wrk(
                        q, p, connections, args.duration, args.client_cpu))
                    rows.setdefault((name, path), []).append(row)
                    print(f"  round {round_no + 1} {name:16s} {path:6s} "
                          f"{row.get('rps', 0):9,.0f} req/s "
                          f"{row.get('cpu_us_per_request') or 0:7.1f} µs/req "
                          f"p99 {row.get('p99_ms') or 0:6.2f} ms "
                          f"others {row.get('server_core_others', 0):.0%} "
                          f"errors {row.get('errors', 0)} {row.get('note', '')}", flush=True)
            except servers.StartError as e:
                print(f"  {name}: did not start: {e}", flush=True)
            finally:
                server.stop()
    return rows


def table(rows: dict[tuple, list], reference: str = "tpd2py") -> None:
    print("\n| server | path | req/s (median) | vs tpd2py | CPU µs/req | p99 ms | errors | "
          "RSS MiB | runs |")
    print("|---|---|---|---|---|---|---|---|---|")
    medians = {}
    for (name, path), runs in rows.items():
        ok = [r for r in runs if r.get("status") == "ok"]
        if not ok:
            continue
        best = sorted(ok, key=lambda r: r["rps"])[len(ok) // 2]
        medians[(name, path)] = best
    for (name, path), row in medians.items():
        ref = medians.get((reference, path))
        ratio = f"{row['rps'] / ref['rps']:.2f}×" if ref else "—"
        runs = ", ".join(f"{r['rps']:,.0f}" for r in rows[(name, path)] if r.get("rps"))
        p99 = f"{row['p99_ms']:.2f}" if row.get("p99_ms") else "—"
        print(f"| {name} | {path} | {row['rps']:,.0f} | {ratio} | "
              f"{row.get('cpu_us_per_request') or 0:.1f} | {p99} | "
              f"{row.get('errors', 0)} | {row.get('rss_kib', 0) / 1024:.1f} | {runs} |")


def idle(args: argparse.Namespace, logs: Path) -> None:
    """The c10k scenario (bench/scenarios.py) on tpd2py's WSGI mode and its native mode."""
    ctx = Context(dry=False, duration=args.duration, connections=100, idle=args.idle,
                  client_cpu=args.client_cpu, python=sys.executable, logs=logs, say=print)
    for name in ("tpd2py", "tpd2py-native"):
        port = servers.free_port()
        workdir = Path(tempfile.mkdtemp(prefix=f"wsgi-bench-{name}-"))
        server = servers.Running(name, command(name, "app", port), port,
                                 logs / f"wsgi-{name}.log", workdir, args.server_cpu)
        try:
            server.wait_ready()
            row = c10k(ctx, server)[0]
        finally:
            server.stop()
        per = row.get("bytes_per_idle")
        print(f"{name}: held {row.get('idle_held')}/{row.get('idle_requested')}, "
              f"{per} bytes per idle connection ({(per or 0) / 1024:.2f} KiB), RSS "
              f"{row.get('rss_before_kib')} -> {row.get('rss_idle_kib')} KiB; then "
              f"{row.get('rps', 0):,.0f} req/s with them open "
              f"({row.get('rps_no_idle') or 0:,.0f} without); "
              f"{row.get('idle_answered_end')} answered a new request at the end", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=list(POINTS), default="raw")
    parser.add_argument("--servers", default=",".join(PEERS),
                        help=f"comma-separated, from {','.join(PEERS)},tpd2py-native")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--idle", type=int, default=0,
                        help="hold this many idle connections (c10k) instead")
    parser.add_argument("--blocking", action="store_true",
                        help="--threads 16 and a handler that blocks 10 ms (tpd2py, granian, "
                             "gunicorn gthread, waitress with 16 threads)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 5:
        parser.error("--rounds must be 1..5")
    logs = machine.ROOT / "bench" / "out" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"commit {machine.commit()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"uptime: {load}")
    if args.idle:
        idle(args, logs)
        return 0
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    for name in [n for n in names if not available(n)]:
        print(f"  {name}: skipped, package {PEERS[name]!r} is not installed")
    names = [n for n in names if available(n)]
    if args.blocking:
        names = [n for n in names if n in ("tpd2py", "granian", "gunicorn-sync", "waitress")]
        # 64 connections: 16 running and up to 48 queued stay under the admission limit
        # (16 + 4 x 16), so what is measured is throughput, not 503s.
        rows = run_load(args, names, "blocking", ["/"], logs, threads=16, connections=64)
    else:
        attr = "app" if args.app == "raw" else "flask"
        rows = run_load(args, names, attr, POINTS[args.app], logs)
    table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
